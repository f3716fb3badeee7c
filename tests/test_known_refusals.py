"""The local tier: refusals of the shared storage answered again by the process.

Against a real redis-server, on a ``FakeClock`` shared by the storage and the tier (no
sleeping). Each test counts the scripts Redis runs (``INFO commandstats``) where the point
is how many calls a request costs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_gatekeeper import GateKeeper
from flask_gatekeeper.testing import FakeClock

pytestmark = pytest.mark.redis

redis = pytest.importorskip("redis")

from flask_gatekeeper.storage.redis import NETWORK_REFRESH, RedisStorage  # noqa: E402

IP, OTHER = "198.51.100.7", "198.51.100.8"
BAN_RULE = {"count": 3, "window": 10, "duration": 600}


AppMaker = Callable[..., tuple[Flask, GateKeeper]]


def build_app(client: Any, clock: FakeClock, **options: Any) -> tuple[Flask, GateKeeper]:
    """An app on ``client``'s Redis and ``clock``: ``/`` under ``5/minute``; ``/heavy``
    costs ``?cost=`` in its own ``2/minute`` besides; ``/login`` reports; ``/other`` has
    its own ``100/minute`` only (standalone)."""
    app = Flask(__name__)
    gk = GateKeeper(
        app,
        storage=RedisStorage(client, clock=clock),
        ban_rule=BAN_RULE,
        **{"rate_limit_rules": "5/minute", **options},
    )

    @app.route("/")
    def index() -> str:
        return "hello"

    @app.route("/heavy")
    @gk.specific("2/minute", cost=lambda: int(request.args.get("cost", "1")))
    def heavy() -> str:
        return "heavy"

    @app.route("/login", methods=["POST"])
    def login() -> tuple[str, int]:
        gk.report()
        return "bad password", 401

    @app.route("/other")
    @gk.specific("100/minute", standalone=True)
    def other() -> str:
        return "other"

    return app, gk


@pytest.fixture
def make(redis_url: str, clock: FakeClock) -> Iterator[AppMaker]:
    """Apps on one Redis and one clock, as processes of one deployment (``build_app``)."""
    clients = []

    def build(**options: Any) -> tuple[Flask, GateKeeper]:
        client = redis.Redis.from_url(redis_url)
        clients.append(client)
        return build_app(client, clock, **options)

    yield build
    for client in clients:
        client.close()


def scripts_run(client: Any) -> int:
    """How many scripts Redis has run (EVALSHA and EVAL), from ``INFO commandstats``."""
    stats = client.info("commandstats")
    return sum(stats.get(name, {}).get("calls", 0) for name in ("cmdstat_evalsha", "cmdstat_eval"))


def get(client: FlaskClient, path: str = "/", ip: str = IP) -> Any:
    return client.get(path, environ_base={"REMOTE_ADDR": ip})


def statuses(client: FlaskClient, count: int, path: str = "/", ip: str = IP) -> list[int]:
    return [get(client, path, ip).status_code for _ in range(count)]


def test_a_rate_limited_client_costs_no_round_trip_until_its_refusal_ends(
    make: AppMaker, raw_redis: Any, clock: FakeClock
) -> None:
    app, _ = make()
    client = app.test_client()
    assert statuses(client, 7) == [200] * 5 + [429] * 2  # the second 429 is remembered
    before = scripts_run(raw_redis)
    replies = [get(client) for _ in range(500)]
    assert {reply.status_code for reply in replies} == {429}
    assert {reply.headers["Retry-After"] for reply in replies} == {"60"}
    assert scripts_run(raw_redis) - before == 0
    clock.advance(60)  # the refusal's end: Redis is asked again, and admits
    assert get(client).status_code == 200
    assert scripts_run(raw_redis) - before >= 1


def test_a_banned_client_costs_no_round_trip_until_its_ban_ends(
    make: AppMaker, raw_redis: Any, clock: FakeClock
) -> None:
    app, _ = make()
    client = app.test_client()
    for _ in range(3):
        client.post("/login", environ_base={"REMOTE_ADDR": IP})
    assert statuses(client, 2) == [403, 403]
    before = scripts_run(raw_redis)
    assert statuses(client, 250) + statuses(client, 250, "/other") == [403] * 500
    assert scripts_run(raw_redis) - before <= 1  # at most the count of changes, once a second
    clock.advance(600)
    assert get(client).status_code == 200


def test_an_unban_in_one_process_reaches_another_within_a_second(
    make: AppMaker, raw_redis: Any, clock: FakeClock
) -> None:
    serving, _ = make()
    operator_app, operator = make()
    client = serving.test_client()
    with operator_app.app_context():
        operator.ban(IP, 600)
    assert statuses(client, 2) == [403, 403]  # remembered from the second on
    with operator_app.app_context():
        assert operator.unban(IP)
    clock.advance(NETWORK_REFRESH)  # within about a second: the count of changes moved
    assert get(client).status_code == 200
    # a reset of counters too
    assert statuses(client, 6)[-1] == 429
    with operator_app.app_context():
        operator.reset(IP)
    clock.advance(NETWORK_REFRESH)
    assert get(client).status_code == 200


def test_operator_actions_in_the_process_itself_apply_at_once(
    make: AppMaker, clock: FakeClock
) -> None:
    app, gk = make()
    client = app.test_client()
    assert statuses(client, 7)[-2:] == [429, 429]
    with app.app_context():
        gk.ban(IP, 120)  # a ban made here: the remembered 429s give way at once
    reply = get(client)
    assert (reply.status_code, reply.headers["Retry-After"]) == (403, "120")
    with app.app_context():
        gk.unban(IP)
        gk.reset(IP)
    assert get(client).status_code == 200


def test_a_refusal_covers_only_what_it_refused(make: AppMaker, raw_redis: Any) -> None:
    app, _ = make(rate_limit_rules="100/minute")
    client = app.test_client()
    assert get(client, "/heavy?cost=2").status_code == 200
    assert [get(client, "/heavy?cost=2").status_code for _ in range(2)] == [429, 429]
    before = scripts_run(raw_redis)
    assert get(client, "/heavy?cost=2").status_code == 429  # remembered: no call
    assert scripts_run(raw_redis) == before
    assert get(client, "/heavy?cost=1").status_code == 429  # a smaller cost is asked...
    assert scripts_run(raw_redis) == before + 1
    assert get(client, "/").status_code == 200  # ...and so is another scope
    assert get(client, "/heavy", ip=OTHER).status_code == 200  # and another client


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"cache_refusals": False}, id="turned off"),
        pytest.param({"report_rate_limited": True}, id="each 429 is a report"),
    ],
)
def test_when_every_refusal_goes_to_the_storage(
    make: AppMaker, raw_redis: Any, options: dict[str, Any]
) -> None:
    app, _ = make(**options)
    client = app.test_client()
    assert statuses(client, 6)[-1] == 429
    before = scripts_run(raw_redis)
    assert get(client).status_code in (403, 429)
    assert scripts_run(raw_redis) == before + 1


ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("get"), st.sampled_from(["/", "/heavy?cost=1", "/heavy?cost=2"])),
        st.tuples(st.just("login"), st.just("")),
        st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 7.0, 30.0, 61.0])),
        st.tuples(st.just("unban"), st.just("")),
        st.tuples(st.just("reset"), st.just("")),
    ),
    max_size=40,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(actions=ACTIONS)
def test_remembering_answers_as_the_storage_would(
    redis_url: str, actions: list[tuple[str, Any]]
) -> None:
    """Two deployments on one Redis database each, on one clock: one remembers refusals,
    the other asks every time. Every response's status and Retry-After agree."""
    clock = FakeClock()
    answers = []
    for cache_refusals, db_number in ((True, 1), (False, 2)):
        client = redis.Redis.from_url(redis_url, db=db_number)
        client.flushdb()
        app, gk = build_app(client, clock, cache_refusals=cache_refusals)
        seen: list[object] = []
        start = clock()
        test_client = app.test_client()
        for action, value in actions:
            if action == "get":
                reply = get(test_client, value)
                seen.append((reply.status_code, reply.headers.get("Retry-After")))
            elif action == "login":
                seen.append(
                    test_client.post("/login", environ_base={"REMOTE_ADDR": IP}).status_code
                )
            elif action == "advance":
                clock.advance(value)
            else:
                with app.app_context():
                    getattr(gk, action)(IP)
        answers.append(seen)
        clock.set(start)
        client.close()
    assert answers[0] == answers[1]


def test_redis_stopped_mid_traffic_keeps_bans_and_limits_then_hands_back(
    redis_url: str, clock: FakeClock
) -> None:
    """on_outage="local" (the default with Redis): while Redis is down, a banned client
    stays 403, a client over its limit gets 429 from the process's own limits, others
    200; a ban made meanwhile reaches Redis when it is back, and Redis decides again."""
    from support.redis_server import RedisServer

    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        app, gk = build_app(client, clock)
        test_client = app.test_client()
        banned, limited, other, late = "192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"
        with app.app_context():
            gk.ban(banned, 600)
        assert statuses(test_client, 2, ip=banned) == [403, 403]
        assert statuses(test_client, 6, ip=limited)[-1] == 429

        server.stop()
        assert statuses(test_client, 3, ip=banned) == [403] * 3  # remembered
        assert statuses(test_client, 2, ip=limited) == [429] * 2  # remembered
        assert statuses(test_client, 6, ip=other) == [200] * 5 + [429]  # local limits
        for _ in range(3):  # reports ban in the process's own storage meanwhile
            test_client.post("/login", environ_base={"REMOTE_ADDR": late})
        assert get(test_client, ip=late).status_code == 403
        assert app.extensions["gatekeeper"].guard.down

        server.start()  # empty: its data went with the process
        clock.advance(1)  # the next probe
        assert get(test_client, ip=other).status_code == 200  # Redis decides again
        assert not app.extensions["gatekeeper"].guard.down
        with app.app_context():
            assert gk.banned_for(late) == pytest.approx(599, abs=1)  # handed to Redis
        client.close()
