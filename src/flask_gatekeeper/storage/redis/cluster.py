"""The Redis Cluster path: a request whose keys sit on several slots, one call per slot.

Each call is atomic on its own slot, the request is not (docs/workers.md); the decision is
the one that a single script over every key would make.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Optional

from ...decision import DEFAULT_OFFENCE, RATE_LIMIT, Decision
from ...identity.addresses import network_of
from ...rules import BanRule, Rule
from ...units import microseconds
from ..base import BanSteps
from ..plan import Scope
from .encoding import (
    BANNED,
    CHECK_MODE,
    HIT_MODE,
    RECORD_MODE,
    RULES_MODE,
    BanState,
    ban_decision,
    decision_of,
    reservations,
)
from .scripts import BAN, ESCALATE

if TYPE_CHECKING:
    from .storage import RedisStorage

__all__ = ["hit_on_slots", "steps_apart"]


def _longest_ban(also: Sequence[str], bans: dict[str, BanState]) -> Optional[Decision]:
    """The refusal by the longest ban among ``also`` (the first of equal ones), from
    ``bans``: each client's ban state, read apart."""
    longest, banned = 0, ""
    for other in also:
        left = bans.get(other, (0, 0, ""))[0]
        if left > longest:
            longest, banned = left, other
    return ban_decision(bans[banned], banned) if longest else None


def _position(scopes: Sequence[Scope], scope_name: Optional[str]) -> int:
    """Where the scope of this name comes among ``scopes``: the order that breaks ties."""
    return next(index for index, scope in enumerate(scopes) if scope.name == scope_name)


def _first_longest(scopes: Sequence[Scope], refusals: Sequence[Decision]) -> Decision:
    """The refusal with the longest wait, of the first scope among equal ones, as one
    script over every scope would choose it (Redis Cluster: each slot's own decision)."""
    return min(
        refusals, key=lambda refusal: (-refusal.retry_after, _position(scopes, refusal.scope))
    )


def _with_closest(
    decision: Decision, scopes: Sequence[Scope], others: Sequence[Decision]
) -> Decision:
    """``decision`` with the closest rule of its own and of ``others`` (decided on other
    slots) as its usage: the fewest left, then the longest reset, then the first scope."""
    usages = [seen.usage for seen in (decision, *others) if seen.usage is not None]
    if not usages:
        return decision
    best = min(usages, key=lambda use: (use.remaining, -use.reset, _position(scopes, use.scope)))
    return decision if best is decision.usage else replace(decision, usage=best)


def hit_on_slots(
    storage: RedisStorage,
    client: str,
    scopes: Sequence[Scope],
    usage: bool,
    report_to: Optional[BanRule],
    also: Sequence[str],
    token: Optional[str],
    offence: str = DEFAULT_OFFENCE,
) -> Decision:
    """Redis Cluster, where other clients' bans (``also``) and rules with their own
    key sit on other slots: read each other client's ban (one round trip each), check
    each key's rules, and its ban when ``also`` names it (one round trip per key,
    recording nothing); a ban among them refuses, after one more read of the client's
    own ban (its own ban comes first). Then the client's own script runs: as a request
    when every key admitted, and then each key's rules are recorded (one more round
    trip per key); else as a check, which reports the refusal. The decision is the one
    script's: the longest wait (the first rule of equal ones), and usage over every
    rule. Each call is atomic on its own slot, the request is not (docs/workers.md).
    Only the client's own script, run as a request, checks and takes the slots of
    ``token`` (a key's scopes have none)."""
    own = [scope for scope in scopes if not scope.owner]  # "": the client's (RedisStorage._scopes)
    keyed: dict[str, list[Scope]] = {}
    for scope in scopes:
        if scope.owner:
            keyed.setdefault(scope.owner, []).append(scope)
    bans = {other: storage._ban_state(other) for other in also if other not in keyed}
    checks: list[tuple[list[Any], list[tuple[Rule, str]], list[Scope]]] = []
    for owner, group in keyed.items():
        mode = CHECK_MODE if owner in also else RULES_MODE
        answer, rules = storage._hit(owner, group, mode, usage)
        if answer[0] == BANNED:
            bans[owner] = (answer[1], answer[2], answer[4])
        checks.append((answer, rules, group))
    refused = _longest_ban(also, bans)
    if refused is not None:
        state = storage._ban_state(client)
        return refused if not state[0] else ban_decision(state)
    checked = [decision_of(answer, rules, group, usage=usage) for answer, rules, group in checks]
    refusals = [decision for decision in checked if not decision.admitted]
    if not refusals:
        answer, rules = storage._hit(
            client, own, HIT_MODE, usage, report_to, token=token, offence=offence
        )
        decision = decision_of(answer, rules, own, usage=usage)
        if decision.banned or decision.rule is not None:
            return decision  # every key admitted: the client's own refusal is the longest
        if not decision.admitted:  # too many in flight: nothing recorded
            return _with_closest(decision, scopes, checked)
        reserved = reservations(answer, own)
        records = []
        for owner, group in keyed.items():
            answer, rules = storage._hit(owner, group, RECORD_MODE, usage)
            reserved.update(reservations(answer, group))
            records.append(decision_of(answer, rules, group, usage=usage))
        if reserved:
            ordered = tuple(reserved[id(scope)] for scope in scopes if scope.deferred)
            decision = replace(decision, reserved=ordered)
        shadowed = [*decision.shadowed, *(s for each in checked for s in each.shadowed)]
        if len(shadowed) > len(decision.shadowed):  # in the order of the scopes
            shadowed.sort(key=lambda refusal: _position(scopes, refusal.scope))
            decision = replace(decision, shadowed=tuple(shadowed))
        return _with_closest(decision, scopes, records)
    refusal = _first_longest(scopes, refusals)
    decision = decision_of(
        *storage._hit(client, own, CHECK_MODE, usage, report_to, offence=offence), own, (), usage
    )
    if decision.banned:
        return decision
    if not decision.admitted:  # the client's own refusal was reported by its script
        return replace(_first_longest(scopes, [decision, refusal]), new_ban=decision.new_ban)
    new_ban = (
        storage.report(client, report_to, RATE_LIMIT, offence) if report_to is not None else None
    )
    return replace(refusal, new_ban=new_ban)


def steps_apart(
    storage: RedisStorage, client: str, steps: BanSteps, own: list[Any]
) -> tuple[list[Any], list[Any]]:
    """Redis Cluster: the steps after a ban whose keys sit on other slots, each slot
    in one call: the client's ban detail when its script did not read it (one call
    on its slot), the escalation (one on the network's slot), each registry entry
    (one on the registry's)."""
    if not own and (steps.details or steps.register):
        own = storage._run(
            BAN, [storage._key(client, "ban")], [storage._now_argument(), "detail", 0]
        )
    where = network_of(client) if steps.register else None
    if where is not None and own:
        storage._registry_call("add", (client, where, int(own[0])))
    network, addresses = steps.network, steps.addresses
    if not network or addresses is None:
        return own, []
    rule = addresses.distinct[0]
    keys = [storage._key(network, "ban"), storage._distinct_key(network, addresses, 0)]
    args = [storage._now_argument(), client, rule.count, rule.window_us]
    wider = storage._run(ESCALATE, keys, [*args, microseconds(steps.duration)])
    where = network_of(network)
    if wider and where is not None:
        storage._registry_call("add", (network, where, int(wider[0])))
    return own, wider
