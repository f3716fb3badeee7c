"""Refusals that cost less than serving: with no handler that would take a refusal, the
hook returns its response at once; every kind of handler still gets it. The bytes,
headers and signals are the same either way."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Blueprint, Flask
from werkzeug.exceptions import HTTPException, TooManyRequests

from flask_gatekeeper import Banned, Denied, GateKeeper, MemoryStorage, RateLimited, gate
from flask_gatekeeper.testing import FakeClock
from support import recording

ACCEPTS = [None, "*/*", "application/json", "text/html;q=0.5, application/problem+json"]


def refusing_app(clock: FakeClock) -> tuple[Flask, GateKeeper]:
    app = Flask(__name__)
    gk = GateKeeper(
        app,
        rate_limit_rules="1/minute",
        denylist=["10.0.0.9"],
        headers="both",
        storage=MemoryStorage(clock=clock),
    )
    app.add_url_rule("/", "index", lambda: "ok")
    with app.app_context():
        gk.ban("10.0.0.8", 60)
    return app, gk


def responses(app: Flask, accept: Any) -> list[tuple[int, list[tuple[str, str]], bytes]]:
    client = app.test_client()
    headers = {"Accept": accept} if accept else {}
    seen = []
    for ip in ("10.0.0.1", "10.0.0.1", "10.0.0.8", "10.0.0.9"):  # 200, 429, 403, 403
        response = client.get("/", headers=headers, environ_base={"REMOTE_ADDR": ip})
        seen.append((response.status_code, sorted(response.headers.items()), response.data))
    return seen


@pytest.mark.parametrize("accept", ACCEPTS)
def test_a_returned_refusal_is_byte_for_byte_the_raised_one(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch, accept: Any
) -> None:
    # X-RateLimit-Reset is a Unix time: both runs read the same one, whatever the second
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.25)
    fast_app, _ = refusing_app(clock)
    with recording(fast_app) as fast_events:
        fast = responses(fast_app, accept)
    monkeypatch.setattr(gate, "_handled", lambda app, refusal: True)  # always raise
    raised_app, _ = refusing_app(clock)
    with recording(raised_app) as raised_events:
        raised = responses(raised_app, accept)
    assert [status for status, _, _ in fast] == [200, 429, 403, 403]
    assert fast == raised
    assert fast_events == raised_events


@pytest.mark.parametrize(
    "registered",
    [429, RateLimited, TooManyRequests, HTTPException, Exception],
    ids=["429", "RateLimited", "TooManyRequests", "HTTPException", "Exception"],
)
def test_every_kind_of_handler_still_gets_the_refusal(clock: FakeClock, registered: Any) -> None:
    app, _ = refusing_app(clock)
    handled: list[Exception] = []

    @app.errorhandler(registered)
    def handler(error: Exception) -> tuple[str, int]:
        handled.append(error)
        return "handled", 418

    client = app.test_client()
    assert client.get("/").status_code == 200
    assert client.get("/").status_code == 418
    assert isinstance(handled[0], RateLimited)


@pytest.mark.parametrize("registered", [403, Banned, Denied], ids=["403", "Banned", "Denied"])
def test_a_403_handler_gets_what_it_registered_for(clock: FakeClock, registered: Any) -> None:
    app, _ = refusing_app(clock)

    @app.errorhandler(registered)
    def handler(error: Exception) -> tuple[str, int]:
        return type(error).__name__, 418

    client = app.test_client()
    banned = client.get("/", environ_base={"REMOTE_ADDR": "10.0.0.8"})
    denied = client.get("/", environ_base={"REMOTE_ADDR": "10.0.0.9"})
    handled = {403: ("Banned", "Denied"), Banned: ("Banned",), Denied: ("Denied",)}[registered]
    for response, name in ((banned, "Banned"), (denied, "Denied")):
        if name in handled:
            assert (response.status_code, response.text) == (418, name)
        else:
            assert response.status_code == 403


def test_a_blueprints_handler_gets_its_routes_refusals(clock: FakeClock) -> None:
    app, _ = refusing_app(clock)
    api = Blueprint("api", __name__)
    api.add_url_rule("/api", "data", lambda: "data")

    @api.errorhandler(429)
    def slow_down(error: Exception) -> tuple[str, int]:
        return "api says slow down", 429

    app.register_blueprint(api)
    client = app.test_client()
    assert client.get("/api").status_code == 200
    assert client.get("/api").text == "api says slow down"
    assert client.get("/").text.startswith("ip 127.0.0.1 rate limited")  # not the blueprint's


def test_trapped_http_exceptions_are_raised(clock: FakeClock) -> None:
    app, _ = refusing_app(clock)
    app.config["TRAP_HTTP_EXCEPTIONS"] = True  # debugging: HTTP errors propagate
    app.testing = True
    client = app.test_client()
    assert client.get("/").status_code == 200
    with pytest.raises(RateLimited):
        client.get("/")


def repeated_traffic(
    app: Flask, clock: FakeClock
) -> list[tuple[int, list[tuple[str, str]], bytes]]:
    """Each refusal several times, with and without Accept values, while the waits count
    down: answers kept ready and answers made afresh alike."""
    client = app.test_client()
    seen = []
    for step in range(6):
        for accept in ACCEPTS:
            headers = {"Accept": accept} if accept else {}
            for ip in ("10.0.0.1", "10.0.0.8", "10.0.0.9"):
                response = client.get("/", headers=headers, environ_base={"REMOTE_ADDR": ip})
                seen.append((response.status_code, list(response.headers.items()), response.data))
        clock.advance(0.4 if step % 2 else 7)  # the whole seconds to wait change, or not
    return seen


def test_refusals_answered_again_are_the_raised_ones_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.25)  # X-RateLimit-Reset's
    fast_clock, raised_clock = FakeClock(), FakeClock()
    fast_app, _ = refusing_app(fast_clock)
    with recording(fast_app) as fast_events:
        fast = repeated_traffic(fast_app, fast_clock)
    monkeypatch.setattr(gate, "_handled", lambda app, refusal: True)  # always raise
    raised_app, _ = refusing_app(raised_clock)
    with recording(raised_app) as raised_events:
        raised = repeated_traffic(raised_app, raised_clock)
    assert {status for status, _, _ in fast} == {200, 429, 403}
    assert fast == raised  # headers in the same order too
    assert fast_events == raised_events


def test_the_ready_answers_stay_bounded_and_name_their_client(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gate, "READY_RESPONSES", 2)
    app, gk = refusing_app(clock)
    banned = [f"10.0.1.{number}" for number in range(1, 6)]
    with app.app_context():
        for ip in banned:
            gk.ban(ip, 60)
    client = app.test_client()
    for _ in range(3):
        for ip in banned:
            response = client.get("/", environ_base={"REMOTE_ADDR": ip})
            assert response.status_code == 403
            assert response.text == f"ip {ip} banned for 60s\n"
            assert len(app.extensions["gatekeeper"]._ready) <= 2
