"""End to end: requests per second and latency behind gunicorn, under real HTTP load.

Not a test: it prints one Markdown report (written to ``benchmarks/LOAD.md`` too) and
fails only when a run got statuses its traffic should not (a limit hit by normal traffic,
an attacker let through, an error). ``make bench`` runs it (about 4 minutes on two cores);
``--smoke``: one second of each mix against ours only (skipped without wrk).

Each configuration is ``harness.served(...)`` (bare Flask, ours, Flask-Limiter's two memory
strategies, 1.0.0; ours and the moving window on Redis too), served by gunicorn with one
sync worker from its own interpreter (the peers' venvs are ``peers.py``'s), one server per
configuration and mix, a redis-server each on Redis. The load generator is wrk
(``load.lua``) or, without it, a much slower Python one. ``normal`` traffic: legitimate
clients in turn, all admitted; ``attack``: 9 requests in 10 from one attacker over its
limits. A warm-up run per server, then rounds, each round's order shifted by one.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import common
import redis
from common import HERE, Interpreter, table
from harness import BAN_RULE, RATE_LIMIT_RULES
from peers import BARE, FIXED, MOVING, ORIGINAL, OURS, Peer

from support.servers import ServerProcess, fetch, free_port

LUA, LOAD_MD = HERE / "load.lua", HERE / "LOAD.md"
ATTACKER = "192.0.2.1"
MIXES = {
    "normal": "every request from a legitimate client, each far below its limits",
    "attack": "9 in 10 from one attacker over its limits, 1 in 10 from legitimate clients",
}
REFUSED = {"429", "403"}
ALLOWANCE = max(rule["count"] / rule["window"] for rule in RATE_LIMIT_RULES)
"""The most requests a second the rules let the attacker through (in bursts)."""
WORKER_SETTINGS = ("--workers", "1", "--worker-class", "sync", "--backlog", "2048")

log = common.logger("load")


@dataclass(frozen=True)
class Plan:
    seconds: int
    """One timed run (wrk counts whole seconds)."""
    warm_up: int
    """Each server's untimed first run, 0 for none."""
    rounds: int
    threads: int
    connections: int
    clients: int
    """Legitimate clients per generator thread."""


FULL = Plan(seconds=3, warm_up=1, rounds=5, threads=1, connections=2, clients=1_000)
SMOKE = Plan(seconds=1, warm_up=0, rounds=1, threads=1, connections=2, clients=1_000)


@dataclass(frozen=True)
class Run:
    requests: int
    seconds: float
    p50_us: float
    p99_us: float
    statuses: dict[str, int]
    errors: int
    """Socket errors and timeouts (no response)."""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def refused(self) -> int:
        return sum(self.statuses.get(status, 0) for status in REFUSED)


class Wrk:
    """wrk with ``load.lua``: the mix's requests, statuses counted, one JSON line at the end."""

    def __init__(self, executable: str, plan: Plan) -> None:
        self.executable, self.plan = executable, plan
        found = subprocess.run([executable, "-v"], capture_output=True, text=True, check=False)
        words = (found.stdout + found.stderr).split()
        name = f"wrk {words[1] if len(words) > 1 else ''}".strip()
        self.name = f"{name}, {plan.threads} thread(s), {plan.connections} connections"

    def run(self, port: int, mix: str, seconds: int) -> Run:
        plan = self.plan
        command = [
            *(self.executable, f"-t{plan.threads}", f"-c{plan.connections}", f"-d{seconds}s"),
            *("--timeout", "10s", "-s", str(LUA), f"http://127.0.0.1:{port}/"),
            *("--", mix, str(plan.clients)),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30)
        found = re.search(r"^LOAD-RESULT (.*)$", done.stdout, re.MULTILINE)
        if done.returncode != 0 or found is None:
            raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        result = json.loads(found.group(1))
        fields = ("requests", "p50_us", "p99_us", "statuses", "errors")
        return Run(seconds=result["duration_us"] / 1e6, **{name: result[name] for name in fields})


class PythonLoad:
    """Without wrk: ``plan.connections`` threads sending load.lua's sequence of requests,
    a new ``http.client`` connection each (``fetch``)."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.name = "the Python fallback, threads + http.client (far slower than wrk), "
        self.name += f"{plan.connections} threads, a connection each"

    def run(self, port: int, mix: str, seconds: int) -> Run:
        lock, latencies, statuses = threading.Lock(), list[float](), dict[str, int]()
        errors, started = [0], time.perf_counter()

        def loop(thread: int) -> None:
            mine, seen, failed, sent, legitimate = [], dict[str, int](), 0, 0, 0
            while time.perf_counter() < started + seconds:
                sent, client = sent + 1, ATTACKER
                if mix != "attack" or not sent % 10:  # as load.lua: 10.T.x.y for thread T
                    n, legitimate = legitimate, (legitimate + 1) % self.plan.clients
                    client = f"10.{thread}.{n // 250}.{n % 250 + 1}"
                start = time.perf_counter()
                try:
                    status = str(fetch(f"http://127.0.0.1:{port}/", client).status)
                except OSError:
                    failed += 1
                    continue
                mine.append(time.perf_counter() - start)
                seen[status] = seen.get(status, 0) + 1
            with lock:
                latencies.extend(mine)
                for status, count in seen.items():
                    statuses[status] = statuses.get(status, 0) + count
                errors[0] += failed

        threads = [
            threading.Thread(target=loop, args=(n + 1,)) for n in range(self.plan.connections)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
        return Run(len(latencies), elapsed, cuts[49] * 1e6, cuts[98] * 1e6, statuses, errors[0])


Generator = Union[Wrk, PythonLoad]


@dataclass(frozen=True)
class Served:
    """One configuration: a peer on a storage."""

    peer: Peer
    redis: bool = False

    @property
    def label(self) -> str:
        return self.peer.label + (", Redis" if self.redis else "")


FULL_CONFIGURATIONS = (
    *(Served(peer) for peer in (BARE, OURS, MOVING, FIXED, ORIGINAL)),
    *(Served(peer, redis=True) for peer in (OURS, MOVING)),
)
SMOKE_CONFIGURATIONS = (Served(OURS),)


class Server(ServerProcess):
    """gunicorn serving one configuration (``harness.served``) and mix on a free loopback
    port, one sync worker, its log in ``directory``."""

    def __init__(
        self, served: Served, mix: str, python: Interpreter, storage: str, directory: Path
    ) -> None:
        command, env = python
        port = free_port()
        factory = f"harness:served({served.peer.key!r}, {storage!r})"
        gunicorn = [*command, "-m", "gunicorn", "--chdir", str(HERE), *WORKER_SETTINGS]
        gunicorn += ["--bind", f"127.0.0.1:{port}", "--log-level", "warning", factory]
        super().__init__(gunicorn, directory, port=port, env=env, probe="/")
        self.served, self.mix, self.runs = served, mix, list[Run]()
        self.memory: dict[str, int] = {}
        self.redis: Optional[redis.Redis] = None
        self.redis_memory: dict[str, int] = {}

    def name(self) -> str:
        return f"{self.served.label} / {self.mix}"

    def failed(self, why: str) -> SystemExit:
        return SystemExit(f"{self.name()}: {why}\n{self.log}")

    def read_memory(self) -> None:
        """Right after its last run: the worker's (the master's child's) resident set and
        its peak, and what its redis-server holds (keys expire with their windows)."""
        assert self.process is not None
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
                for line in (
                    (entry / "status").read_text().splitlines()
                    if parent == self.process.pid
                    else ()
                ):
                    name, _, value = line.partition(":")
                    if name in ("VmRSS", "VmHWM"):
                        self.memory[name] = int(value.split()[0]) * 1024
        if self.redis is not None:
            used = self.redis.info("memory")["used_memory"] - self.redis_memory["empty"]
            self.redis_memory.update(used=used, keys=self.redis.dbsize())


def check(server: Server, run: Run) -> None:
    """Fail when the run measured another path than its mix means to."""
    if set(run.statuses) - {"200"} - REFUSED:
        raise server.failed(f"unexpected statuses {run.statuses}")
    if server.mix == "normal" or server.served.peer is BARE:
        if set(run.statuses) != {"200"}:
            raise server.failed(f"expected only 200s, got {run.statuses}")
    elif run.statuses.get("200", 0) > math.ceil(run.requests / 10) + ALLOWANCE * (run.seconds + 1):
        raise server.failed(f"the attacker was not kept over its limits: {run.statuses}")


@dataclass
class Results:
    smoke: bool
    plan: Plan
    generator: str
    servers: list[Server] = field(default_factory=list)
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0


def measure(servers: Sequence[Server], generator: Generator, plan: Plan) -> None:
    """A warm-up run per server, then rounds, each round's order shifted by one."""
    for server in servers if plan.warm_up else ():
        log(f"warm-up: {server.name()}")
        check(server, generator.run(server.port, server.mix, plan.warm_up))
    for number in range(plan.rounds):
        log(f"round {number + 1}/{plan.rounds}")
        shift = number % len(servers)
        for server in [*servers[shift:], *servers[:shift]]:
            run = generator.run(server.port, server.mix, plan.seconds)
            check(server, run)
            server.runs.append(run)
            if number == plan.rounds - 1:
                server.read_memory()


@contextlib.contextmanager
def started(results: Results, configurations: Sequence[Served], install: bool) -> Iterator[None]:
    """Every server (and a redis-server for each on Redis) up, stopped on the way out."""
    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for served in configurations:
            venv = served.peer.venv
            python = common.interpreter(venv, install)
            assert python is not None  # installed when missing (a smoke run uses ours only)
            if venv not in results.versions:
                results.versions[venv] = common.once(venv, python, "hello")
            for mix in MIXES:
                storage, client = "memory", None
                if served.redis:
                    port = stack.enter_context(common.redis_server())
                    if port is None:
                        log(f"skipping {served.label}: no redis-server on this machine")
                        break
                    storage, client = f"redis://127.0.0.1:{port}/0", redis.Redis(port=port)
                    stack.callback(client.close)
                server = Server(served, mix, python, storage, directory)
                try:
                    server.start()
                except (RuntimeError, TimeoutError) as error:
                    raise server.failed(str(error)) from None
                stack.callback(server.stop)
                if client is not None:
                    server.redis = client
                    server.redis_memory["empty"] = client.info("memory")["used_memory"]
                results.servers.append(server)
        log(f"{len(results.servers)} servers up")
        yield


# -- the report ------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def bare_of(server: Server, servers: Sequence[Server]) -> Optional[Server]:
    return next((s for s in servers if s.served.peer is BARE and s.mix == server.mix), None)


def ratios(server: Server, other: Server) -> list[float]:
    """The per-round ratios of requests per second."""
    return [a.rps / b.rps for a, b in zip(server.runs, other.runs)]


def span(server: Server, other: Server) -> str:
    """The median ratio, and the lowest and highest of the rounds."""
    found = ratios(server, other)
    spread = f" ({min(found):.2f} to {max(found):.2f})" if len(found) > 1 else ""
    return f"{median(found):.2f}x{spread}"


def results_table(results: Results) -> str:
    rows = []
    for server in sorted(results.servers, key=lambda server: list(MIXES).index(server.mix)):
        runs, bare, stored = server.runs, bare_of(server, results.servers), server.redis_memory
        requests, errors = sum(run.requests for run in runs), sum(run.errors for run in runs)
        rows.append(
            [
                server.served.label,
                server.mix,
                f"{median([run.rps for run in runs]):,.0f}",
                "" if bare is None or bare is server else span(server, bare),
                f"{median([run.p50_us for run in runs]) / 1000:.2f}",
                f"{median([run.p99_us for run in runs]) / 1000:.2f}",
                f"{sum(run.refused for run in runs) / requests:.1%}"
                + (f" ({errors} errors)" if errors else ""),
                f"{server.memory.get('VmRSS', 0) / 1e6:.0f} / "
                f"{server.memory.get('VmHWM', 0) / 1e6:.0f}",
                f"{stored['used'] / 1e6:.1f} MB, {stored['keys']:,} keys" if stored else "",
            ]
        )
    headings = ["configuration", "traffic", "requests/s", "x bare", "p50 ms", "p99 ms"]
    headings += ["refused", "worker RSS / peak MB", "Redis used memory"]
    return table(headings, rows, text=2)


def targets(results: Results) -> str:
    found = common.Targets()
    for server in results.servers:
        bare = bare_of(server, results.servers)
        if server.served.peer is OURS and server.mix == "attack" and bare is not None:
            found.add(
                "under attack (90% refused) behind gunicorn, ours serves at least as many "
                "requests per second as bare Flask serving the same mix of 200s"
                + (" (ours on Redis)" if server.redis else ""),
                f"{median([run.rps for run in server.runs]):,.0f} vs "
                f"{median([run.rps for run in bare.runs]):,.0f} requests/s: " + span(server, bare),
                median(ratios(server, bare)) >= 1,
            )
    return found.table() if found else ""


def report(results: Results) -> str:
    plan, found_targets = results.plan, targets(results)
    return (
        common.template(
            "load.md",
            generated=common.generated(
                "load.py", results.smoke, results.seconds, "one short run, not numbers to quote."
            ),
            machine=common.machine(),
            interpreters=common.interpreters(results.versions),
            generator=results.generator,
            settings=" ".join(WORKER_SETTINGS),
            rules=RATE_LIMIT_RULES,
            ban_rule=BAN_RULE,
            normal=MIXES["normal"],
            attack=MIXES["attack"],
            clients=f"{plan.clients:,}",
            attacker=ATTACKER,
            warm_up=f"a {plan.warm_up} s warm-up per server" if plan.warm_up else "no warm-up",
            rounds=plan.rounds,
            seconds=plan.seconds,
            targets=f"\n## Target\n\n{found_targets}\n" if found_targets else "",
            table=results_table(results),
        )
        + "\n"
    )


def choose_generator(requested: str, smoke: bool, plan: Plan) -> Optional[Generator]:
    executable = shutil.which("wrk")
    if requested == "python":
        return PythonLoad(plan)
    if executable is not None:
        return Wrk(executable, plan)
    if requested == "wrk" or smoke:
        return None
    log("wrk is not installed: falling back to the Python load generator (far slower)")
    return PythonLoad(plan)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = common.parser(__doc__, "one second of each mix against ours only")
    parser.add_argument(
        "--generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="auto: wrk when installed, else the Python one (--smoke then skips)",
    )
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else FULL
    generator = choose_generator(args.generator, args.smoke, plan)
    if generator is None:
        print(
            "load.py: skipped: wrk is not installed (Debian/Ubuntu: apt-get install wrk; "
            "or run with --generator python)",
            flush=True,
        )
        return
    results = Results(args.smoke, plan, generator.name)
    begun = time.perf_counter()
    configurations = SMOKE_CONFIGURATIONS if args.smoke else FULL_CONFIGURATIONS
    with started(results, configurations, not args.smoke):
        measure(results.servers, generator, plan)
    results.seconds = time.perf_counter() - begun
    common.publish(report(results), LOAD_MD, smoke=args.smoke, log=log)


if __name__ == "__main__":
    main()
