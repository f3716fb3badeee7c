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
import http.client
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
from typing import Any, Optional, Protocol

import common
import redis
from common import HERE, Interpreter, Worker, table
from harness import BAN_RULE, RATE_LIMIT_RULES
from peers import BARE, FIXED, MOVING, ORIGINAL, OURS, Peer

LUA, LOAD_MD = HERE / "load.lua", HERE / "LOAD.md"
ATTACKER = "192.0.2.1"
MIXES = {
    "normal": "every request from a legitimate client, each far below its limits",
    "attack": "9 in 10 from one attacker over its limits, 1 in 10 from legitimate clients",
}
REFUSED = {"429", "403"}
ALLOWANCE = max(rule["count"] / rule["window"] for rule in RATE_LIMIT_RULES)
"""The most requests per second the rules let the attacker through (its 1-second rule,
until the 10-second one fills: 20 a second in bursts, 10 a second on average)."""
WORKER_SETTINGS = ("--workers", "1", "--worker-class", "sync", "--backlog", "2048")

log = common.logger("load")


@dataclass(frozen=True)
class Plan:
    seconds: int
    """Length of one timed run (wrk counts whole seconds)."""
    warm_up: int
    """Length of each server's untimed first run, 0 for none."""
    rounds: int
    threads: int
    connections: int
    clients: int
    """Legitimate clients per generator thread."""


FULL = Plan(seconds=3, warm_up=1, rounds=5, threads=1, connections=2, clients=1_000)
SMOKE = Plan(seconds=1, warm_up=0, rounds=1, threads=1, connections=2, clients=1_000)


# -- one run of the load generator ----------------------------------------------------------


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


class Generator(Protocol):
    name: str

    def shape(self, plan: Plan) -> str:
        """Its threads and connections."""
        ...

    def run(self, port: int, mix: str, seconds: int, plan: Plan) -> Run: ...


class Wrk:
    """wrk with ``load.lua``: the mix's requests, statuses counted, one JSON line at the end."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        found = subprocess.run([executable, "-v"], capture_output=True, text=True, check=False)
        words = (found.stdout + found.stderr).split()
        self.name = f"wrk {words[1] if len(words) > 1 else ''}".strip()

    def shape(self, plan: Plan) -> str:
        return f"{plan.threads} thread(s), {plan.connections} connections"

    def run(self, port: int, mix: str, seconds: int, plan: Plan) -> Run:
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
    """The fallback without wrk: ``plan.connections`` threads, each sending load.lua's
    sequence of requests (thread by thread) over a new ``http.client`` connection each."""

    name = "the Python fallback, threads + http.client (far slower than wrk)"

    def shape(self, plan: Plan) -> str:
        return f"{plan.connections} threads, a connection each"

    def run(self, port: int, mix: str, seconds: int, plan: Plan) -> Run:
        lock = threading.Lock()
        latencies: list[float] = []
        statuses: dict[str, int] = {}
        errors = [0]
        started = time.perf_counter()
        deadline = started + seconds

        def loop(thread: int) -> None:
            mine: list[float] = []
            seen: dict[str, int] = {}
            failed = sent = next_legitimate = 0
            while time.perf_counter() < deadline:
                sent += 1
                client = ATTACKER
                if mix != "attack" or not sent % 10:  # as load.lua: 10.T.x.y for thread T
                    n, next_legitimate = next_legitimate, (next_legitimate + 1) % plan.clients
                    client = f"10.{thread}.{n // 250}.{n % 250 + 1}"
                start = time.perf_counter()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                try:
                    connection.request("GET", "/", headers={"X-Forwarded-For": client})
                    response = connection.getresponse()
                    response.read()
                except OSError:
                    failed += 1
                    continue
                finally:
                    connection.close()
                mine.append(time.perf_counter() - start)
                seen[str(response.status)] = seen.get(str(response.status), 0) + 1
            with lock:
                latencies.extend(mine)
                for status, count in seen.items():
                    statuses[status] = statuses.get(status, 0) + count
                errors[0] += failed

        threads = [threading.Thread(target=loop, args=(n + 1,)) for n in range(plan.connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
        return Run(len(latencies), elapsed, cuts[49] * 1e6, cuts[98] * 1e6, statuses, errors[0])


# -- servers --------------------------------------------------------------------------------------


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


class Server:
    """gunicorn serving one configuration on a free loopback port, one sync worker."""

    def __init__(self, served: Served, mix: str, python: Interpreter, storage: str) -> None:
        self.served, self.mix, self.storage = served, mix, storage
        self.port = common.free_port()
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by stop())
        factory = f"harness:served({served.peer.key!r}, {storage!r})"
        command, env = python
        self.process = subprocess.Popen(
            [
                *(*command, "-m", "gunicorn", "--chdir", str(HERE), *WORKER_SETTINGS),
                *("--bind", f"127.0.0.1:{self.port}", "--log-level", "warning", factory),
            ],
            env=env,
            stdout=self.log,
            stderr=self.log,
        )
        self.runs: list[Run] = []
        self.memory: dict[str, int] = {}
        self.redis: Optional[redis.Redis] = None
        self.redis_memory: dict[str, int] = {}

    def name(self) -> str:
        return f"{self.served.label} / {self.mix}"

    def failed(self, why: str) -> SystemExit:
        self.log.seek(0)
        return SystemExit(f"{self.name()}: {why}\n{self.log.read()}")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise self.failed("gunicorn exited")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                connection.request("GET", "/")
                status = connection.getresponse().status
                connection.close()
                if status == 200:
                    return
                raise self.failed(f"the first request got {status}")
            except OSError:
                if time.monotonic() > deadline:
                    raise self.failed("gunicorn did not answer") from None
                time.sleep(0.1)

    def worker_pid(self) -> int:
        """The one worker: the process whose parent is the gunicorn master."""
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat = (entry / "stat").read_text()
                    if int(stat.rpartition(")")[2].split()[1]) == self.process.pid:
                        return int(entry.name)
        raise self.failed("no worker process found")

    def read_memory(self) -> None:
        """Right after its last run: the worker's resident set and its peak (Linux), in
        bytes, and what its redis-server holds (keys expire with their windows)."""
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.worker_pid()}/status").read_text().splitlines():
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    self.memory[name] = int(value.split()[0]) * 1024
        if self.redis is not None:
            used = self.redis.info("memory")["used_memory"] - self.redis_memory["empty"]
            self.redis_memory.update(used=used, keys=self.redis.dbsize())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # gunicorn's graceful shutdown
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        if self.redis is not None:
            self.redis.close()


# -- the run ---------------------------------------------------------------------------------------


def check(server: Server, run: Run) -> None:
    """Fail when the run measured another path than its mix means to."""
    other = set(run.statuses) - {"200"} - REFUSED
    if other:
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
    """Its name and shape, for the report."""
    servers: list[Server] = field(default_factory=list)
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0


def measure(servers: Sequence[Server], generator: Generator, plan: Plan) -> None:
    if plan.warm_up:
        for server in servers:
            log(f"warm-up: {server.name()}")
            check(server, generator.run(server.port, server.mix, plan.warm_up, plan))
    for number in range(plan.rounds):
        log(f"round {number + 1}/{plan.rounds}")
        shift = number % len(servers)
        for server in [*servers[shift:], *servers[:shift]]:
            run = generator.run(server.port, server.mix, plan.seconds, plan)
            check(server, run)
            server.runs.append(run)
            if number == plan.rounds - 1:
                server.read_memory()


def versions(venv: str, python: Interpreter) -> dict[str, Any]:
    """``harness.versions()`` in that interpreter, gunicorn's version included."""
    worker = Worker(venv, python)
    try:
        return worker.ask("hello", extra=["gunicorn"])
    finally:
        worker.close()


@contextlib.contextmanager
def started(results: Results, configurations: Sequence[Served], install: bool) -> Iterator[None]:
    """Every server (and redis-server) up, stopped on the way out."""
    with contextlib.ExitStack() as stack:
        for served in configurations:
            python = common.interpreter(served.peer.venv, install)
            if python is None:
                raise SystemExit(
                    f"benchmarks/.venvs/{served.peer.venv} is not built: run `make bench-peers`"
                )
            if served.peer.venv not in results.versions:
                results.versions[served.peer.venv] = versions(served.peer.venv, python)
            for mix in MIXES:
                storage, client = "memory", None
                if served.redis:
                    port = stack.enter_context(common.redis_server())
                    if port is None:
                        log(f"skipping {served.label}: no redis-server on this machine")
                        break
                    storage, client = f"redis://127.0.0.1:{port}/0", redis.Redis(port=port)
                server = Server(served, mix, python, storage)
                stack.callback(server.stop)
                if client is not None:
                    server.redis = client
                    server.redis_memory["empty"] = client.info("memory")["used_memory"]
                results.servers.append(server)
        for server in results.servers:
            server.wait_ready()
        log(f"{len(results.servers)} servers up")
        yield


# -- the report ------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def bare_of(server: Server, servers: Sequence[Server]) -> Optional[Server]:
    return next(
        (other for other in servers if other.served.peer is BARE and other.mix == server.mix),
        None,
    )


def ratios(server: Server, other: Server) -> list[float]:
    """The per-round ratios of requests per second."""
    return [a.rps / b.rps for a, b in zip(server.runs, other.runs)]


def span(server: Server, other: Server) -> str:
    """The median ratio, and the lowest and highest of the rounds."""
    found = ratios(server, other)
    return f"{median(found):.2f}x" + (
        f" ({min(found):.2f} to {max(found):.2f})" if len(found) > 1 else ""
    )


def results_table(results: Results) -> str:
    rows = []
    for mix in MIXES:
        for server in (server for server in results.servers if server.mix == mix):
            runs = server.runs
            bare = bare_of(server, results.servers)
            requests = sum(run.requests for run in runs)
            refused = sum(run.refused for run in runs)
            errors = sum(run.errors for run in runs)
            stored = server.redis_memory
            rows.append(
                [
                    server.served.label,
                    mix,
                    f"{median([run.rps for run in runs]):,.0f}",
                    "" if bare is None or bare is server else span(server, bare),
                    f"{median([run.p50_us for run in runs]) / 1000:.2f}",
                    f"{median([run.p99_us for run in runs]) / 1000:.2f}",
                    f"{refused / requests:.1%}" + (f" ({errors} errors)" if errors else ""),
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
    return found.table() if found.rows else ""


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


def choose_generator(requested: str, smoke: bool) -> Optional[Generator]:
    executable = shutil.which("wrk")
    if requested == "python":
        return PythonLoad()
    if executable is not None:
        return Wrk(executable)
    if requested == "wrk" or smoke:
        return None
    log("wrk is not installed: falling back to the Python load generator (far slower)")
    return PythonLoad()


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = common.parser(__doc__, "one second of each mix against ours only")
    parser.add_argument(
        "--generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="auto: wrk when installed, else the Python one (--smoke then skips)",
    )
    args = parser.parse_args(argv)
    generator = choose_generator(args.generator, args.smoke)
    if generator is None:
        print(
            "load.py: skipped: wrk is not installed (Debian/Ubuntu: apt-get install wrk; "
            "or run with --generator python)",
            flush=True,
        )
        return
    plan = SMOKE if args.smoke else FULL
    results = Results(args.smoke, plan, f"{generator.name}, {generator.shape(plan)}")
    begun = time.perf_counter()
    with started(
        results, SMOKE_CONFIGURATIONS if args.smoke else FULL_CONFIGURATIONS, not args.smoke
    ):
        measure(results.servers, generator, plan)
    results.seconds = time.perf_counter() - begun
    common.publish(report(results), LOAD_MD, smoke=args.smoke, log=log)


if __name__ == "__main__":
    main()
