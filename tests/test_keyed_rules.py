"""Rules with their own key (docs/per-request-limits.md, "Several keys per request"): one
request counts toward its client's rules and toward the rules of another key, such as an
account, atomically: no rule records a request that another rule refused.

Every test that counts runs on both storages (the ``storage`` fixture)."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from flask_gatekeeper import ConfigError, GateKeeper, Rule
from flask_gatekeeper.request import keyed_scope_name
from flask_gatekeeper.storage import Storage
from flask_gatekeeper.testing import FakeClock
from support import IP, OTHER_IP, AppFactory, recording

LOGIN = "/login"
IP_RULE = Rule(3, 60)
ACCOUNT_RULE = Rule(5, 3600, key="form[user]")
ACCOUNT_SCOPE = keyed_scope_name("login", "form[user]")


@pytest.fixture
def make(make_app: AppFactory, storage: Storage) -> AppFactory:
    """An app on both storages with a login route: 3 per minute per IP and 5 per hour per
    account (the form's ``user``), and a ``/`` with the global rules only."""

    def build(rules: Any = (IP_RULE, ACCOUNT_RULE), **options: Any) -> tuple[Flask, GateKeeper]:
        app, gk = make_app(storage=storage, base={}, routes=(), **options)

        @app.post(LOGIN)
        @gk.specific(list(rules))
        def login() -> str:
            return "tried"

        app.add_url_rule("/", "index", lambda: "hello")
        return app, gk

    return build


def attempt(client: FlaskClient, user: str | None, ip: str = IP) -> TestResponse:
    data = {} if user is None else {"user": user}
    return client.post(LOGIN, data=data, environ_base={"REMOTE_ADDR": ip})


def codes(client: FlaskClient, user: str | None, ips: list[str]) -> list[int]:
    return [attempt(client, user, ip).status_code for ip in ips]


def addresses(count: int, start: int = 1) -> list[str]:
    return [f"198.51.100.{n}" for n in range(start, start + count)]


def test_each_key_is_limited_exactly(make: AppFactory) -> None:
    app, _ = make()
    client = app.test_client()
    assert codes(client, "alice", [IP] * 4) == [200, 200, 200, 429]  # the IP's rule
    # alice has 3 of her 5; two more from anywhere, then none
    assert codes(client, "alice", addresses(3)) == [200, 200, 429]
    assert codes(client, "bob", addresses(3)) == [200, 200, 200]  # another account


def test_a_refusal_by_one_key_records_nothing_under_the_other(
    make: AppFactory, clock: FakeClock
) -> None:
    app, gk = make()
    client = app.test_client()
    assert codes(client, "alice", addresses(5)) == [200] * 5
    assert codes(client, "alice", [IP] * 3) == [429] * 3  # the account is full
    with app.test_request_context():
        # the IP's rule counted none of the refused attempts
        assert [u.remaining for u in gk.usage(IP, "login", "POST")] == [3]
    assert codes(client, "carol", [IP] * 4) == [200, 200, 200, 429]
    clock.advance(61)  # the IP may try again; its refusals did not count for carol
    assert codes(client, "carol", [IP]) == [200]
    with app.test_request_context(LOGIN, method="POST", data={"user": "carol"}):
        usage = {u.scope: u.remaining for u in gk.usage(IP, "login", "POST")}
    assert usage == {"login": 2, ACCOUNT_SCOPE: 1}


def test_the_refusal_names_the_rule_and_its_scope(make: AppFactory) -> None:
    app, _ = make()
    client = app.test_client()
    codes(client, "alice", addresses(5))
    with recording(app) as events:
        response = attempt(client, "alice", OTHER_IP)
    assert response.status_code == 429
    assert "5 requests in a 3600s window per form[user]" in response.get_data(as_text=True)
    assert [(name, args["client"]) for name, args in events] == [("request_rate_limited", OTHER_IP)]


def test_no_key_leaves_the_rule_out(make: AppFactory) -> None:
    app, _ = make(rules=[IP_RULE, Rule(1, 3600, key="form[user]")])
    client = app.test_client()
    assert codes(client, None, [IP, IP, IP, IP]) == [200, 200, 200, 429]  # no user field
    assert codes(client, "", addresses(3)) == [200, 200, 200]  # an empty one


def test_a_key_function(make: AppFactory) -> None:
    def account() -> str | None:
        return request.form.get("user", "").lower() or None

    app, _ = make(rules=[Rule(2, 3600, key=account)])
    client = app.test_client()
    assert codes(client, "Alice", addresses(1)) == [200]
    assert codes(client, "ALICE", addresses(2, start=5)) == [200, 429]


def test_a_failing_key_function_leaves_its_rules_out(
    make: AppFactory, logs: pytest.LogCaptureFixture
) -> None:
    def account() -> str:
        return request.form["user"]  # raises a BadRequestKeyError without the field

    app, _ = make(rules=[IP_RULE, Rule(1, 3600, key=account)])
    client = app.test_client()
    assert codes(client, None, [IP] * 4) == [200, 200, 200, 429]  # the IP's rule still holds
    assert "do not apply to this request" in logs.text


def test_two_lambdas_count_apart(make: AppFactory) -> None:
    rules = [
        Rule(1, 60, key=lambda: request.form.get("user")),
        Rule(2, 60, key=lambda: request.form.get("user")),
    ]
    app, gk = make(rules=rules)
    client = app.test_client()
    assert codes(client, "alice", addresses(2)) == [200, 429]
    with app.test_request_context(LOGIN, method="POST", data={"user": "alice"}):
        usage = {u.scope: u.remaining for u in gk.usage(IP, "login", "POST")}
    assert usage == {"login per key": 0, "login per key 2": 1}


def test_a_ban_of_the_key_refuses_it_from_anywhere(make: AppFactory) -> None:
    app, gk = make()
    client = app.test_client()
    with app.app_context():
        gk.ban("alice", 60)
    with recording(app) as events:
        response = attempt(client, "alice", OTHER_IP)
    assert response.status_code == 403
    assert [(name, args["client"]) for name, args in events] == [("request_banned", "alice")]
    assert attempt(client, "bob", OTHER_IP).status_code == 200


def test_a_key_that_reads_as_an_address_is_not_that_address(make: AppFactory) -> None:
    app, gk = make(rules=[Rule(1, 3600, key="form[user]")])
    client = app.test_client()
    assert codes(client, IP, [OTHER_IP, OTHER_IP]) == [200, 429]  # a user named like an IP
    with app.app_context():
        gk.ban(IP, 60)  # the address is banned, not the user of that name
    assert attempt(client, "bob", OTHER_IP).status_code == 200
    with app.app_context():
        gk.reset(f"key:{IP}", endpoint="login")
    assert codes(client, IP, [OTHER_IP]) == [200]


def test_reset_of_a_route_forgets_the_key_s_counters(make: AppFactory) -> None:
    app, gk = make()
    client = app.test_client()
    codes(client, "alice", addresses(5))
    with app.app_context():
        gk.reset("alice", endpoint="login")
    assert codes(client, "alice", addresses(5, start=10)) == [200] * 5


def test_the_other_request_fields(make_app: AppFactory, storage: Storage) -> None:
    app, gk = make_app(storage=storage, base={}, routes=())
    sources: dict[str, Callable[[str], dict[str, Any]]] = {
        "args": lambda v: {"query_string": {"k": v}},
        "headers": lambda v: {"headers": {"k": v}},
        "cookies": lambda v: {},  # the cookie is set on the client below
        "json": lambda v: {"json": {"k": v}},
        "view_args": lambda v: {},
    }
    for source in sources:

        @gk.specific(Rule(1, 60, key=f"{source}[k]"))
        def view(k: str = "") -> str:
            return "ok"

        app.add_url_rule(f"/{source}/<k>", source, view, methods=["GET", "POST"])
    client = app.test_client()
    for source, request_with in sources.items():
        for value, expected in (("a", 200), ("a", 429), ("b", 200)):
            path = f"/{source}/{value}"
            client.set_cookie("k", value)
            response = client.post(path, environ_base={"REMOTE_ADDR": IP}, **request_with(value))
            assert response.status_code == expected, (source, value)


def test_rules_from_every_form(make: AppFactory) -> None:
    rules = [{"count": 1, "window": 60, "key": "form[user]"}]
    app, _ = make(rules=rules)
    client = app.test_client()
    assert codes(client, "alice", addresses(2)) == [200, 429]


@pytest.mark.parametrize(
    ("key", "error"),
    [
        ("form.user", "'key': expected a function or a request field"),
        ("body[user]", "'form.user'" if False else "'body[user]'"),
        (42, "'key': expected a function or a request field like 'form[user]', got 42"),
    ],
)
def test_a_bad_key_is_refused_at_start_up(key: object, error: str) -> None:
    with pytest.raises(ConfigError, match=error.replace("[", r"\[").replace("]", r"\]")):
        GateKeeper(Flask(__name__), rate_limit_rules=[{"count": 1, "window": 1, "key": key}])


def test_app_wide_keyed_rules_and_limit(make_app: AppFactory, storage: Storage) -> None:
    key = "headers[X-Api-Key]"
    app, gk = make_app(storage=storage, base={}, routes=(), rate_limit_rules=[Rule(2, 60, key=key)])
    export = gk.limit(Rule(1, 60, key=key), scope="export")

    @app.get("/export")
    def run_export() -> str:
        with export:
            return "exported"

    client = app.test_client()

    def call(ip: str, api_key: str) -> int:
        headers = {"X-Api-Key": api_key}
        return client.get("/export", headers=headers, environ_base={"REMOTE_ADDR": ip}).status_code

    assert [call(IP, "k1"), call(OTHER_IP, "k1")] == [200, 429]  # export: once per API key
    assert call(OTHER_IP, "k1") == 429  # now the app's 2 per minute per API key
    assert call(IP, "k2") == 200


def test_a_refusal_by_a_key_strikes_the_client(make: AppFactory) -> None:
    ban_rule = {"count": 2, "window": 60, "duration": 600}
    rules = [Rule(1, 3600, key="form[user]")]
    app, gk = make(rules=rules, ban_rule=ban_rule, report_rate_limited=True)
    client = app.test_client()
    assert codes(client, "alice", [OTHER_IP, IP, IP]) == [200, 429, 429]
    with app.app_context():
        assert gk.banned_for(IP) == 600
        assert gk.banned_for("alice") == 0


def test_a_rules_function_may_return_rules_with_a_key(make: AppFactory) -> None:
    app, gk = make(rules=[IP_RULE])

    @app.post("/computed")
    @gk.specific(lambda: Rule(1, 60, key="form[user]"))
    def computed() -> str:
        return "ok"

    client = app.test_client()

    def post(ip: str) -> int:
        data = {"user": "alice"}
        return client.post("/computed", data=data, environ_base={"REMOTE_ADDR": ip}).status_code

    assert [post(IP), post(OTHER_IP)] == [200, 429]
