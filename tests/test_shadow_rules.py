"""Shadow rules (docs/rules.md, "Shadow rules"): checked and counted beside the rules that
enforce, never refusing; what they would refuse is signalled, logged and counted as a dry
run's refusals are.

Every test that counts runs on both storages (the ``make`` fixture)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, request

from flask_gatekeeper import ConfigError, ConfigTypeError, GateKeeper, Rule, signals
from flask_gatekeeper.cli import gatekeeper
from flask_gatekeeper.rules import parse_rules
from flask_gatekeeper.testing import FakeClock
from support import IP, OTHER_IP, AppFactory, gatekeeper_logs, get, recording, statuses

SHADOW = Rule(2, 60, shadow=True)
ENFORCING = Rule(4, 60)


# --- writing them -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param("2/minute shadow", (SHADOW,), id="string"),
        pytest.param("2 per minute  shadow ", (SHADOW,), id="spaces"),
        pytest.param("2/MINUTE Shadow", (SHADOW,), id="any case"),
        pytest.param(
            "4/minute; 2/minute (gcra) shadow",
            (ENFORCING, Rule(2, 60, "gcra", shadow=True)),
            id="after a strategy, one rule of two",
        ),
        pytest.param({"count": 2, "window": 60, "shadow": True}, (SHADOW,), id="dict"),
        pytest.param({"count": 2, "window": 60, "shadow": False}, (Rule(2, 60),), id="dict off"),
        pytest.param(SHADOW, (SHADOW,), id="Rule"),
    ],
)
def test_a_shadow_rule_is_written_three_ways(given: Any, expected: tuple[Rule, ...]) -> None:
    assert parse_rules(given, "rate_limit_rules") == expected


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        pytest.param(
            "2/minute (shadow)", ConfigError, "expected one of sliding-log", id="as a strategy"
        ),
        pytest.param("shadow 2/minute", ConfigError, "is not a rule", id="in front"),
        pytest.param("2/minute shadowed", ConfigError, "is not a rule", id="misspelt"),
        pytest.param(
            {"count": 2, "window": 60, "shadow": "yes"},
            ConfigTypeError,
            r"rate_limit_rules: 'shadow' must be True or False, got 'yes'",
            id="not a bool",
        ),
    ],
)
def test_a_badly_written_shadow_rule_fails_at_start_up(
    given: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        parse_rules(given, "rate_limit_rules")


@pytest.mark.parametrize("option", ["ban_rule", "ban_rules", "subnet_ban_rule"])
def test_a_ban_rule_has_no_shadow_form(option: str) -> None:
    rule = {"count": 2, "window": 60, "duration": 600, "shadow": True}
    given: Any = {"login": rule} if option == "ban_rules" else rule
    with pytest.raises(ConfigError, match=rf"^{option}(\['login'\])?: unknown key 'shadow'"):
        GateKeeper(Flask(__name__), **{option: given})


def test_a_shadow_rule_reads_as_one_and_keeps_its_name() -> None:
    assert str(SHADOW) == "2 requests in a 60s window, shadow"
    assert str(Rule(2, 60, "gcra", shadow=True)) == "2 requests in a 60s window, gcra, shadow"
    assert SHADOW.name == Rule(2, 60).name == "2-per-60s"  # promoted, it keeps its series
    assert Rule(2, 60) != SHADOW


# --- in an app ------------------------------------------------------------------------------


def app_with(make: AppFactory, **options: Any) -> Any:
    app, gk = make(rate_limit_rules=[ENFORCING, SHADOW], **options)

    @app.route("/")
    def index() -> str:
        return "ok"

    return app, gk


def test_what_a_shadow_rule_would_refuse_is_admitted_signalled_logged_and_counted(
    make: AppFactory, clock: FakeClock, logs: pytest.LogCaptureFixture
) -> None:
    app, gk = app_with(make)
    client = app.test_client()
    logs.clear()
    with recording(app) as events:
        assert statuses(client, 2) == [200, 200]
        clock.advance(10)
        assert statuses(client, 2) == [200, 200]  # over the shadow rule: admitted
        assert statuses(client, 1) == [429]  # the enforcing rule is full

    would = {"client": IP, "rule": SHADOW, "retry_after": 50.0, "dry_run": True}
    refused = {"client": IP, "rule": ENFORCING, "retry_after": 50.0, "dry_run": False}
    assert events == [
        ("request_rate_limited", would),
        ("request_rate_limited", would),
        ("request_rate_limited", refused),  # a refusal names no shadow rule
    ]
    line = (
        "INFO",
        "shadow rule, would refuse GET /: ip 10.0.0.1 rate limited for 50s "
        "(over 2 requests in a 60s window, shadow)",
    )
    assert gatekeeper_logs(logs) == [line, line]
    with app.app_context():
        stats = gk.stats()
    assert (stats["admitted"], stats["rate_limited"], stats["shadow_refused"]) == (4, 1, 2)


def test_headers_describe_only_the_rules_that_enforce(make: AppFactory) -> None:
    app, _ = app_with(make, headers=True)
    client = app.test_client()
    responses = [get(client) for _ in range(3)]
    assert [response.headers["RateLimit"] for response in responses] == [
        '"4-per-60s";r=3;t=60',
        '"4-per-60s";r=2;t=60',
        '"4-per-60s";r=1;t=60',  # the shadow rule has none left: not shown
    ]
    assert responses[0].headers["RateLimit-Policy"] == '"4-per-60s";q=4;w=60'


def test_no_header_fields_when_only_shadow_rules_apply(make: AppFactory) -> None:
    app, _ = make(rate_limit_rules="1/minute shadow", headers="both")

    @app.route("/")
    def index() -> str:
        return "ok"

    responses = [get(app.test_client()) for _ in range(2)]
    assert [response.status_code for response in responses] == [200, 200]
    for response in responses:
        assert not [name for name, _ in response.headers if "ratelimit" in name.lower()]


def test_usage_lists_shadow_rules_too(make: AppFactory) -> None:
    app, gk = app_with(make)
    statuses(app.test_client(), 3)
    with app.app_context():
        usage = gk.usage(IP)
    assert [(use.rule, use.remaining) for use in usage] == [(ENFORCING, 1), (SHADOW, 0)]


def test_in_a_dry_run_both_say_would_refuse(
    make: AppFactory, logs: pytest.LogCaptureFixture
) -> None:
    app, gk = app_with(make, dry_run=True)
    client = app.test_client()
    logs.clear()
    assert statuses(client, 5) == [200] * 5
    assert [message.split(":")[0] for _, message in gatekeeper_logs(logs)] == [
        "shadow rule, would refuse GET /",
        "shadow rule, would refuse GET /",
        "dry run, would refuse GET /",  # refused by the enforcing rule: recorded nothing
    ]
    with app.app_context():
        stats = gk.stats()
    assert (stats["admitted"], stats["rate_limited"], stats["shadow_refused"]) == (4, 1, 2)


def test_a_route_s_shadow_rule_with_cost_count_when_and_a_key(
    make: AppFactory, clock: FakeClock
) -> None:
    app, gk = make(rate_limit_rules=None)
    shadow_per_user = Rule(2, 60, "gcra", key="form[user]", shadow=True)

    @app.post("/login")
    @gk.specific(
        ["10/minute", "3/minute (fixed-window) shadow", shadow_per_user],
        cost=2,
        count_when=lambda response: response.status_code == 401,
    )
    def login() -> tuple[str, int]:
        return ("bad", 401) if request.form["password"] != "right" else ("ok", 200)

    client = app.test_client()

    def login_as(user: str, password: str = "wrong") -> int:
        form = {"user": user, "password": password}
        return client.post("/login", data=form, environ_base={"REMOTE_ADDR": IP}).status_code

    with recording(app) as events:
        assert login_as("ann", "right") == 200  # not counted: given back, shadow rules too
        assert login_as("ann") == 401  # 2 of the 3 (cost 2), ann's 2 of 2
        assert login_as("bob") == 401  # 4: over the 3, bob's 2 of 2
        assert login_as("ann") == 401  # 6, and over ann's 2
        assert login_as("ann") == 401  # 8 of 10
        assert login_as("ann") == 401  # 10 of 10
        assert login_as("ann") == 429  # 12: over the enforcing rule
    shadowed = [
        (payload["rule"].shadow, str(payload["rule"]))
        for name, payload in events
        if name == "request_rate_limited" and payload["dry_run"]
    ]
    fixed = (True, "3 requests in a 60s window, fixed-window, shadow")
    per_user = (True, "2 requests in a 60s window per form[user], gcra, shadow")
    assert shadowed == [fixed, fixed, per_user, fixed, per_user, fixed, per_user]
    assert events[-1][1]["rule"] == Rule(10, 60)


def test_a_limit_in_a_view_reports_its_shadow_rule(make: AppFactory) -> None:
    app, gk = make(rate_limit_rules=None)

    @app.route("/export")
    def export() -> str:
        with gk.limit("1/hour shadow", scope="export"):
            return "data"

    client = app.test_client()
    with recording(app) as events:
        assert statuses(client, 2, "/export", OTHER_IP) == [200, 200]
    assert [payload["rule"] for _, payload in events] == [Rule(1, 3600, shadow=True)]
    with app.app_context():
        assert gk.stats()["shadow_refused"] == 1


def test_a_signal_receiver_tells_a_shadow_rule_from_a_dry_run(make: AppFactory) -> None:
    app, _ = app_with(make)
    seen: list[str] = []

    def receiver(sender: Any, rule: Rule, dry_run: bool, **extra: Any) -> None:
        seen.append("shadow" if rule.shadow else "dry run" if dry_run else "refused")

    with signals.request_rate_limited.connected_to(receiver, sender=app):
        statuses(app.test_client(), 5)
    assert seen == ["shadow", "shadow", "refused"]


def test_status_shows_which_rules_are_shadow_rules(make: AppFactory) -> None:
    app, _ = app_with(make)
    result = app.test_cli_runner().invoke(gatekeeper, ["status"])
    assert "rate limit: 4 requests in a 60s window\n" in result.output
    assert "rate limit: 2 requests in a 60s window, shadow\n" in result.output


def test_a_rules_function_may_return_shadow_rules(make: AppFactory) -> None:
    app, gk = make(rate_limit_rules=None)

    @app.route("/search")
    @gk.specific(lambda: "2/minute; 1/minute shadow")
    def search() -> str:
        return "results"

    client = app.test_client()
    with recording(app) as events:
        assert statuses(client, 3, "/search") == [200, 200, 429]
    assert [(payload["rule"], payload["dry_run"]) for _, payload in events] == [
        (Rule(1, 60, shadow=True), True),
        (Rule(2, 60), False),
    ]


def test_what_a_shadow_rule_would_refuse_is_no_report(make: AppFactory) -> None:
    app, gk = app_with(
        make, ban_rule={"count": 1, "window": 60, "duration": 600}, report_rate_limited=True
    )
    assert statuses(app.test_client(), 4) == [200] * 4  # two over the shadow rule
    with app.app_context():
        assert gk.banned_for(IP) == 0
        assert gk.stats()["reports"] == 0
    assert statuses(app.test_client(), 2) == [429, 403]  # a real refusal reports, and bans


def test_a_route_s_shadow_rule_reports_nothing_toward_its_offence(make: AppFactory) -> None:
    """With jails, a would-be refusal by a shadow rule of a route with an ``offence`` is
    no report of that offence either; a real 429 of the route is."""
    app, gk = make(
        rate_limit_rules=None,
        ban_rule={"count": 1, "window": 60, "duration": 60},
        ban_rules={"scanner": {"count": 1, "window": 60, "duration": 600}},
        report_rate_limited=True,
    )

    @app.route("/search")
    @gk.specific("3/minute; 1/minute shadow", offence="scanner")
    def search() -> str:
        return "results"

    client = app.test_client()
    with recording(app) as events:
        assert statuses(client, 3, "/search") == [200] * 3  # two over the shadow rule
    assert [name for name, _ in events] == ["request_rate_limited"] * 2
    with app.app_context():
        assert gk.stats()["reports"] == 0
    assert statuses(client, 2, "/search") == [429, 403]  # the enforcing rule's 429 bans
    with app.app_context():
        detail = gk.bans(detail=True)[IP]
    assert (detail.reason, detail.offence) == ("rate_limit", "scanner")


def test_a_default_rule_may_be_a_shadow_rule(make: AppFactory) -> None:
    """``default_rules`` take shadow rules as every rule option does: counted per route,
    never refusing, beside the enforcing ones."""
    app, _ = make(rate_limit_rules=None, default_rules="3/minute; 1/minute shadow")

    @app.route("/a")
    def a() -> str:
        return "a"

    @app.route("/b")
    def b() -> str:
        return "b"

    client = app.test_client()
    with recording(app) as events:
        assert statuses(client, 4, "/a") == [200, 200, 200, 429]
        assert statuses(client, 2, "/b") == [200, 200]  # a budget of its own
    assert [(payload["rule"], payload["dry_run"]) for _, payload in events] == [
        (Rule(1, 60, shadow=True), True),
        (Rule(1, 60, shadow=True), True),
        (Rule(3, 60), False),
        (Rule(1, 60, shadow=True), True),  # /b's second: its own count
    ]
