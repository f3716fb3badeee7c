"""The blinker signals and the ``flask_gatekeeper`` log records of reports, bans, refusals
and unbans (issue 5).

Apps come from the ``build`` fixture (``conftest.py``), on a ``FakeClock``: every number
below is exact.
"""

from __future__ import annotations

import pytest

from flask_gatekeeper import MemoryStorage, Rule
from flask_gatekeeper.decision import BanDetail
from flask_gatekeeper.testing import FakeClock
from support import (
    IP,
    OTHER_IP,
    AppFactory,
    bad_login,
    gatekeeper_logs,
    get,
    probed_storage,
    recording,
    statuses,
)

# --- Signals ------------------------------------------------------------------------------


def test_signals_of_reports_bans_refusals_and_unbans(build: AppFactory, clock: FakeClock) -> None:
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
        ("client_reported", {"client": IP, "banned_for": None, "offence": "default"}),
        ("client_reported", {"client": IP, "banned_for": None, "offence": "default"}),
        ("client_reported", {"client": IP, "banned_for": 600, "offence": "default"}),
        (
            "client_banned",
            {
                "client": IP,
                "duration": 600,
                "reason": "reports",
                "detail": BanDetail(600, 0, "reports", 1, "default"),
                "offence": "default",
            },
        ),
        ("request_banned", {"client": IP, "retry_after": 500.0, "dry_run": False}),
        ("client_unbanned", {"client": IP}),
    ]


def test_request_rate_limited_signal(build: AppFactory, clock: FakeClock) -> None:
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


def test_manual_ban_signal(build: AppFactory) -> None:
    app, gk = build()

    with recording(app) as events, app.app_context():
        gk.ban("::ffff:10.0.0.7", 30)
        gk.ban("10.0.0.8")
        gk.reset("10.0.0.8")  # ends an active ban: signalled as an unban
        gk.reset("10.0.0.9")  # nothing to end: no signal

    assert events == [
        (
            "client_banned",
            {
                "client": "10.0.0.7",
                "duration": 30,
                "reason": "manual",
                "detail": BanDetail(30, 0, "manual", 0),
                "offence": None,
            },
        ),
        (
            "client_banned",
            {
                "client": "10.0.0.8",
                "duration": 600,
                "reason": "manual",
                "detail": BanDetail(600, 0, "manual", 0),
                "offence": None,
            },
        ),
        ("client_unbanned", {"client": "10.0.0.8"}),
    ]


def test_report_outside_a_request_signals(build: AppFactory) -> None:
    app, gk = build(ban_rule={"count": 1, "window": 10, "duration": 60})

    with recording(app) as events, app.app_context():
        assert gk.report(ip="2001:db8::1") is True

    assert events == [
        ("client_reported", {"client": "2001:db8::/64", "banned_for": 60, "offence": "default"}),
        (
            "client_banned",
            {
                "client": "2001:db8::/64",
                "duration": 60,
                "reason": "reports",
                "detail": BanDetail(60, 0, "reports", 1, "default"),
                "offence": "default",
            },
        ),
    ]


def test_deny_list_refusal_signal_has_no_retry_after(build: AppFactory) -> None:
    app, _ = build(denylist=["10.9.9.0/24"])
    client = app.test_client()

    with recording(app) as events:
        refused = get(client, ip="10.9.9.9")

    assert refused.status_code == 403
    assert "Retry-After" not in refused.headers
    assert events == [
        ("request_banned", {"client": "10.9.9.9", "retry_after": None, "dry_run": False})
    ]


def test_storage_error_signal(build: AppFactory, clock: FakeClock) -> None:
    storage = probed_storage(clock)  # every call tries the storage while it fails
    app, _ = build(storage=storage)
    client = app.test_client()
    storage.failing = True

    with recording(app) as events:
        assert get(client).status_code == 200  # fail open
        assert bad_login(client).text == "bad password"  # its hit and its report fail

    assert len(storage.errors) == 3
    assert events == [("storage_error", {"error": error}) for error in storage.errors]
    assert all(kwargs["error"] is error for (_, kwargs), error in zip(events, storage.errors))


def test_signals_carry_their_own_app_as_sender(build: AppFactory) -> None:
    one, gk_one = build()
    two, gk_two = build(storage=MemoryStorage(clock=FakeClock()))

    with recording(one) as events_one, recording(two) as events_two:
        with one.app_context():
            gk_one.ban(IP, 10)
        with two.app_context():
            gk_two.ban(OTHER_IP, 20)

    assert events_one == [
        (
            "client_banned",
            {
                "client": IP,
                "duration": 10,
                "reason": "manual",
                "detail": BanDetail(10, 0, "manual", 0),
                "offence": None,
            },
        )
    ]
    assert events_two == [
        (
            "client_banned",
            {
                "client": OTHER_IP,
                "duration": 20,
                "reason": "manual",
                "detail": BanDetail(20, 0, "manual", 0),
                "offence": None,
            },
        )
    ]


def test_admitted_requests_send_no_signal(build: AppFactory) -> None:
    app, _ = build(headers="both")
    client = app.test_client()

    with recording(app) as events:
        for path in ("/", "/burst", "/alone", "/health"):
            assert get(client, path).status_code == 200
        assert bad_login(client).text == "bad password"  # only the report

    assert events == [("client_reported", {"client": IP, "banned_for": None, "offence": "default"})]


# --- Logging ------------------------------------------------------------------------------


def test_bans_and_unbans_log_at_info(
    build: AppFactory, clock: FakeClock, logs: pytest.LogCaptureFixture
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


def test_admitted_requests_log_nothing(build: AppFactory, logs: pytest.LogCaptureFixture) -> None:
    app, _ = build(headers="both")
    client = app.test_client()
    logs.clear()

    for path in ("/", "/burst", "/alone", "/health", "/"):
        assert get(client, path).status_code == 200
    assert get(client, method="HEAD").status_code == 200

    assert gatekeeper_logs(logs) == []
