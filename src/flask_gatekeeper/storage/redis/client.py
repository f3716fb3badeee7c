"""The redis-py client: its import (an extra, never needed by the core), and its failures
told apart: an outage (Redis cannot serve anyone now) or one call's own error; the URL
helpers of the start-up messages.

Install redis-py with ``pip install "redis>=4.6"``, or the project with its ``redis`` extra.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Union
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from ...errors import StorageCallError, StorageError

try:
    import redis
    from redis.exceptions import RedisClusterException
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

__all__ = [
    "DEFAULT_TIMEOUT",
    "FAILURES",
    "RedisClient",
    "check_database",
    "refusal",
    "storage_error",
    "storage_errors",
    "unavailable",
    "without_password",
]


DEFAULT_TIMEOUT = 0.5
"""Seconds to connect and to read: a stalled Redis delays a request by at most about this
much (twice when the connection also has to be made again), and only one request a
second per process (see ``outage``)."""


FAILURES = (redis.RedisError, RedisClusterException)
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


def unavailable(exc: Exception) -> bool:
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
    return own and not unavailable(exc)


def storage_error(exc: Exception) -> StorageError:
    """redis-py's failure as the library's error of its class: ``StorageCallError`` for
    an error of this call alone, else ``StorageError`` (an outage)."""
    if _one_call(exc):
        return StorageCallError(f"Redis refused the call: {exc}")
    return StorageError(f"Redis failed: {exc}")


@contextmanager
def storage_errors() -> Iterator[None]:
    """redis-py's failures become the library's errors (``storage_error``), raised from
    them."""
    try:
        yield
    except FAILURES as exc:
        raise storage_error(exc) from exc


def without_password(url: str) -> str:
    """The URL with its password, if any, replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def check_database(url: str) -> None:
    """Refuse a database in the path that is not a number (redis-py reads
    ``redis://host/abc`` as database 0)."""
    parts = urlsplit(url)
    if parts.scheme.lower() == "unix" or "db" in parse_qs(parts.query):
        return
    database = unquote(parts.path).replace("/", "")
    if database and not database.isdigit():
        raise ValueError(f"the database must be a number, got {database!r}")


def refusal(exc: Exception) -> str:
    """Why a server refused the start-up check, said for whoever set the URL."""
    if isinstance(exc, _ACCESS_REFUSED):
        return f"authentication failed (check the user name and password): {exc}"
    if "DB index" in str(exc):
        return f"no such database (check the number after the host): {exc}"
    if isinstance(exc, redis.exceptions.InvalidResponse):
        return f"the server does not speak the Redis protocol (is it Redis?): {exc}"
    return f"the server refused to load the Lua scripts (is it Redis?): {exc}"
