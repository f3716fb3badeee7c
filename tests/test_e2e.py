"""The demo app (examples/demo.py) served by werkzeug over real HTTP on a loopback port.

Real time, no fake clock and no sleeps: the bursts below take a few milliseconds, far
inside the demo's 1 s window, and the ban lasts 600 s.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest

from support import DEMO, SEED_IP_HEADER, load_script, servers

pytestmark = pytest.mark.e2e

# The demo reads its clients from the seed's header.
fetch = functools.partial(servers.fetch, ip_header=SEED_IP_HEADER)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """The demo, served by a threaded werkzeug server on a free port until the module ends."""
    app = load_script(DEMO, "gatekeeper_demo").app
    with servers.serving(app) as port:
        yield f"http://{servers.HOST}:{port}"


def test_burst_is_rate_limited(base_url: str) -> None:
    ip = "10.0.0.1"
    replies = [fetch(f"{base_url}/ping", ip) for _ in range(21)]
    assert [reply.status for reply in replies[:20]] == [200] * 20
    assert {reply.body for reply in replies[:20]} == {"ok"}
    refused = replies[20]
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "1"
    assert refused.body == "ip 10.0.0.1 rate limited for 1s (over 20 requests in a 1s window)\n"
    assert fetch(f"{base_url}/ping", "10.0.0.9").status == 200  # other clients are not affected


def test_bad_passwords_ban_the_client_but_not_from_bypass(base_url: str) -> None:
    ip = "10.0.0.2"
    replies = [fetch(f"{base_url}/login", ip, {"password": "guess"}) for _ in range(3)]
    assert [(reply.status, reply.body) for reply in replies] == [(401, "bad password")] * 3

    refused = fetch(f"{base_url}/ping", ip)
    assert refused.status == 403
    assert refused.headers["Retry-After"] == "600"
    assert refused.body == "ip 10.0.0.2 banned for 600s (reported 3 times in a 10s window)\n"
    assert fetch(f"{base_url}/ping", ip, method="HEAD").status == 403  # excluded, still banned
    assert fetch(f"{base_url}/login", ip, {"password": "password"}).status == 403
    assert fetch(f"{base_url}/standalone", ip).status == 403  # bans apply on standalone routes
    bypass = fetch(f"{base_url}/bypass", ip)
    assert (bypass.status, bypass.body) == (200, "ok")


def test_right_password_returns_a_token(base_url: str) -> None:
    ip = "10.0.0.3"
    assert fetch(f"{base_url}/login", ip, {"password": "guess"}).status == 401
    assert fetch(f"{base_url}/login", ip, ["not", "an", "object"]).status == 401
    reply = fetch(f"{base_url}/login", ip, {"password": "password"})
    assert reply.status == 200
    assert len(reply.body) == 32
    as_in_1_0 = fetch(f"{base_url}/login", ip, {"password": "password"}, method="GET")
    assert as_in_1_0.status == 200  # 1.0's example routed /login for GET


def test_specific_route_adds_its_own_limit(base_url: str) -> None:
    ip = "10.0.0.4"
    assert fetch(f"{base_url}/global_plus_specific", ip).status == 200
    refused = fetch(f"{base_url}/global_plus_specific", ip)
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "2"
    assert refused.body == "ip 10.0.0.4 rate limited for 2s (over 1 request in a 2s window)\n"
    assert fetch(f"{base_url}/ping", ip).status == 200  # the global rules still have room


def test_standalone_route_obeys_only_its_own_rule(base_url: str) -> None:
    ip = "10.0.0.5"
    statuses = [fetch(f"{base_url}/standalone", ip).status for _ in range(11)]
    assert statuses == [200] * 10 + [429]
    refused = fetch(f"{base_url}/standalone", ip)
    assert refused.body == (
        "ip 10.0.0.5 rate limited for 3600s (over 10 requests in a 3600s window)\n"
    )
    # None of the 12 counted toward the global 20 per second: /ping still admits 20.
    assert [fetch(f"{base_url}/ping", ip).status for _ in range(20)] == [200] * 20
