"""The Lua scripts, read from ``lua/`` after a preamble of the constants they share with
Python, and how they are called.

A call is EVALSHA; when the server does not have the script (after ``SCRIPT FLUSH``, or a
failover to a replica that never loaded it) the same call is sent once with EVAL, which runs
the script and caches it. A plain ``redis.Redis`` client's scripts go through a connection
of its pool directly (``Pooled``); Redis Cluster and other clients go through their
``evalsha``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Sequence
from importlib import resources
from typing import Any, Optional

import redis
from redis.exceptions import NoScriptError

from ...decision import BAN_REASONS, BY_NO_BAN_RULE
from ...strategies import STRATEGY_CODES
from ...units import lua_constants
from .client import RedisClient
from .encoding import Argument

__all__ = [
    "BAN",
    "ESCALATE",
    "HIT",
    "NETWORKS",
    "REFUND",
    "RELEASE",
    "REPORT",
    "SCRIPTS",
    "USAGE",
    "Pooled",
    "Script",
    "pooled",
]

GARBAGE_DELAY_MS = 1000
"""How long after its data stops mattering a key expires (expiry only collects garbage)."""


def _lua_string(text: str) -> str:
    """A Lua string literal of plain text (the reasons and names below are ASCII)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _preamble() -> str:
    """The constants and strings the scripts share with Python, written from Python's
    own values: the units, the strategy codes, the ban reasons (``REASON_RATE_LIMIT``...)
    and which of them the ban rule did not make (``BY_NO_BAN_RULE``, a set)."""
    codes = "".join(
        f"local {name.upper().replace('-', '_')} = {code}\n"
        for name, code in STRATEGY_CODES.items()
    )
    reasons = "".join(
        f"local REASON_{reason.upper()} = {_lua_string(reason)}\n" for reason in BAN_REASONS
    )
    by_hand = ", ".join(f"[{_lua_string(reason)}] = true" for reason in BY_NO_BAN_RULE)
    return (
        f"{lua_constants()}local GARBAGE_DELAY_MS = {GARBAGE_DELAY_MS}\n{codes}{reasons}"
        f"local BY_NO_BAN_RULE = {{{by_hand}}}\n"
    )


def _bulk(data: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%b\r\n" % (len(data), data)


class Script:
    """One Lua script made of the named files, after the preamble and ``common.lua``."""

    def __init__(self, *names: str) -> None:
        folder = resources.files(__package__).joinpath("lua")
        parts = [folder.joinpath(name).read_text(encoding="utf-8") for name in names]
        self.source = _preamble() + "\n".join(parts)
        self.sha = hashlib.sha1(self.source.encode("utf-8")).hexdigest()
        self.by_digest = _bulk(b"EVALSHA") + _bulk(self.sha.encode())
        """The start of the script's EVALSHA in RESP (after the array's length)."""
        self.by_source = _bulk(b"EVAL") + _bulk(self.source.encode("utf-8"))

    def __call__(self, client: RedisClient, keys: list[str], args: Sequence[Argument]) -> Any:
        """Run by its digest; a server without it gets the source once (EVAL runs it and
        caches it), so a flush or a failover costs one larger call, never an outage."""
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return client.eval(self.source, len(keys), *keys, *args)


_KNOWN_WORDS = 4096
"""How many distinct argument values a ``Pooled`` keeps encoded: rules' numbers come
first and stay; per-client values (a strategy's offset, an injected clock's reading) only
fill what is left, then are encoded afresh each time."""


def _checkout(pool: redis.ConnectionPool) -> Any:
    """``pool.get_connection`` ready to call: without arguments where redis-py deprecates
    them (5.3 and later), with a command name where it requires one (4.6 to 5.2)."""
    parameter = inspect.signature(pool.get_connection).parameters.get("command_name")
    if parameter is not None and parameter.default is inspect.Parameter.empty:
        return functools.partial(pool.get_connection, "EVALSHA")
    return pool.get_connection


class Pooled:
    """Scripts run on a connection of a plain ``redis.Redis`` client's pool: what the
    client's ``evalsha`` does (the pool's connection, the connection's ``Retry``, NOSCRIPT
    answered with EVAL), without its per-command work (command-name lookups, hooks,
    metrics, its argument encoder): the arguments are written in RESP here, each distinct
    value encoded once (by the pool's own encoder) and kept."""

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self.pool = pool
        self.checkout = _checkout(pool)
        self.encoder: Any = pool.get_encoder()
        self.known: dict[Argument, bytes] = {}

    def _learn(self, word: Argument) -> bytes:
        encoded = _bulk(bytes(self.encoder.encode(word)))
        if len(self.known) < _KNOWN_WORDS:
            self.known[word] = encoded
        return encoded

    def __call__(self, script: Script, keys: list[str], args: Sequence[Argument]) -> Any:
        known, learn = self.known, self._learn
        encoding, errors = self.encoder.encoding, self.encoder.encoding_errors
        words = b"".join(
            [
                known.get(len(keys)) or learn(len(keys)),
                *[_bulk(key.encode(encoding, errors)) for key in keys],  # as the encoder does
                *[known.get(arg) or learn(arg) for arg in args],
            ]
        )
        head = b"*%d\r\n" % (3 + len(keys) + len(args))
        pool = self.pool
        connection = self.checkout()
        try:
            return connection.retry.call_with_retry(
                lambda: self._send(connection, script, head, words),
                lambda error: connection.disconnect(),
            )
        finally:
            pool.release(connection)

    @staticmethod
    def _send(connection: Any, script: Script, head: bytes, words: bytes) -> Any:
        """One attempt: by digest, then by source when the server does not have it (the
        reply was read in full, so the connection stays in step)."""
        connection.send_packed_command([head + script.by_digest + words])
        try:
            return connection.read_response()
        except NoScriptError:
            connection.send_packed_command([head, script.by_source, words])
            return connection.read_response()


_EXECUTE = redis.Redis.execute_command


def pooled(client: RedisClient) -> Optional[Pooled]:
    """The direct path for a plain ``redis.Redis`` (from a URL, Sentinel's ``master_for``,
    TLS or a Unix socket alike); None for Redis Cluster, a single-connection client, and a
    client whose ``execute_command`` is overridden or wrapped (instrumentation must see
    every command)."""
    if not isinstance(client, redis.Redis) or getattr(client, "connection", None) is not None:
        return None
    execute = type(client).execute_command
    if execute is not _EXECUTE or hasattr(execute, "__wrapped__"):
        return None
    pool = getattr(client, "connection_pool", None)
    return Pooled(pool) if isinstance(pool, redis.ConnectionPool) else None


HIT = Script("common.lua", "distinct.lua", "strategies.lua", "steps.lua", "hit.lua")
REPORT = Script("common.lua", "distinct.lua", "steps.lua", "report.lua")
ESCALATE = Script("common.lua", "distinct.lua", "steps.lua", "escalate.lua")
BAN = Script("common.lua", "ban.lua")
USAGE = Script("common.lua", "distinct.lua", "strategies.lua", "usage.lua")
RELEASE = Script("release.lua")
REFUND = Script("common.lua", "distinct.lua", "strategies.lua", "refund.lua")
NETWORKS = Script("common.lua", "networks.lua")
SCRIPTS = (HIT, REPORT, BAN, USAGE, RELEASE, NETWORKS, REFUND, ESCALATE)
"""Every script, each loaded by the start-up check (``RedisStorage.check``)."""
