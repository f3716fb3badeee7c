"""What a storage decided about a request: frozen values with no HTTP and no Flask in
them (``responses`` turns them into HTTP), carrying what later stages need."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .rules import Rule

__all__ = [
    "ADMITTED",
    "BAN_REASONS",
    "BLOCKLIST",
    "BY_HAND",
    "BY_NO_BAN_RULE",
    "DEFAULT_OFFENCE",
    "GLOBAL_SCOPE",
    "IN_FLIGHT_WAIT",
    "MANUAL",
    "RATE_LIMIT",
    "REPORTS",
    "RESPONSE",
    "SUBNET",
    "BanDetail",
    "Decision",
    "NewBan",
    "Reservation",
    "ShadowRefusal",
    "Usage",
]

GLOBAL_SCOPE = ""
"""Scope name of the global rules; a ``specific`` route's scope is its endpoint name."""

IN_FLIGHT_WAIT = 1.0
"""The wait, in seconds, of a request refused for too many requests in flight: a slot
frees when another request ends, which no storage can foresee."""


REPORTS, RESPONSE, RATE_LIMIT, MANUAL = "reports", "response", "rate_limit", "manual"
SUBNET = "subnet"
"""A network banned by ``subnet_ban_rule``: enough of its addresses were banned."""
BLOCKLIST = "blocklist"
"""Banned by hand from a block list (``flask gatekeeper ban --file``)."""
BY_HAND = (MANUAL, BLOCKLIST)
"""The reasons ``GateKeeper.ban`` accepts."""
BAN_REASONS = (REPORTS, RESPONSE, RATE_LIMIT, MANUAL, SUBNET, BLOCKLIST)
"""Why a client is banned: ``report()`` calls, responses ``report_when`` accepted, 429s
counted as reports (``report_rate_limited``), by hand (one address or a block list), or
by the subnet ban rule."""
BY_NO_BAN_RULE = (MANUAL, SUBNET, BLOCKLIST)
"""Reasons of bans that the ban rule did not make: their refusals name no rule."""

DEFAULT_OFFENCE = "default"
"""The offence ``ban_rule`` counts (``report()`` without ``offence``); the ``ban_rules``
option names the others (jails), each counted on its own."""


@dataclass(frozen=True)
class BanDetail:
    """One active ban: seconds ``left``, seconds ``since`` it started, its ``reason``
    (one of ``BAN_REASONS``) and ``strikes``, the client's bans lately (escalation);
    ``offence``: the offence whose reports made it (``DEFAULT_OFFENCE`` for ``ban_rule``,
    a name of ``ban_rules``), None for a ban made without a ban rule (by hand)."""

    left: float
    since: float
    reason: str
    strikes: int
    offence: Optional[str] = None


@dataclass(frozen=True)
class NewBan:
    """A ban that a report made (or a refusal counted as one), and what the storage did
    after it in the same atomic step (``storage.base.BanSteps``): ``detail``, the
    client's ban in force after it (when asked for); ``network``, the network that the
    subnet ban rule banned with it, and ``network_detail`` its ban (when asked for). The
    gate signals and logs them without another storage call."""

    duration: float
    detail: Optional[BanDetail] = None
    network: Optional[str] = None
    network_detail: Optional[BanDetail] = None


@dataclass(frozen=True)
class Usage:
    """Where a client stands against one rule: for the ``RateLimit`` header field.

    ``reset`` is the number of seconds until the oldest request still counted stops
    counting (0 when none counts); ``scope`` names the scope the rule belongs to.
    """

    rule: Rule
    remaining: int
    reset: float
    scope: str = GLOBAL_SCOPE


@dataclass(frozen=True)
class Reservation:
    """What an admitted request recorded in one ``deferred`` scope (a ``count_when``
    route's), so that ``Storage.refund`` takes back exactly that and nobody else's.

    ``stamp``: the instant it was recorded at, whole microseconds (its timestamps in a
    sliding log). ``states``: for each stateful rule of the scope, the first number of
    the state it left (the window strategies: the window it was counted in; GCRA: when
    its share of the bucket ends). ``added``: for each distinct rule, whether it added
    its value (a value already seen in the window is not its own to take back).
    """

    stamp: int
    states: tuple[float, ...] = ()
    added: tuple[bool, ...] = ()


@dataclass(frozen=True)
class ShadowRefusal:
    """A shadow ``rule`` (of the scope ``scope``) that would have refused an admitted
    request, making it wait ``retry_after`` seconds."""

    rule: Rule
    scope: str
    retry_after: float


@dataclass(frozen=True, init=False)
class Decision:
    """The outcome of one atomic storage call for one request.

    ``retry_after`` is the exact wait in seconds until the request would be admitted
    (the ban's end, or the moment every full rule has room again); ``rule`` is the full
    rule that makes the client wait longest, and ``scope`` the scope it belongs to.
    ``usage``, when asked for, is the rule closest to its limit. ``new_ban`` is the
    duration of a ban this request started (a refusal counted as a report); ``manual``
    says a ban was set by hand, and ``banned_as`` names the banned client when it is not
    the request's own key (the address behind a ``key_func`` key). ``concurrency``, for a
    refusal by the limit of requests in flight of ``scope``, is that limit (then ``rule``
    is None and ``retry_after`` is ``IN_FLIGHT_WAIT``). ``reserved``, for an admitted
    request, holds what it recorded in each ``deferred`` scope, in their order.
    ``ban``, when the call was given ``BanSteps`` and the refusal's report banned, is
    that ban with what the same step did after it (``new_ban`` is its duration).
    ``offence``, for a refusal by a ban that reports of an offence of ``ban_rules`` made,
    names that offence (the refusal names its ban rule); None for the default offence's
    bans and those made by hand.
    ``shadowed``, for an admitted request, names the shadow rules that would have refused
    it, in the order of the scopes and their rules (a refused request names none).
    """

    admitted: bool
    banned: bool
    retry_after: float
    rule: Optional[Rule]
    scope: str
    usage: Optional[Usage]
    new_ban: Optional[float]
    manual: bool
    banned_as: Optional[str]
    concurrency: int
    reserved: tuple[Reservation, ...]
    ban: Optional[NewBan]
    offence: Optional[str]
    shadowed: tuple[ShadowRefusal, ...]

    def __init__(
        self,
        admitted: bool,
        banned: bool = False,
        retry_after: float = 0.0,
        rule: Optional[Rule] = None,
        scope: str = GLOBAL_SCOPE,
        usage: Optional[Usage] = None,
        new_ban: Optional[float] = None,
        manual: bool = False,
        banned_as: Optional[str] = None,
        concurrency: int = 0,
        reserved: tuple[Reservation, ...] = (),
        ban: Optional[NewBan] = None,
        offence: Optional[str] = None,
        shadowed: tuple[ShadowRefusal, ...] = (),
    ) -> None:
        # Every refused request makes one: its fields are written at once, where a frozen
        # dataclass's own __init__ writes them one by one through object.__setattr__:
        # 10,500 instructions per refused request (callgrind); the same fields, defaults,
        # equality and hash (tests/test_fast_paths.py).
        object.__setattr__(
            self,
            "__dict__",
            {
                "admitted": admitted,
                "banned": banned,
                "retry_after": retry_after,
                "rule": rule,
                "scope": scope,
                "usage": usage,
                "new_ban": new_ban,
                "manual": manual,
                "banned_as": banned_as,
                "concurrency": concurrency,
                "reserved": reserved,
                "ban": ban,
                "offence": offence,
                "shadowed": shadowed,
            },
        )


ADMITTED = Decision(admitted=True)
"""Shared by every admitted request, so the common path allocates nothing."""
