"""In-process storage: exact sliding logs in bounded memory, O(1) per request.

The decisions are ``model``'s (sliding-log rings, strategies' numbers, distinct values,
reports, bans and their escalation); this module keeps the model's states in tables and
runs it under one lock. Logs, states and values sit in one least-recently-used table
capped at ``max_clients``; bans live in their own table and are dropped only when they
end (or, beyond the cap, soonest-ending first). The slots of concurrency limits are
leases (token -> deadline) per client and scope, in a third table, capped the same way,
that holds only clients with requests in flight.

Network bans are entered in a registry, one table of networks and their ban's end per
(IP version, prefix length), from which ``network_lengths`` answers; the answer is kept
until a length's last ban ends or the registry changes, and read without the lock.

Times are whole microseconds (``units``), computed with the same expressions as the Redis
scripts, so both storages decide alike. A table key is the client's key itself (its
global log) or a tuple starting with it, so no client text can reach another's entries.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Optional

from .. import strategies
from ..decision import (
    ADMITTED,
    DEFAULT_OFFENCE,
    IN_FLIGHT_WAIT,
    MANUAL,
    RATE_LIMIT,
    REPORTS,
    SUBNET,
    BanDetail,
    Decision,
    NewBan,
    Reservation,
    ShadowRefusal,
    Usage,
)
from ..errors import ConfigError, ConfigTypeError
from ..identity.addresses import NO_LENGTHS, NetworkLengths, network_of
from ..rules import BanRule, Rule
from ..units import instant, microseconds, seconds
from .base import RECORD_DEPRECATED, BanSteps, Clock
from .model import (
    PLAN,
    Ban,
    DistinctRead,
    FloatArray,
    Log,
    RuleState,
    Seen,
    append,
    append_copies,
    ban_after_reports,
    ban_refusal,
    closest,
    distinct_usage,
    escalation,
    limited,
    longest_ban,
    longest_wait,
    manual_ban,
    new_log,
    plan_of,
    reports_complete,
    reservations,
    shadow_refusals,
    used,
    without_stamps,
)
from .plan import GLOBAL_SCOPE, Scope, within

__all__ = ["DEFAULT_MAX_CLIENTS", "MemoryStorage", "Saved", "SavedBan"]

DEFAULT_MAX_CLIENTS = 100_000
"""Default cap on tracked logs: about 32 MB under a flood of one-request clients, and at
most about 110 MB when every log is full with the seed's 100-request rule (measured by
``benchmarks/flood.py``; see the README)."""

_REPORTS = 0
"""Second item of a client's report log key, ``(client, _REPORTS)`` for the default
offence, ``(client, _REPORTS, offence)`` for another: not a scope name."""

_DISTINCT = 0
"""Third item of a distinct rule's key, ``(client, scope name, _DISTINCT, distinct id)``."""


def _scope_key(client: str, scope: Scope) -> Hashable:
    return client if scope.name == GLOBAL_SCOPE else (client, scope.name)


def _state_key(client: str, scope: Scope, rule: Rule) -> Hashable:
    """A stateful rule's key; a shadow rule's is its own, apart from an enforcing rule
    of the same count, window and strategy (Redis: ``/shadow`` ends its key)."""
    if rule.shadow:
        return (client, scope.name, rule.count, rule.window_us, rule.strategy, True)
    return (client, scope.name, rule.count, rule.window_us, rule.strategy)


def _distinct_key(client: str, scope: Scope, index: int) -> Hashable:
    return (client, scope.name, _DISTINCT, scope.distinct_ids[index])


def _reports_key(client: str, offence: str) -> Hashable:
    return (client, _REPORTS) if offence == DEFAULT_OFFENCE else (client, _REPORTS, offence)


def _belongs_to(key: Hashable, client: str) -> bool:
    return key == client or (type(key) is tuple and key[0] == client)


def _in_scope(key: Hashable, client: str, scope: str) -> bool:
    """Whether ``key`` holds ``client``'s log or a rule's state in ``scope``."""
    if key == client:
        return scope == GLOBAL_SCOPE
    if type(key) is not tuple or key[0] != client:
        return False
    return type(key[1]) is str and within(key[1], scope)  # not its reports (an int)


@dataclass(frozen=True)
class SavedBan:
    """A ban as ``MemoryStorage.saved`` gives it: times in microseconds of the storage's
    clock, ``strikes`` the bans it had lately (escalation) until ``forget_at``."""

    client: str
    start: int
    end: int
    strikes: int
    forget_at: int
    reason: str
    offence: Optional[str] = None


@dataclass(frozen=True)
class Saved:
    """What a restart should not forget (``state_file``): the bans that are in force or
    still remembered for escalation, and each reported client's recent reports (oldest
    first) of each offence, read at ``now`` (the storage's clock, microseconds) after
    ``changes``."""

    now: int
    changes: int
    bans: tuple[SavedBan, ...]
    reports: tuple[tuple[str, tuple[int, ...], str], ...]
    """(client, report times, offence)."""


class MemoryStorage:
    """The default storage: exact, thread-safe, bounded, with no timer thread.

    ``clock`` is injectable so tests move time instead of sleeping (see
    ``flask_gatekeeper.testing.FakeClock``). ``max_clients`` caps the number of tracked
    logs (one per client for the global rules, one per client and ``specific`` route, one
    per reported client); the least recently seen goes first. Bans live in a table of
    their own, capped at ``max_clients`` too: ended bans kept only for their history go
    first, then the soonest-ending, so an active ban is the last thing dropped, and the
    ban just made is never dropped by its own sweep.

    State lives in this process: every worker of a multi-process server has its own.
    """

    def __init__(self, *, max_clients: int = DEFAULT_MAX_CLIENTS, clock: Clock = time.monotonic):
        if isinstance(max_clients, bool) or not isinstance(max_clients, int):
            raise ConfigTypeError(f"max_clients must be a positive integer, got {max_clients!r}")
        if max_clients < 1:
            raise ConfigError(f"max_clients must be a positive integer, got {max_clients!r}")
        self.max_clients = max_clients
        self.clock = clock
        self._lock = threading.Lock()
        self._logs: OrderedDict[Hashable, Log] = OrderedDict()
        self._bans: dict[str, Ban] = {}
        self._networks: dict[tuple[int, int], dict[str, int]] = {}
        """The registry: (version, prefix length) -> banned network -> its ban's end."""
        self._lengths: tuple[int, NetworkLengths] = (0, NO_LENGTHS)
        """The registry's last answer, and until when it holds (0: ask again)."""
        self._flights: OrderedDict[tuple[str, str], dict[str, int]] = OrderedDict()
        """(client, scope name) -> the slots held there: token -> lease deadline."""
        self.changes = 0
        """How many times bans or reports changed: a state file saves when it moves."""
        self._reported: Optional[set[tuple[str, str]]] = None
        """Clients and offences whose reports a state file keeps (``saved``): found
        without a scan of every log under the lock. None until a state file asks
        (``track_reports``)."""

    def __repr__(self) -> str:
        return f"MemoryStorage(max_clients={self.max_clients})"

    def check(self) -> None:
        """The start-up check (see ``Storage``): nothing can be misconfigured here."""

    @property
    def tracked(self) -> int:
        """How many logs are held now (at most ``max_clients``)."""
        return len(self._logs)

    def _now(self) -> int:
        return instant(self.clock())

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
        with self._lock:
            now = instant(self.clock())
            ban = self._bans.get(client)
            if ban is not None:
                refused = ban_refusal(ban, now)
                if refused is not None:
                    return refused
            if also:
                bans = self._bans
                refused = longest_ban([(name, bans[name]) for name in also if name in bans], now)
                if refused is not None:
                    return refused
            if not scopes:
                return ADMITTED
            logs = self._logs
            if token is None and len(scopes) == 1:
                scope = scopes[0]
                try:
                    plan = scope.derived[PLAN]
                except KeyError:  # the scope's first request
                    plan = plan_of(scope)
            else:
                plan = None
            if plan is not None and plan.plain:
                # The common case, kept short (each call costs): one scope of sliding-log
                # rules (``Plan.plain``) that a tracked client's full ring admits is
                # decided and recorded in place; anything else as below. It saves about
                # 9,700 of the 24,000 instructions of an admitted call (callgrind, the
                # seed's two rules), and tests/test_memory_fast_path.py proves it
                # decides as the general path.
                who = scope.owner or client
                key = who if plan.named is None else (who, plan.named)  # _scope_key's
                log = logs.get(key)
                recorded = False
                if log is not None and len(log) == plan.ring:
                    logs.move_to_end(key)
                    head = log.head
                    depth = plan.ring
                    for needed, window, _ in plan.thresholds:
                        if log[(head - needed) % depth] + window > now:
                            break  # refused: longest_wait finds by which rule
                    else:
                        log[head] = now
                        log.head = (head + 1) % depth
                        recorded = True
                if not recorded:
                    wait, rule = longest_wait(log, plan.thresholds, now)
                    if rule is not None:
                        if log is not None:  # a refused request is seen too
                            logs.move_to_end(key)
                        refused = limited(wait, rule, scope.name, usage, None)
                        if report_to is None:
                            return refused
                        return self._strike(client, report_to, now, steps, refused, offence)
                    self._record_log(key, log, scope, now)
                if not usage:
                    return ADMITTED
                return Decision(admitted=True, usage=self._closest(client, scopes, now))
            found: list[tuple[Hashable, Optional[Log], Scope]] = []
            states: list[RuleState] = []
            distinct: list[DistinctRead] = []
            shadowed: list[ShadowRefusal] = []
            longest = 0.0
            worst: Optional[Rule] = None
            worst_scope = GLOBAL_SCOPE
            for scope in scopes:
                try:
                    plan = scope.derived[PLAN]
                except KeyError:
                    plan = plan_of(scope)
                who = scope.owner or client
                key = who if plan.named is None else (who, plan.named)  # _scope_key's
                if scope.logged:
                    log = logs.get(key)
                    found.append((key, log, scope))
                    if log is not None:
                        logs.move_to_end(key)
                    wait, rule = longest_wait(log, plan.thresholds, now)
                    if rule is not None and wait > longest:
                        longest, worst, worst_scope = wait, rule, scope.name
                    if plan.shadows:
                        shadowed += shadow_refusals(log, plan.shadows, now, scope)
                for rule in scope.stateful:
                    state_key = _state_key(who, scope, rule)
                    state = RuleState(state_key, who, rule, logs.get(state_key), now, scope)
                    states.append(state)
                    if state.wait > 0:  # (a shadow rule only when it would refuse: cheaper)
                        if rule.shadow:
                            shadowed.append(ShadowRefusal(rule, scope.name, seconds(state.wait)))
                        elif state.wait > longest:
                            longest, worst, worst_scope = state.wait, rule, scope.name
                if scope.distinct:
                    for seen in self._read_distinct(who, scope, now):
                        distinct.append(seen)
                        if seen.wait > 0:
                            if seen.rule.shadow:
                                would_wait = seconds(seen.wait)
                                shadowed.append(ShadowRefusal(seen.rule, scope.name, would_wait))
                            elif seen.wait > longest:
                                longest, worst, worst_scope = seen.wait, seen.rule, scope.name
            if worst is not None:
                refused = limited(longest, worst, worst_scope, usage, None)
                if report_to is None:
                    return refused
                return self._strike(client, report_to, now, steps, refused, offence)
            full = None if token is None else self._full(client, scopes, now)
            if full is not None:
                refused = Decision(
                    admitted=False,
                    retry_after=IN_FLIGHT_WAIT,
                    scope=full.name,
                    usage=self._closest(client, scopes, now) if usage else None,
                    concurrency=full.concurrency,
                )
                if report_to is None:
                    return refused
                return self._strike(client, report_to, now, steps, refused, offence)
            self._write(found, states, now, distinct)
            if token is not None:  # slots are the client's, never a scope owner's
                for scope in scopes:
                    if scope.concurrency:
                        self._take((client, scope.name), token, now + scope.lease_us)
            reserved = reservations(scopes, states, distinct, now)
            if not usage and not reserved and not shadowed:
                return ADMITTED
            closest = self._closest(client, scopes, now) if usage else None
            return Decision(
                admitted=True, usage=closest, reserved=reserved, shadowed=tuple(shadowed)
            )

    def _strike(
        self,
        client: str,
        report_to: BanRule,
        now: int,
        steps: Optional[BanSteps],
        refused: Decision,
        offence: str,
    ) -> Decision:
        """The refusal, counted as a report of ``offence`` toward ``report_to``
        (``new_ban``: the ban it started; with ``steps``, ``ban`` too: what followed it)."""
        duration = self._report(client, report_to, now, RATE_LIMIT, offence)
        if duration is None:
            return refused
        new = None if steps is None else self._after_ban(client, duration, now, steps)
        return replace(refused, new_ban=duration, ban=new)

    def report_steps(
        self,
        client: str,
        ban_rule: BanRule,
        reason: str,
        steps: Optional[BanSteps],
        offence: str = DEFAULT_OFFENCE,
    ) -> Optional[NewBan]:
        with self._lock:
            now = self._now()
            duration = self._report(client, ban_rule, now, reason, offence)
            if duration is None:
                return None
            if steps is None:
                return NewBan(duration)
            return self._after_ban(client, duration, now, steps)

    def _after_ban(self, client: str, duration: float, now: int, steps: BanSteps) -> NewBan:
        """What follows the ban that a report just made on ``client`` (``BanSteps``),
        under the same lock."""
        ban = self._bans[client]
        detail = ban.detail(now) if steps.details else None
        network = network_of(client) if steps.register else None
        if network is not None:
            self._register(client, network, ban.end)
        wider, addresses = steps.network, steps.addresses
        if wider is None or addresses is None or not self._escalate(client, steps, now):
            return NewBan(duration, detail)
        wider_detail = self._bans[wider].detail(now) if steps.details else None
        return NewBan(duration, detail, wider, wider_detail)

    def _escalate(self, client: str, steps: BanSteps, now: int) -> bool:
        """The subnet ban rule's step (``model.escalation``): True when it bans the
        network. ``steps.addresses`` is given for every client: ``client``, its value,
        is put in here, after a ban."""
        network, addresses = steps.network, steps.addresses
        assert network is not None  # see _after_ban
        assert addresses is not None
        previous = self._bans.get(network)
        (seen,) = self._read_distinct(network, replace(addresses, values=(client,)), now)
        record, ban_it = escalation(previous, seen, now)
        if record:
            self._store(seen.key, seen.recorded(now))
        if not ban_it:
            return False
        self._ban(network, now + microseconds(steps.duration), now, SUBNET)
        return True

    def _full(self, client: str, scopes: Sequence[Scope], now: int) -> Optional[Scope]:
        """The first scope whose concurrency limit the client's unexpired slots fill
        (expired ones go as they are met, as in Redis)."""
        for scope in scopes:
            if (
                scope.concurrency
                and self._in_flight((client, scope.name), now) >= scope.concurrency
            ):
                return scope
        return None

    def _in_flight(self, key: tuple[str, str], now: int) -> int:
        """How many unexpired slots the client holds in the scope (expired ones go)."""
        leases = self._flights.get(key)
        if leases is None:
            return 0
        for token in [token for token, deadline in leases.items() if deadline <= now]:
            del leases[token]
        if not leases:
            del self._flights[key]
        return len(leases)

    def _take(self, key: tuple[str, str], token: str, deadline: int) -> None:
        """Hold a slot until ``deadline``, evicting the least recent client's slots past
        ``max_clients``."""
        flights = self._flights
        leases = flights.get(key)
        if leases is None:
            leases = flights[key] = {}
            if len(flights) > self.max_clients:
                flights.popitem(last=False)
        else:
            flights.move_to_end(key)
        leases[token] = deadline

    def release(self, client: str, scope_names: Sequence[str], token: str) -> None:
        with self._lock:
            for name in scope_names:
                leases = self._flights.get((client, name))
                if leases is not None and leases.pop(token, None) is not None and not leases:
                    del self._flights[(client, name)]

    def record(self, client: str, scopes: Sequence[Scope]) -> None:
        """Deprecated: count the request in every rule of ``scopes``, checking nothing.
        ``hit`` records ``count_when`` routes' scopes itself now, and ``refund`` takes
        back what the response does not count."""
        warnings.warn(RECORD_DEPRECATED, DeprecationWarning, stacklevel=2)
        with self._lock:
            now = self._now()
            found: list[tuple[Hashable, Optional[Log], Scope]] = []
            states: list[RuleState] = []
            distinct: list[DistinctRead] = []
            for scope in scopes:
                who = scope.owner or client
                key = _scope_key(who, scope)
                if scope.logged:
                    found.append((key, self._logs.get(key), scope))
                for rule in scope.stateful:
                    key = _state_key(who, scope, rule)
                    states.append(RuleState(key, who, rule, self._logs.get(key), now, scope))
                distinct.extend(self._read_distinct(who, scope, now))
            self._write(found, states, now, distinct)

    def refund(self, client: str, scopes: Sequence[Scope], reserved: Sequence[Reservation]) -> None:
        with self._lock:
            now = self._now()
            for scope, reservation in zip(scopes, reserved):
                who, stamp = scope.owner or client, reservation.stamp
                if scope.logged and stamp + max(rule.window_us for rule in scope.logged) > now:
                    self._refund_log(_scope_key(who, scope), stamp, scope.cost)
                for rule, left in zip(scope.stateful, reservation.states):
                    state = self._logs.get(_state_key(who, scope, rule))
                    if state is not None:
                        strategy, window, cost = rule.strategy or "", rule.window_us, scope.cost
                        values = strategies.refund(
                            strategy, state, rule.count, window, now, cost, left
                        )
                        if values is not None:
                            state[:] = Log("d", values)
                for index, (value, added) in enumerate(zip(scope.values, reservation.added)):
                    if value is not None and added:
                        seen = self._logs.get(_distinct_key(who, scope, index))
                        # its own value, unless a request has seen it since (a Redis score)
                        if isinstance(seen, Seen) and seen.values.get(value) == stamp:
                            del seen.values[value]

    def _refund_log(self, key: Hashable, stamp: int, cost: int) -> None:
        """Take ``cost`` timestamps ``stamp`` out of the log at ``key``: the newest such,
        as Redis's ``LREM`` does (timestamps of one microsecond are interchangeable)."""
        log = self._logs.get(key)
        if log is None:
            return
        kept = without_stamps(log, stamp, cost)
        if kept is None:
            return
        if kept:
            log[:] = FloatArray("d", kept)
            log.head = 0
        else:
            del self._logs[key]

    def _read_distinct(self, client: str, scope: Scope, now: int) -> list[DistinctRead]:
        """The scope's distinct rules that apply to this request (it has a value for)."""
        read = []
        for index, (rule, value) in enumerate(zip(scope.distinct, scope.values)):
            if value is not None:
                key = _distinct_key(client, scope, index)
                read.append(DistinctRead(key, rule, self._logs.get(key), value, now, scope))
        return read

    def _write(
        self,
        found: list[tuple[Hashable, Optional[Log], Scope]],
        states: list[RuleState],
        now: int,
        distinct: list[DistinctRead],
    ) -> None:
        """Record the request, ``cost`` times, in the logs and states read for it, and
        its values in the distinct rules it has one for."""
        for key, log, scope in found:
            self._record_log(key, log, scope, now)
        for state in states:
            self._store(state.key, state.recorded(now))
        for seen in distinct:
            self._store(seen.key, seen.recorded(now))

    def _record_log(self, key: Hashable, log: Optional[Log], scope: Scope, now: int) -> None:
        """Record the request, ``cost`` times, in the scope's log (``log``, read at
        ``key``; a new one when None)."""
        if log is None:
            self._store(key, log := new_log(now))
            repeats = scope.cost - 1
        else:
            self._logs.move_to_end(key)
            repeats = scope.cost
        if repeats == 1:
            append(log, scope.depth, now)
        elif repeats:
            append_copies(log, scope.depth, now, repeats)

    def _store(self, key: Hashable, log: Log) -> None:
        """Put a new or replaced log or state in the table, evicting the least recent."""
        log.head = 0
        logs = self._logs
        logs[key] = log
        logs.move_to_end(key)
        if len(logs) > self.max_clients:
            logs.popitem(last=False)

    def _closest(self, client: str, scopes: Sequence[Scope], now: int) -> Optional[Usage]:
        """The rule with the fewest requests left (then the longest reset); None when the
        scopes have no rules (only concurrency limits)."""
        return closest(self._usages(client, scopes, now))

    def _usages(self, client: str, scopes: Sequence[Scope], now: int) -> list[Usage]:
        """Every rule's usage, in the order of the scopes and their rules (logged, then
        stateful, then distinct)."""
        usages = []
        for scope in scopes:
            who = scope.owner or client
            log = self._logs.get(_scope_key(who, scope))
            for rule in scope.logged:
                counted, reset = used(log, rule, now)
                usages.append(Usage(rule, rule.count - counted, seconds(reset), scope.name))
            for rule in scope.stateful:
                key = _state_key(who, scope, rule)
                state = RuleState(key, who, rule, self._logs.get(key), now, scope)
                usages.append(state.usage(scope, now))
            for index, rule in enumerate(scope.distinct):
                seen = self._logs.get(_distinct_key(who, scope, index))
                usages.append(distinct_usage(seen, rule, scope, now))
        return usages

    def usage(self, client: str, scopes: Sequence[Scope]) -> list[Usage]:
        with self._lock:
            return self._usages(client, scopes, self._now())

    def report(
        self,
        client: str,
        ban_rule: BanRule,
        reason: str = REPORTS,
        offence: str = DEFAULT_OFFENCE,
    ) -> Optional[float]:
        with self._lock:
            return self._report(client, ban_rule, self._now(), reason, offence)

    def _report(
        self, client: str, ban_rule: BanRule, now: int, reason: str, offence: str
    ) -> Optional[float]:
        self.changes += 1
        key = _reports_key(client, offence)
        logs = self._logs
        log = logs.get(key)
        if log is None:
            self._store(key, log := new_log(now))
            if self._reported is not None:
                self._reported.add((client, offence))
        else:
            logs.move_to_end(key)
            append(log, ban_rule.count, now)
        if not reports_complete(log, ban_rule, now):
            return None
        del logs[key]
        ban, duration = ban_after_reports(self._bans.get(client), ban_rule, now, reason, offence)
        self._set_ban(client, ban, now)
        return seconds(duration)

    def _set_ban(self, client: str, ban: Ban, now: int) -> None:
        """Store a ban, keeping the table bounded: past the cap, drop the ended bans kept
        only for their history, then the soonest-ending, down to 90% of the cap at once,
        so that the sweep's cost is shared by the next tenth of the cap's bans. The ban
        being stored is never dropped: a ban that was just reported is in force."""
        self.changes += 1
        bans = self._bans
        bans[client] = ban
        if len(bans) <= self.max_clients:
            return
        for name in [name for name, old in bans.items() if old.end <= now and name != client]:
            del bans[name]
        excess = len(bans) - (self.max_clients - self.max_clients // 10)
        if excess > 0:
            others = [name for name in bans if name != client]
            others.sort(key=lambda name: (bans[name].end > now, bans[name].end))
            for name in others[:excess]:
                del bans[name]
                self._unregister(name)

    def ban(
        self, client: str, duration: float, reason: str = MANUAL, offence: str = DEFAULT_OFFENCE
    ) -> None:
        with self._lock:
            now = self._now()
            self._ban(client, now + microseconds(duration), now, reason, offence)

    def _ban(
        self, client: str, end: int, now: int, reason: str, offence: str = DEFAULT_OFFENCE
    ) -> None:
        """``ban``'s step, under the lock: a ban until ``end`` unless a longer one stands,
        entered in the registry when ``client`` is a network."""
        ban = manual_ban(self._bans.get(client), now, end, reason, offence)
        if ban is not None:
            self._set_ban(client, ban, now)
        network = network_of(client)
        if network is not None:
            self._register(client, network, self._bans[client].end)

    def unban(self, client: str) -> bool:
        with self._lock:
            ban = self._bans.pop(client, None)
            self._unregister(client)
            self.changes += 1
            return ban is not None and ban.end > self._now()

    def _register(self, client: str, network: tuple[int, int], end: int) -> None:
        """Enter a network's ban, ending at ``end``, in the registry."""
        networks = self._networks.setdefault(network, {})
        networks[client] = max(end, networks.get(client, 0))
        self._lengths = (0, NO_LENGTHS)

    def _unregister(self, client: str) -> None:
        """Take ``client`` out of the registry, if it is a network there."""
        network = network_of(client)
        if network is not None and client in self._networks.get(network, ()):
            del self._networks[network][client]
            self._lengths = (0, NO_LENGTHS)

    def network_lengths(self, *, cached: bool = False) -> NetworkLengths:
        if not self._networks:  # the common case: no network was ever banned, or none is
            return NO_LENGTHS
        now = self._now()
        until, lengths = self._lengths  # one tuple, replaced whole: read without the lock
        if now < until:
            return lengths
        with self._lock:
            ends = {}
            for length, networks in list(self._networks.items()):
                live = {name: end for name, end in networks.items() if end > now}
                if live:
                    self._networks[length] = live
                    ends[length] = max(live.values())
                else:
                    del self._networks[length]
            lengths = frozenset(ends)
            self._lengths = (min(ends.values(), default=0), lengths)
            return lengths

    def banned_for(self, client: str) -> float:
        with self._lock:
            ban = self._bans.get(client)
            return seconds(max(0, ban.end - self._now())) if ban is not None else 0.0

    def bans(self) -> dict[str, float]:
        with self._lock:
            now = self._now()
            return {
                name: seconds(ban.end - now) for name, ban in self._bans.items() if ban.end > now
            }

    def ban_details(self) -> dict[str, BanDetail]:
        with self._lock:
            now = self._now()
            return {name: ban.detail(now) for name, ban in self._bans.items() if ban.end > now}

    def ban_detail(self, client: str) -> Optional[BanDetail]:
        with self._lock:
            now = self._now()
            ban = self._bans.get(client)
            return ban.detail(now) if ban is not None and ban.end > now else None

    def reset(self, client: str, scope: Optional[str] = None) -> None:
        with self._lock:
            if scope is None:
                self._bans.pop(client, None)
                self._unregister(client)
                self.changes += 1
                doomed = [key for key in self._logs if _belongs_to(key, client)]
            else:
                doomed = [key for key in self._logs if _in_scope(key, client, scope)]
            flights = [
                (who, name)
                for who, name in self._flights
                if who == client and (scope is None or within(name, scope))
            ]
            for key in doomed:
                del self._logs[key]
            for flight in flights:
                del self._flights[flight]

    def track_reports(self) -> None:
        """From now on, note which clients have reports, for ``saved`` (a state file)."""
        with self._lock:
            if self._reported is None:
                self._reported = {
                    (key[0], key[2] if len(key) > 2 else DEFAULT_OFFENCE)
                    for key in self._logs
                    if type(key) is tuple and key[1] == _REPORTS
                }

    def saved(self) -> Saved:
        """The bans and reports to keep across a restart (``state_file``); request logs,
        states and slots are left out: they matter for a window, not past a restart.
        Reports only once ``track_reports`` was called: the lock is held for the bans and
        the reported clients, never for a scan of every log."""
        with self._lock:
            now = self._now()
            bans = tuple(
                SavedBan(
                    name, ban.start, ban.end, ban.strikes, ban.forget_at, ban.reason, ban.offence
                )
                for name, ban in self._bans.items()
                if ban.end > now or ban.strikes_at(now)
            )
            reports = []
            reported = self._reported or set()
            for client, offence in list(reported):
                log = self._logs.get(_reports_key(client, offence))
                if log is None:  # banned (its reports start afresh), reset, or evicted
                    reported.discard((client, offence))
                    continue
                stamps = tuple(int(t) for t in (*log[log.head :], *log[: log.head]))
                reports.append((client, stamps, offence))
            return Saved(now, self.changes, bans, tuple(reports))

    def restore(self, saved: Saved) -> None:
        """Take back what ``saved`` gave, its times already on this storage's clock: each
        ban (a network's enters the registry) and each report log."""
        with self._lock:
            now = self._now()
            for ban in saved.bans:
                stored = Ban(
                    ban.start, ban.end, ban.strikes, ban.forget_at, ban.reason, ban.offence
                )
                self._set_ban(ban.client, stored, now)
                network = network_of(ban.client)
                if network is not None and ban.end > now:
                    self._register(ban.client, network, ban.end)
            for client, stamps, offence in saved.reports:
                if stamps:
                    log = Log("d", stamps)
                    self._store(_reports_key(client, offence), log)
                    if self._reported is not None:  # saved again by the next save
                        self._reported.add((client, offence))
