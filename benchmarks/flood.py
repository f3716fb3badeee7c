"""Memory and per-request time of ours while a million distinct clients arrive (issue 3).

Not a test: it prints Markdown tables (about 15 minutes on two cores; ``--smoke``: 1 000
clients against a cap of 250, seconds). It fails when a request gets an unexpected status,
the tracked logs pass the cap, or the client banned before the flood is let in after it.

Each request comes from a new client, 1 in 10 an IPv6 address in a /64 of its own (a key
of its own). Ours has the design's rules, the default cap of 100 000 logs, and a clock
moving 0.1 ms a reading (10 000 requests a second, well inside the ban), in two variants:
``direct`` (the client is ``REMOTE_ADDR``) and ``proxy`` (``trusted_proxies=1``, a distinct
``X-Forwarded-For`` each, as a botnet rotating addresses). ``harness.flood`` runs each pass
in a fresh worker: time and RSS without tracemalloc, alone on the machine; traced memory
from a second pass with it. ``harness.fill`` then calls the storage directly: bytes per log
of 1 request and of 100 (the largest count: a full ring), which bound the memory at the cap.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from functools import partial
from typing import Any, Optional

import common
from common import OURS_VENV, configuration, once, two_at_a_time
from harness import RATE_LIMIT_RULES, client_address, client_key

from flask_gatekeeper.identity.addresses import parse_address
from flask_gatekeeper.storage import DEFAULT_MAX_CLIENTS

CLOCK_STEP, FILL_CLOCK_STEP = 0.0001, 0.25
"""Seconds per clock reading in the flood, and in the direct fills (rounds of thousands
of clients: each request seconds after the client's previous one)."""
BANNED_CLIENT, IPV6_EVERY = "192.0.2.1", 10
FULL = 1_000_000, DEFAULT_MAX_CLIENTS, 10_000
"""Flood clients, the storage's cap on tracked logs, and clients of the direct fills."""
SMOKE = 1_000, 250, 100
FILL_REQUESTS = max(rule["count"] for rule in RATE_LIMIT_RULES)
MB = 1024 * 1024
VARIANTS = {
    "direct": (None, "clients identified by REMOTE_ADDR (default settings)"),
    "proxy": (1, "behind one trusted proxy (trusted_proxies=1), a distinct X-Forwarded-For each"),
}
Reply = dict[str, Any]


def mb(size: float) -> str:
    return f"{size / MB:,.1f}"


def growth_per_client(traced: Reply) -> float:
    """Traced memory gained since just before the flood, per log tracked at its end."""
    before, last = traced["points"][0], traced["points"][-1]
    return float((last["traced"] - before["traced"]) / last["tracked"])


def report_pass(variant: str, timed: Reply, traced: Reply, cap: int) -> list[str]:
    lines = [
        f"### {variant}: {VARIANTS[variant][1]}",
        "",
        "| clients so far | tracked | RSS MB | traced MB | µs/request (slice) |",
        "|---:|---:|---:|---:|---:|",
    ]
    plain_points, traced_points = timed["points"], traced["points"]
    for was, plain, with_trace in zip([None, *plain_points], plain_points, traced_points):
        if (plain["clients"], plain["tracked"]) != (with_trace["clients"], with_trace["tracked"]):
            raise SystemExit(f"flood.py: the passes disagree: {plain} vs {with_trace}")
        plain["us"] = plain["ns"] / (plain["clients"] - was["clients"]) / 1000 if was else 0
        speed = "" if was is None else f"{plain['us']:.2f}"
        lines.append(
            f"| {plain['clients']:,} | {plain['tracked']:,} | {mb(plain['rss'])} "
            f"| {mb(with_trace['traced'])} | {speed} |"
        )
    pairs = list(zip(plain_points, plain_points[1:]))
    # A slice that crossed the cap mixes both phases: it counts in neither median.
    phases = (
        ("filling up", [now["us"] for _, now in pairs if now["tracked"] == now["clients"]]),
        ("at the cap, evicting", [now["us"] for was, now in pairs if was["tracked"] >= cap]),
    )
    speeds = [
        f"{phase}: median {statistics.median(values):.2f} µs over {len(values)} slices"
        for phase, values in phases
        if values
    ]
    lines += ["", f"- bare Flask, same loop and environs: {timed['bare_us']:.2f} µs/request"]
    lines.append(f"- GateKeeper per request, {'; '.join(speeds) or 'no whole slice'}")
    half = len(plain_points) // 2
    tail, rss_tail = traced_points[half:], plain_points[half:]
    if min(point["tracked"] for point in tail) >= cap:
        traced_mb = [point["traced"] / MB for point in tail]
        rss_mb = [point["rss"] / MB for point in rss_tail]
        lines.append(
            f"- second half of the flood ({tail[0]['clients']:,} to {tail[-1]['clients']:,} "
            f"clients), {cap:,} tracked throughout: traced {min(traced_mb):,.1f} to "
            f"{max(traced_mb):,.1f} MB, RSS {min(rss_mb):,.1f} to {max(rss_mb):,.1f} MB"
        )
    else:
        lines.append(f"- the cap ({cap:,}) was not reached by mid-flood: no plateau to show")
    rises = [
        now["clients"]
        for was, now in zip(traced_points, traced_points[1:])
        if now["traced"] > was["traced"] * 1.01
    ]
    if rises:
        lines.append(
            f"- traced memory last rose by more than 1 % in the slice ending at {rises[-1]:,} "
            "clients"
        )
    last, first = traced_points[-1], traced_points[0]
    return [
        *lines,
        f"- bytes per tracked client at the end (logs of 1 request): traced growth since "
        f"before the flood / tracked = {mb(last['traced'] - first['traced'])} MB / "
        f"{last['tracked']:,} = {growth_per_client(traced):,.0f} B",
        f"- banned client {BANNED_CLIENT}: 403 before and after the flood "
        f"({timed['clock_seconds']:.0f} s of clock time); ban {timed['ban_seconds']:.0f} s, "
        f"{timed['ban_left_after']:.0f} s left after; active bans after: {timed['bans_after']}",
        f"- pass times: {timed['seconds']:.0f} s without tracemalloc, "
        f"{traced['seconds']:.0f} s with it",
    ]


def report_memory(traced: dict[str, Reply], fills: Sequence[Reply], cap: int) -> list[str]:
    lines = [
        "### bytes per tracked client (tracemalloc)",
        "",
        f"| measured | logs | requests per log | bytes per client | x {cap:,} (the cap) |",
        "|---|---:|---:|---:|---:|",
    ]
    for variant, result in traced.items():
        per_client = growth_per_client(result)
        lines.append(
            f"| {variant} flood, at its end | {result['points'][-1]['tracked']:,} | 1 "
            f"| {per_client:,.0f} | {mb(per_client * cap)} MB |"
        )
    for fill in fills:
        lines.append(
            f"| storage.hit directly, no eviction | {fill['tracked']:,} | {fill['requests']} "
            f"| {fill['bytes_per_client']:,.0f} | {mb(fill['bytes_per_client'] * cap)} MB |"
        )
    one, full = fills[0]["bytes_per_client"], fills[-1]["bytes_per_client"]
    extra = max(growth_per_client(result) for result in traced.values()) - one
    return [
        *lines,
        "",
        f"Keys as GateKeeper builds them (1 in {IPV6_EVERY} an IPv6 /64). A flood costs more "
        f"per client than a direct fill of logs of 1 request ({extra:,.0f} B more): the table "
        "of logs keeps room for the slots that eviction frees, and the parsed-address cache "
        "(at most 8 192 entries) fills with IPv6 addresses. A log holds at most "
        f"{FILL_REQUESTS} timestamps (the largest count), so at the cap of {cap:,} the logs "
        f"take at most about {mb((full + extra) * cap)} MB "
        f"(full logs, {full:,.0f} B each, plus the flood's {extra:,.0f} B); "
        "bans live in a table of their own.",
    ]


def main(argv: Optional[Sequence[str]] = None) -> None:
    smoke = common.parser(__doc__, "1,000 clients against a cap of 250, in seconds")
    clients, cap, fill_clients = SMOKE if smoke.parse_args(argv).smoke else FULL
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
    python = common.interpreter(OURS_VENV, install=False)
    assert python is not None

    def run(command: str, **fields: object) -> Reply:
        begun = time.perf_counter()
        reply = once(OURS_VENV, python, command, ipv6_every=IPV6_EVERY, **fields)
        return {**fields, **reply, "seconds": time.perf_counter() - begun}

    def flood(variant: str, trace: bool) -> Reply:
        options = configuration(max_clients=cap, proxies=VARIANTS[variant][0])
        shape = {"clients": clients, "every": every, **options}
        ban = {"banned": BANNED_CLIENT, "clock_step": CLOCK_STEP, "scale": not trace}
        return run("flood", peer="ours", trace=trace, **shape, **ban)

    timed = {variant: flood(variant, trace=False) for variant in VARIANTS}  # each alone
    untimed = two_at_a_time(
        [partial(flood, variant, True) for variant in VARIANTS]
        + [
            partial(run, "fill", clients=fill_clients, requests=requests, step=FILL_CLOCK_STEP)
            for requests in (1, FILL_REQUESTS)
        ]
    )
    traced = dict(zip(VARIANTS, untimed))
    for variant in VARIANTS:
        print("\n" + "\n".join(report_pass(variant, timed[variant], traced[variant], cap)))
    print("\n" + "\n".join(report_memory(traced, untimed[len(VARIANTS) :], cap)))
    print(f"\n(run took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
