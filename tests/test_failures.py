"""Never silently unprotected: what a request sends never makes a storage fail, and every
failure is handled for what it is (the classes of design.md).

- **Request input**: costs up to the largest count are exact on both storages (over real
  HTTP too), a cost past every count is refused, and huge keys and values are stored as
  they are.
- **Outage** (Redis unreachable, out of memory...): the outage policy for every request,
  logged once, tried again a second later.
- **One call's own error** (a key of the wrong type, a custom storage's
  ``StorageCallError``, a bug): that request alone follows the outage policy, logged as a
  bug every time; other clients stay limited at the same moment, and no outage starts.
- **Misconfiguration**: a bad URL, an unknown database, a failed authentication or a
  server that is not Redis fail at start-up naming the setting; Redis merely down at
  start-up is a warning naming the URL, and the outage policy applies until it answers.

Redis tests use real ``redis-server`` processes (``support/redis_server.py``).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Optional

import pytest
import redis
from flask import Flask, request

from flask_gatekeeper import (
    BanRule,
    ConfigError,
    GateKeeper,
    MemoryStorage,
    Rule,
    StorageCallError,
    StorageError,
)
from flask_gatekeeper.decision import DEFAULT_OFFENCE, Decision
from flask_gatekeeper.outage import RETRY_INTERVAL
from flask_gatekeeper.rules import MAX_COUNT
from flask_gatekeeper.storage import Storage
from flask_gatekeeper.storage.plan import GLOBAL_SCOPE, Scope
from flask_gatekeeper.storage.redis import RedisStorage
from flask_gatekeeper.testing import FakeClock
from support import gatekeeper_logs, get
from support.redis_server import RedisServer, free_port, require, running
from support.servers import HOST, fetch, serving

BROKEN_IP = "203.0.113.66"
HEALTHY_IP = "203.0.113.7"
STRATEGIES = ["sliding-log", "fixed-window", "sliding-window", "gcra"]

LARGE_RULE = Rule(20_000, 60)
COSTS = (9000, 9000, 9000, 2000, 1)
"""The issue's example: from a cost of about 8,000, Redis failed and admitted all five."""
EXPECTED = [200, 200, 429, 200, 429]


def _value() -> None:
    """A distinct rule's function (the storages are given the values)."""


def _stats(gk: GateKeeper, app: Flask) -> dict[str, Any]:
    with app.app_context():
        return gk.stats()


def _outage_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        message
        for level, message in gatekeeper_logs(caplog)
        if level == "WARNING" and "storage unavailable" in message
    ]


# --- what a request sends never makes a storage fail ------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_large_costs_are_exact_on_both_storages(storage: Storage, strategy: str) -> None:
    rule = Rule(20_000, 60, strategy)
    admitted = [
        storage.hit("c", [Scope.of(GLOBAL_SCOPE, (rule,), cost=cost)]).admitted for cost in COSTS
    ]
    assert admitted == [status == 200 for status in EXPECTED]


@pytest.mark.parametrize(
    "cost", [20_001, 10**30, pytest.param(10**5000, id="10**5000: too long for str()")]
)
def test_a_cost_past_every_count_is_refused_never_an_error(storage: Storage, cost: int) -> None:
    scope = Scope.of(GLOBAL_SCOPE, (LARGE_RULE, Rule(5, 1, "gcra")), cost=cost)
    assert storage.hit("c", [scope]) == Decision(admitted=False, retry_after=60, rule=LARGE_RULE)
    largest = Scope.of(GLOBAL_SCOPE, (LARGE_RULE,), cost=LARGE_RULE.count)
    assert storage.hit("c", [largest]).admitted  # nothing was counted: the whole count fits
    assert not storage.hit("c", [Scope.of(GLOBAL_SCOPE, (LARGE_RULE,))]).admitted  # full


def test_huge_keys_and_values_are_stored_as_they_are(storage: Storage) -> None:
    client = "{é}%\udc80 " * 50_000
    scope = Scope.of(GLOBAL_SCOPE, (Rule(1, 60, distinct=_value),))
    first = replace(scope, values=("v" * 1_000_000,))
    assert storage.hit(client, [first]).admitted
    assert storage.hit(client, [first]).admitted  # the same value again
    assert not storage.hit(client, [replace(scope, values=("w",))]).admitted
    assert storage.hit(client[:-1], [replace(scope, values=("w",))]).admitted  # another client


def _status(port: int, path: str) -> int:
    return fetch(f"http://{HOST}:{port}{path}").status


@pytest.mark.e2e
def test_a_client_choosing_its_cost_over_http_is_limited_exactly(
    storage: Storage, clock: FakeClock
) -> None:
    app = Flask(__name__)
    gk = GateKeeper(app, storage=storage)

    @app.route("/batch")
    @gk.specific(LARGE_RULE, standalone=True, cost=lambda: int(request.args["items"]))
    def batch() -> str:
        return "done"

    with serving(app) as port:
        statuses = [_status(port, f"/batch?items={cost}") for cost in COSTS]
        assert _status(port, f"/batch?items={10**30}") == 429
    assert statuses == EXPECTED
    assert _stats(gk, app)["storage_errors"] == 0


# --- one call's own error: that request alone ---------------------------------------------------


def _hammer(app: Flask, ips: Sequence[str], times: int) -> dict[str, Counter[int]]:
    """``times`` requests from each of ``ips``, all at once from 8 threads: their statuses."""

    def status(ip: str) -> int:
        return get(app.test_client(), "/", ip).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {ip: [pool.submit(status, ip) for _ in range(times)] for ip in ips}
        return {ip: Counter(future.result() for future in done) for ip, done in futures.items()}


class _BrokenFor(MemoryStorage):
    """A memory storage whose every call for one client raises ``error``."""

    def __init__(self, client: str, error: Exception, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.broken, self.error = client, error

    def hit(self, client: str, scopes: Sequence[Scope], **options: Any) -> Decision:
        if client == self.broken:
            raise self.error
        return super().hit(client, scopes, **options)

    def report(
        self,
        client: str,
        ban_rule: BanRule,
        reason: str = "reports",
        offence: str = DEFAULT_OFFENCE,
    ) -> Optional[float]:
        if client == self.broken:
            raise self.error
        return super().report(client, ban_rule, reason, offence)


def _limited_app(storage: Storage, fail_open: bool) -> tuple[Flask, GateKeeper]:
    app = Flask(__name__)
    gk = GateKeeper(
        app,
        storage=storage,
        rate_limit_rules=[Rule(5, 60)],
        ban_rule={"count": 3, "window": 10, "duration": 600},
        fail_open=fail_open,
    )
    app.add_url_rule("/", "index", lambda: "hello")
    return app, gk


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(StorageCallError("the storage refused this value"), id="StorageCallError"),
        pytest.param(KeyError("a bug in a custom storage"), id="any other exception"),
    ],
)
@pytest.mark.parametrize("fail_open", [True, False], ids=["fail open", "fail closed"])
def test_an_error_of_one_call_fails_that_request_alone(
    clock: FakeClock, logs: pytest.LogCaptureFixture, error: Exception, fail_open: bool
) -> None:
    app, gk = _limited_app(_BrokenFor(BROKEN_IP, error, clock), fail_open)
    seen = _hammer(app, [BROKEN_IP, HEALTHY_IP], 20)
    assert seen[HEALTHY_IP] == {200: 5, 429: 15}
    assert seen[BROKEN_IP] == {200 if fail_open else 503: 20}
    with app.test_request_context(environ_base={"REMOTE_ADDR": BROKEN_IP}):
        assert gk.report() is False  # never raises
    bugs = [record for record in logs.records if record.levelno == logging.ERROR]
    assert len(bugs) == 21
    assert all(record.exc_info and record.exc_info[1] is error for record in bugs)
    assert "a bug rather than an outage" in bugs[0].getMessage()
    assert _outage_warnings(logs) == []
    assert not app.extensions["gatekeeper"].guard.down
    assert _stats(gk, app)["storage_errors"] == 21


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(ConnectionRefusedError(111, "Connection refused"), id="ConnectionError"),
        pytest.param(TimeoutError("timed out"), id="TimeoutError"),
        pytest.param(OSError(101, "Network is unreachable"), id="OSError"),
    ],
)
def test_a_custom_storage_s_socket_errors_are_an_outage(
    clock: FakeClock, logs: pytest.LogCaptureFixture, error: Exception
) -> None:
    """A storage of the app's own that lets its socket's errors through: an outage, so
    the storage is asked once a second, not by every request, and it is logged once."""
    storage = _BrokenFor(BROKEN_IP, error, clock)
    calls = []
    hit = storage.hit

    def counted(client: str, scopes: Sequence[Scope], **options: Any) -> Decision:
        calls.append(client)
        return hit(client, scopes, **options)

    storage.hit = counted  # type: ignore[method-assign]
    app, _ = _limited_app(storage, fail_open=True)
    client = app.test_client()
    for _ in range(5):
        assert client.get("/", environ_base={"REMOTE_ADDR": BROKEN_IP}).status_code == 200
    assert len(calls) == 1  # the others met the outage policy without asking
    assert len(_outage_warnings(logs)) == 1
    assert app.extensions["gatekeeper"].guard.down
    assert [record for record in logs.records if record.levelno == logging.ERROR] == []


# --- Redis: the classes at the boundary ---------------------------------------------------------

_REDIS_ERRORS = redis.exceptions
OUTAGES = [
    _REDIS_ERRORS.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
    _REDIS_ERRORS.TimeoutError("Timeout reading from socket"),
    _REDIS_ERRORS.BusyLoadingError("Redis is loading the dataset in memory"),
    _REDIS_ERRORS.ReadOnlyError("You can't write against a read only replica. script: 9a9b"),
    _REDIS_ERRORS.OutOfMemoryError("command not allowed when used memory > 'maxmemory'. script:"),
    _REDIS_ERRORS.ClusterDownError("The cluster is down"),
    _REDIS_ERRORS.MasterDownError("Link with MASTER is down and replica-serve-stale-data is no"),
    _REDIS_ERRORS.ResponseError("MISCONF Redis is configured to save RDB snapshots. script: 9a"),
    _REDIS_ERRORS.ResponseError("BUSY Redis is busy running a script. You can only call ..."),
    _REDIS_ERRORS.ResponseError("unknown command 'EVALSHA', with args beginning with: "),
    _REDIS_ERRORS.AuthenticationError("invalid username-password pair or user is disabled."),
    _REDIS_ERRORS.NoPermissionError("this user has no permissions to run the 'evalsha' command"),
]
CALL_ERRORS = [
    _REDIS_ERRORS.ResponseError("user_script:477: too many results to unpack script: e1e1b8a6"),
    _REDIS_ERRORS.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of"),
    _REDIS_ERRORS.DataError("Invalid input of type: 'NoneType'."),
]


class _Raising:
    """A client (not a ``redis.Redis``, so scripts go through its ``evalsha``) that fails."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def evalsha(self, *args: object) -> object:
        raise self.error


@pytest.mark.parametrize(
    ("error", "kind"),
    [pytest.param(e, StorageError, id=f"outage: {type(e).__name__} {e}"[:60]) for e in OUTAGES]
    + [
        pytest.param(e, StorageCallError, id=f"call: {type(e).__name__} {e}"[:60])
        for e in CALL_ERRORS
    ],
)
def test_redis_errors_become_the_error_of_their_class(error: Exception, kind: type) -> None:
    storage = RedisStorage(_Raising(error))  # type: ignore[arg-type]
    with pytest.raises(StorageError) as caught:
        storage.hit("c", [Scope.of(GLOBAL_SCOPE, (Rule(1, 1),))])
    assert type(caught.value) is kind
    assert caught.value.__cause__ is error


@pytest.mark.redis
@pytest.mark.parametrize("fail_open", [True, False], ids=["fail open", "fail closed"])
def test_a_script_error_for_one_client_leaves_the_others_limited(
    redis_url: str,
    raw_redis: Any,
    clock: FakeClock,
    logs: pytest.LogCaptureFixture,
    fail_open: bool,
) -> None:
    app, gk = _limited_app(RedisStorage(redis.Redis.from_url(redis_url), clock=clock), fail_open)
    raw_redis.set(f"gatekeeper:{{{BROKEN_IP}}}:log", "not a list")  # WRONGTYPE in its script
    seen = _hammer(app, [BROKEN_IP, HEALTHY_IP], 20)
    assert seen[HEALTHY_IP] == {200: 5, 429: 15}
    assert seen[BROKEN_IP] == {200 if fail_open else 503: 20}
    bugs = [record for record in logs.records if record.levelno == logging.ERROR]
    assert len(bugs) == 20
    assert all("WRONGTYPE" in str(record.exc_info and record.exc_info[1]) for record in bugs)
    assert _outage_warnings(logs) == []
    assert _stats(gk, app)["storage_errors"] == 20


@pytest.mark.redis
def test_out_of_memory_is_an_outage_for_every_client(
    redis_url: str, raw_redis: Any, clock: FakeClock, logs: pytest.LogCaptureFixture
) -> None:
    app, _ = _limited_app(RedisStorage(redis.Redis.from_url(redis_url), clock=clock), False)
    raw_redis.config_set("maxmemory", "1")  # every write refused: OOM
    try:
        assert get(app.test_client(), "/", BROKEN_IP).status_code == 503
        assert get(app.test_client(), "/", HEALTHY_IP).status_code == 503  # not even asked
        assert len(_outage_warnings(logs)) == 1
    finally:
        raw_redis.config_set("maxmemory", "0")
    clock.advance(RETRY_INTERVAL)
    assert get(app.test_client(), "/", HEALTHY_IP).status_code == 200
    assert ("INFO", "storage available again") in gatekeeper_logs(logs)


# --- misconfiguration: at start-up, naming the setting ----------------------------------------


@pytest.fixture(scope="module")
def guarded() -> Iterator[RedisServer]:
    """A server that wants the password ``s3cret``."""
    with running(password="s3cret") as server:
        yield server


@pytest.fixture(scope="module")
def not_redis() -> Iterator[int]:
    """The port of a server that answers every connection in HTTP."""
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen()
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                connection.recv(1024)
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()
    thread.join(timeout=10)


def _bad_url(case: str, redis_url: str, guarded: RedisServer, not_redis: int) -> str:
    good = redis_url.rpartition("/")[0]
    return {
        "unknown database": f"{good}/99",
        "database not a number": f"{good}/abc",
        "wrong password": f"redis://:wrong-pass@{HOST}:{guarded.port}/0",
        "no password": f"redis://{HOST}:{guarded.port}/0",
        "not Redis": f"redis://{HOST}:{not_redis}/0",
    }[case]


BAD_URLS = {
    "unknown database": "no such database",
    "database not a number": "the database must be a number, got 'abc'",
    "wrong password": "authentication failed",
    "no password": "authentication failed",
    "not Redis": "does not speak the Redis protocol",
}


@pytest.mark.redis
@pytest.mark.parametrize("case", list(BAD_URLS))
@pytest.mark.parametrize("where", ["storage", "GATEKEEPER_STORAGE_URI"])
def test_a_storage_that_can_never_work_fails_at_start_up_naming_the_setting(
    redis_url: str, guarded: RedisServer, not_redis: int, case: str, where: str
) -> None:
    url = _bad_url(case, redis_url, guarded, not_redis)
    app = Flask(__name__)
    given: dict[str, Any] = {"storage": url} if where == "storage" else {}
    app.config.update({} if given else {"GATEKEEPER_STORAGE_URI": url})
    with pytest.raises(ConfigError) as caught:
        GateKeeper(app, **given)
    message = str(caught.value)
    assert message.startswith(f"{where}: ")
    assert BAD_URLS[case] in message
    assert "wrong-pass" not in message
    assert "gatekeeper" not in app.extensions


@pytest.mark.redis
def test_a_right_password_passes_the_start_up_check(guarded: RedisServer) -> None:
    app, _ = _limited_app(RedisStorage.from_url(guarded.url), True)
    client = app.test_client()
    assert [get(client, "/", HEALTHY_IP).status_code for _ in range(6)] == [200] * 5 + [429]


@pytest.mark.redis
@pytest.mark.parametrize("wrap", [False, True], ids=["redis client", "RedisStorage"])
def test_a_storage_object_is_checked_too(redis_url: str, wrap: bool) -> None:
    client = redis.Redis.from_url(redis_url.rpartition("/")[0] + "/99")
    try:
        with pytest.raises(ConfigError, match=r"^storage: Redis at .*/99: no such database"):
            GateKeeper(Flask(__name__), storage=RedisStorage(client) if wrap else client)
    finally:
        client.close()


@pytest.fixture
def later() -> Iterator[RedisServer]:
    """A server not started yet: its port is free until the test starts it."""
    require("redis-server")
    server = RedisServer()
    try:
        yield server
    finally:
        server.__exit__(None, None, None)


@pytest.mark.redis
def test_redis_down_at_start_up_is_a_warning_naming_the_url(
    logs: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    app = Flask(__name__)
    app.config["GATEKEEPER_STORAGE_URI"] = f"redis://:s3cret@{HOST}:{port}/2"
    GateKeeper(app, rate_limit_rules=[Rule(5, 60)])
    (warning,) = _outage_warnings(logs)
    assert warning.startswith(
        "GATEKEEPER_STORAGE_URI: at start-up, storage unavailable, deciding requests with "
        "this process's own limits"  # on_outage="local", the default for Redis
    )
    assert f"redis://{HOST}:{port}/2" in warning
    assert "s3cret" not in warning
    app.add_url_rule("/", "index", lambda: "hello")
    client = app.test_client()
    assert [get(client, "/", HEALTHY_IP).status_code for _ in range(6)] == [200] * 5 + [429]


@pytest.mark.redis
def test_redis_down_at_start_up_follows_the_outage_policy_until_it_answers(
    later: RedisServer, clock: FakeClock, logs: pytest.LogCaptureFixture
) -> None:
    storage = RedisStorage.from_url(later.url)
    storage.clock = clock
    app, _ = _limited_app(storage, fail_open=False)
    client = app.test_client()
    assert [get(client, "/", HEALTHY_IP).status_code for _ in range(3)] == [503] * 3
    later.start()
    assert get(client, "/", HEALTHY_IP).status_code == 503  # tried again a second later
    clock.advance(RETRY_INTERVAL)
    assert [get(client, "/", HEALTHY_IP).status_code for _ in range(6)] == [200] * 5 + [429]
    assert len(_outage_warnings(logs)) == 1
    assert ("INFO", "storage available again") in gatekeeper_logs(logs)
    storage.client.close()


@pytest.mark.parametrize("make", [Rule, lambda count, window: BanRule(count, window, 60)])
def test_a_count_past_max_count_fails_naming_it(make: Any) -> None:
    make(MAX_COUNT, 60)
    with pytest.raises(ConfigError, match=rf"^'count' must be at most {MAX_COUNT}, got"):
        make(MAX_COUNT + 1, 60)
