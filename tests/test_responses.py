"""Refusals as ``application/problem+json`` when the client prefers JSON, plain text
otherwise (issue 5).

Apps come from the ``build`` fixture (``conftest.py``), on a ``FakeClock``: every number
below is exact.
"""

from __future__ import annotations

import json
from typing import Optional

import pytest
from flask import request
from flask.testing import FlaskClient

from flask_gatekeeper.testing import FakeClock
from support import OTHER_IP, AppFactory, bad_login, get, statuses

JSON_ACCEPTS = [
    "application/json",
    "application/problem+json",
    "text/plain;q=0.5, application/json",
]
TEXT_ACCEPTS: list[Optional[str]] = [
    None,
    "*/*",
    "text/html",
    "text/plain",
    "text/html, application/json;q=0.1, */*;q=0.5",
]


@pytest.mark.parametrize("accept", JSON_ACCEPTS)
def test_429_as_problem_json(build: AppFactory, accept: str) -> None:
    app, _ = build()
    client = app.test_client()
    assert statuses(client, 20) == [200] * 20

    refused = get(client, accept=accept)

    assert refused.status_code == 429
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert refused.headers["Retry-After"] == "1"
    body = json.loads(refused.text)
    assert body == {
        "type": "about:blank",
        "title": "Too Many Requests",
        "status": 429,
        "detail": "ip 10.0.0.1 rate limited for 1s (over 20 requests in a 1s window)",
        "retry_after": 1,
        "violated-policies": ["20-per-1s"],
    }
    assert type(body["retry_after"]) is int


def test_429_problem_names_the_routes_own_rule(build: AppFactory, clock: FakeClock) -> None:
    app, _ = build()
    client = app.test_client()
    assert get(client, "/burst").status_code == 200
    clock.advance(0.25)

    refused = get(client, "/burst", accept="application/json")

    assert refused.status_code == 429
    assert json.loads(refused.text) == {
        "type": "about:blank",
        "title": "Too Many Requests",
        "status": 429,
        "detail": "ip 10.0.0.1 rate limited for 2s (over 1 request in a 2s window)",
        "retry_after": 2,
        "violated-policies": ["route-1-per-2s"],
    }


@pytest.mark.parametrize("accept", JSON_ACCEPTS)
def test_403_as_problem_json(build: AppFactory, clock: FakeClock, accept: str) -> None:
    app, _ = build()
    client = app.test_client()
    assert [bad_login(client).text for _ in range(3)][-1] == "banned"
    clock.advance(0.5)

    refused = get(client, accept=accept)

    assert refused.status_code == 403
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert refused.headers["Retry-After"] == "600"
    assert json.loads(refused.text) == {
        "type": "about:blank",
        "title": "Forbidden",
        "status": 403,
        "detail": "ip 10.0.0.1 banned for 600s (reported 3 times in a 10s window)",
        "retry_after": 600,
    }


def test_deny_list_403_as_problem_json(build: AppFactory) -> None:
    app, _ = build(denylist=["10.9.9.9"])

    refused = get(app.test_client(), ip="10.9.9.9", accept="application/json")

    assert refused.status_code == 403
    assert json.loads(refused.text) == {
        "type": "about:blank",
        "title": "Forbidden",
        "status": 403,
        "detail": "ip 10.9.9.9 denied",
    }


@pytest.mark.parametrize("accept", TEXT_ACCEPTS)
def test_refusals_are_plain_text_unless_json_is_preferred(
    build: AppFactory, accept: Optional[str]
) -> None:
    app, gk = build()
    client = app.test_client()
    assert statuses(client, 20) == [200] * 20
    with app.app_context():
        gk.ban(OTHER_IP, 30)

    limited = get(client, accept=accept)
    banned = get(client, ip=OTHER_IP, accept=accept)

    assert limited.status_code == 429
    assert limited.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert limited.text == "ip 10.0.0.1 rate limited for 1s (over 20 requests in a 1s window)\n"
    assert banned.status_code == 403
    assert banned.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert banned.text == "ip 10.0.0.2 banned for 30s\n"


def test_bodies_say_what_kind_of_client_they_refuse(make_app: AppFactory) -> None:
    """ "ip" for an address (an IPv6 client's /ipv6_prefix key too), "network" for a wider
    network, "client" for a ``key_func`` key, even one that reads as an address."""
    over = "rate limited for 60s (over 1 request in a 60s window)\n"
    apps = [
        make_app(base={}, routes=(), rate_limit_rules=["1/minute"], ipv6_prefix=56, **options)
        for options in ({}, {"key_func": lambda: request.headers.get("X-User")})
    ]
    for app, gk in apps:
        app.add_url_rule("/", "index", lambda: "hello")
        with app.app_context():
            gk.ban("2001:db8:1::/48", 30)
            gk.ban("banned-user", 30)
    by_address, by_key = (app.test_client() for app, _ in apps)

    def second_body(client: FlaskClient, ip: str, user: Optional[str] = None) -> str:
        headers = {"X-User": user} if user else {}
        get(client, ip=ip, headers=headers)
        return get(client, ip=ip, headers=headers).text

    assert second_body(by_address, "10.0.0.1") == f"ip 10.0.0.1 {over}"
    assert second_body(by_address, "2001:db8::1") == f"ip 2001:db8::/56 {over}"
    banned_network = "network 2001:db8:1::/48 banned for 30s\n"
    assert second_body(by_address, "2001:db8:1::1") == banned_network
    assert second_body(by_key, "2001:db8:1::1", "user-1") == banned_network
    assert second_body(by_key, "10.0.0.2", "user-42") == f"client user-42 {over}"
    assert second_body(by_key, "10.0.0.3", "10.0.0.9") == f"client key:10.0.0.9 {over}"
    assert second_body(by_key, "10.0.0.4", "banned-user") == "client banned-user banned for 30s\n"
