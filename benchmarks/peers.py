"""Side by side with the peers: per-request time, memory per client, Redis, flood.

Not a test: it prints one Markdown report (written to ``benchmarks/RESULTS.md`` too) and
asserts no speed. ``make bench-peers`` runs it (about 25 minutes on two cores).
``make bench-smoke`` runs ``--smoke``: tiny counts, no flood, and only the peers whose
venvs are already built (it builds none, so it downloads nothing; it says which it skips).

Bare Flask and flask-gatekeeper (this checkout) run on this driver's own interpreter;
Flask-Limiter 4.x with ``limits`` (memory ``moving-window`` and ``fixed-window``, and the
same on Redis) and the original flask-gatekeeper 1.0.0 (it has our module name) each in a
venv of its own under ``benchmarks/.venvs/``, made and reused here. Ours and the moving
window are timed a second time with a route limit and a cost given by functions of the
request (``FUNCTIONS``), in the same rounds. One long-lived worker
per interpreter (``harness.py``, run as a script) builds the apps and times them when told
to, so rounds interleave peers across processes: drifts in machine speed hit all alike.
Timing is ``overhead.py``'s method, from the same harness.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Optional

import harness
from harness import BAN_RULE, RATE_LIMIT_RULES, Resp, overhead, ratio, spread, table

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"
RESULTS = HERE / "RESULTS.md"
LOAD = HERE / "LOAD.md"
"""``load.py``'s report, whose target rows this report repeats."""

PIP = ("-m", "pip", "install", "--quiet", "--disable-pip-version-check")


@dataclass(frozen=True)
class Plan:
    """How much to measure: the full run, or the smoke run's tiny counts."""

    client_counts: tuple[int, ...]
    rounds: int
    requests: int
    memory_clients: int
    redis_clients: int
    redis_rounds: int
    redis_requests: int
    monitor_requests: int
    flood_clients: int
    flood_every: int
    flood_ceiling: int = 1 << 30
    """RSS, in bytes, past which a peer's flood stops."""
    flood_budget: float = 45.0
    """Seconds of flood per peer before it stops (ours is given the time to finish)."""


FULL = Plan(
    client_counts=(1, 1_000, 100_000),
    rounds=11,
    requests=2_000,
    memory_clients=2_000,
    redis_clients=10_000,
    redis_rounds=7,
    redis_requests=2_000,
    monitor_requests=1_000,
    flood_clients=1_000_000,
    flood_every=100_000,
)
SMOKE = Plan(
    client_counts=(1, 10, 100),
    rounds=2,
    requests=50,
    memory_clients=20,
    redis_clients=200,
    redis_rounds=2,
    redis_requests=50,
    monitor_requests=20,
    flood_clients=200,
    flood_every=100,
)


# -- the peers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """One configuration under test, and the venv whose worker runs it."""

    key: str
    """The worker's name for it."""
    label: str
    short: str
    """Its column heading."""
    venv: str
    redis: bool = True
    """Measured on Redis too (bare Flask: as the floor there as well)."""
    lacks: str = ""


BARE = Peer("bare", "bare Flask", "bare", "ours")
OURS = Peer("ours", "flask-gatekeeper (this), sliding log", "ours", "ours")
MOVING = Peer(
    "limiter-moving",
    "Flask-Limiter 4, moving window",
    "FL moving",
    "limiter",
    lacks="no ban rule (only the two rate rules run)",
)
FIXED = Peer(
    "limiter-fixed",
    "Flask-Limiter 4, fixed window",
    "FL fixed",
    "limiter",
    lacks="no ban rule; fixed windows admit up to twice a rule's count across a boundary",
)
ORIGINAL = Peer(
    "original",
    "flask-gatekeeper 1.0.0",
    "1.0.0",
    "original",
    redis=False,
    lacks="no Redis storage; no memory bound",
)
PINGED = Peer("pinged", "bare Flask making one redis-py PING per request", "PING", "ours")
"""The yardstick of the Redis target, measured on Redis only."""
ALL = (OURS, MOVING, FIXED, ORIGINAL)
"""Every peer that limits (bare Flask is the floor, not a peer)."""
BANNING = (OURS, ORIGINAL)
"""The peers with a ban rule, timed refusing a banned client too."""

REFUSALS = (("refused", None), ("refused", "*/*"), ("banned", None), ("banned", "*/*"))
"""The refused paths of the targets (one client): over its rate limit (429) or banned
(403), with no ``Accept`` header and with ``Accept: */*``."""
REFUSED_AIM = 1.10
"""What a refusal aims to cost, times a bare Flask request (issue 15)."""

OURS_FUNCTION = Peer(
    "ours-function", "flask-gatekeeper (this), limit and cost functions", "ours fn", "ours"
)
MOVING_FUNCTION = Peer(
    "limiter-moving-function",
    "Flask-Limiter 4, moving window, limit and cost functions",
    "FL moving fn",
    "limiter",
)
FUNCTIONS = {OURS_FUNCTION: OURS, MOVING_FUNCTION: MOVING}
"""The peers whose route limit and cost are functions of the request, each with the peer
it adds them to (same rules and ban rule otherwise)."""

VENVS_TO_INSTALL = {
    "limiter": (("flask-limiter>=4,<5", "redis", "gunicorn"),),
    # 1.0.0 declares "Flask>=1.1.*", a specifier newer pips refuse: Flask comes first.
    "original": (("flask", "gunicorn"), ("--no-deps", "flask-gatekeeper==1.0.0")),
}
"""Each peer venv's ``pip install`` argument lists, run in order (gunicorn: ``load.py``
serves each peer from its own venv)."""


def log(message: str) -> None:
    print(f"[peers] {message}", file=sys.stderr, flush=True)


def venv_python(name: str, install: bool) -> Optional[Path]:
    """The venv's Python, installing it first (when ``install``) unless the same install
    is already there; None when it is not there and ``install`` is false."""
    root = VENVS / name
    python = root / "bin" / "python"
    marker = root / ".bench-installed"
    wanted = json.dumps(VENVS_TO_INSTALL[name])
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    if not install:
        return None
    log(f"setting up benchmarks/.venvs/{name}")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    for arguments in VENVS_TO_INSTALL[name]:
        subprocess.run([str(python), *PIP, *arguments], check=True)
    marker.write_text(wanted)
    return python


def worker_commands(install: bool) -> dict[str, list[str]]:
    """How to start each interpreter's worker. Ours is this driver's, without ``-I`` so
    that it imports the flask-gatekeeper this driver would; the peers' venvs run with
    ``-I``, so that nothing of this checkout (``PYTHONPATH``) shadows 1.0.0."""
    commands = {"ours": [sys.executable, str(HERE / "harness.py")]}
    for name in VENVS_TO_INSTALL:
        python = venv_python(name, install)
        if python is None:
            log(
                f"skipping the {name} peers: benchmarks/.venvs/{name} is not built (--smoke "
                "builds none; `make bench-peers` does)"
            )
        else:
            commands[name] = [str(python), "-I", str(HERE / "harness.py")]
    return commands


# -- workers -------------------------------------------------------------------------------------


class Worker:
    """A worker process in one venv, and the JSON-lines conversation with it."""

    def __init__(self, venv: str, command: list[str]) -> None:
        self.venv = venv
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, command: str, **fields: object) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps({"cmd": command, **fields}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the {self.venv} worker died during {command!r}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise SystemExit(
                f"the {self.venv} worker failed {command!r} {fields}:\n{reply['error']}"
            )
        return reply

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.write('{"cmd": "quit"}\n')
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def configuration(storage: str = "memory") -> dict[str, object]:
    return {"rules": RATE_LIMIT_RULES, "ban_rule": BAN_RULE, "storage": storage}


# -- timed cases -----------------------------------------------------------------------------------


@dataclass
class Case:
    """One configuration in one worker, and its per-round samples (µs per request)."""

    peer: Peer
    mode: str
    clients: int
    worker: Worker
    name: str
    accept: Optional[str] = None
    """The requests' ``Accept`` header, if any."""
    facts: dict[str, Any] = field(default_factory=dict)
    samples: list[float] = field(default_factory=list)
    """Mean microseconds per request, one per round."""

    @property
    def kind(self) -> str:
        """The mode, and the ``Accept`` header when there is one."""
        return self.mode if self.accept is None else f"{self.mode}, Accept: {self.accept}"

    def measure(self, requests: int) -> float:
        reply = self.worker.ask("run", case=self.name, requests=requests)
        return float(reply["ns"]) / requests / 1000


def build(
    workers: dict[str, Worker],
    peer: Peer,
    mode: str,
    clients: int,
    storage: str = "memory",
    accept: Optional[str] = None,
) -> Case:
    name = f"{peer.key}/{mode}/{clients}" + ("" if accept is None else f"/{accept}")
    log(f"building {name}")
    worker = workers[peer.venv]
    reply = worker.ask(
        "build",
        case=name,
        peer=peer.key,
        mode=mode,
        clients=clients,
        accept=accept,
        **configuration(storage),
    )
    return Case(peer, mode, clients, worker, name, accept, reply["facts"])


def run_rounds(cases: Sequence[Case], rounds: int, requests: int) -> None:
    """``harness.run_rounds``, with a full collection in every worker before each round."""
    workers = list({id(case.worker): case.worker for case in cases}.values())

    def collect(number: int) -> None:
        log(f"round {number + 1}/{rounds}")
        for worker in workers:
            worker.ask("collect")

    harness.run_rounds(cases, rounds, requests, collect)


def count_commands(case: Case, port: int, requests: int) -> dict[str, int]:
    """Commands the app sent Redis for ``requests`` requests, seen by MONITOR on its own
    connection; commands a script runs show as ``[0 lua]`` there and are not counted."""
    monitor = Resp(port)
    if monitor.send("MONITOR") != "+OK":
        raise SystemExit("MONITOR was refused")
    case.measure(requests)
    sentinel = f"peers-sentinel-{case.name}"
    marker = Resp(port)
    marker.send("ECHO", sentinel)
    counts: dict[str, int] = {}
    while True:
        line = monitor.line()
        if sentinel in line:
            break
        where, _, command = line.partition("] ")
        if not command or where.endswith(" lua"):
            continue
        name = command.split(" ", 1)[0].strip('"').upper()
        counts[name] = counts.get(name, 0) + 1
    monitor.close()
    marker.close()
    return counts


# -- the run ---------------------------------------------------------------------------------------


@dataclass
class Results:
    plan: Plan
    smoke: bool
    peers: tuple[Peer, ...]
    """The peers measured: ``ALL``, or in a smoke run those whose venvs are built."""
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    memory: dict[str, dict[str, float]] = field(default_factory=dict)
    timed: list[Case] = field(default_factory=list)
    functions: list[Case] = field(default_factory=list)
    """The ``FUNCTIONS`` peers' cases, timed in the same rounds as ``timed``."""
    redis: list[Case] = field(default_factory=list)
    commands: dict[str, dict[str, int]] = field(default_factory=dict)
    redis_note: str = ""
    ping: float = 0.0
    """µs per redis-py PING round trip (median of rounds)."""
    flood: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0


def memory_in(worker: Worker, venv: str, results: Results) -> None:
    """Memory per client for the peers of one venv, in turn."""
    for peer in (peer for peer in results.peers if peer.venv == venv):
        log(f"memory per client: {peer.label}")
        reply = worker.ask(
            "memory",
            peer=peer.key,
            clients=results.plan.memory_clients,
            after=[1, 20],
            **configuration(),
        )
        results.memory[peer.key] = reply["bytes_per_client"]


def measure_time(workers: dict[str, Worker], results: Results) -> None:
    plan = results.plan
    cases = [
        build(workers, peer, "admitted", count)
        for count in plan.client_counts
        for peer in (BARE, *results.peers)
    ]
    cases += [build(workers, peer, "refused", 1) for peer in results.peers]
    cases += [
        build(workers, peer, mode, 1, accept=accept)
        for mode, accept in REFUSALS[1:]
        for peer in results.peers
        if peer in BANNING
    ]
    functions = [
        build(workers, peer, "admitted", count)
        for count in plan.client_counts
        for peer, plain in FUNCTIONS.items()
        if plain in results.peers
    ]
    for worker in workers.values():
        worker.ask("freeze")
    run_rounds([*cases, *functions], plan.rounds, plan.requests)
    results.timed = cases
    results.functions = functions
    for worker in workers.values():
        worker.ask("drop")


def measure_redis(workers: dict[str, Worker], results: Results) -> None:
    plan = results.plan
    with harness.redis_server() as port:
        if port is None:
            results.redis_note = "skipped: no redis-server on this machine"
            return
        peers = [peer for peer in (BARE, PINGED, *results.peers) if peer.redis]
        # A database each: Flask-Limiter's strategies would share keys of different types.
        cases = [
            build(workers, peer, "redis", plan.redis_clients, f"redis://127.0.0.1:{port}/{db}")
            for db, peer in enumerate(peers)
        ]
        for case in cases[1:]:
            log(f"MONITOR: {case.peer.label}")
            results.commands[case.peer.key] = count_commands(case, port, plan.monitor_requests)
        run_rounds(cases, plan.redis_rounds, plan.redis_requests)
        results.redis = cases
        pings = [
            workers[OURS.venv].ask("ping", url=f"redis://127.0.0.1:{port}/0", count=count)["ns"]
            / count
            / 1000
            for count in [plan.redis_requests] * plan.redis_rounds
        ]
        results.ping = statistics.median(pings)
        for worker in workers.values():
            worker.ask("drop")


def flood_one(peer: Peer, command: list[str], results: Results) -> None:
    """One peer's flood, in a fresh worker (so that its RSS starts clean)."""
    plan = results.plan
    log(f"flood: {peer.label}")
    worker = Worker(peer.venv, command)
    try:
        reply = worker.ask(
            "flood",
            peer=peer.key,
            clients=plan.flood_clients,
            every=plan.flood_every,
            ceiling=plan.flood_ceiling,
            budget=None if peer is OURS else plan.flood_budget,
            **configuration(),
        )
    finally:
        worker.close()
    log(f"flood done: {peer.label} ({reply['stopped']})")
    results.flood[peer.key] = reply


def measure_memory_and_flood(
    workers: dict[str, Worker], commands: dict[str, list[str]], results: Results
) -> None:
    """After the timings, two processes at a time (each is single-threaded): memory does
    not depend on speed; only how far a peer's flood gets within its budget does. Ours'
    flood, the longest, starts first; the rest share the other core."""
    floods = results.peers
    tasks: list[Callable[[], None]] = []
    if OURS in floods:
        tasks.append(partial(flood_one, OURS, commands[OURS.venv], results))
    for venv, worker in workers.items():
        tasks.append(partial(memory_in, worker, venv, results))
    for peer in floods:
        if peer is not OURS:
            tasks.append(partial(flood_one, peer, commands[peer.venv], results))
    with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
        for future in [pool.submit(task) for task in tasks]:
            future.result()


# -- the report ------------------------------------------------------------------------------------


def by_key(cases: Sequence[Case]) -> dict[tuple[str, str, int], Case]:
    return {(case.peer.key, case.kind, case.clients): case for case in cases}


MODE_LABELS = {"refused": ", refused (429)", "banned": ", banned (403)"}


def time_rows(cases: Sequence[Case], peers: Sequence[Peer]) -> list[list[str]]:
    """One row per case: median, spread, overhead and ratio vs bare Flask (admitted, same
    client count), then the ratio to each peer's same case, paired by round."""
    found = by_key(cases)
    rows = []
    for case in cases:
        bare = found.get((BARE.key, "redis" if case.mode == "redis" else "admitted", case.clients))
        if case.peer is BARE or bare is None:
            versus_bare = ["", "1.00x"]
        else:
            versus_bare = [f"{overhead(case, bare):+.2f} µs", f"{ratio(case, bare):.2f}x"]
        versus_peers = []
        for peer in peers:
            other = found.get((peer.key, case.kind, case.clients))
            versus_peers.append("" if other is None else f"{ratio(case, other):.2f}x")
        accept = "" if case.accept is None else f", Accept: {case.accept}"
        rows.append(
            [
                case.peer.label + MODE_LABELS.get(case.mode, "") + accept,
                f"{case.clients:,}",
                f"{statistics.median(case.samples):.2f}",
                spread(case.samples),
                *versus_bare,
                *versus_peers,
            ]
        )
    return rows


def time_table(cases: Sequence[Case], peers: Sequence[Peer]) -> str:
    headings = ["configuration", "clients", "µs/request", "spread", "overhead vs bare", "x bare"]
    return table([*headings, *(f"x {peer.short}" for peer in peers)], time_rows(cases, peers))


def function_table(results: Results) -> str:
    """The function peers beside bare Flask (same rounds), and what the route's function
    limit and cost add to the same peer's global rules alone (paired by round)."""
    peers = [peer for peer, plain in FUNCTIONS.items() if plain in results.peers]
    found = by_key(results.timed)
    bares = [case for case in results.timed if case.peer is BARE]
    cases = [
        case
        for bare in bares
        for case in (bare, *(c for c in results.functions if c.clients == bare.clients))
    ]
    rows = time_rows(cases, peers)
    for row, case in zip(rows, cases):
        peer = FUNCTIONS.get(case.peer)
        plain = None if peer is None else found.get((peer.key, "admitted", case.clients))
        row.append("" if plain is None else f"{overhead(case, plain):+.2f} µs")
    headings = ["configuration", "clients", "µs/request", "spread", "overhead vs bare", "x bare"]
    headings += [*(f"x {peer.short}" for peer in peers), "added to the peer's global rules"]
    return table(headings, rows)


def redis_table(results: Results) -> str:
    """The time table, and the client commands per request seen by MONITOR."""
    monitored = results.plan.monitor_requests
    peers = [peer for peer in results.peers if peer.redis]
    rows = time_rows(results.redis, peers)
    for row, case in zip(rows, results.redis):
        counts = results.commands.get(case.peer.key, {})
        detail = ", ".join(
            f"{name} {count / monitored:g}" for name, count in sorted(counts.items())
        )
        row.append(f"{sum(counts.values()) / monitored:g} ({detail})" if counts else "")
    headings = ["configuration", "clients", "µs/request", "spread", "overhead vs bare", "x bare"]
    headings += [*(f"x {peer.short}" for peer in peers), "commands/request"]
    return table(headings, rows)


def memory_table(found: dict[str, dict[str, float]], peers: Sequence[Peer]) -> str:
    ours = found[OURS.key]
    rows = [
        [
            peer.label,
            f"{found[peer.key]['1']:,.0f}",
            f"{found[peer.key]['20']:,.0f}",
            f"{found[peer.key]['1'] / ours['1']:.1f}x",
            f"{found[peer.key]['20'] / ours['20']:.1f}x",
        ]
        for peer in peers
    ]
    headings = ["configuration", "B/client after 1 request", "after 20", "x ours (1)"]
    return table([*headings, "x ours (20)"], rows)


def flood_table(found: dict[str, dict[str, Any]]) -> str:
    """Traced / RSS at each checkpoint (and where a peer stopped), a column per peer."""
    peers = [peer for peer in ALL if peer.key in found]
    points = {peer.key: {int(p["clients"]): p for p in found[peer.key]["points"]} for peer in peers}
    rows = []
    for clients in sorted(set().union(*(points[peer.key] for peer in peers)) - {0}):
        row = [f"{clients:,}"]
        for peer in peers:
            point = points[peer.key].get(clients)
            row.append(
                ""
                if point is None
                else f"{point['traced'] / 1e6:,.1f} / {point['rss'] / 1e6:,.0f} MB "
                f"({point['seconds']:.0f} s)"
            )
        rows.append(row)
    last = {peer.key: found[peer.key]["points"][-1] for peer in peers}
    rows.append(
        [
            "traced B/client at the end",
            *(f"{last[p.key]['traced'] / max(last[p.key]['clients'], 1):,.0f}" for p in peers),
        ]
    )
    rows.append(["stopped", *(found[peer.key]["stopped"] for peer in peers)])
    return table(["clients", *(peer.label for peer in peers)], rows)


def redis_target(results: Results) -> tuple[str, str, Optional[bool]]:
    """Ours' overhead on Redis over a redis-py PING's, each made in a request (bare
    Flask's time taken from both, round by round): the round trip every Redis limiter
    pays, in the same place, with Redis as idle between requests as for ours."""
    target = "Redis: overhead at most 1.5x a redis-py PING round trip made in a request (ours)"
    found = by_key(results.redis)
    clients = results.plan.redis_clients
    cases = [found.get((peer.key, "redis", clients)) for peer in (OURS, PINGED, BARE)]
    if any(case is None for case in cases):
        return target, results.redis_note, None
    ours, pinged, bare = (case.samples for case in cases if case is not None)
    ours_over = statistics.median(o - b for o, b in zip(ours, bare))
    ping_over = statistics.median(p - b for p, b in zip(pinged, bare))
    factor = statistics.median((o - b) / (p - b) for o, p, b in zip(ours, pinged, bare))
    measured = f"{ours_over:.2f} µs vs {ping_over:.2f} µs: {factor:.2f}x"
    return target, measured, factor <= 1.5


def admitted_bound(clients: int) -> float:
    """Ours admitting, at most this many times bare Flask: 1.10x, 1.15x from 100,000
    clients on."""
    return 1.15 if clients >= 100_000 else 1.10


def load_targets() -> list[list[str]]:
    """The target rows of ``load.py``'s last report (LOAD.md), as written there."""
    if not LOAD.exists():
        return []
    text = LOAD.read_text(encoding="utf-8")
    generated = re.search(r"^Generated by `benchmarks/load.py` on ([^,]+),", text, re.MULTILINE)
    when = f" (LOAD.md, {generated[1]})" if generated else " (LOAD.md)"
    rows = []
    for line in text.splitlines():
        if line.startswith("| under attack"):
            target, measured, status = (cell.strip() for cell in line.strip("|").split(" | "))
            rows.append([target + when, measured, status])
    return rows


def targets(results: Results) -> str:
    """Where each target of issues 6 and 15 (and the design's memory bound) stands."""
    rows: list[list[str]] = []

    def add(target: str, measured: str, met: Optional[bool]) -> None:
        status = "skipped" if met is None else ("met" if met else "**not met**")
        rows.append([target, measured, status])

    found = by_key(results.timed)
    unbuilt = "not measured: the peer's venv is not built"
    for count in results.plan.client_counts:
        bare = found[(BARE.key, "admitted", count)]
        ours_case = found[(OURS.key, "admitted", count)]
        ours = overhead(ours_case, bare)
        clients = f"{count:,} client{'s' if count > 1 else ''}"
        bound, times = admitted_bound(count), ratio(ours_case, bare)
        add(
            f"admitted at most {bound:.2f}x bare Flask, {clients}",
            f"{times:.3f}x ({statistics.median(ours_case.samples):.2f} µs vs "
            f"{statistics.median(bare.samples):.2f} µs)",
            times <= bound,
        )
        target = f"overhead at least 20x smaller than Flask-Limiter moving window's, {clients}"
        if MOVING in results.peers:
            moving = overhead(found[(MOVING.key, "admitted", count)], bare)
            factor = f"{moving / ours:.1f}x" if ours > 0 else "ours at most 0 (noise)"
            add(target, f"{ours:.2f} µs vs {moving:.2f} µs: {factor}", moving >= 20 * ours)
        else:
            add(target, unbuilt, None)
        target = f"overhead smaller than flask-gatekeeper 1.0.0's, {clients}"
        if ORIGINAL in results.peers:
            original = overhead(found[(ORIGINAL.key, "admitted", count)], bare)
            add(target, f"{ours:.2f} µs vs {original:.2f} µs", ours < original)
        else:
            add(target, unbuilt, None)
    bare = found[(BARE.key, "admitted", 1)]
    for mode, accept in REFUSALS:
        kind = mode if accept is None else f"{mode}, Accept: {accept}"
        ours_case = found[(OURS.key, kind, 1)]
        what = f"{MODE_LABELS[mode][2:]}{'' if accept is None else f', Accept: {accept}'}"
        ours_times = ratio(ours_case, bare)
        target = f"{what}: cheaper than flask-gatekeeper 1.0.0's refusal"
        if ORIGINAL in results.peers:
            original_case = found[(ORIGINAL.key, kind, 1)]
            versus = ratio(ours_case, original_case)
            add(
                target,
                f"{statistics.median(ours_case.samples):.2f} µs ({ours_times:.2f}x bare) vs "
                f"{statistics.median(original_case.samples):.2f} µs "
                f"({ratio(original_case, bare):.2f}x bare): {versus:.3f}x",
                versus < 1,
            )
        else:
            add(target, unbuilt, None)
        add(
            f"{what}: at most {REFUSED_AIM:.2f}x bare Flask (the aim)",
            f"{ours_times:.3f}x",
            ours_times <= REFUSED_AIM,
        )
    memory = results.memory
    add(
        "memory per client at most 300 B after 1 request",
        f"{memory[OURS.key]['1']:,.0f} B",
        memory[OURS.key]["1"] <= 300,
    )
    target = "memory per client at least 3x smaller than Flask-Limiter moving window's after 20"
    if MOVING in results.peers:
        ours_20, moving_20 = memory[OURS.key]["20"], memory[MOVING.key]["20"]
        times = moving_20 / ours_20
        add(target, f"{ours_20:,.0f} B vs {moving_20:,.0f} B: {times:.1f}x", times >= 3)
    else:
        add(target, unbuilt, None)
    if OURS.key in results.commands:
        per_request = sum(results.commands[OURS.key].values()) / results.plan.monitor_requests
        theirs = ""
        if MOVING.key in results.commands:
            moving_commands = sum(results.commands[MOVING.key].values())
            theirs = f" (Flask-Limiter: {moving_commands / results.plan.monitor_requests:g})"
        add(
            "Redis: exactly 1 client command per request (ours)",
            f"{per_request:g}{theirs}",
            per_request == 1,
        )
    else:
        add("Redis: exactly 1 client command per request (ours)", results.redis_note, None)
    add(*redis_target(results))
    points = results.flood[OURS.key]["points"]
    settled = next(p for p in points if p["clients"] >= 2 * results.plan.flood_every)
    end = points[-1]
    add(
        "design: memory bounded by default (ours' traced memory flat once the bound is full)",
        f"{settled['traced'] / 1e6:.1f} MB at {settled['clients']:,} clients, "
        f"{end['traced'] / 1e6:.1f} MB at {end['clients']:,}",
        None if results.smoke else end["traced"] <= 1.05 * settled["traced"],
    )
    rows += load_targets() or [
        [
            "under attack (90% refused) behind gunicorn, ours at least bare Flask's requests "
            "per second",
            "not measured: no LOAD.md (`benchmarks/load.py` writes it)",
            "skipped",
        ]
    ]
    return table(["target", "measured", "status"], rows, text=3)


def function_section(results: Results) -> list[str]:
    """What the ``FUNCTIONS`` peers measure, and their table."""
    readings = ", ".join(
        f"{case.peer.short} {case.facts['clock_readings_per_request']:.2f}"
        for case in results.functions
        if case.clients == 1
    )
    return [
        "## A route limit and a cost computed for each request",
        "",
        "The same app and rules, with `GET /` also under a route limit given by a function "
        "of the request and a cost given by another. Ours: "
        "`gk.specific(plan_limit, cost=batch_cost)`; Flask-Limiter (moving window): "
        "`limiter.limit(plan_limit, cost=batch_cost, override_defaults=False)`, so that its "
        "default limits keep applying on the route, as ours' global rules do. `plan_limit` "
        f'returns `"{harness.PRO_LIMIT}"` when the `X-Plan` header says `pro`, and '
        f'`"{harness.FREE_LIMIT}"` otherwise; `batch_cost` returns '
        '`int(request.args.get("n", "1"))`. Every request is `GET /?n=2` with `X-Plan: pro`: '
        "both functions run for each request, which counts twice in the route's limit and "
        "once in the global rules, and is admitted (at one client, 4 requests per simulated "
        "second cost 480 a minute, of 1000).",
        "",
        "Timed in the same rounds as the table above, with the same client counts, warm-up "
        "and fake clocks (readings per request at one client: "
        f"{readings or 'none measured'}); the route's logs are not filled beforehand (at one "
        "client the warm-up fills its window; at more, a client's turns are further apart, "
        "250 s at 1,000 clients, so its window holds its latest request only). Ours' memory "
        "bound is doubled to 200 000 logs here: it counts logs, and each client has two "
        "(the global rules' and the route's), so 100 000 clients would evict one another "
        "under the default. The last "
        "column is the row's time minus the same peer's with the global rules alone (the "
        "table above, same clients, paired by round): what the route's functions, limit and "
        "cost add. Flask-Limiter's fixed window is not measured in this configuration.",
        "",
        function_table(results),
        "",
    ]


def report(results: Results) -> str:
    plan = results.plan
    venvs = harness.interpreters(results.versions, OURS.venv)
    readings = ", ".join(
        f"{case.peer.short} {case.facts['clock_readings_per_request']:.2f}"
        for case in results.timed
        if case.mode == "admitted" and case.clients == 1 and case.peer is not BARE
    )
    when = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    out = [
        "# flask-gatekeeper side by side with its peers",
        "",
        f"Generated by `benchmarks/peers.py{' --smoke' if results.smoke else ''}` on {when}, "
        f"in {results.seconds:.0f} s"
        + (": tiny counts, not numbers to quote." if results.smoke else "."),
        "",
        f"- Machine: {harness.machine()}; driver Python {platform.python_version()}.",
        f"- Interpreters: {venvs}.",
        f"- The same configuration for every peer: rate rules {RATE_LIMIT_RULES} and, where the "
        f"peer has one, the ban rule {BAN_RULE}; clients told apart by `REMOTE_ADDR`; one "
        "`GET /` view returning `ok`; each peer's defaults otherwise (ours: no RateLimit "
        "headers, memory bound 100 000 clients).",
        "- What each peer lacks: "
        + "; ".join(f"{peer.label}: {peer.lacks}" for peer in ALL if peer.lacks)
        + ". Flask-Limiter checks its limits one by one, not atomically: a request refused "
        "by one limit may already count against another.",
        *(
            f"- Not measured (its venv is not built): {peer.label}."
            for peer in ALL
            if peer not in results.peers
        ),
        "",
        "End to end, behind gunicorn under real HTTP load (normal traffic, and an attack "
        "where 9 requests in 10 are refused): [LOAD.md](LOAD.md), written by "
        "`benchmarks/load.py`.",
        "",
        "The same configurations counted in instructions per request under callgrind, "
        "which the timing noise of a shared machine does not move: "
        "[INSTRUCTIONS.md](INSTRUCTIONS.md), written by `benchmarks/instructions.py`.",
        "",
        "## Targets",
        "",
        "Overhead is the per-request time minus bare Flask's, the median of per-round "
        "differences (admitted requests).",
        "",
        targets(results),
        "",
        "## Per-request time, admitted and refused",
        "",
        f"{plan.rounds} rounds x {plan.requests:,} requests per configuration, interleaved across "
        "the worker processes; medians over rounds; spread is half the interquartile range. "
        "Ratios are medians of per-round ratios of per-request times: the row's over bare "
        "Flask's (admitted, same clients), or over the column's peer's (same mode and clients).",
        "",
        time_table(results.timed, results.peers),
        "",
        "How every peer stays on its admitted path without sleeping: its clock is faked, not its "
        "rules. Ours gets a C-level `itertools.count(...).__next__` as `MemoryStorage(clock=...)`; "
        "Flask-Limiter's memory storage (`limits.storage.memory`, read by requests and by its "
        "expiry thread) and 1.0.0 (`flask_gatekeeper.gatekeeper`) call `time.time()`, so the "
        "`time` of those modules is replaced by an object whose `time` is such a clock. Each "
        "reading moves the clock on by 0.25 s divided by the readings the peer makes per request "
        f"(measured at one client: {readings}), so every client of every peer sends 4 requests "
        "per simulated second at one client (fewer as clients take turns): every rule is "
        "evaluated and admits. Before timing, every client is tracked and its log is in steady "
        "state: at one client after 500 requests; at more clients, ours' ring and 1.0.0's "
        "deque are filled to the largest count (100) directly in their data structures (1.0.0 "
        "then filters all 100 entries for each rule of each request, as on a long-running "
        "server), while Flask-Limiter's lists hold what its expiry thread leaves (nothing older "
        "than a window). The refusal rows freeze the clock with one client over 20 per second. "
        "Flask-Limiter's expiry thread (a `threading.Timer` re-armed by requests, sweeping every "
        "key) runs inside its timings where it overlaps them; the worker waits for the last "
        "sweep before it answers, so a sweep never overlaps another peer's timing.",
        "",
        *function_section(results),
        "## Memory per tracked client",
        "",
        "Traced memory growth (tracemalloc, after a full collection) divided by "
        f"{plan.memory_clients:,} clients, once each client made 1 and then 20 requests; "
        "environs and their `REMOTE_ADDR` strings built afresh per request (as a server does), "
        "the collector on. The fake clocks move 0.1 µs per reading, so all 20 requests stay in "
        "every window and are admitted (the state right after a burst), and each reading is a "
        "new float, as `time.time()` returns. Measured after the timings, alongside the floods: "
        "memory does not depend on speed.",
        "",
        memory_table(results.memory, results.peers),
        "",
        "## Redis",
        "",
    ]
    if results.redis_note:
        out.append(results.redis_note.capitalize() + ".")
    else:
        out += [
            f"A local redis-server started by the driver (no persistence); {plan.redis_clients:,} "
            "clients in turn on real clocks (each client then stays far below 20 requests per "
            f"second: every request is admitted); {plan.redis_rounds} rounds x "
            f"{plan.redis_requests:,} requests, interleaved. Client commands per request counted "
            f"with MONITOR over {plan.monitor_requests:,} requests on a dedicated connection "
            "(commands a script runs show there as `lua` and are not counted). Ours: "
            '`storage="redis://..."`; Flask-Limiter: `storage_uri="redis://..."` (a database '
            "each); 1.0.0 has no Redis storage. The PING row is bare Flask with a "
            "`before_request` that makes one redis-py PING: the round trip any Redis limiter "
            "pays per request, the Redis target's yardstick.",
            "",
            redis_table(results),
            "",
            f"For scale, one redis-py PING round trip from the same process takes "
            f"{results.ping:.1f} µs on this machine when PINGs follow one another (Redis "
            "never idle, unlike between requests); `benchmarks/redis_roundtrip.py` breaks "
            "a Redis request down further.",
        ]
    out += ["", "## Flood", ""]
    out += [
        f"{plan.flood_clients:,} distinct clients, one request each, as fast as one process "
        "serves them, on real clocks and each peer's default memory bound. Traced memory "
        f"(since the start) / RSS every {plan.flood_every:,} clients, and seconds since the "
        "start: tracemalloc slows every peer about fourfold, and two floods share the two "
        f"cores. A peer stops past {plan.flood_ceiling / 2**30:g} GiB RSS or "
        f"{plan.flood_budget:g} s (checked every {plan.flood_every // 10:,} clients); ours "
        "runs to the end.",
        "",
        flood_table(results.flood),
        "",
        "Ours keeps at most `max_clients` logs and drops the least recently seen. "
        "Flask-Limiter's memory storage keeps every key its expiry thread has not removed; "
        "that thread sweeps every key about every 10 ms, so each request gets slower as keys "
        "pile up, and the moving window leaves each emptied key (with an empty list) in "
        "place. flask-gatekeeper 1.0.0 never forgets a client.",
    ]
    return "\n".join(out) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny counts, no flood: checks that everything runs"
    )
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else FULL
    started = time.perf_counter()

    commands = worker_commands(install=not args.smoke)
    peers = tuple(peer for peer in ALL if peer.venv in commands)
    results = Results(plan, args.smoke, peers)
    workers = {name: Worker(name, command) for name, command in commands.items()}
    try:
        results.versions = {name: worker.ask("hello") for name, worker in workers.items()}
        measure_time(workers, results)
        measure_redis(workers, results)
        measure_memory_and_flood(workers, commands, results)
    finally:
        for worker in workers.values():
            worker.close()
    results.seconds = time.perf_counter() - started
    harness.publish(report(results), RESULTS, smoke=args.smoke, log=log)


if __name__ == "__main__":
    main()
