"""What one Redis request costs, next to one redis-py PING from the same process.

Not a test: it prints a Markdown table and asserts no speed.

    python benchmarks/redis_roundtrip.py              # full run (a few minutes)
    python benchmarks/redis_roundtrip.py --hiredis    # the same again with hiredis
    python benchmarks/redis_roundtrip.py --smoke      # tiny counts: checks that it runs

On a throwaway local redis-server (no persistence), with ``CLIENTS`` distinct clients
taken in turn on the real clocks (each far below the seed's 20 per second, so every
request is admitted and recorded), interleaved round by round (``harness.run_rounds``):

- a PING and an EVALSHA of ``hit.lua`` written on a bare socket (RESP2, no client
  library): the floor of a round trip, and of a round trip that runs the script;
- a PING through redis-py: the yardstick of the targets;
- ``client.evalsha(...)`` through redis-py with the arguments built beforehand: redis-py's
  own command path for the same script call;
- ``RedisStorage.hit`` for the seed's two rules: what the storage adds (its arguments,
  its call and its decision), through the same client as the PING; and the same through
  ``client.evalsha``, the path Redis Cluster and wrapped clients take;
- bare Flask, and GateKeeper with the seed's rules and ban rule on that Redis: the whole
  per-request overhead.

The raw EVALSHA and ``client.evalsha`` send, for each client, the keys and arguments
``storage.hit`` sent for it during the warm-up (captured at ``RedisStorage._run``). The
time the script takes inside Redis is Redis's own ``usec_per_call`` for EVALSHA
(``INFO commandstats``) over the timed rounds. Ratios are medians of per-round ratios to
the redis-py PING of the same round. ``--hiredis`` runs the same measurement again in
``benchmarks/.venvs/hiredis`` (this interpreter's Flask, Werkzeug and redis-py, plus
hiredis, built on first use) against the same server, and prints both tables.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable, Optional

import harness
import redis
import redis.utils
from harness import BAN_RULE, RATE_LIMIT_RULES, Config, Resp

from flask_gatekeeper.storage.redis import _HIT, RedisStorage

HERE = Path(__file__).resolve().parent
HIREDIS_VENV = HERE / ".venvs" / "hiredis"


@dataclass(frozen=True)
class Plan:
    clients: int
    rounds: int
    requests: int


FULL = Plan(clients=10_000, rounds=9, requests=2_000)
SMOKE = Plan(clients=200, rounds=2, requests=50)

PING = "PING, redis-py (the yardstick)"
HIT = "`RedisStorage.hit`, the seed's two rules"
BARE = "bare Flask request"
PINGED = "bare Flask request that makes one redis-py PING (`before_request`)"
OURS = "GateKeeper request, seed's rules and ban rule"


@dataclass
class Row:
    label: str
    run: Callable[[int], object]
    """Makes that many calls (or requests)."""
    samples: list[float] = field(default_factory=list)
    """Mean microseconds per call, one per round."""

    def measure(self, requests: int) -> float:
        started = time.perf_counter_ns()
        self.run(requests)
        return (time.perf_counter_ns() - started) / requests / 1000


def resp(*words: object) -> bytes:
    """One command in RESP, as a client library writes it."""
    parts = [b"*%d\r\n" % len(words)]
    for word in words:
        data = str(word).encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


class Raw(Resp):
    """``harness.Resp`` sending prebuilt commands and reading integer-array replies."""

    def ping(self, count: int) -> None:
        for _ in range(count):
            self.socket.sendall(b"*1\r\n$4\r\nPING\r\n")
            self.reader.readline()

    def script(self, commands: Sequence[bytes], count: int) -> None:
        readline = self.reader.readline
        for number in range(count):
            self.socket.sendall(commands[number % len(commands)])
            head = readline()
            if head[:1] != b"*":
                raise RuntimeError(f"unexpected reply {head!r}")
            for _ in range(int(head[1:])):
                readline()


def rows(url: str, port: int, plan: Plan) -> tuple[list[Row], Any]:
    storage = RedisStorage.from_url(url)
    client = storage.client
    scopes = harness.ours_scopes(RATE_LIMIT_RULES)
    names = [harness.client_ip(number) for number in range(plan.clients)]

    sent: list[tuple[list[str], list[Any]]] = []
    run_script = RedisStorage._run

    def capture(self: RedisStorage, script: Any, keys: list[str], args: Sequence[Any]) -> Any:
        sent.append((list(keys), list(args)))
        return run_script(self, script, keys, args)

    RedisStorage._run = capture  # type: ignore[method-assign]
    try:
        for name in names:  # every client seen once: its log exists
            storage.hit(name, scopes)
    finally:
        RedisStorage._run = run_script  # type: ignore[method-assign]
    commands = [resp("EVALSHA", _HIT.sha, len(keys), *keys, *args) for keys, args in sent]
    calls = [(_HIT.sha, len(keys), *keys, *args) for keys, args in sent]
    raw = Raw(port)

    def ping(count: int) -> None:
        for _ in range(count):
            client.ping()

    def evalsha(count: int) -> None:
        for number in range(count):
            client.evalsha(*calls[number % len(calls)])

    def hit(count: int) -> None:
        for number in range(count):
            storage.hit(names[number % len(names)], scopes)

    evalsha_storage = RedisStorage(client)
    evalsha_storage._pooled = None  # the path of Redis Cluster and of wrapped clients

    def hit_by_evalsha(count: int) -> None:
        for number in range(count):
            evalsha_storage.hit(names[number % len(names)], scopes)

    config = Config(RATE_LIMIT_RULES, BAN_RULE, url)
    bare, _ = harness.build_case("bare", "redis", plan.clients, config)
    ours, _ = harness.build_case("ours", "redis", plan.clients, config)
    pinged, _ = harness.build_case("pinged", "redis", plan.clients, config)
    return [
        Row("PING, bare socket", raw.ping),
        Row(PING, ping),
        Row("EVALSHA hit.lua, bare socket", lambda count: raw.script(commands, count)),
        Row("EVALSHA hit.lua, redis-py `client.evalsha`", evalsha),
        Row(HIT, hit),
        Row("`RedisStorage.hit` through `client.evalsha` (Cluster's path)", hit_by_evalsha),
        Row(BARE, bare.run),
        Row(PINGED, pinged.run),
        Row(OURS, ours.run),
    ], client


def measure(url: str, port: int, plan: Plan) -> dict[str, Any]:
    """The rows' samples, and Redis's own time per EVALSHA over the timed rounds."""
    built, client = rows(url, port, plan)
    gc.collect()
    gc.freeze()
    client.config_resetstat()
    harness.run_rounds(built, plan.rounds, plan.requests)
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return {
        "setting": harness.setting(),
        "redis-py": version("redis"),
        "hiredis": bool(redis.utils.HIREDIS_AVAILABLE),
        "parser": type(client.connection_pool.get_connection()._parser).__name__,
        "script_us": float(stats.get("usec_per_call", 0.0)),
        "rows": {row.label: row.samples for row in built},
    }


def ratio(samples: list[float], yardstick: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(samples, yardstick))


def report(found: dict[str, Any], plan: Plan) -> str:
    found_rows: dict[str, list[float]] = found["rows"]
    ping, hit = found_rows[PING], found_rows[HIT]
    bare = found_rows[BARE]
    in_request = [a - b for a, b in zip(found_rows[PINGED], bare)]
    overhead = [a - b for a, b in zip(found_rows[OURS], bare)]
    derived = {
        "a redis-py PING in a request (the PING request minus bare Flask)": in_request,
        "GateKeeper's overhead per request (its request minus bare Flask)": overhead,
    }
    lines = [
        f"{found['setting']}; redis-py {found['redis-py']}, "
        f"{'with' if found['hiredis'] else 'without'} hiredis (replies read by "
        f"`{found['parser']}`); {plan.clients:,} clients in "
        f"turn; {plan.rounds} rounds x {plan.requests:,} calls per row; medians over rounds.",
        "",
        "| what | µs per call | spread | x redis-py PING | x PING in a request |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, samples in {**found_rows, **derived}.items():
        lines.append(
            f"| {label} | {statistics.median(samples):.1f} | {harness.spread(samples)} "
            f"| {ratio(samples, ping):.2f}x | {ratio(samples, in_request):.2f}x |"
        )
    lines += [
        "",
        f"- Inside Redis, `hit.lua` took {found['script_us']:.1f} µs per call "
        "(`INFO commandstats`).",
        "- Target: per-request overhead at most 1.5x a redis-py PING round trip: "
        f"`RedisStorage.hit` against a PING, each in a loop, {ratio(hit, ping):.2f}x; "
        f"GateKeeper's overhead per request against a PING in a request, "
        f"{ratio(overhead, in_request):.2f}x.",
    ]
    return "\n".join(lines)


def hiredis_python() -> Path:
    """``benchmarks/.venvs/hiredis``'s Python, built first when missing or outdated."""
    python = HIREDIS_VENV / "bin" / "python"
    marker = HIREDIS_VENV / ".bench-installed"
    wanted = [f"{name}=={version(name)}" for name in ("flask", "werkzeug", "redis")]
    wanted.append("hiredis")
    if python.exists() and marker.exists() and marker.read_text() == json.dumps(wanted):
        return python
    print("[redis_roundtrip] setting up benchmarks/.venvs/hiredis", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(HIREDIS_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *wanted],
        check=True,
    )
    marker.write_text(json.dumps(wanted))
    return python


def in_hiredis_venv(port: int, smoke: bool) -> dict[str, Any]:
    """The same measurement in the hiredis venv, importing this checkout's sources."""
    source = str(HERE.parent / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, str(HERE)])}
    command = [str(hiredis_python()), str(Path(__file__)), "--port", str(port)]
    done = subprocess.run(
        [*command, *(["--smoke"] if smoke else [])],
        env=env,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="tiny counts: checks that it runs")
    parser.add_argument(
        "--hiredis", action="store_true", help="also measure with hiredis, in its own venv"
    )
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)  # the hiredis venv's run
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else FULL
    if args.port is not None:
        print(json.dumps(measure(f"redis://127.0.0.1:{args.port}/0", args.port, plan)))
        return
    started = time.perf_counter()
    with harness.redis_server() as port:
        if port is None:
            print("skipped: no redis-server on this machine")
            return
        url = f"redis://127.0.0.1:{port}/0"
        reports = [report(measure(url, port, plan), plan)]
        if args.hiredis:
            redis.Redis.from_url(url).flushall()
            reports.append(report(in_hiredis_venv(port, args.smoke), plan))
    print("\n\n".join(reports))
    print(f"\n(run took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
