"""The storage protocol: the only boundary that knows about time and data layout.

Each method is one atomic step that reads the clock once. ``hit`` does a whole request's
work (ban check, every rule's check, a slot of every concurrency limit, record if
admitted) so that a request costs one lock in memory and one round trip in Redis.

Failures: a storage raises ``StorageError`` when it cannot answer anyone now (an outage:
requests follow the outage policy, and the storage is tried again a second later), and
``StorageCallError`` when it answered but refused one call (a bug: that request alone
follows the policy). A storage may also have a ``check()`` method, which ``init_app``
calls once: it raises ``ConfigError`` for a setting that can never work, and
``StorageError`` when the storage does not answer yet.

Network bans: a ban whose client is a network's key (its CIDR,
``identity.addresses.network_of``) is also entered in a registry of the prefix lengths
that banned networks use, which the gate reads for each request (``network_lengths``) to
name the client's networks of those lengths in ``hit``'s ``also``; with no network
banned, a request looks up nothing more.

Bans in one step (optional, ``OneStepBans``): a storage with ``report_steps`` also
takes ``steps`` in ``hit``, and then makes what follows a ban that a report made in the
same atomic step (``BanSteps``: the ban's detail, a network client's entry in the
registry, the subnet ban rule's escalation), returning them in a ``decision.NewBan``.
The gate looks for it once, at start-up (``bans_in_one_step``): a storage without it
(or a subclass that overrides ``hit``, ``report``, ``ban`` or ``ban_detail`` but not
``report_steps``) is served as before, with a call of its own for each of those steps
after the ban.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Optional, Protocol

from ..decision import (
    DEFAULT_OFFENCE,
    MANUAL,
    REPORTS,
    BanDetail,
    Decision,
    NewBan,
    Reservation,
    Usage,
)
from ..errors import ConfigError, ConfigTypeError
from ..identity.addresses import NetworkLengths
from ..rules import BanRule
from .plan import Scope

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "BanSteps",
    "Clock",
    "OneStepBans",
    "Scope",
    "Storage",
    "bans_in_one_step",
    "check_key_prefix",
]

DEFAULT_KEY_PREFIX = "gatekeeper:"
"""Prefix of every key a shared storage writes, so several apps can share one database."""

RECORD_DEPRECATED = (
    "Storage.record is deprecated: hit() records count_when routes' scopes when it admits "
    "the request (Decision.reserved), and refund() takes back what count_when does not count"
)

Clock = Callable[[], float]
"""Returns the current time in seconds; only differences matter (e.g. ``time.monotonic``)."""


def check_key_prefix(value: object, name: str) -> str:
    """A key prefix, refused when it could break the Redis Cluster hash tag."""
    if not isinstance(value, str):
        raise ConfigTypeError(f"{name}: expected a string, got {value!r}")
    if "{" in value or "}" in value:
        raise ConfigError(f"{name}: braces would break the Redis Cluster hash tag: {value!r}")
    return value


@dataclass(frozen=True)
class BanSteps:
    """What a ban that a report makes (or a refusal counted as one) brings along, done by
    a storage with ``report_steps`` in the same atomic step as the ban:

    - ``details``: return the client's ban in force after it (``NewBan.detail``), and
      the network's when it is banned too (for the ``client_banned`` signal);
    - ``register``: the client is a network: its ban enters the registry, as
      ``ban(client, 0)`` would enter it;
    - ``network``: the subnet ban rule's escalation. Unless ``network`` is banned now,
      count the client's key among its banned addresses, as a request of the scope
      ``addresses`` (one distinct rule, whose value is the client's key: the scope is
      the rule's own, shared by every client) under ``network`` would be counted; when
      that leaves the rule no room (or it had none for a new address), ban ``network``
      for ``duration`` seconds with the reason "subnet", as ``ban`` would (a longer ban
      stands; it enters the registry), and name it in ``NewBan.network``.
    """

    details: bool = False
    register: bool = False
    network: Optional[str] = None
    addresses: Optional[Scope] = None
    duration: float = 0.0


class Storage(Protocol):
    """What the extension needs from a storage backend; ``client`` is always a key."""

    def hit(
        self,
        client: str,
        scopes: Sequence[Scope],
        *,
        usage: bool = False,
        report_to: Optional[BanRule] = None,
        also: Sequence[str] = (),
        token: Optional[str] = None,
        offence: str = DEFAULT_OFFENCE,
    ) -> Decision:
        """Refuse a banned client, or when one of ``also`` is banned (the address behind a
        ``key_func`` key, the client's networks; the decision's ``banned_as`` names the
        one with the longest ban); else refuse if any rule
        of ``scopes`` has no room for its scope's ``cost`` more requests (a cost above a
        rule's count never fits), or any distinct rule none for the request's new value;
        else, with a ``token``, refuse if a scope with a ``concurrency`` limit already
        holds that many unexpired slots of the client (the decision names the scope and
        the limit); else record the request (``cost`` times, and its values) in every
        scope, take a slot named ``token`` in every scope with a concurrency limit (a
        lease of the scope's ``lease_us``), and admit. Refused requests are not recorded
        and take no slot. An admitted request's decision says what it recorded in each
        ``deferred`` scope (``Decision.reserved``, in their order), for ``refund``.

        A scope with an ``owner`` counts under that key instead of ``client``; slots are
        always the client's (a scope with an owner has no concurrency limit).

        ``usage``: also return the rule closest to its limit. ``report_to``: a refusal by a
        rule or a concurrency limit also counts as one report toward this ban rule (same
        atomic step), of ``offence`` (as ``report`` counts it).
        """
        ...

    def release(self, client: str, scope_names: Sequence[str], token: str) -> None:
        """Give back the slot ``token`` of the client in each of the named scopes (one
        already expired, released or forgotten is no error)."""
        ...

    def refund(self, client: str, scopes: Sequence[Scope], reserved: Sequence[Reservation]) -> None:
        """Take back what ``hit`` recorded for one admitted request in each of ``scopes``
        (deferred scopes of that hit, each with its ``Reservation``), and nothing else:
        in a sliding log ``cost`` timestamps of its stamp (those of one microsecond are
        interchangeable); in a window strategy its cost, from the window it was counted
        in; in GCRA what is left of its share of the bucket; in a distinct rule its
        value, when it added it and no request has seen it since. What no longer counts
        (a window that has passed) is left alone.

        (``record``, the deferred recording this replaces, is deprecated; a storage object
        without ``refund`` is still served the old way, with a ``DeprecationWarning``.)"""
        ...

    def usage(self, client: str, scopes: Sequence[Scope]) -> list[Usage]:
        """Where the client stands against every rule of ``scopes``, in their order,
        counting nothing."""
        ...

    def report(
        self,
        client: str,
        ban_rule: BanRule,
        reason: str = REPORTS,
        offence: str = DEFAULT_OFFENCE,
    ) -> Optional[float]:
        """Record one report of ``offence`` (each offence's reports are logged on their
        own); when they complete ``ban_rule`` (that offence's), ban the client (for
        ``reason``, one of ``decision.BAN_REASONS``, and ``offence``) and return the
        ban's duration (escalated for repeat offenders, whatever offence banned them
        before), else None. A longer ban in force stands, with its offence."""
        ...

    def ban(
        self, client: str, duration: float, reason: str = MANUAL, offence: str = DEFAULT_OFFENCE
    ) -> None:
        """Ban now for ``duration`` seconds (never shortening a longer ban), for
        ``reason`` (by hand unless said) and, when ``reason`` is a ban rule's (a ban
        handed over from the outage fallback), ``offence``. A network's key enters the
        registry until the ban in force after the call ends, whatever started it:
        ``ban(network, 0)`` changes no ban and registers the one a report started
        (``report`` never registers)."""
        ...

    def unban(self, client: str) -> bool:
        """End the ban and forget the client's ban history; True if it was banned. A
        network leaves the registry."""
        ...

    def network_lengths(self, *, cached: bool = False) -> NetworkLengths:
        """The registry: ``(IP version, prefix length)`` of every network banned now.

        ``cached``: the answer a request uses, which never raises. A storage shared by
        processes may answer from its copy up to a second old (a network that another
        process banned meanwhile is not refused yet), or with
        ``identity.addresses.EVERY_LENGTH`` when its copy is older, for its next ``hit``
        to read the registry along."""
        ...

    def banned_for(self, client: str) -> float:
        """Seconds left of the client's ban, 0 when not banned."""
        ...

    def bans(self) -> dict[str, float]:
        """Every active ban: client -> seconds left."""
        ...

    def ban_detail(self, client: str) -> Optional[BanDetail]:
        """The client's ban in force, or None."""
        ...

    def ban_details(self) -> dict[str, BanDetail]:
        """Every active ban: client -> its details."""
        ...

    def reset(self, client: str, scope: Optional[str] = None) -> None:
        """Forget everything about the client: counters, slots held, reports of every
        offence, ban and its history (a network leaves the registry); with ``scope``,
        only its counters and slots in that scope."""
        ...


class OneStepBans(Storage, Protocol):
    """A storage that makes the steps after a ban in the ban's own atomic step (see the
    module's docstring): ``MemoryStorage`` and ``RedisStorage`` are."""

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
        """``Storage.hit``; ``steps``: when the refusal's report (``report_to``) bans,
        the steps that follow, in the same step; the decision's ``ban`` says what they
        did."""
        ...

    def report_steps(
        self,
        client: str,
        ban_rule: BanRule,
        reason: str,
        steps: Optional[BanSteps],
        offence: str = DEFAULT_OFFENCE,
    ) -> Optional[NewBan]:
        """``report``, and when it bans, the ``steps`` that follow, in the same atomic
        step (on Redis Cluster, as few calls as the keys' slots allow): the new ban and
        what the steps did, or None when the report does not ban."""
        ...


_STEP_METHODS = ("report_steps", "hit", "report", "ban", "ban_detail")
"""``report_steps`` and the methods whose calls the steps after a ban replace."""


def bans_in_one_step(storage: object) -> Optional[OneStepBans]:
    """``storage`` when it makes the steps after a ban itself (``OneStepBans``), else
    None. Asked once, at start-up: a subclass that overrides ``hit``, ``report``,
    ``ban`` or ``ban_detail`` (to log bans, say) without ``report_steps`` is served the
    old way, so its own methods keep being called."""
    defined_in = {
        name: next((cls for cls in type(storage).__mro__ if name in vars(cls)), None)
        for name in _STEP_METHODS
    }
    owner = defined_in["report_steps"]
    if owner is None or any(cls is not owner for cls in defined_in.values()):
        return None
    return storage  # type: ignore[return-value]  # it has report_steps and its hit
