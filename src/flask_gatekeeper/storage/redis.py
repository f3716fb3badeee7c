"""Redis storage: the memory storage's exact semantics, shared by every worker and host.

One request is one Lua script (``lua/hit.lua``), called with EVALSHA through redis-py's
``Script``, which reloads it by itself after ``SCRIPT FLUSH`` or a failover. Decisions use
the Redis server's clock, so app hosts with skewed clocks agree. Every key of a client
carries its ``{hash tag}``, so one script's keys sit on one Redis Cluster slot; expiries
only collect garbage (a second after the data stops mattering).

Install with ``pip install "flask-gatekeeper[redis]"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any, Optional, Union

from ..decision import ADMITTED, Decision
from ..errors import ConfigError, StorageError
from ..policy import GLOBAL_SCOPE, Scope
from ..rules import BanRule, Rule
from .base import Clock

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'the Redis storage needs redis-py: pip install "flask-gatekeeper[redis]"'
    ) from exc

if TYPE_CHECKING:
    from redis.cluster import RedisCluster
    from redis.commands.core import Script

    RedisClient = Union[redis.Redis, RedisCluster]
else:
    RedisClient = Any

__all__ = ["DEFAULT_TIMEOUT", "RedisStorage"]

DEFAULT_TIMEOUT = 0.5
"""Seconds to connect and to read: a stalled Redis slows requests by at most this much."""

_GARBAGE_DELAY_MS = 1000
"""Keys outlive their use by this much, so an injected clock never races their expiry."""
_MICROSECONDS = 1_000_000

_ADMITTED, _BANNED = 0, 1


def _script(client: RedisClient, name: str) -> Script:
    source = resources.files(__package__).joinpath("lua").joinpath(name).read_text(encoding="utf-8")
    return client.register_script(source)


def _microseconds(seconds: float) -> int:
    return round(seconds * _MICROSECONDS)


class RedisStorage:
    """Storage in Redis (or Valkey, Redis Cluster): one round trip per request.

    ``client`` is a ready ``redis.Redis`` or ``redis.RedisCluster``; ``from_url`` builds
    one with short timeouts. ``clock`` replaces the server's clock in tests.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        key_prefix: str = "gatekeeper:",
        clock: Optional[Clock] = None,
    ) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self._clock = clock
        self._hit = _script(client, "hit.lua")
        self._report = _script(client, "report.lua")

    @classmethod
    def from_url(cls, url: str, *, key_prefix: str = "gatekeeper:") -> RedisStorage:
        """``redis://``, ``rediss://`` or ``unix://`` URL, with short timeouts and one
        immediate retry (a pooled connection may have died with a restarted server)."""
        try:
            client = redis.Redis.from_url(
                url,
                socket_timeout=DEFAULT_TIMEOUT,
                socket_connect_timeout=DEFAULT_TIMEOUT,
                retry=Retry(NoBackoff(), 1),
            )
        except ValueError as exc:
            raise ConfigError(f"invalid Redis URL {url!r}: {exc}") from None
        return cls(client, key_prefix=key_prefix)

    def __repr__(self) -> str:
        return f"RedisStorage({self.client!r}, key_prefix={self.key_prefix!r})"

    def _key(self, client: str, suffix: str) -> str:
        return f"{self.key_prefix}{{{client}}}:{suffix}"

    def _now_argument(self) -> Union[int, str]:
        return "" if self._clock is None else _microseconds(self._clock())

    def _run(self, script: Script, keys: list[str], args: list[Union[int, str]]) -> Any:
        try:
            return script(keys=keys, args=args)
        except redis.RedisError as exc:
            raise StorageError(f"Redis failed: {exc}") from exc

    def hit(self, client: str, scopes: Sequence[Scope]) -> Decision:
        keys = [self._key(client, "ban")]
        args: list[Union[int, str]] = [self._now_argument()]
        rules: list[Rule] = []
        for scope in scopes:
            suffix = "log" if scope.name == GLOBAL_SCOPE else f"log:{scope.name}"
            keys.append(self._key(client, suffix))
            longest = max(rule.window for rule in scope.rules)
            args += [scope.depth, math.ceil(longest * 1000) + _GARBAGE_DELAY_MS, len(scope.rules)]
            for rule in scope.rules:
                args += [rule.count, _microseconds(rule.window)]
                rules.append(rule)
        status, wait, index = self._run(self._hit, keys, args)
        if status == _ADMITTED:
            return ADMITTED
        if status == _BANNED:
            return Decision(admitted=False, banned=True, retry_after=wait / _MICROSECONDS)
        return Decision(admitted=False, retry_after=wait / _MICROSECONDS, rule=rules[index])

    def report(self, client: str, ban_rule: BanRule) -> bool:
        keys = [self._key(client, "reports"), self._key(client, "ban")]
        args = [
            self._now_argument(),
            ban_rule.count,
            _microseconds(ban_rule.window),
            _microseconds(ban_rule.duration),
        ]
        return bool(self._run(self._report, keys, args))
