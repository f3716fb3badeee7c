"""A refusal that bans is one round trip (docs/workers.md, "Round trips per request").

Against a real redis-server, on a ``FakeClock``: each test counts the scripts Redis runs
(``INFO commandstats``) for one request or one ``gk.report()`` that bans, on the Redis
storage (whose scripts make the ban's detail, the registry entry and the subnet
escalation in the ban's own script) and on a Redis storage that does not make them
(``Apart``, a subclass that overrides ``hit`` and ``report``: the gate serves it as it
serves any storage without ``report_steps``, one call per step, as before). Both give
the same statuses, signals and bans. On a Redis Cluster of three primaries, the steps
whose keys sit on other slots (the network's, the registry's) take a call per slot.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable, Optional

import pytest
from flask import Flask

from flask_gatekeeper import BanRule, GateKeeper, Rule, SubnetBanRule
from flask_gatekeeper.decision import DEFAULT_OFFENCE, BanDetail
from flask_gatekeeper.storage.base import bans_in_one_step
from flask_gatekeeper.testing import FakeClock, FlakyStorage, MemoryStorage
from support import index, recording
from support.redis_server import HOST, redis_cluster, require

pytestmark = pytest.mark.redis

redis = pytest.importorskip("redis")

from redis.cluster import RedisCluster  # noqa: E402

from flask_gatekeeper.storage.redis import RedisStorage  # noqa: E402

NETWORK = "203.0.113.0/24"


class Apart(RedisStorage):
    """The Redis storage, served as a storage without ``report_steps`` is: ``hit`` and
    ``report`` of its own make the gate call each step after a ban apart."""

    hit = RedisStorage.hit
    report = RedisStorage.report


def scripts_run(client: Any) -> int:
    """How many scripts Redis has run (EVALSHA and EVAL), from ``INFO commandstats``."""
    stats = client.info("commandstats")
    return sum(stats.get(name, {}).get("calls", 0) for name in ("cmdstat_evalsha", "cmdstat_eval"))


def banning_app(storage: Any, subnet_count: Optional[int] = None) -> tuple[Flask, GateKeeper]:
    """An app with ``/`` on ``storage`` whose 429s count as reports (the first bans),
    with a subnet ban rule of ``subnet_count`` addresses when given."""
    app = Flask(__name__)
    subnet = None if subnet_count is None else SubnetBanRule(subnet_count, 3600, 86400)
    gk = GateKeeper(
        app,
        storage=storage,
        ban_rule=BanRule(count=1, window=60, duration=600),
        rate_limit_rules=[Rule(1, 60)],
        report_rate_limited=True,
        subnet_ban_rule=subnet,
    )
    index(app, gk)
    return app, gk


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[Any]]:
    """A Redis Cluster of three primaries for this module: a client of each node."""
    require("redis-server", "redis-cli")
    with redis_cluster(3) as nodes:
        clients = [node.client() for node in nodes]
        yield clients
        for client in clients:
            client.close()


@pytest.fixture(params=["one step", "apart", "cluster"])
def kind(request: pytest.FixtureRequest) -> str:
    """The Redis storage on one server, the same served apart, or on a Cluster."""
    return str(request.param)


@pytest.fixture
def scripts(kind: str, request: pytest.FixtureRequest) -> Callable[[], int]:
    """How many scripts the test's Redis ran so far (every node of a Cluster); it starts
    empty."""
    if kind != "cluster":
        raw = request.getfixturevalue("raw_redis")
        return lambda: scripts_run(raw)
    nodes = request.getfixturevalue("cluster")
    for node in nodes:
        node.flushall()
    return lambda: sum(scripts_run(node) for node in nodes)


def calls(kind: str, *, one_server: int, cluster: int, apart: int) -> int:
    """The scripts a case takes on this kind of storage."""
    return {"one step": one_server, "cluster": cluster, "apart": apart}[kind]


Build = Callable[..., tuple[Flask, GateKeeper, list[Any]]]


@pytest.fixture
def build(
    request: pytest.FixtureRequest, kind: str, scripts: Callable[[], int], clock: FakeClock
) -> Iterator[Build]:
    """``build(listener=..., subnet=...)``: an app on Redis whose 429s count as reports
    (the first bans), with ``/``, optionally a ``client_banned`` listener and a subnet
    ban rule of 2 addresses; returns the app, its GateKeeper and the events it sends."""
    storage_class = Apart if kind == "apart" else RedisStorage
    clients: list[Any] = []

    def make(
        *, listener: bool = False, subnet: bool = False
    ) -> tuple[Flask, GateKeeper, list[Any]]:
        if kind == "cluster":
            port = request.getfixturevalue("cluster")[0].connection_pool.connection_kwargs["port"]
            client = RedisCluster(host=HOST, port=port)
        else:
            client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
        clients.append(client)
        app, gk = banning_app(storage_class(client, clock=clock), 2 if subnet else None)
        events: list[Any] = []
        if listener:
            stack = recording(app)
            events = stack.__enter__()
            request.addfinalizer(lambda: stack.__exit__(None, None, None))
        return app, gk, events

    yield make
    for client in clients:
        client.close()


def get(app: Flask, ip: str) -> int:
    return app.test_client().get("/", environ_base={"REMOTE_ADDR": ip}).status_code


def banned_events(events: list[Any]) -> list[tuple[str, str, Optional[BanDetail]]]:
    return [
        (args["client"], args["reason"], args["detail"])
        for name, args in events
        if name == "client_banned"
    ]


def test_a_429_that_bans_is_one_script(build: Build, scripts: Callable[[], int], kind: str) -> None:
    app, _, _ = build()
    assert get(app, "192.0.2.1") == 200
    before = scripts()
    assert get(app, "192.0.2.1") == 429  # counted as a report: banned
    assert scripts() - before == 1  # one script, before and after
    assert get(app, "192.0.2.1") == 403


def test_a_429_that_bans_and_escalates_with_a_listener_is_one_script(
    build: Build, scripts: Callable[[], int], kind: str
) -> None:
    app, gk, events = build(listener=True, subnet=True)
    with app.app_context():
        assert gk.report(ip="203.0.113.1")  # the network's first banned address
    assert get(app, "203.0.113.2") == 200
    before = scripts()
    assert get(app, "203.0.113.2") == 429  # banned, and its network with it
    assert scripts() - before == calls(kind, one_server=1, cluster=3, apart=6)
    assert banned_events(events)[-2:] == [
        ("203.0.113.2", "rate_limit", BanDetail(600, 0, "rate_limit", 1, "default")),
        (NETWORK, "subnet", BanDetail(86400, 0, "subnet", 0)),
    ]
    assert get(app, "203.0.113.99") == 403  # the registry knows the network


def test_a_429_that_bans_below_the_subnet_count_is_one_script(
    build: Build, scripts: Callable[[], int], kind: str
) -> None:
    app, _, events = build(listener=True, subnet=True)
    assert get(app, "203.0.113.2") == 200
    before = scripts()
    assert get(app, "203.0.113.2") == 429  # banned; its network has one banned address
    assert scripts() - before == calls(kind, one_server=1, cluster=2, apart=3)
    assert [client for client, _, _ in banned_events(events)] == ["203.0.113.2"]
    assert get(app, "203.0.113.3") == 200


@pytest.mark.parametrize("listener", [False, True])
def test_a_report_that_bans_a_network_client_is_one_script(
    build: Build, scripts: Callable[[], int], kind: str, listener: bool
) -> None:
    app, gk, events = build(listener=listener)
    before = scripts()
    with app.app_context():
        assert gk.report(ip=NETWORK)  # banned, and entered in the registry
    assert scripts() - before == calls(kind, one_server=1, cluster=2, apart=3 + listener)
    if listener:
        assert banned_events(events) == [
            (NETWORK, "reports", BanDetail(600, 0, "reports", 1, "default"))
        ]
    assert get(app, "203.0.113.7") == 403  # a request of the network meets its ban


class Audited(MemoryStorage):
    """A storage subclass that logs the bans made through its ``ban``."""

    def __init__(self) -> None:
        super().__init__()
        self.banned: list[tuple[str, str]] = []

    def ban(
        self,
        client: str,
        duration: float,
        reason: str = "manual",
        offence: str = DEFAULT_OFFENCE,
    ) -> None:
        self.banned.append((client, reason))
        super().ban(client, duration, reason, offence)


def test_a_storage_object_without_report_steps_is_served_apart() -> None:
    """Found once, at start-up: a wrapper, or a subclass that overrides ``hit``,
    ``report``, ``ban`` or ``ban_detail`` without ``report_steps``, keeps its own
    methods called."""

    class Watched(MemoryStorage):
        def report(
            self,
            client: str,
            ban_rule: BanRule,
            reason: str = "reports",
            offence: str = DEFAULT_OFFENCE,
        ) -> Optional[float]:
            return super().report(client, ban_rule, reason, offence)

    assert bans_in_one_step(MemoryStorage()) is not None
    assert bans_in_one_step(FlakyStorage()) is None
    assert bans_in_one_step(Watched()) is None
    assert bans_in_one_step(Audited()) is None


def test_a_subclass_that_overrides_ban_sees_the_network_ban_of_an_escalation() -> None:
    """A storage subclass that logs its bans sees the network's ban that a 429's
    escalation makes, as before ``report_steps``."""
    audited = Audited()
    app, _ = banning_app(audited, subnet_count=1)
    assert [get(app, "203.0.113.2") for _ in range(3)] == [200, 429, 403]
    assert audited.banned == [(NETWORK, "subnet")]


def test_while_redis_is_down_the_fallback_makes_the_steps_and_hands_them_over(
    clock: FakeClock,
) -> None:
    """on_outage="local": a 429 that bans during an outage escalates in the process's own
    storage, signalled as on Redis; both bans reach Redis when it is back."""
    from support.redis_server import RedisServer

    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        app, gk = banning_app(RedisStorage(client, clock=clock), subnet_count=1)
        server.stop()
        with recording(app) as events:
            assert [get(app, "203.0.113.2") for _ in range(3)] == [200, 429, 403]
        assert [client for client, _, _ in banned_events(events)] == ["203.0.113.2", NETWORK]
        assert get(app, "203.0.113.50") == 403  # the local registry knows the network
        server.start()  # empty: its data went with the process
        clock.advance(1)  # the next probe
        assert get(app, "198.51.100.1") == 200
        with app.app_context():
            assert gk.bans(detail=True)[NETWORK].reason == "subnet"
            assert gk.banned_for("203.0.113.2") == 599  # a second later
        client.close()


@pytest.mark.parametrize("kind", ["cluster"])
def test_on_a_cluster_a_request_that_names_other_keys_reads_the_detail_apart(
    build: Build, scripts: Callable[[], int], kind: str
) -> None:
    """While a network is banned, a request names its networks, whose bans sit on other
    slots: a 429 that bans reads its network's ban (one call), runs its own script
    (one), and reads its ban's detail for the receiver in one more."""
    app, gk, events = build(listener=True)
    with app.app_context():
        gk.ban("198.51.100.0/24", 600)
    assert get(app, "203.0.113.2") == 200
    before = scripts()
    assert get(app, "203.0.113.2") == 429
    assert scripts() - before == 3
    assert banned_events(events)[-1] == (
        "203.0.113.2",
        "rate_limit",
        BanDetail(600, 0, "rate_limit", 1, "default"),
    )
