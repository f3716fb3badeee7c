"""In-process storage: exact sliding logs in bounded memory, O(1) per request.

Every scope of a client keeps only the newest ``depth`` timestamps (the largest count of
its rules) in a ring, so a rule ``(count, window)`` is full exactly when the count-th
newest timestamp is younger than ``window``: one index, whatever the count. A rule with
another strategy keeps its few numbers (``strategies``) beside the logs. Logs and states
sit in one least-recently-used table capped at ``max_clients``; bans live in their own
table and are dropped only when they end (or, beyond the cap, soonest-ending first).
"""

from __future__ import annotations

import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Callable, Optional, TypeVar

from .. import strategies
from ..decision import ADMITTED, Decision, Usage
from ..errors import ConfigError, ConfigTypeError
from ..policy import GLOBAL_SCOPE, Scope
from ..rules import BanRule, Rule
from ..strategies import MICROSECONDS, microseconds, seconds
from .base import Clock

__all__ = ["DEFAULT_MAX_CLIENTS", "MemoryStorage"]

DEFAULT_MAX_CLIENTS = 100_000
"""Default cap on tracked logs: about 32 MB under a flood of one-request clients, and at
most about 110 MB when every log is full with the seed's 100-request rule (measured by
``benchmarks/flood.py``; see the README)."""

_ROUTE_SEPARATOR = "\x1f"
_REPORTS_SUFFIX = "\x1e"
_STATE_SEPARATOR = "\x1d"

T = TypeVar("T")


if TYPE_CHECKING:
    _FloatArray = array[float]
else:  # array is subscriptable at run time only from Python 3.12
    _FloatArray = array


class _Log(_FloatArray):
    """Timestamps in a ring: ``head`` is the oldest once full, 0 while still growing.
    (A stateful rule's numbers use the same type, with ``head`` unused.)"""

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


def _used(log: _Log, rule: Rule, now: float) -> tuple[int, float]:
    """How many of the log's requests ``rule`` still counts, and when the oldest of them
    stops counting; a binary search over the newest ``rule.count`` timestamps."""
    low, high = 0, min(len(log), rule.count)  # the newest `low` count, past `high` do not
    while low < high:
        middle = (low + high + 1) // 2
        if _nth_newest(log, middle) + rule.window > now:
            low = middle
        else:
            high = middle - 1
    return low, (_nth_newest(log, low) + rule.window if low else now)


@lru_cache(maxsize=256)
def _state_suffix(rule: Rule) -> str:
    """Names a stateful rule's state within its scope."""
    return f"{_STATE_SEPARATOR}{rule.count}/{rule.window!r}/{rule.strategy}"


def _scope_key(client: str, scope: Scope) -> str:
    if scope.name == GLOBAL_SCOPE:
        return client
    return f"{client}{_ROUTE_SEPARATOR}{scope.name}"


class _Ban:
    """A client's ban: its end, how many bans it had lately (for escalation), and whether
    its end was set by hand (a manual ban names no rule in its refusal)."""

    __slots__ = ("end", "forget_at", "manual", "strikes")

    def __init__(self, end: float, strikes: int, forget_at: float, manual: bool) -> None:
        self.end = end
        self.strikes = strikes
        self.forget_at = forget_at
        self.manual = manual


def _exact(seconds: float) -> float:
    """A wait rounded to whole microseconds, as Redis computes it: float noise such as
    1.0000000000000002 must not turn into a Retry-After one second too long."""
    return round(seconds * MICROSECONDS) / MICROSECONDS


class _State:
    """One stateful rule's state as read for a request, its wait, and its next value."""

    __slots__ = ("key", "now", "rule", "shift", "state", "wait", "window")

    def __init__(
        self, key: str, rule: Rule, state: Optional[_Log], window: int, shift: int, now: float
    ) -> None:
        self.key, self.rule, self.state = key, rule, state
        self.window, self.shift, self.now = window, shift, microseconds(now)
        self.wait = seconds(self._call(strategies.check))

    def _call(self, function: Callable[..., T]) -> T:
        rule = self.rule
        return function(
            rule.strategy or "", self.state, rule.count, self.window, self.shift, self.now
        )

    def recorded(self) -> list[float]:
        """The state once this request is admitted."""
        return self._call(strategies.record)


class MemoryStorage:
    """The default storage: exact, thread-safe, bounded, with no timer thread.

    ``clock`` is injectable so tests move time instead of sleeping (see
    ``flask_gatekeeper.testing.FakeClock``). ``max_clients`` caps the number of tracked
    logs (one per client for the global rules, one per client and ``specific`` route, one
    per reported client); the least recently seen goes first. Bans live in a table of
    their own, capped at ``max_clients`` too: ended bans kept only for their history go
    first, then the soonest-ending, so an active ban is the last thing dropped.

    State lives in this process: every worker of a multi-process server has its own.
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
        self._bans: dict[str, _Ban] = {}

    def __repr__(self) -> str:
        return f"MemoryStorage(max_clients={self.max_clients})"

    @property
    def tracked(self) -> int:
        """How many logs are held now (at most ``max_clients``)."""
        return len(self._logs)

    def hit(
        self,
        client: str,
        scopes: Sequence[Scope],
        *,
        usage: bool = False,
        strike: Optional[BanRule] = None,
    ) -> Decision:
        with self._lock:
            now = self._clock()
            ban = self._bans.get(client)
            if ban is not None and ban.end > now:
                return Decision(
                    admitted=False,
                    banned=True,
                    retry_after=_exact(ban.end - now),
                    manual=ban.manual,
                )
            if not scopes:
                return ADMITTED
            logs = self._logs
            found: list[tuple[str, Optional[_Log], Scope]] = []
            states: list[_State] = []
            longest = 0.0
            worst: Optional[Rule] = None
            for scope in scopes:
                key = _scope_key(client, scope)
                if scope.logged:
                    log = logs.get(key)
                    found.append((key, log, scope))
                    if log is not None:
                        logs.move_to_end(key)
                        size, head = len(log), log.head
                        for rule in scope.logged:
                            if size >= rule.count:  # the count-th newest decides: one index
                                wait = log[(head - rule.count) % size] + rule.window - now
                                if wait > longest:
                                    longest, worst = wait, rule
                for rule in scope.stateful:
                    state = self._state(client, key, rule, now)
                    states.append(state)
                    if state.wait > longest:
                        longest, worst = state.wait, rule
            if worst is not None:
                longest = _exact(longest)
                return Decision(
                    admitted=False,
                    retry_after=longest,
                    rule=worst,
                    usage=Usage(worst, 0, longest) if usage else None,
                    new_ban=self._report(client, strike, now) if strike else None,
                )
            for key, log, scope in found:
                if log is None:
                    self._store(key, _new_log(now))
                else:
                    _append(log, scope.depth, now)
            for state in states:
                self._store(state.key, _Log("d", state.recorded()))
            if not usage:
                return ADMITTED
            return Decision(admitted=True, usage=self._closest(client, scopes, now))

    def _state(self, client: str, scope_key: str, rule: Rule, now: float) -> _State:
        """A stateful rule's state for this client and scope, and its wait."""
        key = scope_key + _state_suffix(rule)
        window = microseconds(rule.window)
        return _State(
            key, rule, self._logs.get(key), window, strategies.offset(client, window), now
        )

    def _store(self, key: str, log: _Log) -> None:
        """Put a new or replaced log or state in the table, evicting the least recent."""
        log.head = 0
        logs = self._logs
        logs[key] = log
        logs.move_to_end(key)
        if len(logs) > self.max_clients:
            logs.popitem(last=False)

    def _closest(self, client: str, scopes: Sequence[Scope], now: float) -> Usage:
        """The rule with the fewest requests left (then the longest reset)."""
        candidates = []
        for scope in scopes:
            key = _scope_key(client, scope)
            log = self._logs.get(key)
            for rule in scope.logged:
                used, oldest_free_at = _used(log, rule, now) if log is not None else (0, now)
                candidates.append(Usage(rule, rule.count - used, _exact(oldest_free_at - now)))
            for rule in scope.stateful:
                window = microseconds(rule.window)
                remaining, reset = strategies.usage(
                    rule.strategy or "",
                    self._logs.get(key + _state_suffix(rule)),
                    rule.count,
                    window,
                    strategies.offset(client, window),
                    microseconds(now),
                )
                candidates.append(Usage(rule, remaining, seconds(reset)))
        return min(candidates, key=lambda usage: (usage.remaining, -usage.reset))

    def report(self, client: str, ban_rule: BanRule) -> Optional[float]:
        with self._lock:
            return self._report(client, ban_rule, self._clock())

    def _report(self, client: str, ban_rule: BanRule, now: float) -> Optional[float]:
        key = client + _REPORTS_SUFFIX
        logs = self._logs
        log = logs.get(key)
        if log is None:
            self._store(key, log := _new_log(now))
        else:
            logs.move_to_end(key)
            _append(log, ban_rule.count, now)
        if len(log) < ban_rule.count or _nth_newest(log, ban_rule.count) + ban_rule.window <= now:
            return None
        del logs[key]
        previous = self._bans.get(client)
        earlier = previous.strikes if previous is not None and previous.forget_at > now else 0
        duration = ban_rule.duration_after(earlier)
        end, manual = now + duration, False
        if previous is not None and previous.end > end:
            end, manual = previous.end, previous.manual
        self._set_ban(client, _Ban(end, earlier + 1, end + ban_rule.forget_after, manual), now)
        return duration

    def _set_ban(self, client: str, ban: _Ban, now: float) -> None:
        """Store a ban, keeping the table bounded: past the cap, drop the ended bans kept
        only for their history, then the soonest-ending, down to 90% of the cap at once,
        so that the sweep's cost is shared by the next tenth of the cap's bans."""
        bans = self._bans
        bans[client] = ban
        if len(bans) <= self.max_clients:
            return
        for name in [name for name, old in bans.items() if old.end <= now]:
            del bans[name]
        excess = len(bans) - (self.max_clients - self.max_clients // 10)
        if excess > 0:
            ranked = sorted(bans, key=lambda name: (bans[name].end > now, bans[name].end))
            for name in ranked[:excess]:
                del bans[name]

    def ban(self, client: str, duration: float) -> None:
        with self._lock:
            now = self._clock()
            end = now + duration
            previous = self._bans.get(client)
            if previous is None:
                self._set_ban(client, _Ban(end, 0, end, manual=True), now)
            elif previous.end < end:
                forget_at = max(previous.forget_at, end)
                self._set_ban(client, _Ban(end, previous.strikes, forget_at, manual=True), now)

    def unban(self, client: str) -> bool:
        with self._lock:
            ban = self._bans.pop(client, None)
            return ban is not None and ban.end > self._clock()

    def banned_for(self, client: str) -> float:
        with self._lock:
            ban = self._bans.get(client)
            return max(0.0, ban.end - self._clock()) if ban is not None else 0.0

    def bans(self) -> dict[str, float]:
        with self._lock:
            now = self._clock()
            return {name: ban.end - now for name, ban in self._bans.items() if ban.end > now}

    def reset(self, client: str) -> None:
        with self._lock:
            self._bans.pop(client, None)
            prefixes = (client + _ROUTE_SEPARATOR, client + _STATE_SEPARATOR)
            for key in [
                key
                for key in self._logs
                if key in (client, client + _REPORTS_SUFFIX) or key.startswith(prefixes)
            ]:
                del self._logs[key]
