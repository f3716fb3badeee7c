"""What crosses the wire: key names, the scripts' arguments, and their answers read back.

Every key of a client carries its ``{hash tag}``, so one script's keys sit on one Redis
Cluster slot; the registry of network bans sits under a tag of its own (``REGISTRY_TAG``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any, Optional, Union
from urllib.parse import quote, unquote

from ...decision import (
    ADMITTED,
    BY_NO_BAN_RULE,
    DEFAULT_OFFENCE,
    GLOBAL_SCOPE,
    IN_FLIGHT_WAIT,
    BanDetail,
    Decision,
    Reservation,
    ShadowRefusal,
    Usage,
)
from ...identity.addresses import NetworkLengths, network_of
from ...rules import BanRule, Rule
from ...strategies import STRATEGY_CODES
from ...units import MAX_MICROSECONDS, microseconds, seconds
from ..base import BanSteps
from ..plan import Scope

__all__ = [
    "BANNED",
    "CHECK_MODE",
    "DISTINCT",
    "HIT_MODE",
    "NO_REPORT_TO",
    "RECORD_MODE",
    "REGISTRY_TAG",
    "RULES_MODE",
    "SHADOW_KEY",
    "Argument",
    "BanState",
    "ban_decision",
    "ban_rule_arguments",
    "client_of",
    "decision_of",
    "detail_of",
    "hash_tag",
    "length_text",
    "registry_lengths",
    "report_flag",
    "reservations",
    "scope_of_key",
    "scope_suffix",
    "shadow_positions",
    "stored",
]

Argument = Union[int, str, bytes]
"""What a script's ARGV holds: numbers, text, and distinct values as UTF-8 bytes."""

_ADMITTED, BANNED, _IN_FLIGHT = 0, 1, 3
"""``hit.lua``'s answer, its first value: admitted, banned, too many in flight (any other:
a rule refused)."""

HIT_MODE, RECORD_MODE, CHECK_MODE, RULES_MODE = 1, 2, 3, 4
"""``hit.lua``'s modes: a request, its recording alone, a request's checks without
recording it, or those checks without the ban (Redis Cluster: rules counted under
another key's slot are checked, then recorded once everything admits; the key's ban
refuses only when the request names it in ``also``). Only a request takes a slot."""


REGISTRY_TAG = "%networks"
"""The registry's hash tag: no client's (``hash_tag`` writes a ``%`` only before two hex
digits, or alone)."""


_TAG_SAFE = "".join(chr(code) for code in range(33, 127) if chr(code) not in "%{}")
_PLAIN_TAG = re.compile(f"[{re.escape(_TAG_SAFE)}]+").fullmatch
"""A client that is its own hash tag (every IP): checked faster than quoted."""


def hash_tag(client: str) -> str:
    """The client as a Redis Cluster hash tag: never empty, no braces (which would end
    the tag early and scatter one script's keys over several slots), plain ASCII (any
    text a ``key_func`` returns, lone surrogates included). IPs are unchanged."""
    if _PLAIN_TAG(client):
        return client
    if not client:
        return "%"
    return quote(client.encode("utf-8", "surrogatepass"), safe=_TAG_SAFE)


def client_of(tag: str) -> str:
    if tag == "%":
        return ""
    return unquote(tag, errors="surrogatepass")


def registry_lengths(members: list[Any]) -> NetworkLengths:
    """The registry's answer (``["4/24", "6/48"]``) as (version, length) pairs."""
    pairs = []
    for member in members:
        text = member.decode() if isinstance(member, bytes) else str(member)
        version, _, length = text.partition("/")
        pairs.append((int(version), int(length)))
    return frozenset(pairs)


@functools.lru_cache(maxsize=16)
def ban_rule_arguments(rule: BanRule) -> tuple[Union[int, str], ...]:
    """The ban rule as the scripts read it (once per rule: an app has one or a few)."""
    longest = microseconds(rule.max_duration) if rule.max_duration is not None else MAX_MICROSECONDS
    return (
        rule.count,
        microseconds(rule.window),
        microseconds(rule.duration),
        repr(float(rule.factor)),
        longest,
        microseconds(rule.forget_after),
    )


NO_REPORT_TO: tuple[Union[int, str], ...] = (0,) * 6


@functools.lru_cache(maxsize=4096)
def length_text(key: str) -> str:
    """A network key's entry in the registry ("4/24"), "" for any other key. Kept: a hit
    that may ban asks it of the client's network on every request (``RedisStorage._step_parts``)."""
    where = network_of(key)
    return "" if where is None else f"{where[0]}/{where[1]}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def detail_of(values: Sequence[Any]) -> Optional[BanDetail]:
    """``ban_detail``'s answer (``common.lua``: end, left, since, reason, strikes,
    offence) as a ``BanDetail``; None when empty or no ban is in force."""
    if not values or values[1] <= 0:
        return None
    left, since, reason, strikes = (
        seconds(values[1]),
        seconds(values[2]),
        _text(values[3]),
        int(values[4]),
    )
    if reason in BY_NO_BAN_RULE:
        return BanDetail(left, since, reason, strikes)
    # a ban made before offences has none: the default offence's (the only one then)
    return BanDetail(left, since, reason, strikes, _text(values[5]) or DEFAULT_OFFENCE)


DISTINCT = "distinct"
"""Starts the key of a distinct rule's values: ``distinct:<scope>:<distinct id>``."""

SHADOW_KEY = "/shadow"
"""Ends the key of a shadow rule's state, apart from an enforcing rule's of the same
count, window and strategy."""

_STATE_KEY = re.compile(
    "(?:"
    + "|".join(re.escape(name) for name in (*STRATEGY_CODES, DISTINCT))
    + r")(?::(.*))?:\d+/\d+(?:/\d+)?(?:"
    + re.escape(SHADOW_KEY)
    + ")?"
)


def shadow_positions(scope: Scope) -> str:
    """Where a scope's shadow rules are among its rules, from 1, as ``read_scopes``
    reads them: ``"2 3"``, or ``""`` for none."""
    if not scope.shadow:
        return ""
    rules = scope.logged + scope.stateful + scope.distinct
    return " ".join(str(index) for index, rule in enumerate(rules, 1) if rule.shadow)


def _shadowed(answer: list[Any], rules: list[tuple[Rule, str]]) -> tuple[ShadowRefusal, ...]:
    """The shadow rules that ``hit.lua`` says would have refused: pairs of a rule's
    number and its wait."""
    if len(answer) < 10 or not answer[9]:
        return ()
    pairs = answer[9]
    return tuple(
        ShadowRefusal(rules[index][0], rules[index][1], seconds(wait))
        for index, wait in zip(pairs[::2], pairs[1::2])
    )


def reservations(answer: list[Any], scopes: Sequence[Scope]) -> dict[int, Reservation]:
    """What ``hit.lua`` says it recorded in the deferred ``scopes`` (by their ``id``): per
    scope its stamp, each stateful rule's first number, each distinct rule's 1 when it
    added its value."""
    if len(answer) < 9 or not answer[8]:
        return {}
    values = iter(answer[8])
    reserved = {}
    for scope in scopes:
        if scope.deferred:
            stamp = int(next(values))
            states = tuple(float(next(values)) for _ in scope.stateful)
            added = tuple(next(values) == 1 for _ in scope.distinct)
            reserved[id(scope)] = Reservation(stamp, states, added)
    return reserved


def _jail_of(offence: object) -> Optional[str]:
    """A ban's offence as ``Decision.offence`` names it: None for the default offence's
    (and a ban made before offences, which has none)."""
    text = _text(offence)
    return None if text in ("", DEFAULT_OFFENCE) else text


def report_flag(
    report_to: Optional[BanRule], offence: str, steps: Optional[BanSteps]
) -> Union[int, str]:
    """``hit.lua``'s ARGV[3]: 0 when a refusal is no report; else 1, or 2 when step
    arguments follow, then ``=`` and the offence's name unless it is the default one."""
    if report_to is None:
        return 0
    head = "1" if steps is None else "2"
    return head if offence == DEFAULT_OFFENCE else f"{head}={offence}"


def stored(offence: str) -> str:
    """An offence as the scripts store it: "" for the default offence."""
    return "" if offence == DEFAULT_OFFENCE else offence


BanState = tuple[int, int, object]
"""A ban as ``ban.lua`` reads its "state": microseconds left (0: none), 1 when set by
hand, and its offence."""


def ban_decision(state: BanState, banned_as: Optional[str] = None) -> Decision:
    """The refusal by a ban of this ``state``, as the memory storage's model makes it."""
    left, manual, offence = state
    return Decision(
        admitted=False,
        banned=True,
        retry_after=seconds(left),
        manual=manual == 1,
        banned_as=banned_as,
        offence=None if manual == 1 else _jail_of(offence),
    )


def scope_suffix(scope_name: str) -> str:
    """The end of a scope's key suffixes: nothing for the global scope, else ``:<name>``."""
    return "" if scope_name == GLOBAL_SCOPE else f":{scope_name}"


def scope_of_key(suffix: str) -> Optional[str]:
    """The scope a client key's suffix (``log:<scope>``, ``slots:<scope>``,
    ``gcra:<scope>:5/100``, ``distinct:<scope>:5/100``...) belongs to; None for its ban
    and reports."""
    for kind in ("log", "slots"):
        if suffix == kind or suffix.startswith(f"{kind}:"):
            return suffix[len(kind) + 1 :]
    state = _STATE_KEY.fullmatch(suffix)
    return None if state is None else (state[1] or GLOBAL_SCOPE)


def decision_of(
    answer: list[Any],
    rules: list[tuple[Rule, str]],
    scopes: Sequence[Scope],
    also: Sequence[str] = (),
    usage: bool = False,
) -> Decision:
    """``hit.lua``'s answer, for these ``scopes`` (their rules), as a decision."""
    status, wait, limiting, closest, remaining, reset, new_ban = answer[:7]
    if status == BANNED:
        return Decision(
            admitted=False,
            banned=True,
            retry_after=seconds(wait),
            manual=limiting == 1,
            banned_as=also[closest - 1] if closest > 0 else None,
            offence=_jail_of(remaining) if limiting != 1 else None,
        )
    seen = None
    if usage and closest >= 0:
        usage_rule, usage_scope = rules[closest]
        seen = Usage(usage_rule, remaining, seconds(reset), usage_scope)
    if status == _ADMITTED:
        reserved = reservations(answer, scopes)
        shadowed = _shadowed(answer, rules)
        if reserved or shadowed:
            ordered = tuple(reserved[id(scope)] for scope in scopes if scope.deferred and reserved)
            return Decision(admitted=True, usage=seen, reserved=ordered, shadowed=shadowed)
        return Decision(admitted=True, usage=seen) if seen is not None else ADMITTED
    if status == _IN_FLIGHT:
        full = scopes[limiting]
        return Decision(
            admitted=False,
            retry_after=IN_FLIGHT_WAIT,
            scope=full.name,
            usage=seen,
            new_ban=seconds(new_ban) if new_ban >= 0 else None,
            concurrency=full.concurrency,
        )
    rule, scope_name = rules[limiting]
    return Decision(
        admitted=False,
        retry_after=seconds(wait),
        rule=rule,
        scope=scope_name,
        usage=seen,
        new_ban=seconds(new_ban) if new_ban >= 0 else None,
    )
