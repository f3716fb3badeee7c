"""End to end: requests per second and latency behind gunicorn, under wrk's HTTP load.
Not a test: it prints LOAD.md's report (a full run writes it; about 4 minutes on two
cores), and fails when a run got statuses its traffic should not. Without wrk, it skips.
``--smoke``: one second of each mix against ours."""

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any, Optional

import common
import redis
from common import HERE, table
from harness import RATE_LIMIT_RULES
from peers import BARE, FIXED, LOAD, MOVING, ORIGINAL, OURS, Peer

from support.servers import ServerProcess, free_port

LUA = HERE / "load.lua"
ATTACKER = "192.0.2.1"
MIXES = {
    "normal": "every request from a legitimate client, each far below its limits",
    "attack": "9 in 10 from one attacker over its limits, 1 in 10 from legitimate clients",
}
REFUSED = {"429", "403"}
ALLOWANCE = max(rule["count"] / rule["window"] for rule in RATE_LIMIT_RULES)
"""The most requests a second the rules let the attacker through (in bursts)."""
WORKER_SETTINGS = ("--workers", "1", "--worker-class", "sync", "--backlog", "2048")
FULL_CONFIGURATIONS = [(peer, False) for peer in (BARE, OURS, MOVING, FIXED, ORIGINAL)]
FULL_CONFIGURATIONS += [(OURS, True), (MOVING, True)]  # on Redis

log = common.logger("load")


@dataclass(frozen=True)
class Plan:
    """Seconds per run and per warm-up (0: none), rounds, wrk's threads and connections."""

    seconds: int
    warm_up: int
    rounds: int
    threads: int = 1
    connections: int = 2
    clients: int = 1_000  # legitimate ones, per wrk thread


FULL, SMOKE = Plan(seconds=3, warm_up=1, rounds=5), Plan(seconds=1, warm_up=0, rounds=1)


@dataclass(frozen=True)
class Run:
    """One run of a mix against a server, as ``load.lua`` reports it."""

    requests: int
    duration_us: float
    p50_us: float
    p99_us: float
    statuses: dict[str, int]
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.duration_us * 1e6


def wrk(executable: str, plan: Plan, server: Server, seconds: int) -> Run:
    """wrk with ``load.lua``: the server's mix, statuses counted, one JSON line at the end."""
    command = [executable, f"-t{plan.threads}", f"-c{plan.connections}", f"-d{seconds}s"]
    command += ["--timeout", "10s", "-s", str(LUA), f"http://127.0.0.1:{server.port}/"]
    command += ["--", server.mix, str(plan.clients)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30)
    found = re.search(r"^LOAD-RESULT (.*)$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    result = json.loads(found.group(1))
    return Run(**{name: result[name] for name in Run.__dataclass_fields__})


class Server(ServerProcess):
    """gunicorn serving a peer (``harness.served``, on Redis or not) to one mix."""

    def __init__(self, peer: Peer, redis_port: Optional[int], mix: str, directory: Path) -> None:
        command, env = common.interpreter(peer.venv)  # a smoke run uses ours only
        port = free_port()
        storage = "memory" if redis_port is None else f"redis://127.0.0.1:{redis_port}/0"
        gunicorn = [*command, "-m", "gunicorn", "--chdir", str(HERE), *WORKER_SETTINGS]
        gunicorn += ["--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
        app = f"harness:served({peer.key!r}, {storage!r})"
        super().__init__([*gunicorn, app], directory, port=port, env=env, probe="/")
        self.peer, self.mix, self.runs, self.memory, self.stored = peer, mix, list[Run](), "", ""
        self.label = peer.label + ("" if redis_port is None else ", Redis")
        self.redis = None if redis_port is None else redis.Redis(port=redis_port)
        self.empty = self.redis.info("memory")["used_memory"] if self.redis else 0

    def failed(self, why: str) -> SystemExit:
        return SystemExit(f"{self.label} / {self.mix}: {why}\n{self.log}")

    def check(self, run: Run) -> Run:
        """Fail when the run measured another path than its mix means to."""
        admitted = math.ceil(run.requests / 10) + ALLOWANCE * (run.duration_us / 1e6 + 1)
        if set(run.statuses) - {"200"} - REFUSED:
            raise self.failed(f"unexpected statuses {run.statuses}")
        if self.mix == "normal" or self.peer is BARE:
            if set(run.statuses) != {"200"}:
                raise self.failed(f"expected only 200s, got {run.statuses}")
        elif run.statuses.get("200", 0) > admitted:
            raise self.failed(f"the attacker was not kept over its limits: {run.statuses}")
        return run

    def read_memory(self) -> None:
        """The worker's RSS and peak, and redis-server's used memory, after the last run."""
        assert self.process is not None
        pid = self.process.pid
        worker = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0]
        lines = Path(f"/proc/{worker}/status").read_text().splitlines()
        found = dict(line.split(":", 1) for line in lines if ":" in line)
        self.memory = " / ".join(
            f"{int(found[name].split()[0]) * 1024 / 1e6:.0f}" for name in ("VmRSS", "VmHWM")
        )
        if self.redis is not None:
            used = self.redis.info("memory")["used_memory"] - self.empty
            self.stored = f"{used / 1e6:.1f} MB, {self.redis.dbsize():,} keys"


@contextlib.contextmanager
def started(
    configurations: Sequence[tuple[Peer, bool]], versions: dict[str, Any]
) -> Iterator[list[Server]]:
    """Every server (and a redis-server for each on Redis) up, stopped on the way out."""
    with contextlib.ExitStack() as stack:
        directory, servers = Path(stack.enter_context(tempfile.TemporaryDirectory())), []
        for peer, on_redis in configurations:
            if peer.venv not in versions:
                versions[peer.venv] = common.once(peer.venv, "hello")
            for mix in MIXES:
                port = stack.enter_context(common.redis_server()) if on_redis else None
                if on_redis and port is None:
                    log(f"skipping {peer.label}, Redis: no redis-server on this machine")
                    break
                server = Server(peer, port, mix, directory)
                if server.redis is not None:
                    stack.callback(server.redis.close)
                try:
                    server.start()
                except (RuntimeError, TimeoutError) as error:
                    raise server.failed(str(error)) from None
                stack.callback(server.stop)
                servers.append(server)
        log(f"{len(servers)} servers up")
        yield servers


def measure(servers: Sequence[Server], executable: str, plan: Plan) -> None:
    """A warm-up run per server, then rounds, each round's order shifted by one."""
    for server in servers if plan.warm_up else ():
        log(f"warm-up: {server.label} / {server.mix}")
        server.check(wrk(executable, plan, server, plan.warm_up))
    for number in range(plan.rounds):
        log(f"round {number + 1}/{plan.rounds}")
        for server in common.rotated(servers, number):
            server.runs.append(server.check(wrk(executable, plan, server, plan.seconds)))
            if number == plan.rounds - 1:
                server.read_memory()


def report(servers: Sequence[Server], plan: Plan, **values: object) -> str:
    """One row per server; the target: ours under attack at least as fast as bare Flask."""
    rows, targets = [], common.Targets()
    for server in sorted(servers, key=lambda server: list(MIXES).index(server.mix)):
        runs = server.runs
        rps = median([run.rps for run in runs])
        bare = next((s for s in servers if s.peer is BARE and s.mix == server.mix), server)
        ratios = [a.rps / b.rps for a, b in zip(runs, bare.runs)]
        versus = f"{median(ratios):.2f}x"
        if len(ratios) > 1:
            versus += f" ({min(ratios):.2f} to {max(ratios):.2f})"
        requests, errors = sum(run.requests for run in runs), sum(run.errors for run in runs)
        refused = sum(run.statuses.get(status, 0) for run in runs for status in REFUSED)
        share = f"{refused / requests:.1%}" + (f" ({errors} errors)" if errors else "")
        p50, p99 = (median([getattr(run, p) for run in runs]) / 1000 for p in ("p50_us", "p99_us"))
        row = [server.label, server.mix, f"{rps:,.0f}", "" if bare is server else versus]
        rows.append([*row, f"{p50:.2f}", f"{p99:.2f}", share, server.memory, server.stored])
        if server.peer is OURS and server.mix == "attack" and bare is not server:
            targets.add(
                "under attack (90% refused) behind gunicorn, ours serves at least as many "
                "requests per second as bare Flask serving the same mix of 200s"
                + (" (ours on Redis)" if server.redis else ""),
                f"{rps:,.0f} vs {median([run.rps for run in bare.runs]):,.0f} requests/s: {versus}",
                median(ratios) >= 1,
            )
    headings = ["configuration", "traffic", "requests/s", "x bare", "p50 ms", "p99 ms", "refused"]
    return common.template(
        "load.md",
        **values,
        plan=plan,
        settings=" ".join(WORKER_SETTINGS),
        mixes=MIXES,
        attacker=ATTACKER,
        targets=f"\n## Target\n\n{targets.table()}\n" if targets else "",
        table=table([*headings, "worker RSS / peak MB", "Redis used memory"], rows, text=2),
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    smoke = common.arguments(__doc__, argv, "smoke").smoke
    executable = shutil.which("wrk")
    if executable is None:
        print("load.py: skipped: it needs wrk (Debian/Ubuntu: apt-get install wrk)", flush=True)
        return
    plan = SMOKE if smoke else FULL
    found = subprocess.run([executable, "-v"], capture_output=True, text=True, check=False)
    words = (found.stdout + found.stderr).split()  # wrk's version: its second word
    begun, versions = time.perf_counter(), dict[str, Any]()
    with started([(OURS, False)] if smoke else FULL_CONFIGURATIONS, versions) as servers:
        measure(servers, executable, plan)
    text = report(
        servers,
        plan,
        generated=common.generated("load.py", smoke, time.perf_counter() - begun),
        interpreters=common.interpreters(versions),
        wrk=f"wrk {words[1] if len(words) > 1 else ''}".strip(),
    )
    common.publish(text, LOAD, smoke=smoke, log=log)


if __name__ == "__main__":
    main()
