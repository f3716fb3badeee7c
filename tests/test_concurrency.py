"""Concurrency limits (docs/per-request-limits.md): at most N requests of a client in
flight per scope, a slot taken in the request's one storage call and given back when the
request ends, however it ends.

The storage tests run on both storages (the ``storage`` fixture) with the fake clock;
the app tests use Flask's test client, where a response left open holds its slot, as a
request still in flight would. Real servers and threads are in ``test_concurrency_http.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from flask import Blueprint, Flask, Response, abort, request, stream_with_context
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from flask_gatekeeper import (
    BanRule,
    ConcurrencyLimit,
    ConfigError,
    ConfigTypeError,
    Decision,
    GateKeeper,
    RateLimited,
    Rule,
    TooManyInFlight,
)
from flask_gatekeeper.decision import Usage
from flask_gatekeeper.storage import Storage
from flask_gatekeeper.storage.plan import GLOBAL_SCOPE, Scope
from flask_gatekeeper.testing import FakeClock, FlakyStorage, MemoryStorage
from support import IP, OTHER_IP, AppFactory, get, recording, status_codes

LEASE = 60.0


def limited(name: str, concurrency: int, *rules: Rule, lease: float = LEASE) -> Scope:
    return Scope.of(name, rules, concurrency=concurrency, lease=lease)


def in_flight(scope: str, concurrency: int, usage: Usage | None = None) -> Decision:
    """The refusal of a request that finds ``concurrency`` slots of ``scope`` taken."""
    return Decision(
        admitted=False, retry_after=1.0, scope=scope, concurrency=concurrency, usage=usage
    )


# --- the storages ------------------------------------------------------------------------


def test_a_slot_per_request_until_it_is_released(storage: Storage) -> None:
    api = [limited("api", 2)]
    assert storage.hit(IP, api, token="a").admitted
    assert storage.hit(IP, api, token="b").admitted
    assert storage.hit(IP, api, token="c") == in_flight("api", 2)
    assert storage.hit(OTHER_IP, api, token="c").admitted  # per client
    storage.release(IP, ["api"], "a")
    assert storage.hit(IP, api, token="d").admitted
    assert storage.hit(IP, api, token="e") == in_flight("api", 2)


def test_without_a_token_the_limit_is_neither_checked_nor_taken(storage: Storage) -> None:
    api = [limited("api", 1)]
    assert storage.hit(IP, api).admitted
    assert storage.hit(IP, api, token="a").admitted
    assert storage.hit(IP, api).admitted
    assert storage.hit(IP, api, token="b") == in_flight("api", 1)


def test_releasing_twice_or_an_unknown_token_frees_nothing_else(storage: Storage) -> None:
    api = [limited("api", 2)]
    assert storage.hit(IP, api, token="a").admitted
    assert storage.hit(IP, api, token="b").admitted
    storage.release(IP, ["api"], "a")
    storage.release(IP, ["api"], "a")
    storage.release(IP, ["api"], "unknown")
    storage.release(OTHER_IP, ["api"], "b")
    storage.release(IP, ["other", GLOBAL_SCOPE], "b")
    assert storage.hit(IP, api, token="c").admitted
    assert storage.hit(IP, api, token="d") == in_flight("api", 2)


def test_a_lease_ends_on_its_microsecond(storage: Storage, clock: FakeClock) -> None:
    api = [limited("api", 1, lease=0.3)]
    clock.set(1000.1)
    assert storage.hit(IP, api, token="a").admitted
    clock.set(1000.399999)  # 1000.1 + 0.3 is 1000.4000000000001: microseconds decide
    assert storage.hit(IP, api, token="b") == in_flight("api", 1)
    clock.set(1000.4)
    assert storage.hit(IP, api, token="c").admitted  # the worker that took "a" never came back
    storage.release(IP, ["api"], "a")  # late: frees nothing
    assert storage.hit(IP, api, token="d") == in_flight("api", 1)


def test_scopes_hold_their_own_slots(storage: Storage) -> None:
    both = [limited(GLOBAL_SCOPE, 3), limited("api", 1)]
    assert storage.hit(IP, both, token="a").admitted
    assert storage.hit(IP, both, token="b") == in_flight("api", 1)
    assert storage.hit(IP, [limited(GLOBAL_SCOPE, 3)], token="c").admitted
    assert storage.hit(IP, [limited(GLOBAL_SCOPE, 3)], token="d").admitted
    assert storage.hit(IP, [limited(GLOBAL_SCOPE, 3)], token="e") == in_flight(GLOBAL_SCOPE, 3)
    storage.release(IP, [GLOBAL_SCOPE, "api"], "a")  # one call for every scope
    assert storage.hit(IP, both, token="f").admitted


def test_the_first_full_scope_refuses_and_no_slot_is_taken(storage: Storage) -> None:
    both = [limited(GLOBAL_SCOPE, 1), limited("api", 1)]
    assert storage.hit(IP, [limited("api", 1)], token="a").admitted
    assert storage.hit(IP, both, token="b") == in_flight("api", 1)
    storage.release(IP, ["api"], "a")
    assert storage.hit(IP, both, token="c").admitted  # "b" took no global slot


def test_rules_decide_first_and_a_refused_request_counts_nowhere(storage: Storage) -> None:
    rule = Rule(2, 60)
    api = [limited("api", 1, rule)]
    assert storage.hit(IP, api, token="a").admitted
    assert storage.hit(IP, api, token="b") == in_flight("api", 1)  # not counted by the rule
    storage.release(IP, ["api"], "a")
    assert storage.hit(IP, api, token="c").admitted
    refused = storage.hit(IP, api, token="d")  # the rule is full and so is the limit
    assert (refused.rule, refused.concurrency, refused.retry_after) == (rule, 0, 60.0)
    storage.release(IP, ["api"], "c")
    assert storage.hit(IP, api, token="e").rule == rule  # and it took no slot: still the rule


def test_a_banned_client_takes_no_slot(storage: Storage) -> None:
    storage.ban(IP, 10)
    assert storage.hit(IP, [limited("api", 1)], token="a").banned
    storage.unban(IP)
    assert storage.hit(IP, [limited("api", 1)], token="b").admitted


def test_a_deferred_scope_takes_its_slot_when_admitted(storage: Storage) -> None:
    deferred = Scope.of("api", (Rule(5, 60),), deferred=True, concurrency=1, lease=LEASE)
    taken = storage.hit(IP, [deferred], token="a")
    assert taken.admitted
    storage.refund(IP, [deferred], taken.reserved)  # gives back the count, not the slot
    assert storage.hit(IP, [deferred], token="b") == in_flight("api", 1)
    assert storage.usage(IP, [deferred])[0].remaining == 5


def test_a_refusal_in_flight_counts_as_a_report_with_report_to(storage: Storage) -> None:
    api = [limited("api", 1)]
    ban_rule = BanRule(2, 60, 600)
    assert storage.hit(IP, api, report_to=ban_rule, token="a").admitted
    assert storage.hit(IP, api, report_to=ban_rule, token="b").new_ban is None
    refusal = storage.hit(IP, api, report_to=ban_rule, token="c")
    assert (refusal.concurrency, refusal.new_ban) == (1, 600)
    assert storage.banned_for(IP) == 600


def test_a_refusal_in_flight_tells_the_usage_of_the_rules(storage: Storage) -> None:
    rule = Rule(5, 60)
    api = [limited("api", 1, rule)]
    assert storage.hit(IP, api, usage=True, token="a") == Decision(
        admitted=True, usage=Usage(rule, 4, 60.0, "api")
    )
    assert storage.hit(IP, api, usage=True, token="b") == in_flight(
        "api", 1, Usage(rule, 4, 60.0, "api")
    )
    bare = [limited("bare", 1)]  # no rule: no usage to tell
    assert storage.hit(IP, bare, usage=True, token="c") == Decision(admitted=True)
    assert storage.hit(IP, bare, usage=True, token="d") == in_flight("bare", 1)


def test_reset_forgets_the_slots_too(storage: Storage) -> None:
    both = [limited(GLOBAL_SCOPE, 1), limited("api", 1)]
    assert storage.hit(IP, both, token="a").admitted
    storage.reset(IP, "api")
    assert storage.hit(IP, [limited("api", 1)], token="b").admitted
    assert storage.hit(IP, [limited(GLOBAL_SCOPE, 1)], token="c").concurrency == 1
    storage.reset(IP)
    assert storage.hit(IP, both, token="d").admitted
    storage.release(IP, [GLOBAL_SCOPE, "api"], "a")  # a request reset in flight ends: no error


def test_memory_holds_slots_of_at_most_max_clients(clock: FakeClock) -> None:
    storage = MemoryStorage(max_clients=3, clock=clock)
    api = [limited("api", 1)]
    for number in range(10):
        assert storage.hit(f"10.0.0.{number}", api, token="a").admitted
    assert len(storage._flights) == 3  # the least recent clients' slots went first
    assert storage.hit("10.0.0.9", api, token="b").concurrency == 1
    for number in range(7, 10):
        storage.release(f"10.0.0.{number}", ["api"], "a")
    assert len(storage._flights) == 0  # a client with nothing in flight takes no room


# --- the app: options, marks, refusals ---------------------------------------------------


def streamed() -> Response:
    """A response whose body is produced while it is sent: it holds its slot until closed."""
    return Response(iter(["part one, ", "part two"]))


def view() -> Callable[[], Response]:
    """A new view answering ``streamed()`` each time: marks stay on the view they were
    put on."""
    return lambda: streamed()


def hold(client: FlaskClient, path: str, times: int, ip: str = IP, **kw: Any) -> list[TestResponse]:
    """``times`` requests left open (the test client closes a response only when asked)."""
    return [get(client, path, ip, **kw) for _ in range(times)]


def test_specific_concurrency_refuses_with_its_own_429(make: AppFactory) -> None:
    app, gk = make()

    @app.route("/export")
    @gk.specific(concurrency=2)
    def export() -> Response:
        return streamed()

    client = app.test_client()
    first, second, refused = hold(client, "/export", 3)
    assert status_codes([first, second, refused]) == [200, 200, 429]
    assert refused.headers["Retry-After"] == "1"
    assert refused.text == (
        f"ip {IP} has too many requests in flight (at most 2 at once), retry in 1s\n"
    )
    assert get(client, "/export", OTHER_IP).status_code == 200  # per client
    problem = get(client, "/export", accept="application/json").json
    assert problem is not None
    assert problem["violated-policies"] == ["route-2-in-flight"]
    assert problem["retry_after"] == 1
    first.close()
    with get(client, "/export") as again:
        assert again.status_code == 200
        assert again.get_data(as_text=True) == "part one, part two"
    assert status_codes(hold(client, "/export", 2)) == [200, 429]


def test_complete_responses_release_at_once(make: AppFactory) -> None:
    app, gk = make()

    @app.route("/report/<kind>")
    @gk.specific(concurrency=1)
    def report(kind: str) -> Any:
        if kind == "missing":
            abort(404)
        if kind == "json":
            return {"rows": 3}
        return "done"

    client = app.test_client()
    for kind in ("plain", "json", "missing"):
        codes = status_codes(hold(client, f"/report/{kind}", 3))
        assert codes == [404 if kind == "missing" else 200] * 3, kind


@pytest.mark.parametrize("propagate", [True, False])
def test_a_view_that_raises_releases(make: AppFactory, propagate: bool) -> None:
    app, gk = make()
    app.config["PROPAGATE_EXCEPTIONS"] = propagate  # True: no response is ever made

    @app.route("/boom")
    @gk.specific(concurrency=1)
    def boom() -> str:
        raise RuntimeError("the view failed")

    client = app.test_client()
    for _ in range(3):
        if propagate:
            with pytest.raises(RuntimeError):
                get(client, "/boom")
        else:
            assert get(client, "/boom").status_code == 500


def test_an_after_request_that_raises_releases(make: AppFactory) -> None:
    app, gk = make()
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.route("/export")
    @gk.specific(concurrency=1)
    def export() -> Response:
        return streamed()

    @app.after_request
    def broken(response: Response) -> Response:
        raise RuntimeError("after_request failed")

    client = app.test_client()
    assert status_codes(hold(client, "/export", 2)) == [500, 500]


def test_stream_with_context_holds_until_closed(make: AppFactory) -> None:
    app, gk = make()

    @app.route("/feed")
    @gk.specific(concurrency=1)
    def feed() -> Response:
        def lines() -> Iterator[str]:
            yield "one\n"
            yield "two\n"

        return Response(stream_with_context(lines()))

    client = app.test_client()
    with get(client, "/feed") as held:
        assert get(client, "/feed").status_code == 429
        assert held.get_data(as_text=True) == "one\ntwo\n"
    assert client.get("/feed", buffered=True).status_code == 200


def test_app_wide_concurrency_is_the_global_scope(make: AppFactory) -> None:
    app, gk = make(concurrency=1)
    app.add_url_rule("/a", "a", view())
    app.add_url_rule("/b", "b", view())
    app.add_url_rule("/alone", "alone", gk.specific(standalone=True)(view()))
    app.add_url_rule("/free", "free", gk.bypass(view()))
    client = app.test_client()
    held = get(client, "/a")
    assert held.status_code == 200
    assert get(client, "/b").status_code == 429  # one budget across routes
    assert status_codes(hold(client, "/alone", 2)) == [200, 200]  # the global scope is not there
    assert status_codes(hold(client, "/free", 2)) == [200, 200]
    held.close()
    assert status_codes(hold(client, "/b", 2)) == [200, 429]


def test_excluded_methods_and_exempt_requests_take_no_slot(make: AppFactory) -> None:
    app, gk = make(concurrency=1, excluded_methods=["HEAD"], exempt_when=lambda: False)
    app.add_url_rule("/", "index", view(), methods=["GET", "HEAD"])
    app.add_url_rule("/staff", "staff", gk.specific(exempt_when=lambda: True)(view()))
    client = app.test_client()
    assert status_codes(hold(client, "/", 2, method="HEAD")) == [200, 200]
    assert status_codes(hold(client, "/staff", 2)) == [200, 200]
    assert status_codes(hold(client, "/", 2)) == [200, 429]


def test_clients_nothing_counts_take_no_slot(make: AppFactory, tmp_path: Any) -> None:
    (tmp_path / "a.txt").write_text("a")
    app, gk = make(concurrency=1, allowlist=[OTHER_IP])
    app.static_folder = str(tmp_path)
    app.add_url_rule("/", "index", view())
    keyed = gk.specific(key_func=lambda: request.headers.get("X-Key"))
    app.add_url_rule("/keyed", "keyed", keyed(view()))
    client = app.test_client()
    assert status_codes(hold(client, "/", 2, OTHER_IP)) == [200, 200]  # allow-listed
    files = hold(client, "/static/a.txt", 2)  # static files, held open
    assert status_codes(files) == [200, 200]
    for response in files:
        response.close()
    assert status_codes(hold(client, "/keyed", 2)) == [200, 200]  # key_func leaves it alone
    assert status_codes(hold(client, "/", 2)) == [200, 429]


def test_a_request_takes_one_slot_whatever_its_cost(make: AppFactory) -> None:
    app, gk = make()
    app.add_url_rule("/", "index", gk.specific("100/minute", cost=5, concurrency=2)(view()))
    assert status_codes(hold(app.test_client(), "/", 3)) == [200, 200, 429]


def test_reset_frees_the_slots_of_a_client(make: AppFactory) -> None:
    app, gk = make(concurrency=5)
    app.add_url_rule("/", "index", gk.specific(concurrency=1)(view()))
    client = app.test_client()
    assert status_codes(hold(client, "/", 2)) == [200, 429]
    with app.app_context():
        gk.reset(IP, endpoint="index")
    assert status_codes(hold(client, "/", 2)) == [200, 429]
    with app.app_context():
        gk.reset(IP)
    assert status_codes(hold(client, "/", 2)) == [200, 429]


def test_the_app_wide_limit_names_its_policy(make: AppFactory) -> None:
    app, _ = make(concurrency=1)
    app.add_url_rule("/", "index", view())
    client = app.test_client()
    held = get(client, "/")
    problem = get(client, "/", accept="application/json").json
    assert problem is not None
    assert problem["violated-policies"] == ["1-in-flight"]
    held.close()


def test_methods_and_shared_scopes(make: AppFactory) -> None:
    app, gk = make()

    @app.route("/items", methods=["GET", "POST"])
    @gk.specific(concurrency=1, methods=["POST"])
    def items() -> Response:
        return streamed()

    exports = Blueprint("exports", __name__)
    gk.specific(concurrency=1, scope="exports")(exports)
    exports.add_url_rule("/csv", "csv", view())
    exports.add_url_rule("/json", "json", view())
    app.register_blueprint(exports)
    client = app.test_client()
    assert status_codes(hold(client, "/items", 2)) == [200, 200]  # GET: no limit
    assert status_codes(hold(client, "/items", 2, method="POST")) == [200, 429]
    assert status_codes([get(client, "/csv"), get(client, "/json")]) == [200, 429]


def test_the_smallest_of_several_limits_on_a_route_holds(make: AppFactory) -> None:
    app, gk = make()
    blueprint = Blueprint("api", __name__)
    gk.specific(concurrency=5)(blueprint)
    blueprint.add_url_rule("/", "index", gk.specific(concurrency=2)(view()))
    app.register_blueprint(blueprint, url_prefix="/api")
    assert status_codes(hold(app.test_client(), "/api/", 3)) == [200, 200, 429]


def test_concurrency_with_rules_computed_per_request(make: AppFactory) -> None:
    app, gk = make()
    app.add_url_rule("/", "index", gk.specific(lambda: None, concurrency=1)(view()))
    assert status_codes(hold(app.test_client(), "/", 2)) == [200, 429]


def test_a_slot_is_the_client_s_never_a_key_s(make: AppFactory, storage: Storage) -> None:
    """Rules with their own key count under an account; the slot stays the client's, and
    a refusal of either kind records nothing under the other."""
    app, gk = make()
    account = Rule(2, 3600, key="args[user]")
    app.add_url_rule("/login", "login", gk.specific([account], concurrency=1)(view()))
    client = app.test_client()

    def attempt(user: str, ip: str = IP) -> TestResponse:
        return get(client, f"/login?user={user}", ip)

    def tried(user: str, ip: str = IP) -> int:
        with attempt(user, ip) as response:
            return response.status_code

    held = [attempt("alice"), attempt("alice", OTHER_IP)]  # one account, two clients
    assert status_codes(held) == [200, 200]
    assert storage.hit("alice", [limited("login", 1)], token="probe").admitted  # none of hers
    storage.release("alice", ["login"], "probe")
    with attempt("bob") as refused:  # another account, the client of a held request
        assert refused.status_code == 429
        assert "too many requests in flight" in refused.get_data(as_text=True)
    for response in held:
        response.close()
    third = "192.0.2.1"
    assert [tried("bob", ip) for ip in (IP, OTHER_IP, third)] == [200, 200, 429]  # his 2
    assert tried("alice", third) == 429  # her 2 were spent by the held requests
    assert tried("carol", third) == 200  # the refusals by the rule took no slot


def test_refusals_are_signalled_counted_and_handled_like_rate_limits(make: AppFactory) -> None:
    app, gk = make()
    app.add_url_rule("/", "index", gk.specific(concurrency=1)(view()))
    client = app.test_client()
    held = get(client, "/")
    with recording(app) as events:
        assert get(client, "/").status_code == 429
    assert events == [
        (
            "request_rate_limited",
            {"client": IP, "rule": ConcurrencyLimit(1), "retry_after": 1.0, "dry_run": False},
        )
    ]
    with app.app_context():
        assert gk.stats()["rate_limited"] == 1
    held.close()


def test_an_error_handler_takes_the_refusal(make: AppFactory) -> None:
    app, gk = make()
    app.add_url_rule("/", "index", gk.specific(concurrency=1)(view()))

    @app.errorhandler(RateLimited)
    def busy(error: RateLimited) -> tuple[dict[str, Any], int]:
        assert isinstance(error, TooManyInFlight)
        return {"busy": str(error.rule), "wait": error.wait, "limit": error.rule.count}, 429

    client = app.test_client()
    held = get(client, "/")
    assert get(client, "/").json == {"busy": "1 request in flight", "wait": 1.0, "limit": 1}
    held.close()


def test_a_dry_run_admits_and_takes_no_slot(
    make: AppFactory, logs: pytest.LogCaptureFixture
) -> None:
    app, gk = make(dry_run=True)
    app.add_url_rule("/", "index", gk.specific(concurrency=1)(view()))
    client = app.test_client()
    with recording(app) as events:
        first, second = hold(client, "/", 2)
        assert status_codes([first, second]) == [200, 200]
        assert [name for name, _ in events] == ["request_rate_limited"]
        assert any("would refuse GET /" in record.getMessage() for record in logs.records)
        first.close()
        assert get(client, "/").status_code == 200  # the second holds no slot: nothing refused
        assert [name for name, _ in events] == ["request_rate_limited"]


def test_a_refusal_in_flight_reports_with_report_rate_limited(make: AppFactory) -> None:
    app, gk = make(ban_rule={"count": 2, "window": 60, "duration": 600}, report_rate_limited=True)
    app.add_url_rule("/", "index", gk.specific(concurrency=1)(view()))
    assert status_codes(hold(app.test_client(), "/", 4)) == [200, 429, 429, 403]


def test_routes_without_limits_pay_nothing(clock: FakeClock, make_app: AppFactory) -> None:
    """No token, no hook after the request, no release: one storage call, as before."""

    class Watched(MemoryStorage):
        def __init__(self) -> None:
            super().__init__(clock=clock)
            self.tokens: list[object] = []
            self.releases = 0

        def hit(self, *args: Any, **kwargs: Any) -> Decision:
            self.tokens.append(kwargs.get("token"))
            return super().hit(*args, **kwargs)

        def release(self, *args: Any, **kwargs: Any) -> None:
            self.releases += 1
            super().release(*args, **kwargs)

    storage = Watched()
    app, gk = make_app(storage=storage, base={}, routes=(), rate_limit_rules="10/second")
    hooks: list[int] = []

    @app.route("/plain")
    def plain() -> str:
        from flask.globals import request_ctx

        hooks.append(len(request_ctx._after_request_functions))
        return "plain"

    app.add_url_rule("/held", "held", gk.specific(concurrency=2)(lambda: "held"))
    client = app.test_client()
    assert status_codes(hold(client, "/plain", 2)) == [200, 200]
    assert (storage.tokens, storage.releases, hooks) == ([None, None], 0, [0, 0])
    assert status_codes(hold(client, "/held", 1)) == [200]
    assert len(storage.tokens) == 3
    assert isinstance(storage.tokens[2], str)
    assert storage.releases == 1


def test_a_release_during_an_outage_is_logged_never_raised(
    clock: FakeClock, make_app: AppFactory, logs: pytest.LogCaptureFixture
) -> None:
    storage = FlakyStorage(MemoryStorage(clock=clock))
    app, gk = make_app(storage=storage, base={}, routes=())
    app.add_url_rule("/", "index", gk.specific(concurrency=1)(view()))
    client = app.test_client()
    response = get(client, "/")
    storage.failing = True
    response.close()  # the release fails: logged, and the lease will free the slot
    assert [error.args[0] for error in storage.errors] == ["connection refused (1)"]
    assert any(record.levelno == logging.WARNING for record in logs.records)
    storage.failing = False
    clock.advance(1)  # the gate tries the storage again after a second
    assert get(client, "/").status_code == 429
    clock.advance(300)  # the default lease
    assert get(client, "/").status_code == 200


def test_a_request_admitted_during_an_outage_takes_no_slot(
    clock: FakeClock, make_app: AppFactory
) -> None:
    storage = FlakyStorage(MemoryStorage(clock=clock))
    app, gk = make_app(storage=storage, base={}, routes=())
    app.add_url_rule("/", "index", gk.specific(concurrency=1)(view()))
    client = app.test_client()
    storage.failing = True
    down = hold(client, "/", 2)
    assert status_codes(down) == [200, 200]  # fail open
    storage.failing = False
    clock.advance(1)
    for response in down:
        response.close()  # nothing to give back: no storage call
    assert len(storage.errors) == 1
    assert status_codes(hold(client, "/", 2)) == [200, 429]


def test_the_lease_option(make: AppFactory, clock: FakeClock) -> None:
    app, _ = make(concurrency=1, concurrency_lease=5)
    app.add_url_rule("/", "index", view())
    client = app.test_client()
    assert status_codes(hold(client, "/", 2)) == [200, 429]
    clock.advance(5)
    assert status_codes(hold(client, "/", 2)) == [200, 429]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"concurrency": 0}, ConfigError, "concurrency: expected a positive integer, got 0"),
        ({"concurrency": True}, ConfigTypeError, "concurrency: expected a positive integer"),
        ({"concurrency": "3"}, ConfigTypeError, "got '3'"),
        ({"concurrency_lease": 0}, ConfigError, "'concurrency_lease' must be a number"),
        ({"concurrency_lease": "5"}, ConfigTypeError, "'concurrency_lease' must be a positive"),
    ],
)
def test_bad_options_fail_at_start_up(
    clock: FakeClock, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        GateKeeper(Flask(__name__), storage=MemoryStorage(clock=clock), **options)
    config = {f"GATEKEEPER_{name.upper()}": value for name, value in options.items()}
    app = Flask(__name__)
    app.config.update(config)
    with pytest.raises(error, match=message.replace(next(iter(options)), next(iter(config)))):
        GateKeeper(app, storage=MemoryStorage(clock=clock))


@pytest.mark.parametrize(
    ("value", "error"), [(0, ConfigError), (-1, ConfigError), (True, ConfigTypeError)]
)
def test_a_bad_route_limit_fails_when_decorating(
    gk: GateKeeper, value: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match=f"concurrency: expected a positive integer, got {value!r}"):
        gk.specific(concurrency=value)  # type: ignore[arg-type]
