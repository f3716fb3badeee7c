"""Shared fixtures: a fake clock, storages, and the one app factory ``make_app``.

Time never passes on its own in these tests: the storage reads ``clock``, and a test
moves it with ``clock.advance(...)`` or ``clock.set(...)`` instead of sleeping.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Callable, Optional

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_gatekeeper import GateKeeper, MemoryStorage
from flask_gatekeeper.storage import Storage
from flask_gatekeeper.storage.redis import RedisStorage
from flask_gatekeeper.testing import FakeClock, FlakyStorage
from support import (
    OPERATIONS_ROUTES,
    PEER_OPTIONS,
    SEED_OPTIONS,
    SEED_ROUTES,
    AppFactory,
    Route,
)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A throw-away ``redis-server`` for the whole run (skipped without one, but not
    under CI); tests empty it themselves."""
    from support.redis_server import running

    with running() as server:
        yield server.url


@pytest.fixture
def raw_redis(redis_url: str) -> Iterator[Any]:
    """A redis-py client of the session's server, which starts the test empty: for tests
    that reach under the storage (a key of the wrong type, INFO, CONFIG SET)."""
    from redis import Redis

    client = Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


StorageFactory = Callable[[FakeClock], Storage]


@pytest.fixture(scope="module", params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def make_storage(request: pytest.FixtureRequest) -> Iterator[StorageFactory]:
    """Builds an empty storage of each kind on a given clock."""
    if request.param == "memory":
        yield lambda clock: MemoryStorage(clock=clock)
        return
    from redis import Redis

    from flask_gatekeeper.storage.redis import RedisStorage

    client = Redis.from_url(request.getfixturevalue("redis_url"))

    def make(clock: FakeClock) -> Storage:
        client.flushdb()
        return RedisStorage(client, clock=clock)

    yield make
    client.close()


@pytest.fixture
def storage(make_storage: StorageFactory, clock: FakeClock) -> Storage:
    return make_storage(clock)


@pytest.fixture
def cli_storage(storage: Storage, clock: FakeClock) -> Storage:
    """The storage as the CLI sees it: Redis, or a memory storage it treats as shared
    (the commands refuse the memory storage, whose state they could not reach)."""
    return FlakyStorage(clock=clock) if isinstance(storage, MemoryStorage) else storage


@pytest.fixture
def seed_options() -> dict[str, Any]:
    """A fresh copy of the seed's options, for tests that build their own ``GateKeeper``."""
    return dict(SEED_OPTIONS)


@pytest.fixture
def clock() -> FakeClock:
    """The time every storage of the test reads; starts at 1000.0."""
    return FakeClock()


@pytest.fixture
def make_app(clock: FakeClock) -> Iterator[AppFactory]:
    """The one app factory of the tests:
    ``make_app(*, config=None, base=SEED_OPTIONS, routes=SEED_ROUTES, **options)``.

    ``config`` goes into ``app.config`` before ``GateKeeper`` reads it. The constructor gets
    ``base`` with ``options`` on top (None leaves an option unset) and, unless either names a
    storage, a ``MemoryStorage`` on ``clock``: give ``storage=None`` for ``GateKeeper``'s own
    default or the config's. Then each of ``routes`` (see ``support/apps.py``) adds its views;
    more can be added before the first request. The Redis client of every app built is
    closed at the end.
    """
    apps: list[Flask] = []

    def make(
        *,
        config: Optional[dict[str, Any]] = None,
        base: Mapping[str, Any] = SEED_OPTIONS,
        routes: Iterable[Route] = SEED_ROUTES,
        **options: Any,
    ) -> tuple[Flask, GateKeeper]:
        app = Flask(__name__)
        app.config.update(config or {})
        gk = GateKeeper(app, **{"storage": MemoryStorage(clock=clock), **base, **options})
        apps.append(app)
        for route in routes:
            route(app, gk)
        return app, gk

    yield make
    for app in apps:
        storage = app.extensions["gatekeeper"].settings.storage
        if isinstance(storage, RedisStorage):
            storage.client.close()


@pytest.fixture
def build(make_app: AppFactory) -> AppFactory:
    """``make_app`` for the operations tests (escalation, manual control, signals and logs,
    outages, headers, responses, dry run and stats): the seed's options without its proxy
    header, so clients are named by ``REMOTE_ADDR``, and every view of ``OPERATIONS_ROUTES``.
    The clock starts at 1000.0 and moves only when a test says so. Those tests go through
    Flask's test client or ``GateKeeper``'s public methods only."""
    return functools.partial(make_app, base=PEER_OPTIONS, routes=OPERATIONS_ROUTES)


@pytest.fixture
def make(make_app: AppFactory, storage: Storage) -> AppFactory:
    """``make_app`` on both storages (the ``storage`` fixture) with none of the seed's
    options or routes: ``make(**options)``; the test adds its views."""
    return functools.partial(make_app, storage=storage, base={}, routes=())


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """``caplog`` recording the ``flask_gatekeeper`` logger from DEBUG up."""
    caplog.set_level(logging.DEBUG, logger="flask_gatekeeper")
    return caplog


@pytest.fixture
def app_and_gk(make_app: AppFactory) -> tuple[Flask, GateKeeper]:
    return make_app()


@pytest.fixture
def app(app_and_gk: tuple[Flask, GateKeeper]) -> Flask:
    """The seed-configured app; add routes to it before the first request."""
    return app_and_gk[0]


@pytest.fixture
def gk(app_and_gk: tuple[Flask, GateKeeper]) -> GateKeeper:
    """The ``GateKeeper`` installed on ``app``."""
    return app_and_gk[1]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
