"""Network bans: ``gk.ban("203.0.113.0/24")`` refuses every address inside the network,
and unban, listing, details, expiry and the CLI work as for one address. On both storages
(the ``storage`` fixture runs memory and Redis); what only Redis does (one command per
request, a ban made by another process) is in ``test_redis.py``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Optional

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from hypothesis import assume, given
from hypothesis import strategies as st

from flask_gatekeeper import BanRule, GateKeeper, MemoryStorage, Rule
from flask_gatekeeper.decision import DEFAULT_OFFENCE, BanDetail, Decision
from flask_gatekeeper.identity.addresses import NO_LENGTHS, network_keys, parse_address
from flask_gatekeeper.identity.keys import client_key
from flask_gatekeeper.storage import Storage
from flask_gatekeeper.storage.plan import Scope
from flask_gatekeeper.testing import FakeClock, FlakyStorage
from support import AppFactory, gatekeeper_logs, index, recording

NETWORK = "203.0.113.0/24"
INSIDE = "203.0.113.7"
OUTSIDE = "203.0.114.7"
BAN_RULE = BanRule(1, 10, 60)
"""Bans at the first report, for 60 s."""


def network_app(
    make_app: AppFactory, storage: Storage, **options: object
) -> tuple[Flask, GateKeeper]:
    """``/`` under 20 requests a second, the seed's ban rule; ``/api`` keyed by the
    ``X-Api-Key`` header (None without one)."""
    app, gk = make_app(
        base={},
        storage=storage,
        rate_limit_rules="20/second",
        ban_rule={"count": 3, "window": 10, "duration": 600},
        routes=(index,),
        **options,
    )

    @app.route("/api")
    @gk.specific("10/second", key_func=lambda: request.headers.get("X-Api-Key"))
    def api() -> str:
        return "data"

    return app, gk


def status(client: FlaskClient, ip: str, path: str = "/", key: Optional[str] = None) -> int:
    headers = {"X-Api-Key": key} if key is not None else {}
    return client.get(path, headers=headers, environ_base={"REMOTE_ADDR": ip}).status_code


# --- a network is refused, everything else is not --------------------------------------------


def test_a_banned_network_refuses_every_address_in_it(
    make_app: AppFactory, storage: Storage
) -> None:
    app, gk = network_app(make_app, storage)
    client = app.test_client()
    with app.app_context():
        gk.ban(NETWORK, 60)
    for ip in ("203.0.113.0", INSIDE, "203.0.113.255", "::ffff:203.0.113.9"):
        response = client.get("/", environ_base={"REMOTE_ADDR": ip})
        assert response.status_code == 403, ip
        assert response.text == f"network {NETWORK} banned for 60s\n"  # names the network
        assert response.headers["Retry-After"] == "60"
    for ip in (OUTSIDE, "203.0.112.255", "10.0.0.1", "2001:db8::1"):
        assert status(client, ip) == 200, ip
    with app.app_context():
        assert gk.unban(NETWORK)
        assert not gk.unban(NETWORK)
    assert status(client, INSIDE) == 200


def test_a_network_ban_ends_on_time(
    make_app: AppFactory, storage: Storage, clock: FakeClock
) -> None:
    app, gk = network_app(make_app, storage)
    client = app.test_client()
    with app.app_context():
        gk.ban(NETWORK, 60)
    clock.advance(59.999)
    assert status(client, INSIDE) == 403
    with app.app_context():
        assert gk.banned_for(NETWORK) == pytest.approx(0.001)
    clock.advance(0.001)
    assert status(client, INSIDE) == 200
    with app.app_context():
        assert gk.banned_for(NETWORK) == 0
        assert gk.bans() == {}


def test_an_ipv6_network_refuses_every_client_in_it(make_app: AppFactory, storage: Storage) -> None:
    app, gk = network_app(make_app, storage)
    client = app.test_client()
    with app.app_context():
        gk.ban("2001:db8::/48", 60)
        assert gk.bans() == {"2001:db8::/48": 60}
    for ip in ("2001:db8::1", "2001:db8:0:ffff::1", "2001:db8:0:5:aaaa::9"):
        response = client.get("/", environ_base={"REMOTE_ADDR": ip})
        assert (response.status_code, response.text) == (
            403,
            "network 2001:db8::/48 banned for 60s\n",
        )
    for ip in ("2001:db8:1::1", "2001:db9::1", INSIDE):
        assert status(client, ip) == 200, ip
    with app.app_context():
        assert gk.unban("2001:db8::/48")
    assert status(client, "2001:db8::1") == 200


def test_several_networks_and_lengths_at_once(
    make_app: AppFactory, storage: Storage, clock: FakeClock
) -> None:
    app, gk = network_app(make_app, storage)
    client = app.test_client()
    with app.app_context():
        gk.ban("203.0.0.0/16", 30)
        gk.ban(NETWORK, 60)
        gk.ban("198.51.100.0/24", 90)
        gk.ban("2001:db8::/32", 120)
    refusal = client.get("/", environ_base={"REMOTE_ADDR": INSIDE})
    assert refusal.text == f"network {NETWORK} banned for 60s\n"  # the longest of its two bans
    assert client.get("/", environ_base={"REMOTE_ADDR": "203.0.5.1"}).text == (
        "network 203.0.0.0/16 banned for 30s\n"
    )
    assert status(client, "198.51.100.1") == 403
    assert status(client, "2001:db8:ab::1") == 403
    assert status(client, "198.51.101.1") == 200
    clock.advance(30)
    assert status(client, "203.0.5.1") == 200
    assert status(client, INSIDE) == 403


def test_the_address_own_ban_and_its_networks(make_app: AppFactory, storage: Storage) -> None:
    app, gk = network_app(make_app, storage)
    client = app.test_client()
    with app.app_context():
        gk.ban(INSIDE, 30)
        gk.ban(NETWORK, 60)
        assert gk.banned_for(INSIDE) == 30  # each key's own ban: the address's, not the network's
        assert gk.banned_for("203.0.113.8") == 0
    assert client.get("/", environ_base={"REMOTE_ADDR": INSIDE}).text == (
        f"ip {INSIDE} banned for 30s\n"  # a client's own ban decides first
    )
    with app.app_context():
        assert gk.unban(INSIDE)  # the network's ban stands
    assert client.get("/", environ_base={"REMOTE_ADDR": INSIDE}).text == (
        f"network {NETWORK} banned for 60s\n"
    )


# --- bans behind keys and allow lists ---------------------------------------------------------


@pytest.mark.parametrize("key", ["made-up", None], ids=["a key", "no key"])
def test_a_network_ban_holds_on_key_func_routes(
    make_app: AppFactory, storage: Storage, key: Optional[str]
) -> None:
    app, gk = network_app(make_app, storage)
    client = app.test_client()
    with app.app_context():
        gk.ban(NETWORK, 60)
    response = client.get(
        "/api", headers={"X-Api-Key": key} if key else {}, environ_base={"REMOTE_ADDR": INSIDE}
    )
    assert (response.status_code, response.text) == (403, f"network {NETWORK} banned for 60s\n")
    assert status(client, OUTSIDE, "/api", key) == 200


def test_an_allowlisted_address_in_a_banned_network_is_admitted(
    make_app: AppFactory, storage: Storage
) -> None:
    app, gk = network_app(make_app, storage, allowlist=[INSIDE])
    client = app.test_client()
    with app.app_context():
        gk.ban(NETWORK, 60, force=True)  # the network holds an allow-listed address
    assert status(client, INSIDE) == 200
    assert status(client, "203.0.113.8") == 403


def test_a_key_that_reads_as_a_network_is_not_that_network(
    make_app: AppFactory, storage: Storage
) -> None:
    app, gk = network_app(make_app, storage)
    client = app.test_client()
    with app.app_context():
        gk.ban(NETWORK, 60)  # the network
        assert gk.banned_for(f"key:{NETWORK}") == 0
    assert status(client, OUTSIDE, "/api", NETWORK) == 200  # a user who calls itself that
    with app.app_context():
        gk.ban(f"key:{NETWORK}", 60)
        assert set(gk.bans()) == {NETWORK, f"key:{NETWORK}"}
    assert status(client, OUTSIDE, "/api", NETWORK) == 403


# --- the key rule: normalised, and what the library shows names it --------------------------------


@pytest.mark.parametrize(
    ("given", "key"),
    [
        pytest.param("203.0.113.7/24", NETWORK, id="host bits dropped"),
        pytest.param(" 203.0.113.0/24 ", NETWORK, id="spaces"),
        pytest.param("203.0.113.0/255.255.255.0", NETWORK, id="netmask"),
        pytest.param("::ffff:203.0.113.0/120", NETWORK, id="IPv4-mapped"),
        pytest.param("203.0.113.7/32", INSIDE, id="a /32 is the address"),
        pytest.param("0.0.0.0/0", "0.0.0.0/0", id="every IPv4 address"),
        pytest.param("2001:DB8:0:0::1/48", "2001:db8::/48", id="IPv6"),
        pytest.param("2001:db8::1/128", "2001:db8::/64", id="a /128 is its client's /64"),
        pytest.param("2001:db8::1:0:0/96", "2001:db8::/64", id="narrower than a client"),
        pytest.param("2001:db8::/64", "2001:db8::/64", id="exactly one client"),
    ],
)
def test_a_network_is_keyed_by_its_normalised_cidr(given: str, key: str) -> None:
    assert client_key(given, 64) == key


@given(ip=st.ip_addresses(), length=st.integers(0, 127), ipv6_prefix=st.integers(1, 128))
def test_a_requests_networks_are_keyed_as_the_key_rule_keys_them(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, length: int, ipv6_prefix: int
) -> None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a request from it is keyed as IPv4
    assume(length < (32 if ip.version == 4 else ipv6_prefix))
    address = parse_address(str(ip), ipv6_prefix)
    assert address is not None
    assert network_keys(address, (length,)) == (client_key(f"{ip}/{length}", ipv6_prefix),)


def test_with_ipv6_prefix_128_an_ipv6_network_narrower_than_64_is_kept() -> None:
    assert client_key("2001:db8::1:0:0/96", 128) == "2001:db8::1:0:0/96"
    assert client_key("2001:db8::1/128", 128) == "2001:db8::1"


def test_a_network_narrower_than_a_client_bans_the_client(
    make_app: AppFactory, storage: Storage
) -> None:
    app, gk = network_app(make_app, storage)
    client = app.test_client()
    with app.app_context():
        gk.ban("2001:db8::1:0:0/96", 60)
        assert gk.bans() == {"2001:db8::/64": 60}  # the client the library counts as one
    assert status(client, "2001:db8::ffff:1") == 403  # outside the /96, inside its /64
    with app.app_context():
        gk.ban("203.0.113.9/32", 60)
        assert gk.unban("203.0.113.9")  # a /32 is the address
    assert status(client, "203.0.113.9") == 200


def test_a_network_shown_by_the_library_names_it_in_every_control(
    make_app: AppFactory, storage: Storage
) -> None:
    app, gk = network_app(make_app, storage)
    client = app.test_client()
    with app.app_context():
        gk.ban("203.0.113.99/24", 600)
        (shown,) = gk.bans()  # the text the library shows for this network
        assert shown == NETWORK
        assert gk.banned_for(shown) == 600
        assert gk.unban(shown)
        assert gk.bans() == {}
        gk.ban(shown, 30)
    assert status(client, INSIDE) == 403
    with app.app_context():
        gk.reset(shown)
    assert status(client, INSIDE) == 200
    with app.app_context():
        assert not gk.report(ip=shown)
        assert not gk.report(ip=shown)
        assert gk.report(ip=shown)  # three reports through report(ip=...) ban it
        assert gk.bans(detail=True) == {shown: BanDetail(600, 0, "reports", 1, "default")}
    assert client.get("/", environ_base={"REMOTE_ADDR": INSIDE}).text == (
        f"network {NETWORK} banned for 600s (reported 3 times in a 10s window)\n"
    )
    assert status(client, OUTSIDE) == 200


def test_details_of_a_network_ban(make_app: AppFactory, storage: Storage, clock: FakeClock) -> None:
    app, gk = network_app(make_app, storage)
    with app.app_context():
        gk.ban(NETWORK, 60)
        gk.ban("2001:db8::/48", 120)
        clock.advance(10)
        assert gk.bans() == {NETWORK: 50, "2001:db8::/48": 110}
        assert gk.bans(detail=True) == {
            NETWORK: BanDetail(50, 10, "manual", 0),
            "2001:db8::/48": BanDetail(110, 10, "manual", 0),
        }
        gk.ban(NETWORK, 30)  # a longer ban in force stands
        assert gk.banned_for(NETWORK) == 50


def test_signals_and_logs_name_the_network(
    make_app: AppFactory, storage: Storage, logs: pytest.LogCaptureFixture
) -> None:
    app, gk = network_app(make_app, storage)
    client = app.test_client()
    with recording(app) as events:
        with app.app_context():
            gk.ban("203.0.113.9/24", 60)
        assert status(client, INSIDE) == 403
        with app.app_context():
            gk.unban(NETWORK)
    assert events == [
        (
            "client_banned",
            {
                "client": NETWORK,
                "duration": 60,
                "reason": "manual",
                "detail": BanDetail(60, 0, "manual", 0),
                "offence": None,
            },
        ),
        ("request_banned", {"client": NETWORK, "retry_after": 60, "dry_run": False}),
        ("client_unbanned", {"client": NETWORK}),
    ]
    assert ("INFO", f"banned {NETWORK} for 60s (manual)") in gatekeeper_logs(logs)
    with app.app_context():
        assert gk.stats()["banned"] == 1


# --- the registry and what a request looks up ----------------------------------------------------


def test_the_registry_holds_the_lengths_of_live_network_bans(
    storage: Storage, clock: FakeClock
) -> None:
    assert storage.network_lengths() == NO_LENGTHS
    storage.ban(NETWORK, 60)
    storage.ban("10.0.0.0/8", 30)
    storage.ban("198.51.100.0/24", 90)
    storage.ban("2001:db8::/48", 120)
    storage.ban(INSIDE, 600)  # an address is no network
    assert storage.network_lengths() == {(4, 8), (4, 24), (6, 48)}
    assert storage.network_lengths(cached=True) >= {(4, 8), (4, 24), (6, 48)}
    assert storage.unban(NETWORK)
    assert storage.network_lengths() == {(4, 8), (4, 24), (6, 48)}  # 198.51.100.0/24 still
    clock.advance(30)
    assert storage.network_lengths() == {(4, 24), (6, 48)}
    storage.reset("2001:db8::/48")
    assert storage.network_lengths() == {(4, 24)}
    clock.advance(60)
    assert storage.network_lengths() == NO_LENGTHS
    assert storage.banned_for(INSIDE) == 510


def test_a_network_ban_made_by_a_report_enters_the_registry(storage: Storage) -> None:
    # Reports never register; the extension registers with ban(network, 0) after one bans.
    storage.report(NETWORK, BAN_RULE)
    assert storage.network_lengths() == NO_LENGTHS
    storage.ban(NETWORK, 0)  # changes no ban
    assert storage.network_lengths() == {(4, 24)}
    assert storage.ban_details() == {NETWORK: BanDetail(60, 0, "reports", 1, "default")}


def test_hit_refuses_on_behalf_of_a_banned_network(storage: Storage) -> None:
    storage.ban(NETWORK, 60)
    address = parse_address(INSIDE)
    assert address is not None
    also = network_keys(address, (8, 16, 24))
    assert also == ("203.0.0.0/8", "203.0.0.0/16", NETWORK)
    assert storage.hit(INSIDE, [], also=also) == Decision(
        admitted=False, banned=True, retry_after=60, manual=True, banned_as=NETWORK
    )


class Recording(FlakyStorage):
    """Records the ``also`` of every ``hit``."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(MemoryStorage(clock=clock))
        self.seen: list[tuple[str, ...]] = []

    def hit(
        self,
        client: str,
        scopes: Sequence[Scope],
        *,
        usage: bool = False,
        report_to: Optional[BanRule] = None,
        also: Sequence[str] = (),
        token: Optional[str] = None,
        offence: str = DEFAULT_OFFENCE,
    ) -> Decision:
        self.seen.append(tuple(also))
        return super().hit(
            client,
            scopes,
            usage=usage,
            report_to=report_to,
            also=also,
            token=token,
            offence=offence,
        )


def test_a_request_looks_up_one_network_per_length_in_use(
    make_app: AppFactory, clock: FakeClock
) -> None:
    storage = Recording(clock)
    app, gk = network_app(make_app, storage)
    client = app.test_client()
    assert status(client, INSIDE) == 200
    with app.app_context():
        gk.ban("198.51.100.0/24", 60)
        gk.ban("198.51.0.0/16", 60)
        gk.ban("198.52.0.0/16", 60)  # one more network, no more lookups
        gk.ban("2001:db8::/48", 60)
    assert status(client, INSIDE) == 200
    assert status(client, "2001:db8:1:2::3") == 200
    assert status(client, INSIDE, "/api", "k1") == 200
    with app.app_context():
        gk.unban("2001:db8::/48")
        gk.unban("198.51.100.0/24")
    assert status(client, INSIDE) == 200
    clock.advance(60)
    assert status(client, INSIDE) == 200
    assert storage.seen == [
        (),  # no network banned: nothing more
        ("203.0.0.0/16", NETWORK),
        ("2001:db8:1::/48",),
        (INSIDE, "203.0.0.0/16", NETWORK),  # the address behind the key, its networks
        ("203.0.0.0/16",),
        (),
    ]


# --- the command line ---------------------------------------------------------------------------


def test_the_cli_bans_lists_and_unbans_networks(make_app: AppFactory, clock: FakeClock) -> None:
    from flask_gatekeeper.cli import gatekeeper

    app, _ = network_app(make_app, FlakyStorage(clock=clock))  # shared, as Redis would be
    runner = app.test_cli_runner()

    def run(*args: str) -> str:
        result = runner.invoke(gatekeeper, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    assert run("ban", "203.0.113.7/24", "--duration", "60") == f"banned {NETWORK} for 60s\n"
    assert run("ban", "2001:db8::/48") == "banned 2001:db8::/48 for 600s\n"
    assert run("bans") == (
        "2001:db8::/48\t600s left\tmanual\tstarted 0s ago\t0 strikes\n"
        f"{NETWORK}\t60s left\tmanual\tstarted 0s ago\t0 strikes\n"
    )
    client = app.test_client()
    assert status(client, INSIDE) == 403
    assert status(client, "2001:db8::5") == 403
    assert run("unban", NETWORK) == f"unbanned {NETWORK}\n"
    assert run("unban", NETWORK) == f"{NETWORK} was not banned\n"
    assert status(client, INSIDE) == 200
    assert run("reset", "2001:db8::/48") == "reset 2001:db8::/48\n"
    assert status(client, "2001:db8::5") == 200
    assert run("bans") == "no active bans\n"


def test_scopes_of_a_banned_network_are_not_recorded(storage: Storage) -> None:
    # A request refused by its network's ban counts in no rule, like any refused request.
    rule = Rule(1, 60)
    scopes = [Scope.of("", (rule,))]
    storage.ban(NETWORK, 10)
    assert not storage.hit(INSIDE, scopes, also=(NETWORK,)).admitted
    storage.unban(NETWORK)
    assert storage.hit(INSIDE, scopes).admitted
