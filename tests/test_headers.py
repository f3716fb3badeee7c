"""RateLimit header fields (``RateLimit``, ``RateLimit-Policy`` and the legacy
``X-RateLimit-*``), checked with a Structured Field parser of their own (issue 5).

Apps come from the ``build`` fixture (``conftest.py``), on a ``FakeClock``: every number
below is exact.
"""

from __future__ import annotations

import re
import time
from typing import Any, Union

import pytest
from werkzeug.test import TestResponse

from flask_gatekeeper import ConfigError, ConfigTypeError
from flask_gatekeeper.testing import FakeClock
from support import OTHER_IP, AppFactory, get, retry_after

Params = dict[str, Union[int, float]]
SfList = list[tuple[str, Params]]

_SF_KEY = re.compile(r"[a-z*][a-z0-9_.*-]*")
_SF_NUMBER = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")


def parse_sf_list(text: str) -> SfList:
    """A Structured Field list (RFC 8941) whose items are strings with parameters whose
    values are integers or decimals; raises ValueError for anything else."""
    items: SfList = []
    pos = 0

    def skip(chars: str) -> None:
        nonlocal pos
        while pos < len(text) and text[pos] in chars:
            pos += 1

    while True:
        if not text.startswith('"', pos):
            raise ValueError(f"expected a string at {pos} in {text!r}")
        pos += 1
        chars = []
        while True:
            if pos >= len(text):
                raise ValueError(f"unterminated string in {text!r}")
            char = text[pos]
            if char == "\\":
                if text[pos + 1 : pos + 2] not in ('"', "\\"):
                    raise ValueError(f"bad escape at {pos} in {text!r}")
                chars.append(text[pos + 1])
                pos += 2
                continue
            pos += 1
            if char == '"':
                break
            if not " " <= char <= "~":
                raise ValueError(f"bad character {char!r} in a string in {text!r}")
            chars.append(char)
        params: Params = {}
        while text.startswith(";", pos):
            pos += 1
            skip(" ")
            key = _SF_KEY.match(text, pos)
            if key is None or not text.startswith("=", key.end()):
                raise ValueError(f"expected key=value at {pos} in {text!r}")
            number = _SF_NUMBER.match(text, key.end() + 1)
            if number is None:
                raise ValueError(f"expected a number at {key.end() + 1} in {text!r}")
            sign, whole, fraction = number.groups()
            if fraction is None:
                if len(whole) > 15:
                    raise ValueError(f"integer too long in {text!r}")
                params[key.group()] = int(sign + whole)
            else:
                if len(whole) > 12 or len(fraction) > 3:
                    raise ValueError(f"bad decimal {number.group()!r} in {text!r}")
                params[key.group()] = float(number.group())
            pos = number.end()
        items.append(("".join(chars), params))
        skip(" \t")
        if pos == len(text):
            return items
        if not text.startswith(",", pos):
            raise ValueError(f"expected ',' at {pos} in {text!r}")
        pos += 1
        skip(" \t")
        if pos == len(text):
            raise ValueError(f"trailing comma in {text!r}")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ('"a";q=1;w=2', [("a", {"q": 1, "w": 2})]),
        ('"a";w=0.5, "b\\"c";r=-3', [("a", {"w": 0.5}), ('b"c', {"r": -3})]),
        ('"a" ,\t"b"', [("a", {}), ("b", {})]),
    ],
)
def test_sf_list_parser_reads(text: str, parsed: SfList) -> None:
    assert parse_sf_list(text) == parsed


@pytest.mark.parametrize(
    "text", ["", "a", '"a', '"a";w=1.', '"a";w=1.0004', '"a";W=1', '"a";w', '"a",', '"a" "b"']
)
def test_sf_list_parser_rejects(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  # the parser raises only ValueError
        parse_sf_list(text)


def rate_limit(response: TestResponse) -> tuple[str, Params]:
    """The one item of the ``RateLimit`` field."""
    (item,) = parse_sf_list(response.headers["RateLimit"])
    return item


def policy(response: TestResponse) -> SfList:
    return parse_sf_list(response.headers["RateLimit-Policy"])


RATE_LIMIT_FIELDS = (
    "RateLimit",
    "RateLimit-Policy",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
)


def rate_limit_fields(response: TestResponse) -> set[str]:
    return {name for name in RATE_LIMIT_FIELDS if name in response.headers}


TWO_RULES: list[dict[str, Any]] = [{"count": 3, "window": 10}, {"count": 5, "window": 60}]


def test_ratelimit_fields_over_a_sequence_of_requests(build: AppFactory, clock: FakeClock) -> None:
    app, _ = build(headers=True, rate_limit_rules=TWO_RULES)
    client = app.test_client()
    # (time, status, RateLimit item): the rule with the fewest requests left, then the
    # one with the longest wait; t is rounded up.
    script = [
        (1000.0, 200, ("3-per-10s", {"r": 2, "t": 10})),
        (1002.5, 200, ("3-per-10s", {"r": 1, "t": 8})),  # oldest counts until 1010
        (1004.0, 200, ("3-per-10s", {"r": 0, "t": 6})),
        (1005.0, 429, ("3-per-10s", {"r": 0, "t": 5})),
        (1010.0, 200, ("3-per-10s", {"r": 0, "t": 3})),  # 1000 has left: 1002.5 is oldest
        (1012.5, 200, ("5-per-60s", {"r": 0, "t": 48})),  # both full: the longer wait
        (1012.5, 429, ("5-per-60s", {"r": 0, "t": 48})),
    ]
    seen = []
    for now, _, _ in script:
        clock.set(now)
        response = get(client)
        assert policy(response) == [
            ("3-per-10s", {"q": 3, "w": 10}),
            ("5-per-60s", {"q": 5, "w": 60}),
        ]
        assert "X-RateLimit-Limit" not in response.headers  # legacy fields are opt-in
        if response.status_code == 429:
            assert response.headers["Retry-After"] == str(rate_limit(response)[1]["t"])
        seen.append((now, response.status_code, rate_limit(response)))

    assert seen == script


def test_ratelimit_fields_of_a_specific_route(build: AppFactory, clock: FakeClock) -> None:
    app, _ = build(headers=True, rate_limit_rules=TWO_RULES)
    client = app.test_client()

    first = get(client, "/burst")
    clock.advance(0.5)
    second = get(client, "/burst")

    expected_policy = [
        ("3-per-10s", {"q": 3, "w": 10}),
        ("5-per-60s", {"q": 5, "w": 60}),
        ("route-1-per-2s", {"q": 1, "w": 2}),
    ]
    assert (first.status_code, policy(first), rate_limit(first)) == (
        200,
        expected_policy,
        ("route-1-per-2s", {"r": 0, "t": 2}),
    )
    assert (second.status_code, policy(second), rate_limit(second)) == (
        429,
        expected_policy,
        ("route-1-per-2s", {"r": 0, "t": 2}),  # 1.5 s, rounded up
    )
    assert retry_after(second) == 2
    # the global rules counted the route's admitted request only
    assert rate_limit(get(client)) == ("3-per-10s", {"r": 1, "t": 10})


def test_ratelimit_fields_of_a_standalone_route(build: AppFactory) -> None:
    app, _ = build(headers=True, rate_limit_rules=TWO_RULES)
    client = app.test_client()

    responses = [get(client, "/alone") for _ in range(3)]

    assert [response.status_code for response in responses] == [200, 200, 429]
    assert [policy(response) for response in responses] == [
        [("route-2-per-60s", {"q": 2, "w": 60})]
    ] * 3
    assert [rate_limit(response) for response in responses] == [
        ("route-2-per-60s", {"r": 1, "t": 60}),
        ("route-2-per-60s", {"r": 0, "t": 60}),
        ("route-2-per-60s", {"r": 0, "t": 60}),
    ]


def test_ratelimit_policy_with_a_fractional_window(build: AppFactory, clock: FakeClock) -> None:
    app, _ = build(headers=True, rate_limit_rules=[{"count": 2, "window": 0.25}])
    client = app.test_client()

    response = get(client)

    assert policy(response) == [("2-per-0.25s", {"q": 2, "w": 0.25})]
    assert rate_limit(response) == ("2-per-0.25s", {"r": 1, "t": 1})


def test_ratelimit_policy_is_valid_for_any_window(build: AppFactory) -> None:
    app, _ = build(headers=True, rate_limit_rules=[{"count": 2, "window": 1.0004}])

    response = get(app.test_client())

    assert policy(response) == [("2-per-1.0004s", {"q": 2, "w": 1})]


def test_legacy_fields(build: AppFactory, clock: FakeClock) -> None:
    app, _ = build(headers="legacy", rate_limit_rules=TWO_RULES)
    client = app.test_client()

    for now, status, remaining, reset in [
        (1000.0, 200, 2, 10),
        (1002.5, 200, 1, 8),
        (1002.5, 200, 0, 8),
        (1003.0, 429, 0, 7),
    ]:
        clock.set(now)
        response = get(client)
        assert response.status_code == status
        assert rate_limit_fields(response) == {
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
        }
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert response.headers["X-RateLimit-Remaining"] == str(remaining)
        reset_at = int(response.headers["X-RateLimit-Reset"])  # a Unix time
        assert abs(reset_at - (time.time() + reset)) <= 2


@pytest.mark.parametrize(
    ("config", "options", "fields"),
    [
        pytest.param({}, {}, set(), id="off by default"),
        pytest.param({}, {"headers": False}, set(), id="False"),
        pytest.param({}, {"headers": True}, {"RateLimit", "RateLimit-Policy"}, id="True"),
        pytest.param({}, {"headers": "ietf"}, {"RateLimit", "RateLimit-Policy"}, id="ietf"),
        pytest.param({}, {"headers": "legacy"}, set(RATE_LIMIT_FIELDS[2:]), id="legacy"),
        pytest.param({}, {"headers": "both"}, set(RATE_LIMIT_FIELDS), id="both"),
        pytest.param({"GATEKEEPER_HEADERS": True}, {}, set(RATE_LIMIT_FIELDS[:2]), id="config"),
        pytest.param({"GATEKEEPER_HEADERS": "both"}, {}, set(RATE_LIMIT_FIELDS), id="config both"),
        pytest.param(
            {"GATEKEEPER_HEADERS": "both"}, {"headers": False}, set(), id="constructor wins"
        ),
    ],
)
def test_headers_option_picks_the_fields(
    build: AppFactory, config: dict[str, Any], options: dict[str, Any], fields: set[str]
) -> None:
    app, _ = build(config=config, rate_limit_rules=[{"count": 1, "window": 10}], **options)
    client = app.test_client()

    assert rate_limit_fields(get(client)) == fields
    assert rate_limit_fields(get(client)) == fields  # 429 too


def test_no_fields_where_nothing_is_limited(build: AppFactory) -> None:
    app, gk = build(headers="both")
    client = app.test_client()

    assert rate_limit_fields(get(client, "/health")) == set()  # bypassed
    head = get(client, method="HEAD")  # excluded method
    assert head.status_code == 200
    assert rate_limit_fields(head) == set()
    with app.app_context():
        gk.ban(OTHER_IP, 10)
    banned = get(client, ip=OTHER_IP)
    assert banned.status_code == 403
    assert rate_limit_fields(banned) == set()


def test_no_fields_without_rules(build: AppFactory) -> None:
    app, _ = build(headers="both", rate_limit_rules=None)
    client = app.test_client()

    assert rate_limit_fields(get(client)) == set()
    assert rate_limit_fields(get(client, "/burst")) == {*RATE_LIMIT_FIELDS}


@pytest.mark.parametrize(
    ("config", "options", "error", "named"),
    [
        pytest.param({}, {"headers": "yes"}, ConfigError, "headers", id="yes"),
        pytest.param({}, {"headers": "IETF"}, ConfigError, "headers", id="case"),
        pytest.param({}, {"headers": 3}, ConfigTypeError, "headers", id="3"),
        pytest.param({}, {"headers": 1}, ConfigTypeError, "headers", id="1"),
        pytest.param(
            {"GATEKEEPER_HEADERS": "yes"}, {}, ConfigError, "GATEKEEPER_HEADERS", id="config"
        ),
    ],
)
def test_bad_headers_option_fails_at_init(
    build: AppFactory,
    config: dict[str, Any],
    options: dict[str, Any],
    error: type[Exception],
    named: str,
) -> None:
    with pytest.raises(error, match=f"^{named}: expected True, False or one of"):
        build(config=config, **options)
