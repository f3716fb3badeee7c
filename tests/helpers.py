"""What the tests share besides fixtures: option sets and routes for ``make_app`` (see
``conftest.py``), requests from a named client, and recorders of signals and logs.

A route here is a function ``route(app, gk)`` that adds one view to ``app``; ``make_app``
takes a tuple of them, so each test module picks the views it needs.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional

import pytest
from blinker import Signal
from flask import Flask, request
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from flask_gatekeeper import GateKeeper, signals
from flask_gatekeeper.outage import RETRY_INTERVAL
from flask_gatekeeper.rules import RuleLike
from flask_gatekeeper.testing import FakeClock, FlakyStorage

AppFactory = Callable[..., "tuple[Flask, GateKeeper]"]
"""``make_app(*, config=None, base=SEED_OPTIONS, routes=SEED_ROUTES, **options)``."""

Route = Callable[[Flask, GateKeeper], None]

IP = "10.0.0.1"
OTHER_IP = "10.0.0.2"
ADMIN_IP = "10.0.0.99"

RULES: dict[str, Any] = {
    "ban_rule": {"count": 3, "window": 10, "duration": 600},
    "rate_limit_rules": [{"count": 20, "window": 1}, {"count": 100, "window": 10}],
}
"""The seed's ban rule and rate limits."""

PEER_OPTIONS: dict[str, Any] = {**RULES, "excluded_methods": ["HEAD"]}
"""The seed's options without its proxy header: clients are told apart by REMOTE_ADDR."""

SEED_OPTIONS: dict[str, Any] = {"ip_header": "x-my-ip", **PEER_OPTIONS}
"""The seed's configuration (flask-gatekeeper 1.0's README), as constructor keywords."""


# --- Routes ---------------------------------------------------------------------------------


def index(app: Flask, gk: GateKeeper) -> None:
    """``GET /`` answers ``hello`` under the global rules."""
    app.add_url_rule("/", "index", lambda: "hello")


def login(app: Flask, gk: GateKeeper) -> None:
    """``POST /login`` reports the client unless the form's password is ``right``, answering
    401 with ``banned`` when that report bans."""

    @app.route("/login", methods=["POST"])
    def login() -> tuple[str, int]:
        if request.form.get("password") == "right":
            return "welcome", 200
        return ("banned" if gk.report() else "bad password"), 401


def burst(rules: list[RuleLike]) -> Route:
    """``GET /burst`` with its own ``rules`` on top of the global ones."""

    def add(app: Flask, gk: GateKeeper) -> None:
        @app.route("/burst")
        @gk.specific(rate_limit_rules=rules)
        def burst() -> str:
            return "burst"

    return add


def alone(app: Flask, gk: GateKeeper) -> None:
    """``GET /alone`` under only its own 2 per 60 s."""

    @app.route("/alone")
    @gk.specific(rate_limit_rules=[{"count": 2, "window": 60}], standalone=True)
    def alone() -> str:
        return "alone"


def health(app: Flask, gk: GateKeeper) -> None:
    """``GET /health``, bypassed."""

    @app.route("/health")
    @gk.bypass
    def health() -> str:
        return "ok"


def trap(app: Flask, gk: GateKeeper) -> None:
    """``GET /trap`` bans its caller."""

    @app.route("/trap")
    def trap() -> str:
        gk.ban(request.remote_addr or "")
        return "gotcha"


def admin(app: Flask, gk: GateKeeper) -> None:
    """The bypassed ``POST /admin/ban`` and ``/admin/unban``: manual control from a view."""

    @app.route("/admin/ban", methods=["POST"])
    @gk.bypass
    def admin_ban() -> dict[str, Any]:
        ip = request.form["ip"]
        gk.ban(ip, request.form.get("duration", type=float))
        return {"banned_for": gk.banned_for(ip), "bans": gk.bans()}

    @app.route("/admin/unban", methods=["POST"])
    @gk.bypass
    def admin_unban() -> dict[str, Any]:
        return {"unbanned": gk.unban(request.form["ip"])}


SEED_ROUTES: tuple[Route, ...] = (index, login)
"""The seed README's views."""

OPERATIONS_ROUTES: tuple[Route, ...] = (
    index,
    login,
    burst([{"count": 1, "window": 2}]),
    alone,
    health,
    trap,
    admin,
)
"""Every view the operations tests use (escalation, manual control, signals, logs, outages,
headers, responses, dry run and stats)."""


# --- Requests from a client named by REMOTE_ADDR --------------------------------------------


def get(
    client: FlaskClient,
    path: str = "/",
    ip: str = IP,
    *,
    method: str = "GET",
    accept: Optional[str] = None,
) -> TestResponse:
    """One request from ``ip``, with an ``Accept`` header when one is given."""
    headers = {"Accept": accept} if accept is not None else {}
    return client.open(path, method=method, headers=headers, environ_base={"REMOTE_ADDR": ip})


def statuses(client: FlaskClient, times: int, path: str = "/", ip: str = IP) -> list[int]:
    """The status codes of ``times`` requests made at the same instant."""
    return [get(client, path, ip).status_code for _ in range(times)]


def bad_login(client: FlaskClient, ip: str = IP) -> TestResponse:
    """A wrong password: the ``/login`` view reports ``ip``."""
    return client.post("/login", data={"password": "wrong"}, environ_base={"REMOTE_ADDR": ip})


def retry_after(response: TestResponse) -> int:
    value = response.headers["Retry-After"]
    assert value.isdigit(), value
    return int(value)


# --- Signals and logs -----------------------------------------------------------------------

SIGNALS: dict[str, Signal] = {
    "client_reported": signals.client_reported,
    "client_banned": signals.client_banned,
    "client_unbanned": signals.client_unbanned,
    "request_rate_limited": signals.request_rate_limited,
    "request_banned": signals.request_banned,
    "storage_error": signals.storage_error,
}

Event = tuple[str, dict[str, Any]]


class _Receiver:
    """Appends ``(signal name, keyword arguments)`` to ``events``; checks the sender."""

    def __init__(self, name: str, app: Flask, events: list[Event]) -> None:
        self.name = name
        self.app = app
        self.events = events

    def __call__(self, sender: object, **kwargs: Any) -> None:
        assert sender is self.app
        self.events.append((self.name, kwargs))


@contextmanager
def recording(app: Flask) -> Iterator[list[Event]]:
    """Every gatekeeper signal ``app`` sends inside the block, in order."""
    events: list[Event] = []
    with ExitStack() as stack:
        for name, signal in SIGNALS.items():
            stack.enter_context(signal.connected_to(_Receiver(name, app, events), sender=app))
        yield events


def gatekeeper_logs(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """``(level, message)`` of every record of the ``flask_gatekeeper`` logger."""
    return [
        (record.levelname, record.getMessage())
        for record in caplog.records
        if record.name == "flask_gatekeeper"
    ]


class ProbingClock:
    """An outage guard's clock on which every reading is a retry interval after the last:
    while the storage is down, every call tries it again."""

    def __init__(self) -> None:
        self._now = 0.0

    def __call__(self) -> float:
        self._now += RETRY_INTERVAL
        return self._now


def probed_storage(clock: FakeClock) -> FlakyStorage:
    """A ``FlakyStorage`` over a memory storage on ``clock``, which the gate tries on
    every call while it fails (its own clock is a ``ProbingClock``)."""
    from flask_gatekeeper import MemoryStorage

    storage = FlakyStorage(MemoryStorage(clock=clock))
    storage.clock = ProbingClock()
    return storage


def load_script(path: Path, name: str) -> ModuleType:
    """A script of the project (not a package module) loaded as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
