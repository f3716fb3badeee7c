"""Distinct-value rules (``Rule(..., distinct=f)``): a rule that counts the distinct values
a function returns for a client's requests instead of the requests.

The storage half runs on both storages (the ``storage`` fixture) and against a brute-force
model (Hypothesis, a plain list of admitted ``(time, value)`` events per rule); the app
half goes through Flask's test client: the login form of issue 14, failing functions,
values that do not apply, and the routes without distinct rules, which compute nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Optional, Union

import pytest
from flask import Flask, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import StorageFactory
from flask_gatekeeper import ConfigError, ConfigTypeError, GateKeeper, Rule
from flask_gatekeeper.decision import GLOBAL_SCOPE, Decision, Usage
from flask_gatekeeper.identity.keys import MAX_KEY_LENGTH
from flask_gatekeeper.rules import RuleLike, parse_rules
from flask_gatekeeper.storage import Storage
from flask_gatekeeper.storage.plan import Scope
from flask_gatekeeper.testing import FakeClock, MemoryStorage
from flask_gatekeeper.units import microseconds
from support import AppFactory, gatekeeper_logs


def user() -> Optional[str]:
    return request.form.get("user")


def no_value() -> None:
    return None


USERS = Rule(3, 60, distinct=no_value)
"""Three distinct values a minute (the storages never call the function)."""


def scopes(
    rule: Rule,
    value: Optional[str] = None,
    *,
    also: tuple[Rule, ...] = (),
    cost: int = 1,
    deferred: bool = False,
) -> list[Scope]:
    """The global scope with ``rule`` and the rules ``also``, for a request with ``value``
    for its one distinct rule."""
    scope = Scope.of(GLOBAL_SCOPE, (rule, *also), cost=cost, deferred=deferred)
    return [replace(scope, values=(value,))]


# --- rules -----------------------------------------------------------------------------------


def test_a_distinct_rule_names_itself_apart_from_a_request_rule() -> None:
    assert USERS.name == "3-distinct-per-60s"
    assert str(USERS) == "3 distinct values in a 60s window"
    assert str(Rule(1, 60, distinct=no_value)) == "1 distinct value in a 60s window"
    assert not USERS.logged
    assert Rule(3, 60) != USERS


def test_dicts_carry_a_distinct_function() -> None:
    (rule,) = parse_rules({"count": 20, "window": 3600, "distinct": user}, "rate_limit_rules")
    assert rule == Rule(20, 3600, distinct=user)


@pytest.mark.parametrize(
    ("rule", "error", "message"),
    [
        (
            {"count": 2, "window": 60, "distinct": "user"},
            ConfigTypeError,
            r"rate_limit_rules\[0\]: 'distinct': expected a function called as distinct\(\), "
            r"got 'user'",
        ),
        (
            {"count": 2, "window": 60, "distinct": lambda name: name},
            ConfigTypeError,
            r"rate_limit_rules\[0\]: 'distinct': expected a function that can be called as "
            r"distinct\(\), got .*<lambda>\(name\)$",
        ),
        (
            {"count": 2, "window": 60, "distinct": user, "strategy": "gcra"},
            ConfigError,
            r"rate_limit_rules\[0\]: 'strategy' does not apply to a 'distinct' rule .* 'gcra'",
        ),
        (
            "2/minute (distinct)",  # a string cannot carry a function
            ConfigError,
            r"rate_limit_rules\[0\]: 'strategy': expected one of",
        ),
    ],
)
def test_bad_distinct_rules_fail_at_start_up(
    rule: RuleLike, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        GateKeeper(Flask(__name__), rate_limit_rules=[rule])


def test_the_app_strategy_leaves_distinct_rules_exact() -> None:
    app = Flask(__name__)
    GateKeeper(app, rate_limit_rules=[Rule(5, 60), USERS], strategy="gcra")
    policy = app.extensions["gatekeeper"].policies.policy_for(None, "GET")
    assert policy.per_request is not None
    (scope,) = policy.per_request.scopes_for("c", "gcra")
    assert scope.stateful == (Rule(5, 60, "gcra"),)
    assert scope.distinct == (USERS,)


# --- the storages ------------------------------------------------------------------------------


def test_the_same_value_again_counts_once(storage: Storage) -> None:
    for value in ("alice", "alice", "bob", "alice", "carol", "bob", "carol"):
        assert storage.hit("c", scopes(USERS, value)).admitted
    refused = storage.hit("c", scopes(USERS, "dave"))
    assert refused == Decision(admitted=False, retry_after=60.0, rule=USERS)


def test_a_new_value_waits_until_the_oldest_leaves_the_window(
    storage: Storage, clock: FakeClock
) -> None:
    for value in ("a", "b", "c"):
        assert storage.hit("c", scopes(USERS, value)).admitted
        clock.advance(10)
    assert storage.hit("c", scopes(USERS, "d")).retry_after == 30  # "a" was seen at 1000
    clock.set(1060 - 1e-6)
    assert storage.hit("c", scopes(USERS, "d")).retry_after == 1e-6
    clock.set(1060)
    assert storage.hit("c", scopes(USERS, "d")).admitted  # "a" left; "d" takes its place
    assert storage.hit("c", scopes(USERS, "a")).retry_after == 10  # "b" leaves at 1070


def test_a_value_seen_again_stays_longer(storage: Storage, clock: FakeClock) -> None:
    for value in ("a", "b", "c"):
        assert storage.hit("c", scopes(USERS, value)).admitted
    clock.advance(50)
    assert storage.hit("c", scopes(USERS, "a")).admitted  # "a" seen again at 1050
    clock.advance(10)  # "b" and "c" leave at 1060; "a" stays until 1110
    assert storage.hit("c", scopes(USERS, "d")).admitted
    assert storage.hit("c", scopes(USERS, "e")).admitted
    assert storage.hit("c", scopes(USERS, "f")).retry_after == 50
    assert storage.usage("c", scopes(USERS)) == [Usage(USERS, 0, 50)]


def test_refused_requests_record_no_value(storage: Storage) -> None:
    one_request = Rule(1, 60)
    assert storage.hit("c", scopes(USERS, "a", also=(one_request,))).admitted
    refused = storage.hit("c", scopes(USERS, "b", also=(one_request,)))
    assert refused.rule == one_request  # the request rule refused: "b" was not seen
    assert storage.usage("c", scopes(USERS)) == [Usage(USERS, 2, 60)]
    for value in ("b", "c"):
        assert storage.hit("c", scopes(USERS, value)).admitted
    five = Rule(5, 60)
    assert storage.hit("c", scopes(USERS, "d", also=(five,))) == Decision(
        admitted=False, retry_after=60.0, rule=USERS
    )
    assert storage.usage("c", scopes(USERS, also=(five,))) == [
        Usage(five, 4, 60),
        Usage(USERS, 0, 60),
    ]


def test_a_request_without_a_value_is_left_to_the_other_rules(storage: Storage) -> None:
    for value in ("a", "b", "c"):
        assert storage.hit("c", scopes(USERS, value)).admitted
    assert storage.hit("c", scopes(USERS, None)).admitted  # full, but it does not apply
    assert storage.usage("c", scopes(USERS)) == [Usage(USERS, 0, 60)]


def test_cost_does_not_apply_to_a_distinct_rule(storage: Storage) -> None:
    scope = scopes(USERS, "a", also=(Rule(10, 60),), cost=5)
    assert storage.hit("c", scope).admitted
    assert storage.hit("c", scopes(USERS, "b", also=(Rule(10, 60),), cost=5)).admitted
    assert storage.usage("c", scope) == [Usage(Rule(10, 60), 0, 60), Usage(USERS, 1, 60)]


def test_each_distinct_rule_keeps_its_own_values(storage: Storage) -> None:
    twin = Rule(3, 60, distinct=user)  # the same count and window: its own values still
    hour = Rule(5, 3600, distinct=user)
    both = [replace(Scope.of(GLOBAL_SCOPE, (USERS, twin, hour)), values=("a", "x", None))]
    assert storage.hit("c", both).admitted
    assert storage.usage("c", both) == [Usage(USERS, 2, 60), Usage(twin, 2, 60), Usage(hour, 5, 0)]
    for value in ("b", "c"):
        assert storage.hit("c", scopes(USERS, value)).admitted
    assert not storage.hit("c", scopes(USERS, "x")).admitted  # "x" was the twin's


def test_values_are_per_client_and_per_scope(storage: Storage) -> None:
    for value in ("a", "b", "c"):
        assert storage.hit("c", scopes(USERS, value)).admitted
    assert storage.hit("other", scopes(USERS, "d")).admitted
    route = [replace(Scope.of("login", (USERS,)), values=("d",))]
    assert storage.hit("c", route).admitted
    assert not storage.hit("c", scopes(USERS, "d")).admitted


def test_reset_forgets_values(storage: Storage) -> None:
    route = Scope.of("login", (USERS,))
    for value in ("a", "b", "c"):
        assert storage.hit("c", [replace(route, values=(value,))]).admitted
        assert storage.hit("c", scopes(USERS, value)).admitted
    storage.reset("c", "login")
    assert storage.usage("c", [route, *scopes(USERS)]) == [
        Usage(USERS, 3, 0, "login"),
        Usage(USERS, 0, 60),
    ]
    storage.reset("c")
    assert storage.usage("c", scopes(USERS)) == [Usage(USERS, 3, 0)]


def record(storage: Storage, scopes: Sequence[Scope]) -> None:
    """The deprecated ``record``: the one way left to count past a count."""
    with pytest.deprecated_call():
        storage.record("c", scopes)  # type: ignore[attr-defined]


def test_recording_past_the_count_keeps_the_newest_values(
    storage: Storage, clock: FakeClock
) -> None:
    for value in ("a", "b", "c", "d"):
        record(storage, scopes(USERS, value))
        clock.advance(1)
    assert storage.usage("c", scopes(USERS)) == [Usage(USERS, 0, 57)]  # "a" was dropped
    assert storage.hit("c", scopes(USERS, "b")).admitted
    assert not storage.hit("c", scopes(USERS, "a")).admitted


def test_values_recorded_in_one_microsecond_keep_the_greatest_bytes(storage: Storage) -> None:
    # Past the count, the oldest go; among values seen in the same microsecond, the
    # smallest UTF-8 bytes go first (a Redis sorted set's order), whatever came first.
    one = Rule(1, 60, distinct=no_value)
    for value in ("bob", "alice", "ü", "carol"):
        record(storage, scopes(one, value))
    assert storage.hit("c", scopes(one, "ü")).admitted  # b"\xc3\xbc" > b"carol"
    assert not storage.hit("c", scopes(one, "carol")).admitted


def test_another_count_or_window_starts_with_no_values(storage: Storage) -> None:
    for value in ("a", "b", "c"):
        assert storage.hit("c", scopes(USERS, value)).admitted
    assert storage.hit("c", scopes(Rule(4, 60, distinct=no_value), "d")).admitted
    assert storage.hit("c", scopes(Rule(3, 61, distinct=no_value), "d")).admitted


@pytest.mark.parametrize("value", ["", "{c}", "a b", "%", "\udc80", "клиент-😀", "sha256:ab"])
def test_any_text_is_a_value(storage: Storage, value: str) -> None:
    one = Rule(1, 60, distinct=no_value)
    assert storage.hit("c", scopes(one, value)).admitted
    assert storage.hit("c", scopes(one, value)).admitted
    assert not storage.hit("c", scopes(one, value + "x")).admitted


def test_usage_with_the_decision(storage: Storage) -> None:
    decision = storage.hit("c", scopes(USERS, "a", also=(Rule(10, 60),)), usage=True)
    assert decision.usage == Usage(USERS, 2, 60)


# --- against a brute-force model ---------------------------------------------------------------

VALUES = ("a", "b", "c", "d", "e", None)
WINDOWS = (1, 2.5, 10, 1e-6)


@dataclass(frozen=True)
class Hit:
    values: tuple[Optional[str], ...]


@dataclass(frozen=True)
class Advance:
    microseconds: int


@dataclass(frozen=True)
class ToEdge:
    """Jump to one microsecond before, on or after a value's end of window."""

    pick: int
    delta: int


Op = Union[Hit, Advance, ToEdge]


class Model:
    """Each rule's admitted ``(time, value)`` events, as a plain list, and nothing else."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = rules
        self.events: list[list[tuple[int, str]]] = [[] for _ in rules]

    def live(self, index: int, now: int) -> dict[str, int]:
        """The values still in the window, each with when it was last seen."""
        window = microseconds(self.rules[index].window)
        seen: dict[str, int] = {}
        for at, value in self.events[index]:
            if at + window > now:
                seen[value] = max(seen.get(value, at), at)
        return seen

    def wait(self, index: int, value: Optional[str], now: int) -> int:
        seen = self.live(index, now)
        if value is None or value in seen or len(seen) < self.rules[index].count:
            return 0
        return min(seen.values()) + microseconds(self.rules[index].window) - now

    def hit(self, values: Sequence[Optional[str]], now: int) -> Decision:
        waits = [self.wait(index, value, now) for index, value in enumerate(values)]
        longest = max(waits)
        if longest > 0:
            worst = self.rules[waits.index(longest)]
            return Decision(admitted=False, retry_after=longest / 1e6, rule=worst)
        for index, value in enumerate(values):
            if value is not None:
                self.events[index].append((now, value))
        return Decision(admitted=True)

    def usage(self, now: int) -> list[Usage]:
        usages = []
        for index, rule in enumerate(self.rules):
            seen = self.live(index, now)
            reset = min(seen.values()) + microseconds(rule.window) - now if seen else 0
            usages.append(Usage(rule, rule.count - len(seen), reset / 1e6))
        return usages


rules = st.builds(
    Rule,
    st.integers(min_value=1, max_value=3),
    st.sampled_from(WINDOWS),
    distinct=st.just(no_value),
)
hits = st.builds(Hit, st.lists(st.sampled_from(VALUES), min_size=3, max_size=3).map(tuple))
operations = st.one_of(
    hits,
    hits,
    hits,
    st.builds(Advance, st.sampled_from([0, 1, 300_000, 999_999, 1_000_000, 4_000_000])),
    st.builds(
        ToEdge,
        st.one_of(st.integers(min_value=0, max_value=2), st.integers(min_value=0, max_value=20)),
        st.sampled_from([-1, 0, 0, 1]),
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_list=st.lists(rules, min_size=1, max_size=3), ops=st.lists(operations, max_size=50))
def test_storages_match_the_model(
    make_storage: StorageFactory, rule_list: list[Rule], ops: list[Op]
) -> None:
    clock = FakeClock()
    storage = make_storage(clock)
    model = Model(rule_list)
    scope = Scope.of(GLOBAL_SCOPE, tuple(rule_list))
    now = microseconds(clock())
    for op in ops:
        if isinstance(op, Advance):
            now += op.microseconds
        elif isinstance(op, ToEdge):
            ends = sorted(
                at + microseconds(rule.window) + op.delta
                for index, rule in enumerate(rule_list)
                for at, _ in model.events[index]
                if at + microseconds(rule.window) + op.delta >= now
            )
            now = ends[op.pick % len(ends)] if ends else now
        clock.set(now / 1e6)
        if isinstance(op, Hit):
            values = op.values[: len(rule_list)]
            decision = storage.hit("c", [replace(scope, values=values)])
            assert decision == model.hit(values, now)
        assert storage.usage("c", [scope]) == model.usage(now)


# --- memory stays bounded ------------------------------------------------------------------------


def _values_held(storage: MemoryStorage) -> list[dict[str, int]]:
    """Every distinct rule's values the memory storage holds (its private table)."""
    return [log.values for log in storage._logs.values() if hasattr(log, "values")]


def test_memory_holds_at_most_count_values_whatever_is_sent(clock: FakeClock) -> None:
    storage = MemoryStorage(clock=clock)
    rule = Rule(20, 3600, distinct=no_value)
    scope = Scope.of(GLOBAL_SCOPE, (rule,))
    admitted = 0
    for number in range(100_000):
        admitted += storage.hit("c", [replace(scope, values=(f"user-{number}",))]).admitted
        clock.advance(1)  # 100 000 s: about 28 windows
        if number % 10_000 == 0:
            assert [len(values) for values in _values_held(storage)] == [min(number + 1, 20)]
    assert admitted == 20 * 28  # 20 each hour, exactly
    assert storage.tracked == 1
    assert [len(values) for values in _values_held(storage)] == [20]


def test_long_values_are_stored_as_digests(make_app: AppFactory, clock: FakeClock) -> None:
    storage = MemoryStorage(clock=clock)
    app, gk = make_app(base={}, storage=storage, rate_limit_rules=None, routes=())

    @app.route("/login", methods=["POST"])
    @gk.specific(Rule(2, 3600, distinct=user))
    def login() -> str:
        return "ok"

    client = app.test_client()
    long_name = "x" * 100_000
    codes = [client.post("/login", data={"user": name}).status_code for name in (long_name,) * 3]
    assert codes == [200] * 3  # the same long value each time
    assert client.post("/login", data={"user": "y" * 100_000}).status_code == 200
    assert client.post("/login", data={"user": "z" * 100_000}).status_code == 429
    (values,) = _values_held(storage)
    assert all(value.startswith("sha256:") and len(value) <= MAX_KEY_LENGTH for value in values)


# --- in an app ---------------------------------------------------------------------------------


def login_app(make_app: AppFactory, storage: Storage) -> Flask:
    """``POST /login`` with the login-form recipe: 20 user names an hour per address."""
    app, gk = make_app(
        base={}, storage=storage, rate_limit_rules="100/minute", headers=True, routes=()
    )

    @app.route("/login", methods=["POST"])
    @gk.specific(Rule(20, 3600, distinct=lambda: request.form.get("user")))
    def login() -> tuple[str, int]:
        return "bad password", 401

    return app


def test_twenty_user_names_an_hour_from_one_address(
    make_app: AppFactory, storage: Storage, clock: FakeClock
) -> None:
    client = login_app(make_app, storage).test_client()
    for number in range(20):
        response = client.post("/login", data={"user": f"user{number}"})
        assert response.status_code == 401
        clock.advance(60)
    assert response.headers["RateLimit"] == '"route-20-distinct-per-3600s";r=0;t=2460'
    retried = [client.post("/login", data={"user": "user7"}).status_code for _ in range(5)]
    assert retried == [401] * 5  # the same user again counts once
    refused = client.post("/login", data={"user": "someone-else"})
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "2400"  # user0 leaves the hour at 1000 + 3600
    assert "20 distinct values in a 3600s window" in refused.get_data(as_text=True)
    elsewhere = {"REMOTE_ADDR": "10.0.0.9"}
    other = client.post("/login", data={"user": "someone-else"}, environ_base=elsewhere)
    assert other.status_code == 401  # per address
    assert client.post("/login").status_code == 401  # no user name: the rule does not apply
    clock.advance(2400)
    assert client.post("/login", data={"user": "someone-else"}).status_code == 401


def test_a_failing_distinct_function_leaves_its_rule_out(
    make_app: AppFactory, logs: pytest.LogCaptureFixture
) -> None:
    app, gk = make_app(base={}, routes=())

    @app.route("/login", methods=["POST"])
    @gk.specific(Rule(1, 3600, distinct=lambda: request.get_json()["user"]))
    def login() -> str:
        return "ok"

    client = app.test_client()
    assert client.post("/login", json={"user": "a"}).status_code == 200
    assert client.post("/login", data="not json").status_code == 200  # the rule is left out
    assert client.post("/login", json={"user": "b"}).status_code == 429
    assert client.post("/login", data="not json").status_code == 200
    failed = "a distinct function failed; its rule does not apply to this request"
    assert gatekeeper_logs(logs) == [("ERROR", failed)] * 2
    assert all(record.exc_info for record in logs.records if record.name == "flask_gatekeeper")


def test_routes_without_distinct_rules_compute_nothing(make_app: AppFactory) -> None:
    app, gk = make_app(base={}, rate_limit_rules="2/minute", routes=())

    @app.route("/login", methods=["POST"])
    @gk.specific(Rule(1, 3600, distinct=user))
    def login() -> str:
        return "ok"

    app.add_url_rule("/", "index", lambda: "hello")
    policies = app.extensions["gatekeeper"].policies
    assert policies.policy_for("index", "GET").per_request is None  # ready scopes, as before
    assert policies.policy_for("login", "POST").per_request is not None


def test_distinct_rules_from_the_config_and_in_gk_limit(
    make_app: AppFactory, clock: FakeClock
) -> None:
    rule = {"count": 1, "window": 60, "distinct": lambda: request.args.get("q")}
    app, gk = make_app(base={}, config={"GATEKEEPER_RATE_LIMIT_RULES": [rule]}, routes=())

    @app.route("/search")
    def search() -> str:
        with gk.limit(Rule(2, 60, distinct=lambda: request.args.get("page")), scope="pages"):
            return "found"

    client = app.test_client()
    assert client.get("/search?q=x&page=1").status_code == 200
    assert client.get("/search?q=y&page=1").status_code == 429  # a second query
    assert client.get("/search?q=x&page=2").status_code == 200
    assert client.get("/search?q=x&page=3").status_code == 429  # a third page
    clock.advance(60)
    assert client.get("/search?q=y&page=3").status_code == 200


def test_usage_reads_no_value(make_app: AppFactory) -> None:
    calls = []

    def counted() -> str:
        calls.append(1)
        return request.form["user"]

    app, gk = make_app(base={}, rate_limit_rules=[Rule(5, 60, distinct=counted)], routes=())
    app.add_url_rule("/", "index", lambda: "hello", methods=["POST"])
    assert app.test_client().post("/", data={"user": "a"}).status_code == 200
    with app.app_context():  # no request to read a value from, and none needed
        assert gk.usage("127.0.0.1") == [Usage(Rule(5, 60, distinct=counted), 4, 60)]
    assert calls == [1]


@pytest.mark.redis
def test_redis_keeps_a_sorted_set_that_expires(redis_url: str, clock: FakeClock) -> None:
    import redis

    from flask_gatekeeper.storage.redis import RedisStorage

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    storage = RedisStorage(client, clock=clock)
    route = Scope.of("login", (USERS, Rule(3, 60, distinct=user)))
    assert storage.hit("c", [replace(route, values=("alice", None))]).admitted
    clock.advance(1)
    assert storage.hit("c", [replace(route, values=("bob", "bob"))]).admitted
    key = "gatekeeper:{c}:distinct:login:3/60000000"
    assert sorted(client.keys()) == [key, key + "/1"]
    assert client.zrange(key, 0, -1, withscores=True) == [("alice", 1e9), ("bob", 1001e6)]
    assert 0 < client.pttl(key) <= 61_000  # the window, and a second
    storage.reset("c", "login")
    assert client.keys() == ["gatekeeper:{%networks}:changes"]  # the client's keys are gone
    client.close()


@pytest.mark.redis
def test_redis_holds_at_most_count_values_whatever_is_sent(
    redis_url: str, clock: FakeClock
) -> None:
    import redis

    from flask_gatekeeper.storage.redis import RedisStorage

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    storage = RedisStorage(client, clock=clock)
    scope = Scope.of(GLOBAL_SCOPE, (Rule(20, 600, distinct=no_value),))
    sizes = set()
    for number in range(2_000):
        storage.hit("c", [replace(scope, values=(f"user-{number}",))])
        clock.advance(1)  # 2 000 s: about 3 windows
        sizes.add(client.zcard("gatekeeper:{c}:distinct:20/600000000"))
    assert sizes == set(range(1, 21))
    assert client.dbsize() == 1
    client.close()
