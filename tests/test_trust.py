"""Keys and bans that hold under attack: an attacker who picks the key text, the timing or
the ban table's fill level finds nothing to exploit. One test per promise, on both
storages where both apply (the ``storage`` fixture runs memory and Redis)."""

from __future__ import annotations

from typing import Any, Optional

import pytest
from flask import Flask, request
from flask.testing import FlaskClient

from flask_gatekeeper import BanRule, ConfigError, GateKeeper, MemoryStorage, Rule, signals
from flask_gatekeeper.decision import GLOBAL_SCOPE
from flask_gatekeeper.storage import Storage
from flask_gatekeeper.storage.plan import Scope
from flask_gatekeeper.testing import FakeClock, FlakyStorage
from flask_gatekeeper.units import MAX_SECONDS
from support import AppFactory, gatekeeper_logs

HOSTILE_KEYS = [
    pytest.param("k" * 200, id="longer than 128"),
    pytest.param("203.0.113.7", id="looks like an IPv4 address"),
    pytest.param("2001:db8::1", id="looks like an IPv6 address"),
    pytest.param("203.0.113.0/24", id="looks like a network"),
    pytest.param("2001:db8::/64", id="looks like an IPv6 client's network"),
    pytest.param("300.1.1.0/24", id="written as a network, not one"),
    pytest.param("00:1a:2b:3c:4d:5e", id="written as an IPv6 address, not one"),
    pytest.param(" spaced key ", id="spaces"),
    pytest.param("key:alice", id="starts with key:"),
    pytest.param("sha256:abc", id="starts with sha256:"),
    pytest.param("victim\x1e", id="a memory separator"),
    pytest.param("line\nvictim\t600s left", id="a newline"),
    pytest.param("back\\slash", id="a backslash"),
    pytest.param("{tag}%", id="braces and percent"),
]


def keyed_app(make_app: AppFactory, storage: Storage) -> tuple[Flask, GateKeeper]:
    """The seed's ban rule, 3 requests a minute, every client named by the ``key`` query
    argument (any text, newlines included)."""
    return make_app(
        base={},
        storage=storage,
        ban_rule={"count": 3, "window": 10, "duration": 600},
        rate_limit_rules=[{"count": 3, "window": 60}],
        key_func=lambda: request.args.get("key"),
    )


def as_key(client: FlaskClient, key: str, path: str = "/") -> int:
    method = client.post if path == "/login" else client.get
    return method(path, query_string={"key": key}).status_code


# --- 1. a key is one client everywhere --------------------------------------------------------


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_a_key_shown_by_the_library_names_that_client_in_every_control(
    make_app: AppFactory, storage: Storage, key: str
) -> None:
    app, gk = keyed_app(make_app, storage)
    client = app.test_client()
    assert [as_key(client, key, "/login") for _ in range(3)] == [401, 401, 401]  # banned
    with app.app_context():
        (shown,) = gk.bans()  # the text the library shows for this client
        assert gk.banned_for(shown) == 600
        assert gk.unban(shown)
    assert as_key(client, key) == 429  # the three logins counted toward 3 in 60 s
    with app.app_context():
        gk.reset(shown)
    assert as_key(client, key) == 200
    with app.app_context():
        gk.ban(shown, 30)
    assert as_key(client, key) == 403
    with app.app_context():
        gk.reset(shown)
        assert not gk.report(ip=shown)
        assert not gk.report(ip=shown)
        assert gk.report(ip=shown)  # three reports through report(ip=...) ban it
    assert as_key(client, key) == 403


@pytest.mark.parametrize("refusal", ["rate limited", "banned"])
def test_the_refusal_body_names_the_client_as_the_controls_read_it(
    make_app: AppFactory, storage: Storage, refusal: str
) -> None:
    app, gk = keyed_app(make_app, storage)
    client = app.test_client()
    key = "203.0.113.7"  # a key that reads as an address: shown as key:203.0.113.7
    for _ in range(3):
        as_key(client, key, "/login")
    if refusal == "rate limited":
        with app.app_context():
            gk.unban(f"key:{key}")
    body = client.get("/", query_string={"key": key}).text
    shown = body.split()[1]
    assert shown == f"key:{key}"
    with app.app_context():
        gk.reset(shown)
    assert as_key(client, key) == 200


def test_a_key_that_reads_as_an_address_is_not_that_address(
    make_app: AppFactory, storage: Storage
) -> None:
    app, gk = keyed_app(make_app, storage)
    client = app.test_client()
    with app.app_context():
        gk.ban("203.0.113.7", 60)  # the address
    assert as_key(client, "203.0.113.7") == 200  # a user who calls itself that address
    with app.app_context():
        gk.ban("key:203.0.113.7", 60)
    assert as_key(client, "203.0.113.7") == 403


# --- 2. no key can reach another client's state ---------------------------------------------------


@pytest.mark.parametrize("suffix", ["\x1e", "\x1f", "\x1d", ":reports", ":ban", "\x00"])
def test_no_key_reaches_another_clients_reports_or_counters(storage: Storage, suffix: str) -> None:
    ban_rule = BanRule(1, 60, 600)
    route = Scope.of("route", (Rule(1, 60),))
    assert storage.hit("victim" + suffix, [route]).admitted  # the attacker's one request
    assert storage.hit("victim", [route]).admitted  # the victim's counter is its own
    assert storage.hit("victim", [Scope.of("route" + suffix, (Rule(1, 60),))]).admitted
    assert storage.report("victim" + suffix, ban_rule) == 600  # the attacker's own ban
    assert storage.banned_for("victim") == 0
    storage.reset("victim" + suffix)
    assert not storage.hit("victim", [route]).admitted  # reset touched only the attacker


# --- 3. a ban that report() says it set is in force ------------------------------------------


def test_a_new_ban_survives_a_full_ban_table(clock: FakeClock) -> None:
    storage = MemoryStorage(max_clients=10, clock=clock)
    for number in range(10):  # an attacker holds every slot with a long ban
        storage.ban(f"attacker-{number}", 86400)
    short = BanRule(1, 60, 5)
    assert storage.report("first-offender", short) == 5
    assert storage.banned_for("first-offender") == 5
    assert not storage.hit("first-offender", []).admitted


def test_report_that_bans_is_in_force_through_the_app(
    make_app: AppFactory, clock: FakeClock
) -> None:
    app, gk = make_app(storage=MemoryStorage(max_clients=4, clock=clock))
    with app.app_context():
        for number in range(4):
            gk.ban(f"10.9.0.{number}", 86400)
        assert not gk.report(ip="10.0.0.1")
        assert not gk.report(ip="10.0.0.1")
        assert gk.report(ip="10.0.0.1")
        assert gk.banned_for("10.0.0.1") == 600


# --- 4. escalation cannot overflow ----------------------------------------------------------------


def test_escalation_is_capped_at_the_longest_ban_in_both_storages(
    storage: Storage, clock: FakeClock
) -> None:
    rule = BanRule(1, 60, 60, factor=1000, forget_after=MAX_SECONDS)
    durations = []
    for _ in range(8):
        durations.append(storage.report("c", rule))
        assert storage.banned_for("c") == durations[-1]
        clock.advance(durations[-1] or 0)  # the ban ends; the history stays
    assert durations == [60, 60_000, 60_000_000, *[MAX_SECONDS] * 5]


def test_escalation_with_max_duration_caps_there(storage: Storage, clock: FakeClock) -> None:
    rule = BanRule(1, 60, 60, factor=1000, max_duration=3600)
    assert storage.report("c", rule) == 60
    clock.advance(60)
    assert storage.report("c", rule) == 3600


# --- 5. a manual ban does not revive forgotten history ------------------------------------


def test_a_manual_ban_after_forget_after_starts_history_afresh(
    storage: Storage, clock: FakeClock
) -> None:
    rule = BanRule(1, 60, 10, factor=2, forget_after=100)
    assert storage.report("c", rule) == 10
    clock.advance(10 + 100 + 1)  # the ban and its history are over
    storage.ban("c", 5)
    clock.advance(5)
    assert storage.report("c", rule) == 10  # not 20: the old strike is forgotten


def test_a_manual_ban_keeps_history_still_remembered(storage: Storage, clock: FakeClock) -> None:
    rule = BanRule(1, 60, 10, factor=2, forget_after=100)
    assert storage.report("c", rule) == 10
    clock.advance(20)
    storage.ban("c", 5)
    clock.advance(5)
    assert storage.report("c", rule) == 20  # the strike is still remembered


# --- 6. Retry-After is never shorter than the true wait ---------------------------------------


@pytest.mark.parametrize("window", [1.0000004, 2.5000001, 0.9999996])
def test_waiting_retry_after_is_always_enough(
    storage: Storage, clock: FakeClock, window: float
) -> None:
    scopes = [Scope.of(GLOBAL_SCOPE, (Rule(1, window),))]
    clock.set(1000.0000003)  # not on a microsecond either
    assert storage.hit("c", scopes).admitted
    refused = storage.hit("c", scopes)
    assert not refused.admitted
    assert refused.retry_after >= window
    clock.advance(refused.retry_after)
    assert storage.hit("c", scopes).admitted


def test_retry_after_header_is_enough_for_a_window_just_over_a_second(
    make_app: AppFactory, storage: Storage, clock: FakeClock
) -> None:
    app, _ = make_app(base={}, storage=storage, rate_limit_rules=[Rule(1, 1.0000004)])
    client = app.test_client()
    assert client.get("/").status_code == 200
    refused = client.get("/")
    assert refused.headers["Retry-After"] == "2"
    clock.advance(int(refused.headers["Retry-After"]))
    assert client.get("/").status_code == 200


# --- 7. every rule that starts is a rule that works -------------------------------------------


@pytest.mark.parametrize("strategy", ["sliding-log", "fixed-window", "sliding-window", "gcra"])
def test_a_window_below_a_microsecond_fails_at_start_up(strategy: str) -> None:
    rules = [{"count": 2, "window": 1e-7, "strategy": strategy}]
    with pytest.raises(ConfigError, match=r"rate_limit_rules\[0\]: 'window'.*1e-07"):
        GateKeeper(Flask(__name__), rate_limit_rules=rules)


def test_a_one_microsecond_window_works(storage: Storage, clock: FakeClock) -> None:
    scopes = [Scope.of(GLOBAL_SCOPE, (Rule(2, 1e-6, "gcra"),))]
    assert storage.hit("c", scopes).admitted
    assert storage.hit("c", scopes).admitted
    assert not storage.hit("c", scopes).admitted
    clock.advance(1e-6)
    assert storage.hit("c", scopes).admitted


# --- 8 and 9. a flushed script is not an outage; any redis-py client works ------------------


@pytest.mark.redis
def test_a_server_that_never_keeps_scripts_still_limits_exactly(
    make_app: AppFactory, redis_url: str
) -> None:
    """A subclass of ``redis.Redis`` (accepted as a client) that flushes the scripts
    before every call, as a failover to a replica without them would."""
    from redis import Redis

    class Forgetful(Redis):
        def evalsha(self, *args: Any) -> Any:
            self.script_flush()
            return super().evalsha(*args)

    client = Forgetful.from_url(redis_url)
    client.flushdb()
    app, gk = make_app(base={}, storage=client, rate_limit_rules=[{"count": 2, "window": 60}])
    test_client = app.test_client()
    assert [test_client.get("/").status_code for _ in range(3)] == [200, 200, 429]
    with app.app_context():
        assert gk.stats()["storage_errors"] == 0
        gk.ban("10.0.0.5", 60)
        assert 59 < gk.banned_for("10.0.0.5") <= 60  # the server's clock runs


# --- 11. a signal receiver that raises never turns a request into a 500 ---------------------


def test_a_raising_signal_receiver_is_logged_and_the_decision_stands(
    make_app: AppFactory, logs: pytest.LogCaptureFixture
) -> None:
    app, gk = make_app(base={}, rate_limit_rules=[{"count": 1, "window": 60}])

    def broken_receiver(sender: Flask, **kwargs: Any) -> None:
        raise RuntimeError("the app's bug")

    called: list[Optional[str]] = []

    def later_receiver(sender: Flask, **kwargs: Any) -> None:
        called.append(kwargs.get("client"))

    client = app.test_client()
    with (
        signals.request_rate_limited.connected_to(broken_receiver, app),
        signals.request_rate_limited.connected_to(later_receiver, app),
        signals.client_banned.connected_to(broken_receiver, app),
    ):
        assert client.get("/").status_code == 200
        assert client.get("/").status_code == 429  # still refused, not a 500
        with app.app_context():
            gk.ban("10.0.0.5", 60)  # still banned
            assert gk.banned_for("10.0.0.5") == 60
    assert called == ["127.0.0.1"]  # the receivers after the broken one still ran
    errors = [entry for entry in gatekeeper_logs(logs) if entry[0] == "ERROR"]
    assert len(errors) == 2
    assert all("broken_receiver" in message for _, message in errors)


# --- 10. listings cannot be forged, secrets do not leak -------------------------------------


def test_cli_listing_escapes_control_characters_and_reads_them_back(
    make_app: AppFactory, clock: FakeClock
) -> None:
    from flask_gatekeeper.cli import gatekeeper

    app, gk = make_app(base={}, storage=FlakyStorage(MemoryStorage(clock=clock)))
    forged = "evil\n203.0.113.7\t600s left"
    with app.app_context():
        gk.ban(forged, 60)
    runner = app.test_cli_runner()
    listing = runner.invoke(gatekeeper, ["bans"]).stdout
    # one line, the key escaped
    assert (
        listing == "evil\\n203.0.113.7\\t600s left\t60s left\tmanual\tstarted 0s ago\t0 strikes\n"
    )
    shown = listing.split("\t")[0]
    assert runner.invoke(gatekeeper, ["unban", shown]).stdout == f"unbanned {shown}\n"
    with app.app_context():
        assert gk.banned_for(forged) == 0


def test_no_command_prints_a_redis_password(make_app: AppFactory) -> None:
    pytest.importorskip("redis")
    from flask_gatekeeper.cli import gatekeeper

    app, _ = make_app(base={}, storage="redis://:hunter2@127.0.0.1:1/0")
    runner = app.test_cli_runner()
    for command in (["config"], ["status"]):
        output = runner.invoke(gatekeeper, command).output
        assert "hunter2" not in output
    assert "redis://:***@127.0.0.1:1/0" in runner.invoke(gatekeeper, ["config"]).output


def test_log_lines_escape_control_characters(
    make_app: AppFactory, logs: pytest.LogCaptureFixture
) -> None:
    app, gk = make_app(base={})
    with app.app_context():
        gk.ban("evil\nINFO forged line", 60)
    assert ("INFO", "banned evil\\nINFO forged line for 60s (manual)") in gatekeeper_logs(logs)
