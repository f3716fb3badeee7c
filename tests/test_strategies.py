"""The O(1)-memory strategies, on every storage: fixed window, sliding-window counter, GCRA.

Unit cases pin the boundaries; property tests replay random traffic against brute-force
models that keep every admitted request. Times are multiples of 1/64 s so that seconds
and Redis's integer microseconds agree exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import StorageFactory
from flask_gatekeeper import GateKeeper, Rule
from flask_gatekeeper.decision import Decision, Usage
from flask_gatekeeper.storage import Storage
from flask_gatekeeper.storage.plan import GLOBAL_SCOPE, Scope
from flask_gatekeeper.strategies import (
    FIXED_WINDOW,
    GCRA,
    SLIDING_WINDOW,
    offset,
)
from flask_gatekeeper.testing import FakeClock
from flask_gatekeeper.units import instant, microseconds
from support import AppFactory, index

TICK = 1 / 64
CLIENT = "198.51.100.4"


def one(rule: Rule) -> list[Scope]:
    return [Scope.of(GLOBAL_SCOPE, (rule,))]


def window_start(rule: Rule, now: float, client: str = CLIENT) -> float:
    """Where the client's current window of ``rule`` began (its per-client offset)."""
    window = microseconds(rule.window)
    shift = offset(client, window)
    return (math.floor((instant(now) - shift) / window) * window + shift) / 1e6


# --- fixed window ---------------------------------------------------------------------------


def test_fixed_window_counts_per_window_and_resets_at_its_end(
    storage: Storage, clock: FakeClock
) -> None:
    rule = Rule(3, 10, FIXED_WINDOW)
    start = window_start(rule, clock())
    clock.set(start)  # the very start of a window
    assert [storage.hit(CLIENT, one(rule)).admitted for _ in range(4)] == [True] * 3 + [False]
    clock.set(start + 9.5)
    refused = storage.hit(CLIENT, one(rule))
    assert refused == Decision(admitted=False, retry_after=0.5, rule=rule)
    clock.set(start + 10)  # the next window: a fresh count, whatever came just before
    assert [storage.hit(CLIENT, one(rule)).admitted for _ in range(4)] == [True] * 3 + [False]


def test_fixed_window_boundaries_differ_per_client() -> None:
    window = microseconds(60)
    shifts = {offset(f"10.0.{n >> 8}.{n & 255}", window) for n in range(200)}
    assert len(shifts) > 150  # spread out: clients do not all reset together
    assert all(0 <= shift < window for shift in shifts)
    assert offset("10.0.0.1", window) == offset("10.0.0.1", window)  # stable


# --- sliding window counter -----------------------------------------------------------------


def test_sliding_window_weighs_the_previous_window(storage: Storage, clock: FakeClock) -> None:
    rule = Rule(4, 10, SLIDING_WINDOW)
    start = window_start(rule, clock())
    clock.set(start)
    assert [storage.hit(CLIENT, one(rule)).admitted for _ in range(4)] == [True] * 4
    # A quarter into the next window the previous 4 weigh 3: room for exactly one more.
    clock.set(start + 12.5)
    assert storage.hit(CLIENT, one(rule)).admitted
    refused = storage.hit(CLIENT, one(rule))
    assert not refused.admitted
    # estimate 4 * (1 - f) + 1, plus this request, fits 4 once f >= 1/2: at start + 15
    assert refused.retry_after == pytest.approx(2.5, abs=1e-6)
    clock.set(start + 15)
    assert storage.hit(CLIENT, one(rule)).admitted


def test_sliding_window_full_window_waits_into_the_next(storage: Storage, clock: FakeClock) -> None:
    rule = Rule(2, 10, SLIDING_WINDOW)
    start = window_start(rule, clock())
    clock.set(start + 5)
    assert [storage.hit(CLIENT, one(rule)).admitted for _ in range(3)] == [True, True, False]
    refused = storage.hit(CLIENT, one(rule))
    # next window, the 2 weigh 2 * (1 - f): one more fits once 2 * (1 - f) + 1 <= 2, f = 1/2
    assert refused.retry_after == pytest.approx(5 + 5, abs=1e-6)


# --- GCRA -----------------------------------------------------------------------------------


def test_gcra_allows_a_burst_then_one_per_interval(storage: Storage, clock: FakeClock) -> None:
    rule = Rule(4, 2, GCRA)  # a burst of 4, then one every 0.5 s
    assert [storage.hit(CLIENT, one(rule)).admitted for _ in range(5)] == [True] * 4 + [False]
    assert storage.hit(CLIENT, one(rule)) == Decision(admitted=False, retry_after=0.5, rule=rule)
    clock.advance(0.5)
    assert storage.hit(CLIENT, one(rule)).admitted
    assert not storage.hit(CLIENT, one(rule)).admitted
    clock.advance(10)  # a long idle gap refills the whole burst, no more
    assert [storage.hit(CLIENT, one(rule)).admitted for _ in range(5)] == [True] * 4 + [False]


def test_refused_requests_cost_nothing_in_any_strategy(storage: Storage, clock: FakeClock) -> None:
    for strategy in (FIXED_WINDOW, SLIDING_WINDOW, GCRA):
        rule = Rule(1, 8, strategy)
        client = f"client-{strategy}"
        assert storage.hit(client, one(rule)).admitted
        first = storage.hit(client, one(rule))
        for _ in range(20):
            again = storage.hit(client, one(rule))
        assert again == first  # hammering while refused does not push the wait back


# --- mixing strategies ----------------------------------------------------------------------


def test_rules_of_different_strategies_mix_atomically(storage: Storage, clock: FakeClock) -> None:
    tight = Rule(1, 4, GCRA)
    log = Rule(3, 60)
    fixed = Rule(10, 3600, FIXED_WINDOW)
    scopes = [Scope.of(GLOBAL_SCOPE, (log, fixed)), Scope.of("route", (tight,))]
    assert storage.hit(CLIENT, scopes).admitted
    refused = storage.hit(CLIENT, scopes)
    assert (refused.admitted, refused.rule, refused.retry_after) == (False, tight, 4)
    for _ in range(2):
        clock.advance(4)
        assert storage.hit(CLIENT, scopes).admitted
    clock.advance(4)
    refused = storage.hit(CLIENT, scopes)  # the log is full: 3 in 60 s
    assert (refused.rule, refused.retry_after) == (log, 60 - 12)
    # nothing was recorded by the refusal: GCRA still has its room after 4 s
    assert storage.hit(CLIENT, [Scope.of("route", (tight,))]).admitted


def test_usage_of_each_strategy(storage: Storage, clock: FakeClock) -> None:
    rule = Rule(4, 2, GCRA)
    decision = storage.hit(CLIENT, one(rule), usage=True)
    assert decision.usage == Usage(rule, 3, 0.5)
    fixed = Rule(5, 10, FIXED_WINDOW)
    start = window_start(fixed, clock())
    clock.set(start + 2)
    decision = storage.hit(CLIENT, one(fixed), usage=True)
    assert decision.usage == Usage(fixed, 4, 8)


# --- configuration --------------------------------------------------------------------------


def test_default_strategy_applies_to_rules_without_one(
    make_app: AppFactory, clock: FakeClock
) -> None:
    app, _ = make_app(
        base={},
        routes=(index,),
        rate_limit_rules=["2 per 10 seconds", "100/hour (sliding-log)"],
        strategy="gcra",
    )
    client = app.test_client()
    assert [client.get("/").status_code for _ in range(3)] == [200, 200, 429]
    clock.advance(5)  # GCRA: one every 5 s after the burst; a sliding log would say 429
    assert client.get("/").status_code == 200


def test_a_large_sliding_log_warns_once_at_start_up(caplog: pytest.LogCaptureFixture) -> None:
    GateKeeper(Flask(__name__), rate_limit_rules=["10000/day", "20/second"])
    warnings = [r.getMessage() for r in caplog.records if r.name == "flask_gatekeeper"]
    assert len(warnings) == 1
    assert "10000 requests in a 86400s window" in warnings[0]
    assert "gcra" in warnings[0]
    caplog.clear()
    GateKeeper(Flask(__name__), rate_limit_rules=["10000/day (gcra)"])
    GateKeeper(Flask(__name__), rate_limit_rules=["10000/day"], strategy="sliding-window")
    assert not [r for r in caplog.records if r.name == "flask_gatekeeper"]


# --- properties against brute-force models --------------------------------------------------


@dataclass
class Model:
    """Every admitted request kept; each strategy's rule decided by scanning them."""

    rule: Rule
    stamps: list[int] = field(default_factory=list)  # microseconds

    def wait(self, now: int, client: str) -> int:
        rule = self.rule
        count, window = rule.count, microseconds(rule.window)
        if rule.strategy == GCRA:
            # a token bucket of `count`, one token back every window / count, exactly
            interval = Fraction(window, count)
            tokens = Fraction(count)
            last = None
            for stamp in self.stamps:
                if last is not None:
                    tokens = min(Fraction(count), tokens + (stamp - last) / interval)
                tokens -= 1
                last = stamp
            if last is not None:
                tokens = min(Fraction(count), tokens + (now - last) / interval)
            return 0 if tokens >= 1 else math.ceil((1 - tokens) * interval)
        shift = offset(client, window)
        index = math.floor((now - shift) / window)
        start = index * window + shift
        current = sum(1 for t in self.stamps if math.floor((t - shift) / window) == index)
        if rule.strategy == FIXED_WINDOW:
            return start + window - now if current >= count else 0
        previous = sum(1 for t in self.stamps if math.floor((t - shift) / window) == index - 1)
        fraction = (now - start) / window
        if previous * (1 - fraction) + current + 1 <= count:
            return 0
        if current + 1 > count:
            free_at = start + window + max(0, 1 - (count - 1) / current) * window
        else:
            free_at = start + (1 - (count - 1 - current) / previous) * window
        return max(1, math.ceil(free_at - now))

    def hit(self, now: int, client: str) -> int:
        wait = self.wait(now, client)
        if not wait:
            self.stamps.append(now)
        return wait


rules = st.builds(
    Rule,
    st.sampled_from([1, 2, 4, 5]),  # windows / count are whole microseconds
    st.sampled_from([1, 2, 10]),
    st.sampled_from([FIXED_WINDOW, SLIDING_WINDOW, GCRA]),
)
steps = st.lists(st.integers(min_value=0, max_value=6 * 64).map(lambda n: n * TICK), max_size=50)


@settings(max_examples=150, deadline=None)
@given(rule=rules, steps=steps, client=st.sampled_from(["10.0.0.1", "2001:db8::/64", "k"]))
def test_each_strategy_matches_its_brute_force_model(
    make_storage: StorageFactory, rule: Rule, steps: list[float], client: str
) -> None:
    clock = FakeClock(1000.0)
    storage = make_storage(clock)
    model = Model(rule)
    for step in steps:
        now = clock.advance(step)
        decision = storage.hit(client, one(rule))
        expected = model.hit(instant(now), client)
        assert decision.admitted == (expected == 0)
        assert decision.retry_after == expected / 1e6
