"""``hash_keys``: keys that are secrets never appear in clear (docs/proxies.md, "Keys that
are secrets"). Every ``key_func`` key and rule key is stored and shown as ``k:`` and 32 hex
digits of its HMAC-SHA256; addresses stay in clear; manual controls and the CLI take the
clear key or the hashed form.

Every test that counts runs on both storages (the ``make`` and ``storage`` fixtures); the
Redis runs read the server itself (SCAN and every value) for the clear key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from pathlib import Path
from typing import Any, Optional

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from flask_gatekeeper import ConfigError, ConfigTypeError, GateKeeper, MemoryStorage, Rule
from flask_gatekeeper.cli import gatekeeper
from flask_gatekeeper.identity.keys import KeyHasher
from flask_gatekeeper.storage import Storage
from flask_gatekeeper.storage.redis import RedisStorage
from flask_gatekeeper.testing import FakeClock, FlakyStorage
from support import IP, OTHER_IP, AppFactory, gatekeeper_logs, recording

SECRET = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
"""A client's API key: the text that must appear nowhere."""
OTHER_SECRET = "sk_live_other_0000000000000000"
SECRET_KEY = "the app's SECRET_KEY, long and random"
BAN_RULE = {"count": 2, "window": 60, "duration": 600}


def expected_hash(text: str, secret: bytes = SECRET_KEY.encode()) -> str:
    """The documented hash, computed apart from the library: HMAC-SHA256 under a key
    derived from the secret, its first 32 hex digits. A change here would make every
    deployed key a new client: this pins it."""
    derived = hmac.new(secret, b"flask-gatekeeper hash_keys", hashlib.sha256).digest()
    return "k:" + hmac.new(derived, text.encode(), hashlib.sha256).hexdigest()[:32]


HASHED = expected_hash(SECRET)


def api_key() -> Optional[str]:
    return request.headers.get("X-Api-Key")


def build(make: AppFactory, **options: Any) -> tuple[Flask, GateKeeper]:
    """An app keyed by the API key, hashed under ``SECRET_KEY``: ``/`` with the global rule
    (2 a minute), ``/report`` reporting its client, ``/login`` with a rule of its own
    keyed by the form's ``token`` (1 an hour)."""
    settings: dict[str, Any] = {
        "rate_limit_rules": "2/minute",
        "ban_rule": BAN_RULE,
        "key_func": api_key,
        "hash_keys": True,
        **options,
    }
    app, gk = make(config={"SECRET_KEY": SECRET_KEY}, **settings)
    app.add_url_rule("/", "index", lambda: "hello")

    @app.route("/report")
    def report() -> str:
        gk.report()
        return "reported"

    @app.post("/login")
    @gk.specific([Rule(1, 3600, key="form[token]")], standalone=True)
    def login() -> str:
        return "tried"

    return app, gk


def get(
    client: FlaskClient, path: str = "/", key: Optional[str] = SECRET, ip: str = IP
) -> TestResponse:
    headers = {} if key is None else {"X-Api-Key": key}
    return client.get(path, headers=headers, environ_base={"REMOTE_ADDR": ip})


def login(client: FlaskClient, token: str = SECRET, ip: str = IP) -> TestResponse:
    """A login with ``token`` in the form, from a client with another API key."""
    return client.post(
        "/login",
        data={"token": token},
        headers={"X-Api-Key": OTHER_SECRET},
        environ_base={"REMOTE_ADDR": ip},
    )


def stored_text(storage: Storage) -> str:
    """Every key name and every value a Redis storage holds, as text (SCAN, then each key
    by its type); for the memory storage, its state's ``repr``."""
    if not isinstance(storage, RedisStorage):
        return repr(vars(storage))
    redis = storage.client
    parts = []
    for name in redis.scan_iter(count=1000):
        parts.append(name.decode())
        kind = redis.type(name)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "string":
            parts.append(repr(redis.get(name)))
        elif kind == "hash":
            parts.append(repr(redis.hgetall(name)))
        elif kind == "zset":
            parts.append(repr(redis.zrange(name, 0, -1, withscores=True)))
        elif kind == "set":
            parts.append(repr(redis.smembers(name)))
        elif kind == "list":
            parts.append(repr(redis.lrange(name, 0, -1)))
        else:
            parts.append(repr(redis.dump(name)))
    return "\n".join(parts)


def test_the_hash_is_the_documented_one() -> None:
    hasher = KeyHasher(SECRET_KEY.encode())
    assert hasher(SECRET) == HASHED
    assert re.fullmatch("k:[0-9a-f]{32}", HASHED)
    assert re.fullmatch("k:[0-9a-f]{32}", hasher("x" * 1000))  # a long key too: no sha256:
    assert SECRET_KEY not in repr(hasher)


def test_no_clear_key_anywhere(
    make: AppFactory, storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="flask_gatekeeper")
    app, gk = build(make, report_rate_limited=True)
    client = app.test_client()
    with recording(app) as events:
        responses = [login(client) for _ in range(2)]  # the token's own rule: 1 an hour
        responses += [get(client) for _ in range(4)]  # 2 admitted, 2 refused: 2 reports
        responses.append(get(client))  # banned
    codes = [response.status_code for response in responses]
    assert codes == [200, 429, 200, 200, 429, 429, 403]
    with app.app_context():
        bans = gk.bans()
        details = gk.bans(detail=True)
        usage = gk.usage(SECRET)
    assert list(bans) == [HASHED]
    assert list(details) == [HASHED]
    assert responses[1].text.startswith(f"client {expected_hash(OTHER_SECRET)} rate limited")
    assert responses[4].text.startswith(f"client {HASHED} rate limited")
    assert responses[6].text.startswith(f"client {HASHED} banned")
    names = {name for name, _ in events}
    assert {"client_reported", "client_banned", "request_rate_limited", "request_banned"} <= names
    assert {args["client"] for _, args in events} == {HASHED, expected_hash(OTHER_SECRET)}
    shown = [
        *(response.get_data(as_text=True) for response in responses),
        *(str(response.headers) for response in responses),
        repr(events),
        repr(bans),
        repr(details),
        repr(usage),
        caplog.text,
        repr(gatekeeper_logs(caplog)),
        stored_text(storage),
    ]
    assert not [text for text in shown if SECRET in text or OTHER_SECRET in text]
    assert HASHED in stored_text(storage)


def test_a_rule_key_is_hashed_and_named_by_its_clear_text(
    make: AppFactory, storage: Storage
) -> None:
    app, gk = build(make)
    client = app.test_client()
    assert login(client).status_code == 200
    refused = login(client)
    assert refused.status_code == 429
    assert "per form[token]" in refused.text  # the token's rule, named by the client's key
    assert SECRET not in stored_text(storage)
    with app.app_context():
        gk.reset(SECRET, endpoint="login")  # the token's clear text names its counts
    assert login(client).status_code == 200
    with app.app_context():
        gk.reset(HASHED, endpoint="login")  # and so does its hash
    assert login(client).status_code == 200
    with app.app_context():
        gk.ban(HASHED, 60)  # the rule's key: its ban refuses the request from anywhere
    banned = login(client, ip=OTHER_IP)
    assert banned.status_code == 403
    assert banned.text.startswith(f"client {HASHED} banned")


@pytest.mark.parametrize("named_as", [SECRET, HASHED], ids=["clear", "hashed"])
def test_manual_controls_take_the_clear_key_or_its_hash(make: AppFactory, named_as: str) -> None:
    app, gk = build(make)
    client = app.test_client()
    assert [get(client).status_code for _ in range(3)] == [200, 200, 429]
    with app.app_context():
        (usage,) = gk.usage(named_as)
        assert usage.remaining == 0
        gk.reset(named_as)
        assert gk.usage(SECRET)[0].remaining == 2
        gk.ban(named_as, 60)
        assert list(gk.bans()) == [HASHED]
        assert gk.banned_for(SECRET) == gk.banned_for(HASHED) == 60
    assert get(client).status_code == 403
    assert get(client, key=OTHER_SECRET).status_code == 200  # another key is another client
    with app.app_context():
        assert gk.unban(named_as)
        assert not gk.report(ip=named_as)
        assert gk.report(ip=named_as)  # the second report bans (BAN_RULE), under the hash
        assert list(gk.bans()) == [HASHED]


def test_key_names_a_key_by_its_text_and_the_hashed_shape_is_exact(make: AppFactory) -> None:
    app, gk = build(make)
    hash_shaped = "k:" + "0" * 32
    with app.app_context():
        gk.ban(f"key:{SECRET}", 60)  # key: always means the key of this text
        gk.ban(f"key:{hash_shaped}", 60)  # an API key that looks hashed
        gk.ban("K:" + "0" * 32, 60)  # not the shape: clear text
        gk.ban(hash_shaped[:-1], 60)
        gk.ban("key:203.0.113.9", 60)  # a user named like an address
        gk.ban("203.0.113.9", 60)  # the address itself, in clear
        assert sorted(gk.bans()) == sorted(
            [
                HASHED,
                expected_hash(hash_shaped),
                expected_hash("K:" + "0" * 32),
                expected_hash(hash_shaped[:-1]),
                expected_hash("203.0.113.9"),
                "203.0.113.9",
            ]
        )
        with pytest.raises(ConfigError, match="written as an IP address"):
            gk.ban("300.1.1.1", 60)  # a slip is still an error, not a hashed key


def test_addresses_stay_in_clear_and_their_bans_apply_behind_a_key(make: AppFactory) -> None:
    app, gk = build(make)
    client = app.test_client()
    with app.app_context():
        gk.ban(IP, 60)
        assert list(gk.bans()) == [IP]
    refused = get(client)
    assert refused.status_code == 403
    assert refused.text.startswith(f"ip {IP} banned")  # the address behind the key
    assert get(client, ip=OTHER_IP).status_code == 200


def test_a_key_func_falling_back_to_the_address_keys_by_it(make: AppFactory) -> None:
    def account_or_address() -> Optional[str]:
        return api_key() or gk.client_ip()

    app, gk = build(make, key_func=account_or_address)
    client = app.test_client()
    assert [get(client, key=None).status_code for _ in range(3)] == [200, 200, 429]
    assert get(client, key=None).text.startswith(f"ip {IP} rate limited")
    assert get(client).status_code == 200  # the API key counts apart, hashed


def test_gk_limit_counts_the_clear_key_as_its_hash(make: AppFactory) -> None:
    app, gk = build(make)

    @app.route("/export")
    def export() -> str:
        with gk.limit("1/hour", scope="export", key=request.args["token"]):
            return "exported"

    client = app.test_client()
    assert client.get("/export", query_string={"token": SECRET}).status_code == 200
    refused = client.get("/export", query_string={"token": SECRET})
    assert refused.status_code == 429
    assert refused.text.startswith(f"client {HASHED} rate limited")
    with app.app_context():
        gk.reset(SECRET, scope="export")
    assert client.get("/export", query_string={"token": HASHED}).status_code == 200


def test_two_apps_with_one_secret_agree(
    make_app: AppFactory, storage: Storage, clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    """Two apps (two processes, two hosts) on one storage: what one bans, the other
    refuses; an app with another secret keys the same API key apart."""
    second_storage = storage
    if isinstance(storage, RedisStorage):  # a connection of its own, as another host has
        from redis import Redis

        second_storage = RedisStorage(
            Redis.from_url(request.getfixturevalue("redis_url")), clock=clock
        )

    def app_with(secret: str, storage: Storage) -> tuple[Flask, GateKeeper]:
        return make_app(
            config={"SECRET_KEY": secret},
            base={},
            routes=(),
            storage=storage,
            key_func=api_key,
            hash_keys=True,
            rate_limit_rules="2/minute",
        )

    first, first_gk = app_with(SECRET_KEY, storage)
    second, _ = app_with(SECRET_KEY, second_storage)
    other, other_gk = app_with("another SECRET_KEY, as long", storage)
    for app in (first, second, other):
        app.add_url_rule("/", "index", lambda: "hello")
    with first.app_context():
        first_gk.ban(SECRET, 60)
    assert get(second.test_client()).status_code == 403
    with other.app_context():
        assert other_gk.banned_for(SECRET) == 0
    assert get(other.test_client()).status_code == 200


# --- start-up -----------------------------------------------------------------------------


def test_true_without_a_secret_key_fails_at_start_up_naming_the_option() -> None:
    with pytest.raises(
        ConfigError, match=r"^hash_keys: True hashes keys with the app's SECRET_KEY"
    ):
        GateKeeper(Flask(__name__), hash_keys=True)
    app = Flask(__name__)
    app.config.update(GATEKEEPER_HASH_KEYS=True, SECRET_KEY="")
    with pytest.raises(ConfigError, match=r"^GATEKEEPER_HASH_KEYS: True hashes keys"):
        GateKeeper(app)


OWN_KEY_TOO_SHORT = "GATEKEEPER_HASH_KEYS: a key of its own must be at least 16 bytes, got"


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (
            "true",
            ConfigError,
            f"{OWN_KEY_TOO_SHORT} 4 (true or false from the environment? "
            "app.config.from_prefixed_env() reads them as JSON)",
        ),
        (b"a short secret", ConfigError, f"{OWN_KEY_TOO_SHORT} 14"),
        (
            1,
            ConfigTypeError,
            "GATEKEEPER_HASH_KEYS: expected True, False or a key (bytes or text), got int",
        ),
    ],
    ids=["environment", "short", "type"],
)
def test_a_key_of_its_own_is_checked_and_never_shown(
    value: object, error: type[Exception], message: str
) -> None:
    app = Flask(__name__)
    app.config["GATEKEEPER_HASH_KEYS"] = value
    with pytest.raises(error) as raised:
        GateKeeper(app)
    assert str(raised.value) == message


def test_a_key_of_its_own_needs_no_secret_key_and_is_not_shown_by_config() -> None:
    app = Flask(__name__)
    own = "a key of this app's own, 16+ bytes"
    GateKeeper(app, key_func=api_key, hash_keys=own, storage=MemoryStorage())
    app.add_url_rule("/", "index", lambda: "hello")
    result = app.test_cli_runner().invoke(gatekeeper, ["config"])
    assert own not in result.stdout
    assert "GATEKEEPER_HASH_KEYS = <a key of its own>  (GateKeeper(hash_keys=...))" in (
        result.stdout.splitlines()
    )
    with app.app_context():
        app.extensions["gatekeeper"].owner.ban(SECRET, 60)
        assert list(app.extensions["gatekeeper"].owner.bans()) == [
            expected_hash(SECRET, own.encode())
        ]


# --- the CLI --------------------------------------------------------------------------------


@pytest.fixture
def shared(storage: Storage, clock: FakeClock) -> Storage:
    """The storage as the CLI sees it: Redis, or a memory storage it treats as shared."""
    return FlakyStorage(clock=clock) if isinstance(storage, MemoryStorage) else storage


def test_the_cli_takes_the_clear_key_and_shows_its_hash(make: AppFactory, shared: Storage) -> None:
    app, _ = build(make, storage=shared)
    runner = app.test_cli_runner()

    def run(*args: str) -> str:
        result = runner.invoke(gatekeeper, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    outputs = [run("ban", SECRET, "--duration", "60")]
    assert outputs[0] == f"banned {HASHED} for 60s\n"
    outputs.append(run("bans"))
    assert outputs[1].startswith(f"{HASHED}\t60s left\tmanual")
    outputs.append(run("status", SECRET))
    assert f"{HASHED}: banned for 60s" in outputs[2]
    outputs.append(run("unban", HASHED))
    assert outputs[3] == f"unbanned {HASHED}\n"
    assert get(app.test_client()).status_code == 200
    outputs.append(run("reset", SECRET))
    assert outputs[4] == f"reset {HASHED}\n"
    outputs.append(run("status", HASHED))
    assert f"{HASHED}: 2 left of 2 requests in a 60s window" in outputs[5]
    outputs.append(run("config"))
    assert not [output for output in outputs if SECRET in output or SECRET_KEY in output]


def test_a_dry_run_logs_the_hash(make: AppFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="flask_gatekeeper")
    app, _ = build(make, dry_run=True)
    client = app.test_client()
    assert [get(client).status_code for _ in range(3)] == [200, 200, 200]
    assert f"dry run, would refuse GET /: client {HASHED} rate limited" in caplog.text
    assert SECRET not in caplog.text


def test_the_state_file_keeps_the_hash(make_app: AppFactory, tmp_path: Path) -> None:
    path = tmp_path / "bans.json"
    app, gk = make_app(
        config={"SECRET_KEY": SECRET_KEY},
        base={},
        routes=(),
        key_func=api_key,
        hash_keys=True,
        state_file=path,
        ban_rule=BAN_RULE,
    )
    with app.app_context():
        gk.ban(SECRET, 60)
    assert app.extensions["gatekeeper"].state_file.save()
    text = path.read_text(encoding="utf-8")
    assert HASHED in text
    assert SECRET not in text
