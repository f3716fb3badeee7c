"""Operating bans: escalation, bans for rate-limit abuse, manual control, signals, logging,
RateLimit headers, problem+json refusals, dry run and stats (issue 5).

Everything goes through Flask's test client or ``GateKeeper``'s public methods. Every app
runs on a ``FakeClock`` that starts at 1000.0 and moves only when a test says so, so
every number below is exact. Clients are named by ``REMOTE_ADDR`` (no proxy header).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Optional, Union

import pytest
from blinker import Signal
from flask import Flask, request
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from flask_gatekeeper import (
    BanRule,
    ConfigError,
    ConfigTypeError,
    GateKeeper,
    MemoryStorage,
    Rule,
    outage,
    signals,
)
from flask_gatekeeper.testing import FakeClock, FlakyStorage

IP = "10.0.0.1"
OTHER_IP = "10.0.0.2"
ADMIN_IP = "10.0.0.99"

DEFAULTS: dict[str, Any] = {
    "ban_rule": {"count": 3, "window": 10, "duration": 600},
    "rate_limit_rules": [{"count": 20, "window": 1}, {"count": 100, "window": 10}],
    "excluded_methods": ["HEAD"],
}
"""The seed's options without its proxy header: clients are told apart by REMOTE_ADDR."""

ESCALATING: dict[str, Any] = {
    "count": 1,
    "window": 10,
    "duration": 60,
    "factor": 2,
    "max_duration": 300,
    "forget_after": 3600,
}
"""Each bad password bans; bans double from 60 s up to 300 s; forgotten after an hour."""

Build = Callable[..., "tuple[Flask, GateKeeper]"]


def make_app(
    clock: FakeClock, config: Optional[dict[str, Any]] = None, **options: Any
) -> tuple[Flask, GateKeeper]:
    """An app with ``DEFAULTS`` (override any as keywords, None drops one) on ``clock``.

    Routes: ``/`` (global rules), ``POST /login`` (reports unless the password is
    ``right``), ``/burst`` (its own 1 per 2 s on top), ``/alone`` (only its own 2 per 60 s),
    ``/health`` (bypassed), ``/trap`` (bans its caller), and the bypassed ``POST
    /admin/ban`` and ``/admin/unban`` (manual control from inside a view).
    """
    app = Flask(__name__)
    app.config.update(config or {})
    gk = GateKeeper(app, **{**DEFAULTS, "storage": MemoryStorage(clock=clock), **options})

    @app.route("/")
    def index() -> str:
        return "hello"

    @app.route("/login", methods=["POST"])
    def login() -> tuple[str, int]:
        if request.form.get("password") == "right":
            return "welcome", 200
        return ("banned" if gk.report() else "bad password"), 401

    @app.route("/burst")
    @gk.specific(rate_limit_rules=[{"count": 1, "window": 2}])
    def burst() -> str:
        return "burst"

    @app.route("/alone")
    @gk.specific(rate_limit_rules=[{"count": 2, "window": 60}], standalone=True)
    def alone() -> str:
        return "alone"

    @app.route("/health")
    @gk.bypass
    def health() -> str:
        return "ok"

    @app.route("/trap")
    def trap() -> str:
        gk.ban(request.remote_addr or "")
        return "gotcha"

    @app.route("/admin/ban", methods=["POST"])
    @gk.bypass
    def admin_ban() -> dict[str, Any]:
        ip = request.form["ip"]
        gk.ban(ip, request.form.get("duration", type=float))
        return {"banned_for": gk.banned_for(ip), "bans": gk.bans()}

    @app.route("/admin/unban", methods=["POST"])
    @gk.bypass
    def admin_unban() -> dict[str, Any]:
        return {"unbanned": gk.unban(request.form["ip"])}

    return app, gk


@pytest.fixture
def build(clock: FakeClock) -> Build:
    """``build(config=None, **options)``: ``make_app`` on the test's clock."""

    def build(config: Optional[dict[str, Any]] = None, **options: Any) -> tuple[Flask, GateKeeper]:
        return make_app(clock, config, **options)

    return build


def get(
    client: FlaskClient,
    path: str = "/",
    ip: str = IP,
    *,
    method: str = "GET",
    accept: Optional[str] = None,
) -> TestResponse:
    """One request from ``ip``, with an ``Accept`` header when one is given."""
    headers = {"Accept": accept} if accept is not None else {}
    return client.open(path, method=method, headers=headers, environ_base={"REMOTE_ADDR": ip})


def statuses(client: FlaskClient, times: int, path: str = "/", ip: str = IP) -> list[int]:
    """The status codes of ``times`` requests made at the same instant."""
    return [get(client, path, ip).status_code for _ in range(times)]


def bad_login(client: FlaskClient, ip: str = IP) -> TestResponse:
    """A wrong password: the ``/login`` view reports ``ip``."""
    return client.post("/login", data={"password": "wrong"}, environ_base={"REMOTE_ADDR": ip})


def retry_after(response: TestResponse) -> int:
    value = response.headers["Retry-After"]
    assert value.isdigit(), value
    return int(value)


# --- Signals: a recorder -----------------------------------------------------------------

SIGNALS: dict[str, Signal] = {
    "client_reported": signals.client_reported,
    "client_banned": signals.client_banned,
    "client_unbanned": signals.client_unbanned,
    "request_rate_limited": signals.request_rate_limited,
    "request_banned": signals.request_banned,
    "storage_error": signals.storage_error,
}

Event = tuple[str, dict[str, Any]]


class _Receiver:
    """Appends ``(signal name, keyword arguments)`` to ``events``; checks the sender."""

    def __init__(self, name: str, app: Flask, events: list[Event]) -> None:
        self.name = name
        self.app = app
        self.events = events

    def __call__(self, sender: object, **kwargs: Any) -> None:
        assert sender is self.app
        self.events.append((self.name, kwargs))


@contextmanager
def recording(app: Flask) -> Iterator[list[Event]]:
    """Every gatekeeper signal ``app`` sends inside the block, in order."""
    events: list[Event] = []
    with ExitStack() as stack:
        for name, signal in SIGNALS.items():
            stack.enter_context(signal.connected_to(_Receiver(name, app, events), sender=app))
        yield events


def gatekeeper_logs(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """``(level, message)`` of every record of the ``flask_gatekeeper`` logger."""
    return [
        (record.levelname, record.getMessage())
        for record in caplog.records
        if record.name == "flask_gatekeeper"
    ]


# --- 1. Ban escalation --------------------------------------------------------------------


def ban_and_measure(client: FlaskClient, clock: FakeClock) -> int:
    """Get ``IP`` banned with one bad password, return the ban's Retry-After, wait it out."""
    assert bad_login(client).text == "banned"
    refused = get(client)
    assert refused.status_code == 403
    seconds = retry_after(refused)
    clock.advance(seconds - 1)
    assert get(client).status_code == 403  # still banned one second before the end
    clock.advance(1)
    assert get(client).status_code == 200  # and admitted exactly at the end
    return seconds


@pytest.mark.parametrize(
    ("config", "options"),
    [
        pytest.param({}, {"ban_rule": ESCALATING}, id="dict"),
        pytest.param({}, {"ban_rule": BanRule(**ESCALATING)}, id="BanRule"),
        pytest.param({"GATEKEEPER_BAN_RULE": ESCALATING}, {"ban_rule": None}, id="config"),
    ],
)
def test_bans_grow_by_factor_up_to_max_duration(
    build: Build, clock: FakeClock, config: dict[str, Any], options: dict[str, Any]
) -> None:
    app, _ = build(config, **options)
    client = app.test_client()

    with recording(app) as events:
        durations = [ban_and_measure(client, clock) for _ in range(6)]

    assert durations == [60, 120, 240, 300, 300, 300]
    assert [kwargs["duration"] for name, kwargs in events if name == "client_banned"] == [
        60,
        120,
        240,
        300,
        300,
        300,
    ]


def test_ban_escalation_with_a_non_integer_factor(build: Build, clock: FakeClock) -> None:
    app, _ = build(ban_rule={"count": 1, "window": 10, "duration": 10, "factor": 1.5})
    client = app.test_client()

    assert [ban_and_measure(client, clock) for _ in range(4)] == [10, 15, 23, 34]  # ceil


def test_banned_for_follows_the_escalated_ban(build: Build, clock: FakeClock) -> None:
    app, gk = build(ban_rule=ESCALATING)
    client = app.test_client()
    ban_and_measure(client, clock)

    assert bad_login(client).text == "banned"
    clock.advance(20)
    with app.app_context():
        assert gk.banned_for(IP) == 100  # 120 s, 20 of them gone
        assert gk.bans() == {IP: 100}


@pytest.mark.parametrize(
    ("quiet", "next_ban"),
    [
        pytest.param(0, 240, id="right after"),
        pytest.param(3599, 240, id="remembered 1s before forget_after"),
        pytest.param(3600, 60, id="forgotten at forget_after"),
        pytest.param(100_000, 60, id="forgotten long after"),
    ],
)
def test_ban_history_is_forgotten_after_a_quiet_period(
    build: Build, clock: FakeClock, quiet: float, next_ban: int
) -> None:
    app, _ = build(ban_rule=ESCALATING)
    client = app.test_client()
    assert [ban_and_measure(client, clock) for _ in range(2)] == [60, 120]  # ends now

    clock.advance(quiet)

    assert ban_and_measure(client, clock) == next_ban


def test_quiet_period_counts_from_the_end_of_the_last_ban(build: Build, clock: FakeClock) -> None:
    app, _ = build(ban_rule={**ESCALATING, "forget_after": 100, "max_duration": 10_000})
    client = app.test_client()
    assert bad_login(client).text == "banned"  # 60 s
    clock.advance(60 + 99)  # 99 s after the ban ended: remembered
    assert bad_login(client).text == "banned"
    assert retry_after(get(client)) == 120
    clock.advance(120 + 100)  # 100 s after the second ban ended: forgotten
    assert bad_login(client).text == "banned"
    assert retry_after(get(client)) == 60


def test_without_escalation_keys_every_ban_lasts_duration(build: Build, clock: FakeClock) -> None:
    app, _ = build(ban_rule={"count": 1, "window": 10, "duration": 60})
    client = app.test_client()

    assert [ban_and_measure(client, clock) for _ in range(4)] == [60, 60, 60, 60]


def test_seed_ban_rule_still_needs_count_reports_within_window(
    build: Build, clock: FakeClock
) -> None:
    app, _ = build(ban_rule={**ESCALATING, "count": 3})
    client = app.test_client()

    assert [bad_login(client).text for _ in range(2)] == ["bad password"] * 2
    clock.advance(10)  # both reports leave the window
    assert [bad_login(client).text for _ in range(3)] == ["bad password"] * 2 + ["banned"]
    assert retry_after(get(client)) == 60


def test_unban_and_reset_forget_the_ban_history(build: Build, clock: FakeClock) -> None:
    app, gk = build(ban_rule=ESCALATING)
    client = app.test_client()
    assert [ban_and_measure(client, clock) for _ in range(2)] == [60, 120]

    assert bad_login(client).text == "banned"  # 240 s
    with app.app_context():
        assert gk.unban(IP) is True
    assert ban_and_measure(client, clock) == 60  # history gone with the ban

    assert ban_and_measure(client, clock) == 120
    with app.app_context():
        gk.reset(IP)
    assert ban_and_measure(client, clock) == 60


@pytest.mark.parametrize(
    ("extra", "error", "named"),
    [
        pytest.param({"factor": 0.5}, ConfigError, "'factor'", id="factor below 1"),
        pytest.param({"factor": 0}, ConfigError, "'factor'", id="factor 0"),
        pytest.param({"factor": "2"}, ConfigTypeError, "'factor'", id="factor a string"),
        pytest.param({"max_duration": 30}, ConfigError, "'max_duration'", id="max below duration"),
        pytest.param({"max_duration": -1}, ConfigError, "'max_duration'", id="max negative"),
        pytest.param({"forget_after": 0}, ConfigError, "'forget_after'", id="forget_after 0"),
        pytest.param({"factr": 2}, ConfigError, "'factr'", id="unknown key"),
    ],
)
def test_bad_escalation_values_fail_at_init_naming_the_key(
    build: Build, extra: dict[str, Any], error: type[Exception], named: str
) -> None:
    rule = {"count": 3, "window": 10, "duration": 60, **extra}

    with pytest.raises(error, match=f"^ban_rule: .*{named}"):
        build(ban_rule=rule)
    with pytest.raises(error, match=f"^GATEKEEPER_BAN_RULE: .*{named}"):
        build({"GATEKEEPER_BAN_RULE": rule}, ban_rule=None)


def test_bad_escalation_values_fail_in_ban_rule_itself() -> None:
    with pytest.raises(ConfigError, match=r"'factor' must be a number from 1 to 1000, got 0\.5"):
        BanRule(3, 10, 60, factor=0.5)
    with pytest.raises(ConfigError, match="'max_duration' must be at least 'duration'"):
        BanRule(3, 10, 60, max_duration=59)


def test_max_duration_equal_to_duration_is_allowed(build: Build, clock: FakeClock) -> None:
    app, _ = build(ban_rule={**ESCALATING, "max_duration": 60})
    client = app.test_client()

    assert [ban_and_measure(client, clock) for _ in range(3)] == [60, 60, 60]


# --- 2. Bans for rate-limit abuse ----------------------------------------------------------

ABUSE: dict[str, Any] = {
    "rate_limit_rules": [{"count": 1, "window": 100}],
    "ban_rule": {"count": 3, "window": 10, "duration": 600},
}


@pytest.mark.parametrize(
    ("config", "options"),
    [
        pytest.param({}, {"report_rate_limited": True}, id="option"),
        pytest.param({"GATEKEEPER_REPORT_RATE_LIMITED": True}, {}, id="config"),
    ],
)
def test_each_429_counts_as_a_report(
    build: Build, clock: FakeClock, config: dict[str, Any], options: dict[str, Any]
) -> None:
    app, gk = build(config, **ABUSE, **options)
    client = app.test_client()

    with recording(app) as events:
        assert statuses(client, 3) == [200, 429, 429]  # two reports at 1000
        clock.advance(5)
        assert statuses(client, 1) == [429]  # a third at 1005: banned from now
        refused = get(client)

    assert refused.status_code == 403
    assert retry_after(refused) == 600
    assert ("client_banned", {"client": IP, "duration": 600, "reason": "rate_limit"}) in events
    with app.app_context():
        assert gk.banned_for(IP) == 600
    assert get(client, ip=OTHER_IP).status_code == 200  # only the abuser


def test_429s_outside_the_ban_window_do_not_ban(build: Build, clock: FakeClock) -> None:
    app, _ = build(**ABUSE, report_rate_limited=True)
    client = app.test_client()

    assert statuses(client, 2) == [200, 429]  # report at 1000
    clock.advance(5)
    assert statuses(client, 1) == [429]  # 1005
    clock.advance(6)
    assert statuses(client, 1) == [429]  # 1011: the one at 1000 has left the window
    clock.advance(1)
    assert statuses(client, 2) == [429, 403]  # 1012: 1005, 1011, 1012 within 10 s


def test_429s_are_not_reports_by_default(build: Build) -> None:
    app, gk = build(**ABUSE)
    client = app.test_client()

    assert statuses(client, 10) == [200] + [429] * 9
    with app.app_context():
        assert gk.bans() == {}


def test_429_reports_are_signalled_and_counted_like_reports(build: Build) -> None:
    app, gk = build(**ABUSE, report_rate_limited=True)
    client = app.test_client()

    with recording(app) as events:
        assert statuses(client, 4) == [200, 429, 429, 429]

    reported = [kwargs for name, kwargs in events if name == "client_reported"]
    assert reported == [
        {"client": IP, "banned_for": None},
        {"client": IP, "banned_for": None},
        {"client": IP, "banned_for": 600},
    ]
    with app.app_context():
        assert gk.stats()["reports"] == 3


@pytest.mark.parametrize(
    ("config", "options", "named"),
    [
        pytest.param({}, {"report_rate_limited": True}, "report_rate_limited", id="option"),
        pytest.param(
            {"GATEKEEPER_REPORT_RATE_LIMITED": True},
            {},
            "GATEKEEPER_REPORT_RATE_LIMITED",
            id="config",
        ),
    ],
)
def test_report_rate_limited_without_ban_rule_fails_at_init(
    build: Build, config: dict[str, Any], options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{named}: True needs a ban_rule"):
        build(config, ban_rule=None, **options)


# --- 3. Manual control ------------------------------------------------------------------


def test_manual_control_in_an_app_context(build: Build, clock: FakeClock) -> None:
    app, gk = build()
    client = app.test_client()

    with app.app_context():
        gk.ban(IP, 30)
        assert gk.banned_for(IP) == 30
        assert gk.bans() == {IP: 30}
    refused = get(client)
    assert refused.status_code == 403
    assert retry_after(refused) == 30

    clock.advance(10)
    with app.app_context():
        assert gk.banned_for(IP) == 20
        gk.ban(OTHER_IP)  # the ban rule's duration
        assert gk.bans() == {IP: 20, OTHER_IP: 600}
        assert gk.unban(IP) is True
        assert gk.unban(IP) is False
        assert gk.banned_for(IP) == 0
        assert gk.bans() == {OTHER_IP: 600}
    assert get(client).status_code == 200
    assert get(client, ip=OTHER_IP).status_code == 403


def test_manual_ban_ends_on_time(build: Build, clock: FakeClock) -> None:
    app, gk = build()
    client = app.test_client()
    with app.app_context():
        gk.ban(IP, 2.5)

    clock.advance(2.4)
    assert retry_after(get(client)) == 1  # 0.1 s rounds up
    with app.app_context():
        assert gk.banned_for(IP) == pytest.approx(0.1)
    clock.advance(0.1)
    assert get(client).status_code == 200
    with app.app_context():
        assert gk.banned_for(IP) == 0
        assert gk.bans() == {}
        assert gk.unban(IP) is False  # it had ended


def test_a_longer_ban_in_force_stands(build: Build) -> None:
    app, gk = build()
    with app.app_context():
        gk.ban(IP, 100)
        gk.ban(IP, 50)
        assert gk.banned_for(IP) == 100
        gk.ban(IP, 200)
        assert gk.banned_for(IP) == 200


def test_manual_ban_beats_specific_standalone_and_excluded_routes(build: Build) -> None:
    app, gk = build()
    client = app.test_client()
    with app.app_context():
        gk.ban(IP, 30)

    assert [get(client, path).status_code for path in ("/", "/burst", "/alone")] == [403] * 3
    assert get(client, method="HEAD").status_code == 403
    assert get(client, "/health").status_code == 200  # bypass beats bans


def test_reset_forgets_counters_on_every_route_reports_and_ban(build: Build) -> None:
    app, gk = build(rate_limit_rules=[{"count": 2, "window": 60}])
    client = app.test_client()
    assert statuses(client, 1, "/burst") == [200]  # global 1, route 1 of 1
    assert statuses(client, 1, "/alone") == [200]  # its own scope only
    assert statuses(client, 2) == [200, 429]  # global 2 of 2
    assert statuses(client, 1, "/burst") == [429]
    with app.app_context():
        assert gk.report(ip=IP) is False
        assert gk.report(ip=IP) is False  # one more bans
        gk.ban(OTHER_IP, 60)
    assert statuses(client, 2, ip=OTHER_IP) == [403, 403]

    with app.app_context():
        gk.reset(IP)
        gk.reset(OTHER_IP)
        assert gk.bans() == {}

    assert statuses(client, 1, "/burst") == [200]  # the route's counter is gone
    assert statuses(client, 1) == [200]  # and the global one
    assert statuses(client, 2, "/alone") == [200, 200]  # and the standalone route's
    assert statuses(client, 1, ip=OTHER_IP) == [200]  # and the ban
    with app.app_context():
        assert [gk.report(ip=IP) for _ in range(3)] == [False, False, True]  # reports gone


@pytest.mark.parametrize(
    ("named", "request_ip", "key"),
    [
        pytest.param("::ffff:10.0.0.7", "10.0.0.7", "10.0.0.7", id="IPv4-mapped -> IPv4"),
        pytest.param("10.0.0.7", "::ffff:10.0.0.7", "10.0.0.7", id="IPv4 -> IPv4-mapped"),
        pytest.param(" 10.0.0.7 ", "10.0.0.7", "10.0.0.7", id="spaces"),
        pytest.param("2001:db8:1:2::1", "2001:db8:1:2:aaaa::5", "2001:db8:1:2::/64", id="IPv6 /64"),
        pytest.param(
            "2001:DB8:1:2:0:0:0:1", "2001:db8:1:2::9", "2001:db8:1:2::/64", id="IPv6 spelling"
        ),
    ],
)
def test_manual_control_normalises_ips_like_requests(
    build: Build, named: str, request_ip: str, key: str
) -> None:
    app, gk = build()
    client = app.test_client()

    with app.app_context():
        gk.ban(named, 60)
        assert gk.bans() == {key: 60}
        assert gk.banned_for(request_ip) == 60
    assert get(client, ip=request_ip).status_code == 403

    with app.app_context():
        assert gk.unban(request_ip) is True
    assert get(client, ip=request_ip).status_code == 200


def test_ipv6_ban_covers_its_64_only(build: Build) -> None:
    app, gk = build()
    client = app.test_client()
    with app.app_context():
        gk.ban("2001:db8:1:2::1", 60)

    assert get(client, ip="2001:db8:1:2:ffff:ffff:ffff:ffff").status_code == 403
    assert get(client, ip="2001:db8:1:3::1").status_code == 200


def test_manual_reset_normalises_ips(build: Build) -> None:
    app, gk = build(rate_limit_rules=[{"count": 1, "window": 60}])
    client = app.test_client()
    assert statuses(client, 2, ip="2001:db8::1") == [200, 429]

    with app.app_context():
        gk.reset("2001:db8::ffff")  # same /64

    assert statuses(client, 2, ip="2001:db8::2") == [200, 429]


def test_unknown_clients_are_no_error(build: Build) -> None:
    app, gk = build()
    with app.app_context():
        assert gk.unban("192.0.2.1") is False
        assert gk.banned_for("192.0.2.1") == 0
        gk.reset("192.0.2.1")
        assert gk.bans() == {}
        assert gk.banned_for("user:42") == 0  # not an IP: a key, used as given
        gk.ban("user:42", 5)
        assert gk.bans() == {"user:42": 5}


@pytest.mark.parametrize(
    ("options", "duration", "error", "match"),
    [
        pytest.param(
            {"ban_rule": None}, None, ConfigError, "give a duration, or configure a ban_rule",
            id="no duration, no ban rule",
        ),
        pytest.param({}, -1, ConfigError, "'duration'.*-1", id="negative"),
        pytest.param({}, 0, ConfigError, "'duration'.*0", id="zero"),
        pytest.param({}, math.inf, ConfigError, "'duration'.*inf", id="infinite"),
        pytest.param({}, "60", ConfigTypeError, "'duration'.*'60'", id="a string"),
    ],
)  # fmt: skip
def test_bad_manual_ban_raises_config_error(
    build: Build, options: dict[str, Any], duration: Any, error: type[Exception], match: str
) -> None:
    app, gk = build(**options)

    with app.app_context(), pytest.raises(error, match=f"^ban\\(\\): .*{match}"):
        gk.ban(IP, duration)
    with app.app_context():
        assert gk.bans() == {}


def test_manual_control_outside_an_app_context_uses_the_constructors_app(build: Build) -> None:
    app, gk = build()

    gk.ban(IP, 30)  # no context at all: the app given to the constructor

    with app.app_context():
        assert gk.bans() == {IP: 30}


def test_manual_control_from_inside_a_view(build: Build) -> None:
    app, _ = build()
    client = app.test_client()
    admin = {"REMOTE_ADDR": ADMIN_IP}

    answer = client.post("/admin/ban", data={"ip": IP, "duration": "45"}, environ_base=admin)
    assert answer.json == {"banned_for": 45, "bans": {IP: 45}}
    refused = get(client)
    assert (refused.status_code, retry_after(refused)) == (403, 45)

    assert client.post("/admin/unban", data={"ip": IP}, environ_base=admin).json == {
        "unbanned": True
    }
    assert client.post("/admin/unban", data={"ip": IP}, environ_base=admin).json == {
        "unbanned": False
    }
    assert get(client).status_code == 200


def test_a_view_can_ban_its_own_client(build: Build) -> None:
    app, gk = build()
    client = app.test_client()

    assert get(client, "/trap").text == "gotcha"
    refused = get(client)

    assert (refused.status_code, retry_after(refused)) == (403, 600)
    with app.app_context():
        assert gk.bans() == {IP: 600}


def test_manual_control_acts_on_the_current_apps_state(clock: FakeClock) -> None:
    gk = GateKeeper(ban_rule={"count": 3, "window": 10, "duration": 600})
    one, two = Flask("one"), Flask("two")
    for app in (one, two):
        app.config["GATEKEEPER_STORAGE_URI"] = "memory://"
        gk.init_app(app)
        app.add_url_rule("/", "index", lambda: "hello")

    with one.app_context():
        gk.ban(IP, 30)
    with two.app_context():
        assert gk.bans() == {}
    with one.app_context():
        assert gk.banned_for(IP) == pytest.approx(30, abs=1)  # real clock: memory://

    assert get(one.test_client()).status_code == 403
    assert get(two.test_client()).status_code == 200


# --- 4. Signals ---------------------------------------------------------------------------


def test_signals_of_reports_bans_refusals_and_unbans(build: Build, clock: FakeClock) -> None:
    app, gk = build()
    client = app.test_client()

    with recording(app) as events:
        assert [bad_login(client).text for _ in range(3)] == ["bad password"] * 2 + ["banned"]
        clock.advance(100)
        get(client)
        with app.app_context():
            gk.unban(IP)
            gk.unban(IP)  # not banned: no signal

    assert events == [
        ("client_reported", {"client": IP, "banned_for": None}),
        ("client_reported", {"client": IP, "banned_for": None}),
        ("client_reported", {"client": IP, "banned_for": 600}),
        ("client_banned", {"client": IP, "duration": 600, "reason": "reports"}),
        ("request_banned", {"client": IP, "retry_after": 500.0, "dry_run": False}),
        ("client_unbanned", {"client": IP}),
    ]


def test_request_rate_limited_signal(build: Build, clock: FakeClock) -> None:
    app, _ = build(rate_limit_rules=[{"count": 20, "window": 1}, {"count": 2, "window": 10}])
    client = app.test_client()

    with recording(app) as events:
        assert statuses(client, 2) == [200, 200]  # admitted: no signal
        clock.advance(2.5)
        assert statuses(client, 1) == [429]
        assert statuses(client, 1, "/burst", OTHER_IP) == [200]
        assert statuses(client, 1, "/burst", OTHER_IP) == [429]

    assert events == [
        (
            "request_rate_limited",
            {"client": IP, "rule": Rule(2, 10), "retry_after": 7.5, "dry_run": False},
        ),
        (
            "request_rate_limited",
            {"client": OTHER_IP, "rule": Rule(1, 2), "retry_after": 2.0, "dry_run": False},
        ),
    ]


def test_manual_ban_signal(build: Build) -> None:
    app, gk = build()

    with recording(app) as events, app.app_context():
        gk.ban("::ffff:10.0.0.7", 30)
        gk.ban("10.0.0.8")
        gk.reset("10.0.0.8")  # ends an active ban: signalled as an unban
        gk.reset("10.0.0.9")  # nothing to end: no signal

    assert events == [
        ("client_banned", {"client": "10.0.0.7", "duration": 30, "reason": "manual"}),
        ("client_banned", {"client": "10.0.0.8", "duration": 600, "reason": "manual"}),
        ("client_unbanned", {"client": "10.0.0.8"}),
    ]


def test_report_outside_a_request_signals(build: Build) -> None:
    app, gk = build(ban_rule={"count": 1, "window": 10, "duration": 60})

    with recording(app) as events, app.app_context():
        assert gk.report(ip="2001:db8::1") is True

    assert events == [
        ("client_reported", {"client": "2001:db8::/64", "banned_for": 60}),
        ("client_banned", {"client": "2001:db8::/64", "duration": 60, "reason": "reports"}),
    ]


def test_deny_list_refusal_signal_has_no_retry_after(build: Build) -> None:
    app, _ = build(denylist=["10.9.9.0/24"])
    client = app.test_client()

    with recording(app) as events:
        refused = get(client, ip="10.9.9.9")

    assert refused.status_code == 403
    assert "Retry-After" not in refused.headers
    assert events == [
        ("request_banned", {"client": "10.9.9.9", "retry_after": None, "dry_run": False})
    ]


def test_storage_error_signal(
    build: Build, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outage, "RETRY_INTERVAL", 0.0)  # every call tries the storage
    storage = FlakyStorage(clock=clock)
    app, _ = build(storage=storage)
    client = app.test_client()
    storage.failing = True

    with recording(app) as events:
        assert get(client).status_code == 200  # fail open
        assert bad_login(client).text == "bad password"  # its hit and its report fail

    assert len(storage.errors) == 3
    assert events == [("storage_error", {"error": error}) for error in storage.errors]
    assert all(kwargs["error"] is error for (_, kwargs), error in zip(events, storage.errors))


def test_signals_carry_their_own_app_as_sender(clock: FakeClock) -> None:
    one, gk_one = make_app(clock)
    two, gk_two = make_app(FakeClock())

    with recording(one) as events_one, recording(two) as events_two:
        with one.app_context():
            gk_one.ban(IP, 10)
        with two.app_context():
            gk_two.ban(OTHER_IP, 20)

    assert events_one == [("client_banned", {"client": IP, "duration": 10, "reason": "manual"})]
    assert events_two == [
        ("client_banned", {"client": OTHER_IP, "duration": 20, "reason": "manual"})
    ]


def test_admitted_requests_send_no_signal(build: Build) -> None:
    app, _ = build(headers="both")
    client = app.test_client()

    with recording(app) as events:
        for path in ("/", "/burst", "/alone", "/health"):
            assert get(client, path).status_code == 200
        assert bad_login(client).text == "bad password"  # only the report

    assert events == [("client_reported", {"client": IP, "banned_for": None})]


# --- 5. Logging and storage outages -------------------------------------------------------


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """``caplog`` recording the ``flask_gatekeeper`` logger from DEBUG up."""
    caplog.set_level(logging.DEBUG, logger="flask_gatekeeper")
    return caplog


def test_bans_and_unbans_log_at_info(
    build: Build, clock: FakeClock, logs: pytest.LogCaptureFixture
) -> None:
    app, gk = build()
    client = app.test_client()
    logs.clear()

    assert [bad_login(client).text for _ in range(3)] == ["bad password"] * 2 + ["banned"]
    get(client)
    with app.app_context():
        gk.unban(IP)
        gk.ban("::ffff:10.0.0.7", 2.5)
        gk.unban("10.0.0.8")  # was not banned: nothing to log

    assert gatekeeper_logs(logs) == [
        ("INFO", f"banned {IP} for 600s (reports)"),
        ("INFO", f"unbanned {IP}"),
        ("INFO", "banned 10.0.0.7 for 2.5s (manual)"),
    ]


def test_admitted_requests_log_nothing(build: Build, logs: pytest.LogCaptureFixture) -> None:
    app, _ = build(headers="both")
    client = app.test_client()
    logs.clear()

    for path in ("/", "/burst", "/alone", "/health", "/"):
        assert get(client, path).status_code == 200
    assert get(client, method="HEAD").status_code == 200

    assert gatekeeper_logs(logs) == []


def test_one_warning_per_storage_outage(
    build: Build,
    clock: FakeClock,
    logs: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outage, "RETRY_INTERVAL", 0.0)  # every request tries the storage
    storage = FlakyStorage(clock=clock)
    app, gk = build(storage=storage)
    client = app.test_client()
    logs.clear()

    storage.failing = True
    assert statuses(client, 3) == [200, 200, 200]  # fail open
    assert storage.calls == 3
    warnings = [entry for entry in gatekeeper_logs(logs) if entry[0] == "WARNING"]
    assert warnings == [
        (
            "WARNING",
            "storage unavailable, admitting requests until it answers again: "
            "connection refused (1)",
        )
    ]
    assert gatekeeper_logs(logs) == warnings  # the other two failures are silent

    storage.failing = False
    assert statuses(client, 2) == [200, 200]
    storage.failing = True
    assert statuses(client, 2) == [200, 200]  # a second outage

    assert gatekeeper_logs(logs) == [
        *warnings,
        ("INFO", "storage available again"),
        (
            "WARNING",
            "storage unavailable, admitting requests until it answers again: "
            "connection refused (4)",
        ),
    ]
    with app.app_context():
        assert gk.stats()["storage_errors"] == 5


def test_storage_is_left_alone_for_retry_interval_after_a_failure(
    build: Build, clock: FakeClock
) -> None:
    storage = FlakyStorage(clock=clock)
    app, gk = build(storage=storage)
    client = app.test_client()
    storage.failing = True

    assert statuses(client, 3) == [200, 200, 200]

    assert storage.calls == 1  # the two next requests came within RETRY_INTERVAL (1 s)
    with app.app_context():
        assert gk.stats()["storage_errors"] == 1


def test_fail_closed_refuses_with_503(
    build: Build, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outage, "RETRY_INTERVAL", 0.0)
    storage = FlakyStorage(clock=clock)
    app, _ = build(storage=storage, fail_open=False)
    client = app.test_client()
    storage.failing = True

    refused = get(client)

    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert refused.text == "rate limiter unavailable, retry in 1s\n"
    assert get(client, "/health").status_code == 200  # bypass never asks the storage
    storage.failing = False
    assert get(client).status_code == 200


def test_fail_closed_503_as_problem_json(
    build: Build, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outage, "RETRY_INTERVAL", 0.0)
    storage = FlakyStorage(clock=clock)
    app, _ = build(storage=storage, fail_open=False)
    storage.failing = True

    refused = get(app.test_client(), accept="application/json")

    assert refused.status_code == 503
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert json.loads(refused.text) == {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "rate limiter unavailable, retry in 1s",
        "retry_after": 1,
    }


# --- 6. RateLimit header fields -----------------------------------------------------------

Params = dict[str, Union[int, float]]
SfList = list[tuple[str, Params]]

_SF_KEY = re.compile(r"[a-z*][a-z0-9_.*-]*")
_SF_NUMBER = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")


def parse_sf_list(text: str) -> SfList:
    """A Structured Field list (RFC 8941) whose items are strings with parameters whose
    values are integers or decimals; raises ValueError for anything else."""
    items: SfList = []
    pos = 0

    def skip(chars: str) -> None:
        nonlocal pos
        while pos < len(text) and text[pos] in chars:
            pos += 1

    while True:
        if not text.startswith('"', pos):
            raise ValueError(f"expected a string at {pos} in {text!r}")
        pos += 1
        chars = []
        while True:
            if pos >= len(text):
                raise ValueError(f"unterminated string in {text!r}")
            char = text[pos]
            if char == "\\":
                if text[pos + 1 : pos + 2] not in ('"', "\\"):
                    raise ValueError(f"bad escape at {pos} in {text!r}")
                chars.append(text[pos + 1])
                pos += 2
                continue
            pos += 1
            if char == '"':
                break
            if not " " <= char <= "~":
                raise ValueError(f"bad character {char!r} in a string in {text!r}")
            chars.append(char)
        params: Params = {}
        while text.startswith(";", pos):
            pos += 1
            skip(" ")
            key = _SF_KEY.match(text, pos)
            if key is None or not text.startswith("=", key.end()):
                raise ValueError(f"expected key=value at {pos} in {text!r}")
            number = _SF_NUMBER.match(text, key.end() + 1)
            if number is None:
                raise ValueError(f"expected a number at {key.end() + 1} in {text!r}")
            sign, whole, fraction = number.groups()
            if fraction is None:
                if len(whole) > 15:
                    raise ValueError(f"integer too long in {text!r}")
                params[key.group()] = int(sign + whole)
            else:
                if len(whole) > 12 or len(fraction) > 3:
                    raise ValueError(f"bad decimal {number.group()!r} in {text!r}")
                params[key.group()] = float(number.group())
            pos = number.end()
        items.append(("".join(chars), params))
        skip(" \t")
        if pos == len(text):
            return items
        if not text.startswith(",", pos):
            raise ValueError(f"expected ',' at {pos} in {text!r}")
        pos += 1
        skip(" \t")
        if pos == len(text):
            raise ValueError(f"trailing comma in {text!r}")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ('"a";q=1;w=2', [("a", {"q": 1, "w": 2})]),
        ('"a";w=0.5, "b\\"c";r=-3', [("a", {"w": 0.5}), ('b"c', {"r": -3})]),
        ('"a" ,\t"b"', [("a", {}), ("b", {})]),
    ],
)
def test_sf_list_parser_reads(text: str, parsed: SfList) -> None:
    assert parse_sf_list(text) == parsed


@pytest.mark.parametrize(
    "text", ["", "a", '"a', '"a";w=1.', '"a";w=1.0004', '"a";W=1', '"a";w', '"a",', '"a" "b"']
)
def test_sf_list_parser_rejects(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  # the parser raises only ValueError
        parse_sf_list(text)


def rate_limit(response: TestResponse) -> tuple[str, Params]:
    """The one item of the ``RateLimit`` field."""
    (item,) = parse_sf_list(response.headers["RateLimit"])
    return item


def policy(response: TestResponse) -> SfList:
    return parse_sf_list(response.headers["RateLimit-Policy"])


RATE_LIMIT_FIELDS = (
    "RateLimit",
    "RateLimit-Policy",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
)


def rate_limit_fields(response: TestResponse) -> set[str]:
    return {name for name in RATE_LIMIT_FIELDS if name in response.headers}


TWO_RULES: list[dict[str, Any]] = [{"count": 3, "window": 10}, {"count": 5, "window": 60}]


def test_ratelimit_fields_over_a_sequence_of_requests(build: Build, clock: FakeClock) -> None:
    app, _ = build(headers=True, rate_limit_rules=TWO_RULES)
    client = app.test_client()
    # (time, status, RateLimit item): the rule with the fewest requests left, then the
    # one with the longest wait; t is rounded up.
    script = [
        (1000.0, 200, ("3-per-10s", {"r": 2, "t": 10})),
        (1002.5, 200, ("3-per-10s", {"r": 1, "t": 8})),  # oldest counts until 1010
        (1004.0, 200, ("3-per-10s", {"r": 0, "t": 6})),
        (1005.0, 429, ("3-per-10s", {"r": 0, "t": 5})),
        (1010.0, 200, ("3-per-10s", {"r": 0, "t": 3})),  # 1000 has left: 1002.5 is oldest
        (1012.5, 200, ("5-per-60s", {"r": 0, "t": 48})),  # both full: the longer wait
        (1012.5, 429, ("5-per-60s", {"r": 0, "t": 48})),
    ]
    seen = []
    for now, _, _ in script:
        clock.set(now)
        response = get(client)
        assert policy(response) == [
            ("3-per-10s", {"q": 3, "w": 10}),
            ("5-per-60s", {"q": 5, "w": 60}),
        ]
        assert "X-RateLimit-Limit" not in response.headers  # legacy fields are opt-in
        if response.status_code == 429:
            assert response.headers["Retry-After"] == str(rate_limit(response)[1]["t"])
        seen.append((now, response.status_code, rate_limit(response)))

    assert seen == script


def test_ratelimit_fields_of_a_specific_route(build: Build, clock: FakeClock) -> None:
    app, _ = build(headers=True, rate_limit_rules=TWO_RULES)
    client = app.test_client()

    first = get(client, "/burst")
    clock.advance(0.5)
    second = get(client, "/burst")

    expected_policy = [
        ("3-per-10s", {"q": 3, "w": 10}),
        ("5-per-60s", {"q": 5, "w": 60}),
        ("route-1-per-2s", {"q": 1, "w": 2}),
    ]
    assert (first.status_code, policy(first), rate_limit(first)) == (
        200,
        expected_policy,
        ("route-1-per-2s", {"r": 0, "t": 2}),
    )
    assert (second.status_code, policy(second), rate_limit(second)) == (
        429,
        expected_policy,
        ("route-1-per-2s", {"r": 0, "t": 2}),  # 1.5 s, rounded up
    )
    assert retry_after(second) == 2
    # the global rules counted the route's admitted request only
    assert rate_limit(get(client)) == ("3-per-10s", {"r": 1, "t": 10})


def test_ratelimit_fields_of_a_standalone_route(build: Build) -> None:
    app, _ = build(headers=True, rate_limit_rules=TWO_RULES)
    client = app.test_client()

    responses = [get(client, "/alone") for _ in range(3)]

    assert [response.status_code for response in responses] == [200, 200, 429]
    assert [policy(response) for response in responses] == [
        [("route-2-per-60s", {"q": 2, "w": 60})]
    ] * 3
    assert [rate_limit(response) for response in responses] == [
        ("route-2-per-60s", {"r": 1, "t": 60}),
        ("route-2-per-60s", {"r": 0, "t": 60}),
        ("route-2-per-60s", {"r": 0, "t": 60}),
    ]


def test_ratelimit_policy_with_a_fractional_window(build: Build, clock: FakeClock) -> None:
    app, _ = build(headers=True, rate_limit_rules=[{"count": 2, "window": 0.25}])
    client = app.test_client()

    response = get(client)

    assert policy(response) == [("2-per-0.25s", {"q": 2, "w": 0.25})]
    assert rate_limit(response) == ("2-per-0.25s", {"r": 1, "t": 1})


def test_ratelimit_policy_is_valid_for_any_window(build: Build) -> None:
    app, _ = build(headers=True, rate_limit_rules=[{"count": 2, "window": 1.0004}])

    response = get(app.test_client())

    assert policy(response) == [("2-per-1.0004s", {"q": 2, "w": 1})]


def test_legacy_fields(build: Build, clock: FakeClock) -> None:
    app, _ = build(headers="legacy", rate_limit_rules=TWO_RULES)
    client = app.test_client()

    for now, status, remaining, reset in [
        (1000.0, 200, 2, 10),
        (1002.5, 200, 1, 8),
        (1002.5, 200, 0, 8),
        (1003.0, 429, 0, 7),
    ]:
        clock.set(now)
        response = get(client)
        assert response.status_code == status
        assert rate_limit_fields(response) == {
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
        }
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert response.headers["X-RateLimit-Remaining"] == str(remaining)
        reset_at = int(response.headers["X-RateLimit-Reset"])  # a Unix time
        assert abs(reset_at - (time.time() + reset)) <= 2


@pytest.mark.parametrize(
    ("config", "options", "fields"),
    [
        pytest.param({}, {}, set(), id="off by default"),
        pytest.param({}, {"headers": False}, set(), id="False"),
        pytest.param({}, {"headers": True}, {"RateLimit", "RateLimit-Policy"}, id="True"),
        pytest.param({}, {"headers": "ietf"}, {"RateLimit", "RateLimit-Policy"}, id="ietf"),
        pytest.param({}, {"headers": "legacy"}, set(RATE_LIMIT_FIELDS[2:]), id="legacy"),
        pytest.param({}, {"headers": "both"}, set(RATE_LIMIT_FIELDS), id="both"),
        pytest.param({"GATEKEEPER_HEADERS": True}, {}, set(RATE_LIMIT_FIELDS[:2]), id="config"),
        pytest.param({"GATEKEEPER_HEADERS": "both"}, {}, set(RATE_LIMIT_FIELDS), id="config both"),
        pytest.param(
            {"GATEKEEPER_HEADERS": "both"}, {"headers": False}, set(), id="constructor wins"
        ),
    ],
)
def test_headers_option_picks_the_fields(
    build: Build, config: dict[str, Any], options: dict[str, Any], fields: set[str]
) -> None:
    app, _ = build(config, rate_limit_rules=[{"count": 1, "window": 10}], **options)
    client = app.test_client()

    assert rate_limit_fields(get(client)) == fields
    assert rate_limit_fields(get(client)) == fields  # 429 too


def test_no_fields_where_nothing_is_limited(build: Build) -> None:
    app, gk = build(headers="both")
    client = app.test_client()

    assert rate_limit_fields(get(client, "/health")) == set()  # bypassed
    head = get(client, method="HEAD")  # excluded method
    assert head.status_code == 200
    assert rate_limit_fields(head) == set()
    with app.app_context():
        gk.ban(OTHER_IP, 10)
    banned = get(client, ip=OTHER_IP)
    assert banned.status_code == 403
    assert rate_limit_fields(banned) == set()


def test_no_fields_without_rules(build: Build) -> None:
    app, _ = build(headers="both", rate_limit_rules=None)
    client = app.test_client()

    assert rate_limit_fields(get(client)) == set()
    assert rate_limit_fields(get(client, "/burst")) == {*RATE_LIMIT_FIELDS}


@pytest.mark.parametrize(
    ("config", "options", "error", "named"),
    [
        pytest.param({}, {"headers": "yes"}, ConfigError, "headers", id="yes"),
        pytest.param({}, {"headers": "IETF"}, ConfigError, "headers", id="case"),
        pytest.param({}, {"headers": 3}, ConfigTypeError, "headers", id="3"),
        pytest.param({}, {"headers": 1}, ConfigTypeError, "headers", id="1"),
        pytest.param(
            {"GATEKEEPER_HEADERS": "yes"}, {}, ConfigError, "GATEKEEPER_HEADERS", id="config"
        ),
    ],
)
def test_bad_headers_option_fails_at_init(
    build: Build,
    config: dict[str, Any],
    options: dict[str, Any],
    error: type[Exception],
    named: str,
) -> None:
    with pytest.raises(error, match=f"^{named}: expected True, False or one of"):
        build(config, **options)


# --- 7. problem+json refusals -------------------------------------------------------------

JSON_ACCEPTS = [
    "application/json",
    "application/problem+json",
    "text/plain;q=0.5, application/json",
]
TEXT_ACCEPTS: list[Optional[str]] = [
    None,
    "*/*",
    "text/html",
    "text/plain",
    "text/html, application/json;q=0.1, */*;q=0.5",
]


@pytest.mark.parametrize("accept", JSON_ACCEPTS)
def test_429_as_problem_json(build: Build, accept: str) -> None:
    app, _ = build()
    client = app.test_client()
    assert statuses(client, 20) == [200] * 20

    refused = get(client, accept=accept)

    assert refused.status_code == 429
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert refused.headers["Retry-After"] == "1"
    body = json.loads(refused.text)
    assert body == {
        "type": "about:blank",
        "title": "Too Many Requests",
        "status": 429,
        "detail": "ip 10.0.0.1 rate limited for 1s (over 20 requests in a 1s window)",
        "retry_after": 1,
        "violated-policies": ["20-per-1s"],
    }
    assert type(body["retry_after"]) is int


def test_429_problem_names_the_routes_own_rule(build: Build, clock: FakeClock) -> None:
    app, _ = build()
    client = app.test_client()
    assert get(client, "/burst").status_code == 200
    clock.advance(0.25)

    refused = get(client, "/burst", accept="application/json")

    assert refused.status_code == 429
    assert json.loads(refused.text) == {
        "type": "about:blank",
        "title": "Too Many Requests",
        "status": 429,
        "detail": "ip 10.0.0.1 rate limited for 2s (over 1 request in a 2s window)",
        "retry_after": 2,
        "violated-policies": ["route-1-per-2s"],
    }


@pytest.mark.parametrize("accept", JSON_ACCEPTS)
def test_403_as_problem_json(build: Build, clock: FakeClock, accept: str) -> None:
    app, _ = build()
    client = app.test_client()
    assert [bad_login(client).text for _ in range(3)][-1] == "banned"
    clock.advance(0.5)

    refused = get(client, accept=accept)

    assert refused.status_code == 403
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert refused.headers["Retry-After"] == "600"
    assert json.loads(refused.text) == {
        "type": "about:blank",
        "title": "Forbidden",
        "status": 403,
        "detail": "ip 10.0.0.1 banned for 600s (reported 3 times in a 10s window)",
        "retry_after": 600,
    }


def test_deny_list_403_as_problem_json(build: Build) -> None:
    app, _ = build(denylist=["10.9.9.9"])

    refused = get(app.test_client(), ip="10.9.9.9", accept="application/json")

    assert refused.status_code == 403
    assert json.loads(refused.text) == {
        "type": "about:blank",
        "title": "Forbidden",
        "status": 403,
        "detail": "ip 10.9.9.9 denied",
    }


@pytest.mark.parametrize("accept", TEXT_ACCEPTS)
def test_refusals_are_plain_text_unless_json_is_preferred(
    build: Build, accept: Optional[str]
) -> None:
    app, gk = build()
    client = app.test_client()
    assert statuses(client, 20) == [200] * 20
    with app.app_context():
        gk.ban(OTHER_IP, 30)

    limited = get(client, accept=accept)
    banned = get(client, ip=OTHER_IP, accept=accept)

    assert limited.status_code == 429
    assert limited.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert limited.text == "ip 10.0.0.1 rate limited for 1s (over 20 requests in a 1s window)\n"
    assert banned.status_code == 403
    assert banned.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert banned.text == "ip 10.0.0.2 banned for 30s\n"


# --- 8. Dry run ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "options"),
    [
        pytest.param({}, {"dry_run": True}, id="option"),
        pytest.param({"GATEKEEPER_DRY_RUN": True}, {}, id="config"),
    ],
)
def test_dry_run_refuses_nothing_but_signals_counts_and_logs(
    build: Build,
    clock: FakeClock,
    logs: pytest.LogCaptureFixture,
    config: dict[str, Any],
    options: dict[str, Any],
) -> None:
    app, gk = build(config, rate_limit_rules=[{"count": 1, "window": 10}], **options)
    client = app.test_client()
    logs.clear()

    with recording(app) as events:
        assert statuses(client, 1) == [200]
        clock.advance(4)
        assert statuses(client, 2) == [200, 200]  # over the limit
        with app.app_context():
            gk.ban(OTHER_IP, 30)
        assert statuses(client, 1, ip=OTHER_IP) == [200]  # banned

    assert events == [
        (
            "request_rate_limited",
            {"client": IP, "rule": Rule(1, 10), "retry_after": 6.0, "dry_run": True},
        ),
        (
            "request_rate_limited",
            {"client": IP, "rule": Rule(1, 10), "retry_after": 6.0, "dry_run": True},
        ),
        ("client_banned", {"client": OTHER_IP, "duration": 30, "reason": "manual"}),
        ("request_banned", {"client": OTHER_IP, "retry_after": 30.0, "dry_run": True}),
    ]
    would_refuse_limited = (
        "INFO",
        "dry run, would refuse GET /: ip 10.0.0.1 rate limited for 6s "
        "(over 1 request in a 10s window)",
    )
    assert gatekeeper_logs(logs) == [
        would_refuse_limited,
        would_refuse_limited,
        ("INFO", "banned 10.0.0.2 for 30s (manual)"),
        ("INFO", "dry run, would refuse GET /: ip 10.0.0.2 banned for 30s"),
    ]
    with app.app_context():
        stats = gk.stats()
    assert (stats["admitted"], stats["rate_limited"], stats["banned"]) == (1, 2, 1)


def test_dry_run_bans_on_reports_without_refusing(build: Build) -> None:
    app, gk = build(dry_run=True)
    client = app.test_client()

    with recording(app) as events:
        assert [bad_login(client).text for _ in range(3)][-1] == "banned"
        assert get(client).status_code == 200

    assert events[-2:] == [
        ("client_banned", {"client": IP, "duration": 600, "reason": "reports"}),
        ("request_banned", {"client": IP, "retry_after": 600.0, "dry_run": True}),
    ]
    with app.app_context():
        assert gk.banned_for(IP) == 600


def test_dry_run_off_refuses(build: Build) -> None:
    app, _ = build(rate_limit_rules=[{"count": 1, "window": 10}], dry_run=False)
    client = app.test_client()

    with recording(app) as events:
        assert statuses(client, 2) == [200, 429]

    assert events[0][1]["dry_run"] is False


# --- 9. Stats -----------------------------------------------------------------------------


def test_stats_after_a_scripted_sequence(build: Build, clock: FakeClock) -> None:
    app, gk = build(
        rate_limit_rules=[{"count": 2, "window": 10}],
        ban_rule={"count": 2, "window": 10, "duration": 60},
    )
    client = app.test_client()
    with app.app_context():
        assert gk.stats() == {
            "admitted": 0,
            "rate_limited": 0,
            "banned": 0,
            "reports": 0,
            "bans": 0,
            "storage_errors": 0,
            "tracked_clients": 0,
        }

    assert statuses(client, 3) == [200, 200, 429]  # IP: global log
    assert [bad_login(client, "10.0.0.3").text for _ in range(2)] == ["bad password", "banned"]
    assert statuses(client, 2, ip="10.0.0.3") == [403, 403]
    assert statuses(client, 1, "/burst", OTHER_IP) == [200]  # global + route logs
    assert statuses(client, 1, "/health") == [200]  # bypassed: not counted at all
    assert get(client, ip=OTHER_IP, method="HEAD").status_code == 200  # excluded, admitted
    assert bad_login(client, "10.0.0.4").text == "bad password"  # a report log
    with app.app_context():
        gk.ban("10.0.0.9", 30)

    with app.app_context():
        assert gk.stats() == {
            "admitted": 7,
            "rate_limited": 1,
            "banned": 2,
            "reports": 3,
            "bans": 2,
            "storage_errors": 0,
            # IP, 10.0.0.3, OTHER_IP, OTHER_IP on /burst, 10.0.0.4 and its reports
            "tracked_clients": 6,
        }
        gk.reset(OTHER_IP)
        gk.reset("10.0.0.4")
        assert gk.stats()["tracked_clients"] == 2

    clock.advance(60)  # time passing changes no counter
    with app.app_context():
        assert gk.stats()["banned"] == 2


def test_stats_are_per_app(clock: FakeClock) -> None:
    one, gk_one = make_app(clock, rate_limit_rules=[{"count": 1, "window": 10}])
    two, gk_two = make_app(clock, rate_limit_rules=[{"count": 1, "window": 10}])

    assert statuses(one.test_client(), 2) == [200, 429]

    with one.app_context():
        assert (gk_one.stats()["admitted"], gk_one.stats()["rate_limited"]) == (1, 1)
    with two.app_context():
        assert (gk_two.stats()["admitted"], gk_two.stats()["rate_limited"]) == (0, 0)
        assert gk_two.stats()["tracked_clients"] == 0


def test_stats_count_storage_errors_and_leave_tracked_clients_unknown(
    build: Build, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outage, "RETRY_INTERVAL", 0.0)
    storage = FlakyStorage(clock=clock)
    app, gk = build(storage=storage)
    client = app.test_client()
    assert statuses(client, 1) == [200]
    storage.failing = True

    assert statuses(client, 2) == [200, 200]
    assert bad_login(client).status_code == 401

    with app.app_context():
        stats = gk.stats()
    assert stats["storage_errors"] == 4  # two requests, one request and its report
    assert stats["reports"] == 0  # the report never reached the storage
    assert stats["tracked_clients"] is None  # not a MemoryStorage: unknown


def test_one_probe_a_second_while_the_storage_is_down(clock: FakeClock) -> None:
    """Concurrent requests do not all wait on a storage that is down: one tries it."""
    import threading

    from flask_gatekeeper.outage import OutageGuard

    moment = [0.0]
    guard = OutageGuard(fail_open=True, clock=lambda: moment[0])
    guard.failed(RuntimeError("down"))
    moment[0] = 5.0  # due for another try
    allowed: list[bool] = []
    barrier = threading.Barrier(16)

    def ask() -> None:
        barrier.wait()
        allowed.append(guard.may_probe())

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(True) == 1


def test_a_call_from_before_an_outage_does_not_end_it() -> None:
    from flask_gatekeeper.outage import OutageGuard

    guard = OutageGuard(fail_open=True)
    started = guard.outages  # a slow call starts...
    guard.failed(RuntimeError("down"))  # ...another one fails meanwhile...
    guard.recovered(started)  # ...and the slow one's late success proves nothing
    assert guard.down
    guard.recovered(guard.outages)
    assert not guard.down


def test_report_with_an_allowlisted_ip_does_nothing(build: Build) -> None:
    app, gk = build(allowlist=["10.0.0.0/8"], ban_rule={"count": 1, "window": 10, "duration": 60})
    with app.app_context():
        assert gk.report(ip="10.1.2.3") is False
        assert gk.bans() == {}
