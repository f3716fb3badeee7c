"""The extension through Flask's test client: status codes, headers and bodies.

Every app here runs on a ``FakeClock`` (see ``conftest.py``); time moves only when a test
says so. The clock starts at 1000.0.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, ClassVar

import pytest
from flask import Blueprint, Flask
from flask.testing import FlaskClient
from flask.views import MethodView
from werkzeug.exceptions import HTTPException

import support
from flask_gatekeeper import Banned, BanRule, GateKeeper, MemoryStorage, RateLimited, Rule
from flask_gatekeeper.rules import RuleLike
from flask_gatekeeper.testing import FakeClock
from support import IP, SEED_IP_HEADER, AppFactory

ONE_PER_10S: list[RuleLike] = [{"count": 1, "window": 10}]

# Clients are named in the seed's header, as its README's apps are.
get = functools.partial(support.get, ip_header=SEED_IP_HEADER)
statuses = functools.partial(support.statuses, ip_header=SEED_IP_HEADER)
bad_login = functools.partial(support.bad_login, ip_header=SEED_IP_HEADER)


def ban(client: FlaskClient, ip: str) -> None:
    """Three bad passwords at one instant: the seed's ban rule bans ``ip`` for 600 s."""
    assert [bad_login(client, ip).text for _ in range(3)] == [
        "bad password",
        "bad password",
        "banned",
    ]


def page(text: str) -> Callable[[], str]:
    """A view function answering ``text``."""
    return lambda: text


# --- The seed API ----------------------------------------------------------------------


def test_seed_arguments_keep_their_positional_order(clock: FakeClock) -> None:
    app = Flask(__name__)
    gk = GateKeeper(
        app,
        {"count": 3, "window": 10, "duration": 600},
        [{"count": 20, "window": 1}, {"count": 100, "window": 10}],
        "x-my-ip",
        ["HEAD"],
        storage=MemoryStorage(clock=clock),
    )
    app.add_url_rule("/", "index", page("hello"))
    client = app.test_client()

    assert statuses(client, 20) == [200] * 20
    assert statuses(client, 3, method="HEAD") == [200] * 3  # excluded_methods
    refused = get(client)
    assert refused.status_code == 429  # rate_limit_rules
    assert refused.text.startswith("ip 10.0.0.1 ")  # ip_header
    with app.app_context():
        assert [gk.report(ip="10.0.0.2") for _ in range(3)] == [False, False, True]
    assert get(client, ip="10.0.0.2").text.startswith("ip 10.0.0.2 banned for 600s")  # ban_rule


def test_seed_readme_example_with_default_storage() -> None:
    """Exactly the seed's README: no storage, no clock; a ban is 600 s, safe on real time."""
    app = Flask(__name__)
    gk = GateKeeper(
        app,
        ip_header="x-my-ip",
        ban_rule={"count": 3, "window": 10, "duration": 600},
        rate_limit_rules=[{"count": 20, "window": 1}, {"count": 100, "window": 10}],
        excluded_methods=["HEAD"],
    )

    @app.route("/login", methods=["POST"])
    def login() -> tuple[str, int]:
        gk.report()
        return "bad password", 401

    app.add_url_rule("/", "index", page("hello"))
    client = app.test_client()

    assert get(client).status_code == 200
    assert [get(client, "/login", method="POST").status_code for _ in range(3)] == [401] * 3
    refused = get(client)
    assert refused.status_code == 403
    assert refused.headers["Retry-After"] == "600"
    assert refused.text == "ip 10.0.0.1 banned for 600s (reported 3 times in a 10s window)\n"


def test_init_app_later(clock: FakeClock, seed_options: dict[str, Any]) -> None:
    gk = GateKeeper(**seed_options, storage=MemoryStorage(clock=clock))
    app = Flask(__name__)
    app.add_url_rule("/", "index", page("hello"))
    gk.init_app(app)
    client = app.test_client()

    assert statuses(client, 21) == [200] * 20 + [429]
    with app.app_context():
        assert [gk.report(ip="10.0.0.2") for _ in range(3)] == [False, False, True]
    assert get(client, ip="10.0.0.2").status_code == 403


def test_report_in_a_view_bans_on_the_third_report(client: FlaskClient) -> None:
    assert [bad_login(client, "10.0.0.2").status_code for _ in range(3)] == [401] * 3
    assert get(client, ip="10.0.0.2").status_code == 403
    assert get(client, ip="10.0.0.3").status_code == 200


# --- specific, standalone, bypass ------------------------------------------------------


def test_specific_rules_count_per_route_on_top_of_the_global_rules(
    app: Flask, gk: GateKeeper, client: FlaskClient
) -> None:
    for name in ("a", "b"):
        app.add_url_rule(
            f"/{name}", name, gk.specific(rate_limit_rules=[{"count": 2, "window": 10}])(page(name))
        )
    app.add_url_rule(
        "/c", "c", gk.specific(rate_limit_rules=[{"count": 50, "window": 10}])(page("c"))
    )

    assert statuses(client, 3, "/a") == [200, 200, 429]
    refused = get(client, "/a")
    assert refused.headers["Retry-After"] == "10"
    assert refused.text == "ip 10.0.0.1 rate limited for 10s (over 2 requests in a 10s window)\n"
    assert statuses(client, 2, "/b") == [200, 200]  # /a's limit is not /b's
    # The 4 requests admitted on /a and /b counted toward the global 20 per second too.
    assert statuses(client, 17, "/") == [200] * 16 + [429]
    # And a specific route obeys the global rules as well as its own.
    refused = get(client, "/c")
    assert refused.status_code == 429
    assert refused.text == "ip 10.0.0.1 rate limited for 1s (over 20 requests in a 1s window)\n"


def test_standalone_rules_replace_the_global_rules(
    app: Flask, gk: GateKeeper, client: FlaskClient
) -> None:
    @app.route("/alone")
    @gk.specific(rate_limit_rules=[{"count": 30, "window": 1}], standalone=True)
    def alone() -> str:
        return "alone"

    assert statuses(client, 30, "/alone") == [200] * 30  # more than the global 20
    assert statuses(client, 21, "/") == [200] * 20 + [429]  # /alone was not counted
    refused = get(client, "/alone")  # nor is it refused by the full global rule, only its own
    assert refused.status_code == 429
    assert refused.text == "ip 10.0.0.1 rate limited for 1s (over 30 requests in a 1s window)\n"


def test_bypass_sees_nothing(app: Flask, gk: GateKeeper, client: FlaskClient) -> None:
    @app.route("/health")
    @gk.bypass
    def health() -> str:
        return "ok"

    @app.route("/report-me")
    @gk.bypass
    def report_me() -> str:
        return str(gk.report())

    assert statuses(client, 50, "/health") == [200] * 50  # not limited
    assert statuses(client, 21, "/") == [200] * 20 + [429]  # not counted
    assert get(client, "/health").status_code == 200  # not limited while the global rule is full
    # report() works inside a bypassed view, and a ban does not reach bypassed views.
    assert [get(client, "/report-me", ip="10.0.0.2").text for _ in range(3)] == [
        "False",
        "False",
        "True",
    ]
    assert get(client, ip="10.0.0.2").status_code == 403
    assert get(client, "/health", ip="10.0.0.2").text == "ok"
    assert get(client, "/report-me", ip="10.0.0.2").status_code == 200


# --- Refusals: 429 and 403 -------------------------------------------------------------


def test_rate_limited_response(client: FlaskClient) -> None:
    assert statuses(client, 20) == [200] * 20
    refused = get(client)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert refused.mimetype == "text/plain"
    assert refused.text == "ip 10.0.0.1 rate limited for 1s (over 20 requests in a 1s window)\n"


def test_retry_after_is_the_wait_until_every_full_rule_admits(
    clock: FakeClock, client: FlaskClient
) -> None:
    for second in range(4):  # 20 requests in each of 4 seconds: only the 1 s rule fills up
        assert statuses(client, 21) == [200] * 20 + [429]
        assert get(client).headers["Retry-After"] == "1", second
        clock.advance(1)
    assert statuses(client, 20) == [200] * 20  # now t=1004 and 100 requests since t=1000
    refused = get(client)
    # Both rules are full: the 1 s one admits at 1005, the 10 s one only at 1010.
    assert refused.headers["Retry-After"] == "6"
    assert refused.text == "ip 10.0.0.1 rate limited for 6s (over 100 requests in a 10s window)\n"
    clock.advance(1)
    assert get(client).headers["Retry-After"] == "5"
    clock.set(1009.5)
    assert get(client).headers["Retry-After"] == "1"
    clock.set(1010)
    assert get(client).status_code == 200


@pytest.mark.parametrize(
    ("elapsed", "retry_after"),
    [
        pytest.param(0, "10", id="whole"),
        pytest.param(0.001, "10", id="rounded up"),
        pytest.param(4.5, "6", id="half"),
        pytest.param(9.999, "1", id="never 0"),
    ],
)
def test_retry_after_is_whole_seconds_rounded_up(
    app: Flask,
    gk: GateKeeper,
    client: FlaskClient,
    clock: FakeClock,
    elapsed: float,
    retry_after: str,
) -> None:
    app.add_url_rule("/once", "once", gk.specific(rate_limit_rules=ONE_PER_10S)(page("once")))
    assert get(client, "/once").status_code == 200
    clock.advance(elapsed)
    refused = get(client, "/once")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == retry_after
    assert refused.text.startswith(f"ip 10.0.0.1 rate limited for {retry_after}s ")


def test_rate_limit_ends_exactly_at_the_window(
    app: Flask, gk: GateKeeper, client: FlaskClient, clock: FakeClock
) -> None:
    app.add_url_rule("/once", "once", gk.specific(rate_limit_rules=ONE_PER_10S)(page("once")))
    assert get(client, "/once").status_code == 200
    clock.set(1009.999)
    assert get(client, "/once").status_code == 429
    clock.set(1010)
    assert get(client, "/once").status_code == 200


def test_refused_requests_are_not_counted(client: FlaskClient, clock: FakeClock) -> None:
    assert statuses(client, 20) == [200] * 20
    clock.advance(0.5)
    assert statuses(client, 10) == [429] * 10
    clock.advance(0.5)  # the 20 admitted requests left the 1 s window; the 10 refused never were
    assert statuses(client, 21) == [200] * 20 + [429]


def test_excluded_methods_are_neither_counted_nor_limited(client: FlaskClient) -> None:
    assert statuses(client, 30, method="HEAD") == [200] * 30
    assert statuses(client, 21) == [200] * 20 + [429]
    assert get(client, method="HEAD").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/", id="global"),
        pytest.param("HEAD", "/", id="excluded method"),
        pytest.param("GET", "/alone", id="standalone"),
        pytest.param("HEAD", "/alone", id="standalone excluded method"),
        pytest.param("GET", "/burst", id="specific"),
        pytest.param("HEAD", "/burst", id="specific excluded method"),
        pytest.param("POST", "/login", id="the reporting view"),
        pytest.param("GET", "/missing", id="no route"),
    ],
)
def test_a_ban_beats_everything_but_bypass(
    app: Flask, gk: GateKeeper, client: FlaskClient, method: str, path: str
) -> None:
    alone = gk.specific(rate_limit_rules=[{"count": 10, "window": 3600}], standalone=True)
    app.add_url_rule("/alone", "alone", alone(page("alone")))
    app.add_url_rule("/burst", "burst", gk.specific(rate_limit_rules=ONE_PER_10S)(page("burst")))
    ban(client, IP)

    refused = get(client, path, method=method)
    assert refused.status_code == 403
    assert refused.headers["Retry-After"] == "600"
    assert get(client, path, ip="10.0.0.9", method=method).status_code != 403


# --- Bans ------------------------------------------------------------------------------


def test_ban_lasts_its_duration_from_the_last_report(client: FlaskClient, clock: FakeClock) -> None:
    ip = "10.0.0.2"
    assert bad_login(client, ip).text == "bad password"  # t=1000
    clock.set(1004)
    assert bad_login(client, ip).text == "bad password"
    clock.set(1009)
    assert bad_login(client, ip).text == "banned"  # 3 reports within 10 s: banned until 1609

    refused = get(client, ip=ip)
    assert refused.status_code == 403
    assert refused.headers["Retry-After"] == "600"
    assert refused.mimetype == "text/plain"
    assert refused.text == "ip 10.0.0.2 banned for 600s (reported 3 times in a 10s window)\n"
    assert get(client, ip="10.0.0.3").status_code == 200  # only that client

    clock.advance(300)
    refused = get(client, ip=ip)
    assert refused.headers["Retry-After"] == "300"
    assert refused.text == "ip 10.0.0.2 banned for 300s (reported 3 times in a 10s window)\n"
    clock.set(1608.5)
    assert get(client, ip=ip).headers["Retry-After"] == "1"
    clock.set(1609)
    assert get(client, ip=ip).status_code == 200


def test_reports_outside_the_ban_window_do_not_ban(client: FlaskClient, clock: FakeClock) -> None:
    ip = "10.0.0.2"
    for now in (1000, 1005, 1010):  # the first report left the 10 s window at 1010
        clock.set(now)
        assert bad_login(client, ip).text == "bad password"
    assert get(client, ip=ip).status_code == 200
    clock.set(1011)  # 1005, 1010, 1011: three within 10 s
    assert bad_login(client, ip).text == "banned"
    assert get(client, ip=ip).status_code == 403


def test_report_log_starts_empty_after_a_ban(client: FlaskClient, clock: FakeClock) -> None:
    ip = "10.0.0.2"
    ban(client, ip)
    clock.advance(600)
    assert get(client, ip=ip).status_code == 200
    assert [bad_login(client, ip).text for _ in range(2)] == ["bad password"] * 2
    assert get(client, ip=ip).status_code == 200  # the reports before the ban are gone
    assert bad_login(client, ip).text == "banned"
    assert get(client, ip=ip).status_code == 403


def test_report_for_a_client_never_seen(app: Flask, gk: GateKeeper, client: FlaskClient) -> None:
    assert bad_login(client, "203.0.113.1").status_code == 401  # its first request
    with app.app_context():
        assert gk.report(ip="203.0.113.2") is False
    assert get(client, ip="203.0.113.2").status_code == 200


def test_report_with_ip_in_an_app_context(app: Flask, gk: GateKeeper, client: FlaskClient) -> None:
    with app.app_context():
        assert [gk.report(ip="1.2.3.4") for _ in range(3)] == [False, False, True]
    refused = get(client, ip="1.2.3.4")
    assert refused.status_code == 403
    assert refused.text.startswith("ip 1.2.3.4 banned for 600s")


def test_report_with_ip_outside_any_context(gk: GateKeeper, client: FlaskClient) -> None:
    """The app was given to the constructor, so report(ip=...) knows which app it means."""
    assert [gk.report(ip="1.2.3.4") for _ in range(3)] == [False, False, True]
    assert get(client, ip="1.2.3.4").status_code == 403


def test_report_without_ip_outside_a_request_raises(app: Flask, gk: GateKeeper) -> None:
    with app.app_context(), pytest.raises(RuntimeError, match=r"report\(ip=\.\.\.\)"):
        gk.report()
    with pytest.raises(RuntimeError):
        gk.report()


def test_report_outside_any_context_needs_the_constructor_app(
    seed_options: dict[str, Any],
) -> None:
    gk = GateKeeper(**seed_options)
    gk.init_app(Flask(__name__))
    with pytest.raises(RuntimeError, match="app context"):
        gk.report(ip="1.2.3.4")


def test_report_in_an_app_without_init_app_raises(gk: GateKeeper) -> None:
    other = Flask("other")
    with other.app_context(), pytest.raises(RuntimeError, match="init_app"):
        gk.report(ip="1.2.3.4")


# --- Error handlers and the refusal exceptions -----------------------------------------


@pytest.mark.parametrize(
    "handled", [pytest.param(429, id="code"), pytest.param(RateLimited, id="class")]
)
def test_errorhandler_replaces_the_429_response(
    app: Flask, client: FlaskClient, handled: int | type[Exception]
) -> None:
    caught: list[HTTPException] = []

    @app.errorhandler(handled)
    def too_many(error: HTTPException) -> tuple[str, int, dict[str, str]]:
        caught.append(error)
        return "slow down", 429, {"X-Custom": "yes"}

    assert statuses(client, 20) == [200] * 20
    refused = get(client)
    assert (refused.status_code, refused.text, refused.headers["X-Custom"]) == (
        429,
        "slow down",
        "yes",
    )
    [error] = caught
    assert isinstance(error, RateLimited)
    assert isinstance(error, HTTPException)
    assert error.code == 429
    assert error.client == IP
    assert error.retry_after == pytest.approx(1.0)
    assert error.rule == Rule(count=20, window=1)


@pytest.mark.parametrize(
    "handled", [pytest.param(403, id="code"), pytest.param(Banned, id="class")]
)
def test_errorhandler_replaces_the_403_response(
    app: Flask, client: FlaskClient, clock: FakeClock, handled: int | type[Exception]
) -> None:
    caught: list[HTTPException] = []

    @app.errorhandler(handled)
    def forbidden(error: HTTPException) -> tuple[str, int]:
        caught.append(error)
        return "go away", 403

    ban(client, IP)
    clock.advance(100)
    refused = get(client)
    assert (refused.status_code, refused.text) == (403, "go away")
    [error] = caught
    assert isinstance(error, Banned)
    assert isinstance(error, HTTPException)
    assert error.code == 403
    assert error.client == IP
    assert error.retry_after == pytest.approx(500.0)
    assert error.ban_rule == BanRule(count=3, window=10, duration=600)


# --- Marks follow the endpoint ---------------------------------------------------------


def test_views_of_the_same_name_in_two_blueprints_are_independent(
    app: Flask, gk: GateKeeper, client: FlaskClient
) -> None:
    def blueprint(name: str) -> tuple[Blueprint, Callable[[], str]]:
        bp = Blueprint(name, __name__, url_prefix=f"/{name}")

        @bp.route("/view")
        def view() -> str:  # the same function name in both blueprints
            return name

        return bp, view

    first, first_view = blueprint("first")
    second, _ = blueprint("second")
    gk.bypass(first_view)
    app.register_blueprint(first)
    app.register_blueprint(second)

    assert statuses(client, 21, "/second/view") == [200] * 20 + [429]
    assert statuses(client, 25, "/first/view") == [200] * 25
    ban(client, "10.0.0.2")
    assert get(client, "/first/view", ip="10.0.0.2").text == "first"
    assert get(client, "/second/view", ip="10.0.0.2").status_code == 403


def test_decorator_order_does_not_matter(app: Flask, gk: GateKeeper, client: FlaskClient) -> None:
    @gk.bypass
    @app.route("/bypass-above")
    def bypass_above() -> str:
        return "above"

    @app.route("/bypass-below")
    @gk.bypass
    def bypass_below() -> str:
        return "below"

    @gk.specific(rate_limit_rules=ONE_PER_10S)
    @app.route("/specific-above")
    def specific_above() -> str:
        return "above"

    @app.route("/specific-below")
    @gk.specific(rate_limit_rules=ONE_PER_10S)
    def specific_below() -> str:
        return "below"

    ban(client, "10.0.0.2")
    assert get(client, "/bypass-above", ip="10.0.0.2").text == "above"
    assert get(client, "/bypass-below", ip="10.0.0.2").text == "below"
    assert statuses(client, 2, "/specific-above") == [200, 429]
    assert statuses(client, 2, "/specific-below") == [200, 429]


def test_marks_follow_views_through_functools_wraps(
    app: Flask, gk: GateKeeper, client: FlaskClient
) -> None:
    def logged(view: Callable[..., str]) -> Callable[..., str]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> str:
            return view(*args, **kwargs)

        return wrapper

    @app.route("/wrapped")
    @logged
    @gk.specific(rate_limit_rules=ONE_PER_10S)
    def wrapped() -> str:
        return "wrapped"

    assert statuses(client, 2, "/wrapped") == [200, 429]


def test_async_views(app: Flask, gk: GateKeeper, client: FlaskClient) -> None:
    @app.route("/async")
    async def plain() -> str:
        return "async"

    @app.route("/async-specific")
    @gk.specific(rate_limit_rules=ONE_PER_10S)
    async def specific() -> str:
        return "specific"

    @app.route("/async-bypass")
    @gk.bypass
    async def bypassed() -> str:
        return "bypassed"

    @app.route("/async-report")
    async def report() -> str:
        return str(gk.report())

    assert statuses(client, 21, "/async") == [200] * 20 + [429]
    assert statuses(client, 2, "/async-specific", ip="10.0.0.2") == [200, 429]
    assert [get(client, "/async-report", ip="10.0.0.3").text for _ in range(3)] == [
        "False",
        "False",
        "True",
    ]
    assert get(client, "/async", ip="10.0.0.3").status_code == 403
    assert get(client, "/async-bypass", ip="10.0.0.3").text == "bypassed"


def test_class_based_views_with_decorators(app: Flask, gk: GateKeeper, client: FlaskClient) -> None:
    class Limited(MethodView):
        decorators: ClassVar[list[Callable[..., Any]]] = [gk.specific(rate_limit_rules=ONE_PER_10S)]

        def get(self) -> str:
            return "limited"

    class Open(MethodView):
        decorators: ClassVar[list[Callable[..., Any]]] = [gk.bypass]

        def get(self) -> str:
            return "open"

    app.add_url_rule("/limited", view_func=Limited.as_view("limited"))
    app.add_url_rule("/open", view_func=Open.as_view("open"))

    assert statuses(client, 2, "/limited") == [200, 429]
    ban(client, "10.0.0.2")
    assert get(client, "/open", ip="10.0.0.2").text == "open"
    assert get(client, "/limited", ip="10.0.0.2").status_code == 403


def test_decorating_a_view_class(app: Flask, gk: GateKeeper, client: FlaskClient) -> None:
    """The decorators also take the class itself (a class's __dict__ is read-only)."""

    @gk.bypass
    class Open(MethodView):
        def get(self) -> str:
            return "open"

    @gk.specific(rate_limit_rules=ONE_PER_10S)
    class Limited(MethodView):
        def get(self) -> str:
            return "limited"

    app.add_url_rule("/open", view_func=Open.as_view("open"))
    app.add_url_rule("/limited", view_func=Limited.as_view("limited"))

    assert statuses(client, 2, "/limited") == [200, 429]
    ban(client, "10.0.0.2")
    assert get(client, "/open", ip="10.0.0.2").text == "open"


def test_bypass_a_blueprint(app: Flask, gk: GateKeeper, client: FlaskClient) -> None:
    bp = Blueprint("open", __name__, url_prefix="/open")
    bp.add_url_rule("/one", "one", page("one"))
    bp.add_url_rule("/two", "two", page("two"))
    gk.bypass(bp)
    app.register_blueprint(bp)

    assert statuses(client, 25, "/open/one") == [200] * 25
    assert statuses(client, 25, "/open/two") == [200] * 25
    assert statuses(client, 21, "/") == [200] * 20 + [429]
    ban(client, "10.0.0.2")
    assert get(client, "/open/one", ip="10.0.0.2").text == "one"
    assert get(client, "/open/two", ip="10.0.0.2").text == "two"


def test_specific_on_a_blueprint(app: Flask, gk: GateKeeper, client: FlaskClient) -> None:
    bp = Blueprint("tight", __name__, url_prefix="/tight")
    bp.add_url_rule("/one", "one", page("one"))
    bp.add_url_rule("/two", "two", page("two"))
    gk.specific(rate_limit_rules=ONE_PER_10S)(bp)
    app.register_blueprint(bp)

    assert statuses(client, 2, "/tight/one") == [200, 429]
    assert statuses(client, 2, "/tight/two") == [200, 429]  # counted per route
    assert statuses(client, 19, "/") == [200] * 18 + [429]  # and toward the global rules


@pytest.mark.parametrize("marked", ["parent", "child"])
def test_marks_on_nested_blueprints(
    app: Flask, gk: GateKeeper, client: FlaskClient, marked: str
) -> None:
    blueprints: dict[str, dict[str, Blueprint]] = {}
    for kind in ("open", "tight"):
        parent = Blueprint(f"{kind}_parent", __name__, url_prefix=f"/{kind}")
        child = Blueprint(f"{kind}_child", __name__, url_prefix="/child")
        child.add_url_rule("/view", "view", page(kind))
        parent.register_blueprint(child)
        blueprints[kind] = {"parent": parent, "child": child}
    gk.bypass(blueprints["open"][marked])
    gk.specific(rate_limit_rules=ONE_PER_10S)(blueprints["tight"][marked])
    app.register_blueprint(blueprints["open"]["parent"])
    app.register_blueprint(blueprints["tight"]["parent"])

    assert statuses(client, 2, "/tight/child/view") == [200, 429]
    ban(client, "10.0.0.2")
    assert get(client, "/open/child/view", ip="10.0.0.2").text == "open"
    assert get(client, "/tight/child/view", ip="10.0.0.2").status_code == 403


# --- Requests that match no route ------------------------------------------------------


def test_not_found_counts_toward_the_global_rules(client: FlaskClient) -> None:
    assert statuses(client, 20, "/missing") == [404] * 20
    assert get(client).status_code == 429
    assert get(client, "/missing").status_code == 429
    ban(client, "10.0.0.2")
    refused = get(client, "/missing", ip="10.0.0.2")
    assert refused.status_code == 403
    assert refused.headers["Retry-After"] == "600"


# --- Flask extension conventions -------------------------------------------------------


def test_registers_itself_in_app_extensions(app: Flask, clock: FakeClock) -> None:
    assert "gatekeeper" in app.extensions
    later = Flask(__name__)
    GateKeeper(storage=MemoryStorage(clock=clock)).init_app(later)
    assert "gatekeeper" in later.extensions


def test_init_app_twice_is_idempotent(app: Flask, gk: GateKeeper, client: FlaskClient) -> None:
    gk.init_app(app)
    gk.init_app(app)
    assert statuses(client, 21) == [200] * 20 + [429]  # each request counted once


def test_one_gatekeeper_keeps_separate_counters_per_app() -> None:
    gk = GateKeeper(
        ip_header="x-my-ip",
        ban_rule={"count": 1, "window": 3600, "duration": 3600},
        rate_limit_rules=[{"count": 2, "window": 3600}],
    )
    apps = [Flask("first"), Flask("second")]
    for app in apps:
        app.add_url_rule("/", "index", page(app.name))
        gk.init_app(app)
    first, second = (app.test_client() for app in apps)

    assert statuses(first, 3) == [200, 200, 429]
    assert statuses(second, 3) == [200, 200, 429]
    with apps[0].app_context():
        assert gk.report(ip="10.0.0.2") is True
    assert get(first, ip="10.0.0.2").status_code == 403
    assert get(second, ip="10.0.0.2").text == "second"


def test_a_second_gatekeeper_on_the_same_app_raises(app: Flask, client: FlaskClient) -> None:
    with pytest.raises(RuntimeError, match="already has another GateKeeper"):
        GateKeeper(app, rate_limit_rules=[{"count": 1, "window": 10}])
    assert statuses(client, 21) == [200] * 20 + [429]  # the first one is still in charge


@pytest.mark.parametrize(
    "disabled",
    [
        pytest.param({"enabled": False}, id="constructor"),
        pytest.param({"config": {"GATEKEEPER_ENABLED": False}}, id="app.config"),
    ],
)
def test_disabled_does_nothing(make_app: AppFactory, disabled: dict[str, Any]) -> None:
    """No limit, no ban, and report() is a no-op returning False."""
    app, gk = make_app(**disabled)
    client = app.test_client()
    assert statuses(client, 50) == [200] * 50
    assert [bad_login(client, IP).text for _ in range(5)] == ["bad password"] * 5
    assert get(client).status_code == 200
    assert gk.report(ip=IP) is False


# --- The client's address --------------------------------------------------------------

PEER = "192.0.2.7"


@pytest.mark.parametrize(
    ("header", "client_key"),
    [
        pytest.param("1.2.3.4", "1.2.3.4", id="ipv4"),
        pytest.param(" 1.2.3.4 ", "1.2.3.4", id="spaces"),
        pytest.param("9.9.9.9, 1.2.3.4", "1.2.3.4", id="list: right-most"),
        pytest.param("9.9.9.9,1.2.3.4", "1.2.3.4", id="list without spaces"),
        pytest.param("1.2.3.4:5678", "1.2.3.4", id="ipv4 with port"),
        pytest.param("[::1]:80", "::/64", id="ipv6 with port: its /64"),
        pytest.param("2001:DB8::0:1", "2001:db8::/64", id="ipv6 canonical: its /64"),
        pytest.param("::ffff:1.2.3.4", "1.2.3.4", id="ipv4-mapped ipv6"),
        pytest.param("not-an-ip", PEER, id="garbage: peer"),
        pytest.param("1.2.3.4, not-an-ip", PEER, id="garbage right-most: peer, not left"),
        pytest.param("1.2.3.4:80:90", PEER, id="two ports: peer"),
        pytest.param("", PEER, id="empty: peer"),
        pytest.param(None, PEER, id="missing: peer"),
    ],
)
def test_ip_header(
    app: Flask, gk: GateKeeper, client: FlaskClient, header: str | None, client_key: str
) -> None:
    app.add_url_rule("/once", "once", gk.specific(rate_limit_rules=ONE_PER_10S)(page("once")))
    headers = {} if header is None else {"x-my-ip": header}
    responses = [
        client.get("/once", headers=headers, environ_base={"REMOTE_ADDR": PEER}) for _ in range(2)
    ]
    assert [response.status_code for response in responses] == [200, 429]
    assert responses[1].text.startswith(f"ip {client_key} rate limited ")


def test_forms_of_one_address_share_one_counter(
    app: Flask, gk: GateKeeper, client: FlaskClient
) -> None:
    app.add_url_rule("/once", "once", gk.specific(rate_limit_rules=ONE_PER_10S)(page("once")))
    assert get(client, "/once", ip="1.2.3.4:5678").status_code == 200
    assert get(client, "/once", ip="::ffff:1.2.3.4").status_code == 429
    assert get(client, "/once", ip="5.6.7.8, 1.2.3.4").status_code == 429
    assert get(client, "/once", ip="1.2.3.5").status_code == 200
