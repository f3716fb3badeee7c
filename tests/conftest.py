"""Shared fixtures: a fake clock and an app built like the seed's README example.

Time never passes on its own in these tests: the storage reads ``clock``, and a test
moves it with ``clock.advance(...)`` or ``clock.set(...)`` instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable, Optional

import pytest
from flask import Flask, request
from flask.testing import FlaskClient

from flask_gatekeeper import GateKeeper, MemoryStorage
from flask_gatekeeper.storage import Storage
from flask_gatekeeper.testing import FakeClock

SEED_OPTIONS: dict[str, Any] = {
    "ip_header": "x-my-ip",
    "ban_rule": {"count": 3, "window": 10, "duration": 600},
    "rate_limit_rules": [{"count": 20, "window": 1}, {"count": 100, "window": 10}],
    "excluded_methods": ["HEAD"],
}
"""The seed's configuration (flask-gatekeeper 1.0's README), as constructor keywords."""

AppFactory = Callable[..., "tuple[Flask, GateKeeper]"]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A throw-away ``redis-server`` for the whole run (skipped without one, but not
    under CI); tests empty it themselves."""
    from redis_server import RedisServer, require

    require("redis-server")
    with RedisServer() as server:
        yield server.url


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
def seed_options() -> dict[str, Any]:
    """A fresh copy of the seed's options, for tests that build their own ``GateKeeper``."""
    return dict(SEED_OPTIONS)


@pytest.fixture
def clock() -> FakeClock:
    """The time every storage of the test reads; starts at 1000.0."""
    return FakeClock()


@pytest.fixture
def make_app(clock: FakeClock) -> AppFactory:
    """Build an app with the seed's options (override any as keywords) on ``clock``;
    ``config`` goes into ``app.config`` before ``GateKeeper`` reads it.

    Routes: ``GET /`` answers ``hello``; ``POST /login`` reports the client unless the
    form's password is ``right``, answering 401 with ``banned`` when that report bans.
    """

    def make(config: Optional[dict[str, Any]] = None, **options: Any) -> tuple[Flask, GateKeeper]:
        app = Flask(__name__)
        app.config.update(config or {})
        gk = GateKeeper(app, **{**SEED_OPTIONS, "storage": MemoryStorage(clock=clock), **options})

        @app.route("/")
        def index() -> str:
            return "hello"

        @app.route("/login", methods=["POST"])
        def login() -> tuple[str, int]:
            if request.form.get("password") == "right":
                return "welcome", 200
            return ("banned" if gk.report() else "bad password"), 401

        return app, gk

    return make


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
