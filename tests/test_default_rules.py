"""``default_rules`` (docs/rules.md, "Default rules, per route"): rules counted per client
and per route on every route without rules of its own, beside the app-wide
``rate_limit_rules``, as Flask-Limiter's ``default_limits`` beside its
``application_limits``.

Every test that counts runs on both storages (the ``make`` fixture): the default rules
are one more route scope, never a storage feature."""

from __future__ import annotations

from typing import Any, Callable, Optional

import pytest
from flask import Blueprint, Flask, request
from flask.testing import FlaskClient

from flask_gatekeeper import ConfigError, GateKeeper, Rule
from flask_gatekeeper.cli import gatekeeper
from flask_gatekeeper.routes import default_scope_name
from flask_gatekeeper.testing import FakeClock
from support import IP, OTHER_IP, AppFactory

DEFAULTS = "2/minute"
APP_WIDE = "5/minute"


def codes(client: FlaskClient, *paths: str, method: str = "GET", ip: str = IP) -> list[int]:
    return [
        client.open(path, method=method, environ_base={"REMOTE_ADDR": ip}).status_code
        for path in paths
    ]


def plain_routes(app: Flask, *names: str) -> None:
    for name in names:
        app.add_url_rule(f"/{name}", name, lambda name=name: name, methods=["GET", "POST"])


def test_each_route_has_its_own_budget_beside_the_app_wide_one(make: AppFactory) -> None:
    app, _ = make(default_rules=DEFAULTS, rate_limit_rules=APP_WIDE)
    plain_routes(app, "a", "b", "c")
    client = app.test_client()

    assert codes(client, "/a", "/a", "/a") == [200, 200, 429]  # 2/minute on /a
    assert codes(client, "/b", "/b", "/b") == [200, 200, 429]  # /b has its own 2
    assert codes(client, "/c") == [200]  # the 5th request the app counted
    assert codes(client, "/c") == [429]  # 5/minute for the whole app is full
    assert codes(client, "/a", ip=OTHER_IP) == [200]  # per client


def test_the_budget_is_per_route_whatever_the_method(make: AppFactory) -> None:
    app, _ = make(default_rules=DEFAULTS)
    plain_routes(app, "a")
    client = app.test_client()

    assert codes(client, "/a") + codes(client, "/a", "/a", method="POST") == [200, 200, 429]


def test_the_window_moves_on(make: AppFactory, clock: FakeClock) -> None:
    app, _ = make(default_rules=DEFAULTS)
    plain_routes(app, "a")
    client = app.test_client()

    assert codes(client, "/a", "/a", "/a") == [200, 200, 429]
    clock.advance(60)
    assert codes(client, "/a", "/a", "/a") == [200, 200, 429]


def own_rules(gk: GateKeeper) -> Callable[[Any], Any]:
    return gk.specific("1/minute")


def own_rules_in_a_shared_scope(gk: GateKeeper) -> Callable[[Any], Any]:
    return gk.specific("1/minute", scope="shared")


def own_rules_computed_per_request(gk: GateKeeper) -> Callable[[Any], Any]:
    return gk.specific(lambda: "1/minute")


def own_rules_counted_when(gk: GateKeeper) -> Callable[[Any], Any]:
    return gk.specific("1/minute", count_when=lambda response: True, cost=1)


@pytest.mark.parametrize(
    "mark",
    [
        own_rules,
        own_rules_in_a_shared_scope,
        own_rules_computed_per_request,
        own_rules_counted_when,
    ],
)
def test_a_route_with_rules_of_its_own_skips_the_defaults(
    make: AppFactory, mark: Callable[[GateKeeper], Callable[[Any], Any]]
) -> None:
    app, gk = make(default_rules="5/minute")

    @app.route("/own")
    @mark(gk)
    def own() -> str:
        return "own"

    assert codes(app.test_client(), "/own", "/own") == [200, 429]  # 1/minute, not 5


def test_a_blueprints_rules_make_its_routes_skip_the_defaults(make: AppFactory) -> None:
    app, gk = make(default_rules=DEFAULTS)
    limited = Blueprint("limited", __name__)
    limited.add_url_rule("/in", "inside", lambda: "in")
    gk.specific("3/minute")(limited)
    app.register_blueprint(limited)
    plain_routes(app, "out")
    client = app.test_client()

    assert codes(client, "/in", "/in", "/in", "/in") == [200, 200, 200, 429]
    assert codes(client, "/out", "/out", "/out") == [200, 200, 429]


def only_a_key(gk: GateKeeper) -> Callable[[Any], Any]:
    return gk.specific(key_func=lambda: "account-1")


def only_reports(gk: GateKeeper) -> Callable[[Any], Any]:
    return gk.specific(report_when=lambda response: False)


def only_concurrency(gk: GateKeeper) -> Callable[[Any], Any]:
    return gk.specific(concurrency=5)


def concurrency_and_cost(gk: GateKeeper) -> Callable[[Any], Any]:
    return gk.specific(concurrency=5, cost=2, count_when=lambda response: False)


def rules_for_other_methods(gk: GateKeeper) -> Callable[[Any], Any]:
    return gk.specific("1/minute", methods=["POST"])


@pytest.mark.parametrize(
    "mark",
    [only_a_key, only_reports, only_concurrency, concurrency_and_cost, rules_for_other_methods],
)
def test_a_route_whose_marks_set_other_options_keeps_the_defaults(
    make: AppFactory, mark: Callable[[GateKeeper], Callable[[Any], Any]]
) -> None:
    """Only rules of its own (for the request's method) take the defaults away; cost and
    count_when belong to a mark's own rules and never change how the defaults count."""
    app, gk = make(default_rules=DEFAULTS, ban_rule={"count": 3, "window": 60, "duration": 60})

    @app.route("/other", methods=["GET", "POST"])
    @mark(gk)
    def other() -> str:
        return "other"

    assert codes(app.test_client(), "/other", "/other", "/other") == [200, 200, 429]


def test_rules_for_some_methods_leave_the_defaults_to_the_others(make: AppFactory) -> None:
    app, gk = make(default_rules=DEFAULTS)

    @app.route("/form", methods=["GET", "POST"])
    @gk.specific("3/minute", methods=["POST"])
    def form() -> str:
        return "form"

    client = app.test_client()
    assert codes(client, "/form", "/form", "/form") == [200, 200, 429]
    assert codes(client, "/form", "/form", "/form", "/form", method="POST") == [200, 200, 200, 429]


def test_what_takes_every_rule_away_takes_the_defaults_too(make: AppFactory) -> None:
    app, gk = make(
        default_rules="1/minute",
        rate_limit_rules="100/minute",
        excluded_methods=["DELETE"],
        exempt_when=lambda: request.args.get("free") == "1",
    )

    @app.route("/alone")
    @gk.specific(standalone=True)
    def alone() -> str:
        return "alone"

    @app.route("/open")
    @gk.bypass
    def open_() -> str:
        return "open"

    @app.route("/free")
    @gk.specific(exempt_when=lambda: True)
    def free() -> str:
        return "free"

    plain_routes(app, "plain")
    app.add_url_rule("/plain", "plain_delete", lambda: "gone", methods=["DELETE"])
    client = app.test_client()

    for path in ("/alone", "/open", "/free", "/plain?free=1"):
        assert codes(client, path, path, path) == [200, 200, 200], path
    assert codes(client, "/plain", "/plain", "/plain", method="DELETE") == [200, 200, 200]
    assert codes(client, "/static/none.css") == [404]  # static files: not counted, not limited
    assert codes(client, "/plain", "/plain") == [200, 429]  # the defaults are still counted


def test_an_unmatched_url_counts_toward_the_app_wide_rules_only(make: AppFactory) -> None:
    app, _ = make(default_rules="1/minute", rate_limit_rules="3/minute")
    client = app.test_client()

    assert codes(client, "/nowhere", "/nowhere", "/nowhere", "/nowhere") == [404, 404, 404, 429]


def test_a_keyed_default_rule_counts_per_key_and_route(make: AppFactory) -> None:
    app, _ = make(default_rules=[Rule(1, 60, key=lambda: request.args.get("user"))])
    plain_routes(app, "a", "b")
    client = app.test_client()

    assert codes(client, "/a?user=ann", "/a?user=ann", "/a?user=bob") == [200, 429, 200]
    assert codes(client, "/b?user=ann", "/a?user=ann", "/a?user=ann") == [200, 429, 429]
    assert codes(client, "/a?user=ann", ip=OTHER_IP) == [429]  # the key's budget


def test_default_rules_computed_for_each_request(make: AppFactory) -> None:
    """A function returning None skips them: Flask-Limiter's default_limits_exempt_when."""

    def defaults() -> Optional[str]:
        return None if request.args.get("internal") else DEFAULTS

    app, _ = make(default_rules=defaults)
    plain_routes(app, "a")
    client = app.test_client()

    assert codes(client, "/a?internal=1", "/a?internal=1", "/a?internal=1") == [200, 200, 200]
    assert codes(client, "/a", "/a", "/a") == [200, 200, 429]


def test_usage_reset_and_headers_name_them_as_the_routes(make: AppFactory) -> None:
    app, gk = make(default_rules=DEFAULTS, rate_limit_rules=APP_WIDE, headers=True)
    plain_routes(app, "a", "b")
    client = app.test_client()

    response = client.get("/a", environ_base={"REMOTE_ADDR": IP})
    assert response.headers["RateLimit-Policy"] == (
        '"5-per-60s";q=5;w=60, "route-2-per-60s";q=2;w=60'
    )
    assert response.headers["RateLimit"] == '"route-2-per-60s";r=1;t=60'
    assert codes(client, "/a", "/a", "/b") == [200, 429, 200]
    with app.app_context():
        used = {(use.scope, use.remaining) for use in gk.usage(IP, "a")}
        assert used == {("", 2), (default_scope_name("a"), 0)}
        gk.reset(IP, endpoint="a")
        used = {(use.scope, use.remaining) for use in gk.usage(IP, "a")}
        assert used == {("", 2), (default_scope_name("a"), 2)}
    assert codes(client, "/a", "/a", "/a") == [200, 200, 429]


def test_status_shows_the_defaults_and_where_they_apply(make: AppFactory) -> None:
    app, gk = make(default_rules=[DEFAULTS, "10/hour"], rate_limit_rules=APP_WIDE)
    plain_routes(app, "plain")

    @app.route("/form", methods=["GET", "POST"])
    @gk.specific("3/minute", methods=["POST"])
    def form() -> str:
        return "form"

    @app.route("/alone")
    @gk.specific(standalone=True)
    def alone() -> str:
        return "alone"

    result = app.test_cli_runner().invoke(gatekeeper, ["status"])
    assert result.exit_code == 0
    assert result.output.splitlines()[2:-1] == [
        "rate limit: 5 requests in a 60s window",
        "default rate limit, per route: 2 requests in a 60s window",
        "default rate limit, per route: 10 requests in a 3600s window",
        "route alone: standalone",
        "route form [GET]: default rules",
        "route form [POST]: 3 requests in a 60s window",
        "route plain: default rules",
    ]


def test_the_config_key_and_a_bad_value_name_the_option(make: AppFactory) -> None:
    app, _ = make(config={"GATEKEEPER_DEFAULT_RULES": "1/minute"})
    plain_routes(app, "a")
    assert codes(app.test_client(), "/a", "/a") == [200, 429]
    with pytest.raises(ConfigError, match=r"^GATEKEEPER_DEFAULT_RULES: "):
        make(config={"GATEKEEPER_DEFAULT_RULES": "1 per fortnight"})
    with pytest.raises(ConfigError, match=r"^default_rules: "):
        make(default_rules=[])
