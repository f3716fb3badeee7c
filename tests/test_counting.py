"""What a request counts for, through the app, on both storages: ``cost`` (a number or a
function of the request), ``count_when`` (reserved when admitted, given back after the
response it does not count), reading usage
without spending it, and resetting one scope."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from flask import Flask, request
from flask.testing import FlaskClient

from flask_gatekeeper import ConfigError, GateKeeper, MemoryStorage, Rule
from flask_gatekeeper.decision import Usage
from flask_gatekeeper.storage import Storage
from flask_gatekeeper.storage.plan import Scope
from flask_gatekeeper.testing import FakeClock, FlakyStorage
from support import AppFactory, gatekeeper_logs, index


def batch_app(make_app: AppFactory, storage: Storage, **options: object) -> Flask:
    """Global 20/minute; ``/batch?n=`` costs n against its own 10/minute."""
    app, gk = make_app(base={}, storage=storage, rate_limit_rules="20/minute", **options)

    @app.route("/batch", methods=["POST"])
    @gk.specific("10/minute", cost=lambda: int(request.args.get("n", "1")))
    def batch() -> str:
        return "done"

    @app.route("/fixed", methods=["POST"])
    @gk.specific("10/minute", cost=4)
    def fixed() -> str:
        return "done"

    return app


def posts(client: FlaskClient, path: str, *sizes: int) -> list[int]:
    return [client.post(path, query_string={"n": size}).status_code for size in sizes]


def test_a_fixed_cost_counts_that_many_in_the_routes_rules(
    make_app: AppFactory, storage: Storage
) -> None:
    client = batch_app(make_app, storage).test_client()
    assert posts(client, "/fixed", 1, 1, 1) == [200, 200, 429]  # 4 + 4 + 4 > 10
    assert [client.get("/").status_code for _ in range(18)] == [200] * 18  # global: once each


def test_a_cost_function_reads_the_request(make_app: AppFactory, storage: Storage) -> None:
    client = batch_app(make_app, storage).test_client()
    assert posts(client, "/batch", 6, 5, 4, 1) == [200, 429, 200, 429]  # 6 + 4 = 10


def test_a_cost_above_the_count_is_refused_never_admitted(
    make_app: AppFactory, storage: Storage, clock: FakeClock
) -> None:
    client = batch_app(make_app, storage).test_client()
    refused = client.post("/batch", query_string={"n": 11})
    assert refused.status_code == 429
    clock.advance(3600)
    assert posts(client, "/batch", 11, 10) == [429, 200]


@pytest.mark.parametrize(("fail_open", "status"), [(True, 200), (False, 503)])
def test_a_failing_cost_function_is_an_outage_not_a_500(
    make_app: AppFactory, logs: pytest.LogCaptureFixture, fail_open: bool, status: int
) -> None:
    client = batch_app(make_app, MemoryStorage(), fail_open=fail_open).test_client()
    assert client.post("/batch", query_string={"n": "many"}).status_code == status
    assert client.post("/batch", query_string={"n": 0}).status_code == status  # not >= 1
    assert [level for level, _ in gatekeeper_logs(logs)] == ["ERROR", "ERROR"]


def test_a_bad_cost_fails_when_decorating() -> None:
    gk = GateKeeper(Flask(__name__))
    for cost in (0, -1, 1.5, True, "3"):
        with pytest.raises(ConfigError, match="cost: expected an integer >= 1"):
            gk.specific("1/second", cost=cost)  # type: ignore[arg-type]


def login_app(make_app: AppFactory, storage: Storage) -> Flask:
    """``/login`` allows 2 failed logins a minute: successes do not count."""
    app, gk = make_app(base={}, storage=storage, routes=(index,))

    @app.route("/login", methods=["POST"])
    @gk.specific("2/minute", count_when=lambda response: response.status_code >= 400)
    def login() -> tuple[str, int]:
        if request.form.get("password") == "right":
            return "welcome", 200
        return "bad password", 401

    return app


def logins(client: FlaskClient, *passwords: str) -> list[int]:
    return [client.post("/login", data={"password": p}).status_code for p in passwords]


def test_count_when_counts_only_the_responses_it_accepts(
    make_app: AppFactory, storage: Storage, clock: FakeClock
) -> None:
    client = login_app(make_app, storage).test_client()
    assert logins(client, "right", "right", "right", "wrong", "right", "wrong") == [
        200,
        200,
        200,
        401,
        200,
        401,
    ]
    assert logins(client, "right", "wrong") == [429, 429]  # full: refused before the view
    clock.advance(60)
    assert logins(client, "right") == [200]


def slow_login_app(make_app: AppFactory, storage: Storage) -> tuple[Flask, SlowViews]:
    """``/slow-login`` allows 5 failed logins a minute; its view waits until told."""
    app, gk = make_app(base={}, storage=storage, routes=(index,))
    views = SlowViews()

    @app.route("/slow-login", methods=["POST"])
    @gk.specific("5/minute", count_when=lambda response: response.status_code == 401)
    def slow_login() -> tuple[str, int]:
        views.entered.release()
        assert views.go.wait(10)
        return ("welcome", 200) if request.form.get("password") == "right" else ("no", 401)

    return app, views


class SlowViews:
    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.go = threading.Event()


def burst(app: Flask, views: SlowViews, password: str, requests: int = 20) -> list[int]:
    """``requests`` logins at once from one client; the views return once every refused
    one has been answered. Their statuses, in order of completion."""
    statuses: list[int] = []
    lock = threading.Lock()

    def attempt() -> None:
        status = app.test_client().post("/slow-login", data={"password": password}).status_code
        with lock:
            statuses.append(status)

    views.go.clear()
    threads = [threading.Thread(target=attempt) for _ in range(requests)]
    for thread in threads:
        thread.start()
    for _ in range(5):
        assert views.entered.acquire(timeout=10)
    while True:  # every request but the five in their views has its answer
        with lock:
            if len(statuses) == requests - 5:
                break
        threading.Event().wait(0.01)
    views.go.set()
    for thread in threads:
        thread.join()
    return statuses


def test_count_when_admits_no_more_than_the_limit_in_flight(
    make_app: AppFactory, storage: Storage, clock: FakeClock
) -> None:
    app, views = slow_login_app(make_app, storage)
    statuses = burst(app, views, "wrong")
    assert statuses == [429] * 15 + [401] * 5  # reserved when admitted: exactly five
    assert app.test_client().post("/slow-login").status_code == 429  # all five counted


def test_count_when_gives_back_what_it_does_not_count(
    make_app: AppFactory, storage: Storage, clock: FakeClock
) -> None:
    app, views = slow_login_app(make_app, storage)
    assert burst(app, views, "right") == [429] * 15 + [200] * 5  # five at once, then refunded
    clock.advance(1)
    assert burst(app, views, "wrong") == [429] * 15 + [401] * 5  # five more: none was kept
    assert app.test_client().post("/slow-login").status_code == 429


def test_the_header_shows_the_reservation(make_app: AppFactory, storage: Storage) -> None:
    app, gk = make_app(base={}, storage=storage, headers=True, routes=(index,))

    @app.route("/signin", methods=["POST"])
    @gk.specific("2/minute", count_when=lambda response: response.status_code >= 400)
    def signin() -> tuple[str, int]:
        return "bad password", 401

    client = app.test_client()
    remaining = [client.post("/signin").headers["RateLimit"] for _ in range(2)]
    assert [field.partition("r=")[2].partition(";")[0] for field in remaining] == ["1", "0"]


def test_a_failing_count_when_keeps_the_reservation(
    make_app: AppFactory, logs: pytest.LogCaptureFixture
) -> None:
    app, gk = make_app(base={}, storage=MemoryStorage())

    def broken(response: object) -> bool:
        return 1 / 0 > 0

    @app.route("/odd")
    @gk.specific("1/minute", count_when=broken)
    def odd() -> str:
        return "fine"

    client = app.test_client()
    assert [client.get("/odd").status_code for _ in range(3)] == [200, 429, 429]  # counted
    ((_, message),) = [entry for entry in gatekeeper_logs(logs) if entry[0] == "ERROR"]
    assert "the count_when function test_a_failing_count_when" in message
    assert ".broken failed; the request is counted" in message


def test_count_when_during_an_outage_keeps_the_response(
    make_app: AppFactory, clock: FakeClock, logs: pytest.LogCaptureFixture
) -> None:
    storage = FlakyStorage(clock=clock)
    client = login_app(make_app, storage).test_client()
    assert logins(client, "wrong") == [401]
    storage.failing = True
    clock.advance(5)
    assert logins(client, "wrong") == [401]  # fail open before, nothing counted after
    storage.failing = False
    clock.advance(5)
    assert logins(client, "wrong", "wrong") == [401, 429]  # one failure was counted


def test_an_outage_during_the_refund_keeps_the_reservation(
    make_app: AppFactory, clock: FakeClock, logs: pytest.LogCaptureFixture
) -> None:
    storage = FlakyStorage(clock=clock)
    app, gk = make_app(base={}, storage=storage, routes=(index,))

    @app.route("/signin", methods=["POST"])
    @gk.specific("2/minute", count_when=lambda response: response.status_code >= 400)
    def signin() -> tuple[str, int]:
        storage.failing = request.form.get("break") == "1"  # Redis goes away mid-request
        return ("welcome", 200) if request.form.get("password") == "right" else ("no", 401)

    client = app.test_client()

    def signins(*passwords: str) -> list[int]:
        return [client.post("/signin", data={"password": p}).status_code for p in passwords]

    assert client.post("/signin", data={"password": "right", "break": "1"}).status_code == 200
    assert storage.errors  # the refund failed: logged as an outage
    assert any("storage" in message.lower() for _, message in gatekeeper_logs(logs))
    storage.failing = False
    clock.advance(2)  # the outage is over
    assert signins("wrong", "wrong") == [401, 429]  # the success kept its place


@pytest.mark.parametrize(("propagate", "statuses"), [(False, [500, 500]), (True, [429, 429])])
def test_a_view_that_raises_is_refunded_only_when_its_500_page_is_made(
    make_app: AppFactory, propagate: bool, statuses: list[int]
) -> None:
    app, gk = make_app(base={}, storage=MemoryStorage(), routes=(index,))
    app.config["PROPAGATE_EXCEPTIONS"] = propagate

    @app.route("/fragile")
    @gk.specific("1/minute", count_when=lambda response: response.status_code == 401)
    def fragile() -> str:
        raise RuntimeError("the view failed")

    client = app.test_client()
    if propagate:  # no response: the reservation is kept
        with pytest.raises(RuntimeError):
            client.get("/fragile")
    else:
        assert client.get("/fragile").status_code == 500  # a response count_when declines
    assert [client.get("/fragile").status_code for _ in range(2)] == statuses


class StorageBeforeRefunds(MemoryStorage):
    """A storage object written before reservations: no ``refund``, and ``record`` to
    count a ``count_when`` route after its response."""

    refund = None  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.recorded: list[list[str]] = []

    def record(self, client: str, scopes: Sequence[Scope]) -> None:
        self.recorded.append([scope.name for scope in scopes])


def test_a_storage_without_refund_still_counts_after_the_response(
    make_app: AppFactory,
) -> None:
    storage = StorageBeforeRefunds()
    client = login_app(make_app, storage).test_client()  # type: ignore[arg-type]
    with pytest.deprecated_call(match="StorageBeforeRefunds has no refund"):
        assert logins(client, "wrong") == [401]
    assert logins(client, "right") == [200]  # warned once
    assert storage.recorded == [["login"]]  # the failure, after its response


def test_usage_reads_the_rules_of_a_route_without_counting(
    make_app: AppFactory, storage: Storage, clock: FakeClock
) -> None:
    app, gk = make_app(base={}, storage=storage, rate_limit_rules="5/minute")

    @app.route("/export")
    @gk.specific("2/hour")
    def export() -> str:
        return "data"

    client = app.test_client()
    assert client.get("/export").status_code == 200
    clock.advance(10)
    with app.app_context():
        expected = [Usage(Rule(5, 60), 4, 50), Usage(Rule(2, 3600), 1, 3590, "export")]
        assert gk.usage("127.0.0.1", "export") == expected
        assert gk.usage("127.0.0.1", "export") == expected  # reading spends nothing
        assert gk.usage("127.0.0.1") == expected[:1]  # the global rules
        assert gk.usage("10.9.9.9", "export")[1].remaining == 2


def test_reset_of_one_scope_or_endpoint(make_app: AppFactory, storage: Storage) -> None:
    app, gk = make_app(base={}, storage=storage, rate_limit_rules="1/minute")

    @app.route("/a")
    @gk.specific("1/minute", scope="exports", standalone=True)
    def a() -> str:
        return "a"

    @app.route("/b")
    @gk.specific("1/minute", standalone=True)
    def b() -> str:
        return "b"

    client = app.test_client()
    assert [client.get(path).status_code for path in ("/", "/a", "/b")] == [200] * 3
    assert [client.get(path).status_code for path in ("/", "/a", "/b")] == [429] * 3
    with app.app_context():
        gk.reset("127.0.0.1", scope="exports")
    assert [client.get(path).status_code for path in ("/", "/a", "/b")] == [429, 200, 429]
    with app.app_context():
        gk.reset("127.0.0.1", endpoint="b")
    assert [client.get(path).status_code for path in ("/", "/a", "/b")] == [429, 429, 200]


@pytest.mark.redis
def test_count_when_takes_a_second_round_trip_only_to_refund(
    make_app: AppFactory, redis_url: str
) -> None:
    import redis

    monitor_client, marker = redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    marker.ping()  # its handshake happens now, not among the commands counted
    app = login_app(make_app, redis_url)  # type: ignore[arg-type]
    client = app.test_client()
    assert logins(client, "right") == [200]  # scripts loaded, connection open
    commands: list[str] = []
    with monitor_client.monitor() as monitor:
        assert logins(client, "wrong", "right") == [401, 200]
        assert client.get("/").status_code == 200
        marker.echo("end")
        while True:
            entry = monitor.next_command()
            if entry["command"] == "ECHO end":
                break
            if entry["client_type"] != "lua":
                commands.append(entry["command"].split(" ")[0].upper())
    monitor_client.close()
    marker.close()
    # a counted login: one (checked and reserved); a refunded one: two; the index: one
    assert commands == ["EVALSHA"] * 4
