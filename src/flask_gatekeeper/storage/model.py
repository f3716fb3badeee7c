"""The decision model: what one storage call decides, as pure Python.

State in, decision and new state out: no locks, no I/O, no clock (``now`` is given, in
whole microseconds, ``units``). The memory storage keeps these states in its tables and
runs these functions under its lock; the Redis scripts compute the same expressions on
the same numbers (``storage/redis/lua``, whose constants ``redis/scripts.py`` writes from
Python), and the differential test holds the two to it.

The state of a client, per kind:

- a sliding-log scope: a ``Log``, the newest ``depth`` timestamps in a ring, so that a
  rule ``(count, window)`` is full exactly when the count-th newest timestamp is
  younger than ``window``: one index, whatever the count (``longest_wait``);
- a rule of another strategy: its few numbers (``strategies``), in a ``Log`` too;
- a distinct rule: the values seen within its window, each with when it was last
  seen (``Seen``, at most ``count`` of them);
- reports: a ``Log`` of the newest ``count`` report times of the ban rule;
- a ban: ``Ban``, with the bans it had lately, for escalation.

For speed, a recorded request updates the ``Log`` it was given in place (``append``):
the new state is the same object, which the caller owns.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Optional

from .. import strategies
from ..decision import (
    BY_NO_BAN_RULE,
    DEFAULT_OFFENCE,
    BanDetail,
    Decision,
    Reservation,
    ShadowRefusal,
    Usage,
)
from ..rules import BanRule, Rule
from ..units import microseconds, seconds
from .plan import GLOBAL_SCOPE, Scope

__all__ = [
    "PLAN",
    "Ban",
    "DistinctRead",
    "FloatArray",
    "Log",
    "Plan",
    "RuleState",
    "Seen",
    "Thresholds",
    "append",
    "append_copies",
    "ban_after_reports",
    "ban_refusal",
    "closest",
    "distinct_usage",
    "escalation",
    "limited",
    "live",
    "longest_ban",
    "longest_wait",
    "manual_ban",
    "new_log",
    "nth_newest",
    "plan_of",
    "reports_complete",
    "reservations",
    "shadow_refusals",
    "used",
    "without_stamps",
]


if TYPE_CHECKING:
    FloatArray = array[float]
else:  # array is subscriptable at run time only from Python 3.12
    FloatArray = array


class Log(FloatArray):
    """Timestamps (whole microseconds, held exactly in doubles) in a ring: ``head`` is the
    oldest once full, 0 while still growing. (A stateful rule's numbers use the same
    type, with ``head`` unused.)"""

    __slots__ = ("head",)
    head: int


class Seen(Log):
    """A distinct rule's values: value -> when last seen (microseconds), oldest first.
    (A ``Log`` whose array stays empty, so that it sits in the one table.)"""

    __slots__ = ("values",)
    values: OrderedDict[str, int]


def live(log: Optional[Log], window: int, now: int) -> Seen:
    """A distinct rule's values with those out of the ``window`` dropped (a new, empty
    one for a client that has none)."""
    if not isinstance(log, Seen):
        log = Seen("d")
        log.values = OrderedDict()
        return log
    values = log.values
    while values:
        oldest = next(iter(values.values()))
        if oldest + window > now:
            break
        values.popitem(last=False)
    return log


def new_log(now: int) -> Log:
    log = Log("d", (now,))
    log.head = 0
    return log


def nth_newest(log: Log, n: int) -> float:
    """The n-th newest timestamp (1 = newest); the caller checks that ``len(log) >= n``."""
    return log[(log.head - n) % len(log)]


def append(log: Log, depth: int, now: int) -> None:
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


def append_copies(log: Log, depth: int, now: int, times: int) -> None:
    """``append`` ``times`` times, a slice at a time: at most the log's length is
    written (further copies would only overwrite copies), so a request of a large cost
    takes time in proportion to the largest count, not to its cost."""
    size = len(log)
    if size < depth:
        if log.head:  # the rules grew since the ring filled: unroll it first (rare)
            log[:] = log[log.head :] + log[: log.head]
            log.head = 0
        grow = min(times, depth - size)
        log.extend(array("d", (now,)) * grow)
        times -= grow
        size += grow
    times = min(times, size)
    head = log.head
    end = head + times
    wrapped = max(0, end - size)
    log[head : end - wrapped] = array("d", (now,)) * (times - wrapped)
    log[:wrapped] = array("d", (now,)) * wrapped
    log.head = end % size


Thresholds = tuple[tuple[int, int, Rule], ...]


class Plan:
    """What this storage derives from a scope, once per scope object (kept in its
    ``derived`` table, so that a request reads it in one lookup).

    ``thresholds``: for each sliding-log rule, which timestamp decides (the n-th
    newest: the request is refused while it is within the window; n < 1 when the cost
    is over the count), the window in microseconds, and the rule. ``plain``: only
    sliding-log rules, each able to admit the cost, recorded at once and without slots:
    the one-scope case that ``hit`` decides on a short path. ``shadows``: the
    thresholds of its shadow sliding-log rules, which never refuse (``thresholds`` holds
    only the others); a scope with shadow rules is never ``plain``."""

    __slots__ = ("named", "plain", "ring", "shadows", "thresholds")

    def __init__(self, scope: Scope) -> None:
        cost = scope.cost
        self.named = None if scope.name == GLOBAL_SCOPE else scope.name
        """The scope's name in its logs' keys (None: the global scope's are the keys)."""
        self.ring = scope.depth if cost == 1 else -1
        """The length of a full log that a request of cost 1 records in place (-1: none)."""
        thresholds = tuple((rule.count - cost + 1, rule.window_us, rule) for rule in scope.logged)
        self.thresholds = tuple(each for each in thresholds if not each[2].shadow)
        self.shadows = tuple(each for each in thresholds if each[2].shadow)
        plain = bool(self.thresholds) and all(needed >= 1 for needed, _, _ in self.thresholds)
        self.plain = plain and not (
            scope.stateful or scope.distinct or scope.deferred or scope.concurrency or scope.shadow
        )


PLAN = "memory"
"""The name this storage's ``Plan`` of a scope is kept under in ``Scope.derived``."""


def plan_of(scope: Scope) -> Plan:
    plan: Optional[Plan] = scope.derived.get(PLAN)
    if plan is None:
        plan = scope.derived[PLAN] = Plan(scope)
    return plan


def longest_wait(
    log: Optional[Log], thresholds: Thresholds, now: int
) -> tuple[float, Optional[Rule]]:
    """The longest wait, in microseconds, that a scope's sliding-log rules (its plan's
    ``thresholds``) impose on a request of the scope's cost, and the rule that imposes
    it; (0, None) when they all admit it. One index per rule, whatever its count."""
    longest: float = 0
    worst = None
    size, head = (0, 0) if log is None else (len(log), log.head)
    for needed, window, rule in thresholds:
        wait: float
        if needed < 1:  # more than the rule ever admits
            wait = window
        elif log is not None and size >= needed:
            wait = log[(head - needed) % size] + window - now
        else:
            continue
        if wait > longest:
            longest, worst = wait, rule
    return longest, worst


def shadow_refusals(
    log: Optional[Log], shadows: Thresholds, now: int, scope: Scope
) -> list[ShadowRefusal]:
    """The shadow sliding-log rules (a plan's ``shadows``) that would refuse a request of
    the scope's cost, each with its wait, as ``longest_wait`` finds it for one rule."""
    refusals = []
    for threshold in shadows:
        wait, rule = longest_wait(log, (threshold,), now)
        if rule is not None:
            refusals.append(ShadowRefusal(rule, scope.name, seconds(wait)))
    return refusals


def used(log: Optional[Log], rule: Rule, now: int) -> tuple[int, int]:
    """How many of the log's requests ``rule`` still counts, and the microseconds until
    the oldest of them stops counting; a binary search over the newest ``rule.count``."""
    if log is None:
        return 0, 0
    low, high = 0, min(len(log), rule.count)  # the newest `low` count, past `high` do not
    while low < high:
        middle = (low + high + 1) // 2
        if nth_newest(log, middle) + rule.window_us > now:
            low = middle
        else:
            high = middle - 1
    return low, (int(nth_newest(log, low)) + rule.window_us - now if low else 0)


class Ban:
    """A client's ban, in microseconds: when it started and ends, why (``reason``; a
    "manual" ban names no rule in its refusal), the ``offence`` whose reports made it
    (None: made without a ban rule), and how many bans it had lately (for escalation,
    whatever their offence) until ``forget_at``."""

    __slots__ = ("end", "forget_at", "offence", "reason", "start", "strikes")

    def __init__(
        self,
        start: int,
        end: int,
        strikes: int,
        forget_at: int,
        reason: str,
        offence: Optional[str] = None,
    ) -> None:
        self.start = start
        self.end = end
        self.strikes = strikes
        self.forget_at = forget_at
        self.reason = reason
        self.offence = None if reason in BY_NO_BAN_RULE else offence or DEFAULT_OFFENCE

    @property
    def manual(self) -> bool:
        """Made without the ban rule (by hand, or by the subnet ban rule)."""
        return self.reason in BY_NO_BAN_RULE

    def detail(self, now: int) -> BanDetail:
        return BanDetail(
            seconds(self.end - now),
            seconds(now - self.start),
            self.reason,
            self.strikes,
            self.offence,
        )

    def strikes_at(self, now: int) -> int:
        """The bans still remembered at ``now`` (none once ``forget_at`` has passed)."""
        return self.strikes if self.forget_at > now else 0


class RuleState:
    """One stateful rule's state as read for a request, and its wait in microseconds."""

    __slots__ = ("cost", "key", "left", "rule", "scope", "shift", "state", "wait")

    def __init__(
        self, key: Hashable, client: str, rule: Rule, state: Optional[Log], now: int, scope: Scope
    ):
        self.key, self.rule, self.state, self.scope = key, rule, state, scope
        cost = self.cost = scope.cost
        self.shift = strategies.offset(client, rule.window_us)
        if cost > rule.count:  # more than the rule ever admits
            self.wait = rule.window_us
        else:
            self.wait = strategies.check(
                rule.strategy or "", state, rule.count, rule.window_us, self.shift, now, cost
            )

    def recorded(self, now: int) -> Log:
        """The state once this request is admitted; ``left`` keeps its first number."""
        rule = self.rule
        values = strategies.record(
            rule.strategy or "", self.state, rule.count, rule.window_us, self.shift, now, self.cost
        )
        self.left = values[0]
        return Log("d", values)

    def usage(self, scope: Scope, now: int) -> Usage:
        rule = self.rule
        remaining, reset = strategies.usage(
            rule.strategy or "", self.state, rule.count, rule.window_us, self.shift, now
        )
        return Usage(rule, remaining, seconds(reset), scope.name)


class DistinctRead:
    """One distinct rule's values as read for a request that has ``value`` for it, and
    the wait in microseconds until a new value fits (0 for a value seen in the window)."""

    __slots__ = ("added", "key", "log", "rule", "scope", "value", "wait")

    def __init__(
        self, key: Hashable, rule: Rule, log: Optional[Log], value: str, now: int, scope: Scope
    ):
        self.key, self.rule, self.value, self.scope = key, rule, value, scope
        self.log = log = live(log, rule.window_us, now)
        values = log.values
        self.added = value not in values
        self.wait = 0
        if self.added and len(values) >= rule.count:
            self.wait = next(iter(values.values())) + rule.window_us - now

    def recorded(self, now: int) -> Seen:
        """The values once this request is admitted: its value seen ``now``, and the
        newest ``count`` kept (more only after a smaller count, or recordings after the
        response; ties go by the values' UTF-8 bytes, as in a Redis sorted set)."""
        values = self.log.values
        values[self.value] = now
        values.move_to_end(self.value)
        excess = len(values) - self.rule.count
        if excess > 0:
            order = sorted(values.items(), key=lambda item: (item[1], _utf8(item[0])))
            for value, _ in order[:excess]:
                del values[value]
        return self.log


def reservations(
    scopes: Sequence[Scope], states: list[RuleState], distinct: list[DistinctRead], now: int
) -> tuple[Reservation, ...]:
    """What a recorded request reserved in each deferred scope, from the states and
    values it recorded there."""
    reserved = []
    for scope in scopes:
        if scope.deferred:
            left = tuple(state.left for state in states if state.scope is scope)
            seen = iter([each.added for each in distinct if each.scope is scope])
            # ``_read_distinct`` read only the rules this request has a value for
            added = tuple(value is not None and next(seen) for value in scope.values)
            reserved.append(Reservation(now, left, added))
    return tuple(reserved)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def distinct_usage(log: Optional[Log], rule: Rule, scope: Scope, now: int) -> Usage:
    """Values left (the count less the live values) and microseconds until the oldest
    live value leaves the window."""
    values = live(log, rule.window_us, now).values
    reset = next(iter(values.values())) + rule.window_us - now if values else 0
    return Usage(rule, max(0, rule.count - len(values)), seconds(reset), scope.name)


def ban_refusal(ban: Optional[Ban], now: int, name: Optional[str] = None) -> Optional[Decision]:
    """The refusal by ``ban`` while it is in force (``name``: the banned client, when
    it is not the request's own), else None."""
    if ban is None or ban.end <= now:
        return None
    return Decision(
        admitted=False,
        banned=True,
        retry_after=seconds(ban.end - now),
        manual=ban.manual,
        banned_as=name,
        offence=None if ban.offence == DEFAULT_OFFENCE else ban.offence,
    )


def longest_ban(bans: Iterable[tuple[str, Ban]], now: int) -> Optional[Decision]:
    """The refusal by the longest of the bans in force among ``bans`` (the other
    clients that refuse a request: the first of equal ends), naming its client."""
    live = [(ban.end, name, ban) for name, ban in bans if ban.end > now]
    if not live:
        return None
    _, name, ban = max(live, key=lambda item: item[0])
    return ban_refusal(ban, now, name)


def limited(
    wait: float, rule: Rule, scope_name: str, usage: bool, new_ban: Optional[float]
) -> Decision:
    """The refusal by ``rule`` (of the scope ``scope_name``), which makes the client wait
    ``wait`` microseconds; ``new_ban``: the ban it started, counted as a report."""
    wait_seconds = seconds(wait)
    # By position, each field named: a class called with keywords packs them in a dict
    # first, about 2,800 instructions more on every 429 (callgrind, memory storage); the
    # Decision its fields' keywords make (tests/test_fast_paths.py)
    return Decision(
        False,  # admitted
        False,  # banned
        wait_seconds,  # retry_after
        rule,
        scope_name,  # scope
        Usage(rule, 0, wait_seconds, scope_name) if usage else None,  # usage
        new_ban,
    )


def closest(usages: Sequence[Usage]) -> Optional[Usage]:
    """The rule with the fewest requests left, then the longest reset, then the first;
    None when there is no rule (only concurrency limits). Shadow rules are left out:
    the ``RateLimit`` fields describe what enforces."""
    enforcing = [use for use in usages if not use.rule.shadow]
    return min(enforcing, key=lambda use: (use.remaining, -use.reset)) if enforcing else None


def reports_complete(log: Log, ban_rule: BanRule, now: int) -> bool:
    """Whether the report log (the newest report just added) holds ``count`` reports
    within the ban rule's window."""
    return (
        len(log) >= ban_rule.count
        and nth_newest(log, ban_rule.count) + microseconds(ban_rule.window) > now
    )


def ban_after_reports(
    previous: Optional[Ban],
    ban_rule: BanRule,
    now: int,
    reason: str,
    offence: str = DEFAULT_OFFENCE,
) -> tuple[Ban, int]:
    """The ban that completed reports of ``offence`` start, for ``reason``, and its
    duration in microseconds: escalated by the bans still remembered (of any offence:
    one history per client), and a longer ban in force stands, as it was (its start,
    end, reason and offence)."""
    earlier = previous.strikes_at(now) if previous is not None else 0
    duration = ban_rule.duration_after(earlier)
    start, end = now, now + duration
    made_by: Optional[str] = offence
    if previous is not None and previous.end > end:
        start, end, reason, made_by = (
            previous.start,
            previous.end,
            previous.reason,
            previous.offence,
        )
    forget_at = end + microseconds(ban_rule.forget_after)
    return Ban(start, end, earlier + 1, forget_at, reason, made_by), duration


def manual_ban(
    previous: Optional[Ban], now: int, end: int, reason: str, offence: str = DEFAULT_OFFENCE
) -> Optional[Ban]:
    """A ban by hand until ``end``, for ``reason`` (and ``offence``, kept when ``reason``
    is a ban rule's: a ban handed over from another storage); None when a longer ban
    stands. The bans still remembered stay, and are remembered at least until ``end``."""
    if previous is None or previous.forget_at <= now:
        return Ban(now, end, 0, end, reason, offence)
    if previous.end < end:
        return Ban(now, end, previous.strikes, max(previous.forget_at, end), reason, offence)
    return None


def escalation(network_ban: Optional[Ban], seen: DistinctRead, now: int) -> tuple[bool, bool]:
    """The subnet ban rule's step after a ban (``BanSteps``), given the network's ban and
    its banned addresses as read with the banned client's key (``seen``): whether to
    record that address, and whether to ban the network. Nothing while the network is
    banned; the network is banned when the rule had no room for a new address, or has
    none left once it is recorded (as a request of that scope with its usage would say)."""
    if network_ban is not None and network_ban.end > now:
        return False, False
    if seen.wait:
        return False, True
    return True, len(seen.log.values) + seen.added >= seen.rule.count


def without_stamps(log: Log, stamp: int, cost: int) -> Optional[list[float]]:
    """The log's timestamps, oldest first, with ``cost`` of those equal to ``stamp``
    taken out, the newest such first (as Redis's ``LREM``: timestamps of one
    microsecond are interchangeable); None when it holds none."""
    kept = [*log[log.head :], *log[: log.head]]
    before = len(kept)
    for index in range(before - 1, -1, -1):
        if cost and kept[index] == stamp:
            del kept[index]
            cost -= 1
    return None if len(kept) == before else kept
