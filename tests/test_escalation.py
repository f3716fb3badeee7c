"""Bans that grow: escalation of repeat offenders' bans, and 429s that count as reports
(issue 5).

Apps come from the ``build`` fixture (``conftest.py``), on a ``FakeClock``: every number
below is exact.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from flask_gatekeeper import BanRule, ConfigError, ConfigTypeError
from flask_gatekeeper.decision import BanDetail
from flask_gatekeeper.testing import FakeClock
from support import IP, OTHER_IP, AppFactory, bad_login, get, recording, retry_after, statuses

ESCALATING: dict[str, Any] = {
    "count": 1,
    "window": 10,
    "duration": 60,
    "factor": 2,
    "max_duration": 300,
    "forget_after": 3600,
}
"""Each bad password bans; bans double from 60 s up to 300 s; forgotten after an hour."""


# --- Ban escalation -----------------------------------------------------------------------


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
    build: AppFactory, clock: FakeClock, config: dict[str, Any], options: dict[str, Any]
) -> None:
    app, _ = build(config=config, **options)
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


def test_ban_escalation_with_a_non_integer_factor(build: AppFactory, clock: FakeClock) -> None:
    app, _ = build(ban_rule={"count": 1, "window": 10, "duration": 10, "factor": 1.5})
    client = app.test_client()

    assert [ban_and_measure(client, clock) for _ in range(4)] == [10, 15, 23, 34]  # ceil


def test_banned_for_follows_the_escalated_ban(build: AppFactory, clock: FakeClock) -> None:
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
    build: AppFactory, clock: FakeClock, quiet: float, next_ban: int
) -> None:
    app, _ = build(ban_rule=ESCALATING)
    client = app.test_client()
    assert [ban_and_measure(client, clock) for _ in range(2)] == [60, 120]  # ends now

    clock.advance(quiet)

    assert ban_and_measure(client, clock) == next_ban


def test_quiet_period_counts_from_the_end_of_the_last_ban(
    build: AppFactory, clock: FakeClock
) -> None:
    app, _ = build(ban_rule={**ESCALATING, "forget_after": 100, "max_duration": 10_000})
    client = app.test_client()
    assert bad_login(client).text == "banned"  # 60 s
    clock.advance(60 + 99)  # 99 s after the ban ended: remembered
    assert bad_login(client).text == "banned"
    assert retry_after(get(client)) == 120
    clock.advance(120 + 100)  # 100 s after the second ban ended: forgotten
    assert bad_login(client).text == "banned"
    assert retry_after(get(client)) == 60


def test_without_escalation_keys_every_ban_lasts_duration(
    build: AppFactory, clock: FakeClock
) -> None:
    app, _ = build(ban_rule={"count": 1, "window": 10, "duration": 60})
    client = app.test_client()

    assert [ban_and_measure(client, clock) for _ in range(4)] == [60, 60, 60, 60]


def test_seed_ban_rule_still_needs_count_reports_within_window(
    build: AppFactory, clock: FakeClock
) -> None:
    app, _ = build(ban_rule={**ESCALATING, "count": 3})
    client = app.test_client()

    assert [bad_login(client).text for _ in range(2)] == ["bad password"] * 2
    clock.advance(10)  # both reports leave the window
    assert [bad_login(client).text for _ in range(3)] == ["bad password"] * 2 + ["banned"]
    assert retry_after(get(client)) == 60


def test_unban_and_reset_forget_the_ban_history(build: AppFactory, clock: FakeClock) -> None:
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
    build: AppFactory, extra: dict[str, Any], error: type[Exception], named: str
) -> None:
    rule = {"count": 3, "window": 10, "duration": 60, **extra}

    with pytest.raises(error, match=f"^ban_rule: .*{named}"):
        build(ban_rule=rule)
    with pytest.raises(error, match=f"^GATEKEEPER_BAN_RULE: .*{named}"):
        build(config={"GATEKEEPER_BAN_RULE": rule}, ban_rule=None)


def test_bad_escalation_values_fail_in_ban_rule_itself() -> None:
    with pytest.raises(ConfigError, match=r"'factor' must be a number from 1 to 1000, got 0\.5"):
        BanRule(3, 10, 60, factor=0.5)
    with pytest.raises(ConfigError, match="'max_duration' must be at least 'duration'"):
        BanRule(3, 10, 60, max_duration=59)


def test_max_duration_equal_to_duration_is_allowed(build: AppFactory, clock: FakeClock) -> None:
    app, _ = build(ban_rule={**ESCALATING, "max_duration": 60})
    client = app.test_client()

    assert [ban_and_measure(client, clock) for _ in range(3)] == [60, 60, 60]


# --- Bans for rate-limit abuse ------------------------------------------------------------

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
    build: AppFactory, clock: FakeClock, config: dict[str, Any], options: dict[str, Any]
) -> None:
    app, gk = build(config=config, **ABUSE, **options)
    client = app.test_client()

    with recording(app) as events:
        assert statuses(client, 3) == [200, 429, 429]  # two reports at 1000
        clock.advance(5)
        assert statuses(client, 1) == [429]  # a third at 1005: banned from now
        refused = get(client)

    assert refused.status_code == 403
    assert retry_after(refused) == 600
    assert (
        "client_banned",
        {
            "client": IP,
            "duration": 600,
            "reason": "rate_limit",
            "detail": BanDetail(600, 0, "rate_limit", 1, "default"),
            "offence": "default",
        },
    ) in events
    with app.app_context():
        assert gk.banned_for(IP) == 600
    assert get(client, ip=OTHER_IP).status_code == 200  # only the abuser


def test_429s_outside_the_ban_window_do_not_ban(build: AppFactory, clock: FakeClock) -> None:
    app, _ = build(**ABUSE, report_rate_limited=True)
    client = app.test_client()

    assert statuses(client, 2) == [200, 429]  # report at 1000
    clock.advance(5)
    assert statuses(client, 1) == [429]  # 1005
    clock.advance(6)
    assert statuses(client, 1) == [429]  # 1011: the one at 1000 has left the window
    clock.advance(1)
    assert statuses(client, 2) == [429, 403]  # 1012: 1005, 1011, 1012 within 10 s


def test_429s_are_not_reports_by_default(build: AppFactory) -> None:
    app, gk = build(**ABUSE)
    client = app.test_client()

    assert statuses(client, 10) == [200] + [429] * 9
    with app.app_context():
        assert gk.bans() == {}


def test_429_reports_are_signalled_and_counted_like_reports(build: AppFactory) -> None:
    app, gk = build(**ABUSE, report_rate_limited=True)
    client = app.test_client()

    with recording(app) as events:
        assert statuses(client, 4) == [200, 429, 429, 429]

    reported = [kwargs for name, kwargs in events if name == "client_reported"]
    assert reported == [
        {"client": IP, "banned_for": None, "offence": "default"},
        {"client": IP, "banned_for": None, "offence": "default"},
        {"client": IP, "banned_for": 600, "offence": "default"},
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
    build: AppFactory, config: dict[str, Any], options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{named}: True needs a ban_rule"):
        build(config=config, ban_rule=None, **options)
