"""``flask gatekeeper ...`` through ``app.test_cli_runner()`` (issue 5).

With the memory storage the commands that need the server's live state refuse and point
to Redis. The live-state commands are tested against ``FlakyStorage``: a storage object
that is not a ``MemoryStorage`` (so the CLI treats it as shared, as it would Redis) and
delegates to one on a ``FakeClock``, so seconds left are exact.
"""

from __future__ import annotations

import functools
import importlib.metadata

import pytest
from click.testing import Result
from flask import Flask

from flask_gatekeeper import GateKeeper, MemoryStorage, Rule
from flask_gatekeeper.cli import gatekeeper
from flask_gatekeeper.options import CONFIG_KEYS
from flask_gatekeeper.testing import FakeClock, FlakyStorage
from support import IP, OTHER_IP, RULES, AppFactory, index

MANUAL_NOW = "\tmanual\tstarted 0s ago\t0 strikes"
"""The columns after "seconds left" of a ban set by hand just now."""

MEMORY_NOTE_START = "Error: The memory storage keeps its state inside each server process"


@pytest.fixture
def cli_app(make_app: AppFactory) -> AppFactory:
    """``make_app`` with ``RULES`` (override any as keywords, None drops one), one route, and
    ``GateKeeper``'s own default storage unless one is given."""
    return functools.partial(make_app, base={**RULES, "storage": None}, routes=(index,))


def run(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(gatekeeper, list(args))


def lines(result: Result) -> list[str]:
    return result.stdout.splitlines()


@pytest.fixture
def shared(cli_app: AppFactory, clock: FakeClock) -> tuple[Flask, GateKeeper]:
    """An app whose storage the CLI treats as shared with the server processes."""
    return cli_app(storage=FlakyStorage(clock=clock))


def status_of(app: Flask, ip: str) -> int:
    return app.test_client().get("/", environ_base={"REMOTE_ADDR": ip}).status_code


# --- the entry point ----------------------------------------------------------------------


def test_declared_as_a_flask_commands_entry_point() -> None:
    (entry_point,) = [
        entry_point
        for entry_point in importlib.metadata.entry_points(group="flask.commands")
        if entry_point.name == "gatekeeper"
    ]

    assert entry_point.value == "flask_gatekeeper.cli:gatekeeper"
    assert entry_point.load() is gatekeeper


def test_group_lists_its_commands(cli_app: AppFactory) -> None:
    app, _ = cli_app()

    result = run(app, "--help")

    assert result.exit_code == 0
    for command in ("bans", "ban", "unban", "reset", "status", "config"):
        assert f"  {command} " in result.stdout


# --- with the memory storage --------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["bans"], id="bans"),
        pytest.param(["ban", IP], id="ban"),
        pytest.param(["ban", IP, "--duration", "60"], id="ban --duration"),
        pytest.param(["unban", IP], id="unban"),
        pytest.param(["reset", IP], id="reset"),
    ],
)
def test_live_state_commands_refuse_with_memory_storage(
    cli_app: AppFactory, args: list[str]
) -> None:
    app, gk = cli_app()

    result = run(app, *args)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(MEMORY_NOTE_START)
    assert "GATEKEEPER_STORAGE_URI=redis://" in result.stderr
    with app.app_context():
        assert gk.bans() == {}  # and nothing was done


def test_memory_storage_is_refused_when_given_as_a_uri(cli_app: AppFactory) -> None:
    app, _ = cli_app(config={"GATEKEEPER_STORAGE_URI": "memory://"})

    result = run(app, "bans")

    assert result.exit_code == 1
    assert result.stderr.startswith(MEMORY_NOTE_START)


def test_status_prints_rules_and_storage(cli_app: AppFactory) -> None:
    app, _ = cli_app()

    result = run(app, "status")

    assert result.exit_code == 0
    assert lines(result) == [
        "enabled: True",
        "storage: MemoryStorage(max_clients=100000)",
        "rate limit: 20 requests in a 1s window",
        "rate limit: 100 requests in a 10s window",
        "ban rule: reported 3 times in a 10s window, banned 600s",
    ]


def test_status_of_a_client_with_memory_storage_points_to_redis(cli_app: AppFactory) -> None:
    app, _ = cli_app()

    result = run(app, "status", IP)

    assert result.exit_code == 1
    assert lines(result)[:2] == ["enabled: True", "storage: MemoryStorage(max_clients=100000)"]
    assert result.stderr.startswith(MEMORY_NOTE_START)


def test_status_of_a_dry_run_without_rules(cli_app: AppFactory, clock: FakeClock) -> None:
    app, _ = cli_app(
        dry_run=True,
        ban_rule=None,
        rate_limit_rules=None,
        storage=MemoryStorage(max_clients=50, clock=clock),
    )

    result = run(app, "status")

    assert result.exit_code == 0
    assert lines(result) == [
        "enabled: True (dry run)",
        "storage: MemoryStorage(max_clients=50)",
        "ban rule: none",
    ]


def test_status_when_disabled(cli_app: AppFactory) -> None:
    app, _ = cli_app(config={"GATEKEEPER_ENABLED": False})

    assert lines(run(app, "status"))[0] == "enabled: False"


def test_commands_on_an_app_without_gatekeeper() -> None:
    app = Flask("bare")

    result = run(app, "status")

    assert result.exit_code == 1
    assert result.stderr == "Error: 'bare' has no GateKeeper (call init_app)\n"


# --- config -------------------------------------------------------------------------------


def test_config_prints_every_key_and_where_it_comes_from(cli_app: AppFactory) -> None:
    app, _ = cli_app(
        config={
            "GATEKEEPER_HEADERS": "both",
            "GATEKEEPER_DRY_RUN": True,  # the constructor wins
            "GATEKEEPER_IPV6_PREFIX": 56,
        },
        dry_run=False,
    )

    result = run(app, "config")

    assert result.exit_code == 0
    assert lines(result) == [
        "GATEKEEPER_BAN_RULE = {'count': 3, 'window': 10, 'duration': 600}"
        "  (GateKeeper(ban_rule=...))",
        "GATEKEEPER_RATE_LIMIT_RULES = [{'count': 20, 'window': 1}, {'count': 100, 'window': 10}]"
        "  (GateKeeper(rate_limit_rules=...))",
        "GATEKEEPER_IP_HEADER = None  (default)",
        "GATEKEEPER_EXCLUDED_METHODS = ()  (default)",
        "GATEKEEPER_DEFAULT_RULES = None  (default)",
        "GATEKEEPER_ENABLED = True  (default)",
        "GATEKEEPER_STORAGE_URI = 'memory://'  (default)",
        "GATEKEEPER_MAX_CLIENTS = 100000  (default)",
        "GATEKEEPER_TRUSTED_PROXIES = None  (default)",
        "GATEKEEPER_IPV6_PREFIX = 56  (app.config)",
        "GATEKEEPER_ALLOWLIST = ()  (default)",
        "GATEKEEPER_DENYLIST = ()  (default)",
        "GATEKEEPER_KEY_FUNC = None  (default)",
        "GATEKEEPER_HASH_KEYS = False  (default)",
        "GATEKEEPER_KEY_PREFIX = 'gatekeeper:'  (default)",
        "GATEKEEPER_FAIL_OPEN = True  (default)",
        "GATEKEEPER_HEADERS = 'both'  (app.config)",
        "GATEKEEPER_DRY_RUN = False  (GateKeeper(dry_run=...))",
        "GATEKEEPER_REPORT_RATE_LIMITED = False  (default)",
        "GATEKEEPER_REPORT_WHEN = None  (default)",
        "GATEKEEPER_SUBNET_BAN_RULE = None  (default)",
        "GATEKEEPER_STRATEGY = 'sliding-log'  (default)",
        "GATEKEEPER_EXEMPT_STATIC = True  (default)",
        "GATEKEEPER_EXEMPT_WHEN = None  (default)",
        "GATEKEEPER_CONCURRENCY = None  (default)",
        "GATEKEEPER_CONCURRENCY_LEASE = 300  (default)",
        "GATEKEEPER_STATE_FILE = None  (default)",
        "GATEKEEPER_CACHE_REFUSALS = True  (default)",
        "GATEKEEPER_ON_OUTAGE = None  (default)",
    ]


def test_config_lists_each_key_once(cli_app: AppFactory) -> None:
    app, _ = cli_app()

    keys = [line.split()[0] for line in lines(run(app, "config"))]

    assert keys == list(CONFIG_KEYS.values())
    assert len(set(keys)) == len(keys)
    assert all(key.startswith("GATEKEEPER_") for key in keys)


def test_config_works_with_memory_storage_given_as_an_object(
    cli_app: AppFactory, clock: FakeClock
) -> None:
    app, _ = cli_app(storage=MemoryStorage(clock=clock))

    result = run(app, "config")

    assert result.exit_code == 0
    assert (
        "GATEKEEPER_STORAGE_URI = MemoryStorage(max_clients=100000)  (GateKeeper(storage=...))"
        in lines(result)
    )


# --- live state (a shared storage) --------------------------------------------------------


def test_status_shows_what_a_client_used_without_counting(
    shared: tuple[Flask, GateKeeper], clock: FakeClock
) -> None:
    app, _ = shared
    client = app.test_client()
    for _ in range(3):
        client.get("/", environ_base={"REMOTE_ADDR": IP})
    clock.advance(0.5)
    expected = [
        f"{IP}: not banned",
        f"{IP}: 17 left of 20 requests in a 1s window, whole again in 1s",
        f"{IP}: 97 left of 100 requests in a 10s window, whole again in 10s",
    ]
    assert lines(run(app, "status", IP))[-3:] == expected
    assert lines(run(app, "status", IP))[-3:] == expected  # reading counted nothing


def test_ban_list_status_unban(shared: tuple[Flask, GateKeeper], clock: FakeClock) -> None:
    app, gk = shared

    assert run(app, "bans").stdout == "no active bans\n"

    result = run(app, "ban", IP, "--duration", "60")
    assert (result.exit_code, result.stdout) == (0, f"banned {IP} for 60s\n")
    assert run(app, "bans").stdout == f"{IP}\t60s left\tmanual\tstarted 0s ago\t0 strikes\n"
    assert status_of(app, IP) == 403  # the server sees the CLI's ban
    with app.app_context():
        assert gk.banned_for(IP) == 60

    clock.advance(15)
    assert run(app, "bans").stdout == f"{IP}\t45s left\tmanual\tstarted 15s ago\t0 strikes\n"
    status = run(app, "status", IP)
    assert status.exit_code == 0
    assert lines(status) == [
        "enabled: True",
        "storage: FlakyStorage(MemoryStorage(max_clients=100000))",
        "rate limit: 20 requests in a 1s window",
        "rate limit: 100 requests in a 10s window",
        "ban rule: reported 3 times in a 10s window, banned 600s",
        f"{IP}: banned for 45s",
        f"{IP}: 20 left of 20 requests in a 1s window",
        f"{IP}: 100 left of 100 requests in a 10s window",
    ]

    result = run(app, "unban", IP)
    assert (result.exit_code, result.stdout) == (0, f"unbanned {IP}\n")
    assert status_of(app, IP) == 200
    assert run(app, "unban", IP).stdout == f"{IP} was not banned\n"
    assert f"{IP}: not banned" in lines(run(app, "status", IP))
    assert run(app, "bans").stdout == "no active bans\n"


def test_ban_defaults_to_the_ban_rules_duration(shared: tuple[Flask, GateKeeper]) -> None:
    app, _ = shared

    result = run(app, "ban", IP)

    assert (result.exit_code, result.stdout) == (0, f"banned {IP} for 600s\n")


def test_bans_lists_the_longest_first(shared: tuple[Flask, GateKeeper]) -> None:
    app, _ = shared
    for ip, duration in [("10.0.0.3", "30"), (IP, "90"), (OTHER_IP, "60")]:
        assert run(app, "ban", ip, "--duration", duration).exit_code == 0

    assert lines(run(app, "bans")) == [
        f"{IP}\t90s left{MANUAL_NOW}",
        f"{OTHER_IP}\t60s left{MANUAL_NOW}",
        f"10.0.0.3\t30s left{MANUAL_NOW}",
    ]


def test_ban_normalises_the_ip(shared: tuple[Flask, GateKeeper]) -> None:
    app, _ = shared

    assert run(app, "ban", "2001:db8::1", "--duration", "60").exit_code == 0
    assert run(app, "ban", "::ffff:10.0.0.7", "--duration", "30").exit_code == 0

    assert lines(run(app, "bans")) == [
        f"2001:db8::/64\t60s left{MANUAL_NOW}",
        f"10.0.0.7\t30s left{MANUAL_NOW}",
    ]
    assert status_of(app, "2001:db8::ffff") == 403
    assert status_of(app, "10.0.0.7") == 403
    assert run(app, "unban", "10.0.0.7").stdout == "unbanned 10.0.0.7\n"


def test_reset_clears_counters_and_ban(shared: tuple[Flask, GateKeeper]) -> None:
    app, _ = shared
    client = app.test_client()
    assert [client.get("/", environ_base={"REMOTE_ADDR": IP}).status_code for _ in range(21)] == [
        200
    ] * 20 + [429]
    assert run(app, "ban", OTHER_IP).exit_code == 0

    for ip in (IP, OTHER_IP):
        result = run(app, "reset", ip)
        assert (result.exit_code, result.stdout) == (0, f"reset {ip}\n")

    assert status_of(app, IP) == 200
    assert status_of(app, OTHER_IP) == 200
    assert run(app, "bans").stdout == "no active bans\n"
    assert run(app, "reset", "192.0.2.1").exit_code == 0  # unknown: no error


@pytest.mark.parametrize(
    ("duration", "message"),
    [
        pytest.param(
            "-5",
            "'duration' must be a number of seconds from 1e-06 to 1000000000, got -5.0",
            id="-5",
        ),
        pytest.param(
            "0", "'duration' must be a number of seconds from 1e-06 to 1000000000, got 0.0", id="0"
        ),
        pytest.param(
            "inf",
            "'duration' must be a number of seconds from 1e-06 to 1000000000, got inf",
            id="inf",
        ),
    ],
)
def test_bad_duration_fails_clearly(
    shared: tuple[Flask, GateKeeper], duration: str, message: str
) -> None:
    app, gk = shared

    result = run(app, "ban", IP, "--duration", duration)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"Error: ban(): {message}\n"
    with app.app_context():
        assert gk.bans() == {}


def test_non_numeric_duration_is_a_usage_error(shared: tuple[Flask, GateKeeper]) -> None:
    app, _ = shared

    result = run(app, "ban", IP, "--duration", "soon")

    assert result.exit_code == 2
    assert "Invalid value for '--duration': 'soon' is not a valid float." in result.stderr


def test_ban_without_duration_or_ban_rule_fails_clearly(
    cli_app: AppFactory, clock: FakeClock
) -> None:
    app, _ = cli_app(ban_rule=None, storage=FlakyStorage(clock=clock))

    result = run(app, "ban", IP)

    assert result.exit_code == 1
    assert result.stderr == "Error: ban(): give a duration, or configure a ban_rule\n"


def test_seconds_left_round_up_like_retry_after(
    shared: tuple[Flask, GateKeeper], clock: FakeClock
) -> None:
    app, _ = shared
    assert run(app, "ban", IP, "--duration", "60").exit_code == 0
    clock.advance(57.5)
    retry_after = (
        app.test_client().get("/", environ_base={"REMOTE_ADDR": IP}).headers["Retry-After"]
    )
    assert retry_after == "3"

    assert run(app, "bans").stdout == f"{IP}\t3s left\tmanual\tstarted 57s ago\t0 strikes\n"
    clock.advance(2.1)
    assert run(app, "bans").stdout == f"{IP}\t1s left\tmanual\tstarted 59s ago\t0 strikes\n"
    assert f"{IP}: banned for 1s" in lines(run(app, "status", IP))


@pytest.mark.parametrize(
    "args", [["bans"], ["ban", "192.0.2.1"], ["unban", "192.0.2.1"], ["reset", "192.0.2.1"]]
)
def test_a_storage_outage_reads_as_one_error_line(
    cli_app: AppFactory, clock: FakeClock, args: list[str]
) -> None:
    storage = FlakyStorage(clock=clock)
    app, _ = cli_app(storage=storage)
    storage.failing = True
    result = app.test_cli_runner().invoke(gatekeeper, args)
    assert result.exit_code == 1
    assert result.output == "Error: connection refused (1)\n"


def account_of_request() -> str:
    return "account-1"


def failed(response: object) -> bool:
    return getattr(response, "status_code", 200) == 401


def policy_app(shared: tuple[Flask, GateKeeper]) -> Flask:
    """Routes whose policies use every option of ``specific``."""
    app, gk = shared

    @app.route("/export")
    @gk.specific("2/hour", standalone=True, key_func=account_of_request)
    def export() -> str:
        return "csv"

    @app.route("/login", methods=["GET", "POST"])
    @gk.specific(
        [Rule(5, 900, key="form[user]")],
        methods=["POST"],
        scope="logins",
        cost=2,
        count_when=failed,
        report_when=failed,
    )
    @gk.specific("1/minute", concurrency=1, exempt_when=lambda: False)
    def login() -> str:
        return "form"

    return app


def test_status_shows_each_routes_whole_policy(shared: tuple[Flask, GateKeeper]) -> None:
    route_lines = [line for line in lines(run(policy_app(shared), "status")) if "route" in line]
    assert route_lines == [
        "route export: 2 requests in a 3600s window",
        "route export: standalone, key_func=account_of_request",
        "route login: 1 request in a 60s window",
        "route login: concurrency=1, exempt_when=policy_app.<locals>.<lambda>",
        "route login [POST]: 5 requests in a 900s window per form[user]",
        "route login [POST]: scope='logins', cost=2, count_when=failed, report_when=failed",
    ]


def test_status_of_a_client_shows_its_routes_rules(
    shared: tuple[Flask, GateKeeper], clock: FakeClock
) -> None:
    """A standalone route's rules are there, each named by its route, beside the global
    rules: not the global rules alone."""
    app = policy_app(shared)
    client = app.test_client()
    client.get("/export", environ_base={"REMOTE_ADDR": IP})
    client.get("/login", environ_base={"REMOTE_ADDR": IP})
    assert lines(run(app, "status", "account-1"))[-4:] == [
        "account-1: 20 left of 20 requests in a 1s window",
        "account-1: 100 left of 100 requests in a 10s window",
        "account-1: 1 left of 2 requests in a 3600s window, whole again in 3600s (route export)",
        "account-1: 1 left of 1 request in a 60s window (route login)",
    ]
    assert lines(run(app, "status", IP))[-4:] == [
        f"{IP}: 19 left of 20 requests in a 1s window, whole again in 1s",
        f"{IP}: 99 left of 100 requests in a 10s window, whole again in 10s",
        f"{IP}: 2 left of 2 requests in a 3600s window (route export)",
        f"{IP}: 0 left of 1 request in a 60s window, whole again in 60s (route login)",
    ]
