"""Redis storage: the memory storage's exact semantics, shared by every worker and host.

One request is one Lua script (``lua/hit.lua``), called with EVALSHA; when the server does
not have it (after ``SCRIPT FLUSH``, or a failover to a replica that never loaded it) the
same call is sent once with EVAL, which runs the script and caches it. A plain
``redis.Redis`` client's scripts go through a connection of its pool directly (see
``_Pooled``); Redis Cluster and other clients go through their ``evalsha``. Decisions use
the Redis server's clock, so app hosts with skewed clocks agree. Every key of a client
carries its ``{hash tag}``, so one script's keys sit on one Redis Cluster slot; expiries
only collect garbage (a second after the data stops mattering).

The registry of network bans (``lua/networks.lua``) sits under a tag of its own. Each
process keeps a copy for ``NETWORK_REFRESH`` seconds; once it is older, a request looks
up its networks of every length, and its script returns the registry along (on Redis
Cluster, where the registry sits on another slot, the copy is read in a call of its own).

Install redis-py with ``pip install "redis>=4.6"``, or the project with its ``redis`` extra.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import math
import re
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from importlib import resources
from typing import TYPE_CHECKING, Any, Optional, Union
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

from ... import strategies
from ...decision import (
    ADMITTED,
    BAN_REASONS,
    BY_NO_BAN_RULE,
    DEFAULT_OFFENCE,
    GLOBAL_SCOPE,
    IN_FLIGHT_WAIT,
    MANUAL,
    RATE_LIMIT,
    REPORTS,
    BanDetail,
    Decision,
    NewBan,
    Reservation,
    ShadowRefusal,
    Usage,
)
from ...errors import ConfigError, StorageCallError, StorageError
from ...identity.addresses import EVERY_LENGTH, NO_LENGTHS, NetworkLengths, network_of
from ...rules import BanRule, Rule
from ...strategies import STRATEGY_CODES
from ...units import MAX_MICROSECONDS, instant, lua_constants, microseconds, seconds
from ..base import DEFAULT_KEY_PREFIX, RECORD_DEPRECATED, BanSteps, Clock, check_key_prefix
from ..plan import Scope, within

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.exceptions import NoScriptError, RedisClusterException
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'the Redis storage needs redis-py: pip install "redis>=4.6" (or this project with '
        'its extra: pip install ".[redis]" in a checkout)'
    ) from exc

if TYPE_CHECKING:
    from redis.cluster import RedisCluster

    RedisClient = Union[redis.Redis, RedisCluster]
else:
    RedisClient = Any

__all__ = ["DEFAULT_TIMEOUT", "NETWORK_REFRESH", "RedisStorage"]

DEFAULT_TIMEOUT = 0.5
"""Seconds to connect and to read: a stalled Redis delays a request by at most about this
much (twice when the connection also has to be made again), and only one request a
second per process (see ``outage``)."""

NETWORK_REFRESH = 1.0
"""Seconds a process keeps its copy of the registry of network bans: a network banned by
another process is refused here within about this long (at once by this process)."""

_FAILURES = (redis.RedisError, RedisClusterException)
"""What redis-py raises when Redis fails (cluster errors do not derive from RedisError)."""


def _errors(*names: str) -> tuple[type[Exception], ...]:
    """redis-py's error classes of these names, those that its version has."""
    return tuple(
        getattr(redis.exceptions, name) for name in names if hasattr(redis.exceptions, name)
    )


_ACCESS_REFUSED = _errors("AuthenticationError", "AuthorizationError", "NoPermissionError")
"""The server refuses these credentials (or their ACL): an outage for requests, a
misconfiguration at start-up."""

_SERVER_STATES = (
    *_errors("ConnectionError", "TimeoutError", "ClusterError", "TryAgainError"),
    *_errors("ReadOnlyError", "OutOfMemoryError"),
    RedisClusterException,
)
_SERVER_STATE_CODES = re.compile(
    r"\b(?:LOADING|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|READONLY|OOM|MISCONF|NOREPLICAS)\b"
)
"""Errors of a server that cannot serve anyone now but may soon (unreachable, timing out,
loading, busy, out of memory, read-only, its cluster or primary down), by class or, for
a reply met inside a script, by its code."""


def _unavailable(exc: Exception) -> bool:
    """Whether Redis cannot serve anyone now, but may soon: an outage."""
    if isinstance(exc, _ACCESS_REFUSED):
        return False
    return isinstance(exc, _SERVER_STATES) or _SERVER_STATE_CODES.search(str(exc)) is not None


def _one_call(exc: Exception) -> bool:
    """Whether Redis answered and refused this call alone: a script's error, a key of the
    wrong type, an argument it rejects; never a reply that any call would get now."""
    if isinstance(exc, redis.DataError):
        return True
    if not isinstance(exc, redis.ResponseError) or isinstance(exc, _ACCESS_REFUSED):
        return False
    text = str(exc)
    own = text.startswith("WRONGTYPE") or "script" in text.lower()
    return own and not _unavailable(exc)


def _storage_error(exc: Exception) -> StorageError:
    """redis-py's failure as the library's error of its class: ``StorageCallError`` for
    an error of this call alone, else ``StorageError`` (an outage)."""
    if _one_call(exc):
        return StorageCallError(f"Redis refused the call: {exc}")
    return StorageError(f"Redis failed: {exc}")


@contextmanager
def _storage_errors() -> Iterator[None]:
    """redis-py's failures become the library's errors (``_storage_error``), raised from
    them."""
    try:
        yield
    except _FAILURES as exc:
        raise _storage_error(exc) from exc


_Argument = Union[int, str, bytes]
"""What a script's ARGV holds: numbers, text, and distinct values as UTF-8 bytes."""

_ADMITTED, _BANNED, _IN_FLIGHT = 0, 1, 3
_HIT_MODE, _RECORD_MODE, _CHECK_MODE, _RULES_MODE = 1, 2, 3, 4
"""``hit.lua``'s modes: a request, its recording alone, a request's checks without
recording it, or those checks without the ban (Redis Cluster: rules counted under
another key's slot are checked, then recorded once everything admits; the key's ban
refuses only when the request names it in ``also``). Only a request takes a slot."""
_GLOB_SPECIAL = str.maketrans({char: f"\\{char}" for char in "*?[]\\"})


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


class _Script:
    """One Lua script made of the named files, after the preamble and ``common.lua``."""

    def __init__(self, *names: str) -> None:
        folder = resources.files(__package__).joinpath("lua")
        parts = [folder.joinpath(name).read_text(encoding="utf-8") for name in names]
        self.source = _preamble() + "\n".join(parts)
        self.sha = hashlib.sha1(self.source.encode("utf-8")).hexdigest()
        self.by_digest = _bulk(b"EVALSHA") + _bulk(self.sha.encode())
        """The start of the script's EVALSHA in RESP (after the array's length)."""
        self.by_source = _bulk(b"EVAL") + _bulk(self.source.encode("utf-8"))

    def __call__(self, client: RedisClient, keys: list[str], args: Sequence[_Argument]) -> Any:
        """Run by its digest; a server without it gets the source once (EVAL runs it and
        caches it), so a flush or a failover costs one larger call, never an outage."""
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return client.eval(self.source, len(keys), *keys, *args)


_KNOWN_WORDS = 4096
"""How many distinct argument values a ``_Pooled`` keeps encoded: rules' numbers come
first and stay; per-client values (a strategy's offset, an injected clock's reading) only
fill what is left, then are encoded afresh each time."""


def _checkout(pool: redis.ConnectionPool) -> Any:
    """``pool.get_connection`` ready to call: without arguments where redis-py deprecates
    them (5.3 and later), with a command name where it requires one (4.6 to 5.2)."""
    parameter = inspect.signature(pool.get_connection).parameters.get("command_name")
    if parameter is not None and parameter.default is inspect.Parameter.empty:
        return functools.partial(pool.get_connection, "EVALSHA")
    return pool.get_connection


class _Pooled:
    """Scripts run on a connection of a plain ``redis.Redis`` client's pool: what the
    client's ``evalsha`` does (the pool's connection, the connection's ``Retry``, NOSCRIPT
    answered with EVAL), without its per-command work (command-name lookups, hooks,
    metrics, its argument encoder): the arguments are written in RESP here, each distinct
    value encoded once (by the pool's own encoder) and kept."""

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self.pool = pool
        self.checkout = _checkout(pool)
        self.encoder: Any = pool.get_encoder()
        self.known: dict[_Argument, bytes] = {}

    def _learn(self, word: _Argument) -> bytes:
        encoded = _bulk(bytes(self.encoder.encode(word)))
        if len(self.known) < _KNOWN_WORDS:
            self.known[word] = encoded
        return encoded

    def __call__(self, script: _Script, keys: list[str], args: Sequence[_Argument]) -> Any:
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
    def _send(connection: Any, script: _Script, head: bytes, words: bytes) -> Any:
        """One attempt: by digest, then by source when the server does not have it (the
        reply was read in full, so the connection stays in step)."""
        connection.send_packed_command([head + script.by_digest + words])
        try:
            return connection.read_response()
        except NoScriptError:
            connection.send_packed_command([head, script.by_source, words])
            return connection.read_response()


_EXECUTE = redis.Redis.execute_command


def _pooled(client: RedisClient) -> Optional[_Pooled]:
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
    return _Pooled(pool) if isinstance(pool, redis.ConnectionPool) else None


_HIT = _Script("common.lua", "distinct.lua", "strategies.lua", "steps.lua", "hit.lua")
_REPORT = _Script("common.lua", "distinct.lua", "steps.lua", "report.lua")
_ESCALATE = _Script("common.lua", "distinct.lua", "steps.lua", "escalate.lua")
_BAN = _Script("common.lua", "ban.lua")
_USAGE = _Script("common.lua", "distinct.lua", "strategies.lua", "usage.lua")
_RELEASE = _Script("release.lua")
_REFUND = _Script("common.lua", "distinct.lua", "strategies.lua", "refund.lua")
_NETWORKS = _Script("common.lua", "networks.lua")
_SCRIPTS = (_HIT, _REPORT, _BAN, _USAGE, _RELEASE, _NETWORKS, _REFUND, _ESCALATE)
"""Every script, each loaded by the start-up check (``check``)."""


def _without_password(url: str) -> str:
    """The URL with its password, if any, replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _check_database(url: str) -> None:
    """Refuse a database in the path that is not a number (redis-py reads
    ``redis://host/abc`` as database 0)."""
    parts = urlsplit(url)
    if parts.scheme.lower() == "unix" or "db" in parse_qs(parts.query):
        return
    database = unquote(parts.path).replace("/", "")
    if database and not database.isdigit():
        raise ValueError(f"the database must be a number, got {database!r}")


def _refusal(exc: Exception) -> str:
    """Why a server refused the start-up check, said for whoever set the URL."""
    if isinstance(exc, _ACCESS_REFUSED):
        return f"authentication failed (check the user name and password): {exc}"
    if "DB index" in str(exc):
        return f"no such database (check the number after the host): {exc}"
    if isinstance(exc, redis.exceptions.InvalidResponse):
        return f"the server does not speak the Redis protocol (is it Redis?): {exc}"
    return f"the server refused to load the Lua scripts (is it Redis?): {exc}"


_REGISTRY_TAG = "%networks"
"""The registry's hash tag: no client's (``_hash_tag`` writes a ``%`` only before two hex
digits, or alone)."""


_TAG_SAFE = "".join(chr(code) for code in range(33, 127) if chr(code) not in "%{}")
_PLAIN_TAG = re.compile(f"[{re.escape(_TAG_SAFE)}]+").fullmatch
"""A client that is its own hash tag (every IP): checked faster than quoted."""


def _hash_tag(client: str) -> str:
    """The client as a Redis Cluster hash tag: never empty, no braces (which would end
    the tag early and scatter one script's keys over several slots), plain ASCII (any
    text a ``key_func`` returns, lone surrogates included). IPs are unchanged."""
    if _PLAIN_TAG(client):
        return client
    if not client:
        return "%"
    return quote(client.encode("utf-8", "surrogatepass"), safe=_TAG_SAFE)


def _client_of(tag: str) -> str:
    if tag == "%":
        return ""
    return unquote(tag, errors="surrogatepass")


def _lengths(members: list[Any]) -> NetworkLengths:
    """The registry's answer (``["4/24", "6/48"]``) as (version, length) pairs."""
    pairs = []
    for member in members:
        text = member.decode() if isinstance(member, bytes) else str(member)
        version, _, length = text.partition("/")
        pairs.append((int(version), int(length)))
    return frozenset(pairs)


@functools.lru_cache(maxsize=16)
def _ban_rule_arguments(rule: BanRule) -> tuple[Union[int, str], ...]:
    """The ban rule as the scripts read it (once per rule: an app has one or a few)."""
    longest = microseconds(rule.max_duration) if rule.max_duration is not None else MAX_MICROSECONDS
    return (
        rule.count,
        microseconds(rule.window),
        microseconds(rule.duration),
        repr(float(rule.factor)),
        longest,
        microseconds(rule.forget_after),
    )


_NO_REPORT_TO: tuple[Union[int, str], ...] = (0,) * 6

STEPS_KEPT = 4096
"""How many clients' ``_step_parts`` a Redis storage keeps made (least recently used out)."""


@functools.lru_cache(maxsize=4096)
def _length_text(key: str) -> str:
    """A network key's entry in the registry ("4/24"), "" for any other key. Kept: a hit
    that may ban asks it of the client's network on every request (``_step_parts``)."""
    where = network_of(key)
    return "" if where is None else f"{where[0]}/{where[1]}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _detail_of(values: Sequence[Any]) -> Optional[BanDetail]:
    """``ban_detail``'s answer (``common.lua``: end, left, since, reason, strikes,
    offence) as a ``BanDetail``; None when empty or no ban is in force."""
    if not values or values[1] <= 0:
        return None
    left, since, reason, strikes = (
        seconds(values[1]),
        seconds(values[2]),
        _text(values[3]),
        int(values[4]),
    )
    if reason in BY_NO_BAN_RULE:
        return BanDetail(left, since, reason, strikes)
    # a ban made before offences has none: the default offence's (the only one then)
    return BanDetail(left, since, reason, strikes, _text(values[5]) or DEFAULT_OFFENCE)


_DISTINCT = "distinct"
"""Starts the key of a distinct rule's values: ``distinct:<scope>:<distinct id>``."""

_SHADOW_KEY = "/shadow"
"""Ends the key of a shadow rule's state, apart from an enforcing rule's of the same
count, window and strategy."""

_STATE_KEY = re.compile(
    "(?:"
    + "|".join(re.escape(name) for name in (*STRATEGY_CODES, _DISTINCT))
    + r")(?::(.*))?:\d+/\d+(?:/\d+)?(?:"
    + re.escape(_SHADOW_KEY)
    + ")?"
)


def _shadow_positions(scope: Scope) -> str:
    """Where a scope's shadow rules are among its rules, from 1, as ``read_scopes``
    reads them: ``"2 3"``, or ``""`` for none."""
    if not scope.shadow:
        return ""
    rules = scope.logged + scope.stateful + scope.distinct
    return " ".join(str(index) for index, rule in enumerate(rules, 1) if rule.shadow)


def _shadowed(answer: list[Any], rules: list[tuple[Rule, str]]) -> tuple[ShadowRefusal, ...]:
    """The shadow rules that ``hit.lua`` says would have refused: pairs of a rule's
    number and its wait."""
    if len(answer) < 10 or not answer[9]:
        return ()
    pairs = answer[9]
    return tuple(
        ShadowRefusal(rules[index][0], rules[index][1], seconds(wait))
        for index, wait in zip(pairs[::2], pairs[1::2])
    )


def _reservations(answer: list[Any], scopes: Sequence[Scope]) -> dict[int, Reservation]:
    """What ``hit.lua`` says it recorded in the deferred ``scopes`` (by their ``id``): per
    scope its stamp, each stateful rule's first number, each distinct rule's 1 when it
    added its value."""
    if len(answer) < 9 or not answer[8]:
        return {}
    values = iter(answer[8])
    reserved = {}
    for scope in scopes:
        if scope.deferred:
            stamp = int(next(values))
            states = tuple(float(next(values)) for _ in scope.stateful)
            added = tuple(next(values) == 1 for _ in scope.distinct)
            reserved[id(scope)] = Reservation(stamp, states, added)
    return reserved


def _jail_of(offence: object) -> Optional[str]:
    """A ban's offence as ``Decision.offence`` names it: None for the default offence's
    (and a ban made before offences, which has none)."""
    text = _text(offence)
    return None if text in ("", DEFAULT_OFFENCE) else text


def _report_flag(
    report_to: Optional[BanRule], offence: str, steps: Optional[BanSteps]
) -> Union[int, str]:
    """``hit.lua``'s ARGV[3]: 0 when a refusal is no report; else 1, or 2 when step
    arguments follow, then ``=`` and the offence's name unless it is the default one."""
    if report_to is None:
        return 0
    head = "1" if steps is None else "2"
    return head if offence == DEFAULT_OFFENCE else f"{head}={offence}"


def _stored(offence: str) -> str:
    """An offence as the scripts store it: "" for the default offence."""
    return "" if offence == DEFAULT_OFFENCE else offence


_BanState = tuple[int, int, object]
"""A ban as ``ban.lua`` reads its "state": microseconds left (0: none), 1 when set by
hand, and its offence."""


def _ban_decision(state: _BanState, banned_as: Optional[str] = None) -> Decision:
    """The refusal by a ban of this ``state``, as the memory storage's model makes it."""
    left, manual, offence = state
    return Decision(
        admitted=False,
        banned=True,
        retry_after=seconds(left),
        manual=manual == 1,
        banned_as=banned_as,
        offence=None if manual == 1 else _jail_of(offence),
    )


def _longest_ban(also: Sequence[str], bans: dict[str, _BanState]) -> Optional[Decision]:
    """The refusal by the longest ban among ``also`` (the first of equal ones), from
    ``bans``: each client's ban state, read apart."""
    longest, banned = 0, ""
    for other in also:
        left = bans.get(other, (0, 0, ""))[0]
        if left > longest:
            longest, banned = left, other
    return _ban_decision(bans[banned], banned) if longest else None


def _position(scopes: Sequence[Scope], scope_name: Optional[str]) -> int:
    """Where the scope of this name comes among ``scopes``: the order that breaks ties."""
    return next(index for index, scope in enumerate(scopes) if scope.name == scope_name)


def _first_longest(scopes: Sequence[Scope], refusals: Sequence[Decision]) -> Decision:
    """The refusal with the longest wait, of the first scope among equal ones, as one
    script over every scope would choose it (Redis Cluster: each slot's own decision)."""
    return min(
        refusals, key=lambda refusal: (-refusal.retry_after, _position(scopes, refusal.scope))
    )


def _with_closest(
    decision: Decision, scopes: Sequence[Scope], others: Sequence[Decision]
) -> Decision:
    """``decision`` with the closest rule of its own and of ``others`` (decided on other
    slots) as its usage: the fewest left, then the longest reset, then the first scope."""
    usages = [seen.usage for seen in (decision, *others) if seen.usage is not None]
    if not usages:
        return decision
    best = min(usages, key=lambda use: (use.remaining, -use.reset, _position(scopes, use.scope)))
    return decision if best is decision.usage else replace(decision, usage=best)


def _where(scope_name: str) -> str:
    """The end of a scope's key suffixes: nothing for the global scope, else ``:<name>``."""
    return "" if scope_name == GLOBAL_SCOPE else f":{scope_name}"


def _scope_of_key(suffix: str) -> Optional[str]:
    """The scope a client key's suffix (``log:<scope>``, ``slots:<scope>``,
    ``gcra:<scope>:5/100``, ``distinct:<scope>:5/100``...) belongs to; None for its ban
    and reports."""
    for kind in ("log", "slots"):
        if suffix == kind or suffix.startswith(f"{kind}:"):
            return suffix[len(kind) + 1 :]
    state = _STATE_KEY.fullmatch(suffix)
    return None if state is None else (state[1] or GLOBAL_SCOPE)


class RedisStorage:
    """Storage in Redis (or Valkey, Redis Cluster): one round trip per request.

    ``client`` is a ready ``redis.Redis`` or ``redis.RedisCluster``; ``from_url`` builds
    one with short timeouts. ``clock`` replaces the server's clock in tests.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        clock: Optional[Clock] = None,
    ) -> None:
        self.client = client
        self.key_prefix = check_key_prefix(key_prefix, "key_prefix")
        self.clock = clock
        self._clustered = any(cls.__name__ == "RedisCluster" for cls in type(client).__mro__)
        self._pooled = _pooled(client)
        self._registry: tuple[float, NetworkLengths] = (-math.inf, NO_LENGTHS)
        """This process's copy of the registry of network bans, and when it was read (on
        ``clock``, else ``time.monotonic``)."""
        self._changes: tuple[float, int] = (-math.inf, 0)
        """The count of operator changes, read with the registry, and when."""
        self._step_parts = functools.lru_cache(maxsize=STEPS_KEPT)(self._make_step_parts)

    @classmethod
    def from_url(cls, url: str, *, key_prefix: str = DEFAULT_KEY_PREFIX) -> RedisStorage:
        """``redis://``, ``rediss://`` or ``unix://`` URL, with short timeouts and one
        immediate retry on a connection error (a pooled connection may have died with a
        restarted server). Never on a timeout: the script may have run, and running it
        again would count the request twice."""
        try:
            _check_database(url)
            client = redis.Redis.from_url(
                url,
                socket_timeout=DEFAULT_TIMEOUT,
                socket_connect_timeout=DEFAULT_TIMEOUT,
                retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            )
        except ValueError as exc:
            raise ConfigError(f"invalid Redis URL {_without_password(url)!r}: {exc}") from None
        return cls(client, key_prefix=key_prefix)

    @property
    def location(self) -> str:
        """Where the data lives, as a URL without credentials (``redis://host:port/db``,
        ``unix://path``), or the client's class when it does not say."""
        pool = getattr(self.client, "connection_pool", None)
        options = getattr(pool, "connection_kwargs", {})
        if "path" in options:
            return f"unix://{options['path']}?db={options.get('db', 0)}"
        if "host" in options:
            return f"redis://{options['host']}:{options.get('port', 6379)}/{options.get('db', 0)}"
        return type(self.client).__name__

    def __repr__(self) -> str:
        return f"RedisStorage({self.location!r}, key_prefix={self.key_prefix!r})"

    def check(self) -> None:
        """Connect, authenticate, select the database and load every script, once, at
        start-up: ``ConfigError`` for what will never work (credentials refused, no such
        database, a server that is not Redis or runs no scripts), ``StorageError`` when
        Redis does not answer now (it may later: requests follow the outage policy)."""
        try:
            for script in _SCRIPTS:
                self.client.script_load(script.source)
        except _FAILURES as exc:
            if _unavailable(exc):
                raise StorageError(f"Redis at {self.location} does not answer: {exc}") from exc
            raise ConfigError(f"Redis at {self.location}: {_refusal(exc)}") from None

    def _key(self, client: str, suffix: str) -> str:
        return f"{self.key_prefix}{{{_hash_tag(client)}}}:{suffix}"

    def _now_argument(self) -> Union[int, str]:
        return "" if self.clock is None else instant(self.clock())

    def _registry_key(self, suffix: str) -> str:
        return f"{self.key_prefix}{{{_REGISTRY_TAG}}}:{suffix}"

    def _copy_time(self) -> float:
        return (self.clock or time.monotonic)()

    def _keep(self, read_at: float, answer: list[Any]) -> NetworkLengths:
        """Keep the registry's answer (the count of operator changes, then the lengths
        in use), read at ``read_at``, as this process's copy."""
        count, *members = answer
        lengths = _lengths(members)
        self._registry = (read_at, lengths)
        self._changes = (read_at, int(count))
        return lengths

    def _registry_call(
        self, action: str, entry: Optional[tuple[str, tuple[int, int], int]] = None
    ) -> NetworkLengths:
        """Run ``networks.lua``: "read" the registry, or "add" or "remove" an ``entry``
        (a network's key, its version and length, when its ban ends); the answer becomes
        this process's copy."""
        keys = [self._registry_key("lengths"), self._registry_key("changes")]
        args: list[Union[int, str]] = [self._now_argument(), action]
        if entry is not None:
            network, (version, length), end = entry
            keys.append(self._registry_key(f"{version}/{length}"))
            args += [network, f"{version}/{length}", end]
        read_at = self._copy_time()
        return self._keep(read_at, self._run(_NETWORKS, keys, args))

    def _run(self, script: _Script, keys: list[str], args: Sequence[_Argument]) -> Any:
        try:
            if self._pooled is not None:
                return self._pooled(script, keys, args)
            return script(self.client, keys, args)
        except _FAILURES as exc:
            raise _storage_error(exc) from exc

    def _scopes(
        self, client: str, scopes: Sequence[Scope]
    ) -> tuple[list[str], list[_Argument], list[tuple[Rule, str]]]:
        """The scopes' keys and arguments as the scripts read them, and their rules (with
        their scope's name) in the scripts' order: each scope's logged, then stateful,
        then distinct."""
        keys: list[str] = []
        args: list[_Argument] = []
        rules: list[tuple[Rule, str]] = []
        for scope in scopes:
            who = scope.owner or client
            where = _where(scope.name)
            keys.append(self._key(who, f"log{where}"))
            longest = max((rule.window for rule in scope.logged), default=0)
            args += [scope.depth, microseconds(longest), scope.cost, int(scope.deferred)]
            args += [scope.concurrency, scope.lease_us, len(scope.logged)]
            for rule in scope.logged:
                args += [rule.count, rule.window_us]
            args.append(len(scope.stateful))
            for rule in scope.stateful:
                window = rule.window_us
                strategy = rule.strategy or ""
                apart = _SHADOW_KEY if rule.shadow else ""  # as the memory's _state_key
                keys.append(self._key(who, f"{strategy}{where}:{rule.count}/{window}{apart}"))
                code = STRATEGY_CODES[strategy]
                args += [rule.count, window, code, strategies.offset(who, window)]
            args.append(len(scope.distinct))
            for index, (rule, value) in enumerate(zip(scope.distinct, scope.values)):
                keys.append(self._distinct_key(who, scope, index))
                text = b"" if value is None else value.encode("utf-8", "surrogatepass")
                args += [rule.count, rule.window_us, int(value is not None), text]
            args.append(_shadow_positions(scope))
            if scope.concurrency:  # the request's client's slots, never an owner's
                keys.append(self._key(client, f"slots{where}"))
            rules += [(rule, scope.name) for rule in scope.logged + scope.stateful + scope.distinct]
        return keys, args, rules

    def _distinct_key(self, who: str, scope: Scope, index: int) -> str:
        """The key of the values that the scope's ``index``-th distinct rule holds for ``who``."""
        return self._key(who, f"{_DISTINCT}{_where(scope.name)}:{scope.distinct_ids[index]}")

    def _make_step_parts(
        self, client: str, steps: BanSteps
    ) -> tuple[tuple[str, ...], tuple[_Argument, ...]]:
        """The KEYS and the STEP_ARGS arguments that ``steps`` add to a script that may
        ban ``client`` (``after_ban`` in ``steps.lua``). On Redis Cluster, only the
        details (the client's ban, on the client's slot); ``_steps_apart`` does the rest.
        Kept for the last ``STEPS_KEPT`` clients (``_step_parts``): every request that
        may ban sends them, and the gate gives each client the same ``steps``."""
        details = int(steps.details or steps.register)
        if self._clustered:
            return (), (0, details, client, "", "", "", 0, 0, 0)
        length = _length_text(client) if steps.register else ""
        network, addresses = steps.network, steps.addresses
        keys = []
        if length or (network and addresses):
            keys += [self._registry_key("lengths"), self._registry_key("changes")]
        if length:
            keys.append(self._registry_key(length))
        if not network or addresses is None:
            return tuple(keys), (len(keys), details, client, length, "", "", 0, 0, 0)
        wider = _length_text(network)
        keys += [self._key(network, "ban"), self._distinct_key(network, addresses, 0)]
        keys.append(self._registry_key(wider or "none"))
        rule = addresses.distinct[0]
        rule_args = (rule.count, rule.window_us, microseconds(steps.duration))
        return tuple(keys), (len(keys), details, client, length, network, wider, *rule_args)

    def _new_ban(
        self, client: str, duration: float, answer: list[Any], steps: BanSteps, read_at: float
    ) -> NewBan:
        """``after_ban``'s ``answer`` (the client's ban, the network's, the registry's
        answer) as a ``NewBan``: on Redis Cluster, the steps of other slots made apart."""
        own, wider, registry = answer if answer else ([], [], [])
        if registry:
            self._keep(read_at, registry)
        if self._clustered:
            own, wider = self._steps_apart(client, steps, own)
        network = steps.network if wider else None
        if not steps.details:
            return NewBan(duration, None, network)
        return NewBan(duration, _detail_of(own), network, _detail_of(wider))

    def _steps_apart(
        self, client: str, steps: BanSteps, own: list[Any]
    ) -> tuple[list[Any], list[Any]]:
        """Redis Cluster: the steps after a ban whose keys sit on other slots, each slot
        in one call: the client's ban detail when its script did not read it (one call
        on its slot), the escalation (one on the network's slot), each registry entry
        (one on the registry's)."""
        if not own and (steps.details or steps.register):
            own = self._run(_BAN, [self._key(client, "ban")], [self._now_argument(), "detail", 0])
        where = network_of(client) if steps.register else None
        if where is not None and own:
            self._registry_call("add", (client, where, int(own[0])))
        network, addresses = steps.network, steps.addresses
        if not network or addresses is None:
            return own, []
        rule = addresses.distinct[0]
        keys = [self._key(network, "ban"), self._distinct_key(network, addresses, 0)]
        args = [self._now_argument(), client, rule.count, rule.window_us]
        wider = self._run(_ESCALATE, keys, [*args, microseconds(steps.duration)])
        where = network_of(network)
        if wider and where is not None:
            self._registry_call("add", (network, where, int(wider[0])))
        return own, wider

    def _hit(
        self,
        client: str,
        scopes: Sequence[Scope],
        mode: int,
        usage: bool = False,
        report_to: Optional[BanRule] = None,
        also: Sequence[str] = (),
        token: Optional[str] = None,
        registry: bool = False,
        steps: Optional[BanSteps] = None,
        offence: str = DEFAULT_OFFENCE,
    ) -> tuple[list[Any], list[tuple[Rule, str]]]:
        """Run ``hit.lua``: its answer, and the rules its indices point into. ``registry``:
        the answer brings the registry of network bans along; ``steps``: what follows a
        ban that ``report_to`` makes (``_step_parts``)."""
        scope_keys, scope_args, rules = self._scopes(client, scopes)
        other_bans = [self._key(other, "ban") for other in also]
        keys = [self._key(client, "ban"), self._reports_key(client, offence), *other_bans]
        if registry:
            keys += [self._registry_key("lengths"), self._registry_key("changes")]
        keys += scope_keys
        args: list[_Argument] = [
            self._now_argument(),
            int(usage),
            _report_flag(report_to, offence, steps),
            *(_ban_rule_arguments(report_to) if report_to is not None else _NO_REPORT_TO),
            mode,
            len(other_bans),
            token or "",
            int(registry),
            *scope_args,
        ]
        if report_to is not None and steps is not None:
            step_keys, step_args = self._step_parts(client, steps)
            keys += step_keys
            args += step_args
        return self._run(_HIT, keys, args), rules

    def hit(
        self,
        client: str,
        scopes: Sequence[Scope],
        *,
        usage: bool = False,
        report_to: Optional[BanRule] = None,
        also: Sequence[str] = (),
        token: Optional[str] = None,
        steps: Optional[BanSteps] = None,
        offence: str = DEFAULT_OFFENCE,
    ) -> Decision:
        """``steps``: see ``BanSteps``; one script does it all on one server."""
        if self._clustered and (also or any(scope.owner for scope in scopes)):
            decision = self._hit_on_slots(client, scopes, usage, report_to, also, token, offence)
            if steps is None or decision.new_ban is None:
                return decision
            new = self._new_ban(client, decision.new_ban, [], steps, self._copy_time())
            return replace(decision, ban=new)
        read_at = self._copy_time()
        registry = not self._clustered and read_at - self._registry[0] >= NETWORK_REFRESH
        answer, rules = self._hit(
            client, scopes, _HIT_MODE, usage, report_to, also, token, registry, steps, offence
        )
        if registry:
            self._keep(read_at, answer[7])
        decision = self._decision(answer, rules, scopes, also, usage)
        if steps is None or decision.new_ban is None:
            return decision
        new = self._new_ban(client, decision.new_ban, answer[9], steps, read_at)
        return replace(decision, ban=new)

    def _hit_on_slots(
        self,
        client: str,
        scopes: Sequence[Scope],
        usage: bool,
        report_to: Optional[BanRule],
        also: Sequence[str],
        token: Optional[str],
        offence: str = DEFAULT_OFFENCE,
    ) -> Decision:
        """Redis Cluster, where other clients' bans (``also``) and rules with their own
        key sit on other slots: read each other client's ban (one round trip each), check
        each key's rules, and its ban when ``also`` names it (one round trip per key,
        recording nothing); a ban among them refuses, after one more read of the client's
        own ban (its own ban comes first). Then the client's own script runs: as a request
        when every key admitted, and then each key's rules are recorded (one more round
        trip per key); else as a check, which reports the refusal. The decision is the one
        script's: the longest wait (the first rule of equal ones), and usage over every
        rule. Each call is atomic on its own slot, the request is not (docs/workers.md).
        Only the client's own script, run as a request, checks and takes the slots of
        ``token`` (a key's scopes have none)."""
        own = [scope for scope in scopes if not scope.owner]  # "": the client's, as in _scopes
        keyed: dict[str, list[Scope]] = {}
        for scope in scopes:
            if scope.owner:
                keyed.setdefault(scope.owner, []).append(scope)
        bans = {other: self._ban_state(other) for other in also if other not in keyed}
        checks: list[tuple[list[Any], list[tuple[Rule, str]], list[Scope]]] = []
        for owner, group in keyed.items():
            mode = _CHECK_MODE if owner in also else _RULES_MODE
            answer, rules = self._hit(owner, group, mode, usage)
            if answer[0] == _BANNED:
                bans[owner] = (answer[1], answer[2], answer[4])
            checks.append((answer, rules, group))
        refused = _longest_ban(also, bans)
        if refused is not None:
            state = self._ban_state(client)
            return refused if not state[0] else _ban_decision(state)
        checked = [
            self._decision(answer, rules, group, usage=usage) for answer, rules, group in checks
        ]
        refusals = [decision for decision in checked if not decision.admitted]
        if not refusals:
            answer, rules = self._hit(
                client, own, _HIT_MODE, usage, report_to, token=token, offence=offence
            )
            decision = self._decision(answer, rules, own, usage=usage)
            if decision.banned or decision.rule is not None:
                return decision  # every key admitted: the client's own refusal is the longest
            if not decision.admitted:  # too many in flight: nothing recorded
                return _with_closest(decision, scopes, checked)
            reserved = _reservations(answer, own)
            records = []
            for owner, group in keyed.items():
                answer, rules = self._hit(owner, group, _RECORD_MODE, usage)
                reserved.update(_reservations(answer, group))
                records.append(self._decision(answer, rules, group, usage=usage))
            if reserved:
                ordered = tuple(reserved[id(scope)] for scope in scopes if scope.deferred)
                decision = replace(decision, reserved=ordered)
            shadowed = [*decision.shadowed, *(s for each in checked for s in each.shadowed)]
            if len(shadowed) > len(decision.shadowed):  # in the order of the scopes
                shadowed.sort(key=lambda refusal: _position(scopes, refusal.scope))
                decision = replace(decision, shadowed=tuple(shadowed))
            return _with_closest(decision, scopes, records)
        refusal = _first_longest(scopes, refusals)
        decision = self._decision(
            *self._hit(client, own, _CHECK_MODE, usage, report_to, offence=offence), own, (), usage
        )
        if decision.banned:
            return decision
        if not decision.admitted:  # the client's own refusal was reported by its script
            return replace(_first_longest(scopes, [decision, refusal]), new_ban=decision.new_ban)
        new_ban = (
            self.report(client, report_to, RATE_LIMIT, offence) if report_to is not None else None
        )
        return replace(refusal, new_ban=new_ban)

    def _decision(
        self,
        answer: list[Any],
        rules: list[tuple[Rule, str]],
        scopes: Sequence[Scope],
        also: Sequence[str] = (),
        usage: bool = False,
    ) -> Decision:
        """``hit.lua``'s answer, for these ``scopes`` (their rules), as a decision."""
        status, wait, limiting, closest, remaining, reset, new_ban = answer[:7]
        if status == _BANNED:
            return Decision(
                admitted=False,
                banned=True,
                retry_after=seconds(wait),
                manual=limiting == 1,
                banned_as=also[closest - 1] if closest > 0 else None,
                offence=_jail_of(remaining) if limiting != 1 else None,
            )
        seen = None
        if usage and closest >= 0:
            usage_rule, usage_scope = rules[closest]
            seen = Usage(usage_rule, remaining, seconds(reset), usage_scope)
        if status == _ADMITTED:
            reserved = _reservations(answer, scopes)
            shadowed = _shadowed(answer, rules)
            if reserved or shadowed:
                ordered = tuple(
                    reserved[id(scope)] for scope in scopes if scope.deferred and reserved
                )
                return Decision(admitted=True, usage=seen, reserved=ordered, shadowed=shadowed)
            return Decision(admitted=True, usage=seen) if seen is not None else ADMITTED
        if status == _IN_FLIGHT:
            full = scopes[limiting]
            return Decision(
                admitted=False,
                retry_after=IN_FLIGHT_WAIT,
                scope=full.name,
                usage=seen,
                new_ban=seconds(new_ban) if new_ban >= 0 else None,
                concurrency=full.concurrency,
            )
        rule, scope_name = rules[limiting]
        return Decision(
            admitted=False,
            retry_after=seconds(wait),
            rule=rule,
            scope=scope_name,
            usage=seen,
            new_ban=seconds(new_ban) if new_ban >= 0 else None,
        )

    def _ban_state(self, client: str) -> _BanState:
        """The microseconds left of the client's ban (0: none), 1 when it was set by hand,
        and its offence: one script on the client's slot."""
        left, by_hand, offence = self._run(
            _BAN, [self._key(client, "ban")], [self._now_argument(), "state", 0]
        )
        return int(left), int(by_hand), offence

    def record(self, client: str, scopes: Sequence[Scope]) -> None:
        """Deprecated: count the request in every rule of ``scopes``, checking nothing.
        ``hit`` records ``count_when`` routes' scopes itself now, and ``refund`` takes
        back what the response does not count."""
        warnings.warn(RECORD_DEPRECATED, DeprecationWarning, stacklevel=2)
        for who, group in self._slots(client, scopes):
            self._hit(who, [scopes[index] for index in group], _RECORD_MODE)

    def _slots(self, client: str, scopes: Sequence[Scope]) -> list[tuple[str, list[int]]]:
        """The scopes' indices grouped by the slot their keys sit on, in order of first
        appearance, each with the client whose slot it is: one group, the client's, on one
        server; on Redis Cluster, one per key that the scopes count under."""
        groups: dict[str, list[int]] = {}
        for index, scope in enumerate(scopes):
            who = scope.owner if self._clustered and scope.owner else client
            groups.setdefault(who, []).append(index)
        return list(groups.items())

    def refund(self, client: str, scopes: Sequence[Scope], reserved: Sequence[Reservation]) -> None:
        """One script (``refund.lua``); on Redis Cluster one per key that the scopes
        count under, each on its own slot."""
        for _, group in self._slots(client, scopes[: len(reserved)]):
            keys, args, _ = self._scopes(client, [scopes[index] for index in group])
            taken: list[_Argument] = []
            for reservation in (reserved[index] for index in group):
                taken.append(reservation.stamp)
                taken += [repr(state) for state in reservation.states]
                taken += [int(added) for added in reservation.added]
            self._run(_REFUND, keys, [self._now_argument(), len(taken), *taken, *args])

    def release(self, client: str, scope_names: Sequence[str], token: str) -> None:
        """One command: a ``ZREM``, or ``release.lua`` for slots in several scopes."""
        keys = [self._key(client, f"slots{_where(name)}") for name in scope_names]
        if len(keys) > 1:
            self._run(_RELEASE, keys, [token])
            return
        with _storage_errors():
            self.client.zrem(keys[0], token)

    def usage(self, client: str, scopes: Sequence[Scope]) -> list[Usage]:
        """One script (``usage.lua``); on Redis Cluster one per key that the scopes count
        under, each on its own slot."""
        per_scope: dict[int, list[Usage]] = {}
        for _, group in self._slots(client, scopes):
            keys, args, rules = self._scopes(client, [scopes[index] for index in group])
            answer = iter(self._run(_USAGE, keys, [self._now_argument(), *args]))
            seen = [
                Usage(rule, next(answer), seconds(next(answer)), scope_name)
                for rule, scope_name in rules
            ]
            for index in group:
                scope = scopes[index]
                taken = len(scope.logged) + len(scope.stateful) + len(scope.distinct)
                per_scope[index], seen = seen[:taken], seen[taken:]
        return [use for index in range(len(scopes)) for use in per_scope[index]]

    def _reports_key(self, client: str, offence: str) -> str:
        """The offence's reports (a list, newest first): the default offence's key is
        the one flask-gatekeeper had before offences."""
        return self._key(client, "reports" if offence == DEFAULT_OFFENCE else f"reports:{offence}")

    def report(
        self,
        client: str,
        ban_rule: BanRule,
        reason: str = REPORTS,
        offence: str = DEFAULT_OFFENCE,
    ) -> Optional[float]:
        keys = [self._reports_key(client, offence), self._key(client, "ban")]
        args = [self._now_argument(), *_ban_rule_arguments(ban_rule), reason, _stored(offence)]
        duration = self._run(_REPORT, keys, args)
        return seconds(duration) if duration >= 0 else None

    def report_steps(
        self,
        client: str,
        ban_rule: BanRule,
        reason: str,
        steps: Optional[BanSteps],
        offence: str = DEFAULT_OFFENCE,
    ) -> Optional[NewBan]:
        """``report`` and the ``steps`` after its ban in one script (``report.lua``); on
        Redis Cluster, the steps of other slots apart (``_steps_apart``)."""
        if steps is None:
            duration = self.report(client, ban_rule, reason, offence)
            return None if duration is None else NewBan(duration)
        step_keys, step_args = self._step_parts(client, steps)
        keys = [self._reports_key(client, offence), self._key(client, "ban"), *step_keys]
        args: list[_Argument] = [
            self._now_argument(),
            *_ban_rule_arguments(ban_rule),
            reason,
            _stored(offence),
            *step_args,
        ]
        read_at = self._copy_time()
        duration, answer = self._run(_REPORT, keys, args)
        if duration < 0:
            return None
        return self._new_ban(client, seconds(duration), answer, steps, read_at)

    def _ban_action(
        self,
        client: str,
        action: str,
        duration: float = 0,
        reason: str = MANUAL,
        offence: str = DEFAULT_OFFENCE,
    ) -> int:
        args = [self._now_argument(), action, microseconds(duration), reason, _stored(offence)]
        return int(self._run(_BAN, [self._key(client, "ban")], args))

    def ban(
        self, client: str, duration: float, reason: str = MANUAL, offence: str = DEFAULT_OFFENCE
    ) -> None:
        end = self._ban_action(client, "ban", duration, reason, offence)
        network = network_of(client)
        if network is not None:  # a second call: the registry has a tag of its own
            self._registry_call("add", (client, network, end))

    def unban(self, client: str) -> bool:
        end = self._ban_action(client, "unban")  # when the ban would have ended, 0 if none
        network = network_of(client)
        if end and network is not None:
            self._registry_call("remove", (client, network, end))
        self._changed()
        return end > 0

    def _changed(self) -> None:
        """Count one operator action that may end refusals (an unban, a reset): every
        process's ``KnownRefusals`` forgets what it remembers once it reads the count,
        which comes along with the registry of network bans (same hash tag)."""
        with _storage_errors():
            self.client.incr(self._registry_key("changes"))

    def operator_changes(self, *, cached: bool = False) -> Optional[int]:
        """How many operator actions ended refusals so far: this process's copy, read
        along with the registry (no call), or None with ``cached`` when it is older than
        ``NETWORK_REFRESH``; without ``cached``, read now (one script, the registry's)."""
        read_at, count = self._changes
        if cached:
            return count if self._copy_time() - read_at < NETWORK_REFRESH else None
        self._registry_call("read")
        return self._changes[1]

    def network_lengths(self, *, cached: bool = False) -> NetworkLengths:
        """The registry (one script), or with ``cached`` this process's copy while it is
        younger than ``NETWORK_REFRESH``; once older, ``EVERY_LENGTH``, and the next
        request's script reads the registry along. On Redis Cluster that script cannot
        reach the registry's slot, so an older copy is read again in a call of its own
        (kept as it is, for another second, when the call fails: the request's own call
        will meet the failure)."""
        if not cached:
            return self._registry_call("read")
        read_at, lengths = self._registry
        if self._copy_time() - read_at < NETWORK_REFRESH:
            return lengths
        if not self._clustered:
            return EVERY_LENGTH
        try:
            return self._registry_call("read")
        except StorageError:
            self._registry = (self._copy_time(), lengths)
            return lengths

    def banned_for(self, client: str) -> float:
        return seconds(self._ban_action(client, "left"))

    def _scan(self, pattern: str) -> list[str]:
        with _storage_errors():
            return [
                key.decode() if isinstance(key, bytes) else str(key)
                for key in self.client.scan_iter(match=pattern, count=1000)
            ]

    def bans(self) -> dict[str, float]:
        """Every active ban (a SCAN over the prefix: for operators, not for requests)."""
        return {client: detail.left for client, detail in self.ban_details().items()}

    def ban_details(self) -> dict[str, BanDetail]:
        """Every active ban and its details (a SCAN, then one read per ban)."""
        head, tail = f"{self.key_prefix}{{", "}:ban"
        found = {}
        for key in self._scan(f"{head.translate(_GLOB_SPECIAL)}*{tail}"):
            detail = self._detail(key)
            if detail is not None:
                found[_client_of(key[len(head) : -len(tail)])] = detail
        return found

    def ban_detail(self, client: str) -> Optional[BanDetail]:
        return self._detail(self._key(client, "ban"))

    def _detail(self, ban_key: str) -> Optional[BanDetail]:
        return _detail_of(self._run(_BAN, [ban_key], [self._now_argument(), "detail", 0]))

    def reset(self, client: str, scope: Optional[str] = None) -> None:
        """Forget the client (a SCAN of its keys: for operators, not for requests)."""
        if scope is None and network_of(client) is not None:
            self.unban(client)  # first, for the registry to learn when its ban ends
        head = self._key(client, "")
        keys = self._scan(f"{head.translate(_GLOB_SPECIAL)}*")
        if scope is not None:
            names = [(key, _scope_of_key(key[len(head) :])) for key in keys]
            keys = [key for key, name in names if name is not None and within(name, scope)]
        if keys:
            with _storage_errors():
                self.client.delete(*keys)
        self._changed()
