"""What one Redis request costs, next to one redis-py PING from the same process: a worker
times interleaved rounds of each part of a request (``harness.redis_parts``) on a throwaway
redis-server; the script's own time is Redis's ``INFO commandstats``. Not a test: it prints
a Markdown table (a few minutes; ``--hiredis``: again in ``benchmarks/.venvs/hiredis``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import common
import redis
from common import OURS_VENV, Worker, configuration, spread, table

FULL, SMOKE = (10_000, 9, 2_000), (200, 2, 50)  # clients, rounds, calls per row per round
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
    worker: Optional[Worker]
    name: str
    samples: list[float] = field(default_factory=list)


def ratio(samples: list[float], yardstick: list[float]) -> str:
    return f"{statistics.median(a / b for a, b in zip(samples, yardstick)):.2f}x"


def measure(venv: str, port: int, plan: tuple[int, int, int]) -> str:
    """Every part timed in the venv's worker, with Redis's own time per EVALSHA."""
    clients, rounds, requests = plan
    worker, url = Worker(venv), f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        facts = worker.ask("parts", case="", port=port, clients=clients, **configuration(url))[
            "facts"
        ]
        rows = {name: Row(worker, name) for name in ROWS}
        worker.ask("freeze")
        client.config_resetstat()
        common.run_rounds(list(rows.values()), rounds, requests, log)
    finally:
        worker.close()
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    client.flushall()
    client.close()
    found = {ROWS[name]: row.samples for name, row in rows.items()}
    ping, bare = found[ROWS["ping"]], found[ROWS["bare"]]
    in_request = [a - b for a, b in zip(found[ROWS["pinged"]], bare)]
    overhead = [a - b for a, b in zip(found[ROWS["ours"]], bare)]
    found["a redis-py PING in a request (the PING request minus bare Flask)"] = in_request
    found["GateKeeper's overhead per request (its request minus bare Flask)"] = overhead
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
    headings = ["what", "µs per call", "spread", "x redis-py PING", "x PING in a request"]
    return common.template(
        "redis-roundtrip.md",
        setting=common.setting(),
        facts=facts,
        hiredis="with" if facts["hiredis"] else "without",
        clients=clients,
        rounds=rounds,
        requests=requests,
        table=table(headings, lines),
        script_us=float(stats.get("usec_per_call", 0.0)),
        hit_ratio=ratio(found[ROWS["hit"]], ping),
        overhead_ratio=ratio(overhead, in_request),
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = common.arguments(
        __doc__,
        argv,
        smoke="tiny counts: checks that it runs",
        hiredis="also measure with hiredis, in its own venv",
    )
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
