"""Jails: one ban rule per kind of offence (``ban_rules``), beside ``ban_rule``, the
default offence. Each offence counts its own reports; a ban by any of them refuses the
client everywhere, and says which offence made it. On both storages."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Optional

import pytest
from flask import Flask, request
from flask.testing import FlaskClient

from flask_gatekeeper import (
    BanRule,
    ConfigError,
    ConfigTypeError,
    Decision,
    GateKeeper,
    MemoryStorage,
)
from flask_gatekeeper.cli import gatekeeper
from flask_gatekeeper.decision import DEFAULT_OFFENCE, BanDetail
from flask_gatekeeper.storage import Storage
from flask_gatekeeper.storage.plan import Scope
from flask_gatekeeper.testing import FakeClock, FlakyStorage
from support import AppFactory, gatekeeper_logs, recording

IP = "10.0.0.1"
OTHER = "10.0.0.2"
DEFAULT_RULE = {"count": 3, "window": 60, "duration": 600}
LOGIN = BanRule(2, 600, 3600)
SCANNER = {"count": 2, "window": 60, "duration": 86400}
JAILS: dict[str, Any] = {"ban_rule": DEFAULT_RULE, "ban_rules": {"login": LOGIN}}


def jailed_app(make: AppFactory, **options: Any) -> tuple[Flask, GateKeeper]:
    """``/`` for anyone; ``/login`` reports a wrong password as a "login" offence and
    ``/report`` reports the default offence."""
    app, gk = make(**{**JAILS, **options})

    @app.route("/")
    def index() -> str:
        return "hello"

    @app.route("/login", methods=["POST"])
    def login() -> tuple[str, int]:
        if request.form.get("password") != "right":
            gk.report(offence="login")
            return "bad password", 401
        return "welcome", 200

    @app.route("/report")
    def report() -> str:
        return "banned" if gk.report() else "reported"

    return app, gk


def get(client: FlaskClient, path: str = "/", ip: str = IP) -> int:
    return client.get(path, environ_base={"REMOTE_ADDR": ip}).status_code


def bad_login(client: FlaskClient, ip: str = IP) -> int:
    response = client.post("/login", data={"password": "x"}, environ_base={"REMOTE_ADDR": ip})
    return response.status_code


# --- each offence on its own, one ban for all -------------------------------------------


def test_each_offence_counts_its_own_reports(make: AppFactory) -> None:
    app, gk = jailed_app(make)
    client = app.test_client()
    assert [get(client, "/report") for _ in range(2)] == [200, 200]  # 2 of 3 default
    assert bad_login(client) == 401  # 1 of 2 login: 3 reports in all, no ban
    assert get(client) == 200
    assert bad_login(client) == 401  # the second login report bans
    assert get(client) == 403
    with app.app_context():
        assert gk.bans(detail=True) == {IP: BanDetail(3600, 0, "reports", 1, "login")}


def test_a_ban_by_any_offence_refuses_everywhere_and_names_its_rule(make: AppFactory) -> None:
    app, gk = jailed_app(make)

    @app.route("/alone")
    @gk.specific(standalone=True)
    def alone() -> str:
        return "alone"

    client = app.test_client()
    assert [bad_login(client) for _ in range(2)] == [401, 401]
    for path in ("/", "/alone", "/report"):
        response = client.get(path, environ_base={"REMOTE_ADDR": IP})
        assert response.status_code == 403
        assert response.headers["Retry-After"] == "3600"
        assert response.text == (
            f"ip {IP} banned for 3600s (login: reported 2 times in a 600s window)\n"
        )
    assert get(client, ip=OTHER) == 200


def test_the_default_offence_is_refused_as_before(make: AppFactory) -> None:
    app, gk = jailed_app(make)
    client = app.test_client()
    assert [get(client, "/report") for _ in range(3)] == [200, 200, 200]
    response = client.get("/", environ_base={"REMOTE_ADDR": IP})
    assert response.text == f"ip {IP} banned for 600s (reported 3 times in a 60s window)\n"
    with app.app_context():
        assert gk.bans(detail=True)[IP].offence == DEFAULT_OFFENCE


def test_a_longer_ban_stands_with_its_offence(make: AppFactory, clock: FakeClock) -> None:
    app, gk = jailed_app(make)
    with app.app_context():
        assert [gk.report(IP, offence="login") for _ in range(2)] == [False, True]
        clock.advance(100)
        assert [gk.report(IP) for _ in range(3)] == [False, False, True]  # 600 s < 3500 s
        assert gk.bans(detail=True) == {IP: BanDetail(3500, 100, "reports", 2, "login")}


def test_report_of_an_unknown_offence_is_a_clear_error(make: AppFactory) -> None:
    app, gk = jailed_app(make)
    with app.app_context():
        with pytest.raises(ValueError, match=r"report\(offence='logn'\).*'default', 'login'"):
            gk.report(IP, offence="logn")
        assert gk.report(IP, offence=DEFAULT_OFFENCE) is False  # the default, by its name


def test_without_ban_rule_only_the_named_offences_count(
    make: AppFactory, logs: pytest.LogCaptureFixture
) -> None:
    app, gk = make(ban_rules={"login": LOGIN})
    with app.app_context():
        assert [gk.report(IP, offence="login") for _ in range(2)] == [False, True]
        assert gk.report(OTHER) is False  # the default offence has no rule: a warning
        with pytest.raises(ValueError, match=r"it counts 'login'"):
            gk.report(IP, offence="scanner")
    assert any("no ban_rule" in message for _, message in gatekeeper_logs(logs))


# --- automatic reports: report_when and 429s --------------------------------------------


def test_report_when_counts_toward_its_offence(make: AppFactory) -> None:
    app, gk = make(
        ban_rule=DEFAULT_RULE,
        ban_rules={"scanner": SCANNER, "login": LOGIN},
        report_when=lambda response: response.status_code == 404,
        offence="scanner",
    )

    @app.route("/login", methods=["POST"])
    @gk.specific(report_when=lambda response: response.status_code == 401, offence="login")
    def login() -> tuple[str, int]:
        return "bad password", 401

    client = app.test_client()
    assert bad_login(client) == 401  # 1 of 2 login
    assert [get(client, "/missing") for _ in range(3)] == [404, 404, 403]  # 2 of 2 scanner
    with app.app_context():
        assert gk.bans(detail=True)[IP].offence == "scanner"
        assert gk.bans(detail=True)[IP].reason == "response"
    assert [bad_login(client, OTHER) for _ in range(3)] == [401, 401, 403]
    with app.app_context():
        assert gk.bans(detail=True)[OTHER].offence == "login"


def test_a_routes_429s_count_toward_its_offence_others_toward_the_default(
    make: AppFactory,
) -> None:
    app, gk = make(
        ban_rule={"count": 3, "window": 60, "duration": 600},
        ban_rules={"scanner": SCANNER},
        report_rate_limited=True,
    )

    @app.route("/search")
    @gk.specific("1/minute", offence="scanner")
    def search() -> str:
        return "results"

    @app.route("/export")
    @gk.specific("1/minute")
    def export() -> str:
        return "data"

    client = app.test_client()
    assert [get(client, "/export") for _ in range(3)] == [200, 429, 429]  # 2 of 3 default
    assert [get(client, "/search") for _ in range(3)] == [200, 429, 429]  # 2 of 2 scanner
    assert get(client, "/export") == 403
    with app.app_context():
        detail = gk.bans(detail=True)[IP]
        assert (detail.reason, detail.offence, detail.left) == ("rate_limit", "scanner", 86400)


def test_the_apps_offence_and_gk_limit_leave_429s_to_the_default_offence(
    make: AppFactory,
) -> None:
    """The app's ``offence`` is report_when's only: a 429 of a route without an offence
    of its own, and one of ``gk.limit`` in a route that has one, count toward the
    default offence."""
    app, gk = make(
        ban_rule={"count": 3, "window": 60, "duration": 600},
        ban_rules={"scanner": SCANNER, "login": LOGIN},
        report_rate_limited=True,
        offence="scanner",
    )

    @app.route("/export")
    @gk.specific("1/minute")
    def export() -> str:
        return "data"

    @app.route("/login", methods=["POST"])
    @gk.specific(offence="login")
    def login() -> str:
        with gk.limit("1/minute", scope="login attempts"):
            return "welcome"

    client = app.test_client()
    assert [get(client, "/export") for _ in range(2)] == [200, 429]  # 1 of 3 default
    posts = [client.post("/login", environ_base={"REMOTE_ADDR": IP}) for _ in range(2)]
    assert [response.status_code for response in posts] == [200, 429]  # 2 of 3 default
    assert [get(client, "/export") for _ in range(2)] == [429, 403]  # 3 of 3 default: banned
    with app.app_context():
        detail = gk.bans(detail=True)[IP]
    assert (detail.reason, detail.offence, detail.left) == ("rate_limit", "default", 600)


# --- escalation: one history per client ----------------------------------------------


def test_escalation_is_shared_by_the_offences_each_ban_by_its_own_rule(
    make: AppFactory, clock: FakeClock
) -> None:
    app, gk = make(
        ban_rule={"count": 1, "window": 60, "duration": 100, "factor": 3},
        ban_rules={"login": BanRule(1, 60, 1000, factor=2, max_duration=1500)},
    )
    with app.app_context():
        assert gk.report(IP)  # first ban: 100 s
        clock.advance(100)
        assert gk.report(IP, offence="login")  # one ban lately: login's 1000 s x 2
        assert gk.bans(detail=True)[IP] == BanDetail(1500, 0, "reports", 2, "login")
        clock.advance(1500)
        assert gk.report(IP)  # two bans lately, of either offence: 100 s x 3 x 3
        assert gk.bans(detail=True)[IP] == BanDetail(900, 0, "reports", 3, DEFAULT_OFFENCE)


def test_unban_and_reset_forget_every_offences_history(make: AppFactory) -> None:
    app, gk = make(
        ban_rule={"count": 2, "window": 60, "duration": 100, "factor": 2},
        ban_rules={"login": BanRule(2, 60, 100, factor=2)},
    )
    with app.app_context():
        assert [gk.report(IP, offence="login") for _ in range(2)] == [False, True]
        assert gk.unban(IP)
        assert [gk.report(IP, offence="login") for _ in range(2)] == [False, True]
        assert gk.bans(detail=True)[IP].strikes == 1  # the history went with the ban
        assert gk.unban(IP)
        gk.report(IP)
        gk.report(IP, offence="login")
        gk.reset(IP)  # every offence's reports go too
        assert gk.report(IP) is False
        assert gk.report(IP, offence="login") is False
        assert gk.bans() == {}


# --- what operators see: signals, logs, the command line ---------------------------------


def test_signals_and_logs_name_the_offence(
    make: AppFactory, logs: pytest.LogCaptureFixture
) -> None:
    app, gk = jailed_app(make)
    with recording(app) as events, app.app_context():
        gk.report(IP)
        gk.report(IP, offence="login")
        gk.report(IP, offence="login")
    assert events == [
        ("client_reported", {"client": IP, "banned_for": None, "offence": "default"}),
        ("client_reported", {"client": IP, "banned_for": None, "offence": "login"}),
        ("client_reported", {"client": IP, "banned_for": 3600, "offence": "login"}),
        (
            "client_banned",
            {
                "client": IP,
                "duration": 3600,
                "reason": "reports",
                "detail": BanDetail(3600, 0, "reports", 1, "login"),
                "offence": "login",
            },
        ),
    ]
    assert ("INFO", f"banned {IP} for 3600s (reports of offence login)") in gatekeeper_logs(logs)


def test_the_command_line_names_the_offence(make_app: AppFactory, clock: FakeClock) -> None:
    shared = FlakyStorage(clock=clock)  # a storage the CLI takes as shared with the servers
    app, gk = jailed_app(functools.partial(make_app, base={}, routes=()), storage=shared)
    with app.app_context():
        gk.report(IP, offence="login")
        gk.report(IP, offence="login")
        gk.ban(OTHER, 60)
    runner = app.test_cli_runner()
    assert runner.invoke(gatekeeper, ["bans"]).stdout == (
        f"{IP}\t3600s left\treports of login\tstarted 0s ago\t1 strike\n"
        f"{OTHER}\t60s left\tmanual\tstarted 0s ago\t0 strikes\n"
    )
    status = runner.invoke(gatekeeper, ["status"]).stdout.splitlines()
    assert "ban rule: reported 3 times in a 60s window, banned 600s" in status
    assert "ban rule of login: reported 2 times in a 600s window, banned 3600s" in status


def test_status_shows_a_routes_offence(make: AppFactory) -> None:
    app, gk = make(**JAILS)

    @app.route("/login", methods=["POST"])
    @gk.specific(report_when=lambda response: response.status_code == 401, offence="login")
    def login() -> str:
        return "welcome"

    status = app.test_cli_runner().invoke(gatekeeper, ["status"]).stdout.splitlines()
    assert any(line.startswith("route login: offence='login', report_when=") for line in status), (
        status
    )


# --- misconfiguration: at start-up, naming the option ------------------------------------


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (["login"], ConfigTypeError, "expected a dict of offence names and ban rules"),
        ({"": LOGIN}, ConfigError, "'': the offence's name is empty"),
        ({3: LOGIN}, ConfigTypeError, "expected an offence's name (a string), got 3"),
        ({"default": LOGIN}, ConfigError, "'default' is the default offence"),
        ({"login": {"count": 0, "window": 1, "duration": 1}}, ConfigError, "['login']: 'count'"),
        ({"login": "3/minute"}, ConfigTypeError, "['login']: expected a dict"),
    ],
)
@pytest.mark.parametrize("where", ["option", "config"])
def test_bad_ban_rules_fail_at_start_up_naming_the_option(
    value: Any, error: type[Exception], message: str, where: str
) -> None:
    app = Flask(__name__)
    name = "ban_rules" if where == "option" else "GATEKEEPER_BAN_RULES"
    if where == "config":
        app.config[name] = value
    with pytest.raises(error) as raised:
        GateKeeper(app, ban_rules=value if where == "option" else None)
    assert str(raised.value).startswith(f"{name}")
    assert message in str(raised.value)


def test_an_unknown_offence_fails_at_start_up_naming_the_option() -> None:
    with pytest.raises(ConfigError, match=r"^offence: 'scanner' is not an offence.*'login'"):
        GateKeeper(Flask(__name__), ban_rules={"login": LOGIN}, offence="scanner")
    app = Flask(__name__)
    app.config["GATEKEEPER_OFFENCE"] = "default"
    with pytest.raises(ConfigError, match=r"^GATEKEEPER_OFFENCE: 'default' is not an offence"):
        GateKeeper(app, ban_rules={"login": LOGIN})


def test_a_routes_unknown_offence_fails_at_decoration_or_start_up() -> None:
    app = Flask(__name__)
    gk = GateKeeper(app, **JAILS)
    with pytest.raises(ConfigError, match=r"^offence: 'scanner' is not an offence"):
        gk.specific(offence="scanner")
    with pytest.raises(ConfigError, match=r"^offence: the offence's name is empty"):
        gk.specific(offence="")

    later = GateKeeper()
    app = Flask(__name__)

    @app.route("/")
    @later.specific(offence="scanner")
    def index() -> str:
        return "hello"

    with pytest.raises(ConfigError, match=r"^specific\(offence=\.\.\.\): 'scanner' is not an"):
        later.init_app(app)


def test_report_when_of_an_offence_without_a_default_rule_needs_no_ban_rule() -> None:
    app = Flask(__name__)
    gk = GateKeeper(
        app,
        ban_rules={"scanner": SCANNER},
        report_when=lambda response: response.status_code == 404,
        offence="scanner",
    )
    with pytest.raises(ConfigError, match=r"^offence: 'default' is not an offence.*'scanner'"):
        gk.specific(report_when=lambda response: True, offence="default")
    gk.specific(report_when=lambda response: True)  # the app's offence, scanner: no error


def test_a_route_added_later_with_an_unknown_offence_warns_and_counts_the_default(
    logs: pytest.LogCaptureFixture, storage: Storage
) -> None:
    """A mark made before the app had its ``GateKeeper``, on a view added after: neither
    the decorator nor ``init_app`` could check it; its first request logs why."""
    gk = GateKeeper()
    mark = gk.specific(report_when=lambda response: True, offence="scanner")
    app = Flask(__name__)
    app.config.update(GATEKEEPER_BAN_RULE=DEFAULT_RULE, GATEKEEPER_STORAGE_URI=storage)
    gk.init_app(app)

    @app.route("/")
    @mark
    def index() -> str:
        return "hello"

    client = app.test_client()
    assert [get(client) for _ in range(4)] == [200, 200, 200, 403]  # the default's 3
    assert any("specific(offence='scanner')" in m for _, m in gatekeeper_logs(logs))


# --- Redis: where each offence's reports live ---------------------------------------


@pytest.mark.redis
def test_redis_keeps_each_offences_reports_under_the_clients_hash_tag(
    raw_redis: Any, clock: FakeClock
) -> None:
    from flask_gatekeeper.storage.redis import RedisStorage

    storage = RedisStorage(raw_redis, clock=clock)
    storage.report(IP, LOGIN)
    storage.report(IP, LOGIN, offence="login")
    assert storage.report(IP, LOGIN, offence="login") == 3600
    storage.report(IP, LOGIN, offence="scan:ner")
    keys = sorted(key.decode() for key in raw_redis.scan_iter())
    assert keys == [
        f"gatekeeper:{{{IP}}}:ban",
        f"gatekeeper:{{{IP}}}:reports",
        f"gatekeeper:{{{IP}}}:reports:scan:ner",  # login's went with its ban
    ]
    assert raw_redis.hget(f"gatekeeper:{{{IP}}}:ban", "o") == b"login"


# --- storages: of the app's own, and the local fallback during an outage ----------------


class StorageBeforeOffences(MemoryStorage):
    """A storage of the app's own written before offences: no ``offence`` parameter."""

    def hit(  # type: ignore[override]
        self,
        client: str,
        scopes: Sequence[Scope],
        *,
        usage: bool = False,
        report_to: Optional[BanRule] = None,
        also: Sequence[str] = (),
        token: Optional[str] = None,
    ) -> Decision:
        return super().hit(client, scopes, usage=usage, report_to=report_to, also=also, token=token)

    def report(  # type: ignore[override]
        self, client: str, ban_rule: BanRule, reason: str = "reports"
    ) -> Optional[float]:
        return super().report(client, ban_rule, reason)


def test_a_storage_that_knows_no_offences_serves_an_app_without_jails(
    make_app: AppFactory, clock: FakeClock
) -> None:
    app, gk = make_app(
        base={},
        routes=(),
        storage=StorageBeforeOffences(clock=clock),
        ban_rule={"count": 2, "window": 60, "duration": 600},
        rate_limit_rules="1/minute",
        report_rate_limited=True,
    )

    @app.route("/")
    def index() -> str:
        return "hello"

    client = app.test_client()
    assert [get(client) for _ in range(4)] == [200, 429, 429, 403]
    with app.app_context():
        assert gk.report(OTHER) is False


def test_during_an_outage_the_fallback_counts_a_routes_429s_toward_its_offence(
    make_app: AppFactory, clock: FakeClock
) -> None:
    shared = FlakyStorage(clock=clock)
    app, gk = make_app(
        base={},
        routes=(),
        storage=shared,
        on_outage="local",
        ban_rule=DEFAULT_RULE,
        ban_rules={"scanner": SCANNER},
        report_rate_limited=True,
    )

    @app.route("/search")
    @gk.specific("1/minute", offence="scanner")
    def search() -> str:
        return "results"

    shared.failing = True
    client = app.test_client()
    assert [get(client, "/search") for _ in range(4)] == [200, 429, 429, 403]
    fallback = app.extensions["gatekeeper"].fallback
    assert fallback.ban_detail(IP) == BanDetail(86400, 0, "rate_limit", 1, "scanner")


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def goes_down(
    request: pytest.FixtureRequest, clock: FakeClock
) -> Iterator[tuple[Storage, Callable[[bool], None]]]:
    """A shared storage, and how to take it down (True) and bring it back (False):
    a memory storage behind ``FlakyStorage``, or Redis on a server of its own, stopped
    and started again (empty)."""
    if request.param == "memory":
        shared = FlakyStorage(clock=clock)
        yield shared, functools.partial(setattr, shared, "failing")
        return
    import redis

    from flask_gatekeeper.storage.redis import RedisStorage
    from support.redis_server import RedisServer

    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        yield (
            RedisStorage(client, clock=clock),
            lambda down: server.stop() if down else server.start(),
        )
        client.close()


def test_a_ban_the_fallback_made_keeps_its_offence_in_the_shared_storage(
    make_app: AppFactory, clock: FakeClock, goes_down: tuple[Storage, Callable[[bool], None]]
) -> None:
    """on_outage="local": a ban of the "login" offence made by the process's own storage
    during an outage reaches the shared storage, when it answers again, as a ban of
    "login": ``bans(detail=True)`` and the refusal name it, as they would had the shared
    storage made it."""
    shared, down = goes_down
    make = functools.partial(make_app, base={}, routes=())
    app, gk = jailed_app(make, storage=shared, on_outage="local")
    client = app.test_client()
    down(True)
    assert [bad_login(client) for _ in range(2)] == [401, 401]  # LOGIN: 2 reports ban
    assert get(client) == 403
    down(False)
    clock.advance(1)  # the next probe ends the outage and hands the ban over
    response = client.get("/", environ_base={"REMOTE_ADDR": OTHER})
    assert response.status_code == 200
    assert not app.extensions["gatekeeper"].guard.down
    with app.app_context():
        assert gk.bans(detail=True)[IP] == BanDetail(3599, 0, "reports", 0, "login")
    response = client.get("/", environ_base={"REMOTE_ADDR": IP})
    assert response.status_code == 403
    assert "(login: reported 2 times in a 600s window)" in response.get_data(as_text=True)
