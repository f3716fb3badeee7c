"""Dry run (count, signal and log, refuse nothing) and ``gk.stats()`` (issue 5).

Apps come from the ``build`` fixture (``conftest.py``), on a ``FakeClock``: every number
below is exact.
"""

from __future__ import annotations

from typing import Any

import pytest

from flask_gatekeeper import Rule
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

# --- Dry run ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "options"),
    [
        pytest.param({}, {"dry_run": True}, id="option"),
        pytest.param({"GATEKEEPER_DRY_RUN": True}, {}, id="config"),
    ],
)
def test_dry_run_refuses_nothing_but_signals_counts_and_logs(
    build: AppFactory,
    clock: FakeClock,
    logs: pytest.LogCaptureFixture,
    config: dict[str, Any],
    options: dict[str, Any],
) -> None:
    app, gk = build(config=config, rate_limit_rules=[{"count": 1, "window": 10}], **options)
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
        (
            "client_banned",
            {
                "client": OTHER_IP,
                "duration": 30,
                "reason": "manual",
                "detail": BanDetail(30, 0, "manual", 0),
                "offence": None,
            },
        ),
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


def test_dry_run_bans_on_reports_without_refusing(build: AppFactory) -> None:
    app, gk = build(dry_run=True)
    client = app.test_client()

    with recording(app) as events:
        assert [bad_login(client).text for _ in range(3)][-1] == "banned"
        assert get(client).status_code == 200

    assert events[-2:] == [
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
        ("request_banned", {"client": IP, "retry_after": 600.0, "dry_run": True}),
    ]
    with app.app_context():
        assert gk.banned_for(IP) == 600


def test_dry_run_off_refuses(build: AppFactory) -> None:
    app, _ = build(rate_limit_rules=[{"count": 1, "window": 10}], dry_run=False)
    client = app.test_client()

    with recording(app) as events:
        assert statuses(client, 2) == [200, 429]

    assert events[0][1]["dry_run"] is False


# --- Stats --------------------------------------------------------------------------------


def test_stats_after_a_scripted_sequence(build: AppFactory, clock: FakeClock) -> None:
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
            "shadow_refused": 0,
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
            "shadow_refused": 0,
            # IP, 10.0.0.3, OTHER_IP, OTHER_IP on /burst, 10.0.0.4 and its reports
            "tracked_clients": 6,
        }
        gk.reset(OTHER_IP)
        gk.reset("10.0.0.4")
        assert gk.stats()["tracked_clients"] == 2

    clock.advance(60)  # time passing changes no counter
    with app.app_context():
        assert gk.stats()["banned"] == 2


def test_stats_are_per_app(build: AppFactory) -> None:
    one, gk_one = build(rate_limit_rules=[{"count": 1, "window": 10}])
    two, gk_two = build(rate_limit_rules=[{"count": 1, "window": 10}])

    assert statuses(one.test_client(), 2) == [200, 429]

    with one.app_context():
        assert (gk_one.stats()["admitted"], gk_one.stats()["rate_limited"]) == (1, 1)
    with two.app_context():
        assert (gk_two.stats()["admitted"], gk_two.stats()["rate_limited"]) == (0, 0)
        assert gk_two.stats()["tracked_clients"] == 0


def test_stats_count_storage_errors_and_leave_tracked_clients_unknown(
    build: AppFactory, clock: FakeClock
) -> None:
    storage = probed_storage(clock)  # every call tries the storage while it fails
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
