"""The storage half of cost, count-after-the-response and reading without spending, on
both storages: a request of cost k counts as k requests in every rule of its scopes, a
cost above a rule's count is never admitted, a check can be recorded later, and usage is
read without counting anything."""

from __future__ import annotations

import pytest

from flask_gatekeeper import Rule
from flask_gatekeeper.decision import GLOBAL_SCOPE, Usage
from flask_gatekeeper.storage import Storage
from flask_gatekeeper.storage.plan import Scope
from flask_gatekeeper.testing import FakeClock

STRATEGIES = ["sliding-log", "fixed-window", "sliding-window", "gcra"]


def scopes_of(*rules: Rule, cost: int = 1, deferred: bool = False) -> list[Scope]:
    return [Scope.of(GLOBAL_SCOPE, rules, cost=cost, deferred=deferred)]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_request_of_cost_k_counts_k_times(storage: Storage, strategy: str) -> None:
    rule = Rule(5, 60, strategy)
    assert storage.hit("c", scopes_of(rule, cost=3)).admitted
    assert not storage.hit("c", scopes_of(rule, cost=3)).admitted  # 3 + 3 > 5
    assert storage.hit("c", scopes_of(rule, cost=2)).admitted  # exactly 5
    assert not storage.hit("c", scopes_of(rule)).admitted


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_cost_above_the_count_is_refused_and_records_nothing(
    storage: Storage, clock: FakeClock, strategy: str
) -> None:
    rule = Rule(3, 60, strategy)
    refused = storage.hit("c", scopes_of(rule, cost=4))
    assert (refused.admitted, refused.rule, refused.retry_after) == (False, rule, 60)
    clock.advance(3600)
    assert not storage.hit("c", scopes_of(rule, cost=4)).admitted  # never, however long
    scopes = scopes_of(rule)
    assert [storage.hit("c", scopes).admitted for _ in range(4)] == [True, True, True, False]


def test_each_scope_counts_its_own_cost(storage: Storage) -> None:
    global_scope = Scope.of(GLOBAL_SCOPE, (Rule(10, 60),))
    batch = Scope.of("export", (Rule(4, 60),), cost=4)
    assert storage.hit("c", [global_scope, batch]).admitted
    refused = storage.hit("c", [global_scope, batch])
    assert (refused.rule, refused.scope) == (Rule(4, 60), "export")
    statuses = [storage.hit("c", [global_scope]).admitted for _ in range(10)]
    assert statuses == [True] * 9 + [False]  # the global rule counted the batch once


def test_the_wait_for_a_cost_is_until_enough_requests_leave_the_window(
    storage: Storage, clock: FakeClock
) -> None:
    scopes = scopes_of(Rule(4, 10))
    for _ in range(4):
        assert storage.hit("c", scopes).admitted
        clock.advance(1)
    refused = storage.hit("c", scopes_of(Rule(4, 10), cost=3))  # stamps 1000..1003, now 1004
    assert refused.retry_after == 1002 + 10 - 1004  # the third newest must leave
    clock.advance(refused.retry_after)
    assert storage.hit("c", scopes_of(Rule(4, 10), cost=3)).admitted


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_record_still_counts_without_checking(storage: Storage, strategy: str) -> None:
    scopes = scopes_of(Rule(2, 60, strategy))
    with pytest.deprecated_call():
        storage.record("c", scopes)  # type: ignore[attr-defined]
        storage.record("c", scopes)  # type: ignore[attr-defined]
        assert not storage.hit("c", scopes).admitted
        storage.record("c", scopes)  # type: ignore[attr-defined]  # counted though full
    assert storage.usage("c", scopes)[0].remaining == 0


def test_a_deferred_scope_beside_others_reserves_only_itself(storage: Storage) -> None:
    now = Scope.of(GLOBAL_SCOPE, (Rule(1, 60),))
    later = Scope.of("login", (Rule(1, 60),), deferred=True)
    decision = storage.hit("c", [now, later])
    assert len(decision.reserved) == 1
    storage.refund("c", [later], decision.reserved)
    assert storage.usage("c", [now, later]) == [
        Usage(Rule(1, 60), 0, 60),
        Usage(Rule(1, 60), 1, 0, "login"),
    ]


def test_record_takes_the_scopes_cost(storage: Storage) -> None:
    with pytest.deprecated_call():
        storage.record("c", scopes_of(Rule(5, 60), cost=4))  # type: ignore[attr-defined]
    scopes = scopes_of(Rule(5, 60))
    assert storage.hit("c", scopes).admitted
    assert not storage.hit("c", scopes).admitted


def test_usage_reads_every_rule_in_order_without_counting(
    storage: Storage, clock: FakeClock
) -> None:
    fast, slow, quota = Rule(2, 10), Rule(5, 60), Rule(100, 86400, "gcra")
    scopes = [Scope.of(GLOBAL_SCOPE, (fast, slow)), Scope.of("export", (quota,))]
    assert storage.usage("c", scopes) == [
        Usage(fast, 2, 0),
        Usage(slow, 5, 0),
        Usage(quota, 100, 0, "export"),
    ]
    assert storage.hit("c", scopes).admitted
    clock.advance(4)
    expected = [Usage(fast, 1, 6), Usage(slow, 4, 56), Usage(quota, 99, 864 - 4, "export")]
    assert storage.usage("c", scopes) == expected
    assert storage.usage("c", scopes) == expected  # reading spends nothing
    assert storage.hit("c", scopes).admitted
    assert not storage.hit("c", scopes).admitted  # fast: 2 in 10 s


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_reset_of_one_scope_leaves_the_others(storage: Storage, strategy: str) -> None:
    rule = Rule(1, 60, strategy)
    everywhere = [Scope.of(GLOBAL_SCOPE, (rule,)), Scope.of("export", (rule,))]
    other = [Scope.of("export:2", (rule,))]
    assert storage.hit("c", everywhere).admitted
    assert storage.hit("c", other).admitted
    storage.ban("c", 60)
    storage.reset("c", "export")
    assert storage.banned_for("c") == 60  # the ban stays
    storage.unban("c")
    assert storage.hit("c", everywhere[1:]).admitted  # the export scope is empty again
    assert not storage.hit("c", everywhere[:1]).admitted  # the global one is not
    assert not storage.hit("c", other).admitted
    storage.reset("c", GLOBAL_SCOPE)
    assert storage.hit("c", everywhere[:1]).admitted
    assert not storage.hit("c", other).admitted
