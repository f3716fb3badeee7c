"""Each strategy at a big quota (10 000 per day): memory and Redis bytes per client, time per hit.

Not a test: it prints a Markdown table (about a minute; ``--smoke``: tiny counts). Memory is
``harness.fill``'s traced growth; time is ``MemoryStorage.hit`` alone on a C-level clock;
Redis bytes are ``MEMORY USAGE`` of a client's keys on a throwaway redis-server.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Sequence
from typing import Optional

import harness
import redis
from common import arguments, redis_server, table

from flask_gatekeeper import MemoryStorage
from flask_gatekeeper.storage.redis import RedisStorage
from flask_gatekeeper.strategies import STRATEGIES

COUNT, WINDOW = 10_000, 86_400


def rules(strategy: str) -> list[dict[str, object]]:
    return [{"count": COUNT, "window": WINDOW, "strategy": strategy}]


def time_per_request(strategy: str, clients: int, rounds: int) -> float:
    """The median over rounds of µs per ``hit``, every client tracked before timing."""
    storage = MemoryStorage(clock=itertools.count(1000.0, 0.001).__next__, max_clients=clients + 1)
    names = [harness.client_ip(n) for n in range(clients)]
    scopes = harness.ours_scopes(rules(strategy))
    samples = []
    for _ in range(rounds + 1):
        started = time.perf_counter_ns()
        for name in names:
            storage.hit(name, scopes)
        samples.append((time.perf_counter_ns() - started) / clients / 1000)
    return statistics.median_high(samples[1:])


def redis_bytes(requests: int) -> Optional[dict[str, int]]:
    """MEMORY USAGE of one client's keys per strategy, or None without redis-server."""
    with redis_server() as port:
        if port is None:
            return None
        client, found = redis.Redis(port=port), {}
        for strategy in STRATEGIES:
            client.flushdb()
            on_redis = RedisStorage(client)
            for _ in range(requests):
                on_redis.hit("203.0.113.9", harness.ours_scopes(rules(strategy)))
            keys = client.scan_iter("gatekeeper:*")
            found[strategy] = sum(int(client.memory_usage(key) or 0) for key in keys)
        client.close()
        return found


def main(argv: Optional[Sequence[str]] = None) -> None:
    smoke = arguments(__doc__, argv, smoke="tiny counts, for CI").smoke
    clients, requests, rounds = (50, 3, 2) if smoke else (2_000, 200, 9)
    print(f"One rule of {COUNT:,} per {WINDOW:,} s; {clients:,} clients.\n")
    on_redis = redis_bytes(requests) or {}
    rows = []
    for strategy in STRATEGIES:
        one, many = (
            harness.fill(clients, n, 0.001, rules=rules(strategy))["bytes_per_client"]
            for n in (1, requests)
        )
        speed = time_per_request(strategy, clients, rounds)
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
