"""Client identity: which address a request counts under, attacks included.

One table in werkzeug ProxyFix's style: each row is a deployment (header, trust), what
arrives (header value, socket peer) and the key that must come out.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Optional, Union

import pytest
from flask import Flask, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import Headers

from flask_gatekeeper import ConfigError, ConfigTypeError, GateKeeper
from flask_gatekeeper.identity.addresses import AddressSet, parse_address, parse_address_list
from flask_gatekeeper.identity.proxies import Identifier
from support import AppFactory, index

PEER = "192.0.2.1"
XFF = "X-Forwarded-For"

Trust = Union[int, list[str], None]


def identifier(
    ip_header: Optional[str] = XFF,
    trusted_proxies: Trust = None,
    ipv6_prefix: int = 64,
    allowlist: tuple[str, ...] = (),
    denylist: tuple[str, ...] = (),
) -> Identifier:
    trust: Union[int, AddressSet, None]
    if isinstance(trusted_proxies, list):
        trust = AddressSet(parse_address_list(trusted_proxies, "trusted_proxies"))
    else:
        trust = trusted_proxies
    return Identifier(
        ip_header=ip_header,
        trusted_proxies=trust,
        ipv6_prefix=ipv6_prefix,
        allowlist=AddressSet(parse_address_list(list(allowlist), "allowlist")),
        denylist=AddressSet(parse_address_list(list(denylist), "denylist")),
        key_func=None,
    )


def key_of(ident: Identifier, value: Optional[str], peer: Optional[str] = PEER) -> str:
    headers = Headers()
    if value is not None and ident.ip_header is not None:
        headers[ident.ip_header] = value
    client = ident.identify(headers, peer)
    assert client is not None
    assert client[0] is not None
    return client[0]


@pytest.mark.parametrize(
    ("header", "trust", "value", "peer", "expected"),
    [
        # no header configured: the socket peer, whatever the client sends
        pytest.param(None, None, "6.6.6.6", PEER, PEER, id="header ignored when not configured"),
        # seed compatibility: believed, right-most value
        pytest.param(XFF, None, "1.1.1.1", PEER, "1.1.1.1", id="seed: single value"),
        pytest.param(XFF, None, "6.6.6.6, 1.1.1.1", PEER, "1.1.1.1", id="seed: right-most"),
        pytest.param(XFF, None, None, PEER, PEER, id="seed: missing header, peer"),
        # hop count, ProxyFix-style
        pytest.param(XFF, 1, "1.1.1.1", PEER, "1.1.1.1", id="one proxy"),
        pytest.param(XFF, 1, "6.6.6.6, 1.1.1.1", PEER, "1.1.1.1", id="spoofed left entry"),
        pytest.param(XFF, 2, "6.6.6.6, 1.1.1.1, 10.0.0.2", PEER, "1.1.1.1", id="two proxies"),
        pytest.param(XFF, 2, "1.1.1.1", PEER, PEER, id="fewer values than hops: ignored"),
        pytest.param(XFF, 0, "1.1.1.1", PEER, PEER, id="zero hops: header ignored"),
        pytest.param(XFF, 1, "", PEER, PEER, id="empty header"),
        pytest.param(XFF, 1, " , ", PEER, PEER, id="only separators"),
        # trusted proxy addresses, nginx real_ip_recursive-style
        pytest.param(XFF, ["10.0.0.0/8"], "1.1.1.1", "10.0.0.1", "1.1.1.1", id="trusted peer"),
        pytest.param(
            XFF, ["10.0.0.0/8"], "1.1.1.1", "8.8.8.8", "8.8.8.8", id="header from untrusted peer"
        ),
        pytest.param(
            XFF,
            ["10.0.0.0/8"],
            "6.6.6.6, 1.1.1.1, 10.0.0.7",
            "10.0.0.1",
            "1.1.1.1",
            id="skips trusted hops, ignores spoofed left",
        ),
        pytest.param(
            XFF, ["10.0.0.0/8"], "10.0.0.9, 10.0.0.7", "10.0.0.1", "10.0.0.9", id="all trusted"
        ),
        pytest.param(
            XFF, ["10.0.0.0/8"], "1.1.1.1, junk", "10.0.0.1", "10.0.0.1", id="garbage in chain"
        ),
        # garbage and hostile values fall back to the peer
        pytest.param(XFF, 1, "not-an-ip", PEER, PEER, id="garbage"),
        pytest.param(XFF, 1, "1" * 8192, PEER, PEER, id="8 KB value"),
        pytest.param(XFF, 1, "1.1.1.1" + " " * 8192, PEER, PEER, id="8 KB of padding"),
        pytest.param(XFF, 1, "\u0661.\u0661.\u0661.\u0661", PEER, PEER, id="non-ASCII digits"),
        pytest.param(XFF, 1, "1.1.1.1\x00", PEER, PEER, id="NUL byte"),
        pytest.param(XFF, 1, "999.1.1.1", PEER, PEER, id="octet out of range"),
        pytest.param(XFF, 1, "unknown", PEER, PEER, id="unknown"),
        # ports, brackets, IPv6 forms
        pytest.param(XFF, 1, "1.1.1.1:5678", PEER, "1.1.1.1", id="IPv4 with port"),
        pytest.param(XFF, 1, "[2001:db8::1]:80", PEER, "2001:db8::/64", id="IPv6 brackets port"),
        pytest.param(XFF, 1, "2001:DB8:0:0::1", PEER, "2001:db8::/64", id="IPv6 canonical"),
        pytest.param(XFF, 1, "fe80::1%eth0", PEER, "fe80::/64", id="zone id dropped"),
        pytest.param(XFF, 1, "::ffff:1.2.3.4", PEER, "1.2.3.4", id="IPv4-mapped"),
        pytest.param(XFF, 1, "[::ffff:1.2.3.4]:99", PEER, "1.2.3.4", id="mapped with port"),
        pytest.param(XFF, 1, '"1.1.1.1"', PEER, "1.1.1.1", id="quoted"),
        # single-value headers
        pytest.param("X-Real-IP", 1, "1.1.1.1", PEER, "1.1.1.1", id="X-Real-IP"),
        pytest.param("CF-Connecting-IP", 1, "2.2.2.2", PEER, "2.2.2.2", id="CF-Connecting-IP"),
        # RFC 7239 Forwarded
        pytest.param("Forwarded", 1, "for=1.1.1.1", PEER, "1.1.1.1", id="Forwarded"),
        pytest.param(
            "Forwarded",
            1,
            'for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https',
            PEER,
            "2001:db8:cafe::/64",
            id="Forwarded quoted IPv6 with port",
        ),
        pytest.param(
            "Forwarded", 1, "proto=https;For=1.1.1.1", PEER, "1.1.1.1", id="Forwarded case"
        ),
        pytest.param("Forwarded", 1, "for=_hidden", PEER, PEER, id="Forwarded obfuscated"),
        pytest.param("Forwarded", 1, "by=1.1.1.1", PEER, PEER, id="Forwarded without for"),
        # the peer itself is normalised and aggregated
        pytest.param(None, None, None, "2001:db8::1:2", "2001:db8::/64", id="IPv6 peer /64"),
        pytest.param(None, None, None, "::ffff:10.1.1.1", "10.1.1.1", id="mapped peer"),
    ],
)
def test_client_key(
    header: Optional[str], trust: Trust, value: Optional[str], peer: str, expected: str
) -> None:
    assert key_of(identifier(header, trust), value, peer) == expected


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        pytest.param(128, "2001:db8::1:2", id="no aggregation"),
        pytest.param(64, "2001:db8::/64", id="default /64"),
        pytest.param(48, "2001:db8::/48", id="/48"),
        pytest.param(1, "::/1", id="/1"),
    ],
)
def test_ipv6_prefix(prefix: int, expected: str) -> None:
    assert key_of(identifier(None, ipv6_prefix=prefix), None, "2001:db8::1:2") == expected


def test_ipv4_is_never_aggregated() -> None:
    assert key_of(identifier(None, ipv6_prefix=8), None, "10.1.2.3") == "10.1.2.3"


def test_one_host_rotating_its_64_is_one_client() -> None:
    ident = identifier(None)
    keys = {key_of(ident, None, f"2001:db8:1:2::{n:x}") for n in range(1, 200)}
    assert keys == {"2001:db8:1:2::/64"}


def test_no_peer_at_all_uses_one_key() -> None:
    assert key_of(identifier(None), None, None) == "unknown"


@pytest.mark.parametrize(
    ("entries", "address", "member"),
    [
        pytest.param(["10.0.0.0/8"], "10.255.1.1", True, id="inside /8"),
        pytest.param(["10.0.0.0/8"], "11.0.0.1", False, id="outside /8"),
        pytest.param(["192.0.2.7"], "192.0.2.7", True, id="single IPv4"),
        pytest.param(["192.0.2.7"], "192.0.2.8", False, id="neighbour"),
        pytest.param(["2001:db8::/32"], "2001:db8:ffff::1", True, id="IPv6 network"),
        pytest.param(["2001:db8::/32"], "2001:db9::1", False, id="IPv6 outside"),
        pytest.param(["::ffff:10.0.0.0/104"], "10.1.1.1", True, id="mapped network as IPv4"),
        pytest.param(["0.0.0.0/0"], "203.0.113.5", True, id="everything IPv4"),
        pytest.param(["0.0.0.0/0"], "2001:db8::1", False, id="IPv4 list, IPv6 client"),
    ],
)
def test_address_set(entries: list[str], address: str, member: bool) -> None:
    parsed = parse_address(address)
    assert parsed is not None
    assert (parsed in AddressSet(parse_address_list(entries, "allowlist"))) is member


def test_address_set_cost_does_not_grow_with_length() -> None:
    networks = parse_address_list([f"10.{n >> 8}.{n & 255}.0/24" for n in range(10_000)], "x")
    big = AddressSet(networks)
    assert len(big) == 10_000
    assert len(big._tables[4]) == 1  # one lookup: every entry shares one prefix length
    assert parse_address("10.39.15.4") in big
    assert parse_address("11.39.15.4") not in big


def test_allowlisted_client_is_never_counted_limited_or_banned() -> None:
    ident = identifier(None, allowlist=("10.0.0.0/8",))
    assert ident.identify(Headers(), "10.1.1.1") is None
    assert ident.identify(Headers(), "11.1.1.1") is not None


def test_denylisted_client_is_denied() -> None:
    client = identifier(None, denylist=("203.0.113.0/24",)).identify(Headers(), "203.0.113.9")
    assert client is not None
    assert client[1]


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        pytest.param("trusted_proxies", -1, ConfigError, id="negative hops"),
        pytest.param("trusted_proxies", ["10.0.0.300"], ConfigError, id="bad proxy address"),
        pytest.param("trusted_proxies", ["10.0.0.1/8"], ConfigError, id="host bits set"),
        pytest.param("trusted_proxies", 1.5, ConfigTypeError, id="float hops"),
        pytest.param("trusted_proxies", [10], ConfigTypeError, id="non-string proxy"),
        pytest.param("ipv6_prefix", 0, ConfigError, id="prefix 0"),
        pytest.param("ipv6_prefix", 129, ConfigError, id="prefix 129"),
        pytest.param("ipv6_prefix", "64", ConfigTypeError, id="prefix as text"),
        pytest.param("allowlist", ["nope"], ConfigError, id="bad allowlist entry"),
        pytest.param("denylist", 42, ConfigTypeError, id="denylist not a list"),
        pytest.param("key_func", 42, ConfigTypeError, id="key_func not callable"),
        pytest.param("key_func", "no.such.module:func", ConfigError, id="key_func bad import"),
    ],
)
def test_bad_identity_settings_name_option_and_value(
    option: str, value: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match=option) as info:
        GateKeeper(Flask(__name__), **{option: value})  # type: ignore[arg-type]
    assert repr(value)[:20].strip("[]") in str(info.value)


def test_identity_settings_from_config() -> None:
    app = Flask(__name__)
    app.config.update(
        GATEKEEPER_TRUSTED_PROXIES="10.0.0.0/8, 127.0.0.1",
        GATEKEEPER_IPV6_PREFIX=48,
        GATEKEEPER_ALLOWLIST=["192.0.2.0/24"],
        GATEKEEPER_DENYLIST="203.0.113.0/24",
        GATEKEEPER_KEY_FUNC="secrets:token_hex",
    )
    GateKeeper(app)
    ident = app.extensions["gatekeeper"].settings.identifier
    assert ident.ip_header == XFF  # trusted proxies without ip_header read X-Forwarded-For
    assert ident.ipv6_prefix == 48
    address = ident.client_address(Headers({XFF: "1.1.1.1"}), "127.0.0.1")
    assert address is not None
    assert address.key == "1.1.1.1"
    assert ident.identify(Headers(), "192.0.2.9") is None
    denied = ident.identify(Headers(), "203.0.113.1")
    assert denied is not None
    assert denied[1]
    first, second = ident.identify(Headers(), "8.8.8.8"), ident.identify(Headers(), "8.8.8.8")
    assert first is not None
    assert second is not None
    assert first[0] != second[0]  # secrets.token_hex: a fresh key every call


def test_untrusted_ip_header_warns_once_at_start_up(caplog: pytest.LogCaptureFixture) -> None:
    GateKeeper(Flask(__name__), ip_header="x-my-ip")
    warnings = [r for r in caplog.records if r.name == "flask_gatekeeper"]
    assert len(warnings) == 1
    assert "trusted_proxies" in warnings[0].getMessage()
    caplog.clear()
    GateKeeper(Flask(__name__), ip_header="x-my-ip", trusted_proxies=1)
    GateKeeper(Flask(__name__))
    assert not [r for r in caplog.records if r.name == "flask_gatekeeper"]


header_text = st.one_of(
    st.text(max_size=80),
    st.lists(st.one_of(st.ip_addresses().map(str), st.text(max_size=12)), max_size=6).map(
        ", ".join
    ),
    st.ip_addresses().map(lambda ip: f"[{ip}]:{ip.version}"),
)


@settings(max_examples=300, deadline=None)
@given(
    value=header_text,
    peer=st.ip_addresses().map(str),
    trust=st.sampled_from([None, 0, 1, 2, ["10.0.0.0/8", "::1"]]),
    header=st.sampled_from([XFF, "Forwarded", "X-Real-IP"]),
)
def test_any_header_gives_a_canonical_key(value: str, peer: str, trust: Trust, header: str) -> None:
    """Whatever arrives, the key is a canonical address or /64 network, never raw text."""
    ident = identifier(header, trust)
    headers = Headers()
    try:
        headers[header] = value
    except ValueError:  # werkzeug refuses newlines in header values
        return
    client = ident.identify(headers, peer)
    assert client is not None
    assert client[0] is not None
    network = ipaddress.ip_network(client[0])
    assert str(network) == client[0] or str(network.network_address) == client[0]


@settings(
    max_examples=100,
    deadline=None,
    # identity_app is a factory: each example builds a fresh app
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(value=header_text, peer=st.ip_addresses().map(str))
def test_any_header_never_breaks_a_request(identity_app: AppFactory, value: str, peer: str) -> None:
    app, _ = identity_app(rate_limit_rules="1000/second", trusted_proxies=1)
    try:
        response = app.test_client().get(
            "/", headers={XFF: value}, environ_base={"REMOTE_ADDR": peer}
        )
    except ValueError:  # the test client refuses some header text before any request
        return
    assert response.status_code == 200


def api(app: Flask, gk: GateKeeper) -> None:
    """``GET /api``: 1 per minute per ``X-Api-Key`` header instead of the global key."""

    @app.route("/api")
    @gk.specific("1/minute", key_func=lambda: request.headers.get("X-Api-Key"))
    def api() -> str:
        return "api"


def strike(app: Flask, gk: GateKeeper) -> None:
    """``GET /strike`` reports its client and answers whether that banned it."""

    @app.route("/strike")
    def strike() -> str:
        return str(gk.report())


@pytest.fixture
def identity_app(make_app: AppFactory) -> AppFactory:
    """``make_app`` with only the given options, and the views ``/``, ``/api``, ``/strike``."""
    return functools.partial(make_app, base={}, routes=(index, api, strike))


def test_key_func_names_the_client(identity_app: AppFactory) -> None:
    app, _ = identity_app(
        rate_limit_rules="2/minute", key_func=lambda: request.headers.get("X-User")
    )
    client = app.test_client()
    alice = {"X-User": "alice"}
    assert [client.get("/", headers=alice).status_code for _ in range(3)] == [200, 200, 429]
    # another user from the same address is a different client
    assert client.get("/", headers={"X-User": "bob"}).status_code == 200
    # None skips limiting for that request
    assert [client.get("/").status_code for _ in range(5)] == [200] * 5


def test_specific_key_func_replaces_the_global_key_on_its_route(identity_app: AppFactory) -> None:
    app, _ = identity_app(rate_limit_rules="100/minute")
    client = app.test_client()
    assert client.get("/api", headers={"X-Api-Key": "k1"}).status_code == 200
    refused = client.get("/api", headers={"X-Api-Key": "k1"})
    assert refused.status_code == 429
    assert b"client k1 rate limited" in refused.data
    assert client.get("/api", headers={"X-Api-Key": "k2"}).status_code == 200
    assert client.get("/api").status_code == 200  # no key: not limited


def test_bans_follow_the_key_func_key(identity_app: AppFactory) -> None:
    app, _ = identity_app(
        ban_rule={"count": 2, "window": 60, "duration": 60},
        key_func=lambda: request.headers.get("X-User"),
    )
    client = app.test_client()
    alice = {"X-User": "alice"}
    assert client.get("/strike", headers=alice).data == b"False"
    assert client.get("/strike", headers=alice).data == b"True"
    assert client.get("/", headers=alice).status_code == 403
    assert client.get("/", headers={"X-User": "bob"}).status_code == 200


def test_key_func_must_return_text(identity_app: AppFactory) -> None:
    app, _ = identity_app(key_func=lambda: 42)
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(TypeError, match="key_func must return a str or None, got 42"):
        app.test_client().get("/")


def test_denylist_and_allowlist_through_flask(identity_app: AppFactory) -> None:
    app, _ = identity_app(
        rate_limit_rules="1/minute",
        ban_rule={"count": 1, "window": 60, "duration": 60},
        allowlist=["10.0.0.0/8"],
        denylist=["203.0.113.0/24"],
    )
    client = app.test_client()
    inside = {"REMOTE_ADDR": "10.1.2.3"}
    assert client.get("/strike", environ_base=inside).data == b"False"  # never banned
    assert [client.get("/", environ_base=inside).status_code for _ in range(3)] == [200] * 3
    denied = client.get("/", environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert denied.status_code == 403
    assert "Retry-After" not in denied.headers
    assert denied.data == b"ip 203.0.113.7 denied\n"


def test_report_with_ip_is_normalised_like_a_request(identity_app: AppFactory) -> None:
    app, gk = identity_app(ban_rule={"count": 1, "window": 60, "duration": 60})
    with app.app_context():
        assert gk.report(ip="[2001:db8::5]:443")
    assert (
        app.test_client().get("/", environ_base={"REMOTE_ADDR": "2001:db8::9"}).status_code == 403
    )


def test_no_peer_address_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    ident = identifier(None)
    for _ in range(3):
        assert key_of(ident, None, "") == "unknown"
    warnings = [r for r in caplog.records if r.name == "flask_gatekeeper"]
    assert len(warnings) == 1
    assert "no client address" in warnings[0].getMessage()


def test_long_key_func_keys_are_hashed(identity_app: AppFactory) -> None:
    app, _ = identity_app(
        rate_limit_rules="1/minute", key_func=lambda: request.headers.get("X-User")
    )
    client = app.test_client()
    long_name = "u" * 10_000
    assert client.get("/", headers={"X-User": long_name}).status_code == 200
    refused = client.get("/", headers={"X-User": long_name})
    assert refused.status_code == 429
    assert b"client sha256:" in refused.data
    assert client.get("/", headers={"X-User": "u" * 9_999}).status_code == 200
