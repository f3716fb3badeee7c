"""Operator input that would ban nobody, or everybody, is refused with the reason (issue 22).

Text written as an IP address or a network that is not one (``300.1.1.0/24``) is a
``ClientNameError`` from every manual control and the CLI, where it used to become a ban
of a key no request carries; ``key:<text>`` still names a ``key_func`` key of that text.
A network wider than /8 (IPv4) or /32 (IPv6), or one holding a trusted proxy or an
allow-listed address, is banned only with ``force=True`` (``--force``). The lists read at
start-up give the same reasons. State is checked on both storages (the ``storage``
fixture runs memory and Redis).
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Callable

import pytest
from click.testing import Result
from flask import Flask, request
from hypothesis import given
from hypothesis import strategies as st

from flask_gatekeeper import (
    ClientNameError,
    ConfigError,
    GateKeeper,
    GateKeeperError,
    RateLimited,
    UnsafeBanError,
)
from flask_gatekeeper.cli import gatekeeper
from flask_gatekeeper.identity.addresses import AddressSet, written_as_address
from flask_gatekeeper.identity.keys import key_of
from flask_gatekeeper.storage import Storage
from flask_gatekeeper.testing import FakeClock, FlakyStorage
from support import AppFactory, index

PROXY = "10.0.0.1"
ALLOWED = "192.0.2.0/28"
"""The trusted proxy and the allow-listed network of ``operator_app``."""

MALFORMED = [
    pytest.param("300.1.1.0/24", "Octet 300 (> 255) not permitted", id="octet over 255"),
    pytest.param("203.0.113.0/33", "'33' is not a valid netmask", id="IPv4 prefix over 32"),
    pytest.param("2001:db8::/129", "'129' is not a valid netmask", id="IPv6 prefix over 128"),
    pytest.param("203.0.113.0/-1", "'-1' is not a valid netmask", id="negative prefix"),
    pytest.param("203.0.113.0/", "'' is not a valid netmask", id="empty prefix"),
    pytest.param("10.0.0.0/8/8", "Only one '/' permitted", id="two prefixes"),
    pytest.param("203.0.113.0/255.0.255.0", "is not a valid netmask", id="bad netmask"),
    pytest.param("10.0.0/24", "Expected 4 octets", id="three numbers and a prefix"),
    pytest.param("1.2.3.4.5", "Expected 4 octets", id="five numbers"),
    pytest.param("010.0.0.1", "Leading zeros are not permitted", id="leading zero"),
    pytest.param("0.0.0.256", "Octet 256 (> 255) not permitted", id="IPv4 address"),
    pytest.param("300.1.1.1:8080", "Octet 300 (> 255) not permitted", id="with a port"),
    pytest.param(" 300.1.1.1 ", "Octet 300 (> 255) not permitted", id="spaces"),
    pytest.param("203.0.113.0 /24", "Only decimal digits permitted", id="space before /"),
    pytest.param("2001:db8:::1", "At most one '::' permitted", id="three colons"),
    pytest.param("1:2:3:4:5:6:7:8:9", "Exactly 8 parts expected", id="nine IPv6 groups"),
    pytest.param("12:30:00", "Exactly 8 parts expected", id="hex digits and two colons"),
]

KEYS = [
    pytest.param("user:42", id="one colon"),
    pytest.param("42", id="a number"),
    pytest.param("3.14", id="two numbers"),
    pytest.param("1.2.3", id="three numbers"),
    pytest.param("ab:cd", id="hex digits and one colon"),
    pytest.param("user:42:admin", id="letters past f and two colons"),
    pytest.param("550e8400-e29b-41d4-a716-446655440000", id="a UUID"),
    pytest.param("sk_live_4eC39HqLyjWDarjtT1zdp7dc", id="an API key"),
    pytest.param("alice@example.com", id="an email address"),
    pytest.param("10/8", id="a number and a slash"),
    pytest.param("v1.2.3.4", id="a letter before the numbers"),
]
"""Text of no address's shape: a key, as it always was."""

Control = Callable[[GateKeeper, str], object]

CONTROLS = [
    pytest.param(lambda gk, text: gk.ban(text, 60), id="ban"),
    pytest.param(lambda gk, text: gk.ban(text, 60, force=True), id="ban with force"),
    pytest.param(lambda gk, text: gk.unban(text), id="unban"),
    pytest.param(lambda gk, text: gk.banned_for(text), id="banned_for"),
    pytest.param(lambda gk, text: gk.reset(text), id="reset"),
    pytest.param(lambda gk, text: gk.reset(text, scope="export"), id="reset a scope"),
    pytest.param(lambda gk, text: gk.usage(text), id="usage"),
]


def operator_app(
    make_app: AppFactory, storage: Storage, **options: object
) -> tuple[Flask, GateKeeper]:
    """``/`` under 20 requests a second, the seed's ban rule, clients named by
    ``X-Forwarded-For`` behind the proxy ``PROXY``, ``ALLOWED`` never limited; ``/api``
    keyed by the ``key`` query argument."""
    app, gk = make_app(
        base={},
        storage=storage,
        rate_limit_rules="20/second",
        ban_rule={"count": 3, "window": 10, "duration": 600},
        ip_header="x-forwarded-for",
        routes=(index,),
        **{"trusted_proxies": [PROXY], "allowlist": [ALLOWED], **options},
    )

    @app.route("/api")
    @gk.specific("10/second", key_func=lambda: request.args.get("key"))
    def api() -> str:
        return "data"

    return app, gk


def status(app: Flask, ip: str, key: str | None = None) -> int:
    """The status of a request from ``ip`` through the trusted proxy (to ``/api`` as the
    client ``key``, when given)."""
    path, query = ("/", {}) if key is None else ("/api", {"key": key})
    headers = {"X-Forwarded-For": ip}
    environ = {"REMOTE_ADDR": PROXY}
    return (
        app.test_client()
        .get(path, query_string=query, headers=headers, environ_base=environ)
        .status_code
    )


# --- text written as an address that is not one ----------------------------------------------


@pytest.mark.parametrize("control", CONTROLS)
@pytest.mark.parametrize(("text", "reason"), MALFORMED)
def test_every_control_refuses_an_address_that_does_not_parse(
    make_app: AppFactory, storage: Storage, control: Control, text: str, reason: str
) -> None:
    app, gk = operator_app(make_app, storage)
    with app.app_context(), pytest.raises(ClientNameError) as raised:
        control(gk, text)
    message = str(raised.value)
    assert message.startswith(f"{text!r} is written as an IP address or network but is not one")
    assert reason in message
    assert message.endswith(f"a key_func key of this text is named 'key:{text}'")
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, ConfigError)
    with app.app_context():
        assert gk.bans() == {}


@pytest.mark.parametrize(("text", "reason"), MALFORMED)
def test_report_and_limit_never_fail_on_it(
    make_app: AppFactory,
    storage: Storage,
    caplog: pytest.LogCaptureFixture,
    text: str,
    reason: str,
) -> None:
    """``report(ip=...)`` and ``limit(key=...)`` often carry a request's own text (an
    address from a log line, a user name): never a 500. A report names nobody, and says
    so; a limit counts the text as the key a ``key_func`` returning it would be."""
    app, gk = operator_app(make_app, storage)
    with app.app_context(), caplog.at_level(logging.WARNING, logger="flask_gatekeeper"):
        assert gk.report(ip=text) is False
        assert gk.bans() == {}
    assert "gk.report(ip=...) reports nothing" in caplog.text
    assert reason in caplog.text
    limit = gk.limit("2/minute", scope="export", key=text)
    with app.test_request_context():
        limit.check()
        limit.check()
        with pytest.raises(RateLimited) as refused:
            limit.check()
    assert refused.value.client == f"key:{text}"


@pytest.mark.parametrize("text", KEYS)
def test_text_of_no_address_shape_is_a_key(
    make_app: AppFactory, storage: Storage, text: str
) -> None:
    app, gk = operator_app(make_app, storage)
    assert not written_as_address(text)
    assert key_of(text) == text  # shown as the app wrote it
    with app.app_context():
        gk.ban(text, 60)
        assert gk.bans() == {text: 60}
    assert status(app, "203.0.113.9", key=text) == 403
    assert status(app, "203.0.113.9", key="someone else") == 200


@pytest.mark.parametrize(("text", "reason"), MALFORMED)
def test_a_key_of_that_text_is_named_by_the_key_form(
    make_app: AppFactory, storage: Storage, text: str, reason: str
) -> None:
    app, gk = operator_app(make_app, storage)
    assert key_of(text) == f"key:{text}"  # what the library shows for it
    with app.app_context():
        gk.ban(f"key:{text}", 60)
        assert gk.bans() == {f"key:{text}": 60}
    assert status(app, "203.0.113.9", key=text) == 403
    with app.app_context():
        (shown,) = gk.bans()
        assert gk.banned_for(shown) == 60  # the text shown names the client
        assert gk.unban(shown)
    assert status(app, "203.0.113.9", key=text) == 200


# --- bans that would refuse too much ---------------------------------------------------------


UNSAFE = [
    pytest.param("0.0.0.0/0", "0.0.0.0/0 is wider than /8", "198.51.100.7", id="every IPv4"),
    pytest.param("8.0.0.0/7", "8.0.0.0/7 is wider than /8", "9.1.2.3", id="IPv4 /7"),
    pytest.param("::/0", "::/0 is wider than /32", "2001:db8::1", id="every IPv6"),
    pytest.param("2001:db8::/31", "2001:db8::/31 is wider than /32", "2001:db9::1", id="IPv6 /31"),
    pytest.param("::ffff:0.0.0.0/96", "0.0.0.0/0 is wider than /8", "198.51.100.7", id="mapped"),
    pytest.param(
        "10.0.0.0/24", "10.0.0.0/24 holds a trusted proxy", "10.0.0.7", id="holds the proxy"
    ),
    pytest.param("10.0.0.0/8", "10.0.0.0/8 holds a trusted proxy", "10.9.9.9", id="a /8 too"),
    pytest.param(
        "192.0.2.0/24", "192.0.2.0/24 holds allow-listed addresses", "192.0.2.99", id="holds"
    ),
    pytest.param(
        "192.0.2.4/30", "192.0.2.4/30 holds allow-listed addresses", "", id="inside allowed"
    ),
]


@pytest.mark.parametrize(("text", "reason", "inside"), UNSAFE)
def test_an_unsafe_ban_needs_force(
    make_app: AppFactory, storage: Storage, text: str, reason: str, inside: str
) -> None:
    app, gk = operator_app(make_app, storage)
    with app.app_context():
        with pytest.raises(UnsafeBanError) as raised:
            gk.ban(text, 60)
        assert str(raised.value).startswith(f"ban({text!r}): {reason}")
        assert str(raised.value).endswith(
            "if that is what you mean, give force=True (flask gatekeeper ban --force)"
        )
        assert isinstance(raised.value, ValueError)
        assert gk.bans() == {}
        gk.ban(text, 60, force=True)
        (key,) = gk.bans()
        assert reason.startswith(key)
    if inside:  # an address inside it that the ban refuses
        assert status(app, inside) == 403
    assert status(app, "192.0.2.1") == 200  # allow-listed, banned or not


SAFE = [
    pytest.param("11.0.0.0/8", "11.1.2.3", {}, id="a /8"),
    pytest.param("2001:db8::/32", "2001:db8:7::1", {}, id="an IPv6 /32"),
    pytest.param("10.0.1.0/24", "10.0.1.7", {}, id="beside the proxy"),
    pytest.param("192.0.2.16/28", "192.0.2.17", {}, id="beside the allowed network"),
    pytest.param(PROXY, PROXY, {}, id="the proxy alone: one client, no network"),
    pytest.param("192.0.2.1", "", {}, id="an allow-listed address alone"),
    pytest.param("10.0.0.0/24", "10.0.0.7", {"trusted_proxies": 1}, id="proxies as a count"),
]


@pytest.mark.parametrize(("text", "inside", "options"), SAFE)
def test_a_safe_ban_needs_no_force(
    make_app: AppFactory, storage: Storage, text: str, inside: str, options: dict[str, object]
) -> None:
    app, gk = operator_app(make_app, storage, **options)
    with app.app_context():
        gk.ban(text, 60)
        assert len(gk.bans()) == 1
    if inside:
        assert status(app, inside) == 403


def test_force_only_bans_and_other_controls_need_none(
    make_app: AppFactory, storage: Storage
) -> None:
    app, gk = operator_app(make_app, storage)
    with app.app_context():
        gk.ban("0.0.0.0/0", 60, force=True)
        assert gk.banned_for("0.0.0.0/0") == 60
        assert gk.unban("0.0.0.0/0")
        gk.reset("10.0.0.0/24")  # unsafe to ban, not to forget
        assert gk.report(ip="0.0.0.0/0") is False  # one report of three
    assert status(app, "198.51.100.7") == 200


@given(
    ip=st.ip_addresses(v=4),
    length=st.integers(0, 32),
    members=st.lists(st.tuples(st.ip_addresses(v=4), st.integers(0, 32)), max_size=4),
)
def test_an_address_set_overlaps_what_ipaddress_says(
    ip: ipaddress.IPv4Address, length: int, members: list[tuple[ipaddress.IPv4Address, int]]
) -> None:
    network = ipaddress.IPv4Network((ip, length), strict=False)
    nets = [ipaddress.IPv4Network((address, bits), strict=False) for address, bits in members]
    assert AddressSet(nets).overlaps(network) == any(network.overlaps(n) for n in nets)


# --- the lists read at start-up ------------------------------------------------------------------


LIST_ENTRIES = [
    pytest.param("300.1.1.0/24", "Octet 300 (> 255) not permitted in '300.1.1.0'", id="octet"),
    pytest.param("203.0.113.0/33", "'33' is not a valid netmask", id="IPv4 prefix"),
    pytest.param("2001:db8::/129", "'129' is not a valid netmask", id="IPv6 prefix"),
    pytest.param(
        "010.0.0.1", "Leading zeros are not permitted in '010' in '010.0.0.1'", id="leading zero"
    ),
    pytest.param(
        "203.0.113.7/24",
        "203.0.113.7/24 has host bits set: the network is 203.0.113.0/24",
        id="host bits",
    ),
    pytest.param(
        "203.0.113.7:80", "Only decimal digits permitted in '7:80' in '203.0.113.7:80'", id="a port"
    ),
    pytest.param("user:42", "Expected 4 octets in 'user:42'", id="a key"),
]


@pytest.mark.parametrize("option", ["allowlist", "denylist", "trusted_proxies"])
@pytest.mark.parametrize(("entry", "reason"), LIST_ENTRIES)
def test_the_lists_refuse_the_same_shapes_at_start_up(
    make_app: AppFactory, option: str, entry: str, reason: str
) -> None:
    expected = f"{option}: {entry!r} is not an IP address or network ({reason})"
    with pytest.raises(ConfigError) as raised:
        make_app(base={}, **{option: ["192.0.2.1", entry]})
    assert str(raised.value) == expected
    with pytest.raises(ConfigError) as raised:
        make_app(base={}, config={f"GATEKEEPER_{option.upper()}": f"192.0.2.1,{entry}"})
    assert str(raised.value) == f"GATEKEEPER_{option.upper()}{expected[len(option) :]}"


# --- the command line -------------------------------------------------------------------------


def run(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(gatekeeper, list(args))


@pytest.fixture
def cli_app(make_app: AppFactory, clock: FakeClock) -> tuple[Flask, GateKeeper]:
    """``operator_app`` on a storage the CLI treats as shared (as it would Redis)."""
    return operator_app(make_app, FlakyStorage(clock=clock))


@pytest.mark.parametrize("command", ["ban", "unban", "reset", "status"])
@pytest.mark.parametrize(("text", "reason"), MALFORMED[:3])
def test_the_cli_refuses_an_address_that_does_not_parse(
    cli_app: tuple[Flask, GateKeeper], command: str, text: str, reason: str
) -> None:
    app, gk = cli_app
    result = run(app, command, text)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {text!r} is written as an IP address or network")
    assert result.stderr.endswith(f"a key_func key of this text is named 'key:{text}'\n")
    assert reason in result.stderr
    assert "Traceback" not in result.output
    with app.app_context():
        assert gk.bans() == {}
    assert run(app, "ban", f"key:{text}").stdout == f"banned key:{text} for 600s\n"


def test_the_cli_bans_a_wide_network_only_with_force(cli_app: tuple[Flask, GateKeeper]) -> None:
    app, _ = cli_app
    result = run(app, "ban", "0.0.0.0/0", "--duration", "60")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: ban('0.0.0.0/0'): 0.0.0.0/0 is wider than /8: its ban would refuse 2^32 "
        "addresses; if that is what you mean, give force=True (flask gatekeeper ban --force)\n"
    )
    assert run(app, "bans").stdout == "no active bans\n"
    result = run(app, "ban", "10.0.0.0/24", "--duration", "60")
    assert (result.exit_code, "holds a trusted proxy" in result.stderr) == (1, True)

    result = run(app, "ban", "0.0.0.0/0", "--duration", "60", "--force")
    assert (result.exit_code, result.stdout) == (0, "banned 0.0.0.0/0 for 60s\n")
    assert status(app, "198.51.100.7") == 403


def test_every_error_of_a_manual_control_is_one_library_error() -> None:
    # the CLI turns GateKeeperError into one "Error:" line; both new errors are one
    assert issubclass(ClientNameError, GateKeeperError)
    assert issubclass(UnsafeBanError, GateKeeperError)
