"""What one Redis request costs, next to one redis-py PING from the same process.

Not a test: it prints a Markdown table (a few minutes; ``--smoke``: tiny counts;
``--hiredis``: the same again in ``benchmarks/.venvs/hiredis``, built on first use).

On a throwaway redis-server, 10 000 clients in turn on real clocks (all admitted), a
``harness.py`` worker times interleaved rounds of each part of a request
(``harness.redis_parts``): PING and EVALSHA of ``hit.lua`` on a bare socket (the round
trip, and with the script); a redis-py PING (the yardstick); ``client.evalsha`` with the
arguments ``RedisStorage.hit`` sent in the warm-up; ``RedisStorage.hit`` for the seed's
rules, direct and through ``client.evalsha`` (Redis Cluster's path); bare Flask, bare
Flask making a PING, and ours on that Redis. The script's own time is Redis's
``usec_per_call`` (``INFO commandstats``). Ratios are medians of per-round ratios.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import common
import redis
from common import OURS_VENV, Worker, configuration, spread, table

FULL = 10_000, 9, 2_000
SMOKE = 200, 2, 50
"""Clients, rounds, and calls per row per round."""
ROWS = {
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

log = common.logger("redis_roundtrip")


@dataclass
class Row:
    """One part, as the worker named it."""

    worker: Optional[Worker]
    name: str
    samples: list[float] = field(default_factory=list)


def measure(venv: str, port: int, plan: tuple[int, int, int]) -> str:
    """Every part timed in the venv's worker, reported with Redis's own time per EVALSHA
    over the timed rounds."""
    clients, rounds, requests = plan
    python = common.interpreter(venv, install=True)
    assert python is not None
    worker, url = Worker(venv, python), f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        facts = worker.ask(
            "parts", case="", url=url, port=port, clients=clients, **configuration(url)
        )
        rows = {name: Row(worker, name) for name in ROWS}
        worker.ask("freeze")
        client.config_resetstat()
        common.run_rounds(list(rows.values()), rounds, requests, log)
    finally:
        worker.close()
    script_us = float(
        client.info("commandstats").get("cmdstat_evalsha", {}).get("usec_per_call", 0.0)
    )
    client.flushall()
    client.close()
    found = {ROWS[name]: row.samples for name, row in rows.items()}
    ping, bare = found[ROWS["ping"]], found[ROWS["bare"]]
    in_request = [a - b for a, b in zip(found[ROWS["pinged"]], bare)]
    overhead = [a - b for a, b in zip(found[ROWS["ours"]], bare)]
    found["a redis-py PING in a request (the PING request minus bare Flask)"] = in_request
    found["GateKeeper's overhead per request (its request minus bare Flask)"] = overhead

    def ratio(samples: list[float], yardstick: list[float]) -> str:
        return f"{statistics.median(a / b for a, b in zip(samples, yardstick)):.2f}x"

    lines = [
        [
            label,
            f"{statistics.median(samples):.1f}",
            spread(samples),
            ratio(samples, ping),
            ratio(samples, in_request),
        ]
        for label, samples in found.items()
    ]
    packages = facts["facts"]["packages"]
    return "\n".join(
        [
            f"{common.setting()}; redis-py {packages['redis']}, "
            f"{'with' if facts['facts']['hiredis'] else 'without'} hiredis (replies read by "
            f"`{facts['facts']['parser']}`); {clients:,} clients in turn; {rounds} rounds x "
            f"{requests:,} calls per row; medians over rounds.",
            "",
            table(
                ["what", "µs per call", "spread", "x redis-py PING", "x PING in a request"], lines
            ),
            "",
            f"- Inside Redis, `hit.lua` took {script_us:.1f} µs per call (`INFO commandstats`).",
            "- Target: per-request overhead at most 1.5x a redis-py PING round trip: "
            f"`RedisStorage.hit` against a PING, each in a loop, "
            f"{ratio(found[ROWS['hit']], ping)}; "
            f"GateKeeper's overhead per request against a PING in a request, "
            f"{ratio(overhead, in_request)}.",
        ]
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    arguments = common.parser(__doc__, "tiny counts: checks that it runs")
    arguments.add_argument(
        "--hiredis", action="store_true", help="also measure with hiredis, in its own venv"
    )
    args = arguments.parse_args(argv)
    started = time.perf_counter()
    with common.redis_server() as port:
        if port is None:
            print("skipped: no redis-server on this machine")
            return
        venvs = [OURS_VENV, *(["hiredis"] if args.hiredis else [])]
        reports = [measure(venv, port, SMOKE if args.smoke else FULL) for venv in venvs]
    print("\n\n".join(reports))
    print(f"\n(run took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
