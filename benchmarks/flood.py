"""Memory and per-request time of ours while a million distinct clients arrive (issue 3).
Not a test: it prints Markdown tables (about 15 minutes on two cores). Each request comes
from a new client, 1 in 10 an IPv6 /64, under the design's rules and a clock moving 0.1 ms a
reading, in two variants (``VARIANTS``), each timed alone and then traced in a fresh worker;
``harness.fill`` then gives the bytes per log of 1 request and of 100 (a full ring), which
bound the memory at the cap. ``--strategies``: each strategy at a big quota (10 000 per
day): bytes per client in memory (``harness.fill``) and on Redis (``MEMORY USAGE``), and
``MemoryStorage.hit``'s time alone on a C-level clock (about a minute). ``--smoke``: tiny
counts (1,000 clients against a cap of 250)."""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Sequence
from functools import partial
from typing import Any, Optional

import common
import harness
import redis
from common import OURS_VENV, configuration, template
from harness import LARGEST, client_address, client_key

from flask_gatekeeper import MemoryStorage
from flask_gatekeeper.identity.addresses import parse_address
from flask_gatekeeper.storage import DEFAULT_MAX_CLIENTS
from flask_gatekeeper.storage.redis import RedisStorage
from flask_gatekeeper.strategies import STRATEGIES

CLOCK_STEP = 0.0001  # seconds per reading in the flood: 10 000 requests a second, in the ban
FILL_CLOCK_STEP = 0.25  # in the direct fills: each request seconds after the client's previous
BANNED_CLIENT, IPV6_EVERY = "192.0.2.1", 10
FULL = 1_000_000, DEFAULT_MAX_CLIENTS, 10_000
"""Flood clients, the storage's cap on tracked logs, and clients of the direct fills."""
SMOKE = 1_000, 250, 100
QUOTA = 10_000  # per day, for --strategies
MB = 1024 * 1024
VARIANTS = {
    "direct": (None, "clients identified by REMOTE_ADDR (default settings)"),
    "proxy": (1, "behind one trusted proxy (trusted_proxies=1), a distinct X-Forwarded-For each"),
}
Reply = dict[str, Any]


def mb(size: float) -> str:
    return f"{size / MB:,.1f}"


def report_pass(variant: str, timed: Reply, traced: Reply, cap: int) -> str:
    """One row per point, each with the timed pass's RSS and speed and the traced pass's memory."""
    points = timed["points"]
    for was, plain, with_trace in zip([None, *points], points, traced["points"]):
        if (plain["clients"], plain["tracked"]) != (with_trace["clients"], with_trace["tracked"]):
            raise SystemExit(f"flood.py: the passes disagree: {plain} vs {with_trace}")
        plain["traced"] = with_trace["traced"]
        plain["us"] = plain["ns"] / (plain["clients"] - was["clients"]) / 1000 if was else None
    pairs = list(zip(points, points[1:]))
    # A slice that crossed the cap mixes both phases: it counts in neither median.
    phases = {
        "filling up": [now["us"] for _, now in pairs if now["tracked"] == now["clients"]],
        "at the cap, evicting": [now["us"] for was, now in pairs if was["tracked"] >= cap],
    }
    tail = points[len(points) // 2 :]
    plateau = {key: [point[key] / MB for point in tail] for key in ("traced", "rss")}
    return template(
        "flood-pass.md",
        variant=variant,
        label=VARIANTS[variant][1],
        mb=mb,
        points=points,
        medians={phase: statistics.median(us) for phase, us in phases.items() if us},
        slices={phase: len(us) for phase, us in phases.items()},
        tail=tail,
        plateau=plateau if min(point["tracked"] for point in tail) >= cap else None,
        rises=[now for was, now in pairs if now["traced"] > was["traced"] * 1.01],
        cap=cap,
        timed=timed,
        traced=traced,
    )


def report_memory(traced: dict[str, Reply], fills: Sequence[Reply], cap: int) -> str:
    measured = [(f"{variant} flood, at its end", found) for variant, found in traced.items()]
    one, full = fills[0]["bytes_per_client"], fills[-1]["bytes_per_client"]
    extra = max(found["bytes_per_client"] for found in traced.values()) - one
    return template(
        "flood-memory.md",
        mb=mb,
        measured=[*measured, *(("storage.hit directly, no eviction", fill) for fill in fills)],
        ipv6_every=IPV6_EVERY,
        extra=extra,
        cap=cap,
        at_most=mb((full + extra) * cap),
        full=full,
    )


def quota(strategy: str) -> list[dict[str, object]]:
    return [{"count": QUOTA, "window": 86_400, "strategy": strategy}]


def time_per_hit(strategy: str, clients: int, rounds: int) -> float:
    """The median over rounds of µs per ``hit``, every client tracked before timing."""
    storage = MemoryStorage(clock=itertools.count(1000.0, 0.001).__next__, max_clients=clients + 1)
    scopes = harness.ours_scopes(quota(strategy))
    names = [harness.client_ip(n) for n in range(clients)]
    samples = []
    for _ in range(rounds + 1):
        started = time.perf_counter_ns()
        for name in names:
            storage.hit(name, scopes)
        samples.append((time.perf_counter_ns() - started) / clients / 1000)
    return statistics.median_high(samples[1:])


def redis_bytes(requests: int) -> dict[str, int]:
    """MEMORY USAGE of one client's keys per strategy (none without redis-server)."""
    found: dict[str, int] = {}
    with common.redis_server() as port:
        if port is None:
            return found
        with redis.Redis(port=port) as client:
            for strategy in STRATEGIES:
                client.flushdb()
                scopes = harness.ours_scopes(quota(strategy))
                harness.hit_all(RedisStorage(client), ["203.0.113.9"], scopes, requests, "a fill")
                keys = client.scan_iter("gatekeeper:*")
                found[strategy] = sum(int(client.memory_usage(key) or 0) for key in keys)
    return found


def strategies(smoke: bool) -> None:
    clients, requests, rounds = (50, 3, 2) if smoke else (2_000, 200, 9)
    measured: dict[str, tuple[float, ...]] = {}
    for strategy in STRATEGIES:
        one, many = (
            harness.fill(clients, n, 0.001, rules=quota(strategy))["bytes_per_client"]
            for n in (1, requests)
        )
        measured[strategy] = one, many, time_per_hit(strategy, clients, rounds)
    values = {"quota": QUOTA, "clients": clients, "requests": requests}
    print(template("strategies.md", measured=measured, on_redis=redis_bytes(requests), **values))


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = common.arguments(__doc__, argv, "smoke", "strategies")
    if args.strategies:
        strategies(args.smoke)
        return
    clients, cap, fill_clients = SMOKE if args.smoke else FULL
    every = clients // 10
    started = time.perf_counter()
    for number in range(IPV6_EVERY):  # the fills' keys are the ones a request produces
        address = parse_address(client_address(number, IPV6_EVERY), 64)
        if address is None or address.key != client_key(number, IPV6_EVERY):
            raise SystemExit(f"flood.py: client_key({number}) is not the key of its address")
    print(
        f"{common.setting()}; {clients:,} distinct clients, one request each (1 in "
        f"{IPV6_EVERY} IPv6); max_clients {cap:,}; a reading every {every:,} clients.",
        flush=True,
    )

    def run(command: str, **fields: object) -> Reply:
        begun = time.perf_counter()
        reply = common.once(OURS_VENV, command, ipv6_every=IPV6_EVERY, **fields)
        return {**fields, **reply, "seconds": time.perf_counter() - begun}

    def flood(variant: str, trace: bool) -> Reply:
        options = configuration(max_clients=cap, proxies=VARIANTS[variant][0])
        shape = {"clients": clients, "every": every, **options}
        ban = {"banned": BANNED_CLIENT, "clock_step": CLOCK_STEP}
        return run("flood", peer="ours", trace=trace, **shape, **ban)

    timed = {variant: flood(variant, trace=False) for variant in VARIANTS}  # each alone
    untimed = common.in_threads(
        [partial(flood, variant, True) for variant in VARIANTS]
        + [
            partial(run, "fill", clients=fill_clients, requests=requests, step=FILL_CLOCK_STEP)
            for requests in (1, LARGEST)
        ]
    )
    traced = dict(zip(VARIANTS, untimed))
    for variant in VARIANTS:
        print("\n" + report_pass(variant, timed[variant], traced[variant], cap))
    print("\n" + report_memory(traced, untimed[len(VARIANTS) :], cap))
    print(f"\n(run took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
