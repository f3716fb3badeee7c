"""Each strategy at a big quota (10 000 per day): memory per client, time per request,
and Redis bytes per client. Not a test: it prints a Markdown table (about a minute;
``--smoke``: tiny counts).

Memory is traced growth per client after 1 and then ``requests`` requests each (only the
sliding log grows with them); time is ``MemoryStorage.hit`` alone on a C-level clock;
Redis bytes are ``MEMORY USAGE`` of a client's keys on a throwaway redis-server.
"""

from __future__ import annotations

import gc
import itertools
import time
import tracemalloc
from collections.abc import Sequence
from typing import Any, Optional

import harness
from common import parser, redis_server, table

from flask_gatekeeper import MemoryStorage
from flask_gatekeeper.strategies import STRATEGIES

COUNT, WINDOW = 10_000, 86_400


def scopes(strategy: str) -> Any:
    return harness.ours_scopes([{"count": COUNT, "window": WINDOW, "strategy": strategy}])


def storage(strategy: str, names: Sequence[str]) -> tuple[MemoryStorage, Any]:
    clock = itertools.count(1000.0, 0.001).__next__
    return MemoryStorage(clock=clock, max_clients=len(names) + 1), scopes(strategy)


def memory_per_client(strategy: str, names: Sequence[str], requests: int) -> float:
    found, rules = storage(strategy, names)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(requests):
        for name in names:
            found.hit(name, rules)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return grown / len(names)


def time_per_request(strategy: str, names: Sequence[str], rounds: int) -> float:
    found, rules = storage(strategy, names)
    for name in names:  # every client tracked before timing
        found.hit(name, rules)
    samples = []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        for name in names:
            found.hit(name, rules)
        samples.append((time.perf_counter_ns() - started) / len(names) / 1000)
    return sorted(samples)[len(samples) // 2]


def redis_bytes(requests: int) -> Optional[dict[str, int]]:
    """MEMORY USAGE of one client's keys per strategy, or None without redis-server."""
    import redis

    from flask_gatekeeper.storage.redis import RedisStorage

    with redis_server() as port:
        if port is None:
            return None
        client = redis.Redis(port=port)
        found = {}
        for strategy in STRATEGIES:
            client.flushdb()
            on_redis = RedisStorage(client)
            for _ in range(requests):
                on_redis.hit("203.0.113.9", scopes(strategy))
            found[strategy] = sum(
                int(client.memory_usage(key) or 0) for key in client.scan_iter("gatekeeper:*")
            )
        client.close()
        return found


def main(argv: Optional[Sequence[str]] = None) -> None:
    smoke = parser(__doc__, "tiny counts, for CI").parse_args(argv).smoke
    names = [harness.client_ip(number) for number in range(50 if smoke else 2_000)]
    requests, rounds = (3, 2) if smoke else (200, 9)
    print(f"One rule of {COUNT:,} per {WINDOW:,} s; {len(names):,} clients.\n")
    on_redis = redis_bytes(requests) or {}
    rows = []
    for strategy in STRATEGIES:
        one = memory_per_client(strategy, names, 1)
        many = memory_per_client(strategy, names, requests)
        speed = time_per_request(strategy, names, rounds)
        stored = str(on_redis.get(strategy, "n/a"))
        rows.append([strategy, f"{one:,.0f}", f"{many:,.0f}", f"{speed:.2f}", stored])
    headings = ["strategy", "B/client after 1", f"B/client after {requests}", "µs per hit"]
    print(table([*headings, f"Redis B/client after {requests}"], rows))
    print(
        "\nThe sliding log keeps 8 bytes per counted request, up to the count: at "
        f"{COUNT:,} requests about {COUNT * 8 // 1000} KB per client; the others stay flat."
    )


if __name__ == "__main__":
    main()
