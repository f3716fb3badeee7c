"""Instructions per request under callgrind: the side-by-side ratios without the noise.

Not a test: it prints a Markdown report (written to ``benchmarks/INSTRUCTIONS.md`` too).
``make bench`` runs it when valgrind is installed (about 20 minutes on two cores);
``--smoke``: bare Flask and ours, a few hundred requests.

Timings on a shared machine move by as much as the overhead they measure; instructions
do not. Each configuration is built by ``harness.py`` as ``peers.py`` builds it, in the
same venvs, and run twice under ``valgrind --tool=callgrind`` (``PYTHONHASHSEED`` fixed):
built and warmed up, then with 4 000 more requests; the difference over 4 000 is one
request's instructions. 100 000 clients are left out (filling them under callgrind takes
longer than the rest together; ``peers.py`` times them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

import common
from common import HERE, Interpreter, Targets, configuration, table
from peers import BARE, HOOK, MOVING, ORIGINAL, OURS, REFUSED_AIM, Peer

REPORT = HERE / "INSTRUCTIONS.md"
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

log = common.logger("instructions")


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


def collected(python: Interpreter, config: Config, requests: int) -> int:
    """Instructions a worker executes building ``config`` and then running ``requests``
    requests (none: built and warmed up only)."""
    fields = {"peer": config.peer.key, "mode": config.mode, "clients": config.clients}
    build = {"cmd": "build", "case": "counted", **fields, "accept": config.accept}
    lines = [{**build, **configuration()}]
    lines += [{"cmd": "run", "case": "counted", "requests": requests}] * bool(requests)
    command, env = python
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
        input="".join(json.dumps(line) + "\n" for line in [*lines, {"cmd": "quit"}]),
        capture_output=True,
        text=True,
        env={**env, "PYTHONHASHSEED": "0"},
        check=False,
    )
    for reply in map(json.loads, done.stdout.splitlines()):
        if "error" in reply:
            raise SystemExit(f"{config.label}: {reply['error']}")
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"{config.label}: no instruction count from callgrind:\n{done.stderr}")
    return int(found.group(1))


def per_request(python: Interpreter, config: Config, requests: int) -> float:
    log(f"counting {config.label}, {config.clients} client(s)")
    return (collected(python, config, requests) - collected(python, config, 0)) / requests


def configurations(client_counts: Sequence[int], venvs: Sequence[str]) -> list[Config]:
    found = [Config(peer, "admitted", clients) for clients in client_counts for peer in ADMITTED]
    for peer, modes in REFUSING:
        found += [Config(peer, mode, 1, accept) for mode in modes for accept in ACCEPTS]
    return [config for config in found if config.peer.venv in venvs]


def report(
    counts: dict[Config, float], client_counts: Sequence[int], requests: int, text: str
) -> str:
    def count(
        peer: Peer, clients: int, mode: str = "admitted", accept: Optional[str] = None
    ) -> Optional[float]:
        return counts.get(Config(peer, mode, clients, accept))

    def times(count: float, floor: float) -> str:
        return f"{count / floor:.3f}x"

    rows = []
    for config, value in counts.items():
        bare = count(BARE, config.clients)
        extra = "" if bare is None or config.peer is BARE else f"+{value - bare:,.0f}"
        ratio = "" if bare is None else times(value, bare)
        rows.append([config.label, f"{config.clients:,}", f"{value:,.0f}", extra, ratio])
    targets = Targets()
    for clients in client_counts:
        bare, ours = count(BARE, clients), count(OURS, clients)
        if bare is None or ours is None:
            continue
        where = f"{clients:,} client(s)"
        targets.add(f"admitted at most 1.10x bare, {where}", times(ours, bare), ours <= 1.10 * bare)
        moving, original = count(MOVING, clients), count(ORIGINAL, clients)
        if moving is not None:
            factor = (moving - bare) / (ours - bare)
            targets.add(
                f"overhead at least 20x smaller than Flask-Limiter moving window's, {where}",
                f"+{ours - bare:,.0f} vs +{moving - bare:,.0f}: {factor:.1f}x",
                factor >= 20,
            )
        if original is not None:
            targets.add(
                f"overhead smaller than flask-gatekeeper 1.0.0's, {where}",
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
            aim = f"{where}: at most {REFUSED_AIM:.2f}x bare (the aim)"
            targets.add(aim, times(ours, bare), ours <= REFUSED_AIM * bare)
            if original is not None:
                targets.add(
                    f"{where}: cheaper than flask-gatekeeper 1.0.0's",
                    f"{ours:,.0f} vs {original:,.0f}",
                    ours < original,
                )
    valgrind = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout
    return "\n".join(
        [
            "# Instructions per request, side by side",
            "",
            text,
            "",
            f"- {common.setting()}; {valgrind.strip()}.",
            "- The configurations, clocks, warm-up and filled logs of [RESULTS.md](RESULTS.md), "
            "each run under `valgrind --tool=callgrind`: a request's instructions are the "
            "difference between a run that builds and warms up the configuration and one that "
            f"then serves {requests:,} more requests, divided by {requests:,}. Deterministic "
            "(`PYTHONHASHSEED=0`); cache misses and the CPU's speed do not count, which is why "
            "RESULTS.md times the same configurations too.",
            "",
            "## Targets (issue 15), in instructions",
            "",
            targets.table(text=1),
            "",
            "## Instructions per request",
            "",
            table(["configuration", "clients", "instructions", "over bare", "x bare"], rows),
            "",
        ]
    )


def main() -> None:
    smoke = common.parser(__doc__, "bare Flask and ours, few requests").parse_args().smoke
    if shutil.which("valgrind") is None:
        log("skipped: valgrind is not installed (apt-get install valgrind)")
        return
    started = time.monotonic()
    pythons = common.worker_interpreters(install=False, log=log)
    client_counts, requests = SMOKE if smoke else FULL
    found = configurations(client_counts, list(pythons))
    if smoke:
        found = [c for c in found if c.peer in (BARE, OURS) and c.mode == "admitted"]
    harness = str(HERE / "harness.py")

    def count(config: Config) -> float:
        command, env = pythons[config.peer.venv]
        return per_request(([*command, harness], env), config, requests)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        values = list(pool.map(count, found))
    seconds = time.monotonic() - started
    text = common.generated("instructions.py", smoke, seconds, "tiny counts, not numbers to quote.")
    common.publish(
        report(dict(zip(found, values)), client_counts, requests, text),
        REPORT,
        smoke=smoke,
        log=log,
    )


if __name__ == "__main__":
    main()
