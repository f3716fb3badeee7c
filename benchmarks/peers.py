"""Side by side with the peers: time per request, memory per client, Redis, flood.

Not a test: it prints one Markdown report (written to ``benchmarks/RESULTS.md`` too) and
asserts no speed. ``make bench-peers`` runs it (about 25 minutes on two cores); ``--smoke``
runs tiny counts with the peers whose venvs are built (it builds none, and says so).

Bare Flask and ours run on this driver's interpreter; Flask-Limiter 4 (moving and fixed
window, memory and Redis) and flask-gatekeeper 1.0.0 each in a venv of theirs under
``benchmarks/.venvs/``. One long-lived worker per interpreter (``harness.py``) builds the
apps and times them when told, so rounds interleave peers across processes.
"""

from __future__ import annotations

import platform
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Optional

import common
import harness
from common import (
    HERE,
    OURS_VENV,
    Interpreter,
    Resp,
    Targets,
    Worker,
    configuration,
    overhead,
    ratio,
    spread,
    table,
)
from harness import BAN_RULE, RATE_LIMIT_RULES

RESULTS = HERE / "RESULTS.md"
LOAD = HERE / "LOAD.md"
"""``load.py``'s report, whose target rows this report repeats."""

log = common.logger("peers")


@dataclass(frozen=True)
class Plan:
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


FULL = Plan((1, 1_000, 100_000), 11, 2_000, 2_000, 10_000, 7, 2_000, 1_000, 1_000_000, 100_000)
SMOKE = Plan((1, 10, 100), 2, 50, 20, 200, 2, 50, 20, 200, 100)


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


HOOK = Peer("hook", "Flask + an empty before_request", "hook", OURS_VENV)
BARE = Peer("bare", "bare Flask", "bare", OURS_VENV)
OURS = Peer("ours", "flask-gatekeeper (this), sliding log", "ours", OURS_VENV)
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
PINGED = Peer("pinged", "bare Flask making one redis-py PING per request", "PING", OURS_VENV)
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

FUNCTIONS = {
    Peer(
        "ours-function", "flask-gatekeeper (this), limit and cost functions", "ours fn", OURS_VENV
    ): OURS,
    Peer(
        "limiter-moving-function",
        f"{MOVING.label}, limit and cost functions",
        "FL moving fn",
        "limiter",
    ): MOVING,
}
"""The peers whose route limit and cost are functions of the request, each with the peer
it adds them to (same rules and ban rule otherwise)."""


# -- timed cases -----------------------------------------------------------------------------------


@dataclass
class Case:
    """One configuration in one worker, and its samples (µs per request, one a round)."""

    peer: Peer
    mode: str
    clients: int
    worker: Worker
    name: str
    accept: Optional[str] = None
    """The requests' ``Accept`` header, if any."""
    facts: dict[str, Any] = field(default_factory=dict)
    samples: list[float] = field(default_factory=list)

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
    fields = {"peer": peer.key, "mode": mode, "clients": clients, "accept": accept}
    reply = worker.ask("build", case=name, **fields, **configuration(storage))
    return Case(peer, mode, clients, worker, name, accept, reply["facts"])


def run_rounds(cases: Sequence[Case], rounds: int, requests: int) -> None:
    """``common.run_rounds``, with a full collection in every worker before each round."""
    workers = list({id(case.worker): case.worker for case in cases}.values())

    def collect(number: int) -> None:
        log(f"round {number + 1}/{rounds}")
        for worker in workers:
            worker.ask("collect")

    common.run_rounds(cases, rounds, requests, collect)


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
    while sentinel not in (line := monitor.line()):
        where, _, command = line.partition("] ")
        if command and not where.endswith(" lua"):
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
        clients = results.plan.memory_clients
        reply = worker.ask(
            "memory", peer=peer.key, clients=clients, after=[1, 20], **configuration()
        )
        results.memory[peer.key] = reply["bytes_per_client"]


def measure_time(workers: dict[str, Worker], results: Results) -> None:
    plan, peers = results.plan, results.peers
    cases = [
        build(workers, peer, "admitted", n) for n in plan.client_counts for peer in (BARE, *peers)
    ]
    cases += [build(workers, peer, "refused", 1) for peer in peers]
    cases += [
        build(workers, peer, mode, 1, accept=accept)
        for mode, accept in REFUSALS[1:]
        for peer in peers
        if peer in BANNING
    ]
    functions = [
        build(workers, peer, "admitted", count)
        for count in plan.client_counts
        for peer, plain in FUNCTIONS.items()
        if plain in peers
    ]
    for worker in workers.values():
        worker.ask("freeze")
    run_rounds([*cases, *functions], plan.rounds, plan.requests)
    results.timed, results.functions = cases, functions
    for worker in workers.values():
        worker.ask("drop")


def measure_redis(workers: dict[str, Worker], results: Results) -> None:
    plan = results.plan
    with common.redis_server() as port:
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
        url, count = f"redis://127.0.0.1:{port}/0", plan.redis_requests
        pings = [
            workers[OURS_VENV].ask("ping", url=url, count=count)["ns"] / count / 1000
            for _ in range(plan.redis_rounds)
        ]
        results.ping = statistics.median(pings)
        for worker in workers.values():
            worker.ask("drop")


def flood_one(peer: Peer, python: Interpreter, results: Results) -> None:
    """One peer's flood, in a fresh worker (its RSS its own); ours is given the time to
    finish."""
    plan = results.plan
    log(f"flood: {peer.label}")
    reply = common.once(
        peer.venv,
        python,
        "flood",
        peer=peer.key,
        clients=plan.flood_clients,
        every=plan.flood_every,
        ceiling=plan.flood_ceiling,
        budget=None if peer is OURS else plan.flood_budget,
        **configuration(),
    )
    log(f"flood done: {peer.label} ({reply['stopped']})")
    base = reply["points"][0]["traced"]
    for point in reply["points"]:  # growth since just before the flood
        point["traced"] -= base
    results.flood[peer.key] = reply


def measure_memory_and_flood(
    workers: dict[str, Worker], pythons: dict[str, Interpreter], results: Results
) -> None:
    """After the timings, two at a time (memory does not depend on speed; only how far a
    peer's flood gets in its budget does): ours' flood, the longest, first."""
    floods = sorted(results.peers, key=lambda peer: peer is not OURS)
    common.two_at_a_time(
        [partial(flood_one, floods[0], pythons[floods[0].venv], results)]
        + [partial(memory_in, worker, venv, results) for venv, worker in workers.items()]
        + [partial(flood_one, peer, pythons[peer.venv], results) for peer in floods[1:]]
    )


# -- the report ------------------------------------------------------------------------------------


def by_key(cases: Sequence[Case]) -> dict[tuple[str, str, int], Case]:
    return {(case.peer.key, case.kind, case.clients): case for case in cases}


MODE_LABELS = {"refused": ", refused (429)", "banned": ", banned (403)"}
TIME_HEADINGS = ["configuration", "clients", "µs/request", "spread", "overhead vs bare", "x bare"]


def time_table(
    cases: Sequence[Case],
    peers: Sequence[Peer],
    last: Optional[tuple[str, Callable[[Case], str]]] = None,
) -> str:
    """One row per case: median, spread, overhead and ratio vs bare Flask (admitted, or on
    Redis, same client count), then the ratio to each peer's same case, paired by round;
    and the ``last`` column, when given (its heading, and its cell for a case)."""
    found = by_key(cases)
    rows = []
    for case in cases:
        bare = found.get((BARE.key, "redis" if case.mode == "redis" else "admitted", case.clients))
        versus_bare = ["", "1.00x"]
        if case.peer is not BARE and bare is not None:
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
                *([] if last is None else [last[1](case)]),
            ]
        )
    headings = [*TIME_HEADINGS, *(f"x {peer.short}" for peer in peers)]
    return table([*headings, *([] if last is None else [last[0]])], rows)


def function_table(results: Results) -> str:
    """The function peers beside bare Flask (same rounds), and what the route's function
    limit and cost add to the same peer's global rules alone (paired by round)."""
    found = by_key(results.timed)

    def added(case: Case) -> str:
        peer = FUNCTIONS.get(case.peer)
        plain = None if peer is None else found.get((peer.key, "admitted", case.clients))
        return "" if plain is None else f"{overhead(case, plain):+.2f} µs"

    cases = [
        case
        for bare in results.timed
        if bare.peer is BARE
        for case in (bare, *(c for c in results.functions if c.clients == bare.clients))
    ]
    peers = [peer for peer, plain in FUNCTIONS.items() if plain in results.peers]
    return time_table(cases, peers, ("added to the peer's global rules", added))


def redis_table(results: Results) -> str:
    """The time table, and the client commands per request seen by MONITOR."""
    monitored = results.plan.monitor_requests

    def commands(case: Case) -> str:
        counts = results.commands.get(case.peer.key, {})
        detail = ", ".join(f"{name} {n / monitored:g}" for name, n in sorted(counts.items()))
        return f"{sum(counts.values()) / monitored:g} ({detail})" if counts else ""

    peers = [peer for peer in results.peers if peer.redis]
    return time_table(results.redis, peers, ("commands/request", commands))


def memory_table(found: dict[str, dict[str, float]], peers: Sequence[Peer]) -> str:
    ours = found[OURS.key]
    rows = [
        [peer.label]
        + [f"{found[peer.key][after]:,.0f}" for after in ("1", "20")]
        + [f"{found[peer.key][after] / ours[after]:.1f}x" for after in ("1", "20")]
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


def redis_target(results: Results, targets: Targets) -> None:
    """Ours' overhead on Redis over a redis-py PING's, each made in a request (bare
    Flask's time taken from both, round by round): the round trip every Redis limiter
    pays, in the same place, with Redis as idle between requests as for ours."""
    target = "Redis: overhead at most 1.5x a redis-py PING round trip made in a request (ours)"
    found = by_key(results.redis)
    clients = results.plan.redis_clients
    cases = [found.get((peer.key, "redis", clients)) for peer in (OURS, PINGED, BARE)]
    if any(case is None for case in cases):
        targets.add(target, results.redis_note, None)
        return
    ours, pinged, bare = (case.samples for case in cases if case is not None)
    ours_over = statistics.median(o - b for o, b in zip(ours, bare))
    ping_over = statistics.median(p - b for p, b in zip(pinged, bare))
    factor = statistics.median((o - b) / (p - b) for o, p, b in zip(ours, pinged, bare))
    targets.add(target, f"{ours_over:.2f} µs vs {ping_over:.2f} µs: {factor:.2f}x", factor <= 1.5)


def load_targets(targets: Targets) -> None:
    """The target rows of ``load.py``'s last report (LOAD.md), as written there."""
    text = LOAD.read_text(encoding="utf-8") if LOAD.exists() else ""
    generated = re.search(r"^Generated by `benchmarks/load.py` on ([^,]+),", text, re.MULTILINE)
    when = f" (LOAD.md, {generated[1]})" if generated else " (LOAD.md)"
    rows = [line for line in text.splitlines() if line.startswith("| under attack")]
    for line in rows:
        target, measured, status = (cell.strip() for cell in line.strip("|").split(" | "))
        targets.rows.append([target + when, measured, status])
    if not rows:
        targets.add(
            "under attack (90% refused) behind gunicorn, ours at least bare Flask's requests "
            "per second",
            "not measured: no LOAD.md (`benchmarks/load.py` writes it)",
            None,
        )


def targets(results: Results) -> str:
    """Where each target of issues 6 and 15 (and the design's memory bound) stands."""
    found, found_targets = by_key(results.timed), Targets()
    add = found_targets.add
    unbuilt = "not measured: the peer's venv is not built"
    for count in results.plan.client_counts:
        bare = found[(BARE.key, "admitted", count)]
        ours_case = found[(OURS.key, "admitted", count)]
        ours = overhead(ours_case, bare)
        clients = f"{count:,} client{'s' if count > 1 else ''}"
        # Ours admitting, at most this many times bare Flask: 1.15x from 100,000 clients on.
        bound, times = 1.15 if count >= 100_000 else 1.10, ratio(ours_case, bare)
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
    target = "Redis: exactly 1 client command per request (ours)"
    if OURS.key in results.commands:
        monitored = results.plan.monitor_requests
        per_request = sum(results.commands[OURS.key].values()) / monitored
        theirs = ""
        if MOVING.key in results.commands:
            moving_commands = sum(results.commands[MOVING.key].values())
            theirs = f" (Flask-Limiter: {moving_commands / monitored:g})"
        add(target, f"{per_request:g}{theirs}", per_request == 1)
    else:
        add(target, results.redis_note, None)
    redis_target(results, found_targets)
    points = results.flood[OURS.key]["points"]
    settled = next(p for p in points if p["clients"] >= 2 * results.plan.flood_every)
    end = points[-1]
    add(
        "design: memory bounded by default (ours' traced memory flat once the bound is full)",
        f"{settled['traced'] / 1e6:.1f} MB at {settled['clients']:,} clients, "
        f"{end['traced'] / 1e6:.1f} MB at {end['clients']:,}",
        None if results.smoke else end["traced"] <= 1.05 * settled["traced"],
    )
    load_targets(found_targets)
    return found_targets.table()


def readings(cases: Sequence[Case]) -> str:
    """The clock readings per admitted request at one client, of each peer that has one."""
    return ", ".join(
        f"{case.peer.short} {case.facts['clock_readings_per_request']:.2f}"
        for case in cases
        if case.mode == "admitted" and case.clients == 1 and case.peer is not BARE
    )


def report(results: Results) -> str:
    plan, smoke = results.plan, results.smoke
    redis = results.redis_note.capitalize() + "."
    if not results.redis_note:
        redis = common.template(
            "results-redis.md",
            clients=f"{plan.redis_clients:,}",
            rounds=plan.redis_rounds,
            requests=f"{plan.redis_requests:,}",
            monitored=f"{plan.monitor_requests:,}",
            table=redis_table(results),
            ping=f"{results.ping:.1f}",
        )
    return (
        common.template(
            "results.md",
            generated=common.generated(
                "peers.py", smoke, results.seconds, "tiny counts, not numbers to quote."
            ),
            machine=common.machine(),
            python=platform.python_version(),
            interpreters=common.interpreters(results.versions),
            rules=RATE_LIMIT_RULES,
            ban_rule=BAN_RULE,
            lacks="; ".join(f"{peer.label}: {peer.lacks}" for peer in ALL if peer.lacks),
            unmeasured="".join(
                f"\n- Not measured (its venv is not built): {peer.label}."
                for peer in ALL
                if peer not in results.peers
            ),
            targets=targets(results),
            rounds=plan.rounds,
            requests=f"{plan.requests:,}",
            time_table=time_table(results.timed, results.peers),
            readings=readings(results.timed),
            pro_limit=harness.PRO_LIMIT,
            free_limit=harness.FREE_LIMIT,
            function_readings=readings(results.functions) or "none measured",
            function_table=function_table(results),
            memory_clients=f"{plan.memory_clients:,}",
            memory_table=memory_table(results.memory, results.peers),
            redis=redis,
            flood_clients=f"{plan.flood_clients:,}",
            flood_every=f"{plan.flood_every:,}",
            ceiling=f"{plan.flood_ceiling / 2**30:g}",
            budget=f"{plan.flood_budget:g}",
            check=f"{plan.flood_every // 10:,}",
            flood_table=flood_table(results.flood),
        )
        + "\n"
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    smoke = common.parser(__doc__, "tiny counts: checks that everything runs")
    args = smoke.parse_args(argv)
    plan = SMOKE if args.smoke else FULL
    started = time.perf_counter()
    pythons = common.worker_interpreters(install=not args.smoke, log=log)
    results = Results(plan, args.smoke, tuple(peer for peer in ALL if peer.venv in pythons))
    workers = {venv: Worker(venv, python) for venv, python in pythons.items()}
    try:
        results.versions = {venv: worker.ask("hello") for venv, worker in workers.items()}
        measure_time(workers, results)
        measure_redis(workers, results)
        measure_memory_and_flood(workers, pythons, results)
    finally:
        for worker in workers.values():
            worker.close()
    results.seconds = time.perf_counter() - started
    common.publish(report(results), RESULTS, smoke=args.smoke, log=log)


if __name__ == "__main__":
    main()
