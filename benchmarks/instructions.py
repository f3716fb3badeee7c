"""Instructions per request under callgrind: the side-by-side ratios without the noise.

Not a test: it prints a Markdown report (written to ``benchmarks/INSTRUCTIONS.md`` too)
and asserts no speed. ``make bench`` runs it when valgrind is installed (about 20
minutes on two cores); ``make bench-smoke`` runs ``--smoke`` (bare Flask and ours, a
few hundred requests).

Why: on a shared or small machine the timings of ``peers.py`` move by 10 to 20 µs from
round to round, as much as the overhead they measure. The number of machine
instructions a request executes does not move: it is what a request costs on an idle
core, cache misses aside. Each configuration is built by ``harness.py`` exactly as
``peers.py`` builds it (same apps, rules, fake clocks, warm-up and filled logs), in the
same venvs, and run twice under ``valgrind --tool=callgrind``: once built and warmed up
only, once with 4 000 more requests (``FULL``). The difference, divided by 4 000, is
one request's instructions, the interpreter and WSGI call included. ``PYTHONHASHSEED``
is fixed, so that two runs differ only by the requests.

100 000 clients are left out: filling their logs under callgrind takes longer than the
rest together, and ``peers.py`` times them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import harness
import peers
from harness import BAN_RULE, RATE_LIMIT_RULES, table
from peers import BARE, MOVING, ORIGINAL, OURS, REFUSED_AIM, Peer

HERE = Path(__file__).resolve().parent
REPORT = HERE / "INSTRUCTIONS.md"

HOOK = Peer("hook", "Flask + an empty before_request", "hook", "ours")
ADMITTED = (BARE, HOOK, OURS, MOVING, ORIGINAL)
REFUSING = (
    (OURS, ("refused", "banned")),
    (ORIGINAL, ("refused", "banned")),
    (MOVING, ("refused",)),
)
ACCEPTS = (None, "*/*")

FULL = (1, 1_000), 4_000
SMOKE = (1,), 200
"""Client counts, and requests counted per configuration."""

COLLECTED = re.compile(r"Collected : (\d+)")


def log(message: str) -> None:
    print(f"[instructions] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Config:
    """One configuration: a peer, the path it takes, its clients and ``Accept``."""

    peer: Peer
    mode: str
    clients: int
    accept: Optional[str] = None

    @property
    def label(self) -> str:
        kind = "" if self.mode == "admitted" else f", {self.mode}"
        accept = "" if self.accept is None else f", Accept: {self.accept}"
        return f"{self.peer.label}{kind}{accept}"


def collected(command: Sequence[str], config: Config, requests: int) -> int:
    """Instructions a worker executes building ``config`` and then running ``requests``
    requests (none: built and warmed up only)."""
    build = {
        "cmd": "build",
        "case": "counted",
        "peer": config.peer.key,
        "mode": config.mode,
        "clients": config.clients,
        "accept": config.accept,
        "rules": RATE_LIMIT_RULES,
        "ban_rule": BAN_RULE,
    }
    lines = [build, *([{"cmd": "run", "case": "counted", "requests": requests}] * bool(requests))]
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
        input="".join(json.dumps(line) + "\n" for line in [*lines, {"cmd": "quit"}]),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        check=False,
    )
    for reply in done.stdout.splitlines():
        if "error" in json.loads(reply):
            raise SystemExit(f"{config.label}: {json.loads(reply)['error']}")
    found = COLLECTED.search(done.stderr)
    if found is None:
        raise SystemExit(f"{config.label}: no instruction count from callgrind:\n{done.stderr}")
    return int(found.group(1))


def per_request(command: Sequence[str], config: Config, requests: int) -> float:
    log(f"counting {config.label}, {config.clients} client(s)")
    return (collected(command, config, requests) - collected(command, config, 0)) / requests


def configurations(client_counts: Sequence[int], venvs: Sequence[str]) -> list[Config]:
    found = [Config(peer, "admitted", clients) for clients in client_counts for peer in ADMITTED]
    for peer, modes in REFUSING:
        found += [Config(peer, mode, 1, accept) for mode in modes for accept in ACCEPTS]
    return [config for config in found if config.peer.venv in venvs]


def times(count: float, floor: float) -> str:
    return f"{count / floor:.3f}x"


def report(
    counts: dict[Config, float], client_counts: Sequence[int], requests: int, seconds: float
) -> str:
    def count(
        peer: Peer, clients: int, mode: str = "admitted", accept: Optional[str] = None
    ) -> Optional[float]:
        return counts.get(Config(peer, mode, clients, accept))

    rows = []
    for config, value in counts.items():
        bare = count(BARE, config.clients)
        extra = "" if bare is None or config.peer is BARE else f"+{value - bare:,.0f}"
        ratio = "" if bare is None else times(value, bare)
        rows.append([config.label, f"{config.clients:,}", f"{value:,.0f}", extra, ratio])
    targets = []

    def target(text: str, measured: str, met: bool) -> None:
        targets.append([text, measured, "met" if met else "**not met**"])

    for clients in client_counts:
        bare, ours = count(BARE, clients), count(OURS, clients)
        if bare is None or ours is None:
            continue
        target(
            f"admitted at most 1.10x bare, {clients:,} client(s)",
            times(ours, bare),
            ours <= 1.10 * bare,
        )
        moving, original = count(MOVING, clients), count(ORIGINAL, clients)
        if moving is not None:
            factor = (moving - bare) / (ours - bare)
            target(
                "overhead at least 20x smaller than Flask-Limiter moving window's, "
                f"{clients:,} client(s)",
                f"+{ours - bare:,.0f} vs +{moving - bare:,.0f}: {factor:.1f}x",
                factor >= 20,
            )
        if original is not None:
            target(
                f"overhead smaller than flask-gatekeeper 1.0.0's, {clients:,} client(s)",
                f"+{ours - bare:,.0f} vs +{original - bare:,.0f}",
                ours < original,
            )
    bare = count(BARE, 1)
    for mode in ("refused", "banned"):
        for accept in ACCEPTS:
            ours, original = count(OURS, 1, mode, accept), count(ORIGINAL, 1, mode, accept)
            if bare is None or ours is None:
                continue
            where = f"{mode}{'' if accept is None else ', Accept: ' + accept}"
            target(
                f"{where}: at most {REFUSED_AIM:.2f}x bare (the aim)",
                times(ours, bare),
                ours <= REFUSED_AIM * bare,
            )
            if original is not None:
                target(
                    f"{where}: cheaper than flask-gatekeeper 1.0.0's",
                    f"{ours:,.0f} vs {original:,.0f}",
                    ours < original,
                )
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    valgrind = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout
    return "\n".join(
        [
            "# Instructions per request, side by side",
            "",
            f"Generated by `benchmarks/instructions.py` on {when}, in {seconds:.0f} s.",
            "",
            f"- {harness.setting()}; {valgrind.strip()}.",
            "- The configurations, clocks, warm-up and filled logs of [RESULTS.md](RESULTS.md), "
            "each run under `valgrind --tool=callgrind`: a request's instructions are the "
            "difference between a run that builds and warms up the configuration and one that "
            "then serves "
            f"{requests:,} more requests, divided by {requests:,}. Deterministic "
            "(`PYTHONHASHSEED=0`); cache misses and the CPU's speed do not count, which is why "
            "RESULTS.md times the same configurations too.",
            "",
            "## Targets (issue 15), in instructions",
            "",
            table(["target", "measured", "status"], targets),
            "",
            "## Instructions per request",
            "",
            table(["configuration", "clients", "instructions", "over bare", "x bare"], rows),
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="bare Flask and ours, few requests")
    smoke = parser.parse_args().smoke
    if shutil.which("valgrind") is None:
        log("skipped: valgrind is not installed (apt-get install valgrind)")
        return
    started = time.monotonic()
    commands = peers.worker_commands(install=False)
    client_counts, requests = SMOKE if smoke else FULL
    found = configurations(client_counts, list(commands))
    if smoke:
        found = [
            config for config in found if config.peer in (BARE, OURS) and config.mode == "admitted"
        ]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        values = list(
            pool.map(
                lambda config: per_request(commands[config.peer.venv], config, requests), found
            )
        )
    text = report(dict(zip(found, values)), client_counts, requests, time.monotonic() - started)
    harness.publish(text, REPORT, smoke=smoke, log=log)


if __name__ == "__main__":
    main()
