"""Memory and per-request time of ours while a million distinct clients arrive (issue 3).

Not a test: it prints Markdown tables (about 15 minutes on two cores; ``--smoke``: 1 000
clients against a cap of 250). Each request comes from a new client, 1 in 10 an IPv6 /64,
under the design's rules and a clock moving 0.1 ms a reading, in two variants (``VARIANTS``),
each timed alone and then traced in a fresh worker; ``harness.fill`` then gives the bytes
per log of 1 request and of 100 (a full ring), which bound the memory at the cap.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from functools import partial
from typing import Any, Optional

import common
from common import OURS_VENV, configuration, table, template
from harness import LARGEST, client_address, client_key

from flask_gatekeeper.identity.addresses import parse_address
from flask_gatekeeper.storage import DEFAULT_MAX_CLIENTS

CLOCK_STEP, FILL_CLOCK_STEP = 0.0001, 0.25
"""Seconds per clock reading in the flood (10 000 requests a second, well inside the ban),
and in the direct fills (each request seconds after the client's previous one)."""
BANNED_CLIENT, IPV6_EVERY = "192.0.2.1", 10
FULL = 1_000_000, DEFAULT_MAX_CLIENTS, 10_000
"""Flood clients, the storage's cap on tracked logs, and clients of the direct fills."""
SMOKE = 1_000, 250, 100
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


def report_pass(variant: str, timed: Reply, traced: Reply, cap: int) -> str:
    plain_points, traced_points, rows = timed["points"], traced["points"], []
    for was, plain, with_trace in zip([None, *plain_points], plain_points, traced_points):
        if (plain["clients"], plain["tracked"]) != (with_trace["clients"], with_trace["tracked"]):
            raise SystemExit(f"flood.py: the passes disagree: {plain} vs {with_trace}")
        plain["us"] = plain["ns"] / (plain["clients"] - was["clients"]) / 1000 if was else 0
        speed = "" if was is None else f"{plain['us']:.2f}"
        counts = [f"{plain['clients']:,}", f"{plain['tracked']:,}"]
        rows.append([*counts, mb(plain["rss"]), mb(with_trace["traced"]), speed])
    headings = ["clients so far", "tracked", "RSS MB", "traced MB", "µs/request (slice)"]
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
    half = len(plain_points) // 2
    tail, rss_mb = traced_points[half:], [point["rss"] / MB for point in plain_points[half:]]
    plateau = f"the cap ({cap:,}) was not reached by mid-flood: no plateau to show"
    if min(point["tracked"] for point in tail) >= cap:
        traced_mb = [point["traced"] / MB for point in tail]
        plateau = (
            f"second half of the flood ({tail[0]['clients']:,} to {tail[-1]['clients']:,} "
            f"clients), {cap:,} tracked throughout: traced {min(traced_mb):,.1f} to "
            f"{max(traced_mb):,.1f} MB, RSS {min(rss_mb):,.1f} to {max(rss_mb):,.1f} MB"
        )
    rises = [
        f"- traced memory last rose by more than 1 % in the slice ending at {now['clients']:,} "
        "clients\n"
        for was, now in zip(traced_points, traced_points[1:])
        if now["traced"] > was["traced"] * 1.01
    ]
    return template(
        "flood-pass.md",
        variant=variant,
        label=VARIANTS[variant][1],
        table=table(headings, rows, text=0),
        speeds="; ".join(speeds) or "no whole slice",
        plateau=plateau,
        rises=rises[-1] if rises else "",
        growth=mb(traced_points[-1]["traced"] - traced_points[0]["traced"]),
        tracked=traced_points[-1]["tracked"],
        per_client=growth_per_client(traced),
        timed=timed,
        traced=traced,
    )


def report_memory(traced: dict[str, Reply], fills: Sequence[Reply], cap: int) -> str:
    def row(what: str, logs: int, requests: int, size: float) -> list[str]:
        return [what, f"{logs:,}", str(requests), f"{size:,.0f}", f"{mb(size * cap)} MB"]

    rows = [
        row(
            f"{variant} flood, at its end",
            found["points"][-1]["tracked"],
            1,
            growth_per_client(found),
        )
        for variant, found in traced.items()
    ]
    rows += [
        row(
            "storage.hit directly, no eviction",
            fill["tracked"],
            fill["requests"],
            fill["bytes_per_client"],
        )
        for fill in fills
    ]
    headings = ["measured", "logs", "requests per log", "bytes per client", f"x {cap:,} (the cap)"]
    one, full = fills[0]["bytes_per_client"], fills[-1]["bytes_per_client"]
    extra = max(growth_per_client(result) for result in traced.values()) - one
    return template(
        "flood-memory.md",
        table=table(headings, rows),
        ipv6_every=IPV6_EVERY,
        extra=extra,
        largest=LARGEST,
        cap=cap,
        at_most=mb((full + extra) * cap),
        full=full,
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    smoke = common.arguments(__doc__, argv, smoke="1,000 clients against a cap of 250").smoke
    clients, cap, fill_clients = SMOKE if smoke else FULL
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
        ban = {"banned": BANNED_CLIENT, "clock_step": CLOCK_STEP, "scale": not trace}
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
