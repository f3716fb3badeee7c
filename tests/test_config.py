"""Options and their ``GATEKEEPER_*`` keys: app.config works, the constructor wins, bad
values fail at ``init_app`` naming the key (or option) and the value.

Each option has one scenario: a probe that sends a few requests and returns what it saw,
and what it must see with no setting, with the ``app.config`` value and with the
constructor value (given on top of that config). The options are read from
``CONFIG_KEYS``, so a new key without a scenario fails here.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

import pytest
from flask import Flask, Response, request
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

import support
from flask_gatekeeper import (
    ConfigError,
    ConfigTypeError,
    Decision,
    GateKeeper,
    MemoryStorage,
    StorageError,
)
from flask_gatekeeper.identity.keys import KeyHasher
from flask_gatekeeper.options import CONFIG_KEYS
from flask_gatekeeper.testing import FakeClock
from support import AppFactory, index

PEER = "192.0.2.7"


class Env(NamedTuple):
    """What a scenario's values may be built from."""

    clock: FakeClock
    redis_url: Optional[str]


class Subject(NamedTuple):
    app: Flask
    gk: GateKeeper
    client: FlaskClient
    env: Env


Probe = Callable[[Subject], object]


@dataclass(frozen=True)
class Fresh:
    """A value built per test, e.g. a storage on the test's clock."""

    make: Callable[[Env], object]


def fake_clock_storage(env: Env) -> object:
    return MemoryStorage(clock=env.clock)


def redis_storage(env: Env) -> object:
    assert env.redis_url is not None
    return env.redis_url


class BrokenStorage:
    """A storage whose backend is down."""

    def hit(self, *args: object, **kwargs: object) -> Decision:
        raise StorageError("connection refused")

    def report(self, *args: object, **kwargs: object) -> Optional[float]:
        raise StorageError("connection refused")


BASE_CONFIG: dict[str, object] = {
    "GATEKEEPER_RATE_LIMIT_RULES": [{"count": 2, "window": 10}],
    "GATEKEEPER_IP_HEADER": "x-my-ip",
    "GATEKEEPER_STORAGE_URI": Fresh(fake_clock_storage),
}
"""The app.config every scenario starts from (minus the key under test)."""


def send(
    subject: Subject, headers: Optional[dict[str, str]] = None, method: str = "GET"
) -> TestResponse:
    """One request from ``PEER`` to the scenario's app."""
    return support.get(subject.client, "/", PEER, method=method, headers=headers)


def statuses(
    subject: Subject, times: int, headers: Optional[dict[str, str]] = None, method: str = "GET"
) -> list[int]:
    return support.statuses(subject.client, times, "/", PEER, method=method, headers=headers)


def refused_key(headers: dict[str, str]) -> Probe:
    """The client key named by the 429 that the third request gets (rule: 2 per 10 s)."""

    def probe(subject: Subject) -> object:
        responses = [send(subject, headers) for _ in range(3)]
        assert [response.status_code for response in responses] == [200, 200, 429]
        prefix, key, rest = responses[2].text.split(" ", 2)
        assert rest.split(" ")[:2] == ["rate", "limited"]
        assert prefix == ("client" if key in ("alice", "team-alice") else "ip")  # key_func's
        return key

    return probe


def refused_client(subject: Subject) -> object:
    """The ``key_func`` key (alice's) named by the 429 that the third request gets."""
    responses = [send(subject, {"x-user": "alice"}) for _ in range(3)]
    assert [response.status_code for response in responses] == [200, 200, 429]
    prefix, key, _ = responses[2].text.split(" ", 2)
    assert prefix == "client"
    return key


def three_gets(subject: Subject) -> object:
    return statuses(subject, 3)


def five_gets(subject: Subject) -> object:
    return statuses(subject, 5)


def rate_limit_header_names(subject: Subject) -> object:
    response = send(subject)
    return sorted(name for name, _ in response.headers if "ratelimit" in name.lower())


def three_heads(subject: Subject) -> object:
    return statuses(subject, 3, method="HEAD")


def admitted_of_ten(subject: Subject) -> object:
    return statuses(subject, 10).count(200)


def reports_until_banned(subject: Subject) -> object:
    """How many reports of 1.1.1.1 ban it, and what it then gets."""
    with subject.app.app_context():
        reports = [subject.gk.report(ip="1.1.1.1") for _ in range(3)]
    response = send(subject, {"x-my-ip": "1.1.1.1"})
    banning = reports.index(True) + 1 if True in reports else None
    return banning, response.status_code, response.headers.get("Retry-After")


def after_the_window(subject: Subject) -> object:
    """Fill the 2-per-10-s rule, move the fake clock past it: which clock did it read?"""
    assert statuses(subject, 2) == [200, 200]
    subject.env.clock.advance(10)
    return send(subject).status_code


def first_client_again(subject: Subject) -> object:
    """Fill 1.1.1.1's rule, let another client in, come back: was 1.1.1.1 forgotten?"""
    assert statuses(subject, 2, {"x-my-ip": "1.1.1.1"}) == [200, 200]
    assert send(subject, {"x-my-ip": "2.2.2.2"}).status_code == 200
    return send(subject, {"x-my-ip": "1.1.1.1"}).status_code


def allowlisted(subject: Subject) -> object:
    return statuses(subject, 3, {"x-my-ip": "1.1.1.1"})


def denylisted(subject: Subject) -> object:
    response = send(subject, {"x-my-ip": "1.1.1.1"})
    return response.status_code, response.text


def stored_key_prefixes(subject: Subject) -> object:
    """The prefixes of the keys one request leaves in Redis."""
    import redis

    assert subject.env.redis_url is not None
    with redis.Redis.from_url(subject.env.redis_url) as server:
        server.flushdb()
        assert send(subject).status_code == 200
        keys: list[bytes] = server.keys()
        return sorted({key.decode().partition("{")[0] for key in keys})


def status_and_retry_after(subject: Subject) -> object:
    response = send(subject)
    return response.status_code, response.headers.get("Retry-After")


def burst_then_half_a_window(subject: Subject) -> object:
    """Two requests, then one more half a window later: only GCRA has room by then."""
    codes = statuses(subject, 2)
    subject.env.clock.advance(5)
    return [*codes, send(subject).status_code]


def three_static_gets(subject: Subject) -> object:
    """Three GETs of a file under ``/static`` (missing: the route matches, the file not)."""
    return [
        subject.client.get("/static/missing.txt", environ_base={"REMOTE_ADDR": PEER}).status_code
        for _ in range(3)
    ]


def two_missing_pages(subject: Subject) -> object:
    """Two GETs of a URL that no route matches: 404s."""
    return [
        subject.client.get("/missing", environ_base={"REMOTE_ADDR": PEER}).status_code
        for _ in range(2)
    ]


def networks_banned_after_two_bans(subject: Subject) -> object:
    """Ban two addresses of one /24 (one report each), and list the networks banned."""
    with subject.app.app_context():
        subject.gk.report(ip="198.51.100.1")
        subject.gk.report(ip="198.51.100.2")
        return sorted(client for client in subject.gk.bans() if "/" in client)


def is_not_found(response: Response) -> bool:
    """A ``report_when`` named in app.config by its import path."""
    return response.status_code == 404


def streams_held_open(subject: Subject, advance: float = 0) -> list[int]:
    """Two requests for a streamed body, the first left open (in flight), the second
    ``advance`` seconds later: was the second refused for too many in flight?"""
    subject.app.add_url_rule("/stream", "stream", lambda: Response(iter(["streamed"])))
    get = subject.client.get
    first = get("/stream", environ_base={"REMOTE_ADDR": PEER})
    subject.env.clock.advance(advance)
    second = get("/stream", environ_base={"REMOTE_ADDR": PEER})
    second.close()
    first.close()
    return [first.status_code, second.status_code]


def stream_after_ten_seconds(subject: Subject) -> object:
    return streams_held_open(subject, 10)


def three_exempt_gets(subject: Subject) -> object:
    return statuses(subject, 3, {"x-exempt": "yes"})


def exempt_header() -> bool:
    """An ``exempt_when`` named in app.config by its import path."""
    return request.headers.get("x-exempt") == "yes"


def never() -> bool:
    return False


def user_key() -> Optional[str]:
    """A ``key_func`` named in app.config by its import path."""
    return request.headers.get("x-user")


def team_key() -> Optional[str]:
    return "team-" + request.headers.get("x-user", "")


def remembers_refusals(subject: Subject) -> bool:
    """Whether the app answers a shared storage's refusals again without asking it."""
    return subject.app.extensions["gatekeeper"].known is not None


def state_file_name(subject: Subject) -> Optional[str]:
    """The name of the file the app keeps its bans in, if any."""
    state_file = subject.app.extensions["gatekeeper"].state_file
    return None if state_file is None else str(state_file.path.name)


STATE_DIRECTORY = Path(tempfile.gettempdir())
"""Where the ``state_file`` scenario's files would go (nothing bans, so none is written)."""


@dataclass(frozen=True)
class Scenario:
    probe: Probe
    default: object
    """What the probe sees when neither app.config nor the constructor sets the option."""
    config: object
    from_config: object
    given: object
    from_given: object
    drop: tuple[str, ...] = field(default=())
    """Other keys of ``BASE_CONFIG`` left out, for options that need them unset."""
    base: dict[str, object] = field(default_factory=dict)
    """Other keys of ``BASE_CONFIG`` replaced, for options that need a special setting."""
    redis: bool = False
    """The scenario needs a Redis server."""


SCENARIOS: dict[str, Scenario] = {
    "enabled": Scenario(
        three_gets,
        default=[200, 200, 429],
        config=False,
        from_config=[200, 200, 200],
        given=True,
        from_given=[200, 200, 429],
    ),
    "ban_rule": Scenario(
        reports_until_banned,
        default=(None, 200, None),
        config={"count": 1, "window": 10, "duration": 5},
        from_config=(1, 403, "5"),
        given={"count": 2, "window": 10, "duration": 7},
        from_given=(2, 403, "7"),
    ),
    "rate_limit_rules": Scenario(
        admitted_of_ten,
        default=10,
        config=[{"count": 3, "window": 10}],
        from_config=3,
        given="5/second",
        from_given=5,
    ),
    "ip_header": Scenario(
        refused_key({"x-a": "1.1.1.1", "x-b": "2.2.2.2"}),
        default=PEER,
        config="x-a",
        from_config="1.1.1.1",
        given="X-B",
        from_given="2.2.2.2",
    ),
    "excluded_methods": Scenario(
        three_heads,
        default=[200, 200, 429],
        config=["HEAD"],
        from_config=[200, 200, 200],
        given=["GET"],
        from_given=[200, 200, 429],
    ),
    "storage": Scenario(
        after_the_window,
        default=429,  # the default storage reads the real clock
        config=Fresh(fake_clock_storage),
        from_config=200,
        given="memory://",
        from_given=429,
    ),
    "max_clients": Scenario(
        first_client_again,
        default=429,
        config=1,
        from_config=200,
        given=1000,
        from_given=429,
        drop=("GATEKEEPER_STORAGE_URI",),  # it bounds the storage built from a URI
    ),
    "trusted_proxies": Scenario(
        refused_key({"x-my-ip": "1.1.1.1, 2.2.2.2"}),
        default="2.2.2.2",
        config=2,
        from_config="1.1.1.1",
        given=0,
        from_given=PEER,
    ),
    "ipv6_prefix": Scenario(
        refused_key({"x-my-ip": "2001:db8:1:2::5"}),
        default="2001:db8:1:2::/64",
        config=128,
        from_config="2001:db8:1:2::5",
        given=48,
        from_given="2001:db8:1::/48",
    ),
    "allowlist": Scenario(
        allowlisted,
        default=[200, 200, 429],
        config=["1.1.1.0/24"],
        from_config=[200, 200, 200],
        given="2.2.2.2",
        from_given=[200, 200, 429],
    ),
    "denylist": Scenario(
        denylisted,
        default=(200, "hello"),
        config="1.1.1.1",
        from_config=(403, "ip 1.1.1.1 denied\n"),
        given=["2.2.2.2"],
        from_given=(200, "hello"),
    ),
    "key_prefix": Scenario(
        stored_key_prefixes,
        default=["gatekeeper:"],
        config="from-config:",
        from_config=["from-config:"],
        given="given:",
        from_given=["given:"],
        base={"GATEKEEPER_STORAGE_URI": Fresh(redis_storage)},
        redis=True,
    ),
    "fail_open": Scenario(
        status_and_retry_after,
        default=(200, None),
        config=False,
        from_config=(503, "1"),
        given=True,
        from_given=(200, None),
        base={"GATEKEEPER_STORAGE_URI": BrokenStorage()},
    ),
    "on_outage": Scenario(
        status_and_retry_after,
        default=(200, None),  # a storage of its own: "open" unless told
        config="closed",
        from_config=(503, "1"),
        given="local",
        from_given=(200, None),  # decided by the process's own limits
        base={"GATEKEEPER_STORAGE_URI": BrokenStorage()},
        drop=("GATEKEEPER_FAIL_OPEN",),
    ),
    "headers": Scenario(
        rate_limit_header_names,
        default=[],
        config="legacy",
        from_config=["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"],
        given=True,
        from_given=["RateLimit", "RateLimit-Policy"],
    ),
    "dry_run": Scenario(
        three_gets,
        default=[200, 200, 429],
        config=True,
        from_config=[200, 200, 200],
        given=False,
        from_given=[200, 200, 429],
    ),
    "strategy": Scenario(
        burst_then_half_a_window,
        default=[200, 200, 429],
        config="gcra",
        from_config=[200, 200, 200],
        given="sliding-log",
        from_given=[200, 200, 429],
    ),
    "report_rate_limited": Scenario(
        five_gets,
        default=[200, 200, 429, 429, 429],
        config=True,
        from_config=[200, 200, 429, 429, 403],  # two refusals: two reports, banned
        given=False,
        from_given=[200, 200, 429, 429, 429],
        base={"GATEKEEPER_BAN_RULE": {"count": 2, "window": 10, "duration": 100}},
    ),
    "report_when": Scenario(
        two_missing_pages,
        default=[404, 404],
        config=f"{__name__}:is_not_found",
        from_config=[404, 403],  # the first 404 reported: banned
        given=lambda response: False,
        from_given=[404, 404],
        base={"GATEKEEPER_BAN_RULE": {"count": 1, "window": 10, "duration": 100}},
    ),
    "subnet_ban_rule": Scenario(
        networks_banned_after_two_bans,
        default=[],
        config={"count": 2, "window": 60, "duration": 600},
        from_config=["198.51.100.0/24"],
        given={"count": 3, "window": 60, "duration": 600},
        from_given=[],
        base={"GATEKEEPER_BAN_RULE": {"count": 1, "window": 10, "duration": 100}},
    ),
    "exempt_static": Scenario(
        three_static_gets,
        default=[404, 404, 404],
        config=False,
        from_config=[404, 404, 429],
        given=True,
        from_given=[404, 404, 404],
    ),
    "exempt_when": Scenario(
        three_exempt_gets,
        default=[200, 200, 429],
        config=f"{__name__}:exempt_header",
        from_config=[200, 200, 200],
        given=never,
        from_given=[200, 200, 429],
    ),
    "concurrency": Scenario(
        streams_held_open,
        default=[200, 200],
        config=1,
        from_config=[200, 429],
        given=2,
        from_given=[200, 200],
    ),
    "concurrency_lease": Scenario(
        stream_after_ten_seconds,
        default=[200, 429],  # 300 s
        config=5,
        from_config=[200, 200],
        given=20,
        from_given=[200, 429],
        base={"GATEKEEPER_CONCURRENCY": 1},
    ),
    "state_file": Scenario(
        state_file_name,
        default=None,
        config=str(STATE_DIRECTORY / "gatekeeper-config.json"),
        from_config="gatekeeper-config.json",
        given=STATE_DIRECTORY / "gatekeeper-given.json",
        from_given="gatekeeper-given.json",
    ),
    "cache_refusals": Scenario(
        remembers_refusals,
        default=True,
        config=False,
        from_config=False,
        given=True,
        from_given=True,
        base={"GATEKEEPER_STORAGE_URI": Fresh(redis_storage)},
        redis=True,
    ),
    "hash_keys": Scenario(
        refused_client,
        default="alice",
        config="a key from the config",
        from_config=KeyHasher(b"a key from the config")("alice"),
        given=b"a key from the constructor",
        from_given=KeyHasher(b"a key from the constructor")("alice"),
        base={"GATEKEEPER_KEY_FUNC": f"{__name__}:user_key"},
    ),
    "key_func": Scenario(
        refused_key({"x-user": "alice"}),
        default=PEER,
        config=f"{__name__}:user_key",
        from_config="alice",
        given=team_key,
        from_given="team-alice",
    ),
}
SCENARIOS["default_rules"] = replace(
    SCENARIOS["rate_limit_rules"], drop=("GATEKEEPER_RATE_LIMIT_RULES",)
)
"""On a single route, the default rules limit as the app-wide rules would."""


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A throw-away ``redis-server``, reached only through a Unix socket."""
    from support.redis_server import running

    with running(unix_socket=True, tcp=False) as server:
        yield server.unix_url


def make_env(option: str, request: pytest.FixtureRequest, clock: FakeClock) -> Env:
    """The test's clock, and a Redis server only for the scenarios that need one."""
    redis = SCENARIOS[option].redis
    return Env(clock, request.getfixturevalue("redis_url") if redis else None)


def build(
    make_app: AppFactory,
    scenario: Scenario,
    option: str,
    env: Env,
    config: dict[str, object],
    **given: Any,
) -> Subject:
    def value(item: object) -> object:
        return item.make(env) if isinstance(item, Fresh) else item

    base = {**BASE_CONFIG, **scenario.base}
    skipped = {CONFIG_KEYS[option], *scenario.drop}
    app_config = {key: value(item) for key, item in base.items() if key not in skipped}
    app_config.update({key: value(item) for key, item in config.items()})
    options: dict[str, Any] = {name: value(item) for name, item in given.items()}
    app, gk = make_app(config=app_config, base={"storage": None}, routes=(index,), **options)
    return Subject(app, gk, app.test_client(), env)


OPTIONS = sorted(CONFIG_KEYS)


@pytest.mark.parametrize("option", OPTIONS)
def test_default(
    make_app: AppFactory, option: str, request: pytest.FixtureRequest, clock: FakeClock
) -> None:
    scenario = SCENARIOS[option]
    env = make_env(option, request, clock)
    assert scenario.probe(build(make_app, scenario, option, env, {})) == scenario.default


@pytest.mark.parametrize("option", OPTIONS)
def test_from_app_config(
    make_app: AppFactory, option: str, request: pytest.FixtureRequest, clock: FakeClock
) -> None:
    scenario = SCENARIOS[option]
    env = make_env(option, request, clock)
    subject = build(make_app, scenario, option, env, {CONFIG_KEYS[option]: scenario.config})
    assert scenario.from_config != scenario.default  # the key has an effect
    assert scenario.probe(subject) == scenario.from_config


@pytest.mark.parametrize("option", OPTIONS)
def test_constructor_wins_over_app_config(
    make_app: AppFactory, option: str, request: pytest.FixtureRequest, clock: FakeClock
) -> None:
    scenario = SCENARIOS[option]
    env = make_env(option, request, clock)
    config = {CONFIG_KEYS[option]: scenario.config}
    subject = build(make_app, scenario, option, env, config, **{option: scenario.given})
    assert scenario.from_given != scenario.from_config  # the constructor value has an effect
    assert scenario.probe(subject) == scenario.from_given


def test_config_is_read_at_init_app_once(clock: FakeClock) -> None:
    gk = GateKeeper(storage=MemoryStorage(clock=clock))
    app = Flask(__name__)
    app.add_url_rule("/", "index", lambda: "hello")
    app.config["GATEKEEPER_RATE_LIMIT_RULES"] = "1/minute"  # set after the constructor
    gk.init_app(app)
    app.config["GATEKEEPER_RATE_LIMIT_RULES"] = "100/minute"  # too late: read once
    client = app.test_client()
    assert [client.get("/").status_code for _ in range(2)] == [200, 429]


def test_config_key_set_to_none_means_unset(make_app: AppFactory) -> None:
    config = {"GATEKEEPER_RATE_LIMIT_RULES": None, "GATEKEEPER_ENABLED": None}
    app, _ = make_app(config=config, base={}, routes=(index,))
    client = app.test_client()
    assert [client.get("/").status_code for _ in range(30)] == [200] * 30


# --- Bad values ------------------------------------------------------------------------


def bad(option: str, value: object, error: type[Exception], shown: str, what: str) -> Any:
    """A row: ``option`` set to ``value`` fails with ``error``, whose message shows ``shown``."""
    return pytest.param(option, value, error, shown, id=f"{option}: {what}")


BAD_VALUES = [
    bad("enabled", "yes", ConfigTypeError, "'yes'", "text"),
    bad("enabled", 1, ConfigTypeError, "1", "int"),
    bad("ban_rule", {"count": 3, "window": 10}, ConfigError, "'duration'", "missing key"),
    bad(
        "ban_rule", {"count": 0, "window": 10, "duration": 600}, ConfigError, "got 0", "zero count"
    ),
    bad(
        "ban_rule",
        {"count": 3, "window": 10, "duration": "600"},
        ConfigTypeError,
        "'600'",
        "text duration",
    ),
    bad("ban_rule", [3, 10, 600], ConfigTypeError, "[3, 10, 600]", "0.x list form"),
    bad("rate_limit_rules", [], ConfigError, "empty", "empty list"),
    bad("rate_limit_rules", 20, ConfigTypeError, "20", "int"),
    bad("rate_limit_rules", [{"count": 20}], ConfigError, "'window'", "missing key"),
    bad(
        "rate_limit_rules",
        [{"count": 20, "window": 1, "burst": 5}],
        ConfigError,
        "'burst'",
        "unknown key",
    ),
    bad("rate_limit_rules", [{"count": -1, "window": 1}], ConfigError, "-1", "negative count"),
    bad(
        "rate_limit_rules",
        [{"count": 20, "window": float("nan")}],
        ConfigError,
        "nan",
        "nan window",
    ),
    bad("rate_limit_rules", [{"count": True, "window": 1}], ConfigTypeError, "True", "bool count"),
    bad("rate_limit_rules", [{"count": 1, "window": 1}, 7], ConfigTypeError, "7", "second item"),
    bad("rate_limit_rules", "20 per fortnight", ConfigError, "'20 per fortnight'", "bad string"),
    bad("ip_header", 5, ConfigTypeError, "5", "int"),
    bad("ip_header", "x my ip", ConfigError, "'x my ip'", "spaces"),
    bad("ip_header", "", ConfigError, "''", "empty"),
    bad("excluded_methods", 5, ConfigTypeError, "5", "int"),
    bad("excluded_methods", ["HE AD"], ConfigError, "'HE AD'", "bad method"),
    bad(
        "storage", "memcached://localhost", ConfigError, "'memcached://localhost'", "unknown scheme"
    ),
    bad("storage", 5, ConfigTypeError, "5", "int"),
    bad("max_clients", 0, ConfigError, "0", "zero"),
    bad("max_clients", "10", ConfigTypeError, "'10'", "text"),
    bad("max_clients", True, ConfigTypeError, "True", "bool"),
    bad("trusted_proxies", -1, ConfigError, "-1", "negative"),
    bad("trusted_proxies", ["not-a-net"], ConfigError, "'not-a-net'", "garbage"),
    bad("trusted_proxies", 1.5, ConfigTypeError, "1.5", "float"),
    bad("ipv6_prefix", 129, ConfigError, "129", "too long"),
    bad("ipv6_prefix", "64", ConfigTypeError, "'64'", "text"),
    bad("allowlist", ["10.0.0.0/33"], ConfigError, "'10.0.0.0/33'", "bad cidr"),
    bad("denylist", [5], ConfigTypeError, "5", "int item"),
    bad("key_func", "no_such_module:key", ConfigError, "'no_such_module:key'", "not importable"),
    bad("key_func", 5, ConfigTypeError, "5", "not callable"),
    bad("key_prefix", "{x}", ConfigError, "'{x}'", "braces"),
    bad("key_prefix", 5, ConfigTypeError, "5", "int"),
    bad("fail_open", 0, ConfigTypeError, "0", "int"),
    bad("headers", "yes", ConfigError, "'yes'", "unknown mode"),
    bad("headers", 5, ConfigTypeError, "5", "int"),
    bad("dry_run", "no", ConfigTypeError, "'no'", "text"),
    bad("report_rate_limited", "yes", ConfigTypeError, "'yes'", "text"),
    bad("strategy", "token-bucket", ConfigError, "'token-bucket'", "unknown"),
    bad("strategy", 3, ConfigError, "3", "not text"),
]


@pytest.mark.parametrize(("option", "value", "error", "shown"), BAD_VALUES)
def test_bad_app_config_fails_at_init_app_naming_key_and_value(
    option: str, value: object, error: type[Exception], shown: str
) -> None:
    app = Flask(__name__)
    app.config[CONFIG_KEYS[option]] = value
    gk = GateKeeper()
    with pytest.raises(error) as raised:
        gk.init_app(app)
    message = str(raised.value)
    assert message.startswith(CONFIG_KEYS[option])
    assert shown in message
    assert "gatekeeper" not in app.extensions


@pytest.mark.parametrize(("option", "value", "error", "shown"), BAD_VALUES)
def test_bad_option_fails_at_init_app_naming_option_and_value(
    option: str, value: object, error: type[Exception], shown: str
) -> None:
    app = Flask(__name__)
    options: dict[str, Any] = {option: value}
    gk = GateKeeper(**options)  # nothing is checked before there is an app
    with pytest.raises(error) as raised:
        gk.init_app(app)
    message = str(raised.value)
    assert message.startswith(f"{option}")
    assert not message.startswith("GATEKEEPER_")
    assert shown in message
    assert "gatekeeper" not in app.extensions


@pytest.mark.parametrize(
    ("config", "given", "name"),
    [
        pytest.param(
            {"GATEKEEPER_REPORT_RATE_LIMITED": True},
            {},
            "GATEKEEPER_REPORT_RATE_LIMITED",
            id="app.config",
        ),
        pytest.param({}, {"report_rate_limited": True}, "report_rate_limited", id="constructor"),
    ],
)
def test_report_rate_limited_needs_a_ban_rule(
    config: dict[str, object], given: dict[str, Any], name: str
) -> None:
    app = Flask(__name__)
    app.config.update(config)
    with pytest.raises(ConfigError, match=r"ban.rule") as raised:
        GateKeeper(app, **given)
    assert str(raised.value).startswith(f"{name}:")


def test_max_clients_does_not_apply_to_a_storage_object() -> None:
    app = Flask(__name__)
    with pytest.raises(ConfigError, match="max_clients") as raised:
        GateKeeper(app, storage=MemoryStorage(), max_clients=10)
    assert str(raised.value).startswith("storage:")
    app.config["GATEKEEPER_STORAGE_URI"] = MemoryStorage()
    with pytest.raises(ConfigError, match="max_clients") as raised:
        GateKeeper(app, max_clients=10)
    assert str(raised.value).startswith("GATEKEEPER_STORAGE_URI:")


def test_config_errors_are_value_and_type_errors() -> None:
    """Code written against plain Python errors still catches them."""
    app = Flask(__name__)
    app.config["GATEKEEPER_MAX_CLIENTS"] = 0
    with pytest.raises(ValueError, match="GATEKEEPER_MAX_CLIENTS"):
        GateKeeper(app)
    app.config["GATEKEEPER_MAX_CLIENTS"] = "0"
    with pytest.raises(TypeError, match="GATEKEEPER_MAX_CLIENTS"):
        GateKeeper(app)


# --- GateKeeper.specific ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "shown"),
    [
        pytest.param(
            {"rate_limit_rules": [{"count": 0, "window": 1}]},
            ConfigError,
            "rate_limit_rules[0]",
            id="zero count",
        ),
        pytest.param(
            {"rate_limit_rules": "20 per fortnight"},
            ConfigError,
            "'20 per fortnight'",
            id="bad string",
        ),
        pytest.param({"rate_limit_rules": []}, ConfigError, "rate_limit_rules", id="empty list"),
        pytest.param({"rate_limit_rules": 5}, ConfigTypeError, "5", id="int"),
        pytest.param({}, ConfigTypeError, "None", id="no rules and not standalone"),
        pytest.param(
            {"rate_limit_rules": "1/second", "standalone": "yes"},
            TypeError,
            "standalone",
            id="standalone: text",
        ),
        pytest.param(
            {"rate_limit_rules": "1/second", "key_func": 5},
            TypeError,
            "key_func",
            id="key_func: int",
        ),
    ],
)
def test_specific_with_bad_rules_fails_at_decoration_time(
    options: dict[str, Any], error: type[Exception], shown: str
) -> None:
    gk = GateKeeper()  # no app yet: the decorator itself checks its arguments
    with pytest.raises(error) as raised:
        gk.specific(**options)
    assert shown in str(raised.value)


def test_specific_standalone_without_rules_exempts_from_global_rules(
    app: Flask, gk: GateKeeper, client: FlaskClient
) -> None:
    @app.route("/exempt")
    @gk.specific(standalone=True)
    def exempt() -> str:
        return "exempt"

    headers = {"x-my-ip": "10.0.0.1"}
    assert [client.get("/exempt", headers=headers).status_code for _ in range(30)] == [200] * 30
    assert [client.get("/", headers=headers).status_code for _ in range(21)] == [200] * 20 + [429]
    with app.app_context():
        assert [gk.report(ip="10.0.0.1") for _ in range(3)] == [False, False, True]
    assert client.get("/exempt", headers=headers).status_code == 403  # bans still apply


def test_a_misspelt_key_fails_at_start_up_with_a_suggestion() -> None:
    app = Flask(__name__)
    app.config["GATEKEEPER_RATE_LIMITS"] = "20/second"
    with pytest.raises(
        ConfigError, match=r"GATEKEEPER_RATE_LIMITS: unknown .* GATEKEEPER_RATE_LIMIT_RULES"
    ):
        GateKeeper(app)
    assert "gatekeeper" not in app.extensions


def test_max_clients_with_redis_is_an_error() -> None:
    with pytest.raises(ConfigError, match="storage: max_clients bounds the memory storage"):
        GateKeeper(Flask(__name__), storage="redis://127.0.0.1:1/0", max_clients=10)
