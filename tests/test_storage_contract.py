"""The storage contract, run unchanged against every storage: exact sliding logs, atomic
scopes, bans; then what only the memory storage promises (bounds, eviction, threads).

Time only moves through ``FakeClock``; every expected wait is computed with the same float
expression the contract states (``stamp + window - now``), so ``==`` is exact. Times are
multiples of 1/64 s, exact both as floats and as Redis's integer microseconds.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Union

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import StorageFactory
from flask_gatekeeper import BanRule, ConfigError, ConfigTypeError, Decision, Rule
from flask_gatekeeper.decision import BanDetail, ShadowRefusal, Usage
from flask_gatekeeper.storage import Storage
from flask_gatekeeper.storage.plan import GLOBAL_SCOPE, Scope
from flask_gatekeeper.strategies import FIXED_WINDOW, GCRA, SLIDING_LOG, SLIDING_WINDOW
from flask_gatekeeper.testing import FakeClock, MemoryStorage

T0 = 1000.0


def scope(name: str, *rules: Rule) -> Scope:
    return Scope.of(name, rules)


TICK = 1 / 64
"""The smallest step the contract tests take: exact in binary and in microseconds."""


def just_before(moment: float) -> float:
    return moment - TICK


def assert_admitted(decision: Decision) -> None:
    assert decision == Decision(admitted=True)


def assert_limited(
    decision: Decision, retry_after: float, rule: Rule, scope: str = GLOBAL_SCOPE
) -> None:
    """Refused by ``rule`` of ``scope`` (the decision names both)."""
    assert decision == Decision(
        admitted=False, banned=False, retry_after=retry_after, rule=rule, scope=scope
    )


def assert_banned(decision: Decision, retry_after: float) -> None:
    assert decision == Decision(admitted=False, banned=True, retry_after=retry_after, rule=None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


# --- one rule: the sliding log is exact ---------------------------------------------------------


def test_admits_count_requests_then_refuses(storage: Storage) -> None:
    rule = Rule(3, 10)
    scopes = [scope(GLOBAL_SCOPE, rule)]
    for _ in range(3):
        assert_admitted(storage.hit("1.2.3.4", scopes))
    assert_limited(storage.hit("1.2.3.4", scopes), T0 + 10 - T0, rule)


@pytest.mark.parametrize("window", [0.5, 1, 2.5, 10, 3600])
def test_a_request_stops_counting_exactly_at_its_stamp_plus_window(
    storage: Storage, clock: FakeClock, window: float
) -> None:
    rule = Rule(1, window)
    scopes = [scope(GLOBAL_SCOPE, rule)]
    assert_admitted(storage.hit("c", scopes))
    end = T0 + window
    clock.set(just_before(end))
    assert_limited(storage.hit("c", scopes), end - just_before(end), rule)
    clock.set(end)
    assert_admitted(storage.hit("c", scopes))
    assert_limited(storage.hit("c", scopes), end + window - end, rule)


def test_the_count_th_newest_request_decides(storage: Storage, clock: FakeClock) -> None:
    rule = Rule(3, 5)
    scopes = [scope(GLOBAL_SCOPE, rule)]
    for offset in (0, 1, 2):
        clock.set(T0 + offset)
        assert_admitted(storage.hit("c", scopes))
    clock.set(T0 + 4.5)
    assert_limited(storage.hit("c", scopes), T0 + 0 + 5 - (T0 + 4.5), rule)
    clock.set(T0 + 5)  # the request at T0 leaves the window
    assert_admitted(storage.hit("c", scopes))
    clock.set(T0 + 5.5)  # now stamps T0+1, T0+2, T0+5: the oldest of them decides
    assert_limited(storage.hit("c", scopes), T0 + 1 + 5 - (T0 + 5.5), rule)
    clock.set(T0 + 6)
    assert_admitted(storage.hit("c", scopes))
    clock.set(T0 + 6.25)
    assert_limited(storage.hit("c", scopes), T0 + 2 + 5 - (T0 + 6.25), rule)


def test_refused_requests_are_not_counted(storage: Storage, clock: FakeClock) -> None:
    rule = Rule(2, 10)
    scopes = [scope(GLOBAL_SCOPE, rule)]
    assert_admitted(storage.hit("c", scopes))
    assert_admitted(storage.hit("c", scopes))
    for step in range(20):  # hammering while limited...
        now = T0 + step * 0.5
        clock.set(now)
        assert_limited(storage.hit("c", scopes), T0 + 10 - now, rule)
    clock.set(T0 + 10)  # ...does not extend the wait
    assert_admitted(storage.hit("c", scopes))
    assert_admitted(storage.hit("c", scopes))
    assert_limited(storage.hit("c", scopes), T0 + 10 + 10 - (T0 + 10), rule)


# --- several rules: the wait until every full rule admits --------------------------------------


@pytest.mark.parametrize("reverse", [False, True], ids=["in order", "reversed"])
def test_retry_after_is_the_longest_wait_over_full_rules(
    storage: Storage, clock: FakeClock, reverse: bool
) -> None:
    short, long = Rule(1, 1), Rule(3, 10)
    rules = (long, short) if reverse else (short, long)
    scopes = [scope(GLOBAL_SCOPE, *rules)]
    for offset in (0, 1, 2):
        clock.set(T0 + offset)
        assert_admitted(storage.hit("c", scopes))
    clock.set(T0 + 2.5)  # both full: short frees at T0+3, long at T0+10
    assert_limited(storage.hit("c", scopes), T0 + 0 + 10 - (T0 + 2.5), long)
    clock.set(T0 + 3)  # short has room now, long still waits
    assert_limited(storage.hit("c", scopes), T0 + 0 + 10 - (T0 + 3), long)
    clock.set(T0 + 10)
    assert_admitted(storage.hit("c", scopes))


@pytest.mark.parametrize("reverse", [False, True], ids=["in order", "reversed"])
def test_the_rule_with_the_longest_wait_is_named_even_if_its_window_is_shorter(
    storage: Storage, clock: FakeClock, reverse: bool
) -> None:
    one_in_5, two_in_6 = Rule(1, 5), Rule(2, 6)
    rules = (two_in_6, one_in_5) if reverse else (one_in_5, two_in_6)
    scopes = [scope(GLOBAL_SCOPE, *rules)]
    assert_admitted(storage.hit("c", scopes))
    clock.set(T0 + 5)
    assert_admitted(storage.hit("c", scopes))
    clock.set(T0 + 5.5)  # 1-in-5 frees at T0+10, 2-in-6 at T0+6
    assert_limited(storage.hit("c", scopes), T0 + 5 + 5 - (T0 + 5.5), one_in_5)


def test_retry_after_spans_scopes(storage: Storage, clock: FakeClock) -> None:
    global_rule, route_rule = Rule(1, 5), Rule(1, 20)
    scopes = [scope(GLOBAL_SCOPE, global_rule), scope("login", route_rule)]
    assert_admitted(storage.hit("c", scopes))
    clock.set(T0 + 1)
    assert_limited(storage.hit("c", scopes), T0 + 20 - (T0 + 1), route_rule, "login")
    clock.set(T0 + 5)  # the global rule has room, the route's does not
    assert_limited(storage.hit("c", scopes), T0 + 20 - (T0 + 5), route_rule, "login")
    assert_admitted(storage.hit("c", [scope(GLOBAL_SCOPE, global_rule)]))


# --- atomicity: no scope records a refused request ---------------------------------------------


def test_a_route_refusal_records_nothing_in_the_global_scope(storage: Storage) -> None:
    global_scope = scope(GLOBAL_SCOPE, Rule(5, 60))
    route_scope = scope("burst", Rule(1, 60))
    assert_admitted(storage.hit("c", [global_scope, route_scope]))
    for _ in range(10):
        assert not storage.hit("c", [global_scope, route_scope]).admitted
    for _ in range(4):  # the global scope still has its full room (5, one used)
        assert_admitted(storage.hit("c", [global_scope]))
    assert_limited(storage.hit("c", [global_scope]), 60.0, Rule(5, 60))


def test_a_global_refusal_records_nothing_in_the_route_scope(storage: Storage) -> None:
    global_scope = scope(GLOBAL_SCOPE, Rule(1, 60))
    route_scope = scope("burst", Rule(3, 60))
    assert_admitted(storage.hit("c", [global_scope]))
    for _ in range(10):
        assert_limited(storage.hit("c", [global_scope, route_scope]), 60.0, Rule(1, 60))
    for _ in range(3):  # the route scope was never touched
        assert_admitted(storage.hit("c", [route_scope]))
    assert_limited(storage.hit("c", [route_scope]), 60.0, Rule(3, 60), "burst")


def test_a_refusal_by_one_rule_records_nothing_for_the_others(
    storage: Storage, clock: FakeClock
) -> None:
    fast, slow = Rule(1, 1), Rule(3, 60)
    scopes = [scope(GLOBAL_SCOPE, fast, slow)]
    assert_admitted(storage.hit("c", scopes))
    for _ in range(10):
        assert_limited(storage.hit("c", scopes), T0 + 1 - T0, fast)
    clock.set(T0 + 1)
    assert_admitted(storage.hit("c", scopes))
    clock.set(T0 + 2)
    assert_admitted(storage.hit("c", scopes))  # 3 counted for `slow`, not 13
    clock.set(T0 + 3)
    assert_limited(storage.hit("c", scopes), T0 + 60 - (T0 + 3), slow)


# --- independence -------------------------------------------------------------------------------


def test_clients_are_independent(storage: Storage) -> None:
    rule = Rule(1, 60)
    scopes = [scope(GLOBAL_SCOPE, rule)]
    assert_admitted(storage.hit("10.0.0.1", scopes))
    assert_limited(storage.hit("10.0.0.1", scopes), 60.0, rule)
    assert_admitted(storage.hit("10.0.0.2", scopes))
    assert_admitted(storage.hit("2001:db8::/64", scopes))
    assert_limited(storage.hit("10.0.0.2", scopes), 60.0, rule)


def test_route_scopes_are_independent(storage: Storage) -> None:
    rule = Rule(1, 60)
    a, b = scope("a", rule), scope("b", rule)
    assert_admitted(storage.hit("c", [a]))
    assert_limited(storage.hit("c", [a]), 60.0, rule, "a")
    assert_admitted(storage.hit("c", [b]))
    assert_limited(storage.hit("c", [b]), 60.0, rule, "b")
    assert_admitted(storage.hit("c", [scope(GLOBAL_SCOPE, rule)]))


def test_no_scopes_admits_and_counts_nothing(storage: Storage) -> None:
    for _ in range(100):
        assert_admitted(storage.hit("c", []))
    assert getattr(storage, "tracked", 0) == 0
    assert_admitted(storage.hit("c", [scope(GLOBAL_SCOPE, Rule(1, 60))]))


# --- rules that change for a live log -----------------------------------------------------------


def test_rules_growing_after_the_ring_wrapped_stay_exact(
    storage: Storage, clock: FakeClock
) -> None:
    two_in_1 = Rule(2, 1)
    depth_2 = scope(GLOBAL_SCOPE, two_in_1)
    assert_admitted(storage.hit("c", [depth_2]))
    clock.set(T0 + 0.5)
    assert_admitted(storage.hit("c", [depth_2]))
    clock.set(T0 + 0.75)
    assert_limited(storage.hit("c", [depth_2]), T0 + 1 - (T0 + 0.75), two_in_1)
    clock.set(T0 + 1)
    assert_admitted(storage.hit("c", [depth_2]))  # the ring of 2 wrapped: T0 is gone

    five_in_3 = Rule(5, 3)
    depth_5 = scope(GLOBAL_SCOPE, two_in_1, five_in_3)
    assert depth_5.depth == 5
    clock.set(T0 + 1.25)
    assert_limited(storage.hit("c", [depth_5]), T0 + 0.5 + 1 - (T0 + 1.25), two_in_1)
    for offset in (1.5, 2.5, 3.5):  # the ring unrolls and grows to 5 stamps
        clock.set(T0 + offset)
        assert_admitted(storage.hit("c", [depth_5]))
    clock.set(T0 + 3.625)  # 5th newest is T0+0.5: 3.5 < 3.625, so room
    assert_admitted(storage.hit("c", [depth_5]))
    clock.set(T0 + 3.75)  # stamps 1, 1.5, 2.5, 3.5, 3.625 (+T0): both rules full
    assert_limited(storage.hit("c", [depth_5]), T0 + 3.5 + 1 - (T0 + 3.75), two_in_1)
    clock.set(T0 + 4.5)  # 3.5+1 and 1+3 are both <= 4.5
    assert_admitted(storage.hit("c", [depth_5]))
    clock.set(T0 + 4.5625)  # newest five: 1.5, 2.5, 3.5, 3.625, 4.5 (+T0)
    assert_limited(storage.hit("c", [depth_5]), T0 + 3.625 + 1 - (T0 + 4.5625), two_in_1)


def test_rules_shrinking_then_growing_back_stay_exact(storage: Storage, clock: FakeClock) -> None:
    five_in_10, two_in_3 = Rule(5, 10), Rule(2, 3)
    depth_5, depth_2 = scope(GLOBAL_SCOPE, five_in_10), scope(GLOBAL_SCOPE, two_in_3)
    for offset in (0, 1, 2, 3, 4):
        clock.set(T0 + offset)
        assert_admitted(storage.hit("c", [depth_5]))
    clock.set(T0 + 4.5)
    assert_limited(storage.hit("c", [depth_2]), T0 + 3 + 3 - (T0 + 4.5), two_in_3)
    clock.set(T0 + 6)
    assert_admitted(storage.hit("c", [depth_2]))
    clock.set(T0 + 6.5)
    assert_limited(storage.hit("c", [depth_2]), T0 + 4 + 3 - (T0 + 6.5), two_in_3)
    clock.set(T0 + 7)
    assert_admitted(storage.hit("c", [depth_2]))
    # Back to depth 5: the newest five are T0 + 2, 3, 4, 6, 7.
    clock.set(T0 + 7.5)
    assert_limited(storage.hit("c", [depth_5]), T0 + 2 + 10 - (T0 + 7.5), five_in_10)
    clock.set(T0 + 12)
    assert_admitted(storage.hit("c", [depth_5]))
    clock.set(T0 + 12.5)
    assert_limited(storage.hit("c", [depth_5]), T0 + 3 + 10 - (T0 + 12.5), five_in_10)


# --- reports and bans ---------------------------------------------------------------------------


def test_count_reports_within_window_ban_for_duration_from_the_last(
    storage: Storage, clock: FakeClock
) -> None:
    ban_rule = BanRule(3, 10, 600)
    assert storage.report("c", ban_rule) is None
    clock.set(T0 + 4)
    assert storage.report("c", ban_rule) is None
    assert_admitted(storage.hit("c", []))
    last = T0 + 9.5
    clock.set(last)
    assert storage.report("c", ban_rule) is not None
    assert_banned(storage.hit("c", []), last + 600 - last)
    clock.set(T0 + 100)
    assert_banned(storage.hit("c", []), last + 600 - (T0 + 100))


def test_reports_spread_over_more_than_the_window_do_not_ban(
    storage: Storage, clock: FakeClock
) -> None:
    ban_rule = BanRule(3, 10, 600)
    for offset in (0, 5, 10):  # T0 leaves the window exactly at T0+10
        clock.set(T0 + offset)
        assert storage.report("c", ban_rule) is None
        assert_admitted(storage.hit("c", []))
    clock.set(just_before(T0 + 15))  # T0+5, T0+10 and this one: within 10 s
    assert storage.report("c", ban_rule) is not None
    assert storage.hit("c", []).banned


def test_the_ban_ends_exactly_at_its_end_time(storage: Storage, clock: FakeClock) -> None:
    rule = Rule(1, 3600)
    assert storage.report("c", BanRule(1, 10, 2.5)) is not None
    end = T0 + 2.5
    clock.set(just_before(end))
    assert_banned(storage.hit("c", []), end - just_before(end))
    assert_banned(storage.hit("c", [scope(GLOBAL_SCOPE, rule)]), end - just_before(end))
    clock.set(end)
    assert_admitted(storage.hit("c", [scope(GLOBAL_SCOPE, rule)]))
    assert_admitted(storage.hit("c", []))


def test_a_banned_client_is_refused_with_any_scopes(storage: Storage) -> None:
    assert storage.report("bad", BanRule(1, 10, 60)) is not None
    roomy = Rule(1000, 1)
    for scopes in (
        [],
        [scope(GLOBAL_SCOPE, roomy)],
        [scope("standalone", roomy)],
        [scope(GLOBAL_SCOPE, roomy), scope("specific", roomy)],
    ):
        assert_banned(storage.hit("bad", scopes), 60.0)
    assert_admitted(storage.hit("good", [scope(GLOBAL_SCOPE, roomy)]))


def test_requests_refused_by_a_ban_are_not_counted(storage: Storage, clock: FakeClock) -> None:
    rule = Rule(1, 1000)
    scopes = [scope(GLOBAL_SCOPE, rule), scope("route", rule)]
    assert storage.report("c", BanRule(1, 10, 60)) is not None
    for _ in range(5):
        assert storage.hit("c", scopes).banned
    clock.set(T0 + 60)
    assert_admitted(storage.hit("c", scopes))
    assert_limited(storage.hit("c", scopes), T0 + 60 + 1000 - (T0 + 60), rule)


def test_report_returns_the_duration_exactly_on_the_banning_report(storage: Storage) -> None:
    ban_rule = BanRule(3, 100, 10)
    results = [storage.report("c", ban_rule) for _ in range(7)]
    # the log starts empty after a ban, so reports while banned count afresh
    assert results == [None, None, 10, None, None, 10, None]


def test_the_report_log_starts_empty_after_a_ban(storage: Storage, clock: FakeClock) -> None:
    ban_rule = BanRule(3, 100, 10)  # the window outlasts the ban
    for _ in range(3):
        last = storage.report("c", ban_rule)
    assert last == 10
    clock.set(T0 + 10)
    assert_admitted(storage.hit("c", []))
    assert storage.report("c", ban_rule) is None  # would ban if the old reports still counted
    clock.set(T0 + 11)
    assert storage.report("c", ban_rule) is None
    assert_admitted(storage.hit("c", []))
    clock.set(T0 + 12)
    assert storage.report("c", ban_rule) is not None
    assert_banned(storage.hit("c", []), T0 + 12 + 10 - (T0 + 12))


def test_a_never_seen_client_can_be_reported(storage: Storage) -> None:
    assert storage.report("stranger", BanRule(2, 10, 60)) is None
    assert_admitted(storage.hit("stranger", []))
    assert storage.report("newcomer", BanRule(1, 10, 60)) is not None
    assert_banned(storage.hit("newcomer", []), 60.0)


def test_a_shorter_ban_never_shortens_a_longer_one(storage: Storage, clock: FakeClock) -> None:
    assert storage.report("c", BanRule(1, 10, 600)) is not None
    clock.set(T0 + 1)
    assert storage.report("c", BanRule(1, 10, 5)) is not None
    assert_banned(storage.hit("c", []), T0 + 600 - (T0 + 1))


def test_bans_are_per_client(storage: Storage) -> None:
    ban_rule = BanRule(2, 10, 60)
    assert storage.report("a", ban_rule) is None
    assert storage.report("b", ban_rule) is None
    assert storage.report("a", ban_rule) is not None
    assert storage.hit("a", []).banned
    assert_admitted(storage.hit("b", []))


def test_reports_do_not_touch_rate_limits(storage: Storage) -> None:
    rule = Rule(1, 60)
    for _ in range(5):
        storage.report("c", BanRule(10, 10, 60))
    assert_admitted(storage.hit("c", [scope(GLOBAL_SCOPE, rule)]))


# --- escalation, manual control, usage, strikes --------------------------------------------------


def test_repeat_offenders_get_longer_bans_up_to_the_cap(storage: Storage, clock: FakeClock) -> None:
    ban_rule = BanRule(1, 10, 60, factor=2, max_duration=200, forget_after=1000)
    durations = []
    for _ in range(5):
        durations.append(storage.report("c", ban_rule))
        clock.advance(storage.banned_for("c"))
    assert durations == [60, 120, 200, 200, 200]


def test_ban_history_is_forgotten_after_a_quiet_period(storage: Storage, clock: FakeClock) -> None:
    ban_rule = BanRule(1, 10, 60, factor=2, forget_after=100)
    assert storage.report("c", ban_rule) == 60
    clock.advance(60 + 100 - TICK)  # the history still counts
    assert storage.report("c", ban_rule) == 120
    clock.advance(120 + 100)  # exactly forget_after past the end: forgotten
    assert storage.report("c", ban_rule) == 60


def test_manual_ban_unban_and_banned_for(storage: Storage, clock: FakeClock) -> None:
    assert storage.banned_for("c") == 0
    assert storage.unban("c") is False
    storage.ban("c", 30)
    assert storage.hit("c", []) == Decision(
        admitted=False, banned=True, retry_after=30, manual=True
    )
    storage.ban("c", 10)  # a longer ban stands
    clock.advance(5)
    assert storage.banned_for("c") == 25
    assert storage.bans() == {"c": 25}
    assert storage.unban("c") is True
    assert storage.banned_for("c") == 0
    assert storage.bans() == {}
    assert_admitted(storage.hit("c", []))


def test_a_ban_is_manual_while_its_end_was_set_by_hand(storage: Storage) -> None:
    storage.report("c", BanRule(1, 10, 60))
    assert not storage.hit("c", []).manual
    storage.ban("c", 30)  # shorter than the ban in force: it stands, still from reports
    assert not storage.hit("c", []).manual
    storage.ban("c", 600)
    assert storage.hit("c", []).manual
    storage.report("c", BanRule(1, 10, 60))  # the longer manual ban stands
    assert storage.hit("c", []).manual
    storage.report("c", BanRule(1, 10, 6000))  # a report extends it: no longer by hand
    assert not storage.hit("c", []).manual


def test_unban_forgets_the_ban_history(storage: Storage, clock: FakeClock) -> None:
    ban_rule = BanRule(1, 10, 60, factor=2)
    assert storage.report("c", ban_rule) == 60
    assert storage.unban("c") is True
    assert storage.report("c", ban_rule) == 60


def test_bans_lists_only_active_bans(storage: Storage, clock: FakeClock) -> None:
    storage.ban("a", 10)
    storage.ban("b", 20)
    storage.ban("we{ir}d*key", 30)
    clock.advance(15)
    assert storage.bans() == {"b": 5, "we{ir}d*key": 15}


def test_reset_forgets_counters_reports_and_ban(storage: Storage) -> None:
    rule = Rule(1, 60)
    scopes = [scope(GLOBAL_SCOPE, rule), scope("route", rule)]
    assert_admitted(storage.hit("c", scopes))
    assert_admitted(storage.hit("c*", scopes))  # a key the glob would also match
    storage.report("c", BanRule(2, 60, 60))
    storage.ban("c", 60)
    storage.reset("c")
    assert_admitted(storage.hit("c", scopes))
    assert storage.report("c", BanRule(2, 60, 60)) is None  # the earlier report is gone
    assert_limited(storage.hit("c*", scopes), 60, rule)  # another client is untouched


def test_usage_names_the_rule_closest_to_its_limit(storage: Storage, clock: FakeClock) -> None:
    tight, loose = Rule(2, 10), Rule(5, 60)
    scopes = [scope(GLOBAL_SCOPE, loose, tight)]
    first = storage.hit("c", scopes, usage=True)
    assert first.usage == Usage(tight, 1, 10)
    clock.advance(4)
    second = storage.hit("c", scopes, usage=True)
    assert second.usage == Usage(tight, 0, 6)
    refused = storage.hit("c", scopes, usage=True)
    assert refused.usage == Usage(tight, 0, 6)
    clock.advance(6)  # the first request leaves the tight window
    third = storage.hit("c", scopes, usage=True)
    assert third.usage == Usage(tight, 0, 4)
    clock.advance(4)  # stamps 4, 10, 14: the tight rule still counts 10 and 14
    fourth = storage.hit("c", scopes, usage=True)
    assert fourth.usage == Usage(tight, 0, 6)


def test_usage_prefers_the_longest_reset_among_equals(storage: Storage) -> None:
    short, long = Rule(2, 10), Rule(2, 60)
    decision = storage.hit("c", [scope(GLOBAL_SCOPE, short), scope("route", long)], usage=True)
    assert decision.usage == Usage(long, 1, 60, "route")


def test_report_to_counts_a_refusal_as_a_report(storage: Storage, clock: FakeClock) -> None:
    rule, ban_rule = Rule(1, 60), BanRule(2, 60, 600)
    scopes = [scope(GLOBAL_SCOPE, rule)]
    assert storage.hit("c", scopes, report_to=ban_rule).new_ban is None  # admitted: no strike
    assert storage.hit("c", scopes, report_to=ban_rule).new_ban is None  # first strike
    assert storage.hit("c", scopes, report_to=ban_rule).new_ban == 600  # second: banned
    assert_banned(storage.hit("c", scopes), 600)


def test_each_offence_logs_its_own_reports_one_ban_names_it(storage: Storage) -> None:
    rule = BanRule(2, 60, 600)
    assert storage.report("c", rule) is None
    assert storage.report("c", rule, offence="login") is None  # not the default's second
    assert storage.report("c", rule, offence="log") is None  # nor another offence's
    assert storage.report("c", BanRule(2, 60, 900), "response", "login") == 900
    assert storage.ban_detail("c") == BanDetail(900, 0, "response", 1, "login")
    assert storage.hit("c", [scope(GLOBAL_SCOPE, Rule(5, 60))]) == Decision(
        admitted=False, banned=True, retry_after=900, offence="login"
    )
    assert storage.report("c", rule) == 600  # the default's second: a shorter ban stands
    assert storage.ban_details() == {"c": BanDetail(900, 0, "response", 2, "login")}
    storage.ban("c", 1000)  # by hand: no offence
    assert storage.ban_detail("c") == BanDetail(1000, 0, "manual", 2, None)


def test_report_to_counts_a_refusal_toward_its_offence(storage: Storage) -> None:
    scopes = [scope(GLOBAL_SCOPE, Rule(1, 60))]
    ban_rule = BanRule(2, 60, 600)
    assert storage.report("c", ban_rule) is None  # one report of the default offence
    assert_admitted(storage.hit("c", scopes, report_to=ban_rule, offence="scanner"))
    assert storage.hit("c", scopes, report_to=ban_rule, offence="scanner").new_ban is None
    assert storage.hit("c", scopes, report_to=ban_rule, offence="scanner").new_ban == 600
    assert storage.ban_detail("c") == BanDetail(600, 0, "rate_limit", 1, "scanner")


def test_a_ban_handed_over_keeps_a_ban_rules_offence(storage: Storage) -> None:
    """``ban`` with a ban rule's reason and an offence (the outage fallback handing its
    bans back) keeps the offence; a ban by hand or by the subnet ban rule has none."""
    storage.ban("c", 600, "reports", "login")
    assert storage.ban_detail("c") == BanDetail(600, 0, "reports", 0, "login")
    assert storage.hit("c", [scope(GLOBAL_SCOPE, Rule(5, 60))]) == Decision(
        admitted=False, banned=True, retry_after=600, offence="login"
    )
    storage.ban("d", 600, "rate_limit")
    assert storage.ban_detail("d") == BanDetail(600, 0, "rate_limit", 0, "default")
    storage.ban("e", 600, "manual", "login")
    storage.ban("f", 600, "subnet", "login")
    for name in "ef":
        detail = storage.ban_detail(name)
        assert detail is not None
        assert detail.offence is None


def test_reset_forgets_every_offences_reports(storage: Storage) -> None:
    rule = BanRule(2, 60, 600)
    for offence in ("default", "login", "a:b"):
        storage.report("c", rule, offence=offence)
    storage.reset("c", "login")  # a scope's reset leaves reports alone
    assert storage.report("c", rule, offence="login") == 600
    storage.reset("c")
    for offence in ("default", "a:b"):
        assert storage.report("c", rule, offence=offence) is None


@pytest.mark.parametrize(
    "client", ["", "%", "}guest{", "user\ud800", "ключ", "a b\tc", "[::1]:80", "x" * 128]
)
def test_any_key_text_is_a_client_of_its_own(storage: Storage, client: str) -> None:
    rule = Rule(1, 60)
    assert_admitted(storage.hit(client, [scope(GLOBAL_SCOPE, rule)]))
    assert_limited(storage.hit(client, [scope(GLOBAL_SCOPE, rule)]), 60, rule)
    assert_admitted(storage.hit(client + "-other", [scope(GLOBAL_SCOPE, rule)]))
    storage.ban(client, 30)
    assert storage.bans() == {client: 30}
    storage.reset(client)
    assert storage.bans() == {}


# --- bounded memory -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_clients", "error"),
    [
        pytest.param(0, ConfigError, id="zero"),
        pytest.param(-1, ConfigError, id="negative"),
        pytest.param(True, ConfigTypeError, id="bool"),
        pytest.param("10", ConfigTypeError, id="string"),
        pytest.param(10.0, ConfigTypeError, id="float"),
        pytest.param(None, ConfigTypeError, id="None"),
    ],
)
def test_invalid_max_clients_is_refused(max_clients: object, error: type[ConfigError]) -> None:
    with pytest.raises(ConfigError) as info:
        MemoryStorage(max_clients=max_clients)  # type: ignore[arg-type]
    assert type(info.value) is error
    assert "max_clients" in str(info.value)
    assert repr(max_clients) in str(info.value)


def test_a_flood_of_clients_keeps_memory_bounded_and_evicts_the_least_recently_seen(
    clock: FakeClock,
) -> None:
    storage = MemoryStorage(max_clients=1000, clock=clock)
    rule = Rule(1, 3600)
    scopes = [scope(GLOBAL_SCOPE, rule)]
    assert_admitted(storage.hit("early", scopes))
    assert_admitted(storage.hit("regular", scopes))
    assert storage.report("attacker", BanRule(1, 10, 3600)) is not None
    for i in range(50_000):
        storage.hit(f"spoofed-{i}", scopes)
        assert storage.tracked <= 1000
        if i % 500 == 0:  # a regular client keeps coming back, and stays limited
            assert not storage.hit("regular", scopes).admitted
    assert storage.tracked == 1000
    assert_limited(storage.hit("regular", scopes), 3600.0, rule)  # still tracked
    assert_admitted(storage.hit("early", scopes))  # forgotten, so admitted again
    assert_limited(storage.hit("spoofed-49999", scopes), 3600.0, rule)  # newest survive
    assert_admitted(storage.hit("spoofed-0", scopes))  # oldest went first
    assert_banned(storage.hit("attacker", scopes), 3600.0)  # bans outlive the flood


def test_a_flood_of_reports_keeps_memory_bounded(clock: FakeClock) -> None:
    storage = MemoryStorage(max_clients=100, clock=clock)
    ban_rule = BanRule(2, 60, 600)
    assert storage.report("attacker", BanRule(1, 10, 3600)) is not None
    for i in range(5_000):
        assert storage.report(f"spoofed-{i}", ban_rule) is None
        assert storage.tracked <= 100
    assert storage.report("spoofed-4999", ban_rule) is not None  # the newest logs survive
    assert storage.report("spoofed-0", ban_rule) is None  # the oldest went first
    assert_banned(storage.hit("attacker", []), 3600.0)


def test_the_ban_table_is_bounded_ended_bans_first_then_soonest_ending(
    clock: FakeClock,
) -> None:
    storage = MemoryStorage(max_clients=3, clock=clock)
    for client, duration in (("a", 100), ("b", 200), ("c", 300)):
        assert storage.report(client, BanRule(1, 10, duration)) is not None
    clock.set(T0 + 150)  # a's ban has ended but is still in the table
    assert storage.report("d", BanRule(1, 10, 60)) is not None  # ends at T0+210
    for client in ("b", "c", "d"):
        assert storage.hit(client, []).banned
    assert storage.report("e", BanRule(1, 10, 1000)) is not None  # over the cap: b ends soonest
    assert_admitted(storage.hit("b", []))
    for client in ("c", "d", "e"):
        assert storage.hit(client, []).banned


# --- threads ------------------------------------------------------------------------------------


class YieldingScopes(list[Scope]):
    """Scopes that hand the GIL to other threads at every step over them.

    The storage walks its scopes once to check and once to record, so a storage without
    a working lock would let another thread check in between and over-admit: this makes
    such a race likely instead of rare.
    """

    def __iter__(self) -> Iterator[Scope]:
        for each in super().__iter__():
            time.sleep(0)
            yield each


def test_threads_hammering_one_client_get_exactly_count_admitted(clock: FakeClock) -> None:
    storage = MemoryStorage(clock=clock)
    route = scope("route", Rule(150, 60))
    scopes = YieldingScopes([scope(GLOBAL_SCOPE, Rule(100, 60)), route])
    threads, hits, rounds = 16, 25, 5
    barrier = threading.Barrier(threads)

    def hammer(client: str) -> int:
        barrier.wait()
        return sum(storage.hit(client, scopes).admitted for _ in range(hits))

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for round_ in range(rounds):  # a fresh client per round: more chances to race
            client = f"10.0.0.{round_}"
            futures = [pool.submit(hammer, client) for _ in range(threads)]
            assert sum(future.result() for future in futures) == 100
            # and nothing beyond the admitted was recorded in the roomier route scope
            for _ in range(50):
                assert_admitted(storage.hit(client, [route]))
            assert not storage.hit(client, [route]).admitted


# --- shadow rules: checked and counted, never refusing -----------------------------------------


def shadowed(*refusals: tuple[Rule, float, str]) -> tuple[ShadowRefusal, ...]:
    return tuple(ShadowRefusal(rule, name, wait) for rule, wait, name in refusals)


def test_a_shadow_rule_counts_every_admitted_request_and_never_refuses(
    storage: Storage, clock: FakeClock
) -> None:
    enforcing, shadow = Rule(4, 60), Rule(2, 10, shadow=True)
    scopes = [scope(GLOBAL_SCOPE, enforcing, shadow)]
    assert_admitted(storage.hit("c", scopes))
    clock.advance(1)
    assert_admitted(storage.hit("c", scopes))
    clock.advance(1)  # the shadow rule is full: the request is admitted, and recorded
    assert storage.hit("c", scopes) == Decision(admitted=True, shadowed=shadowed((shadow, 8, "")))
    clock.advance(1)  # it counts that request too: the second one decides now
    assert storage.hit("c", scopes) == Decision(admitted=True, shadowed=shadowed((shadow, 8, "")))
    # refused by the enforcing rule: nothing recorded, and no shadow rule named
    assert_limited(storage.hit("c", scopes), 60 - 3, enforcing)
    clock.advance(57)  # the first request leaves the enforcing rule's window
    decision = storage.hit("c", scopes)
    assert decision == Decision(admitted=True)  # the shadow rule's window has emptied


@pytest.mark.parametrize("strategy", [SLIDING_LOG, FIXED_WINDOW, SLIDING_WINDOW, GCRA, "distinct"])
def test_shadow_rules_of_every_kind_admit_what_they_would_refuse(
    storage: Storage, strategy: str
) -> None:
    if strategy == "distinct":
        shadow = Rule(1, 60, distinct=lambda: None, shadow=True)
    else:
        shadow = Rule(1, 60, strategy, shadow=True)
    base = scope("route", Rule(3, 60), shadow)
    first, second = (replace(base, values=(value,)) for value in ("a", "b"))
    assert_admitted(storage.hit("c", [first]))
    decision = storage.hit("c", [second])
    assert decision.admitted
    assert [(refusal.rule, refusal.scope) for refusal in decision.shadowed] == [(shadow, "route")]
    assert 0 < decision.shadowed[0].retry_after <= 120
    # recorded, so still over it (a distinct rule kept the newest value: "a" is new again)
    assert storage.hit("c", [first]).shadowed
    assert_limited(storage.hit("c", [first]), 60, Rule(3, 60), "route")  # the third was the last


def test_a_shadow_rule_keeps_its_own_state_beside_an_enforcing_twin(storage: Storage) -> None:
    enforcing, shadow = Rule(2, 60, GCRA), Rule(2, 60, GCRA, shadow=True)
    scopes = [scope(GLOBAL_SCOPE, enforcing, shadow)]
    assert_admitted(storage.hit("c", scopes))
    assert_admitted(storage.hit("c", scopes))  # one shared state would have counted 4
    assert not storage.hit("c", scopes).admitted


def test_a_cost_over_a_shadow_rule_s_count_is_admitted_and_named(storage: Storage) -> None:
    shadow = Rule(2, 30, shadow=True)
    scopes = [Scope.of(GLOBAL_SCOPE, (Rule(10, 60), shadow), cost=3)]
    assert storage.hit("c", scopes) == Decision(admitted=True, shadowed=shadowed((shadow, 30, "")))
    assert storage.hit("c", scopes).admitted  # 6 of 10
    assert storage.hit("c", scopes).admitted  # 9 of 10
    assert not storage.hit("c", scopes).admitted


def test_shadow_rules_are_named_in_the_order_of_scopes_and_rules(storage: Storage) -> None:
    first, second, third = (
        Rule(1, 60, shadow=True),
        Rule(1, 60, GCRA, shadow=True),
        Rule(1, 10, shadow=True),
    )
    scopes = [scope(GLOBAL_SCOPE, Rule(5, 60), first, second), scope("route", third)]
    assert_admitted(storage.hit("c", scopes))
    expected = shadowed((first, 60, ""), (second, 60, ""), (third, 10, "route"))
    assert storage.hit("c", scopes) == Decision(admitted=True, shadowed=expected)


def test_usage_for_headers_leaves_shadow_rules_out(storage: Storage) -> None:
    loose, tight = Rule(5, 60), Rule(1, 10, shadow=True)
    scopes = [scope(GLOBAL_SCOPE, loose, tight)]
    assert storage.hit("c", scopes, usage=True).usage == Usage(loose, 4, 60)
    only_shadow = [scope("route", Rule(1, 10, GCRA, shadow=True))]
    assert storage.hit("c", only_shadow, usage=True).usage is None
    # reading usage by hand lists every rule, shadow ones too (Usage.rule.shadow)
    assert storage.usage("c", scopes) == [Usage(loose, 4, 60), Usage(tight, 0, 10)]


def test_a_shadow_rule_s_reservation_is_refunded_and_reset_forgets_it(storage: Storage) -> None:
    shadow = Rule(1, 60, GCRA, shadow=True)
    scopes = [Scope.of("route", (shadow,), deferred=True)]
    taken = storage.hit("c", scopes)
    assert taken.admitted
    assert not taken.shadowed
    storage.refund("c", scopes, taken.reserved)  # its own key: given back
    assert not storage.hit("c", scopes).shadowed
    assert storage.hit("c", scopes).shadowed
    storage.reset("c", "route")
    assert not storage.hit("c", scopes).shadowed


# --- properties against a brute-force reference model -------------------------------------------


@dataclass(frozen=True)
class Expected:
    admitted: bool
    banned: bool = False
    retry_after: float = 0.0
    rules: frozenset[Rule] = frozenset()  # the full rules with the longest wait
    shadowed: tuple[ShadowRefusal, ...] = ()  # admitted: the full shadow rules, in order


@dataclass
class Reference:
    """The contract, written the slow and obvious way: keep every stamp, scan them all."""

    stamps: defaultdict[tuple[str, str], list[float]] = field(
        default_factory=lambda: defaultdict(list)
    )
    reports: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    ban_ends: dict[str, float] = field(default_factory=dict)

    def hit(self, client: str, scopes: Sequence[Scope], now: float) -> Expected:
        end = self.ban_ends.get(client)
        if end is not None and end > now:
            return Expected(admitted=False, banned=True, retry_after=end - now)
        waits: list[tuple[float, Rule]] = []
        shadowed: list[ShadowRefusal] = []  # shadow rules never refuse: named if admitted
        for each in scopes:
            stamps = self.stamps[client, each.name]
            for rule in each.rules:
                counted = [t for t in stamps if t + rule.window > now]
                if len(counted) >= rule.count:
                    count_th_newest = sorted(counted, reverse=True)[rule.count - 1]
                    wait = count_th_newest + rule.window - now
                    if rule.shadow:
                        shadowed.append(ShadowRefusal(rule, each.name, wait))
                    else:
                        waits.append((wait, rule))
        if waits:
            longest = max(wait for wait, _ in waits)
            worst = frozenset(rule for wait, rule in waits if wait == longest)
            return Expected(admitted=False, retry_after=longest, rules=worst)
        for each in scopes:
            self.stamps[client, each.name].append(now)
        return Expected(admitted=True, shadowed=tuple(shadowed))

    def report(self, client: str, ban_rule: BanRule, now: float) -> bool:
        log = self.reports[client]
        log.append(now)
        if sum(t + ban_rule.window > now for t in log) < ban_rule.count:
            return False
        log.clear()
        end = now + ban_rule.duration
        self.ban_ends[client] = max(end, self.ban_ends.get(client, end))
        return True


def assert_matches(actual: Decision, expected: Expected) -> None:
    assert actual.admitted == expected.admitted
    assert actual.banned == expected.banned
    assert actual.retry_after == expected.retry_after
    assert actual.shadowed == expected.shadowed
    if expected.rules:
        assert actual.rule in expected.rules
    else:
        assert actual.rule is None


WINDOWS = [0.5, 1, 2.5, 10]
CLIENTS = ["10.0.0.1", "10.0.0.2"]
time_steps = st.one_of(
    st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.5]),
    st.integers(min_value=0, max_value=12 * 64).map(lambda ticks: ticks * TICK),
)
rule_sets = st.lists(
    st.builds(
        Rule,
        st.integers(min_value=1, max_value=6),
        st.sampled_from(WINDOWS),
        shadow=st.sampled_from([False, False, True]),
    ),
    min_size=1,
    max_size=3,
).map(tuple)
# Which scopes a request meets: global only, global + a route, or a standalone route.
SCOPE_SETS = [(0,), (0, 1), (1,)]


@settings(max_examples=200, deadline=None)
@given(
    global_rules=rule_sets,
    route_rules=rule_sets,
    steps=st.lists(
        st.tuples(time_steps, st.sampled_from(CLIENTS), st.sampled_from(SCOPE_SETS)),
        max_size=60,
    ),
)
def test_hits_match_the_reference_model(
    make_storage: StorageFactory,
    global_rules: tuple[Rule, ...],
    route_rules: tuple[Rule, ...],
    steps: list[tuple[float, str, tuple[int, ...]]],
) -> None:
    clock = FakeClock(T0)
    storage = make_storage(clock)
    reference = Reference()
    all_scopes = (Scope.of(GLOBAL_SCOPE, global_rules), Scope.of("route", route_rules))
    for step, client, which in steps:
        now = clock.advance(step)
        scopes = [all_scopes[i] for i in which]
        assert_matches(storage.hit(client, scopes), reference.hit(client, scopes, now))


Op = Union[tuple[str, float], tuple[str, str]]


@settings(max_examples=200, deadline=None)
@given(
    ban_rule=st.builds(
        BanRule,
        st.integers(min_value=1, max_value=4),
        st.sampled_from(WINDOWS),
        st.sampled_from([0.5, 1, 3, 10]),
    ),
    rules=rule_sets,
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("advance"), time_steps),
            st.tuples(st.sampled_from(["report", "hit", "request"]), st.sampled_from(CLIENTS)),
        ),
        max_size=60,
    ),
)
def test_reports_and_bans_match_the_reference_model(
    make_storage: StorageFactory, ban_rule: BanRule, rules: tuple[Rule, ...], ops: list[Op]
) -> None:
    clock = FakeClock(T0)
    storage = make_storage(clock)
    reference = Reference()
    rate_scopes = [Scope.of(GLOBAL_SCOPE, rules)]
    now = clock()
    for op, arg in ops:
        if isinstance(arg, float):
            now = clock.advance(arg)
        elif op == "report":
            assert (storage.report(arg, ban_rule) is not None) == reference.report(
                arg, ban_rule, now
            )
        else:  # "hit": an excluded method (no scopes); "request": one with rate rules
            scopes: list[Scope] = [] if op == "hit" else rate_scopes
            assert_matches(storage.hit(arg, scopes), reference.hit(arg, scopes, now))


def test_reference_model_sanity() -> None:
    # The reference itself must follow the contract, or the properties prove nothing.
    reference = Reference()
    rules = Scope.of(GLOBAL_SCOPE, (Rule(1, 1),))
    assert reference.hit("c", [rules], 0.0).admitted
    assert reference.hit("c", [rules], 0.5) == Expected(False, False, 0.5, frozenset({Rule(1, 1)}))
    assert reference.hit("c", [rules], 1.0).admitted
    assert reference.report("c", BanRule(1, 1, 2), 1.0) is True
    assert reference.hit("c", [], 2.0) == Expected(False, True, 1.0)
    assert reference.hit("c", [], 3.0).admitted
