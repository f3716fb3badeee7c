"""In-process storage: exact sliding logs in bounded memory, O(1) per request.

Every scope of a client keeps only the newest ``depth`` timestamps (the largest count of
its rules) in a ring, so a rule ``(count, window)`` is full exactly when the count-th
newest timestamp is younger than ``window``: one index, whatever the count. Logs sit in
one least-recently-used table capped at ``max_clients``; bans live in their own table and
are dropped only when they end (or, beyond the cap, soonest-ending first).
"""

from __future__ import annotations

import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..decision import ADMITTED, Decision
from ..errors import ConfigError, ConfigTypeError
from ..policy import GLOBAL_SCOPE, Scope
from ..rules import BanRule, Rule
from .base import Clock

__all__ = ["DEFAULT_MAX_CLIENTS", "MemoryStorage"]

DEFAULT_MAX_CLIENTS = 100_000
"""Default cap on tracked logs: about 25 MB when each holds one request, and at most
about 105 MB when every log is full with the seed's 100-request rule (see the README)."""

_ROUTE_SEPARATOR = "\x1f"
_REPORTS_SUFFIX = "\x1e"


if TYPE_CHECKING:
    _FloatArray = array[float]
else:  # array is subscriptable at run time only from Python 3.12
    _FloatArray = array


class _Log(_FloatArray):
    """Timestamps in a ring: ``head`` is the oldest once full, 0 while still growing."""

    __slots__ = ("head",)
    head: int


def _new_log(now: float) -> _Log:
    log = _Log("d", (now,))
    log.head = 0
    return log


def _nth_newest(log: _Log, n: int) -> float:
    """The n-th newest timestamp (1 = newest); the caller checks that ``len(log) >= n``."""
    return log[(log.head - n) % len(log)]


def _append(log: _Log, depth: int, now: float) -> None:
    """Add ``now`` as the newest timestamp, keeping at least the newest ``depth``."""
    size = len(log)
    if size < depth:
        if log.head:  # the rules grew since the ring filled: unroll it first (rare)
            log[:] = log[log.head :] + log[: log.head]
            log.head = 0
        log.append(now)
    else:
        log[log.head] = now
        log.head = (log.head + 1) % size


def _scope_key(client: str, scope: Scope) -> str:
    if scope.name == GLOBAL_SCOPE:
        return client
    return f"{client}{_ROUTE_SEPARATOR}{scope.name}"


class MemoryStorage:
    """The default storage: exact, thread-safe, bounded, with no timer thread.

    ``clock`` is injectable so tests move time instead of sleeping (see
    ``flask_gatekeeper.testing.FakeClock``). ``max_clients`` caps the number of tracked
    logs (one per client for the global rules, one per client and ``specific`` route, one
    per reported client); the least recently seen goes first. Bans are never evicted while
    fewer than ``max_clients`` are active.
    """

    def __init__(self, *, max_clients: int = DEFAULT_MAX_CLIENTS, clock: Clock = time.monotonic):
        if isinstance(max_clients, bool) or not isinstance(max_clients, int):
            raise ConfigTypeError(f"max_clients must be a positive integer, got {max_clients!r}")
        if max_clients < 1:
            raise ConfigError(f"max_clients must be a positive integer, got {max_clients!r}")
        self.max_clients = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        self._logs: OrderedDict[str, _Log] = OrderedDict()
        self._bans: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"MemoryStorage(max_clients={self.max_clients})"

    @property
    def tracked(self) -> int:
        """How many logs are held now (at most ``max_clients``)."""
        return len(self._logs)

    def hit(self, client: str, scopes: Sequence[Scope]) -> Decision:
        with self._lock:
            now = self._clock()
            ban_end = self._bans.get(client)
            if ban_end is not None:
                if ban_end > now:
                    return Decision(admitted=False, banned=True, retry_after=ban_end - now)
                del self._bans[client]
            if not scopes:
                return ADMITTED
            logs = self._logs
            keys = []
            free_at = now
            worst: Rule | None = None
            for scope in scopes:
                key = _scope_key(client, scope)
                keys.append(key)
                log = logs.get(key)
                if log is None:
                    continue
                logs.move_to_end(key)
                size = len(log)
                for rule in scope.rules:
                    if size >= rule.count:
                        rule_free_at = _nth_newest(log, rule.count) + rule.window
                        if rule_free_at > free_at:
                            free_at, worst = rule_free_at, rule
            if worst is not None:
                return Decision(admitted=False, retry_after=free_at - now, rule=worst)
            for key, scope in zip(keys, scopes):
                log = logs.get(key)
                if log is None:
                    logs[key] = _new_log(now)
                    if len(logs) > self.max_clients:
                        logs.popitem(last=False)
                else:
                    _append(log, scope.depth, now)
            return ADMITTED

    def report(self, client: str, ban_rule: BanRule) -> bool:
        with self._lock:
            now = self._clock()
            key = client + _REPORTS_SUFFIX
            logs = self._logs
            log = logs.get(key)
            if log is None:
                log = logs[key] = _new_log(now)
                if len(logs) > self.max_clients:
                    logs.popitem(last=False)
            else:
                logs.move_to_end(key)
                _append(log, ban_rule.count, now)
            if (
                len(log) < ban_rule.count
                or _nth_newest(log, ban_rule.count) + ban_rule.window <= now
            ):
                return False
            logs.pop(key, None)
            self._set_ban(client, now + ban_rule.duration, now)
            return True

    def _set_ban(self, client: str, end: float, now: float) -> None:
        """Ban until ``end`` (never shortening a longer ban), keeping the ban table bounded."""
        bans = self._bans
        bans[client] = max(end, bans.get(client, end))
        if len(bans) > self.max_clients:
            for ended in [name for name, until in bans.items() if until <= now]:
                del bans[ended]
            while len(bans) > self.max_clients:
                del bans[min(bans, key=bans.__getitem__)]
