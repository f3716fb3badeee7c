"""Subnet escalation (docs/operating-bans.md, "Subnet escalation"): when ``count`` distinct
addresses of one network are banned within ``window``, the network is banned.

Every test runs on both storages (the ``storage`` fixture)."""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Any

import pytest
from flask import Flask, request

from flask_gatekeeper import ConfigError, GateKeeper, SubnetBanRule
from flask_gatekeeper.identity.addresses import network_of, wider_network
from flask_gatekeeper.storage import Storage
from flask_gatekeeper.testing import FakeClock
from support import AppFactory, index, recording

SUBNET_RULE = {"count": 3, "window": 3600, "duration": 86400}
BAN_AT_ONCE = {"count": 1, "window": 60, "duration": 600}
NETWORK = "203.0.113.0/24"


@pytest.fixture
def make(make_app: AppFactory, storage: Storage) -> AppFactory:
    """``make_app`` on both storages: a ban at the first report, subnet bans on, and ``/``."""
    base = {"ban_rule": BAN_AT_ONCE, "subnet_ban_rule": SUBNET_RULE}
    return functools.partial(make_app, storage=storage, base=base, routes=(index,))


def ban(gk: GateKeeper, app: Flask, *addresses: str) -> list[bool]:
    """Report each address once (the ban rule bans at the first report)."""
    with app.app_context():
        return [gk.report(ip=address) for address in addresses]


def subnet_bans(gk: GateKeeper, app: Flask) -> dict[str, tuple[float, str]]:
    with app.app_context():
        return {
            client: (detail.left, detail.reason)
            for client, detail in gk.bans(detail=True).items()
            if "/" in client and not client.endswith("/64")
        }


def test_the_count_th_distinct_banned_address_bans_its_network(make: AppFactory) -> None:
    app, gk = make()
    assert ban(gk, app, "203.0.113.1", "203.0.113.2") == [True, True]
    assert subnet_bans(gk, app) == {}
    with recording(app) as events:
        assert ban(gk, app, "203.0.113.3") == [True]
    assert subnet_bans(gk, app) == {NETWORK: (86400, "subnet")}
    banned = [(args["client"], args["reason"]) for name, args in events if name == "client_banned"]
    assert banned == [("203.0.113.3", "reports"), (NETWORK, "subnet")]
    response = app.test_client().get("/", environ_base={"REMOTE_ADDR": "203.0.113.200"})
    assert response.status_code == 403
    assert NETWORK in response.get_data(as_text=True)  # the refusal names the network


def test_an_address_counts_once_and_other_networks_apart(
    make: AppFactory, clock: FakeClock
) -> None:
    app, gk = make()
    ban(gk, app, "203.0.113.1", "203.0.113.2", "198.51.100.1")
    clock.advance(601)  # the address's ban ends; banned again, it is still one address
    ban(gk, app, "203.0.113.1")
    assert subnet_bans(gk, app) == {}


def test_only_bans_within_the_window_count(make: AppFactory, clock: FakeClock) -> None:
    app, gk = make()
    ban(gk, app, "203.0.113.1", "203.0.113.2")
    clock.advance(3600)  # the first two leave the window
    ban(gk, app, "203.0.113.3", "203.0.113.4")
    assert subnet_bans(gk, app) == {}
    ban(gk, app, "203.0.113.5")
    assert subnet_bans(gk, app) == {NETWORK: (86400, "subnet")}


def test_ipv6_clients_escalate_to_their_48(make: AppFactory) -> None:
    app, gk = make(subnet_ban_rule={**SUBNET_RULE, "count": 2})
    ban(gk, app, "2001:db8:1:1::1", "2001:db8:1:1::2")  # one /64 client, twice
    assert subnet_bans(gk, app) == {}
    ban(gk, app, "2001:db8:1:2::1")
    assert subnet_bans(gk, app) == {"2001:db8:1::/48": (86400, "subnet")}


def test_prefixes_are_configurable(make: AppFactory) -> None:
    app, gk = make(subnet_ban_rule=SubnetBanRule(2, 60, 120, ipv4_prefix=16))
    ban(gk, app, "10.1.0.1", "10.1.200.1")
    assert subnet_bans(gk, app) == {"10.1.0.0/16": (120, "subnet")}


def test_rate_limit_strikes_escalate_too(make: AppFactory) -> None:
    app, _ = make(rate_limit_rules="1/minute", report_rate_limited=True)
    client = app.test_client()
    for last in (1, 2, 3):
        for _ in range(2):  # the second request is refused: a strike, which bans
            client.get("/", environ_base={"REMOTE_ADDR": f"203.0.113.{last}"})
    assert client.get("/", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 403


def test_manual_bans_and_keys_never_escalate(make: AppFactory) -> None:
    app, gk = make(key_func=lambda: request.headers.get("X-User"))
    with app.app_context():
        for last in (1, 2, 3):
            gk.ban(f"203.0.113.{last}", 60)
    client = app.test_client()
    for user in ("a", "b", "c"):  # key_func keys banned by reports
        with app.test_request_context(headers={"X-User": user}):
            assert gk.report()
    assert subnet_bans(gk, app) == {}
    assert client.get("/", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 200


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (
            {"subnet_ban_rule": {"count": 2, "window": 1, "duration": 1, "ipv4_prefix": 33}},
            "subnet_ban_rule: 'ipv4_prefix' must be from 0 to 31, got 33",
        ),
        (
            {"subnet_ban_rule": {"count": 2, "window": 1, "duration": 1, "ipv6_prefix": 64}},
            "subnet_ban_rule: 'ipv6_prefix' must be shorter than ipv6_prefix (64)",
        ),
        ({"subnet_ban_rule": {"count": 2, "window": 1}}, "subnet_ban_rule: missing key 'duration'"),
        ({"ban_rule": None, "subnet_ban_rule": SUBNET_RULE}, "needs a ban_rule"),
    ],
)
def test_a_bad_subnet_ban_rule_is_refused_at_start_up(options: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(error)):
        GateKeeper(Flask(__name__), **{"ban_rule": BAN_AT_ONCE, **options})


@pytest.mark.parametrize(
    "key",
    [
        "203.0.113.77",
        "0.0.0.0",
        "255.255.255.255",
        "010.1.2.3",  # not an address's key
        " 10.1.2.3",
        "10.1.2.3:80",
        "10.1.2.0/24",
        "10.1.2.0/024",
        "10.1.2.3/24",  # host bits
        "10.1.2.3/32",
        "2001:db8:1:2::/64",
        "2001:DB8:1:2::/64",
        "2001:0db8:1:2::/64",
        "2001:db8::1",
        "1:0:0:1::/64",
        "::ffff:10.1.2.3",
        "::ffff:a01:203",
        "::ffff:0:0/96",
        "::a01:203",
        "::/0",
        "fe80::1%eth0",
        "key:10.1.2.3",
    ],
)
@pytest.mark.parametrize("prefixes", [(0, 0), (8, 32), (24, 48), (31, 64), (32, 127)])
def test_networks_are_named_as_ipaddress_names_them(key: str, prefixes: tuple[int, int]) -> None:
    """``wider_network`` and ``network_of`` read keys with ``socket`` (the gate asks them
    for each new client of a subnet ban rule): the same answers as ``ipaddress`` gives."""
    try:
        network = ipaddress.ip_network(key)
    except ValueError:
        assert wider_network(key, *prefixes) is None
        assert network_of(key) is None
        return
    length = prefixes[0] if network.version == 4 else prefixes[1]
    canonical = key in (str(network), str(network.network_address))
    wide = network.prefixlen <= length
    expected = None if wide or not canonical else str(network.supernet(new_prefix=length))
    assert wider_network(key, *prefixes) == expected
    cidr = "/" in key and str(network) == key
    assert network_of(key) == ((network.version, network.prefixlen) if cidr else None)
