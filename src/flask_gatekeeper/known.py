"""Refusals a shared storage made, answered again by this process without asking it.

Under attack, most requests come from clients the storage has already refused: banned
until a known end, or rate limited until a known time. With Redis, asking again costs a
round trip each time and turns the storage into the bottleneck. ``KnownRefusals``
remembers each refusal, what it covered, and until when, and answers a request it covers
at once, with the same decision the storage would give.

It stays exact because a refused request is never counted: until the refusal's end,
nothing another process does can admit what it covered, except an operator (``unban``,
``reset``), and every operator action bumps a shared count of changes
(``RedisStorage.operator_changes``). While a process remembers anything, it reads that
count at most once a second and forgets everything when the count moved: an operator's
action reaches every process within about a second (at once in the process that made
it). A refusal is remembered only when the count was read within the second before it
was made, so no action can fall between the two unseen; while nobody is refused, the
count is not read at all (an admitted request stays one round trip).

What one refusal covers:

- a ban: every request of that key (the client's own, or the key a refusal named, such
  as a network or the address behind a ``key_func`` key, when a later request names it
  among its ``also``);
- a rate-limit refusal: requests of the same key in the same scope, whose rules still
  include the refusing rule, with at least the same cost (a smaller cost may fit where a
  larger one did not; another scope's or another key's rules are their own).

Never remembered, because something other than time or an operator can end them: refusals
by a distinct rule (another value may fit), by a concurrency limit (a request ends), in a
``count_when`` scope (a refund gives room back), and every rate-limit refusal when each
429 must count as a report (``report_rate_limited``).

A ban this process makes (a report, ``gk.ban``, a 429 counted as a report) forgets the
client's remembered 429s at once, so its next request meets the ban. A ban another
process makes reaches this one when the client's remembered refusal ends: until then the
client keeps getting the 429 it was getting (refused either way; only the status and
body differ).

The memory is bounded (``KNOWN_REFUSALS`` banned keys and as many rate-limited ones,
least recently used out) and consulted under one lock; it holds nothing while nobody is
refused.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Callable, NamedTuple, Optional, TypeVar

from .decision import Decision, Usage
from .errors import StorageError
from .rules import Rule
from .storage.base import Clock
from .storage.plan import Scope
from .units import MICROSECONDS, instant, seconds

__all__ = ["CHECK_INTERVAL", "KNOWN_REFUSALS", "KnownRefusals"]

KNOWN_REFUSALS = 10_000
"""Keys kept of each kind (banned, rate limited): about 6 MB when both are full."""

CHECK_INTERVAL = 1.0
"""Seconds between two reads of the storage's count of operator changes."""


class _Ban(NamedTuple):
    end: int
    manual: bool
    offence: Optional[str] = None
    """``Decision.offence``: the refusal names that offence's ban rule."""


class _Limited(NamedTuple):
    end: int
    rule: Rule
    cost: int


class KnownRefusals:
    """One app's remembered refusals (see the module's docstring).

    ``changes`` reads the storage's shared count of operator actions (one call); ``clock``
    is the one ``retry_after`` is measured on (the storage's injected clock in tests).
    ``limits``: whether rate-limit refusals are remembered too (not when every 429 must
    reach the storage to count as a report).
    """

    def __init__(
        self,
        changes: Callable[..., Optional[int]],
        clock: Clock,
        *,
        limits: bool = True,
        size: int = KNOWN_REFUSALS,
    ) -> None:
        self._changes = changes
        self._clock = clock
        self._limits = limits
        self._size = size
        self._bans: OrderedDict[str, _Ban] = OrderedDict()
        self._limited: OrderedDict[str, dict[str, _Limited]] = OrderedDict()
        """Key -> scope name -> the rate-limit refusal remembered there."""
        self._seen: Optional[int] = None
        """The count of changes what is remembered was learned under, and when it was
        read (on ``clock``)."""
        self._seen_at = -math.inf
        self._lock = threading.Lock()

    def refusal(
        self,
        client: str,
        scopes: Sequence[Scope],
        also: Sequence[str] = (),
        usage: bool = False,
    ) -> Optional[Decision]:
        """The storage's refusal of this request, when a remembered one covers it; None
        to ask the storage. At most once a second, the count of changes is read first."""
        if not self._bans and not self._limited:
            return None  # nobody refused: nothing to check, no call
        clock = self._clock()
        if clock - self._seen_at >= CHECK_INTERVAL:
            self._check(clock)
        now = instant(clock)  # whole microseconds, as the storages count
        with self._lock:
            banned = self._banned(client, also, now)
            if banned is not None or not self._limits:
                return banned
            limited = self._limited
            for scope in scopes:
                who = scope.owner or client
                per_scope = limited.get(who)
                if per_scope is None:
                    continue
                known = per_scope.get(scope.name)
                if known is None:
                    continue
                if known.end <= now:
                    del per_scope[scope.name]
                elif scope.cost >= known.cost and known.rule in scope.rules:
                    limited.move_to_end(who)
                    wait = seconds(known.end - now)
                    seen = Usage(known.rule, 0, wait, scope.name) if usage else None
                    return Decision(
                        admitted=False,
                        retry_after=wait,
                        rule=known.rule,
                        scope=scope.name,
                        usage=seen,
                    )
        return None

    def _banned(self, client: str, also: Sequence[str], now: int) -> Optional[Decision]:
        """The client's own ban decides; else the longest of ``also``'s (as a storage)."""
        bans = self._bans
        longest: Optional[tuple[int, str, _Ban]] = None
        for name in (client, *also):
            ban = bans.get(name)
            if ban is None:
                continue
            if ban.end <= now:
                del bans[name]
                continue
            bans.move_to_end(name)
            if name == client:
                return Decision(
                    admitted=False,
                    banned=True,
                    retry_after=seconds(ban.end - now),
                    manual=ban.manual,
                    offence=ban.offence,
                )
            if longest is None or ban.end > longest[0]:
                longest = (ban.end, name, ban)
        if longest is None:
            return None
        end, name, ban = longest
        return Decision(
            admitted=False,
            banned=True,
            retry_after=seconds(end - now),
            manual=ban.manual,
            banned_as=name,
            offence=ban.offence,
        )

    def learn(self, client: str, scopes: Sequence[Scope], decision: Decision) -> None:
        """Remember what the storage's refusal ``decision`` of this request covers."""
        if decision.admitted:
            return
        clock = self._clock()
        changes = self._changes(cached=True)
        if changes is None:
            # The count must have been read before the decision was made (its call reads
            # it along, once a second), or an operator action between the two would go
            # unseen: read it now, and remember from the next refusal on.
            self._check(clock)
            return
        self._seen_now(changes, clock)
        end = instant(clock) + round(decision.retry_after * MICROSECONDS)  # exact: whole µs
        with self._lock:
            if decision.banned:
                ban = _Ban(end, decision.manual, decision.offence)
                _put(self._bans, decision.banned_as or client, ban, self._size)
                return
            rule = decision.rule
            if not self._limits or rule is None or rule.distinct is not None:
                return  # a concurrency limit's, or a distinct rule's: not time's alone
            scope = next((scope for scope in scopes if scope.name == decision.scope), None)
            if scope is None or scope.deferred:
                return
            who = scope.owner or client
            per_scope = self._limited.get(who) or {}
            per_scope[scope.name] = _Limited(end, rule, scope.cost)
            _put(self._limited, who, per_scope, self._size)

    def forget(self, client: Optional[str] = None) -> None:
        """Forget every refusal (an operator changed bans or counters), or only those of
        ``client`` (this process banned it: its 429s would hide the ban's 403)."""
        with self._lock:
            if client is None:
                self._bans.clear()
                self._limited.clear()
            else:
                self._bans.pop(client, None)
                self._limited.pop(client, None)

    def _check(self, now: float) -> None:
        """Read the storage's count of changes (its copy, when another call read it
        within the second; else one call); forget everything when it moved. A storage
        that does not answer leaves things as they are (its request's own call meets the
        outage)."""
        changes = self._changes(cached=True)
        if changes is None:
            try:
                changes = self._changes()
            except StorageError:
                # Down: what is remembered stands (and keeps refusing during the outage),
                # asked again a second later, never by every request.
                self._seen_at = now
                return
        if changes is not None:
            self._seen_now(changes, now)

    def _seen_now(self, changes: int, now: float) -> None:
        """The count is ``changes`` as of about ``now``: forget everything if it moved."""
        if changes != self._seen:
            self.forget()
            self._seen = changes
        self._seen_at = now


K = TypeVar("K")
V = TypeVar("V")


def _put(table: OrderedDict[K, V], key: K, value: V, size: int) -> None:
    """Remember ``value`` as the most recent, dropping the least recent past ``size``."""
    table[key] = value
    table.move_to_end(key)
    if len(table) > size:
        table.popitem(last=False)
