"""Manual control: ``ban``, ``unban``, ``banned_for``, ``bans``, ``reset`` and ``report``
with an address, from an app context or a view (issue 5).

Apps come from the ``build`` fixture (``conftest.py``), on a ``FakeClock``: every number
below is exact.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from flask import Flask

from flask_gatekeeper import ConfigError, ConfigTypeError, GateKeeper
from flask_gatekeeper.testing import FakeClock
from support import ADMIN_IP, IP, OTHER_IP, AppFactory, get, retry_after, statuses


def test_manual_control_in_an_app_context(build: AppFactory, clock: FakeClock) -> None:
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


def test_manual_ban_ends_on_time(build: AppFactory, clock: FakeClock) -> None:
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


def test_a_longer_ban_in_force_stands(build: AppFactory) -> None:
    app, gk = build()
    with app.app_context():
        gk.ban(IP, 100)
        gk.ban(IP, 50)
        assert gk.banned_for(IP) == 100
        gk.ban(IP, 200)
        assert gk.banned_for(IP) == 200


def test_manual_ban_beats_specific_standalone_and_excluded_routes(build: AppFactory) -> None:
    app, gk = build()
    client = app.test_client()
    with app.app_context():
        gk.ban(IP, 30)

    assert [get(client, path).status_code for path in ("/", "/burst", "/alone")] == [403] * 3
    assert get(client, method="HEAD").status_code == 403
    assert get(client, "/health").status_code == 200  # bypass beats bans


def test_reset_forgets_counters_on_every_route_reports_and_ban(build: AppFactory) -> None:
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
    build: AppFactory, named: str, request_ip: str, key: str
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


def test_ipv6_ban_covers_its_64_only(build: AppFactory) -> None:
    app, gk = build()
    client = app.test_client()
    with app.app_context():
        gk.ban("2001:db8:1:2::1", 60)

    assert get(client, ip="2001:db8:1:2:ffff:ffff:ffff:ffff").status_code == 403
    assert get(client, ip="2001:db8:1:3::1").status_code == 200


def test_manual_reset_normalises_ips(build: AppFactory) -> None:
    app, gk = build(rate_limit_rules=[{"count": 1, "window": 60}])
    client = app.test_client()
    assert statuses(client, 2, ip="2001:db8::1") == [200, 429]

    with app.app_context():
        gk.reset("2001:db8::ffff")  # same /64

    assert statuses(client, 2, ip="2001:db8::2") == [200, 429]


def test_unknown_clients_are_no_error(build: AppFactory) -> None:
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
    build: AppFactory, options: dict[str, Any], duration: Any, error: type[Exception], match: str
) -> None:
    app, gk = build(**options)

    with app.app_context(), pytest.raises(error, match=f"^ban\\(\\): .*{match}"):
        gk.ban(IP, duration)
    with app.app_context():
        assert gk.bans() == {}


def test_manual_control_outside_an_app_context_uses_the_constructors_app(build: AppFactory) -> None:
    app, gk = build()

    gk.ban(IP, 30)  # no context at all: the app given to the constructor

    with app.app_context():
        assert gk.bans() == {IP: 30}


def test_manual_control_from_inside_a_view(build: AppFactory) -> None:
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


def test_a_view_can_ban_its_own_client(build: AppFactory) -> None:
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


def test_report_with_an_allowlisted_ip_does_nothing(build: AppFactory) -> None:
    app, gk = build(allowlist=["10.0.0.0/8"], ban_rule={"count": 1, "window": 10, "duration": 60})
    with app.app_context():
        assert gk.report(ip="10.1.2.3") is False
        assert gk.bans() == {}
