"""What a request counts for, through the app, on both storages: ``cost`` (a number or a
function of the request), ``count_when`` (counted after the response), reading usage
without spending it, and resetting one scope."""

from __future__ import annotations

import threading

import pytest
from flask import Flask, request
from flask.testing import FlaskClient

from flask_gatekeeper import ConfigError, GateKeeper, MemoryStorage, Rule
from flask_gatekeeper.decision import Usage
from flask_gatekeeper.storage import Storage
from flask_gatekeeper.testing import FakeClock, FlakyStorage
from helpers import AppFactory, gatekeeper_logs, index


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


def test_count_when_overshoots_by_at_most_the_requests_in_flight(make_app: AppFactory) -> None:
    app, gk = make_app(base={}, storage=MemoryStorage())
    in_flight = 5
    barrier = threading.Barrier(in_flight, timeout=10)

    @app.route("/slow-login", methods=["POST"])
    @gk.specific("2/minute", count_when=lambda response: response.status_code == 401)
    def slow_login() -> tuple[str, int]:
        barrier.wait()  # every request is checked before any is counted
        return "bad password", 401

    statuses: list[int] = []

    def attempt() -> None:
        statuses.append(app.test_client().post("/slow-login").status_code)

    threads = [threading.Thread(target=attempt) for _ in range(in_flight)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [401] * in_flight  # the overshoot: 5 counted against 2
    assert app.test_client().post("/slow-login").status_code == 429
    with app.app_context():
        (usage,) = [u for u in gk.usage("127.0.0.1", "slow_login", "POST") if u.remaining == 0]
        assert usage.rule == Rule(2, 60)


def test_a_failing_count_when_never_fails_the_response(
    make_app: AppFactory, logs: pytest.LogCaptureFixture
) -> None:
    app, gk = make_app(base={}, storage=MemoryStorage())

    @app.route("/odd")
    @gk.specific("1/minute", count_when=lambda response: 1 / 0)
    def odd() -> str:
        return "fine"

    client = app.test_client()
    assert [client.get("/odd").status_code for _ in range(3)] == [200] * 3  # never counted
    assert [level for level, _ in gatekeeper_logs(logs)] == ["ERROR"] * 3


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
def test_count_when_takes_two_round_trips_and_other_routes_one(
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
        assert logins(client, "wrong") == [401]
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
    assert commands == ["EVALSHA", "EVALSHA", "EVALSHA"]  # login: check, count; index: one
