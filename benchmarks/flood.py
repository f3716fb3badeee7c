"""Memory and per-request time of GateKeeper while a million distinct clients arrive.

Not a test: it prints Markdown tables and asserts no speed (it fails loudly only when a
request gets an unexpected status, the tracked count passes its cap, or the ban set
before the flood does not hold after it). ``--smoke`` runs the same code with tiny
counts (1 000 clients against a cap of 250) in a few seconds.

The flood of issue 3: every request comes from a client never seen before, so each one
adds a log to the memory storage, and once ``max_clients`` logs are held each one also
evicts the least recently seen. Nine clients in ten are IPv4 addresses, one in ten an
IPv6 address from a /64 of its own (so a distinct key under the default
``ipv6_prefix=64``). Two configurations, both with the design's example rules (20 per
second, 100 per 10 seconds, a ban after 3 reports in 10 seconds for 600 seconds) and the
default cap of 100 000 tracked logs:

- ``direct``: default settings, the client is the socket peer (``REMOTE_ADDR``);
- ``proxy``: ``trusted_proxies=1`` behind one proxy (``REMOTE_ADDR`` is the proxy), each
  request with a distinct ``X-Forwarded-For`` value, the right-most of which the
  proxy vouches for: a distinct client per request, as a botnet or an attacker
  rotating through IPv6 networks would be (or anyone, under a misconfigured trust).

Before the flood one client is banned (three ``gk.report(ip=...)``); after it, a request
from that client must still get 403: an active ban is never evicted to make room.

Requests as every benchmark sends them (``harness.serve``): ``app.wsgi_app`` called
directly on a copy of one prebuilt GET environ with the client's address set in it, the
body consumed and closed; the addresses of a slice are built before the slice is timed.
The clock is ``itertools.count(...).__next__``, a C call like ``time.monotonic``, moving
on by ``CLOCK_STEP`` per reading: a flood of 10 000 requests per second, so a million
requests take 100 seconds of clock time, well inside the ban.
The garbage collector stays on during the flood, as on a server (the logs are objects it
tracks): objects built before the flood are frozen out of it, as in ``overhead.py``.

Each pass runs in a fresh process (so RSS, read from ``/proc/self/statm``, is this
pass's alone). Time and RSS come from a pass without ``tracemalloc``; the traced
memory comes from a second, identical pass with ``tracemalloc`` on, which is several
times slower (its time is not reported). Readings are taken after a ``gc.collect()``,
outside the timed loop. A last pass measures the bytes per tracked client with the
storage called directly: logs holding one request each, and full logs (100 requests,
the seed's largest count), which bound the memory at the cap.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import multiprocessing
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

import common
import harness
from harness import BAN_RULE, RATE_LIMIT_RULES, START, expect_only, serve
from werkzeug.test import EnvironBuilder

from flask_gatekeeper import GateKeeper, MemoryStorage
from flask_gatekeeper.addresses import parse_address
from flask_gatekeeper.storage import DEFAULT_MAX_CLIENTS

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

CLOCK_STEP = 0.0001
"""Seconds per clock reading: 10 000 requests per second of clock time."""
FILL_CLOCK_STEP = 0.25
"""The direct storage fill hits each client once per round of thousands of clients, so
each of its requests is seconds after the client's previous one: all are admitted."""

BANNED_CLIENT = "192.0.2.1"
PROXY_ADDRESS = "172.16.0.2"
IPV6_EVERY = 10
"""One client in this many is IPv6 (from a /64 of its own), the others IPv4."""

FULL = 1_000_000, DEFAULT_MAX_CLIENTS, 10_000
"""Flood clients, the storage's cap on tracked logs, and clients of the direct fills."""
SMOKE = 1_000, 250, 100
FILL_REQUESTS = max(rule["count"] for rule in RATE_LIMIT_RULES)
"""Requests per client for full logs: the largest count, the depth of a log's ring."""

MB = 1024 * 1024

VARIANTS = {
    "direct": "clients identified by REMOTE_ADDR (default settings)",
    "proxy": "behind one trusted proxy (trusted_proxies=1), a distinct X-Forwarded-For each",
}


def client_address(number: int) -> str:
    """The number-th distinct client: 10.x.y.z, or every IPV6_EVERY-th an IPv6 address
    in a /64 of its own (a varying host part, as a client rotating addresses would)."""
    if number % IPV6_EVERY == IPV6_EVERY - 1:
        return f"2001:db8:{number >> 16:x}:{number & 0xFFFF:x}::{number * 40503 & 0xFFFF:x}"
    return harness.client_ip(number)


def client_key(number: int) -> str:
    """The key GateKeeper counts ``client_address(number)`` under (IPv6: its /64)."""
    if number % IPV6_EVERY == IPV6_EVERY - 1:
        return f"2001:db8:{number >> 16:x}:{number & 0xFFFF:x}::/64"
    return client_address(number)


def traced_bytes() -> int:
    return tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else -1


@dataclass(frozen=True)
class PassConfig:
    variant: str
    traced: bool
    clients: int
    every: int
    max_clients: int


@dataclass(frozen=True)
class Reading:
    """The state after ``clients`` flood clients (0: just before the flood)."""

    clients: int
    tracked: int
    rss_kb: int
    traced: int
    """tracemalloc's current traced memory in bytes; -1 in the untraced pass."""
    us_per_request: float
    """Mean over the slice since the previous reading; NaN for the reading before."""


@dataclass
class PassResult:
    config: PassConfig
    bare_us: float = float("nan")
    """Bare Flask through the same loop and environs, for scale (untraced pass only)."""
    readings: list[Reading] = field(default_factory=list)
    ban_seconds: float = 0.0
    ban_left_after: float = 0.0
    bans_after: int = 0
    clock_seconds: float = 0.0
    seconds: float = 0.0


def run_pass(config: PassConfig) -> PassResult:
    """One flood through a fresh app, in this (fresh) process."""
    if config.traced:
        tracemalloc.start()
    started = time.perf_counter()
    result = PassResult(config)
    base, where = harness.GET, "REMOTE_ADDR"
    if config.variant == "proxy":  # the client in X-Forwarded-For, REMOTE_ADDR the proxy
        base = EnvironBuilder(environ_base={"REMOTE_ADDR": PROXY_ADDRESS}).get_environ()
        where = "HTTP_X_FORWARDED_FOR"

    def flood(wsgi: WSGIApplication, clients: Sequence[str]) -> int:
        """One request from each of ``clients``, the collector on; elapsed ns."""
        start = time.perf_counter_ns()
        serve(wsgi, clients, base, where)
        return time.perf_counter_ns() - start

    def status_of(wsgi: WSGIApplication, client: str) -> str:
        """The status line of one request from ``client``."""
        harness.take_statuses()
        serve(wsgi, [client], base, where)
        (status,) = harness.take_statuses()
        return status

    slices = [
        range(start, min(start + config.every, config.clients))
        for start in range(0, config.clients, config.every)
    ]

    if not config.traced:  # bare Flask for scale; it also warms the interpreter up
        clients = [client_address(number) for number in slices[0]]
        elapsed = flood(harness.new_app("bare").wsgi_app, clients)
        expect_only(harness.OK, "bare Flask")
        result.bare_us = elapsed / len(clients) / 1000

    clock = itertools.count(START, CLOCK_STEP).__next__
    storage = MemoryStorage(max_clients=config.max_clients, clock=clock)
    app = harness.new_app(f"flood-{config.variant}")
    # The cap is the storage's: GateKeeper refuses max_clients along with a storage object
    # (it sizes only the storage it builds itself, the same MemoryStorage(max_clients=...)).
    gk = GateKeeper(
        app,
        ban_rule=BAN_RULE,
        rate_limit_rules=RATE_LIMIT_RULES,
        storage=storage,
        trusted_proxies=1 if config.variant == "proxy" else None,
    )
    with app.app_context():
        for _ in range(BAN_RULE["count"]):
            gk.report(ip=BANNED_CLIENT)
        result.ban_seconds = gk.banned_for(BANNED_CLIENT)
    status = status_of(app.wsgi_app, BANNED_CLIENT)
    if result.ban_seconds <= 0 or status != harness.FORBIDDEN:
        raise RuntimeError(f"the ban before the flood did not take: {status}")

    def reading(clients: int, elapsed_ns: int, requests: int) -> Reading:
        gc.collect()
        return Reading(
            clients=clients,
            tracked=storage.tracked,
            rss_kb=harness.rss() // 1024,
            traced=traced_bytes(),
            us_per_request=elapsed_ns / requests / 1000 if requests else float("nan"),
        )

    result.readings.append(reading(0, 0, 0))
    gc.freeze()  # the app, the ban and everything imported: collections skip them
    for numbers in slices:
        clients = [client_address(number) for number in numbers]
        elapsed = flood(app.wsgi_app, clients)
        expect_only(harness.OK, f"{config.variant} flood, clients {numbers.start:,}+")
        del clients  # what the storage keeps of them stays alive
        result.readings.append(reading(numbers.stop, elapsed, len(numbers)))
        if storage.tracked > config.max_clients:
            raise RuntimeError(f"{storage.tracked:,} logs tracked, over the cap")
    gc.unfreeze()

    status = status_of(app.wsgi_app, BANNED_CLIENT)
    with app.app_context():
        result.ban_left_after = gk.banned_for(BANNED_CLIENT)
        result.bans_after = len(gk.bans())
    if status != harness.FORBIDDEN or result.ban_left_after <= 0:
        raise RuntimeError(f"the ban did not survive the flood: {status}")
    result.clock_seconds = clock() - START
    result.seconds = time.perf_counter() - started
    return result


@dataclass(frozen=True)
class FillResult:
    clients: int
    requests: int
    tracked: int
    bytes_per_client: float


def fill_storage(clients: int, requests: int) -> FillResult:
    """Bytes per tracked client with the storage called directly (no Flask): ``clients``
    logs of ``requests`` each, keys as GateKeeper builds them, in a fresh process."""
    for number in range(IPV6_EVERY):  # the keys here are the ones a request produces
        address = parse_address(client_address(number), 64)
        if address is None or address.key != client_key(number):
            raise RuntimeError(f"client_key({number}) is not the key of {client_address(number)}")
    scopes = harness.ours_scopes(RATE_LIMIT_RULES)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    storage = MemoryStorage(
        max_clients=max(clients, DEFAULT_MAX_CLIENTS),
        clock=itertools.count(START, FILL_CLOCK_STEP).__next__,
    )
    keys = [client_key(number) for number in range(clients)]
    for _ in range(requests):
        for key in keys:
            if not storage.hit(key, scopes).admitted:
                raise RuntimeError("the direct fill was refused: check FILL_CLOCK_STEP")
    del keys  # the storage holds them
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return FillResult(clients, requests, storage.tracked, used / storage.tracked)


# -- running the passes and reporting ------------------------------------------------------


def in_fresh_processes(
    calls: Sequence[tuple[Callable[..., object], tuple[object, ...]]], parallel: int = 1
) -> list[object]:
    """Each ``function(*args)`` in a new interpreter of its own (``spawn``, one task per
    process), so that its RSS starts clean; ``parallel`` of them at a time. The results
    come back pickled, in order."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(parallel, maxtasksperchild=1) as pool:
        pending = [pool.apply_async(function, args) for function, args in calls]
        return [result.get() for result in pending]


def mb(size: float) -> str:
    return f"{size / MB:,.1f}"


def growth_per_client(result: PassResult) -> float:
    """Traced memory gained since just before the flood, per log tracked at its end."""
    before, last = result.readings[0], result.readings[-1]
    return (last.traced - before.traced) / last.tracked


def report_pass(timed: PassResult, traced: PassResult) -> list[str]:
    config = timed.config
    cap = config.max_clients
    lines = [
        f"### {config.variant}: {VARIANTS[config.variant]}",
        "",
        "| clients so far | tracked | RSS MB | traced MB | µs/request (slice) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for plain, with_trace in zip(timed.readings, traced.readings):
        if (plain.clients, plain.tracked) != (with_trace.clients, with_trace.tracked):
            raise SystemExit(f"flood.py: the passes disagree: {plain} vs {with_trace}")
        speed = "" if plain.clients == 0 else f"{plain.us_per_request:.2f}"
        lines.append(
            f"| {plain.clients:,} | {plain.tracked:,} | {plain.rss_kb / 1024:,.1f} "
            f"| {mb(with_trace.traced)} | {speed} |"
        )
    lines.append("")
    pairs = list(zip(timed.readings, timed.readings[1:]))
    # A slice that crossed the cap mixes both phases: it counts in neither median.
    phases = (
        ("filling up", [now.us_per_request for _, now in pairs if now.tracked == now.clients]),
        ("at the cap, evicting", [now.us_per_request for was, now in pairs if was.tracked >= cap]),
    )
    speeds = [
        f"{phase}: median {statistics.median(values):.2f} µs over {len(values)} slices"
        for phase, values in phases
        if values
    ]
    lines.append(f"- bare Flask, same loop and environs: {timed.bare_us:.2f} µs/request")
    lines.append(f"- GateKeeper per request, {'; '.join(speeds) or 'no whole slice'}")
    half = len(timed.readings) // 2
    tail, rss_tail = traced.readings[half:], timed.readings[half:]
    if min(reading.tracked for reading in tail) >= cap:
        traced_mb = [reading.traced / MB for reading in tail]
        rss_mb = [reading.rss_kb / 1024 for reading in rss_tail]
        lines.append(
            f"- second half of the flood ({tail[0].clients:,} to {tail[-1].clients:,} clients), "
            f"{cap:,} tracked throughout: traced {min(traced_mb):,.1f} to {max(traced_mb):,.1f} "
            f"MB, RSS {min(rss_mb):,.1f} to {max(rss_mb):,.1f} MB"
        )
    else:
        lines.append(f"- the cap ({cap:,}) was not reached by mid-flood: no plateau to show")
    rises = [
        now.clients
        for was, now in zip(traced.readings, traced.readings[1:])
        if now.traced > was.traced * 1.01
    ]
    if rises:
        lines.append(
            f"- traced memory last rose by more than 1 % in the slice ending at {rises[-1]:,} "
            "clients"
        )
    last = traced.readings[-1]
    lines.append(
        f"- bytes per tracked client at the end (logs of 1 request): traced growth since "
        f"before the flood / tracked = {mb(last.traced - traced.readings[0].traced)} MB / "
        f"{last.tracked:,} = {growth_per_client(traced):,.0f} B"
    )
    lines.append(
        f"- banned client {BANNED_CLIENT}: 403 before and after the flood "
        f"({timed.clock_seconds:.0f} s of clock time); ban {timed.ban_seconds:.0f} s, "
        f"{timed.ban_left_after:.0f} s left after; active bans after: {timed.bans_after}"
    )
    lines.append(
        f"- pass times: {timed.seconds:.0f} s without tracemalloc, {traced.seconds:.0f} s with it"
    )
    return lines


def report_memory(traced: Sequence[PassResult], fills: Sequence[FillResult], cap: int) -> list[str]:
    lines = [
        "### bytes per tracked client (tracemalloc)",
        "",
        f"| measured | logs | requests per log | bytes per client | x {cap:,} (the cap) |",
        "|---|---:|---:|---:|---:|",
    ]
    for result in traced:
        per_client = growth_per_client(result)
        lines.append(
            f"| {result.config.variant} flood, at its end | {result.readings[-1].tracked:,} | 1 "
            f"| {per_client:,.0f} | {mb(per_client * cap)} MB |"
        )
    for fill in fills:
        lines.append(
            f"| storage.hit directly, no eviction | {fill.tracked:,} | {fill.requests} "
            f"| {fill.bytes_per_client:,.0f} | {mb(fill.bytes_per_client * cap)} MB |"
        )
    one = min(fills, key=lambda fill: fill.requests)
    full = max(fills, key=lambda fill: fill.requests)
    flood = max(growth_per_client(result) for result in traced)
    extra = flood - one.bytes_per_client
    lines += [
        "",
        f"Keys as GateKeeper builds them (1 in {IPV6_EVERY} an IPv6 /64). A flood costs more "
        f"per client than a direct fill of logs of 1 request ({extra:,.0f} B more): the table "
        "of logs keeps room for the slots that eviction frees, and the parsed-address cache "
        "(at most 8 192 entries) fills with IPv6 addresses. A log holds at most "
        f"{full.requests} timestamps (the largest count), so at the cap of {cap:,} the logs "
        f"take at most about {mb((full.bytes_per_client + extra) * cap)} MB "
        f"(full logs, {full.bytes_per_client:,.0f} B each, plus the flood's {extra:,.0f} B); "
        "bans live in a table of their own.",
    ]
    return lines


def run_all(configs: dict[tuple[str, bool], PassConfig], fill_clients: int) -> list[object]:
    """The timed passes one after the other, each alone on the machine; then the untimed
    ones (tracemalloc, direct fills) side by side, since only their memory is reported."""
    results: list[object] = []
    for (_variant, traced), config in configs.items():
        if not traced:
            results += in_fresh_processes([(run_pass, (config,))])
    results += in_fresh_processes(
        [(run_pass, (config,)) for (_variant, traced), config in configs.items() if traced]
        + [(fill_storage, (fill_clients, requests)) for requests in (1, FILL_REQUESTS)],
        parallel=max(1, min(2, os.cpu_count() or 1)),
    )
    return results


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"{SMOKE[0]:,} clients against a cap of {SMOKE[1]:,}: checks that everything "
        "runs (CI), in a few seconds",
    )
    clients, cap, fill_clients = SMOKE if parser.parse_args(argv).smoke else FULL
    every = clients // 10
    started = time.perf_counter()
    print(
        f"{common.setting()}; {clients:,} distinct clients, one request each (1 in "
        f"{IPV6_EVERY} IPv6); max_clients {cap:,}; a reading every {every:,} clients.",
        flush=True,
    )
    configs = {
        (variant, traced): PassConfig(variant, traced, clients, every, cap)
        for traced in (False, True)
        for variant in VARIANTS
    }
    try:
        results = run_all(configs, fill_clients)
    except RuntimeError as error:  # not SystemExit, which kills a pool's worker
        raise SystemExit(f"flood.py: {error}") from None
    passes = {
        (result.config.variant, result.config.traced): result
        for result in results
        if isinstance(result, PassResult)
    }
    fills = [result for result in results if isinstance(result, FillResult)]
    for variant in VARIANTS:
        print("\n" + "\n".join(report_pass(passes[variant, False], passes[variant, True])))
    traced = [passes[variant, True] for variant in VARIANTS]
    print("\n" + "\n".join(report_memory(traced, fills, cap)))
    print(f"\n(run took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
