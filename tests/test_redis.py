"""``RedisStorage`` against a real ``redis-server``: one round trip, one clock, tidy keys,
faults that never become 500s, and exact limits across processes and cluster nodes.

Servers come from ``support/redis_server.py``: each on a free loopback port (or a Unix
socket) in its own directory, persistence off, stopped by PID. Without a ``redis-server``
binary these tests skip, except under CI (``CI`` set), where they fail: CI must run them.

Round trips are counted with ``MONITOR``: a command a script runs inside Redis is marked
``lua`` there and is not a round trip. No test sleeps to wait for a window but one, which
polls a 0.3 s window in real time because the server's clock cannot be moved.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import subprocess
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, ClassVar, cast

import pytest
from flask import Flask, Response, request
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

import support
from flask_gatekeeper import BanRule, ConfigError, GateKeeper, Rule, StorageError
from flask_gatekeeper.storage.plan import GLOBAL_SCOPE, Scope
from flask_gatekeeper.testing import FakeClock
from flask_gatekeeper.units import MAX_MICROSECONDS
from support import PEER_OPTIONS, RULES, AppFactory, ProbingClock, burst, health, index
from support import login as login_view

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.cluster import RedisCluster
    from redis.retry import Retry

    from flask_gatekeeper.storage.redis import NETWORK_REFRESH, RedisStorage
    from flask_gatekeeper.storage.redis import scripts as redis_scripts
    from flask_gatekeeper.storage.redis.scripts import NETWORKS, RELEASE, REPORT
    from support.redis_server import (
        HOST,
        RedisServer,
        free_port,
        redis_cluster,
        require,
        running,
        wait_until,
    )
    from support.servers import Reply, ServerProcess, fetch
except ImportError:  # pragma: no cover - only without the redis extra
    if os.environ.get("CI"):
        raise
    pytest.skip(
        'redis-py is not installed: pip install "flask-gatekeeper[redis]"',
        allow_module_level=True,
    )

pytestmark = pytest.mark.redis

IP = "203.0.113.7"
OTHER_IP = "198.51.100.9"
MONITOR_END = "gatekeeper-test-end-of-monitor"


def storage_errors(app: Flask) -> int:
    """How many storage calls failed so far (``gk.stats()``'s counter)."""
    return int(app.extensions["gatekeeper"].events.stats.snapshot()["storage_errors"])


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """One server for the tests that do not stop it; ``redis`` empties it before each."""
    with running() as server:
        yield server


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server of the test's own, free to stop and start again."""
    with running() as server:
        yield server


@pytest.fixture
def redis_db(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the shared server, which starts the test empty."""
    client = redis_server.client(decode_responses=True)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def redis_app(make_app: AppFactory) -> AppFactory:
    """``make_app`` for Redis: ``redis_app(storage=..., **options)`` with the seed's rules, ban
    rule and excluded methods by default, and ``fail_open`` False unless given, so a storage
    error shows as a 503 instead of hiding behind an admitted request.

    Routes: ``GET /`` says hello; ``GET /burst`` has its own rule (2 per minute) on top of the
    global ones; ``POST /login`` reports the client (401 ``banned`` when that report bans);
    ``GET /health`` is bypassed.
    """
    routes = (index, burst([{"count": 2, "window": 60}]), login_view, health)
    base = {**PEER_OPTIONS, "fail_open": False, "storage": None}
    return functools.partial(make_app, base=base, routes=routes)


# Clients of this module are named in REMOTE_ADDR, by default ``IP``.
get = functools.partial(support.get, ip=IP)
statuses = functools.partial(support.statuses, ip=IP)
login = functools.partial(support.bad_login, ip=IP)


def client_keys(db: redis.Redis, ip: str = IP, prefix: str = "gatekeeper:") -> list[str]:
    return sorted(str(key) for key in db.scan_iter(match=f"{prefix}{{{ip}}}:*"))


def client_commands(server: RedisServer, action: Callable[[], object]) -> list[str]:
    """The commands clients (not scripts) sent to the server while ``action`` ran."""
    watcher = server.client(socket_timeout=5)
    marker = server.client()
    try:
        marker.ping()  # its connection handshake happens now, not among the counted commands
        with watcher.monitor() as monitor:
            action()
            marker.echo(MONITOR_END)
            commands: list[str] = []
            while True:
                entry = monitor.next_command()
                if entry["command"] == f"ECHO {MONITOR_END}":
                    return commands
                if entry["client_type"] != "lua":
                    commands.append(entry["command"])
    finally:
        watcher.close()
        marker.close()


def script_runs(commands: list[str]) -> list[str]:
    """``EVALSHA`` commands as the suffix of their first key (``ban``: a hit, ``reports``:
    a report); anything else as itself, so a stray command fails the comparison."""
    runs = []
    for command in commands:
        parts = command.split(" ")
        if parts[0].upper() == "EVALSHA" and int(parts[2]) > 0:
            runs.append(parts[3].rpartition(":")[2])
        else:
            runs.append(command)
    return runs


# --- one round trip per request ------------------------------------------------------------------


@pytest.mark.parametrize("remembered", [False, True], ids=["asked each time", "remembered"])
def test_one_round_trip_per_request_and_per_report(
    redis_server: RedisServer, redis_db: redis.Redis, redis_app: AppFactory, remembered: bool
) -> None:
    """Without the local tier every request asks Redis once; with it (the default), a
    client known to be banned is refused by the process without asking."""
    # two global rules and a ban rule
    app, gk = redis_app(storage=redis_server.url, cache_refusals=remembered)
    client = app.test_client()
    assert get(client, ip=OTHER_IP).status_code == 200  # loads the scripts, opens a connection
    assert login(client, ip=OTHER_IP).status_code == 401

    def report_outside_a_request() -> bool:
        with app.app_context():
            return gk.report(ip=IP)

    # (what, outcome, scripts run: "ban" for a request's hit, "reports" for a report)
    cases: list[tuple[Callable[[], object], object, list[str]]] = [
        (lambda: get(client).status_code, 200, ["ban"]),
        (lambda: get(client, "/burst").status_code, 200, ["ban"]),  # 3 rules, 2 scopes
        (lambda: login(client).get_data(as_text=True), "bad password", ["ban", "reports"]),
        (report_outside_a_request, False, ["reports"]),  # the second report
        (lambda: get(client, "/health").status_code, 200, []),  # bypassed: Redis not asked
        (lambda: login(client).get_data(as_text=True), "banned", ["ban", "reports"]),
        (lambda: get(client).status_code, 403, ["ban"]),
        # an excluded method: not counted, but the ban check is still one script, or none
        # when the process remembers the ban the previous request met
        (
            lambda: client.head("/", environ_base={"REMOTE_ADDR": IP}).status_code,
            403,
            [] if remembered else ["ban"],
        ),
    ]
    for number, (action, outcome, scripts) in enumerate(cases):
        seen: list[object] = []
        commands = client_commands(redis_server, lambda: seen.append(action()))  # noqa: B023
        assert (seen, script_runs(commands)) == ([outcome], scripts), f"case {number}"


NETWORK = "203.0.113.0/24"
"""The network of ``IP``."""


def test_network_bans_cost_no_round_trip(
    redis_server: RedisServer, redis_db: redis.Redis, redis_app: AppFactory
) -> None:
    """With or without a network ban in force, a request is one script: the client's
    networks are looked up in it, and so is the registry once this process's copy is
    older than NETWORK_REFRESH (on the storage's clock, here a FakeClock). Every request
    asks Redis here: no refusal is remembered."""
    clock = FakeClock()
    storage = RedisStorage(redis_server.client(), clock=clock)
    app, gk = redis_app(storage=storage, cache_refusals=False)
    client = app.test_client()
    assert get(client, ip=OTHER_IP).status_code == 200  # loads the script, reads the registry

    def ban_network() -> None:
        with app.app_context():
            gk.ban(NETWORK, 60)

    def unban_network() -> None:
        with app.app_context():
            assert gk.unban(NETWORK)

    def old_copy() -> None:
        clock.advance(NETWORK_REFRESH)

    # (before the request, the request, its status)
    steps: list[tuple[Callable[[], None], str, int]] = [
        (lambda: None, IP, 200),  # no network ban: one script, as ever
        (old_copy, IP, 200),  # the copy is old: the registry is read by the same script
        (ban_network, IP, 403),
        (lambda: None, OTHER_IP, 200),
        (old_copy, IP, 403),
        (unban_network, IP, 200),
        (old_copy, IP, 200),
    ]
    for number, (before, ip, expected) in enumerate(steps):
        before()
        seen: list[int] = []
        send = functools.partial(get, client, ip=ip)
        commands = client_commands(redis_server, lambda: seen.append(send().status_code))  # noqa: B023
        assert (seen, script_runs(commands)) == ([expected], ["ban"]), f"step {number}"
    # the registry empties itself; the count of operator changes stays
    assert redis_db.keys("gatekeeper:{%networks}*") == ["gatekeeper:{%networks}:changes"]


def test_a_network_banned_by_another_process_is_refused_within_network_refresh(
    redis_server: RedisServer, redis_db: redis.Redis, redis_app: AppFactory
) -> None:
    clock = FakeClock()
    storage = RedisStorage(redis_server.client(), clock=clock)
    app, _ = redis_app(storage=storage, cache_refusals=False)  # bans read live, below
    other_app, other_gk = redis_app(storage=RedisStorage(redis_server.client(), clock=clock))
    client = app.test_client()
    assert get(client).status_code == 200  # reads the registry along: nothing banned
    with other_app.app_context():
        other_gk.ban(NETWORK, 60)
    assert get(client).status_code == 200  # this process's copy is younger than a second
    clock.advance(NETWORK_REFRESH)
    assert get(client).status_code == 403
    assert get(other_app.test_client()).status_code == 403  # the banning process: at once
    with other_app.app_context():
        assert other_gk.unban(NETWORK)
    assert get(client).status_code == 200  # the registry was read along: bans read live


def test_a_concurrency_limit_costs_one_zrem_after_the_response(
    redis_server: RedisServer, redis_db: redis.Redis, redis_app: AppFactory
) -> None:
    """The slot is taken inside the request's one script; giving it back is one ZREM, when
    the response is complete (a streamed one: when it is closed)."""
    app, gk = redis_app(storage=redis_server.url, concurrency=5)  # the global scope too
    app.add_url_rule("/held", "held", gk.specific(concurrency=2)(lambda: "held"))
    alone = gk.specific(concurrency=2, standalone=True)  # only the route's own limit
    streamed = alone(lambda: Response(iter(["a", "b"])))
    app.add_url_rule("/stream", "stream", streamed)
    client = app.test_client()
    assert get(client, "/held").status_code == 200  # loads the script, opens a connection

    slots = f"gatekeeper:{{{IP}}}:slots"
    held = client_commands(redis_server, lambda: get(client, "/held"))
    assert script_runs(held[:1]) == ["ban"]
    assert held[1].startswith(f"EVALSHA {RELEASE.sha} 2 {slots} {slots}:held ")  # both scopes
    assert len(held) == 2
    responses: list[TestResponse] = []
    opened = client_commands(redis_server, lambda: responses.append(get(client, "/stream")))
    assert script_runs(opened) == ["ban"]  # the body is still to be sent: the slot is held
    leases = redis_db.zrange(f"{slots}:stream", 0, -1, withscores=True)
    ((token, deadline),) = cast("list[tuple[str, float]]", leases)
    seconds, microseconds = redis_db.time()
    assert len(token) == 16  # the request's own, random
    assert 0 < deadline - (seconds * 1_000_000 + microseconds) <= 300_000_000  # the lease
    assert 300_000 < redis_db.pttl(f"{slots}:stream") <= 301_000  # expiry collects garbage
    closed = client_commands(redis_server, responses[0].close)
    assert len(closed) == 1
    assert closed[0].startswith(f"ZREM {slots}:stream ")  # one scope: one ZREM
    assert redis_db.keys(f"{slots}*") == []  # every slot given back
    assert client_commands(redis_server, lambda: get(client, "/health")) == []


def test_a_slot_beside_a_key_s_rules_is_the_client_s_in_the_one_script(
    redis_server: RedisServer, redis_db: redis.Redis, redis_app: AppFactory
) -> None:
    """A route with an account's rule and a concurrency limit: one script counts under the
    account and takes the slot under the client's address, never under the account."""
    app, gk = redis_app(storage=redis_server.url, rate_limit_rules=None, ban_rule=None)
    limits = gk.specific([Rule(3, 3600, key="form[user]")], concurrency=1)
    view = limits(lambda: Response(iter(["a", "b"])))
    app.add_url_rule("/account", "account", view, methods=["POST"])
    client = app.test_client()

    def post(ip: str, user: str) -> TestResponse:
        return client.post("/account", data={"user": user}, environ_base={"REMOTE_ADDR": ip})

    post(OTHER_IP, "bob").close()  # loads the script, opens a connection
    responses: list[TestResponse] = []
    opened = client_commands(redis_server, lambda: responses.append(post(IP, "alice")))
    assert responses[0].status_code == 200
    assert script_runs(opened) == ["ban"]  # one round trip: the account's rule and the slot
    slots = f"gatekeeper:{{{IP}}}:slots:account"
    assert redis_db.zcard(slots) == 1
    assert redis_db.llen("gatekeeper:{alice}:log:account per form[user]") == 1
    with post(IP, "carol") as refused:  # the client's slot is taken
        assert refused.status_code == 429
    assert redis_db.keys("gatekeeper:{alice}:slots*") == []
    assert redis_db.keys("gatekeeper:{carol}:*") == []  # the refusal counted nothing
    closed = client_commands(redis_server, responses[0].close)
    assert len(closed) == 1
    assert closed[0].startswith(f"ZREM {slots} ")
    assert redis_db.keys("gatekeeper:*:slots*") == []


def test_script_flush_costs_one_eval_never_an_outage(
    redis_server: RedisServer, redis_db: redis.Redis, redis_app: AppFactory
) -> None:
    app, gk = redis_app(storage=redis_server.url, rate_limit_rules=[{"count": 3, "window": 3600}])
    client = app.test_client()
    assert statuses(client, 2) == [200, 200]
    with app.app_context():
        assert not gk.report(ip=IP)
    redis_db.script_flush()

    responses: list[TestResponse] = []
    commands = client_commands(redis_server, lambda: responses.append(get(client)))
    heads = [" ".join(command.split(" ")[:2]).upper() for command in commands]
    assert len(heads) == 2
    assert heads[0].startswith("EVALSHA")  # answered NOSCRIPT ...
    assert heads[1].startswith("EVAL ")  # ... so the source went along, and ran (and cached)
    assert responses[0].status_code == 200  # the third of 3: the data survived the flush
    assert get(client).status_code == 429

    redis_db.script_flush()
    with app.app_context():  # the report script reloads too
        assert not gk.report(ip=IP)
        assert gk.report(ip=IP)
    assert get(client).status_code == 403


# --- the server's clock --------------------------------------------------------------------------


def test_without_a_clock_every_host_reads_the_server_clock(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    hosts = [RedisStorage(redis_server.client()), RedisStorage(redis_server.client())]
    try:
        rule = Rule(2, 10)
        scopes = [Scope.of(GLOBAL_SCOPE, (rule,))]
        seconds, micros = redis_db.time()
        before = seconds * 1_000_000 + micros
        assert hosts[0].hit(IP, scopes).admitted
        assert hosts[1].hit(IP, scopes).admitted
        seconds, micros = redis_db.time()
        after = seconds * 1_000_000 + micros
        stamps = [int(stamp) for stamp in redis_db.lrange(f"gatekeeper:{{{IP}}}:log", 0, -1)]
        assert len(stamps) == 2
        assert all(before <= stamp <= after for stamp in stamps)  # Redis TIME, not the host's

        refusals = [host.hit(IP, scopes) for host in hosts]
        for refusal in refusals:
            assert not refusal.admitted
            assert refusal.rule == rule
            assert 9 < refusal.retry_after <= 10
        # the same oldest stamp, read later: never a longer wait
        assert refusals[1].retry_after <= refusals[0].retry_after
    finally:
        for host in hosts:
            host.client.close()


def test_a_sub_second_window_refuses_then_admits_again_in_real_time(
    redis_server: RedisServer, redis_db: redis.Redis, redis_app: AppFactory
) -> None:
    app, _ = redis_app(storage=redis_server.url, rate_limit_rules=[{"count": 1, "window": 0.3}])
    client = app.test_client()
    started = time.monotonic()
    assert get(client).status_code == 200
    refused = get(client)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"

    admitted_at = None
    deadline = started + 3
    while admitted_at is None and time.monotonic() < deadline:
        if get(client).status_code == 200:
            admitted_at = time.monotonic()
        else:
            time.sleep(0.02)
    assert admitted_at is not None, "never admitted again"
    assert admitted_at - started >= 0.29  # not before the window ended (ms clock granularity)


def test_an_injected_clock_replaces_the_server_clock(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    clock = FakeClock(1000.0)
    storage = RedisStorage(redis_server.client(), clock=clock)
    try:
        rule = Rule(1, 10)
        scopes = [Scope.of(GLOBAL_SCOPE, (rule,))]
        assert storage.hit(IP, scopes).admitted
        clock.advance(9.5)
        refusal = storage.hit(IP, scopes)
        assert (refusal.admitted, refusal.rule, refusal.retry_after) == (False, rule, 0.5)
        clock.advance(0.5)  # exactly at the end of the window
        assert storage.hit(IP, scopes).admitted
        # stamps in microseconds of the injected clock; the log keeps only the rule's count
        assert redis_db.lrange(f"gatekeeper:{{{IP}}}:log", 0, -1) == ["1010000000"]
    finally:
        storage.client.close()


# --- keys ----------------------------------------------------------------------------------------


def test_keys_carry_the_prefix_and_a_hash_tag_and_all_expire(
    redis_server: RedisServer, redis_db: redis.Redis, redis_app: AppFactory
) -> None:
    app, _ = redis_app(storage=redis_server.url)
    client = app.test_client()
    assert get(client).status_code == 200
    assert get(client, "/burst").status_code == 200
    assert login(client).status_code == 401
    keys = client_keys(redis_db)
    assert keys == [
        f"gatekeeper:{{{IP}}}:log",
        f"gatekeeper:{{{IP}}}:log:burst",
        f"gatekeeper:{{{IP}}}:reports",
    ]
    assert redis_db.dbsize() == len(keys)  # nothing outside the client's keys
    assert len({redis.crc.key_slot(key.encode()) for key in keys}) == 1  # one cluster slot
    ttls = {key: redis_db.pttl(key) for key in keys}
    assert 0 < ttls[f"gatekeeper:{{{IP}}}:log"] <= 11_000  # longest window (10 s) + 1 s
    assert 0 < ttls[f"gatekeeper:{{{IP}}}:log:burst"] <= 61_000
    assert 0 < ttls[f"gatekeeper:{{{IP}}}:reports"] <= 11_000  # the ban window + 1 s


def test_a_ban_key_expires_after_the_ban_ends(
    redis_server: RedisServer, redis_db: redis.Redis, redis_app: AppFactory
) -> None:
    app, _ = redis_app(storage=redis_server.url)  # banned for 600 s on the third report
    client = app.test_client()
    for _ in range(2):
        assert login(client).status_code == 401
    assert login(client).get_data(as_text=True) == "banned"
    ban_key = f"gatekeeper:{{{IP}}}:ban"
    # the report log starts empty again (the log holds the three requests)
    assert client_keys(redis_db) == [ban_key, f"gatekeeper:{{{IP}}}:log"]
    # kept (for escalation) until forget_after past the end, then one more second
    forget_after = BanRule(**RULES["ban_rule"]).forget_after
    ttl = redis_db.pttl(ban_key)
    assert 600_000 < ttl <= (600 + forget_after + 1) * 1000  # expires, and not before the end
    assert get(client).status_code == 403


def test_ban_decisions_come_from_stored_times_not_from_expiry(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    clock = FakeClock(1000.0)
    storage = RedisStorage(redis_server.client(), clock=clock)
    try:
        storage.ban(IP, 60)
        banned = storage.hit(IP, [])
        assert (banned.admitted, banned.banned, banned.retry_after) == (False, True, 60.0)
        clock.advance(60)  # the key is still there (it expires by the server's clock)
        assert client_keys(redis_db) == [f"gatekeeper:{{{IP}}}:ban"]
        assert storage.hit(IP, []).admitted
    finally:
        storage.client.close()


@pytest.mark.parametrize(
    ("options", "config"),
    [
        pytest.param({"key_prefix": "shop:"}, {}, id="key_prefix"),
        pytest.param({}, {"GATEKEEPER_KEY_PREFIX": "shop:"}, id="GATEKEEPER_KEY_PREFIX"),
    ],
)
def test_a_custom_key_prefix(
    redis_server: RedisServer,
    redis_db: redis.Redis,
    redis_app: AppFactory,
    options: dict[str, Any],
    config: dict[str, Any],
) -> None:
    app, _ = redis_app(storage=redis_server.url, config=config, **options)
    client = app.test_client()
    assert get(client).status_code == 200
    assert login(client).status_code == 401
    keys = sorted(str(key) for key in redis_db.scan_iter())
    assert keys == [f"shop:{{{IP}}}:log", f"shop:{{{IP}}}:reports"]
    assert all(redis_db.pttl(key) > 0 for key in keys)


def memory_usage(db: redis.Redis, ip: str) -> int:
    sizes = [db.memory_usage(key, samples=0) for key in client_keys(db, ip)]
    return sum(size or 0 for size in sizes)


def test_memory_per_client_with_the_seed_rules(
    redis_server: RedisServer, redis_db: redis.Redis, redis_app: AppFactory
) -> None:
    app, _ = redis_app(storage=redis_server.url)
    client = app.test_client()
    assert statuses(client, 1) == [200]
    after_one = memory_usage(redis_db, IP)
    assert statuses(client, 19) == [200] * 19  # 20 in a second: the 20/1 s rule is not full
    after_twenty = memory_usage(redis_db, IP)
    assert 0 < after_one < 1024
    assert after_one < after_twenty < 1024
    assert len(client_keys(redis_db)) == 1  # one list holds a client's global log


# --- how the storage is given --------------------------------------------------------------------


def test_a_redis_url(
    redis_server: RedisServer, redis_db: redis.Redis, redis_app: AppFactory
) -> None:
    app, _ = redis_app(storage=redis_server.url, rate_limit_rules=[{"count": 2, "window": 60}])
    assert isinstance(app.extensions["gatekeeper"].settings.storage, RedisStorage)
    assert statuses(app.test_client(), 3) == [200, 200, 429]
    assert client_keys(redis_db) == [f"gatekeeper:{{{IP}}}:log"]


def test_the_storage_uri_config_key(
    redis_server: RedisServer, redis_db: redis.Redis, redis_app: AppFactory
) -> None:
    app, _ = redis_app(
        config={"GATEKEEPER_STORAGE_URI": redis_server.url},
        rate_limit_rules=[{"count": 2, "window": 60}],
    )
    assert statuses(app.test_client(), 3) == [200, 200, 429]
    assert client_keys(redis_db) == [f"gatekeeper:{{{IP}}}:log"]


def test_a_unix_socket_url(redis_app: AppFactory) -> None:
    with running(unix_socket=True, tcp=False) as server:
        app, _ = redis_app(storage=server.unix_url, rate_limit_rules=[{"count": 2, "window": 60}])
        assert statuses(app.test_client(), 3) == [200, 200, 429]
        db = server.client(decode_responses=True)
        try:
            assert client_keys(db) == [f"gatekeeper:{{{IP}}}:log"]
        finally:
            db.close()


def test_a_ready_client_object(
    redis_server: RedisServer, redis_db: redis.Redis, redis_app: AppFactory
) -> None:
    given = redis_server.client()
    try:
        app, _ = redis_app(
            storage=given, rate_limit_rules=[{"count": 2, "window": 60}], key_prefix="a:"
        )
        storage = app.extensions["gatekeeper"].settings.storage
        assert isinstance(storage, RedisStorage)
        assert storage.client is given
        assert statuses(app.test_client(), 3) == [200, 200, 429]
        assert client_keys(redis_db, prefix="a:") == [f"a:{{{IP}}}:log"]
    finally:
        given.close()


@pytest.mark.parametrize(
    ("options", "config", "named"),
    [
        pytest.param({"storage": "redis://:nope"}, {}, "storage", id="option"),
        pytest.param(
            {},
            {"GATEKEEPER_STORAGE_URI": "redis://:nope"},
            "GATEKEEPER_STORAGE_URI",
            id="config",
        ),
    ],
)
def test_a_bad_url_names_the_option(
    options: dict[str, Any], config: dict[str, Any], named: str
) -> None:
    app = Flask(__name__)
    app.config.update(config)
    with pytest.raises(ConfigError, match=rf"^{named}: .*redis://:nope"):
        GateKeeper(app, **options)


def test_redis_errors_become_one_storage_error() -> None:
    nobody_listens = free_port()
    storage = RedisStorage(redis.Redis(host=HOST, port=nobody_listens, retry=Retry(NoBackoff(), 0)))
    try:
        with pytest.raises(StorageError) as caught:
            storage.hit(IP, [Scope.of(GLOBAL_SCOPE, (Rule(1, 1),))])
        assert isinstance(caught.value.__cause__, redis.ConnectionError)
    finally:
        storage.client.close()


# --- the script call on a pooled connection ------------------------------------------------------


class ScriptedConnection(redis.Connection):
    """A real connection that keeps the script calls it writes (``written``) and fails
    as told: each of ``send_faults`` before a call goes out, each of ``read_faults``
    after it went out and ran (its reply dropped with the connection, as a timeout
    drops it). Its handshake (HELLO, CLIENT SETINFO) is written as usual."""

    send_faults: ClassVar[list[redis.RedisError]] = []
    read_faults: ClassVar[list[redis.RedisError]] = []
    written: ClassVar[list[bytes]] = []

    script_sent = False

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        data = b"".join(command)
        self.script_sent = b"EVAL" in data[:20]
        if self.script_sent:
            if type(self).send_faults:
                redis.Connection.disconnect(self)  # named on redis-py's class: typed or not
                raise type(self).send_faults.pop(0)
            type(self).written.append(data)
        redis.Connection.send_packed_command(self, command, check_health)

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        if self.script_sent and type(self).read_faults:
            redis.Connection.disconnect(self)
            raise type(self).read_faults.pop(0)
        return super().read_response(*args, **kwargs)


def scripted_storage(url: str) -> RedisStorage:
    """A storage built from ``url`` (its timeouts and retry) on ``ScriptedConnection``s."""
    ScriptedConnection.send_faults = []
    ScriptedConnection.read_faults = []
    ScriptedConnection.written = []
    storage = RedisStorage.from_url(url)
    pool_of(storage).connection_class = ScriptedConnection
    return storage


@pytest.fixture
def scripted(redis_server: RedisServer, redis_db: redis.Redis) -> Iterator[RedisStorage]:
    storage = scripted_storage(redis_server.url)
    yield storage
    storage.client.close()


def pool_of(storage: RedisStorage) -> redis.ConnectionPool:
    assert isinstance(storage.client, redis.Redis)
    return storage.client.connection_pool


def in_use(storage: RedisStorage) -> int:
    return len(pool_of(storage)._in_use_connections)


GLOBAL_RULE = (Scope.of(GLOBAL_SCOPE, (Rule(100, 3600),)),)


def test_a_plain_client_calls_scripts_on_a_connection_of_its_pool(
    redis_server: RedisServer, redis_db: redis.Redis, scripted: RedisStorage
) -> None:
    redis_db.script_flush()  # NOSCRIPT: EVAL on the same connection, in the same checkout
    assert scripted.hit(IP, GLOBAL_RULE).admitted
    heads = [command.split(b"\r\n")[2] for command in ScriptedConnection.written]
    assert (heads, in_use(scripted)) == ([b"EVALSHA", b"EVAL"], 0)
    assert pool_of(scripted)._created_connections == 1
    assert scripted.hit(IP, GLOBAL_RULE).admitted  # loaded: by digest only
    assert (len(ScriptedConnection.written), in_use(scripted)) == (3, 0)
    assert redis_db.llen(f"gatekeeper:{{{IP}}}:log") == 2

    # the bytes redis-py's own encoder writes for the same calls, non-ASCII text too
    assert scripted.report("é", BanRule(3, 10, 600), "motif: açaí") is None
    keys = ["gatekeeper:{%C3%A9}:reports", "gatekeeper:{%C3%A9}:ban"]
    rule_args = [3, 10_000_000, 600_000_000, "1.0", MAX_MICROSECONDS, 86_400_000_000]
    args = ["", *rule_args, "motif: açaí", ""]  # "": the default offence
    packer = redis.connection.PythonRespSerializer(6000, redis_db.get_encoder().encode)
    assert ScriptedConnection.written[-2:] == [
        b"".join(packer.pack(*call, 2, *keys, *args))
        for call in (("EVALSHA", REPORT.sha), ("EVAL", REPORT.source))
    ]
    assert redis_db.llen("gatekeeper:{%C3%A9}:reports") == 1


def test_a_connection_error_before_the_command_is_retried_once(
    redis_db: redis.Redis, scripted: RedisStorage
) -> None:
    assert scripted.hit(IP, GLOBAL_RULE).admitted  # the server has the script now
    written = len(ScriptedConnection.written)
    ScriptedConnection.send_faults = [redis.ConnectionError("injected")]
    assert scripted.hit(IP, GLOBAL_RULE).admitted  # from_url: one immediate retry
    assert (len(ScriptedConnection.written) - written, in_use(scripted)) == (1, 0)

    ScriptedConnection.send_faults = [redis.ConnectionError("injected")] * 2
    with pytest.raises(StorageError) as caught:
        scripted.hit(IP, GLOBAL_RULE)
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
    assert (len(ScriptedConnection.written) - written, in_use(scripted)) == (1, 0)  # returned
    assert redis_db.llen(f"gatekeeper:{{{IP}}}:log") == 2
    assert scripted.hit(IP, GLOBAL_RULE).admitted  # the pooled connection works again
    assert redis_db.llen(f"gatekeeper:{{{IP}}}:log") == 3


def test_a_timeout_is_never_retried_the_script_may_have_run(
    redis_db: redis.Redis, scripted: RedisStorage
) -> None:
    assert scripted.hit(IP, GLOBAL_RULE).admitted  # the server has the script now
    written = len(ScriptedConnection.written)
    ScriptedConnection.read_faults = [redis.TimeoutError("injected")]
    with pytest.raises(StorageError) as caught:
        scripted.hit(IP, GLOBAL_RULE)
    assert isinstance(caught.value.__cause__, redis.TimeoutError)
    assert (len(ScriptedConnection.written) - written, in_use(scripted)) == (1, 0)
    assert redis_db.llen(f"gatekeeper:{{{IP}}}:log") == 2  # it ran once, and only once


def test_a_real_timeout_on_a_paused_server_is_not_retried(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    storage = scripted_storage(f"{redis_server.url}?socket_timeout=0.25")
    admin = redis_server.client(socket_timeout=5)
    try:
        assert storage.hit(IP, GLOBAL_RULE).admitted  # connected, script loaded
        written = len(ScriptedConnection.written)
        admin.execute_command("CLIENT", "PAUSE", 600, "ALL")
        with pytest.raises(StorageError) as caught:
            storage.hit(IP, GLOBAL_RULE)
        assert isinstance(caught.value.__cause__, redis.TimeoutError)
        assert (len(ScriptedConnection.written) - written, in_use(storage)) == (1, 0)
        assert admin.ping()  # answered once the pause is over
        assert storage.hit(IP, GLOBAL_RULE).admitted
    finally:
        admin.close()
        storage.client.close()


def test_an_outage_leaves_no_connection_checked_out(own_server: RedisServer) -> None:
    storage = RedisStorage.from_url(own_server.url)
    try:
        assert storage.hit(IP, GLOBAL_RULE).admitted
        own_server.stop()
        for _ in range(3):
            with pytest.raises(StorageError):
                storage.hit(IP, GLOBAL_RULE)
            assert in_use(storage) == 0
        own_server.start()  # empty, without the script: the pooled connection is dead
        assert storage.hit(IP, GLOBAL_RULE).admitted
        assert in_use(storage) == 0
    finally:
        storage.client.close()


class CountingRedis(redis.Redis):
    """A client whose ``execute_command`` is its own, as instrumentation makes it."""

    commands: ClassVar[list[str]] = []

    def execute_command(self, *args: Any, **options: Any) -> Any:
        CountingRedis.commands.append(str(args[0]))
        return redis.Redis.execute_command(self, *args, **options)


def test_clients_the_direct_path_would_bypass_keep_redis_py_s_own(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    redis_db.script_flush()
    CountingRedis.commands = []
    counting = CountingRedis(host=HOST, port=redis_server.port)
    single = redis_server.client(single_connection_client=True)
    try:
        for client in (counting, single):
            storage = RedisStorage(client)
            assert storage._pooled is None
            assert storage.hit(IP, GLOBAL_RULE).admitted
        assert CountingRedis.commands == ["EVALSHA", "EVAL"]  # NOSCRIPT, then the source
        assert redis_db.llen(f"gatekeeper:{{{IP}}}:log") == 2
    finally:
        counting.close()
        single.close()


@contextlib.contextmanager
def sentinel_for(primary: RedisServer) -> Iterator[int]:
    """A Redis Sentinel (``redis-server --sentinel``) watching ``primary`` as ``main``."""
    port = free_port()
    config = primary.directory / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind {HOST}\nsentinel monitor main {HOST} {primary.port} 1\n"
        f"logfile {primary.directory / 'sentinel.log'}\n"
    )
    process = subprocess.Popen(["redis-server", str(config), "--sentinel"])
    probe = redis.Redis(host=HOST, port=port, socket_timeout=0.5)

    def answers() -> bool:
        try:
            found = probe.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "main")
            return bool(found)
        except redis.ConnectionError:
            return False

    try:
        wait_until(answers, 10, f"redis-server --sentinel on port {port}")
        yield port
    finally:
        probe.close()
        os.kill(process.pid, signal.SIGTERM)
        process.wait(10)


def test_a_sentinel_client_takes_the_direct_path(
    redis_server: RedisServer, redis_db: redis.Redis, redis_app: AppFactory
) -> None:
    from redis.sentinel import Sentinel

    with sentinel_for(redis_server) as port:
        sentinel = Sentinel([(HOST, port)], socket_timeout=0.5)
        client = sentinel.master_for("main", socket_timeout=0.5)
        try:
            app, _ = redis_app(storage=client, rate_limit_rules=[{"count": 2, "window": 60}])
            assert app.extensions["gatekeeper"].settings.storage._pooled is not None
            assert statuses(app.test_client(), 3) == [200, 200, 429]
            assert client_keys(redis_db) == [f"gatekeeper:{{{IP}}}:log"]
        finally:
            client.close()


def test_known_argument_encodings_stay_bounded(
    redis_server: RedisServer, redis_db: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_scripts, "_KNOWN_WORDS", 8)
    clock = FakeClock(1000.0)
    storage = RedisStorage(redis_server.client(), clock=clock)
    try:
        for _ in range(20):  # each reading of the clock is a new argument value
            clock.advance(1)
            assert storage.hit(IP, GLOBAL_RULE).admitted
        assert storage._pooled is not None
        assert len(storage._pooled.known) == 8
        assert redis_db.llen(f"gatekeeper:{{{IP}}}:log") == 20
    finally:
        storage.client.close()


# --- exact limits under concurrency --------------------------------------------------------------


def test_threads_never_get_more_than_the_limit(
    redis_server: RedisServer, redis_db: redis.Redis, redis_app: AppFactory
) -> None:
    app, _ = redis_app(storage=redis_server.url, rate_limit_rules=[{"count": 50, "window": 3600}])

    def burst(_: int) -> list[int]:
        return statuses(app.test_client(), 25)

    with ThreadPoolExecutor(8) as pool:
        results = [status for batch in pool.map(burst, range(8)) for status in batch]
    assert Counter(results) == {200: 50, 429: 150}
    assert redis_db.llen(f"gatekeeper:{{{IP}}}:log") == 50


# --- storage outages -----------------------------------------------------------------------------


def outage_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "flask_gatekeeper" and record.levelno == logging.WARNING
    ]


def concurrent_responses(app: Flask, threads: int, each: int) -> list[TestResponse]:
    def burst(_: int) -> list[TestResponse]:
        client = app.test_client()
        return [get(client) for _ in range(each)]

    with ThreadPoolExecutor(threads) as pool:
        return [response for batch in pool.map(burst, range(threads)) for response in batch]


@pytest.mark.parametrize("policy", ["local", "open", "closed"])
def test_redis_stopped_mid_traffic_and_started_again(
    own_server: RedisServer,
    redis_app: AppFactory,
    caplog: pytest.LogCaptureFixture,
    policy: str,
) -> None:
    caplog.set_level(logging.INFO, logger="flask_gatekeeper")
    app, _ = redis_app(
        storage=own_server.url,
        rate_limit_rules=[{"count": 5, "window": 3600}],
        # "local" is the default for Redis; fail_open=True is "open", False is "closed"
        fail_open={"local": None, "open": True, "closed": False}[policy],
    )
    guard = app.extensions["gatekeeper"].guard
    guard.clock = ProbingClock()  # ask Redis again on every call while it is down
    client = app.test_client()
    assert statuses(client, 3) == [200] * 3

    own_server.stop()
    during = concurrent_responses(app, threads=4, each=5)
    codes = sorted(response.status_code for response in during)
    if policy == "local":  # the process's own limits: 5 an hour, counted from the outage on
        assert codes == [200] * 5 + [429] * 15
        assert login(client).status_code == 429  # refused by the local limits too
        assert storage_errors(app) == 21  # every request asked first (retry interval 0)
    elif policy == "open":
        assert codes == [200] * 20
        assert login(client).status_code == 401  # report() fails quietly: not a 500
        assert (
            storage_errors(app) == 22
        )  # every request asked (the retry interval is 0), and report()
    else:
        assert codes == [503] * 20
        assert {response.headers.get("Retry-After") for response in during} == {"1"}
        assert login(client).status_code == 503
        assert storage_errors(app) == 21  # every request asked (the retry interval is 0)
    assert guard.down

    own_server.start()  # same port, empty: the pooled connections are dead
    assert statuses(client, 6) == [200] * 5 + [429]  # limits enforced again
    assert not guard.down
    assert guard.outages == 1
    warnings = outage_warnings(caplog)
    assert len(warnings) == 1
    meets = {
        "local": "deciding requests with this process's own limits",
        "open": "admitting",
        "closed": "refusing (503)",
    }
    assert meets[policy] in warnings[0].getMessage()


def test_a_down_redis_is_asked_once_per_retry_interval(
    own_server: RedisServer, redis_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flask_gatekeeper")
    app, _ = redis_app(storage=own_server.url, fail_open=False)
    guard = app.extensions["gatekeeper"].guard
    client = app.test_client()
    assert statuses(client, 1) == [200]
    own_server.stop()
    assert statuses(client, 5) == [503] * 5  # well within RETRY_INTERVAL (1 s)
    assert storage_errors(app) == 1  # the first request asked; the others did not wait for Redis
    assert guard.outages == 1
    assert len(outage_warnings(caplog)) == 1


def test_reports_do_not_ask_a_down_redis_within_the_retry_interval(
    own_server: RedisServer, redis_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flask_gatekeeper")
    app, _ = redis_app(storage=own_server.url, fail_open=None)  # the default: fail open
    client = app.test_client()
    assert statuses(client, 1) == [200]
    own_server.stop()
    assert statuses(client, 1) == [200]  # asks, fails, starts the outage
    assert storage_errors(app) == 1
    responses = [login(client) for _ in range(3)]  # admitted unasked, then report()
    assert [response.status_code for response in responses] == [401] * 3  # never a 500
    assert storage_errors(app) == 1  # a stalled Redis would cost a timeout per report


# --- several processes ---------------------------------------------------------------------------


APP_MODULE = textwrap.dedent(
    """
    import os

    from flask import Flask, Response, request

    from flask_gatekeeper import GateKeeper

    app = Flask(__name__)
    app.config["GATEKEEPER_STORAGE_URI"] = os.environ["GK_TEST_REDIS_URL"]
    gk = GateKeeper(
        app,
        trusted_proxies=1,
        rate_limit_rules=[{"count": 100, "window": 3600}],
        ban_rule={"count": 3, "window": 60, "duration": 600},
        fail_open=False,
    )


    @app.after_request
    def tag(response):
        response.headers["X-Pid"] = str(os.getpid())
        return response


    @app.route("/")
    def index():
        return "hello"


    @app.route("/login", methods=["POST"])
    def login():
        return ("banned" if gk.report() else "bad password"), 401


    @app.route("/health")
    @gk.bypass
    def health():
        return "ok"
    """
)


def redis_env(storage: str) -> dict[str, str]:
    """The environment that gives ``APP_MODULE`` its storage."""
    return {"GK_TEST_REDIS_URL": storage}


def http_request(port: int, method: str = "GET", path: str = "/", ip: str = IP) -> Reply:
    return fetch(f"http://{HOST}:{port}{path}", ip, method=method)


@pytest.fixture
def app_directory(tmp_path: Path) -> Path:
    require("redis-server")
    (tmp_path / "gk_app.py").write_text(APP_MODULE)
    return tmp_path


@pytest.fixture
def app_processes() -> Iterator[list[ServerProcess]]:
    """Collects the app servers a test starts, and stops them all at the end."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()


def test_four_gunicorn_workers_and_a_second_process_share_one_exact_limit(
    redis_server: RedisServer,
    redis_db: redis.Redis,
    app_directory: Path,
    app_processes: list[ServerProcess],
) -> None:
    gunicorn = ServerProcess.gunicorn(app_directory, workers=4, env=redis_env(redis_server.url))
    werkzeug = ServerProcess.werkzeug(app_directory, env=redis_env(redis_server.url))
    for server in (gunicorn, werkzeug):
        app_processes.append(server)
        server.start()
    ports = [gunicorn.port, werkzeug.port]

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda i: http_request(ports[i % 2]), range(400)))

    assert Counter(result.status for result in results) == {200: 100, 429: 300}
    assert all(result.headers.get("retry-after") for result in results if result.status == 429)
    gunicorn_pids = {result.headers["x-pid"] for result in results if result.port == gunicorn.port}
    werkzeug_pids = {result.headers["x-pid"] for result in results if result.port == werkzeug.port}
    assert len(gunicorn_pids) >= 2  # several workers took part
    assert len(werkzeug_pids) == 1
    assert gunicorn_pids.isdisjoint(werkzeug_pids)
    assert redis_db.llen(f"gatekeeper:{{{IP}}}:log") == 100


def test_a_ban_survives_an_app_restart(
    redis_server: RedisServer,
    redis_db: redis.Redis,
    app_directory: Path,
    app_processes: list[ServerProcess],
) -> None:
    server = ServerProcess.gunicorn(app_directory, workers=2, env=redis_env(redis_server.url))
    app_processes.append(server)
    server.start()
    bodies = [http_request(server.port, "POST", "/login").body for _ in range(3)]
    assert bodies == ["bad password", "bad password", "banned"]
    assert http_request(server.port).status == 403

    server.stop()
    server.start()
    refused = http_request(server.port)
    assert refused.status == 403
    assert 590 <= int(refused.headers["retry-after"]) <= 600
    assert http_request(server.port, ip=OTHER_IP).status == 200


# --- Redis Cluster -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_nodes() -> Iterator[list[RedisServer]]:
    require("redis-server", "redis-cli")
    with redis_cluster(3) as nodes:
        yield nodes


@pytest.fixture
def cluster_client(cluster_nodes: list[RedisServer]) -> Iterator[RedisCluster]:
    client = RedisCluster(host=HOST, port=cluster_nodes[0].port)
    yield client
    client.close()


def test_a_cluster_client_keeps_exact_limits_for_clients_on_every_node(
    cluster_nodes: list[RedisServer], cluster_client: RedisCluster, redis_app: AppFactory
) -> None:
    app, gk = redis_app(storage=cluster_client, rate_limit_rules=[{"count": 5, "window": 3600}])
    client = app.test_client()
    ips = [f"10.0.{n // 250}.{n % 250 + 1}" for n in range(300)]
    for ip in ips:  # every script's keys on one slot: ban, reports and one or two logs
        assert statuses(client, 3, ip=ip) == [200, 200, 200], ip
        assert get(client, "/burst", ip=ip).status_code == 200
        assert login(client, ip=ip).status_code == 401  # the fifth request, and a report
        assert get(client, ip=ip).status_code == 429
    with app.app_context():  # the last client's login was a report within the ban window
        assert not gk.report(ip=ips[-1])
        assert gk.report(ip=ips[-1])  # the third report bans
    assert get(client, ip=ips[-1]).status_code == 403
    assert get(client, ip=ips[0]).status_code == 429
    assert storage_errors(app) == 0  # no CROSSSLOT, no other error

    per_node = []
    for node in cluster_nodes:
        db = node.client(decode_responses=True)
        try:
            per_node.append({str(key) for key in db.scan_iter(match="gatekeeper:*")})
        finally:
            db.close()
    assert all(len(keys) > 100 for keys in per_node)  # about 100 clients on each node
    assert set().union(*per_node) == {
        f"gatekeeper:{{{ip}}}:{suffix}" for ip in ips for suffix in ("log", "log:burst", "reports")
    } - {f"gatekeeper:{{{ips[-1]}}}:reports"} | {f"gatekeeper:{{{ips[-1]}}}:ban"}
    for ip in ips:  # every key of a client sits on one node
        holders = [keys for keys in per_node if f"gatekeeper:{{{ip}}}:log" in keys]
        assert len(holders) == 1, ip
        assert all(key in holders[0] for key in set().union(*per_node) if f"{{{ip}}}" in key)


def account_app(redis_app: AppFactory, storage: object) -> tuple[Flask, GateKeeper]:
    """A login route limited per IP (2 per hour) and per account (3 per hour)."""
    app, gk = redis_app(storage=storage, rate_limit_rules=None, ban_rule=None)

    @app.post("/account")
    @gk.specific([Rule(2, 3600), Rule(3, 3600, key="form[user]")])
    def account() -> str:
        return "tried"

    return app, gk


def try_account(client: FlaskClient, ip: str, user: str = "alice") -> int:
    data = {"user": user}
    return client.post("/account", data=data, environ_base={"REMOTE_ADDR": ip}).status_code


def test_a_route_with_two_keys_is_one_round_trip_on_one_server(
    redis_server: RedisServer, redis_db: redis.Redis, redis_app: AppFactory
) -> None:
    app, _ = account_app(redis_app, redis_server.url)
    client = app.test_client()
    assert try_account(client, OTHER_IP, "bob") == 200  # loads the script
    for ip, expected in ((IP, 200), (IP, 200), (IP, 429), ("10.0.0.1", 200), ("10.0.0.2", 429)):
        seen: list[int] = []
        commands = client_commands(redis_server, lambda: seen.append(try_account(client, ip)))  # noqa: B023
        assert (seen, script_runs(commands)) == ([expected], ["ban"])


def test_a_route_with_two_keys_on_a_cluster(
    cluster_client: RedisCluster, redis_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = RedisStorage(cluster_client)
    app, gk = account_app(redis_app, storage)
    client = app.test_client()
    scripts: list[str] = []
    run = storage._run

    def counted(*arguments: Any) -> Any:
        if arguments[0] is not NETWORKS:  # the registry of network bans, read apart
            scripts.append(arguments[1][0])  # the script's first key
        return run(*arguments)

    monkeypatch.setattr(storage, "_run", counted)
    ips = [f"10.1.0.{n}" for n in range(1, 6)]
    assert try_account(client, ips[0]) == 200
    # alice's check, the client's own script, alice's record: three round trips
    assert [key.rpartition("{")[2] for key in scripts] == [
        "alice}:ban",
        "10.1.0.1}:ban",
        "alice}:ban",
    ]
    assert [try_account(client, ip) for ip in ips[1:4]] == [200, 200, 429]  # alice's 3
    assert [try_account(client, ips[0], "bob") for _ in range(2)] == [200, 429]  # the IP's 2
    assert try_account(client, ips[4], "bob") == 200  # the refused attempts recorded nothing
    with app.app_context():
        gk.ban("carol", 60)
    assert try_account(client, ips[4], "carol") == 403
    assert storage_errors(app) == 0


def test_a_count_when_route_with_two_keys_refunds_on_each_slot_of_a_cluster(
    cluster_client: RedisCluster, redis_app: AppFactory
) -> None:
    storage = RedisStorage(cluster_client)
    app, gk = redis_app(storage=storage, rate_limit_rules=None, ban_rule=None)

    @app.post("/sign-in")
    @gk.specific(
        [Rule(2, 3600), Rule(3, 3600, key="form[user]")],
        count_when=lambda response: response.status_code == 401,
    )
    def sign_in() -> tuple[str, int]:
        return ("welcome", 200) if request.form.get("password") == "right" else ("no", 401)

    client = app.test_client()

    def attempt(ip: str, password: str) -> int:
        data = {"user": "dave", "password": password}  # this test's own (shared cluster)
        return client.post("/sign-in", data=data, environ_base={"REMOTE_ADDR": ip}).status_code

    ips = [f"10.4.0.{n}" for n in range(1, 6)]
    assert [attempt(ips[0], "right") for _ in range(4)] == [200] * 4  # each given back
    assert [attempt(ip, "wrong") for ip in ips[1:]] == [401, 401, 401, 429]  # dave's three
    assert [attempt(ips[0], "wrong") for _ in range(2)] == [429, 429]
    assert storage_errors(app) == 0


def test_on_a_cluster_only_the_client_s_own_script_takes_the_slot(
    cluster_client: RedisCluster, redis_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an account's rule (on the account's slot) and a concurrency limit, the slot is
    checked and taken once, by the client's own script run as a request: never by the
    account's check (mode 3) or record (mode 2)."""
    storage = RedisStorage(cluster_client)
    app, gk = redis_app(storage=storage, rate_limit_rules=None, ban_rule=None)
    limits = gk.specific([Rule(2, 3600, key="form[user]")], concurrency=1)
    view = limits(lambda: Response(iter(["a"])))
    app.add_url_rule("/in-flight", "in_flight", view, methods=["POST"])
    client = app.test_client()
    ip, other, late = (f"10.3.0.{n}" for n in (1, 2, 3))  # this test's own (shared cluster)
    runs: list[tuple[str, int, bool]] = []  # whose script, its mode, whether with a token
    run = storage._run

    def counted(script: Any, keys: list[str], args: list[Any]) -> Any:
        if len(args) > 11:  # hit.lua: ARGV[10] is the mode, ARGV[12] the token
            runs.append((keys[0].partition("{")[2].partition("}")[0], args[9], args[11] != ""))
        return run(script, keys, args)

    monkeypatch.setattr(storage, "_run", counted)

    def post(address: str, user: str) -> TestResponse:
        environ = {"REMOTE_ADDR": address}
        return client.post("/in-flight", data={"user": user}, environ_base=environ)

    held = post(ip, "dave")
    assert held.status_code == 200
    assert runs == [("dave", 3, False), (ip, 1, True), ("dave", 2, False)]
    slots = f"gatekeeper:{{{ip}}}:slots:in_flight"
    assert cluster_client.zcard(slots) == 1
    assert not cluster_client.exists("gatekeeper:{dave}:slots:in_flight")
    runs.clear()
    with post(ip, "erin") as refused:  # the client's one slot is taken
        assert refused.status_code == 429
        assert "too many requests in flight" in refused.get_data(as_text=True)
    assert runs == [("erin", 3, False), (ip, 1, True)]  # and erin's rule recorded nothing
    held.close()
    assert cluster_client.zcard(slots) == 0
    with post(other, "dave") as second:
        assert second.status_code == 200
    runs.clear()
    with post(late, "dave") as third:  # dave's 2 are spent: his check refuses
        assert third.status_code == 429
    assert runs == [("dave", 3, False), (late, 3, False)]  # no slot taken, nothing recorded
    assert [post(address, "erin").status_code for address in (late, other)] == [200, 200]
    assert storage_errors(app) == 0


@pytest.mark.parametrize("anonymous", ["", "}guest"])
def test_any_client_key_works_in_a_cluster(
    cluster_client: RedisCluster, redis_app: AppFactory, anonymous: str
) -> None:
    app, _ = redis_app(
        storage=cluster_client,
        rate_limit_rules=[{"count": 2, "window": 3600}],
        key_func=lambda: request.headers.get("X-User", anonymous),
    )
    client = app.test_client()
    assert statuses(client, 3) == [200, 200, 429]  # as in memory and in a single Redis


def test_a_cluster_client_keeps_redis_py_s_path_and_reloads_scripts(
    cluster_nodes: list[RedisServer], cluster_client: RedisCluster
) -> None:
    storage = RedisStorage(cluster_client)
    assert storage._pooled is None  # each script goes to its keys' node through evalsha
    ips = [f"10.3.0.{n}" for n in range(1, 31)]  # on every node
    for node in cluster_nodes:
        db = node.client()
        try:
            db.script_flush()
        finally:
            db.close()
    for _ in range(2):  # the first on each node: NOSCRIPT, then EVAL
        assert all(storage.hit(ip, GLOBAL_RULE).admitted for ip in ips)
    assert {ip: storage.usage(ip, GLOBAL_RULE)[0].remaining for ip in ips} == dict.fromkeys(ips, 98)


def test_a_cluster_that_lost_a_slot_fails_open_not_500(
    redis_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    require("redis-server", "redis-cli")
    caplog.set_level(logging.INFO, logger="flask_gatekeeper")
    with redis_cluster(3) as nodes:
        cluster = RedisCluster(host=HOST, port=nodes[0].port)
        try:
            app, _ = redis_app(storage=cluster, fail_open=None)  # the default: fail open
            client = app.test_client()
            assert statuses(client, 1) == [200]
            slot = redis.crc.key_slot(f"gatekeeper:{{{IP}}}:ban".encode())
            for node in nodes:  # as if its primary were lost with no replica
                db = node.client()
                try:
                    db.cluster("DELSLOTS", slot)
                finally:
                    db.close()
            assert statuses(client, 2) == [200, 200]  # fail open, as for any outage
            assert app.extensions["gatekeeper"].guard.outages == 1
            assert len(outage_warnings(caplog)) == 1
        finally:
            cluster.close()


def test_the_cli_acts_on_the_live_state_in_redis(
    redis_server: RedisServer, redis_db: redis.Redis, redis_app: AppFactory
) -> None:
    """What `flask gatekeeper` does in its own process, the serving app sees at once
    when it remembers no refusal (with the local tier: within a second, tested apart)."""
    from flask_gatekeeper.cli import gatekeeper

    # the app serving requests
    server_app, _ = redis_app(storage=redis_server.url, cache_refusals=False)
    cli_app, _ = redis_app(storage=redis_server.url)  # the process a shell command starts
    runner = cli_app.test_cli_runner()
    result = runner.invoke(gatekeeper, ["ban", IP, "--duration", "120"])
    assert (result.exit_code, result.output) == (0, f"banned {IP} for 120s\n")
    assert get(server_app.test_client()).status_code == 403
    assert runner.invoke(gatekeeper, ["bans"]).output.split("\t")[0] == IP
    assert runner.invoke(gatekeeper, ["unban", IP]).output == f"unbanned {IP}\n"
    assert get(server_app.test_client()).status_code == 200
    assert statuses(server_app.test_client(), 20) == [200] * 19 + [429]
    assert runner.invoke(gatekeeper, ["reset", IP]).output == f"reset {IP}\n"
    assert get(server_app.test_client()).status_code == 200


def test_on_a_cluster_an_address_stays_banned_behind_a_key(
    cluster_nodes: list[RedisServer], cluster_client: RedisCluster, redis_app: AppFactory
) -> None:
    """The address's ban sits on another slot than the key's: read apart, still in force."""
    app, gk = redis_app(storage=cluster_client, rate_limit_rules=None, ban_rule=None)

    @app.route("/api")
    @gk.specific("10/second", key_func=lambda: request.headers.get("X-Api-Key"))
    def api() -> str:
        return "data"

    client = app.test_client()
    addresses = [f"10.1.0.{n}" for n in range(1, 21)]  # on several nodes
    with app.app_context():
        for address in addresses:
            gk.ban(address, 60)
    for address in addresses:
        for key in ("made-up", None):
            headers = {"X-Api-Key": key} if key else {}
            response = client.get("/api", headers=headers, environ_base={"REMOTE_ADDR": address})
            assert response.status_code == 403, (address, key)
        assert response.text.startswith(f"ip {address} banned")
    free = client.get("/api", headers={"X-Api-Key": "k"}, environ_base={"REMOTE_ADDR": "10.2.0.1"})
    assert free.status_code == 200
    assert storage_errors(app) == 0


def test_on_a_cluster_network_bans_hold(
    cluster_nodes: list[RedisServer], cluster_client: RedisCluster, redis_app: AppFactory
) -> None:
    """A network's ban and the registry sit on other slots than the client's keys: the
    registry is read in a call of its own, the network's ban apart, still in force."""
    app, gk = redis_app(storage=cluster_client, rate_limit_rules=None, ban_rule=None)
    client = app.test_client()
    with app.app_context():
        gk.ban("10.3.0.0/16", 60)
        gk.ban("2001:db8::/48", 60)
        assert {"10.3.0.0/16", "2001:db8::/48"} <= set(gk.bans())  # the cluster is shared
    for address in [f"10.3.{n}.1" for n in range(20)] + ["2001:db8::1"]:
        network = "2001:db8::/48" if ":" in address else "10.3.0.0/16"
        response = get(client, ip=address)
        expected = f"network {network} "
        assert (response.status_code, response.text[: len(expected)]) == (403, expected)
    assert get(client, ip="10.4.0.1").status_code == 200
    with app.app_context():
        assert gk.unban("10.3.0.0/16")
        assert app.extensions["gatekeeper"].settings.storage.network_lengths() == {(6, 48)}
    assert get(client, ip="10.3.0.1").status_code == 200
    assert get(client, ip="2001:db8::1").status_code == 403
    assert storage_errors(app) == 0
    with app.app_context():
        assert gk.unban("2001:db8::/48")  # leaves the shared cluster as it was
    for node in cluster_nodes:
        db = node.client()
        try:
            kept = [key for key in db.keys("gatekeeper:*networks*") if b":changes" not in key]
            assert kept == []  # the count of operator changes stays, as it must
        finally:
            db.close()


@pytest.mark.e2e
def test_a_multi_process_server_with_the_memory_storage_warns_once_per_worker(
    tmp_path: Path, app_processes: list[ServerProcess]
) -> None:
    """Real gunicorn with two workers and the memory storage: each worker logs one
    warning that names the Redis storage, at its first request, and no more."""
    (tmp_path / "gk_app.py").write_text(APP_MODULE)
    server = ServerProcess.gunicorn(tmp_path, workers=2, env=redis_env("memory://"))
    app_processes.append(server)
    server.start()
    pids = {http_request(server.port).headers["x-pid"] for _ in range(30)}
    log = server.log_path.read_text()
    warnings = [line for line in log.splitlines() if "runs several processes" in line]
    assert 1 <= len(pids) <= len(warnings) <= 2  # every worker that answered, once each
    assert all("Redis storage" in line for line in warnings)
