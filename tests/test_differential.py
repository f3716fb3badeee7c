"""Differential test: ``MemoryStorage`` and ``RedisStorage`` on one clock must agree exactly,
``RedisStorage`` on one server and on a real Redis Cluster of three primaries.

Hypothesis drives both storages through the same random sequence of calls (``hit`` on
several scopes mixing the four strategies and distinct rules with their values, with
usage and strikes and costs from 1 up to the largest count and past it, a scope
sometimes counted under another key as a rule with its own ``key`` is, some hits taking
slots of concurrency limits, some reserving in a deferred scope; ``release`` of those
slots; ``refund`` of those reservations; ``record``; ``report`` with escalating ban
rules; ``ban``, ``unban``, ``banned_for``, ``bans``, ``reset``, and ``network_lengths``,
the registry of network bans; hits that strike and reports are sometimes given
``BanSteps``, as the gate gives them: the ban's detail, a network client's registry
entry, and the run's subnet ban rule's escalation to the client's network) while one
``FakeClock`` moves in tiny steps, onto exact window, lease and ban boundaries (and one
microsecond either side of them), and in large jumps. Every result is compared with
``==``: every ``Decision`` field, every report's duration, ``banned_for``, ``bans()``.

Clients come from a small pool that includes hostile key text (the memory storage's
separators ``\\x1d``, ``\\x1e``, ``\\x1f``, braces, ``%``, spaces, non-ASCII), so that one
client's state can never be filed under another's, and networks, whose bans (``ban``, of
any duration, 0 included: how a ban that reports started on a network is registered)
enter the registry and refuse the hits that name them in ``also``.

The clock only takes whole microseconds (``clock.set(n / 1e6)``): Redis reads the clock as
whole microseconds, so a sub-microsecond clock would be a difference of input, not of
storage. Everything else (windows, durations, factors) is any valid value.

Two properties: ``test_storages_agree`` keeps one set of rules per scope and one ban rule
per run, as an app does; ``test_storages_agree_when_rules_change`` lets every call pick
among two rule sets per scope and two ban rules (a redeploy with other rules, several
apps sharing one storage).

On a Cluster the same runs take the Cluster path (``storage/redis/cluster.py``): a rule
with its own key counts on that key's slot, checked and recorded in calls of their own,
and the other clients' bans are read apart. Single-threaded, nothing comes between those
calls, so the decisions must be the same, field for field.

150 examples per property and storage by default (a few seconds each once the storages
agree, plus about 3 s to start the Cluster; a failure takes longer, as Hypothesis shrinks
it); more with an environment variable::

    GATEKEEPER_DIFFERENTIAL_EXAMPLES=5000 python -m pytest tests/test_differential.py

Needs a real ``redis-server`` (and ``redis-cli`` for the Cluster: skipped without them,
but failing under CI). Below the properties, one plain test per divergence found so far
pins it on each storage.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Optional, Union

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from flask_gatekeeper import BanRule, Rule, SubnetBanRule
from flask_gatekeeper.decision import (
    ADMITTED,
    DEFAULT_OFFENCE,
    BanDetail,
    Decision,
    NewBan,
    Reservation,
    Usage,
)
from flask_gatekeeper.gate import banned_addresses
from flask_gatekeeper.identity.addresses import wider_network
from flask_gatekeeper.storage import Storage
from flask_gatekeeper.storage.base import BanSteps
from flask_gatekeeper.storage.plan import GLOBAL_SCOPE, Scope
from flask_gatekeeper.strategies import (
    FIXED_WINDOW,
    GCRA,
    SLIDING_LOG,
    SLIDING_WINDOW,
    offset,
)
from flask_gatekeeper.testing import FakeClock, MemoryStorage
from flask_gatekeeper.units import MAX_SECONDS, microseconds

try:
    import redis
    from redis.cluster import RedisCluster

    from flask_gatekeeper.storage.redis import RedisStorage
    from support.redis_server import HOST, redis_cluster, require
except ImportError:  # pragma: no cover - only without the redis extra
    if os.environ.get("CI"):
        raise
    pytest.skip(
        'redis-py is not installed: pip install "flask-gatekeeper[redis]"',
        allow_module_level=True,
    )

EXAMPLES = int(os.environ.get("GATEKEEPER_DIFFERENTIAL_EXAMPLES", "150"))
"""Examples per property (two properties, each against one server and a Cluster); raise it
for a longer hunt."""

T0_US = 1_000 * 1_000_000
"""The clock's start, in microseconds (FakeClock's default, 1000 s)."""

CLOCK_LIMIT_US = T0_US + 2 * MAX_SECONDS * 1_000_000
"""The clock stops here: beyond about 2**51 microseconds, ``n / 1e6`` seconds no longer
reads back as exactly ``n`` microseconds, and the input itself would differ."""

PALETTE_SIZE = 2
"""When rules change, each call picks one of this many rule sets per scope and ban rules."""

REAL_TIME_BUDGET = 0.5
"""Seconds of real time after which an example stops (and passes): Redis expires keys on
its own clock, at least a second after the fake clock says they stop mattering, so a
longer example could see a key vanish that the memory storage still has. Examples take
a few milliseconds; this only guards against a stalled machine."""

MAX_MOMENTS = 64
"""How many future boundaries (window ends, ban ends) a run remembers to jump onto."""

# --- clients and scopes -----------------------------------------------------------------------

VICTIMS = (
    "victim",
    "victim\x1e",  # the memory storage's key for the reports against "victim"
    "victim\x1flogin",  # ... for the log of "victim" on the route "login"
    "victim\x1d",  # ... the start of every state key of "victim"
    "victim\x1f",  # ... the start of every route key of "victim"
)
"""One client and keys that spell its state keys in the memory storage."""

OTHERS = (
    "\x1e",
    "",
    "10.0.0.1",
    "2001:db8::1",
    "a b",
    "{victim}",
    "}",
    "%",
    "%25",
    "*",
    "[v]ictim\\",
    "клиент-ü-😀",
)
"""Braces (the Redis hash tag), its escape character, glob patterns (``reset`` and ``bans``
scan Redis by pattern), non-ASCII, IPs."""

NETWORKS = ("203.0.113.0/24", "10.0.0.0/8", "2001:db8::/48", "2001:db8::/64")
"""Network keys, an IPv6 client's /64 among them (the registry holds every CIDR key)."""

ROUTES = ("login", "api", "a:b", "login per form[user]", "per form[user]")
"""Route scopes (endpoint names) beside the global one, and the scopes of rules with
their own key (which a reset of their route's or the global scope resets too)."""

SCOPE_CHOICES: tuple[tuple[str, ...], ...] = (
    (GLOBAL_SCOPE,),
    (GLOBAL_SCOPE, "login"),
    (GLOBAL_SCOPE, "api"),
    ("login",),
    ("a:b",),
    (GLOBAL_SCOPE, "login", "api"),
    ("login", "login per form[user]"),
    (GLOBAL_SCOPE, "per form[user]"),
)
"""Which scopes a request meets: global only, global and its route, a standalone route."""

# --- rules ------------------------------------------------------------------------------------

NICE_WINDOWS = (0.5, 1, 2.5, 10, 60, 3600)
"""Windows exact in binary and in microseconds."""
FRACTIONAL_WINDOWS = (0.001, 0.1, 0.3, 1 / 3, 0.7, 1.1, 2.2)
"""Windows whose decimal value is a whole number of microseconds but not a binary float."""
LARGE_WINDOWS = (86400, 10**6, MAX_SECONDS)
TINY_WINDOWS = (1e-6, 1.5e-6, 2.5e-6, 1.2345e-5)
"""Windows of a few microseconds, whole or not (a rule refuses less than one)."""

windows = st.one_of(
    st.sampled_from(NICE_WINDOWS),
    st.sampled_from(FRACTIONAL_WINDOWS),
    st.sampled_from(LARGE_WINDOWS),
    st.sampled_from(TINY_WINDOWS),
    st.integers(min_value=1, max_value=20_000_000).map(lambda us: us / 1e6),
    st.floats(min_value=1e-6, max_value=100, allow_nan=False, allow_infinity=False),
)
LARGEST_COUNT = 20_000
"""A count whose log outgrows one Lua ``unpack`` (about 8,000 values) and ``hit.lua``'s
pushes of 1,000: a request may cost up to it."""
counts = st.one_of(
    st.integers(min_value=1, max_value=6), st.sampled_from([10, 100]), st.just(LARGEST_COUNT)
)
rule_strategies = st.sampled_from([None, SLIDING_LOG, FIXED_WINDOW, SLIDING_WINDOW, GCRA])


def _value() -> None:
    """A distinct rule's function: the storages never call it (values come with the op)."""


shadows = st.sampled_from([False, False, True])  # a shadow rule: checked, never refusing
rules = st.one_of(
    st.builds(Rule, counts, windows, rule_strategies, shadow=shadows),
    st.builds(Rule, counts, windows, distinct=st.just(_value), shadow=shadows),
)
rule_sets = st.lists(rules, min_size=1, max_size=3).map(tuple)

DURATIONS = (0.5, 1, 3, 10, 0.3, 0.7, 600, 86400, MAX_SECONDS / 2, MAX_SECONDS - 1, MAX_SECONDS)
durations = st.one_of(
    st.sampled_from(DURATIONS),
    st.integers(min_value=1, max_value=20_000_000).map(lambda us: us / 1e6),
    st.floats(min_value=1e-6, max_value=MAX_SECONDS, allow_nan=False, allow_infinity=False),
)
factors = st.one_of(
    st.just(1),
    st.sampled_from([1.5, 2, 3, 10, 1000]),
    st.floats(min_value=1, max_value=1000, allow_nan=False),
)
forget_afters = st.one_of(
    st.sampled_from([0.5, 1, 3, 10, 86400, MAX_SECONDS]),
    st.integers(min_value=1, max_value=20_000_000).map(lambda us: us / 1e6),
)


@st.composite
def ban_rules(draw: st.DrawFn) -> BanRule:
    duration = draw(durations)
    max_duration = draw(
        st.one_of(
            st.none(),
            st.sampled_from([duration, MAX_SECONDS]),
            st.floats(min_value=duration, max_value=MAX_SECONDS, allow_nan=False),
        )
    )
    return BanRule(
        count=draw(st.integers(min_value=1, max_value=4)),
        window=draw(windows),
        duration=duration,
        factor=draw(factors),
        max_duration=max_duration,
        forget_after=draw(forget_afters),
    )


subnet_rules = st.builds(
    SubnetBanRule,
    count=st.integers(min_value=1, max_value=3),
    window=windows,
    duration=durations,
    ipv4_prefix=st.sampled_from([8, 16, 24]),
    ipv6_prefix=st.sampled_from([32, 48]),
)
"""The run's subnet ban rule: networks of the clients' pool among its networks."""
SOME_SUBNET_RULE = SubnetBanRule(2, 60, 600)

StepsDrawn = Optional[tuple[bool, bool, bool]]
"""A call's ``BanSteps``, as drawn: None, or (details, register, escalate)."""
steps_drawn = st.one_of(st.none(), st.tuples(st.booleans(), st.booleans(), st.booleans()))


def _ban_steps(client: str, drawn: StepsDrawn, subnet: SubnetBanRule) -> Optional[BanSteps]:
    """The ``BanSteps`` the gate would give for ``client`` (registering any client the
    draw says: a storage registers only network keys)."""
    if drawn is None:
        return None
    details, register, escalate = drawn
    network = wider_network(client, subnet.ipv4_prefix, subnet.ipv6_prefix) if escalate else None
    if network is None:
        return BanSteps(details, register)
    return BanSteps(details, register, network, banned_addresses(subnet), subnet.duration)


# --- operations -------------------------------------------------------------------------------


def _rules_text(rules: Sequence[Rule]) -> str:
    return ", ".join(
        f"Rule({rule.count}, {rule.window!r}"
        + (f", {rule.strategy!r}" if rule.strategy else "")
        + (", distinct=f" if rule.distinct else "")
        + (", shadow=True)" if rule.shadow else ")")
        for rule in rules
    )


@dataclass(frozen=True)
class Hit:
    client: str
    scopes: tuple[str, ...]
    usage: bool
    strike: bool
    times: int = 1  # the same call, this many times in a row (a burst)
    pick: int = 0  # which of the palette's rules and ban rule, when rules change
    cost: int = 1  # every scope's cost
    deferred: bool = False  # the last scope is deferred: the hit says what it reserved
    also: Optional[str] = None  # another client whose ban refuses this request too
    values: tuple[Optional[str], ...] = (None,)  # for the distinct rules, in turn
    owner: Optional[str] = None  # the last scope counts under this key (a keyed rule)
    hold: bool = False  # with a token of its own: takes a slot of each concurrency limit
    steps: StepsDrawn = None  # BanSteps after a ban that the strike makes
    offence: str = DEFAULT_OFFENCE  # the offence a strike reports (its own reports log)


@dataclass(frozen=True)
class Release:
    """``release()`` of the slots a hit took (``pick`` chooses which; released ones too)."""

    pick: int


@dataclass(frozen=True)
class Slots:
    """The slots one admitted hit took, as a ``Release`` gives them back."""

    client: str
    scopes: tuple[str, ...]
    token: str


@dataclass(frozen=True)
class Refund:
    """``refund()`` of what a hit reserved (``pick`` chooses which; refunded ones too)."""

    pick: int


@dataclass(frozen=True)
class Reserved:
    """What one admitted hit reserved in its deferred scopes, as a ``Refund`` takes it back."""

    client: str
    scopes: tuple[Scope, ...]
    reserved: tuple[Reservation, ...]


@dataclass(frozen=True)
class Record:
    """``record()`` (deprecated): a request counted without a check, on the same scopes
    as a hit."""

    client: str
    scopes: tuple[str, ...]
    cost: int = 1
    pick: int = 0
    values: tuple[Optional[str], ...] = (None,)
    owner: Optional[str] = None


@dataclass(frozen=True)
class Peek:
    """``usage()``: every rule's standing, read without counting."""

    client: str
    scopes: tuple[str, ...]
    pick: int = 0
    owner: Optional[str] = None


@dataclass(frozen=True)
class ResetScope:
    client: str
    scope: str


@dataclass(frozen=True)
class Details:
    """``ban_details()``."""


@dataclass(frozen=True)
class Report:
    client: str
    times: int = 1
    pick: int = 0  # which of the palette's ban rules, when rules change
    reason: str = "reports"
    steps: StepsDrawn = None  # report_steps() with these BanSteps, else report()
    offence: str = DEFAULT_OFFENCE  # each offence's reports are logged apart


@dataclass(frozen=True)
class Ban:
    client: str
    duration: Optional[float]  # None: the ban rule's duration, as ``gk.ban(ip)`` does
    pick: int = 0  # whose ban rule, when rules change
    reason: str = "manual"  # or "subnet" (by the subnet ban rule), or "blocklist"; or a
    # ban rule's, with its offence (a ban the outage fallback hands back)
    offence: str = DEFAULT_OFFENCE


@dataclass(frozen=True)
class Lengths:
    """``network_lengths()``: the registry of network bans."""


@dataclass(frozen=True)
class Unban:
    client: str


@dataclass(frozen=True)
class BannedFor:
    client: str


@dataclass(frozen=True)
class Detail:
    """``ban_detail(client)``."""

    client: str


@dataclass(frozen=True)
class Bans:
    pass


@dataclass(frozen=True)
class Reset:
    client: str


@dataclass(frozen=True)
class Advance:
    """Move the clock by whole microseconds."""

    microseconds: int


@dataclass(frozen=True)
class Boundary:
    """Jump onto a remembered future boundary (``pick`` chooses which), ``delta`` us off."""

    pick: int
    delta: int


Op = Union[
    Hit,
    Release,
    Slots,
    Refund,
    Reserved,
    Record,
    Peek,
    Report,
    Ban,
    Unban,
    BannedFor,
    Detail,
    Bans,
    Details,
    Lengths,
    Reset,
    ResetScope,
    Advance,
    Boundary,
]
SCOPED = (Hit, Record, Peek)
"""The operations that name scopes (and pick their rules from the palette)."""

clients = st.one_of(
    st.just(VICTIMS[0]),
    st.sampled_from(VICTIMS),
    st.sampled_from(OTHERS),
    st.sampled_from(NETWORKS),
)
ban_durations = st.one_of(st.none(), st.just(0), durations)
"""None: the ban rule's duration; 0 changes no ban (and registers a network's)."""
advances = st.one_of(
    st.sampled_from([1, 2, 999, 1000, 1001]),  # tiny
    st.integers(min_value=0, max_value=3_000_000),  # up to a few seconds
    st.sampled_from([x * 1_000_000 for x in (3600, 86400, 10**6, MAX_SECONDS)]),  # large
).map(Advance)
boundaries = st.builds(
    Boundary,
    st.one_of(  # mostly one of the nearest
        st.integers(min_value=0, max_value=2), st.integers(min_value=0, max_value=MAX_MOMENTS)
    ),
    st.sampled_from([-1, 0, 0, 1]),
)
MAX_SLOTS = 16
"""How many taken slots a run remembers, to release them (again)."""

queries = st.one_of(
    st.builds(Release, st.integers(min_value=0, max_value=MAX_SLOTS)),
    st.builds(Refund, st.integers(min_value=0, max_value=MAX_SLOTS)),
    st.builds(Unban, clients),
    st.builds(BannedFor, clients),
    st.builds(Detail, clients),
    st.just(Bans()),
    st.just(Details()),
    st.just(Lengths()),
    st.builds(Reset, clients),
    st.builds(ResetScope, clients, st.sampled_from((GLOBAL_SCOPE, *ROUTES))),
)
ban_reasons = st.sampled_from(["manual", "subnet", "blocklist", "reports", "rate_limit"])
costs = st.one_of(
    st.just(1),
    st.integers(min_value=2, max_value=12),
    st.integers(min_value=13, max_value=LARGEST_COUNT + 1),
    st.sampled_from([99, 100, 101, 8_000, 9_000, LARGEST_COUNT, LARGEST_COUNT + 1, 10**30]),
)
"""Small costs, costs up to the largest count and just past it, and one past every count
(which a scope keeps as its largest count plus one)."""
owners = st.one_of(st.none(), st.none(), clients)
"""Mostly none; else the key that a rule with its own ``key`` counts under."""
VALUES = (None, "alice", "bob", "carol", "", "{victim}", "%", "\udc80", "ü😀", "sha256:ab")
"""A request's values for distinct rules: None (the rule does not apply), a few names, and
text that Redis must carry as it is (braces, a lone surrogate, non-ASCII)."""
values = st.lists(
    st.one_of(st.sampled_from(VALUES[:4]), st.sampled_from(VALUES)), min_size=1, max_size=3
).map(tuple)

LEASES = (0.5, 1, 2.5, 60, 300, 0.3, 1.1, 1e-6, 1.2345e-5, MAX_SECONDS)
limits = st.tuples(
    st.sampled_from([0, 1, 1, 2, 3]),
    st.one_of(st.sampled_from(LEASES), windows),
)
"""A scope's concurrency limit (0: none) and its lease."""


times = st.one_of(st.just(1), st.integers(min_value=2, max_value=12))
offences = st.sampled_from([DEFAULT_OFFENCE, "login", "scan:ner"])
"""The offences reported (jails): a name with a colon too, as Redis keys hold it."""


def hits(picks: st.SearchStrategy[int]) -> st.SearchStrategy[Hit]:
    return st.builds(
        Hit,
        client=clients,
        scopes=st.sampled_from(SCOPE_CHOICES),
        usage=st.booleans(),
        strike=st.booleans(),
        times=times,
        pick=picks,
        cost=costs,
        deferred=st.booleans(),
        also=st.one_of(st.none(), clients),
        values=values,
        owner=owners,
        hold=st.booleans(),
        steps=steps_drawn,
        offence=offences,
    )


def scoped(picks: st.SearchStrategy[int]) -> st.SearchStrategy[Op]:
    """Records and reads on the same scopes as the hits."""
    names = st.sampled_from(SCOPE_CHOICES)
    return st.one_of(
        st.builds(Record, clients, names, costs, picks, values, owners),
        st.builds(Peek, clients, names, picks, owners),
    )


def reports(picks: st.SearchStrategy[int]) -> st.SearchStrategy[Report]:
    reasons = st.sampled_from(["reports", "response"])
    return st.builds(
        Report,
        client=clients,
        times=times,
        pick=picks,
        reason=reasons,
        steps=steps_drawn,
        offence=offences,
    )


def sequences(ops: st.SearchStrategy[Op]) -> st.SearchStrategy[list[Op]]:
    """Lists of about 20 operations (Hypothesis's lists average about 5), up to 80, that
    still shrink to nothing."""
    parts = st.lists(st.lists(ops, max_size=20), max_size=4)
    return parts.map(lambda lists: [op for part in lists for op in part])


def fixed_ops() -> st.SearchStrategy[Op]:
    """Operations with the run's own rules: each scope keeps its rules, one ban rule."""
    return st.one_of(
        hits(st.just(0)),
        hits(st.just(0)),
        scoped(st.just(0)),
        reports(st.just(0)),
        st.builds(Ban, clients, ban_durations, st.just(0), ban_reasons, offences),
        queries,
        advances,
        boundaries,
    )


def changing_ops() -> st.SearchStrategy[Op]:
    """Operations that pick their rules and ban rule from the run's palette by index."""
    picks = st.integers(min_value=0, max_value=PALETTE_SIZE - 1)
    return st.one_of(
        hits(picks),
        hits(picks),
        scoped(picks),
        reports(picks),
        st.builds(Ban, clients, ban_durations, picks, ban_reasons, offences),
        queries,
        advances,
        boundaries,
    )


# --- running both storages --------------------------------------------------------------------


@dataclass(frozen=True)
class Raised:
    """A call that raised instead of returning. Both storages raising counts as agreeing
    (say on a window under half a microsecond, which no strategy can count)."""

    error: str


Result = object


def _duration(op: Ban, ban_rule: Optional[BanRule]) -> float:
    if op.duration is not None:
        return op.duration
    assert ban_rule is not None
    return ban_rule.duration


def _call(
    storage: Storage,
    op: Op,
    scopes: list[Scope],
    ban_rule: Optional[BanRule],
    token: Optional[str] = None,
    subnet: SubnetBanRule = SOME_SUBNET_RULE,
) -> Result:
    try:
        if isinstance(op, Hit):
            also = () if op.also is None else (op.also,)
            steps = _ban_steps(op.client, op.steps, subnet)
            if steps is not None:
                return storage.hit(  # type: ignore[call-arg]  # both are OneStepBans
                    op.client,
                    scopes,
                    usage=op.usage,
                    report_to=ban_rule,
                    also=also,
                    token=token,
                    steps=steps,
                    offence=op.offence,
                )
            return storage.hit(
                op.client,
                scopes,
                usage=op.usage,
                report_to=ban_rule,
                also=also,
                token=token,
                offence=op.offence,
            )
        if isinstance(op, Slots):
            storage.release(op.client, op.scopes, op.token)
            return None
        if isinstance(op, Reserved):
            storage.refund(op.client, op.scopes, op.reserved)
            return None
        if isinstance(op, Record):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                storage.record(op.client, scopes)  # type: ignore[attr-defined]
            return None
        if isinstance(op, Peek):
            return storage.usage(op.client, scopes)
        if isinstance(op, Details):
            return storage.ban_details()
        if isinstance(op, Lengths):
            return storage.network_lengths()
        if isinstance(op, ResetScope):
            storage.reset(op.client, op.scope)
            return None
        if isinstance(op, Report):
            assert ban_rule is not None
            if op.steps is not None:
                steps = _ban_steps(op.client, op.steps, subnet)
                return storage.report_steps(  # type: ignore[attr-defined]  # OneStepBans
                    op.client, ban_rule, op.reason, steps, op.offence
                )
            return storage.report(op.client, ban_rule, op.reason, op.offence)
        if isinstance(op, Ban):
            storage.ban(op.client, _duration(op, ban_rule), op.reason, op.offence)
            return None
        if isinstance(op, Unban):
            return storage.unban(op.client)
        if isinstance(op, BannedFor):
            return storage.banned_for(op.client)
        if isinstance(op, Detail):
            return storage.ban_detail(op.client)
        if isinstance(op, Bans):
            return storage.bans()
        assert isinstance(op, Reset)
        storage.reset(op.client)
        return None
    except Exception as exc:  # a storage that raises where the other answers diverges too
        return Raised(f"{type(exc).__name__}: {exc}"[:200])


def _same(memory: Result, redis_result: Result) -> bool:
    if isinstance(memory, Raised) and isinstance(redis_result, Raised):
        return True  # both refused the input; the messages may differ
    return memory == redis_result


def _outcome(op: Op, result: Result) -> str:
    """What happened, for ``--hypothesis-show-statistics``: how often runs reach each case."""
    kind = type(op).__name__
    if isinstance(op, Hit) and op.owner is not None:
        kind = "Hit with a key's rule"
    if isinstance(result, Raised):
        return f"{kind}: both raised"
    escalated = result.ban if isinstance(result, Decision) else result
    if isinstance(escalated, NewBan) and escalated.network is not None:
        return f"{kind}: banned, and its network with it"
    if isinstance(result, Decision):
        if result.new_ban is not None:
            return f"{kind}: limited, and banned by the strike"
        if result.banned:
            return f"{kind}: banned" + (" by hand" if result.manual else "")
        if result.concurrency:
            return f"{kind}: too many in flight"
        if result.shadowed:
            return f"{kind}: admitted, a shadow rule would have refused"
        return f"{kind}: {'admitted' if result.admitted else 'limited'}"
    if isinstance(op, Report):
        return f"{kind}: {'no ban' if result is None else 'banned'}"
    if isinstance(op, (Unban, BannedFor, Bans, Lengths)):
        return f"{kind}: {'something' if result else 'nothing'}"
    return kind


def _scope_text(scope: Scope) -> str:
    deferred = " (deferred)" if scope.deferred else ""
    owner = f" of {scope.owner!r}" if scope.owner is not None else ""
    values = f" values {scope.values!r}" if scope.distinct else ""
    slots = f", {scope.concurrency} in flight for {scope.lease_us} us" if scope.concurrency else ""
    return f"{scope.name!r}{deferred}{owner}: {_rules_text(scope.rules)}{values}{slots}"


def _describe(
    op: Op, scopes: list[Scope], ban_rule: Optional[BanRule], token: Optional[str] = None
) -> str:
    where = "; ".join(_scope_text(scope) for scope in scopes)
    if isinstance(op, Hit):
        strike = f", report_to={ban_rule!r}, offence={op.offence!r}" if ban_rule is not None else ""
        also = f", also=({op.also!r},)" if op.also is not None else ""
        held = f", token={token!r}" if token is not None else ""
        rest = f"usage={op.usage}{strike}{also}{held}"
        return f"hit({op.client!r}, [{where}] x cost {op.cost}, {rest})"
    if isinstance(op, Slots):
        return f"release({op.client!r}, {list(op.scopes)!r}, {op.token!r})"
    if isinstance(op, Reserved):
        taken = "; ".join(_scope_text(scope) for scope in op.scopes)
        return f"refund({op.client!r}, [{taken}], {list(op.reserved)!r})"
    if isinstance(op, Record):
        return f"record({op.client!r}, [{where}] x cost {op.cost})"
    if isinstance(op, Peek):
        return f"usage({op.client!r}, [{where}])"
    if isinstance(op, Details):
        return "ban_details()"
    if isinstance(op, Lengths):
        return "network_lengths()"
    if isinstance(op, ResetScope):
        return f"reset({op.client!r}, {op.scope!r})"
    if isinstance(op, Report):
        return f"report({op.client!r}, {ban_rule!r}, {op.reason!r}, {op.offence!r})"
    if isinstance(op, Ban):
        return f"ban({op.client!r}, {_duration(op, ban_rule)!r}, {op.reason!r}, {op.offence!r})"
    if isinstance(op, Bans):
        return "bans()"
    if isinstance(op, Detail):
        return f"ban_detail({op.client!r})"
    name = type(op).__name__.lower().replace("bannedfor", "banned_for")
    return f"{name}({op.client!r})"  # type: ignore[union-attr]


@dataclass
class Pair:
    """The two storages on one clock, the moments worth jumping to, and a transcript."""

    memory: Storage
    redis: Storage
    clock: FakeClock
    now: int = T0_US
    moments: list[int] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    slots: list[Slots] = field(default_factory=list)
    """The slots admitted hits took, newest last, released ones too."""
    reservations: list[Reserved] = field(default_factory=list)
    """What admitted hits reserved, newest last, refunded ones too."""
    tokens: int = 0
    subnet: SubnetBanRule = SOME_SUBNET_RULE
    """The subnet ban rule of the run's ``BanSteps``."""

    @property
    def out_of_time(self) -> bool:
        return time.monotonic() - self.started > REAL_TIME_BUDGET

    def remember(self, *moments: float) -> None:
        for moment in moments:
            if isinstance(moment, float) and not math.isfinite(moment):
                continue
            at = int(moment)
            if self.now < at <= CLOCK_LIMIT_US and at not in self.moments:
                self.moments.append(at)
        del self.moments[:-MAX_MOMENTS]

    def move_to(self, now: int) -> None:
        if not self.now <= now <= CLOCK_LIMIT_US:
            return
        self.transcript.append(f"clock +{(now - self.now) / 1e6:.6f} s -> t={now - T0_US} us")
        self.now = now
        self.clock.set(now / 1e6)
        assert round(self.clock() * 1e6) == now  # the clock reads back exactly

    def remember_rules(self, client: str, scopes: list[Scope]) -> None:
        for scope in scopes:
            who = scope.owner or client
            for rule in scope.rules:
                window = microseconds(rule.window)
                self.remember(self.now + window, self.now + math.ceil(window / rule.count))
                if rule.strategy in (FIXED_WINDOW, SLIDING_WINDOW) and window > 0:
                    shift = offset(who, window)
                    start = (self.now - shift) // window * window + shift
                    self.remember(start + window, start + 2 * window)

    def hold(self, client: str, scopes: list[Scope], token: str, decision: Decision) -> None:
        """Keep the slots an admitted hit took, to release them later, and their leases'
        ends, to jump there."""
        held = tuple(scope.name for scope in scopes if scope.concurrency)
        if decision.admitted and held:
            self.slots = [*self.slots, Slots(client, held, token)][-MAX_SLOTS:]
            self.remember(*(self.now + scope.lease_us for scope in scopes if scope.concurrency))

    def remember_ban_rule(self, ban_rule: BanRule) -> None:
        self.remember(self.now + microseconds(ban_rule.window))
        for earlier in range(3):
            duration = microseconds(ban_rule.duration_after(earlier))
            forget = microseconds(ban_rule.forget_after)
            self.remember(self.now + duration, self.now + duration + forget)

    def run(self, op: Op, scopes: list[Scope], ban_rule: Optional[BanRule]) -> None:
        if isinstance(op, Advance):
            self.move_to(self.now + op.microseconds)
            return
        if isinstance(op, Boundary):
            ahead = sorted(moment for moment in self.moments if moment + op.delta > self.now)
            if ahead:
                self.move_to(ahead[op.pick % len(ahead)] + op.delta)
            return
        if isinstance(op, Release):
            if self.slots:
                self.call(self.slots[op.pick % len(self.slots)], [], None)
            return
        if isinstance(op, Refund):
            if self.reservations:
                self.call(self.reservations[op.pick % len(self.reservations)], [], None)
            return
        for _ in range(op.times if isinstance(op, (Hit, Report)) else 1):
            self.call(op, scopes, ban_rule)

    def call(self, op: Op, scopes: list[Scope], ban_rule: Optional[BanRule]) -> None:
        """One call on both storages; raise when their results differ."""
        token = None
        if isinstance(op, Hit) and op.hold:
            self.tokens += 1
            token = f"t{self.tokens}"
        memory = _call(self.memory, op, scopes, ban_rule, token, self.subnet)
        redis_result = _call(self.redis, op, scopes, ban_rule, token, self.subnet)
        call = _describe(op, scopes, ban_rule, token)
        self.transcript.append(f"{call} -> {memory!r}")
        if not _same(memory, redis_result):
            steps = "\n  ".join(self.transcript)
            raise AssertionError(
                f"the storages disagree on {call}\n  memory: {memory!r}\n  redis:  "
                f"{redis_result!r}\nafter:\n  {steps}"
            )
        if isinstance(op, Hit) and token is not None and isinstance(memory, Decision):
            self.hold(op.client, scopes, token, memory)
        if isinstance(op, Hit) and isinstance(memory, Decision) and memory.reserved:
            deferred = tuple(scope for scope in scopes if scope.deferred)
            taken = Reserved(op.client, deferred, memory.reserved)
            self.reservations = [*self.reservations, taken][-MAX_SLOTS:]
        if isinstance(op, SCOPED):
            self.remember_rules(op.client, scopes)
        if isinstance(op, (Hit, Report)) and ban_rule is not None:
            self.remember_ban_rule(ban_rule)
        if isinstance(op, Ban):
            self.remember(self.now + microseconds(_duration(op, ban_rule)))
        if isinstance(memory, Decision):
            self.remember(self.now + microseconds(memory.retry_after))
            if memory.new_ban is not None:
                self.remember(self.now + microseconds(memory.new_ban))
        if type(memory) in (int, float):  # banned_for, or a report's new ban
            self.remember(self.now + microseconds(memory))  # type: ignore[arg-type]
        new = memory.ban if isinstance(memory, Decision) else memory
        if isinstance(new, NewBan):
            self.remember(self.now + microseconds(new.duration))
            if new.network is not None:
                self.remember(self.now + microseconds(self.subnet.duration))
                self.remember(self.now + microseconds(self.subnet.window))
        event(_outcome(op, memory))


@pytest.fixture(scope="module")
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def cluster_client() -> Iterator[RedisCluster]:
    """A client of a real Redis Cluster of three primaries, started for this module."""
    require("redis-server", "redis-cli")
    with redis_cluster(3) as nodes:
        client = RedisCluster(host=HOST, port=nodes[0].port)
        yield client
        client.close()


@pytest.fixture(scope="module", params=["redis", "cluster"])
def shared_client(request: pytest.FixtureRequest) -> Union[redis.Redis, RedisCluster]:
    """The client of the ``RedisStorage`` compared: one server, or a Redis Cluster."""
    client: Union[redis.Redis, RedisCluster] = request.getfixturevalue(f"{request.param}_client")
    return client


def new_pair(client: Union[redis.Redis, RedisCluster]) -> Pair:
    """Both storages, empty (every primary of a cluster flushed), on a fresh clock at
    ``T0_US``."""
    client.flushdb()
    clock = FakeClock(T0_US / 1e6)
    return Pair(MemoryStorage(clock=clock), RedisStorage(client, clock=clock), clock)


def _scopes(
    op: Union[Hit, Record, Peek],
    rules: dict[str, tuple[Rule, ...]],
    limits: dict[str, tuple[int, float]],
) -> list[Scope]:
    """The scopes an operation names, with its cost, the last one deferred if it says so,
    each its concurrency limit and lease, and its values given to the distinct rules in
    turn. With an owner, the last scope is a keyed rule's: counted under that key, and
    with no concurrency limit (as ``policy.keyed_scopes`` makes it: slots are the
    client's)."""
    cost = op.cost if isinstance(op, (Hit, Record)) else 1
    deferred = isinstance(op, Hit) and op.deferred
    names = list(rules)
    given = op.values if isinstance(op, (Hit, Record)) else (None,)
    scopes = []
    for name in names:
        keyed = op.owner is not None and name == names[-1]
        scope = Scope.of(
            name,
            rules[name],
            cost=cost,
            deferred=deferred and name == names[-1],
            concurrency=0 if keyed else limits[name][0],
            lease=limits[name][1],
        )
        turns = range(len(scope.distinct))
        values = tuple(given[i % len(given)] for i in turns)
        scopes.append(replace(scope, values=values, owner=op.owner if keyed else None))
    return scopes


SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.redis
@SETTINGS
@given(
    scope_rules=st.fixed_dictionaries(dict.fromkeys((GLOBAL_SCOPE, *ROUTES), rule_sets)),
    scope_limits=st.fixed_dictionaries(dict.fromkeys((GLOBAL_SCOPE, *ROUTES), limits)),
    ban_rule=ban_rules(),
    subnet=subnet_rules,
    ops=sequences(fixed_ops()),
)
def test_storages_agree(
    shared_client: Union[redis.Redis, RedisCluster],
    scope_rules: dict[str, tuple[Rule, ...]],
    scope_limits: dict[str, tuple[int, float]],
    ban_rule: BanRule,
    subnet: SubnetBanRule,
    ops: list[Op],
) -> None:
    pair = new_pair(shared_client)
    pair.subnet = subnet
    for op in ops:
        if pair.out_of_time:
            return
        if isinstance(op, SCOPED):
            scopes = _scopes(op, {name: scope_rules[name] for name in op.scopes}, scope_limits)
            strike = isinstance(op, Hit) and op.strike
            pair.run(op, scopes, ban_rule if strike else None)
        else:
            pair.run(op, [], ban_rule if isinstance(op, (Report, Ban)) else None)


@pytest.mark.redis
@SETTINGS
@given(
    palette=st.fixed_dictionaries(
        {
            name: st.lists(rule_sets, min_size=PALETTE_SIZE, max_size=PALETTE_SIZE)
            for name in (GLOBAL_SCOPE, *ROUTES)
        }
    ),
    limits_palette=st.fixed_dictionaries(
        {
            name: st.lists(limits, min_size=PALETTE_SIZE, max_size=PALETTE_SIZE)
            for name in (GLOBAL_SCOPE, *ROUTES)
        }
    ),
    ban_palette=st.lists(ban_rules(), min_size=PALETTE_SIZE, max_size=PALETTE_SIZE),
    subnet=subnet_rules,
    ops=sequences(changing_ops()),
)
def test_storages_agree_when_rules_change(
    shared_client: Union[redis.Redis, RedisCluster],
    palette: dict[str, list[tuple[Rule, ...]]],
    limits_palette: dict[str, list[tuple[int, float]]],
    ban_palette: list[BanRule],
    subnet: SubnetBanRule,
    ops: list[Op],
) -> None:
    pair = new_pair(shared_client)
    pair.subnet = subnet
    for op in ops:
        if pair.out_of_time:
            return
        if isinstance(op, SCOPED):
            names = op.scopes
            chosen = {name: limits_palette[name][op.pick] for name in names}
            scopes = _scopes(op, {name: palette[name][op.pick] for name in names}, chosen)
            strike = isinstance(op, Hit) and op.strike
            pair.run(op, scopes, ban_palette[op.pick] if strike else None)
        else:
            pair.run(op, [], ban_palette[op.pick] if isinstance(op, (Report, Ban)) else None)


# --- the divergences found so far, one promise each, on each storage --------------------------


def _scope(name: str, *rules: Rule) -> list[Scope]:
    return [Scope.of(name, rules)]


ONE_IN_TEN = Rule(1, 10)


def test_reports_against_a_client_are_its_own(storage: Storage) -> None:
    # Memory files the reports against "victim" under the key "victim\x1e", which is also
    # the key of the requests of the client "victim\x1e": its request counts as a report.
    assert storage.hit("victim\x1e", _scope(GLOBAL_SCOPE, ONE_IN_TEN)).admitted
    assert storage.report("victim", BanRule(2, 10, 60)) is None


@pytest.mark.parametrize(
    ("scope", "other"),
    [
        (_scope("login", ONE_IN_TEN), "victim\x1flogin"),  # memory: victim's key on "login"
        (_scope(GLOBAL_SCOPE, Rule(1, 10, GCRA)), "victim\x1d1/10/gcra"),  # ... its GCRA state
        (_scope(GLOBAL_SCOPE, Rule(1, 10, FIXED_WINDOW)), "victim\x1d1/10/fixed-window"),
    ],
)
def test_requests_of_a_client_never_count_for_another(
    storage: Storage, scope: list[Scope], other: str
) -> None:
    assert storage.hit("victim", scope).admitted
    assert storage.hit(other, _scope(GLOBAL_SCOPE, ONE_IN_TEN)).admitted
    decision = storage.hit("victim", scope)
    assert not decision.admitted
    assert decision.rule == scope[0].rules[0]
    assert 0 < decision.retry_after <= 10


@pytest.mark.parametrize("other", ["victim\x1flogin", "victim\x1d", "victim\x1e"])
def test_reset_forgets_its_own_client_only(storage: Storage, other: str) -> None:
    rules = _scope(GLOBAL_SCOPE, ONE_IN_TEN)
    assert storage.hit(other, rules).admitted
    storage.reset("victim")
    assert storage.hit(other, rules) == Decision(admitted=False, retry_after=10.0, rule=ONE_IN_TEN)


def test_escalated_ban_durations_are_whole_microseconds(storage: Storage) -> None:
    ban_rule = BanRule(1, 10, 0.3, factor=3)
    assert storage.report("c", ban_rule) == 0.3
    assert storage.report("c", ban_rule) == 0.9  # not 0.3 * 3 == 0.8999999999999999
    assert storage.banned_for("c") == 0.9


def test_a_ban_duration_is_rounded_to_whole_microseconds(storage: Storage) -> None:
    duration = storage.report("c", BanRule(1, 10, 0.0078125))  # 7812.5 microseconds
    assert duration is not None
    assert duration in (0.007812, 0.007813)
    assert storage.banned_for("c") == duration


def test_time_left_of_a_ban_is_whole_microseconds(storage: Storage, clock: FakeClock) -> None:
    clock.set(1000.1)
    storage.ban("c", 0.3)
    clock.set(1000.2)
    assert storage.banned_for("c") == 0.2  # not 1000.1 + 0.3 - 1000.2 == 0.19999999999993179
    assert storage.bans() == {"c": 0.2}


def test_a_ban_ends_exactly_at_its_microsecond(storage: Storage, clock: FakeClock) -> None:
    clock.set(1000.1)
    assert storage.report("c", BanRule(1, 10, 0.2)) == 0.2
    clock.set(1000.3)
    assert storage.banned_for("c") == 0.0
    assert storage.hit("c", []).admitted


def test_escalation_stops_at_max_seconds(storage: Storage) -> None:
    # Memory caps every ban at MAX_SECONDS; Lua did not: 600 s * 1000**3 is returned as is,
    # and the next ban overflows Redis's integers (the script fails half-way, after having
    # overwritten the ban it was extending, and the history is lost).
    ban_rule = BanRule(1, 10, 600, factor=1000, forget_after=MAX_SECONDS)
    durations = [storage.report("c", ban_rule) for _ in range(6)]
    assert durations == [600, 600_000, 600_000_000, MAX_SECONDS, MAX_SECONDS, MAX_SECONDS]
    assert storage.banned_for("c") == MAX_SECONDS


def test_a_ban_lasts_at_most_max_seconds_without_max_duration(storage: Storage) -> None:
    ban_rule = BanRule(1, 10, MAX_SECONDS, factor=2)
    assert storage.report("c", ban_rule) == MAX_SECONDS
    assert storage.report("c", ban_rule) == MAX_SECONDS  # Redis: 2 * MAX_SECONDS


@pytest.mark.parametrize(
    ("start", "window"), [(1000.1, 0.2), (1000.1, 0.7), (1000.1, 2.2), (1000.0, 1.0000004)]
)
def test_a_request_stops_counting_on_the_microsecond_its_window_ends(
    storage: Storage, clock: FakeClock, start: float, window: float
) -> None:
    # Redis counts in whole microseconds. Memory adds float seconds: 1000.1 + 0.2 is
    # 1000.3000000000001 > 1000.3, and it refused with retry_after == 0.0; and a window of
    # 1.0000004 s is 1000000 microseconds in Redis, but in memory ends 0.4 us later.
    rules = _scope(GLOBAL_SCOPE, Rule(1, window))
    clock.set(start)
    assert storage.hit("c", rules).admitted
    end = microseconds(start + window)
    clock.set((end - 1) / 1e6)
    assert storage.hit("c", rules) == Decision(
        admitted=False, retry_after=1e-6, rule=Rule(1, window)
    )
    clock.set(end / 1e6)
    assert storage.hit("c", rules).admitted


def test_equal_waits_name_the_first_rule(storage: Storage) -> None:
    # Both waits are the window in whole microseconds; memory compared the sliding log's
    # unrounded float wait (1.7444532136479367 s) with the GCRA's whole microseconds.
    window = 1.7444532136479367
    scopes = [*_scope(GLOBAL_SCOPE, Rule(1, window, GCRA)), *_scope("login", Rule(1, window))]
    assert storage.hit("c", scopes).admitted
    decision = storage.hit("c", scopes)
    wait = microseconds(window) / 1e6
    assert decision == Decision(admitted=False, retry_after=wait, rule=Rule(1, window, GCRA))


def test_a_larger_ban_rule_counts_every_report_in_its_window(
    storage: Storage, clock: FakeClock
) -> None:
    # Five reports within 10 s ban under BanRule(4, 10, ...). Redis trimmed its list of
    # reports to the count of the ban rule of the moment (2), and forgot two of them.
    for moment in (1000.0, 1001.0, 1002.0):
        clock.set(moment)
        assert storage.report("c", BanRule(3, 1, 60)) is None
    clock.set(1003.0)
    assert storage.report("c", BanRule(2, 0.5, 60)) is None
    assert storage.report("c", BanRule(4, 10, 60)) == 60


def test_a_manual_ban_after_forget_after_starts_escalation_again(
    storage: Storage, clock: FakeClock
) -> None:
    # The client's last ban ended at 1060 and is forgotten from 1160; a manual ban at 2000
    # copied the old strike count and made it current again, so the next ban doubled.
    # (Both storages do it on a fake clock; a real Redis expires the old ban's key first.)
    ban_rule = BanRule(1, 10, 60, factor=2, forget_after=100)
    assert storage.report("c", ban_rule) == 60
    clock.set(2000.0)
    storage.ban("c", 10)
    assert storage.report("c", ban_rule) == 60


# --- the divergences of the Redis Cluster path, on every storage ------------------------------


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis), "cluster"])
def any_storage(request: pytest.FixtureRequest, clock: FakeClock) -> Storage:
    """An empty storage of each kind on ``clock``: memory, one Redis server, a Cluster."""
    if request.param == "memory":
        return MemoryStorage(clock=clock)
    client = request.getfixturevalue(f"{request.param}_client")
    client.flushdb()
    return RedisStorage(client, clock=clock)


def _keyed(name: str, owner: str, *rules: Rule) -> Scope:
    """A scope of rules with their own key, counted under ``owner``."""
    return replace(Scope.of(name, rules), owner=owner)


def test_a_key_s_ban_refuses_only_where_the_request_names_it(any_storage: Storage) -> None:
    # The Cluster path checked the ban of every key that a rule counts under, named or
    # not: it refused what one server admits.
    any_storage.ban("alice", 60)
    scopes = [
        *_scope(GLOBAL_SCOPE, ONE_IN_TEN),
        _keyed("login per form[user]", "alice", ONE_IN_TEN),
    ]
    assert any_storage.hit("10.0.0.1", scopes) == ADMITTED
    refused = any_storage.hit("10.0.0.2", scopes, also=("alice",))
    assert refused == Decision(
        admitted=False, banned=True, retry_after=60, manual=True, banned_as="alice"
    )


def test_the_longest_of_the_bans_named_refuses(any_storage: Storage, clock: FakeClock) -> None:
    # The Cluster path returned the ban of a client that no rule counts under (read first)
    # without the longer ban of a key whose rules it checks.
    any_storage.ban("10.0.0.9", 30)
    any_storage.ban("alice", 60)
    scopes = [_keyed("login per form[user]", "alice", ONE_IN_TEN)]
    refused = any_storage.hit("10.0.0.1", scopes, also=("10.0.0.9", "alice"))
    assert (refused.banned_as, refused.retry_after) == ("alice", 60)
    any_storage.ban("10.0.0.1", 10)  # the client's own ban comes first
    assert any_storage.hit("10.0.0.1", scopes, also=("10.0.0.9", "alice")) == Decision(
        admitted=False, banned=True, retry_after=10, manual=True
    )


def test_of_equal_waits_the_first_scope_s_rule_refuses(any_storage: Storage) -> None:
    # The Cluster path named the client's own rule when a key's rule, earlier among the
    # scopes, made the client wait as long.
    scopes = [_keyed("account", "alice", ONE_IN_TEN), *_scope("login", ONE_IN_TEN)]
    assert any_storage.hit("10.0.0.1", scopes).admitted
    refused = any_storage.hit("10.0.0.1", scopes, usage=True)
    assert refused == Decision(
        admitted=False,
        retry_after=10,
        rule=ONE_IN_TEN,
        scope="account",
        usage=Usage(ONE_IN_TEN, 0, 10, "account"),
    )


def test_usage_covers_the_rules_of_every_key(any_storage: Storage) -> None:
    # On a Cluster, a decision's usage left the rules of other keys out, and usage() and
    # record() of scopes with several keys failed (keys on several slots in one script).
    tight, loose = Rule(2, 10), Rule(5, 10)
    scopes = [*_scope(GLOBAL_SCOPE, loose), _keyed("account", "alice", tight)]
    assert any_storage.hit("10.0.0.1", scopes, usage=True).usage == Usage(tight, 1, 10, "account")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        any_storage.record("10.0.0.2", scopes)  # type: ignore[attr-defined]
    assert any_storage.usage("10.0.0.1", scopes) == [
        Usage(loose, 4, 10, GLOBAL_SCOPE),
        Usage(tight, 0, 10, "account"),
    ]
    refused = any_storage.hit("10.0.0.1", scopes, usage=True)
    assert refused.usage == Usage(tight, 0, 10, "account")
    slots = [Scope.of(GLOBAL_SCOPE, (loose,), concurrency=1, lease=60), _keyed("api", "bob", tight)]
    assert any_storage.hit("10.0.0.3", slots, token="t1").admitted
    in_flight = any_storage.hit("10.0.0.3", slots, usage=True, token="t2")
    assert (in_flight.concurrency, in_flight.usage) == (1, Usage(tight, 1, 10, "api"))


def test_an_empty_owner_is_the_client_s_own(any_storage: Storage) -> None:
    # Memory and one server count a scope whose owner is "" under the client (``owner or
    # client``); the Cluster path counted it under the key "" (the gate never makes one).
    assert any_storage.hit("victim", _scope(GLOBAL_SCOPE, ONE_IN_TEN)).admitted
    refused = any_storage.hit("victim", [_keyed(GLOBAL_SCOPE, "", ONE_IN_TEN)])
    assert refused == Decision(admitted=False, retry_after=10, rule=ONE_IN_TEN)


def test_a_strike_that_bans_makes_the_ban_s_steps_in_its_own_step(storage: Storage) -> None:
    # Hypothesis reaches a hit whose strike escalates less often than a report that does.
    subnet = SubnetBanRule(2, 60, 3600)
    one = _scope(GLOBAL_SCOPE, ONE_IN_TEN)
    ban_at_once = BanRule(1, 10, 600)
    decisions = []
    for address in ("10.0.0.1", "10.0.0.2"):
        steps = _ban_steps(address, (True, False, True), subnet)
        assert storage.hit(address, one).admitted
        refused = storage.hit(address, one, report_to=ban_at_once, steps=steps)  # type: ignore[call-arg]
        decisions.append(refused.ban)
    first, second = decisions
    assert first == NewBan(600, BanDetail(600, 0, "rate_limit", 1, "default"))  # one banned address
    network_ban = BanDetail(3600, 0, "subnet", 0)
    assert second == NewBan(
        600, BanDetail(600, 0, "rate_limit", 1, "default"), "10.0.0.0/24", network_ban
    )
    assert storage.network_lengths() == {(4, 24)}
    assert storage.hit("10.0.0.3", one, also=("10.0.0.0/24",)).banned_as == "10.0.0.0/24"


def test_a_report_that_bans_a_network_registers_it_in_its_own_step(storage: Storage) -> None:
    steps = BanSteps(details=False, register=True)
    new = storage.report_steps("203.0.113.0/24", BanRule(1, 10, 600), "reports", steps)  # type: ignore[attr-defined]
    assert new == NewBan(600)
    assert storage.network_lengths() == {(4, 24)}
