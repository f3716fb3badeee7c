"""What one Redis request costs, next to one redis-py PING from the same process.

Not a test: it prints a Markdown table (a few minutes; ``--smoke``: tiny counts;
``--hiredis``: the same again in ``benchmarks/.venvs/hiredis``, built on first use).

On a throwaway redis-server, 10 000 clients in turn on real clocks (all admitted),
interleaved rounds of: PING and EVALSHA of ``hit.lua`` on a bare socket (the round trip,
and with the script); a redis-py PING (the yardstick); ``client.evalsha`` with the
arguments ``RedisStorage.hit`` sent in the warm-up; ``RedisStorage.hit`` for the seed's
rules, direct and through ``client.evalsha`` (Redis Cluster's path); bare Flask, bare
Flask making a PING, and ours on that Redis. The script's own time is Redis's
``usec_per_call`` (``INFO commandstats``). Ratios are medians of per-round ratios.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable, Optional

import common
import harness
import redis
import redis.utils
from common import (
    HERE,
    Resp,
    Series,
    parser,
    redis_server,
    run_rounds,
    setting,
    spread,
    table,
    venv_python,
)
from harness import BAN_RULE, RATE_LIMIT_RULES, Config

from flask_gatekeeper.storage.redis import _HIT, RedisStorage

FULL = 10_000, 9, 2_000
SMOKE = 200, 2, 50
"""Clients, rounds, and calls per row per round."""

PING = "PING, redis-py (the yardstick)"
HIT = "`RedisStorage.hit`, the seed's two rules"
BARE = "bare Flask request"
PINGED = "bare Flask request that makes one redis-py PING (`before_request`)"
OURS = "GateKeeper request, seed's rules and ban rule"


def stopwatch(label: str, run: Callable[[int], object]) -> Series:
    """A row timed around ``run(count)``, which makes that many calls."""

    def ns(count: int) -> int:
        started = time.perf_counter_ns()
        run(count)
        return time.perf_counter_ns() - started

    return Series(label, ns)


class Raw(Resp):
    """``common.Resp`` sending prebuilt commands and reading integer-array replies."""

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


def rows(url: str, port: int, clients: int) -> tuple[list[Series], Any]:
    storage = RedisStorage.from_url(url)
    client = storage.client
    scopes = harness.ours_scopes(RATE_LIMIT_RULES)
    names = [harness.client_ip(number) for number in range(clients)]

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
    calls = [(_HIT.sha, len(keys), *keys, *args) for keys, args in sent]
    commands = [common.resp("EVALSHA", *call) for call in calls]
    raw = Raw(port)

    def ping(count: int) -> None:
        for _ in range(count):
            client.ping()

    def evalsha(count: int) -> None:
        for number in range(count):
            client.evalsha(*calls[number % len(calls)])

    def hitting(through: RedisStorage) -> Callable[[int], None]:
        def hit(count: int) -> None:
            for number in range(count):
                through.hit(names[number % len(names)], scopes)

        return hit

    evalsha_storage = RedisStorage(client)
    evalsha_storage._pooled = None  # the path of Redis Cluster and of wrapped clients
    config = Config(RATE_LIMIT_RULES, BAN_RULE, url)
    cases = {
        peer: harness.build_case(peer, "redis", clients, config)[0].run
        for peer in ("bare", "ours", "pinged")
    }
    return [
        stopwatch("PING, bare socket", raw.ping),
        stopwatch(PING, ping),
        stopwatch("EVALSHA hit.lua, bare socket", lambda count: raw.script(commands, count)),
        stopwatch("EVALSHA hit.lua, redis-py `client.evalsha`", evalsha),
        stopwatch(HIT, hitting(storage)),
        stopwatch(
            "`RedisStorage.hit` through `client.evalsha` (Cluster's path)",
            hitting(evalsha_storage),
        ),
        stopwatch(BARE, cases["bare"]),
        stopwatch(PINGED, cases["pinged"]),
        stopwatch(OURS, cases["ours"]),
    ], client


def measure(url: str, port: int, plan: tuple[int, int, int]) -> dict[str, Any]:
    """The rows' samples, and Redis's own time per EVALSHA over the timed rounds."""
    clients, rounds, requests = plan
    built, client = rows(url, port, clients)
    gc.collect()
    gc.freeze()
    client.config_resetstat()
    run_rounds(built, rounds, requests)
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return {
        "setting": setting(),
        "redis-py": version("redis"),
        "hiredis": bool(redis.utils.HIREDIS_AVAILABLE),
        "parser": type(client.connection_pool.get_connection()._parser).__name__,
        "script_us": float(stats.get("usec_per_call", 0.0)),
        "rows": {row.label: row.samples for row in built},
    }


def ratio(samples: list[float], yardstick: list[float]) -> float:
    """The median of per-round ratios (the rows come back from the hiredis venv as lists)."""
    return statistics.median(a / b for a, b in zip(samples, yardstick))


def report(found: dict[str, Any], plan: tuple[int, int, int]) -> str:
    clients, rounds, requests = plan
    found_rows: dict[str, list[float]] = found["rows"]
    ping, hit, bare = found_rows[PING], found_rows[HIT], found_rows[BARE]
    in_request = [a - b for a, b in zip(found_rows[PINGED], bare)]
    overhead = [a - b for a, b in zip(found_rows[OURS], bare)]
    derived = {
        "a redis-py PING in a request (the PING request minus bare Flask)": in_request,
        "GateKeeper's overhead per request (its request minus bare Flask)": overhead,
    }
    lines = [
        [
            label,
            f"{statistics.median(samples):.1f}",
            spread(samples),
            f"{ratio(samples, ping):.2f}x",
            f"{ratio(samples, in_request):.2f}x",
        ]
        for label, samples in {**found_rows, **derived}.items()
    ]
    headings = ["what", "µs per call", "spread", "x redis-py PING", "x PING in a request"]
    return "\n".join(
        [
            f"{found['setting']}; redis-py {found['redis-py']}, "
            f"{'with' if found['hiredis'] else 'without'} hiredis (replies read by "
            f"`{found['parser']}`); {clients:,} clients in turn; {rounds} rounds x "
            f"{requests:,} calls per row; medians over rounds.",
            "",
            table(headings, lines),
            "",
            f"- Inside Redis, `hit.lua` took {found['script_us']:.1f} µs per call "
            "(`INFO commandstats`).",
            "- Target: per-request overhead at most 1.5x a redis-py PING round trip: "
            f"`RedisStorage.hit` against a PING, each in a loop, {ratio(hit, ping):.2f}x; "
            f"GateKeeper's overhead per request against a PING in a request, "
            f"{ratio(overhead, in_request):.2f}x.",
        ]
    )


def in_hiredis_venv(port: int, smoke: bool) -> dict[str, Any]:
    """The same measurement in the hiredis venv, importing this checkout's sources."""
    python = venv_python("hiredis", install=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), str(HERE)])}
    command = [str(python), str(Path(__file__)), "--port", str(port)]
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
    arguments = parser(__doc__, "tiny counts: checks that it runs")
    arguments.add_argument(
        "--hiredis", action="store_true", help="also measure with hiredis, in its own venv"
    )
    arguments.add_argument("--port", type=int, help=argparse.SUPPRESS)  # the hiredis venv's run
    args = arguments.parse_args(argv)
    plan = SMOKE if args.smoke else FULL
    if args.port is not None:
        print(json.dumps(measure(f"redis://127.0.0.1:{args.port}/0", args.port, plan)))
        return
    started = time.perf_counter()
    with redis_server() as port:
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
