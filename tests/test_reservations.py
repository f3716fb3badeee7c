"""Reservations, on both storages: a ``count_when`` route's scope (a ``deferred`` one) is
recorded when its request is admitted, its decision says what it recorded there
(``Decision.reserved``), and ``refund`` takes back exactly that once the response is
known: never another request's, whatever the strategy, and nothing once it no longer
counts. The gate's side is in ``test_counting.py``."""

from __future__ import annotations

from dataclasses import replace

import pytest

from flask_gatekeeper import Rule
from flask_gatekeeper.decision import Decision, Reservation, Usage
from flask_gatekeeper.storage import Storage
from flask_gatekeeper.storage.plan import GLOBAL_SCOPE, Scope
from flask_gatekeeper.strategies import (
    FIXED_WINDOW,
    GCRA,
    SLIDING_LOG,
    SLIDING_WINDOW,
    STRATEGIES,
    offset,
)
from flask_gatekeeper.testing import FakeClock
from flask_gatekeeper.units import microseconds


def no_value() -> None:
    """A distinct rule's function: the storages never call it (values come with the scope)."""


def deferred(*rules: Rule, cost: int = 1, name: str = "login", **fields: object) -> Scope:
    return replace(Scope.of(name, rules, cost=cost, deferred=True), **fields)  # type: ignore[arg-type]


def reserve(storage: Storage, scope: Scope, client: str = "c") -> Reservation:
    """Hit ``scope``, which must admit, and return what the hit reserved there."""
    decision = storage.hit(client, [scope])
    assert decision.admitted
    (reservation,) = decision.reserved
    return reservation


def hit(storage: Storage, scope: Scope, client: str = "c") -> bool:
    return storage.hit(client, [scope]).admitted


def remaining(storage: Storage, scope: Scope, client: str = "c") -> list[int]:
    return [usage.remaining for usage in storage.usage(client, [scope])]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_deferred_scope_is_counted_when_admitted_and_refunded_exactly(
    storage: Storage, strategy: str
) -> None:
    scope = deferred(Rule(2, 60, strategy))
    first = reserve(storage, scope)
    assert hit(storage, scope)
    assert not hit(storage, scope)  # the two reservations fill the rule
    storage.refund("c", [scope], [first])
    assert hit(storage, scope)  # one place again, and only one
    assert not hit(storage, scope)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_refund_gives_back_the_request_s_whole_cost(storage: Storage, strategy: str) -> None:
    scope = deferred(Rule(10, 60, strategy), cost=4)
    taken = reserve(storage, scope)
    assert remaining(storage, scope) == [6]
    storage.refund("c", [scope], [taken])
    assert remaining(storage, scope) == [10]


def test_the_decision_s_usage_shows_the_reservation(storage: Storage) -> None:
    scope = deferred(Rule(5, 60))
    decision = storage.hit("c", [scope], usage=True)
    assert decision.usage == Usage(Rule(5, 60), 4, 60, "login")


def test_what_a_hit_reserves(storage: Storage, clock: FakeClock) -> None:
    clock.set(1000.5)
    scope = deferred(
        Rule(5, 60, GCRA),
        Rule(5, 60, FIXED_WINDOW),
        Rule(6, 60),
        Rule(3, 60, distinct=no_value),
        Rule(3, 600, distinct=no_value),
        cost=2,
        values=("alice", None),
    )
    now, window = microseconds(1000.5), microseconds(60)
    decision = storage.hit("c", [Scope.of(GLOBAL_SCOPE, (Rule(9, 9),)), scope])
    assert decision.reserved == (  # one reservation: the other scope is not deferred
        Reservation(
            stamp=now,
            states=(now + 2 * window / 5, (now - offset("c", window)) // window),
            added=(True, False),  # no value for the second distinct rule
        ),
    )
    assert storage.hit("c", [scope]).reserved[0].added == (False, False)  # alice seen already


def test_a_sliding_log_refund_takes_its_own_timestamps(storage: Storage, clock: FakeClock) -> None:
    scope = deferred(Rule(2, 60))
    early = reserve(storage, scope)
    clock.advance(10)
    assert hit(storage, scope)
    storage.refund("c", [scope], [early])
    clock.advance(55)
    assert hit(storage, scope)
    refused = storage.hit("c", [scope])
    assert refused.retry_after == 5  # the later request's timestamp is the one kept


def test_a_fixed_window_refund_leaves_the_next_window_alone(
    storage: Storage, clock: FakeClock
) -> None:
    scope = deferred(Rule(1, 60, FIXED_WINDOW))
    taken = reserve(storage, scope)
    clock.advance(60)  # the next window, whatever the client's offset
    assert hit(storage, scope)
    storage.refund("c", [scope], [taken])
    assert not hit(storage, scope)  # the new window's request still counts


def test_a_sliding_window_refund_comes_off_the_window_it_was_counted_in(
    storage: Storage, clock: FakeClock
) -> None:
    scope = deferred(Rule(4, 60, SLIDING_WINDOW))
    taken = [reserve(storage, scope) for _ in range(4)]
    clock.advance(60)  # the next window: the four weigh as the previous window's
    assert remaining(storage, scope)[0] < 4
    for reservation in taken:
        storage.refund("c", [scope], [reservation])
    assert remaining(storage, scope) == [4]
    clock.advance(60)  # two windows later: nothing of them counts, and a refund is harmless
    storage.refund("c", [scope], [taken[0]])
    assert remaining(storage, scope) == [4]


def test_a_gcra_refund_never_gives_back_a_later_request_s_share(
    storage: Storage, clock: FakeClock
) -> None:
    scope = deferred(Rule(1, 10, GCRA))
    early = reserve(storage, scope)
    clock.advance(15)  # its share of the bucket has drained
    assert hit(storage, scope)
    storage.refund("c", [scope], [early])
    assert not hit(storage, scope)  # the later request still holds the bucket


def test_a_gcra_refund_of_requests_in_flight_together(storage: Storage, clock: FakeClock) -> None:
    scope = deferred(Rule(5, 60, GCRA))
    taken = [reserve(storage, scope) for _ in range(5)]
    assert not hit(storage, scope)
    clock.advance(2)  # slow requests: their responses come later
    for reservation in taken:
        storage.refund("c", [scope], [reservation])
    assert [hit(storage, scope) for _ in range(6)] == [True] * 5 + [False]


def test_a_distinct_refund_takes_back_only_a_value_it_added(
    storage: Storage, clock: FakeClock
) -> None:
    users = Rule(2, 60, distinct=no_value)
    alice, bob = deferred(users, values=("alice",)), deferred(users, values=("bob",))
    assert hit(storage, alice)
    clock.advance(1)
    again = reserve(storage, alice)  # alice was seen already: not its own
    storage.refund("c", [alice], [again])
    added = reserve(storage, bob)
    storage.refund("c", [bob], [added])
    assert remaining(storage, alice) == [1]  # alice stays, bob went
    seen_since = reserve(storage, bob)
    clock.advance(1)
    assert hit(storage, bob)  # another request saw bob since: bob is its too
    storage.refund("c", [bob], [seen_since])
    assert remaining(storage, alice) == [0]


def test_a_refund_under_a_key_of_its_own(storage: Storage) -> None:
    account = deferred(Rule(1, 60), name="login per form[user]", owner="alice")
    own = replace(account, owner=None)  # the same scope under the request's client
    taken = reserve(storage, account, client="10.0.0.1")
    assert not hit(storage, account, client="10.0.0.2")  # alice's, from any address
    assert hit(storage, own, client="10.0.0.1")
    storage.refund("10.0.0.1", [account], [taken])
    assert hit(storage, account, client="10.0.0.2")  # alice's was given back
    assert not hit(storage, own, client="10.0.0.1")  # the address's own was not


def test_a_refund_touches_only_its_client_and_scope(storage: Storage) -> None:
    scope = deferred(Rule(1, 60))
    taken = reserve(storage, scope)
    other_scope = replace(scope, name="other")
    assert hit(storage, scope, client="d")
    assert hit(storage, other_scope)
    storage.refund("c", [scope], [taken])
    assert not hit(storage, scope, client="d")
    assert not hit(storage, other_scope)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_refund_after_its_window_is_harmless(
    storage: Storage, clock: FakeClock, strategy: str
) -> None:
    scope = deferred(Rule(1, 10, strategy))
    taken = reserve(storage, scope)
    clock.advance(25)
    assert hit(storage, scope)
    storage.refund("c", [scope], [taken])
    assert not hit(storage, scope)


def test_a_refund_of_a_forgotten_client_is_harmless(storage: Storage) -> None:
    scope = deferred(Rule(1, 10), Rule(1, 10, GCRA), Rule(1, 10, distinct=no_value))
    scope = replace(scope, values=("v",))
    taken = reserve(storage, scope)
    storage.reset("c")
    storage.refund("c", [scope], [taken])
    assert hit(storage, scope)
    assert not hit(storage, scope)


def test_only_deferred_scopes_reserve(storage: Storage) -> None:
    plain = Scope.of(GLOBAL_SCOPE, (Rule(5, 60),))
    assert storage.hit("c", [plain]) == Decision(admitted=True)
    refused = storage.hit("c", [deferred(Rule(1, 60), cost=2)])
    assert not refused.admitted
    assert refused.reserved == ()


def test_record_is_deprecated(storage: Storage) -> None:
    scope = Scope.of(GLOBAL_SCOPE, (Rule(1, 60, SLIDING_LOG),))
    with pytest.deprecated_call():
        storage.record("c", [scope])  # type: ignore[attr-defined]
    assert not hit(storage, scope)
