"""Per-request cost of GateKeeper over bare Flask, through the WSGI app called directly.

Not a test: it prints a Markdown table and asserts no speed. ``make bench`` runs the full
measurement (about two minutes on two cores); ``make bench-smoke`` (``--smoke``) runs the
same code with tiny counts, for CI, in a few seconds.

What is measured, per request: ``app.wsgi_app(environ, start_response)`` with the body
iterated and closed, on a copy of a prebuilt GET environ (no test client, no server, no
network), for

- bare Flask (the same ``"ok"`` view, no extension), as the baseline;
- GateKeeper admitting the request: two rate rules and a ban rule, clients identified by
  ``REMOTE_ADDR``, at 1, 1 000 and 100 000 distinct clients taken round-robin, every one
  already tracked (and its log ring already full) before timing starts;
- GateKeeper refusing it: a client over its limit (429), and a banned client (403).

Configurations are interleaved round by round (A B C ... then B C ... A, and so on), so
that drifts in machine speed hit all of them alike; the table shows medians over rounds.
The overhead and the ratios are medians of per-round paired differences and ratios (each
configuration against bare Flask at the same number of clients, timed in the same round).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import TYPE_CHECKING, Optional

from flask import Flask
from werkzeug.test import EnvironBuilder
from wsgi_calls import index, start_response, statuses

from flask_gatekeeper import GateKeeper, MemoryStorage

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

# The rules of the design's example: what a real deployment configures.
RATE_LIMIT_RULES = [{"count": 20, "window": 1}, {"count": 100, "window": 10}]
BAN_RULE = {"count": 3, "window": 10, "duration": 600}
RING_DEPTH = max(rule["count"] for rule in RATE_LIMIT_RULES)
"""The memory storage keeps this many timestamps per client (the largest count)."""

# Clocks. The admitted path must really be admitted, at 20 requests per second per client,
# while the loop runs tens of thousands of requests per second. Huge counts (10**9) would admit
# everything too, but then no ring ever fills, no rule is ever evaluated (a rule is only
# looked at once the log holds `count` entries) and each client's log grows by one entry
# per request: not the path a real server runs. So the rules stay realistic and time is
# faked instead: every reading of the clock moves it on by CLOCK_STEP seconds. A client
# that sends one request per reading is then at 4 requests per second: every rule is
# evaluated by its index into a full ring and admits, as on a busy but honest server.
# ``itertools.count(...).__next__`` is used rather than ``testing.FakeClock`` because it is
# a C call like ``time.monotonic`` (FakeClock is a Python-level ``__call__``, and advancing
# it in the loop takes a lock): the clock costs what the production clock costs.
CLOCK_START = 1000.0
CLOCK_STEP = 0.25
# The refusal paths freeze time instead, so a refused client stays refused and a banned one
# stays banned however long the run takes; ``itertools.repeat(...).__next__`` is a C call too.

CLIENT_COUNTS = (1, 1_000, 100_000)
"""MemoryStorage's default max_clients is 100 000: every client fits, none is evicted."""

FULL_ROUNDS, FULL_REQUESTS = 15, 10_000
SMOKE_ROUNDS, SMOKE_REQUESTS = 2, 200


def new_app(name: str) -> Flask:
    app = Flask(name)
    app.add_url_rule("/", view_func=index)
    return app


def gatekeeper_app(
    name: str, clock: Callable[[], float]
) -> tuple[Flask, GateKeeper, MemoryStorage]:
    app = new_app(name)
    storage = MemoryStorage(clock=clock)
    gk = GateKeeper(app, ban_rule=BAN_RULE, rate_limit_rules=RATE_LIMIT_RULES, storage=storage)
    return app, gk, storage


def client_ip(number: int) -> str:
    """The number-th distinct client address, from 10.0.0.1 on."""
    number += 1
    return f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}"


def environs_for(count: int, base: WSGIEnvironment) -> list[WSGIEnvironment]:
    """One GET environ per client. They share ``base``'s empty ``wsgi.input``, which is
    fine for GET requests without a body: nothing reads it."""
    return [dict(base, REMOTE_ADDR=client_ip(number)) for number in range(count)]


def run_requests(wsgi: WSGIApplication, environs: Iterator[WSGIEnvironment], count: int) -> int:
    """Send ``count`` requests, consuming and closing each response; return elapsed ns.

    Each call gets a fresh copy of its environ: Flask stores the request object in it.
    """
    requests = itertools.islice(environs, count)
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for environ in requests:
            body = wsgi(dict(environ), start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()
        return time.perf_counter_ns() - start
    finally:
        gc.enable()


def expect_only(status: str, what: str) -> None:
    """Fail loudly when a loop saw any other status: the numbers would measure another path."""
    seen = dict(statuses)
    statuses.clear()
    if set(seen) - {status}:
        raise SystemExit(f"{what}: expected only {status!r}, got {seen}")


@dataclass
class Case:
    """One configuration: a WSGI app and the endless round-robin of clients it is sent."""

    label: str
    clients: int
    wsgi: WSGIApplication
    environs: Iterator[WSGIEnvironment]
    status: str
    baseline: Optional[Case] = None
    samples: list[float] = field(default_factory=list)
    """Mean microseconds per request, one per round."""

    def measure(self, requests: int) -> float:
        elapsed = run_requests(self.wsgi, self.environs, requests)
        expect_only(self.status, f"{self.label} ({self.clients} clients)")
        return elapsed / requests / 1000


def fill_rings(storage: MemoryStorage, clients: Sequence[str]) -> None:
    """Record RING_DEPTH - 1 more requests for every (already tracked) client, so that
    each rule is decided by its index into a full ring, the steady state, at every client
    count. Through Flask this would take minutes at 100 000 clients, so the storage is
    called directly, with the scope the extension builds for the global rules."""
    from flask_gatekeeper import Rule
    from flask_gatekeeper.policy import GLOBAL_SCOPE, Scope

    rules = tuple(Rule(rule["count"], rule["window"]) for rule in RATE_LIMIT_RULES)
    scopes = (Scope.of(GLOBAL_SCOPE, rules),)
    for _ in range(RING_DEPTH - 1):
        for client in clients:
            if not storage.hit(client, scopes).admitted:
                raise SystemExit("the ring fill was refused: check CLOCK_STEP")


def build_cases(client_counts: Sequence[int], fill: bool) -> list[Case]:
    """Bare and admitted at each client count, then the two refusals at one client."""
    base = EnvironBuilder(path="/", method="GET").get_environ()
    cases: list[Case] = []
    for count in client_counts:
        environs = environs_for(count, base)
        bare = Case(
            "bare Flask", count, new_app("bare").wsgi_app, itertools.cycle(environs), "200 OK"
        )
        app, _gk, storage = gatekeeper_app(
            f"admitted-{count}", itertools.count(CLOCK_START, CLOCK_STEP).__next__
        )
        # Pre-warm: one real request per client, so every client is tracked...
        run_requests(app.wsgi_app, iter(environs), count)
        expect_only("200 OK", f"warm-up of {count} clients")
        # ...and, for the full run, every log ring full (see fill_rings).
        if fill:
            fill_rings(storage, [environ["REMOTE_ADDR"] for environ in environs])
        if storage.tracked != count:
            raise SystemExit(f"{storage.tracked} clients tracked, expected {count}")
        admitted = Case(
            "GateKeeper, admitted", count, app.wsgi_app, itertools.cycle(environs), "200 OK", bare
        )
        cases += [bare, admitted]
    bare_one = next(case for case in cases if case.clients == 1 and case.baseline is None)
    one_client = [dict(base, REMOTE_ADDR=client_ip(0))]

    # The floor of any before_request extension: Flask calling one hook that does nothing.
    hooked = new_app("empty-hook")
    hooked.before_request(lambda: None)
    cases.append(
        Case(
            "Flask + an empty before_request",
            1,
            hooked.wsgi_app,
            itertools.cycle(one_client),
            "200 OK",
            bare_one,
        )
    )

    frozen = itertools.repeat(CLOCK_START).__next__
    app, _gk, _storage = gatekeeper_app("refused", frozen)
    limit = min(rule["count"] for rule in RATE_LIMIT_RULES)
    run_requests(app.wsgi_app, itertools.cycle(one_client), limit + 1)
    if statuses != {"200 OK": limit, "429 TOO MANY REQUESTS": 1}:
        raise SystemExit(f"filling the refused client's rule: got {statuses}")
    statuses.clear()
    cases.append(
        Case(
            "GateKeeper, refused (429)",
            1,
            app.wsgi_app,
            itertools.cycle(one_client),
            "429 TOO MANY REQUESTS",
            bare_one,
        )
    )

    app, gk, _storage = gatekeeper_app("banned", frozen)
    with app.app_context():
        for _ in range(BAN_RULE["count"]):
            gk.report(ip=client_ip(0))
    cases.append(
        Case(
            "GateKeeper, banned (403)",
            1,
            app.wsgi_app,
            itertools.cycle(one_client),
            "403 FORBIDDEN",
            bare_one,
        )
    )
    return cases


def run_rounds(cases: Sequence[Case], rounds: int, requests: int) -> None:
    """One untimed round (caches, the interpreter's specialisation), then ``rounds`` rounds
    in rotating order, with a full collection between rounds and none inside a loop."""
    for case in cases:
        case.measure(max(requests // 10, 10))
    for number in range(rounds):
        gc.collect()
        shift = number % len(cases)
        for case in [*cases[shift:], *cases[:shift]]:
            case.samples.append(case.measure(requests))


def paired(case: Case, other: Case, combine: Callable[[float, float], float]) -> float:
    """The median over rounds of ``combine(case, other)`` for the same round."""
    return statistics.median(combine(a, b) for a, b in zip(case.samples, other.samples))


def spread(samples: Sequence[float]) -> str:
    """The interquartile range over rounds, as +- half of it, in microseconds."""
    if len(samples) < 4:
        return "n/a"
    low, _, high = statistics.quantiles(samples, n=4)
    return f"±{(high - low) / 2:.2f}"


def report(cases: Sequence[Case], rounds: int, requests: int) -> str:
    lines = [
        f"Python {platform.python_version()}, Flask {version('flask')}, {sys.platform}; "
        f"{rounds} rounds x {requests} requests per configuration; medians over rounds.",
        "",
        "| path | clients | µs/request | spread | overhead vs bare | ratio vs bare |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        if case.baseline is None:
            overhead, ratio = "", "1.00x"
        else:
            overhead = f"{paired(case, case.baseline, lambda a, b: a - b):+.2f} µs"
            ratio = f"{paired(case, case.baseline, lambda a, b: a / b):.2f}x"
        lines.append(
            f"| {case.label} | {case.clients:,} | {statistics.median(case.samples):.2f} "
            f"| {spread(case.samples)} | {overhead} | {ratio} |"
        )
    lines.append("")
    by_key = {(case.label, case.clients): case for case in cases}
    few, many = min(CLIENT_COUNTS), max(CLIENT_COUNTS)
    for label in ("GateKeeper, admitted", "bare Flask"):
        one, lots = by_key.get((label, few)), by_key.get((label, many))
        if one is not None and lots is not None:
            lines.append(
                f"- {label}, {many:,} vs {few} client: "
                f"{paired(lots, one, lambda a, b: a / b):.2f}x per request"
            )
    one, lots = (
        by_key.get(("GateKeeper, admitted", few)),
        by_key.get(("GateKeeper, admitted", many)),
    )
    if one is not None and lots is not None and one.baseline and lots.baseline:
        over_one = paired(one, one.baseline, lambda a, b: a - b)
        over_lots = paired(lots, lots.baseline, lambda a, b: a - b)
        lines.append(
            f"- GateKeeper's own overhead, {many:,} vs {few} client: "
            f"{over_lots:.2f} µs vs {over_one:.2f} µs"
        )
    lines.append(
        "- Targets (design): admitted within 1.10x of bare Flask; "
        f"{many:,} clients within 1.10x of {few}."
    )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny counts and no ring fill: checks that everything runs (CI), not speed",
    )
    parser.add_argument("--rounds", type=int, help="timed rounds per configuration")
    parser.add_argument("--requests", type=int, help="requests per configuration per round")
    args = parser.parse_args(argv)
    rounds = args.rounds or (SMOKE_ROUNDS if args.smoke else FULL_ROUNDS)
    requests = args.requests or (SMOKE_REQUESTS if args.smoke else FULL_REQUESTS)

    started = time.perf_counter()
    cases = build_cases(CLIENT_COUNTS, fill=not args.smoke)
    gc.collect()
    gc.freeze()  # the apps, environs and logs built above: later collections skip them
    run_rounds(cases, rounds, requests)
    print(report(cases, rounds, requests))
    print(f"\n(run took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
