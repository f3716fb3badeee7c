"""Side by side with the peers: time per request, memory per client, Redis, flood.
Not a test: it prints RESULTS.md's report (a full run writes it; about 25 minutes on two
cores). ``--smoke``: tiny counts, with the peers whose venvs are built (it builds none);
``--overhead``: ours over bare Flask alone, more rounds (about five minutes); ``--instructions``:
instructions per request under callgrind, INSTRUCTIONS.md (about 20 minutes; 100 000 clients
are left out, too slow to fill under callgrind); ``--redis-parts``: what one Redis request
costs, part by part, next to a redis-py PING (``--hiredis``: again with hiredis)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Optional

import common
import redis
from common import HERE, OURS_VENV, Targets, Worker, configuration, overhead, ratio, table

RESULTS, LOAD, INSTRUCTIONS = HERE / "RESULTS.md", HERE / "LOAD.md", HERE / "INSTRUCTIONS.md"
log = common.logger("peers")


@dataclass(frozen=True)
class Plan:
    client_counts: tuple[int, ...]
    rounds: int
    requests: int
    memory_clients: int = 0
    redis_clients: int = 0
    redis_rounds: int = 0
    redis_requests: int = 0
    monitor_requests: int = 0
    flood_clients: int = 0
    flood_every: int = 0
    flood_ceiling: int = 1 << 30  # bytes of RSS, and seconds, past which a peer's flood stops
    flood_budget: float = 45.0


FULL = Plan((1, 1_000, 100_000), 11, 2_000, 2_000, 10_000, 7, 2_000, 1_000, 1_000_000, 100_000)
SMOKE = Plan((1, 10, 100), 2, 50, 20, 200, 2, 50, 20, 200, 100)
OVERHEAD, OVERHEAD_SMOKE = Plan((1, 1_000, 100_000), 15, 10_000), Plan((1, 10, 100), 2, 200)
"""``--overhead``: client counts (none evicted under the default bound), rounds, requests."""
COUNTED, COUNTED_SMOKE = Plan((1, 1_000), 0, 4_000), Plan((1,), 0, 200)
"""``--instructions``: client counts, and requests counted per configuration."""
PARTS_PLAN, PARTS_SMOKE = Plan((10_000,), 9, 2_000), Plan((200,), 2, 50)


@dataclass(frozen=True)
class Peer:
    """A configuration: the worker's name for it, labels (``short``: its column), its venv."""

    key: str
    label: str
    short: str
    venv: str
    redis: bool = True


HOOK = Peer("hook", "Flask + an empty before_request", "hook", OURS_VENV)
BARE = Peer("bare", "bare Flask", "bare", OURS_VENV)
OURS = Peer("ours", "flask-gatekeeper (this), sliding log", "ours", OURS_VENV)
MOVING = Peer("limiter-moving", "Flask-Limiter 4, moving window", "FL moving", "limiter")
FIXED = Peer("limiter-fixed", "Flask-Limiter 4, fixed window", "FL fixed", "limiter")
ORIGINAL = Peer("original", "flask-gatekeeper 1.0.0", "1.0.0", "original", redis=False)
PINGED = Peer("pinged", "bare Flask making one redis-py PING per request", "PING", OURS_VENV)
"""The yardstick of the Redis target, measured on Redis only."""
ALL = (OURS, MOVING, FIXED, ORIGINAL)  # bare Flask is the floor, not a peer
BANNING = (OURS, ORIGINAL)  # with a ban rule: timed refusing a banned client too
LACKS = {
    MOVING: "no ban rule (only the two rate rules run)",
    FIXED: "no ban rule; fixed windows admit up to twice a rule's count across a boundary",
    ORIGINAL: "no Redis storage; no memory bound",
}
FUNCTIONS = {
    Peer(f"{p.key}-function", f"{label}, limit and cost functions", f"{p.short} fn", p.venv): p
    for p, label in ((OURS, "flask-gatekeeper (this)"), (MOVING, MOVING.label))
}
"""The peers whose route limit and cost are functions of the request: the peer they add to."""
REFUSALS = (("refused", 1, None), ("refused", 1, "*/*"), ("banned", 1, None), ("banned", 1, "*/*"))
"""The refused paths of the targets (one client), with no ``Accept`` header and with one."""
REFUSED_AIM = 1.10  # what a refusal aims to cost, times a bare Flask request (issue 15)
MODE_LABELS = {"refused": ", refused (429)", "banned": ", banned (403)"}
PARTS = {
    "raw-ping": "PING, bare socket",
    "ping": "PING, redis-py (the yardstick)",
    "raw-evalsha": "EVALSHA hit.lua, bare socket",
    "evalsha": "EVALSHA hit.lua, redis-py `client.evalsha`",
    "hit": "`RedisStorage.hit`, the seed's two rules",
    "hit-evalsha": "`RedisStorage.hit` through `client.evalsha` (Cluster's path)",
    "bare": "bare Flask request",
    "pinged": "bare Flask request that makes one redis-py PING (`before_request`)",
    "ours": "GateKeeper request, seed's rules and ban rule",
}
"""``--redis-parts``' rows: the parts of a request, as ``harness.redis_parts`` names them."""


@dataclass
class Case:
    """A peer in a mode, the worker that built it, and its samples (µs per request a round)."""

    peer: Peer
    mode: str
    clients: int
    accept: Optional[str] = None
    storage: str = "memory"
    worker: Optional[Worker] = None
    facts: dict[str, Any] = field(default_factory=dict)
    samples: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.peer.key}/{self.mode}/{self.clients}/{self.accept}"

    @property
    def accepts(self) -> str:
        return "" if self.accept is None else f", Accept: {self.accept}"

    @property
    def kind(self) -> str:
        return self.mode + self.accepts

    @property
    def label(self) -> str:
        return self.peer.label + MODE_LABELS.get(self.mode, "") + self.accepts

    def fields(self) -> dict[str, Any]:
        build = {"peer": self.peer.key, "mode": self.mode, "clients": self.clients}
        return {"case": self.name, **build, "accept": self.accept, **configuration(self.storage)}


@dataclass
class Part:
    worker: Optional[Worker]
    name: str
    samples: list[float] = field(default_factory=list)


def build(workers: dict[str, Worker], cases: Sequence[Case]) -> list[Case]:
    for case in cases:
        log(f"building {case.name}")
        case.worker = workers[case.peer.venv]
        case.facts = case.worker.ask("build", **case.fields())["facts"]
    return list(cases)


def tell(workers: dict[str, Worker], command: str) -> None:
    for worker in workers.values():
        worker.ask(command)


def count_commands(case: Case, port: int, requests: int) -> dict[str, int]:
    """Commands the app sent Redis, seen by MONITOR (a script's show as ``lua``: not counted)."""
    counts, sentinel = Counter[str](), f"peers-sentinel-{case.name}"
    with redis.Redis(port=port) as watcher, redis.Redis(port=port) as marker:
        marker.ping()  # the marker's connection set up (HELLO) before MONITOR watches
        with watcher.monitor() as monitor:
            common.measure(case, requests)
            marker.echo(sentinel)
            for seen in monitor.listen():
                if sentinel in seen["command"]:
                    break
                if seen["client_type"] != "lua":
                    counts[seen["command"].split(" ", 1)[0].upper()] += 1
    return dict(counts)


@dataclass
class Results:
    plan: Plan
    smoke: bool
    peers: tuple[Peer, ...]  # those whose venvs are built
    memory: dict[str, dict[str, float]] = field(default_factory=dict)
    timed: list[Case] = field(default_factory=list)
    functions: list[Case] = field(default_factory=list)
    redis: list[Case] = field(default_factory=list)
    commands: dict[str, dict[str, int]] = field(default_factory=dict)
    redis_note: str = ""
    ping: float = 0.0  # µs per redis-py PING round trip
    flood: dict[str, dict[str, Any]] = field(default_factory=dict)


def measure_time(workers: dict[str, Worker], results: Results) -> None:
    plan, peers = results.plan, results.peers
    cases = [Case(peer, "admitted", n) for n in plan.client_counts for peer in (BARE, *peers)]
    cases += [Case(peer, "refused", 1) for peer in peers]
    cases += [Case(p, *refusal) for refusal in REFUSALS[1:] for p in BANNING if p in peers]
    functions = [Case(p, "admitted", n) for n in plan.client_counts for p in FUNCTIONS]
    results.timed = build(workers, cases)
    results.functions = build(workers, [c for c in functions if FUNCTIONS[c.peer] in peers])
    tell(workers, "freeze")  # the apps, addresses and logs: collections skip them
    common.run_rounds([*results.timed, *results.functions], plan.rounds, plan.requests, log)
    tell(workers, "drop")


def measure_redis(workers: dict[str, Worker], results: Results) -> None:
    plan = results.plan
    with common.redis_server() as port:
        if port is None:
            results.redis_note = "skipped: no redis-server on this machine"
            return
        peers = [peer for peer in (BARE, PINGED, *results.peers) if peer.redis]
        # A database each: Flask-Limiter's strategies would share keys of different types.
        url, clients = f"redis://127.0.0.1:{port}/", plan.redis_clients
        cases = [Case(p, "redis", clients, storage=f"{url}{db}") for db, p in enumerate(peers)]
        results.redis = build(workers, cases)
        for case in cases[1:]:
            log(f"MONITOR: {case.peer.label}")
            results.commands[case.peer.key] = count_commands(case, port, plan.monitor_requests)
        common.run_rounds(cases, plan.redis_rounds, plan.redis_requests, log)
        ping = Case(PINGED, "ping", 0, worker=workers[OURS_VENV])
        workers[OURS_VENV].ask("ping", case=ping.name, url=f"{url}0")
        samples = [common.measure(ping, plan.redis_requests) for _ in range(plan.redis_rounds)]
        results.ping = statistics.median(samples)
        tell(workers, "drop")


def memory_in(worker: Worker, venv: str, results: Results) -> None:
    for peer in (peer for peer in results.peers if peer.venv == venv):
        log(f"memory per client: {peer.label}")
        shape = {"clients": results.plan.memory_clients, "after": [1, 20], **configuration()}
        results.memory[peer.key] = worker.ask("memory", peer=peer.key, **shape)["bytes_per_client"]


def flood_one(peer: Peer, results: Results) -> None:
    """One peer's flood, in a fresh worker (its RSS its own); ours is given the time to finish."""
    plan = results.plan
    log(f"flood: {peer.label}")
    shape = {"clients": plan.flood_clients, "every": plan.flood_every, **configuration()}
    limits = {"ceiling": plan.flood_ceiling, "budget": None if peer is OURS else plan.flood_budget}
    reply = common.once(peer.venv, "flood", peer=peer.key, **shape, **limits)
    log(f"flood done: {peer.label} ({reply['stopped']})")
    base = reply["points"][0]["traced"]
    for point in reply["points"]:  # growth since just before the flood
        point["traced"] -= base
    results.flood[peer.key] = reply


@dataclass(frozen=True)
class Unit:
    """How a table shows a case's samples: µs per request, or instructions."""

    heading: str
    spec: str
    suffix: str = ""
    digits: int = 2  # of a ratio to bare Flask

    def __call__(self, value: float, sign: str = "") -> str:
        return f"{value:{sign}{self.spec}}{self.suffix}"


MICROSECONDS = Unit("µs/request", ".2f", " µs")
INSTRUCTIONS_UNIT = Unit("instructions", ",.0f", digits=3)
Found = dict[tuple[str, str, int], Case]


def by_key(cases: Sequence[Case]) -> Found:
    return {(case.peer.key, case.kind, case.clients): case for case in cases}


def median(case: Case) -> float:
    return statistics.median(case.samples)


def time_table(
    cases: Sequence[Case],
    peers: Sequence[Peer],
    last: Optional[tuple[str, Callable[[Case], str]]] = None,
    unit: Unit = MICROSECONDS,
) -> str:
    """One row per case; ratios to bare Flask (same clients) and to each peer, paired by round."""
    found, rows, timed = by_key(cases), [], unit is MICROSECONDS
    for case in cases:
        bare = found.get((BARE.key, "redis" if case.mode == "redis" else "admitted", case.clients))
        versus_bare = ["", f"{1:.{unit.digits}f}x"]
        if case.peer is not BARE and bare is not None:
            versus_bare = [unit(overhead(case, bare), "+"), f"{ratio(case, bare):.{unit.digits}f}x"]
        others = [found.get((peer.key, case.kind, case.clients)) for peer in peers]
        row = [case.label, f"{case.clients:,}", f"{median(case):{unit.spec}}"]
        row += [common.spread(case.samples)] * timed + versus_bare
        row += ["" if other is None else f"{ratio(case, other):.2f}x" for other in others]
        rows.append(row if last is None else [*row, last[1](case)])
    headings = ["configuration", "clients", unit.heading, *["spread"] * timed]
    headings += ["overhead vs bare", "x bare", *(f"x {peer.short}" for peer in peers)]
    return table([*headings, *([] if last is None else [last[0]])], rows)


def function_table(results: Results) -> str:
    """The function peers, and what they add to the same peer's global rules alone."""
    found = by_key(results.timed)

    def added(case: Case) -> str:
        peer = FUNCTIONS.get(case.peer)
        plain = None if peer is None else found.get((peer.key, "admitted", case.clients))
        return "" if plain is None else MICROSECONDS(overhead(case, plain), "+")

    cases = []
    for bare in (case for case in results.timed if case.peer is BARE):
        cases += [bare, *(c for c in results.functions if c.clients == bare.clients)]
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


def checkpoint(point: Optional[dict[str, Any]]) -> str:
    """A peer's traced / RSS memory at a checkpoint of its flood, and seconds since the start."""
    if point is None:
        return ""
    return f"{point['traced'] / 1e6:,.1f} / {point['rss'] / 1e6:,.0f} MB ({point['seconds']:.0f} s)"


def flood_table(found: dict[str, dict[str, Any]]) -> str:
    """Traced / RSS at each checkpoint (and where a peer stopped), a column per peer."""
    peers = [peer for peer in ALL if peer.key in found]
    points = {peer: {int(p["clients"]): p for p in found[peer.key]["points"]} for peer in peers}
    counts = sorted(set().union(*points.values()) - {0})
    rows = [[f"{n:,}", *(checkpoint(points[peer].get(n)) for peer in peers)] for n in counts]
    ends = [found[peer.key]["points"][-1] for peer in peers]
    per_client = [f"{p['traced'] / max(p['clients'], 1):,.0f}" for p in ends]
    rows += [["traced B/client at the end", *per_client]]
    rows += [["stopped", *(found[peer.key]["stopped"] for peer in peers)]]
    return table(["clients", *(peer.label for peer in peers)], rows)


def speed_targets(found: Found, client_counts: Sequence[int], unit: Unit = MICROSECONDS) -> Targets:
    """Issues 6 and 15's targets on time (or instructions); a missing case's rows: skipped."""

    def at(peer: Peer, kind: str = "admitted", clients: int = 1) -> Case:
        return found[(peer.key, kind, clients)]

    def bare_flask(count: int, bound: float) -> tuple[str, bool]:
        ours, bare = at(OURS, clients=count), at(BARE, clients=count)
        both = f"{unit(median(ours))} vs {unit(median(bare))}"
        return f"{ratio(ours, bare):.3f}x ({both})", ratio(ours, bare) <= bound

    def overheads(peer: Peer, count: int) -> tuple[float, float, str]:
        bare = at(BARE, clients=count)
        mine, theirs = (overhead(at(p, clients=count), bare) for p in (OURS, peer))
        return mine, theirs, f"{unit(mine, '+')} vs {unit(theirs, '+')}"

    def twenty_times(count: int) -> tuple[str, bool]:
        mine, theirs, measured = overheads(MOVING, count)
        factor = f"{theirs / mine:.1f}x" if mine > 0 else "ours at most 0 (noise)"
        return f"{measured}: {factor}", theirs >= 20 * mine

    def smaller(count: int) -> tuple[str, bool]:
        mine, theirs, measured = overheads(ORIGINAL, count)
        return measured, mine < theirs

    def cheaper(kind: str) -> tuple[str, bool]:
        ours, original, bare = at(OURS, kind), at(ORIGINAL, kind), at(BARE)
        each = (f"{unit(median(c))} ({ratio(c, bare):.2f}x bare)" for c in (ours, original))
        return f"{' vs '.join(each)}: {ratio(ours, original):.3f}x", ratio(ours, original) < 1

    def aim(kind: str) -> tuple[str, bool]:
        times = ratio(at(OURS, kind), at(BARE))
        return f"{times:.3f}x", times <= REFUSED_AIM

    targets, moving = Targets(), "Flask-Limiter moving window's"
    add = targets.measured
    for count in client_counts:
        clients = f"{count:,} client{'s' if count > 1 else ''}"
        bound = 1.15 if count >= 100_000 else 1.10
        add(f"admitted at most {bound:.2f}x bare Flask, {clients}", bare_flask, count, bound)
        add(f"overhead at least 20x smaller than {moving}, {clients}", twenty_times, count)
        add(f"overhead smaller than flask-gatekeeper 1.0.0's, {clients}", smaller, count)
    for refusal in REFUSALS:
        case = Case(OURS, *refusal)
        what = MODE_LABELS[case.mode][2:] + case.accepts
        add(f"{what}: cheaper than flask-gatekeeper 1.0.0's refusal", cheaper, case.kind)
        add(f"{what}: at most {REFUSED_AIM:.2f}x bare Flask (the aim)", aim, case.kind)
    return targets


def load_targets(targets: Targets) -> None:
    """The target rows of ``load.py``'s last report (LOAD.md), as written there."""
    text = LOAD.read_text(encoding="utf-8") if LOAD.exists() else ""
    generated = re.search(r"^Generated by `benchmarks/load.py` on ([^,]+),", text, re.MULTILINE)
    when = f" (LOAD.md, {generated[1]})" if generated else " (LOAD.md)"
    rows = [line.strip("|").split(" | ") for line in text.splitlines() if "| under attack" in line]
    for target, measured, status in rows:
        targets.append([target.strip() + when, measured.strip(), status.strip()])
    if not rows:
        target = "under attack (90% refused) behind gunicorn, ours at least bare Flask's requests"
        missing = "not measured: no LOAD.md (`benchmarks/load.py` writes it)"
        targets.add(f"{target} per second", missing, None)


def targets(results: Results) -> str:
    """Where each target of issues 6 and 15 (and the design's memory bound) stands."""
    found = speed_targets(by_key(results.timed), results.plan.client_counts)
    memory, commands, monitored = results.memory, results.commands, results.plan.monitor_requests
    ours_1, ours_20 = memory[OURS.key]["1"], memory[OURS.key]["20"]
    found.add("memory per client at most 300 B after 1 request", f"{ours_1:,.0f} B", ours_1 <= 300)

    def smaller_than_moving() -> tuple[str, bool]:
        moving_20 = memory[MOVING.key]["20"]
        times = moving_20 / ours_20
        return f"{ours_20:,.0f} B vs {moving_20:,.0f} B: {times:.1f}x", times >= 3

    def one_command() -> tuple[str, bool]:
        per_request = sum(commands[OURS.key].values()) / monitored
        theirs = commands.get(MOVING.key)
        theirs_text = f" (Flask-Limiter: {sum(theirs.values()) / monitored:g})" if theirs else ""
        return f"{per_request:g}{theirs_text}", per_request == 1

    def against_ping() -> tuple[str, bool]:
        """Ours' Redis overhead over a PING's in a request (less bare Flask's, paired by round)."""
        on_redis, clients = by_key(results.redis), results.plan.redis_clients
        ours, pinged, bare = (on_redis[(p.key, "redis", clients)] for p in (OURS, PINGED, BARE))
        factor = statistics.median(
            (o - b) / (p - b) for o, p, b in zip(ours.samples, pinged.samples, bare.samples)
        )
        both = f"{overhead(ours, bare):.2f} µs vs {overhead(pinged, bare):.2f} µs"
        return f"{both}: {factor:.2f}x", factor <= 1.5

    moving = "Flask-Limiter moving window's after 20"
    found.measured(f"memory per client at least 3x smaller than {moving}", smaller_than_moving)
    redis_rows = {
        "exactly 1 client command per request (ours)": one_command,
        "overhead at most 1.5x a redis-py PING round trip made in a request (ours)": against_ping,
    }
    for target, row in redis_rows.items():
        found.measured(f"Redis: {target}", row, missing=results.redis_note)
    points = results.flood[OURS.key]["points"]
    settled = next(p for p in points if p["clients"] >= 2 * results.plan.flood_every)
    end = points[-1]
    found.add(
        "design: memory bounded by default (ours' traced memory flat once the bound is full)",
        f"{settled['traced'] / 1e6:.1f} MB at {settled['clients']:,} clients, "
        f"{end['traced'] / 1e6:.1f} MB at {end['clients']:,}",
        None if results.smoke else end["traced"] <= 1.05 * settled["traced"],
    )
    load_targets(found)
    return found.table()


def side_by_side(smoke: bool, started: float) -> str:
    """RESULTS.md: every peer whose venv is built (or, unless ``smoke``, built now)."""
    pythons = common.worker_interpreters(install=not smoke)
    results = Results(SMOKE if smoke else FULL, smoke, tuple(p for p in ALL if p.venv in pythons))
    with contextlib.ExitStack() as stack:
        workers = {
            v: stack.enter_context(contextlib.closing(Worker(v, p))) for v, p in pythons.items()
        }
        versions = {venv: worker.ask("hello") for venv, worker in workers.items()}
        measure_time(workers, results)
        measure_redis(workers, results)
        floods = sorted(results.peers, key=lambda peer: peer is not OURS)  # ours' first
        common.in_threads(  # after the timings (memory does not depend on speed)
            [partial(flood_one, floods[0], results)]
            + [partial(memory_in, worker, venv, results) for venv, worker in workers.items()]
            + [partial(flood_one, peer, results) for peer in floods[1:]]
        )
    return common.template(
        "results.md",
        results=results,
        plan=results.plan,
        generated=common.generated("peers.py", smoke, time.perf_counter() - started),
        interpreters=common.interpreters(versions),
        lacks=LACKS,
        unmeasured=[peer for peer in ALL if peer not in results.peers],
        targets=targets(results),
        time_table=time_table(results.timed, results.peers),
        function_table=function_table(results),
        redis_table=redis_table(results),
        flood_table=flood_table(results.flood),
    )


def overhead_report(smoke: bool, started: float) -> str:
    """Ours over bare Flask at each client count, its refusals, and an empty hook."""
    plan, ours = OVERHEAD_SMOKE if smoke else OVERHEAD, replace(OURS, label="GateKeeper")
    cases = [Case(peer, "admitted", n) for n in plan.client_counts for peer in (BARE, ours)]
    cases += [Case(HOOK, "admitted", 1), Case(ours, "refused", 1), Case(ours, "banned", 1)]
    with contextlib.closing(Worker(OURS_VENV)) as worker:
        build({OURS_VENV: worker}, cases)
        worker.ask("freeze")
        common.run_rounds(cases, plan.rounds, plan.requests, log)
    bare_few, ours_few, *_, bare_many, ours_many = cases[: 2 * len(plan.client_counts)]
    return common.template(
        "overhead.md",
        plan=plan,
        table=time_table(cases, []),
        ours_ratio=ratio(ours_many, ours_few),
        bare_ratio=ratio(bare_many, bare_few),
        ours_many=overhead(ours_many, bare_many),
        ours_few=overhead(ours_few, bare_few),
        seconds=time.perf_counter() - started,
    )


def collected(python: common.Interpreter, case: Case, requests: int) -> int:
    """Instructions a worker executes building ``case`` and serving ``requests`` requests."""
    lines = [{"cmd": "build", **case.fields()}]
    lines += [{"cmd": "run", "case": case.name, "requests": requests}] * bool(requests)
    command, env = python
    valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command]
    stdin = "".join(json.dumps(line) + "\n" for line in [*lines, {"cmd": "quit"}])
    env = {**env, "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        [*valgrind, str(HERE / "harness.py")], input=stdin, env=env, capture_output=True, text=True
    )
    for reply in map(json.loads, done.stdout.splitlines()):
        if "error" in reply:
            raise SystemExit(f"{case.label}: {reply['error']}")
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"{case.label}: no instruction count from callgrind:\n{done.stderr}")
    return int(found.group(1))


def instructions_report(smoke: bool, started: float) -> str:
    """The time table's configurations: a run that builds and warms up, less one that serves."""
    pythons = common.worker_interpreters(install=False)
    plan = COUNTED_SMOKE if smoke else COUNTED
    peers = (BARE, OURS) if smoke else (BARE, HOOK, OURS, MOVING, ORIGINAL)
    cases = [Case(peer, "admitted", n) for n in plan.client_counts for peer in peers]
    refusing = {OURS: ("refused", "banned"), ORIGINAL: ("refused", "banned"), MOVING: ("refused",)}
    for peer, modes in {} if smoke else refusing.items():
        cases += [Case(peer, mode, 1, accept) for mode in modes for accept in (None, "*/*")]
    cases = [case for case in cases if case.peer.venv in pythons]

    def count(case: Case) -> None:
        log(f"counting {case.label}, {case.clients} client(s)")
        python, requests = pythons[case.peer.venv], plan.requests
        case.samples = [(collected(python, case, requests) - collected(python, case, 0)) / requests]

    common.in_threads([partial(count, case) for case in cases], os.cpu_count() or 1)
    valgrind = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout
    return common.template(
        "instructions.md",
        generated=common.generated("peers.py --instructions", smoke, time.perf_counter() - started),
        valgrind=valgrind.strip(),
        requests=plan.requests,
        targets=speed_targets(by_key(cases), plan.client_counts, INSTRUCTIONS_UNIT).table(),
        table=time_table(cases, [], unit=INSTRUCTIONS_UNIT),
    )


def parts_report(venv: str, port: int, smoke: bool) -> str:
    """Every part timed in the venv's worker, with Redis's own time per EVALSHA."""
    plan, url = PARTS_SMOKE if smoke else PARTS_PLAN, f"redis://127.0.0.1:{port}/0"
    clients = plan.client_counts[0]
    with contextlib.closing(Worker(venv)) as worker, redis.Redis.from_url(url) as client:
        facts = worker.ask("parts", port=port, clients=clients, **configuration(url))["facts"]
        parts = [Part(worker, name) for name in PARTS]
        worker.ask("freeze")
        client.config_resetstat()
        common.run_rounds(parts, plan.rounds, plan.requests, log)
        stats = client.info("commandstats").get("cmdstat_evalsha", {})
        client.flushall()
    found = {PARTS[part.name]: part.samples for part in parts}
    ping, bare = found[PARTS["ping"]], found[PARTS["bare"]]
    in_request = [a - b for a, b in zip(found[PARTS["pinged"]], bare)]
    overheads = [a - b for a, b in zip(found[PARTS["ours"]], bare)]
    found["a redis-py PING in a request (the PING request minus bare Flask)"] = in_request
    found["GateKeeper's overhead per request (its request minus bare Flask)"] = overheads

    def times(samples: list[float], yardstick: list[float]) -> str:
        return f"{statistics.median(a / b for a, b in zip(samples, yardstick)):.2f}x"

    rows = []
    for what, samples in found.items():
        ratios = [times(samples, ping), times(samples, in_request)]
        rows.append([what, f"{statistics.median(samples):.1f}", common.spread(samples), *ratios])
    headings = ["what", "µs per call", "spread", "x redis-py PING", "x PING in a request"]
    return common.template(
        "redis-roundtrip.md",
        facts=facts,
        plan=plan,
        table=table(headings, rows),
        script_us=float(stats.get("usec_per_call", 0.0)),
        hit_ratio=times(found[PARTS["hit"]], ping),
        overhead_ratio=times(overheads, in_request),
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    flags = ("smoke", "overhead", "instructions", "redis_parts", "hiredis")
    args = common.arguments(__doc__, argv, *flags)
    started = time.perf_counter()
    if args.overhead:
        print(overhead_report(args.smoke, started))
    elif args.redis_parts:
        with common.redis_server() as port:
            if port is None:
                print("skipped: no redis-server on this machine")
                return
            venvs = [OURS_VENV, *(["hiredis"] * args.hiredis)]
            print("\n\n".join(parts_report(venv, port, args.smoke) for venv in venvs))
        print(f"\n(run took {time.perf_counter() - started:.0f} s)")
    elif args.instructions and shutil.which("valgrind") is None:
        log("skipped: valgrind is not installed (apt-get install valgrind)")
    elif args.instructions:
        text = instructions_report(args.smoke, started)
        common.publish(text, INSTRUCTIONS, smoke=args.smoke, log=log)
    else:
        common.publish(side_by_side(args.smoke, started), RESULTS, smoke=args.smoke, log=log)


if __name__ == "__main__":
    main()
