"""What a storage is asked to do for one request: the scopes its rules count in.

A ``Scope`` is a plain description of work (rules, cost, concurrency limit, whose
counters, this request's distinct values), made by the policy layer and read by every
storage alike: no field belongs to one storage, and nothing here knows about Flask or
routes. A storage keeps what it derives from a scope in the scope's ``derived`` table,
so that a request re-reads it instead of computing it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ..decision import GLOBAL_SCOPE
from ..rules import Rule
from ..units import microseconds

__all__ = ["GLOBAL_SCOPE", "Scope", "keyed_prefix", "within"]


@dataclass(frozen=True)
class Scope:
    """Rules that count the same requests: the global ones, or one route's own.

    ``logged`` are the sliding-log rules, decided from one log of timestamps per client
    and scope; ``depth`` is their largest count, the number of timestamps the log must
    keep. ``stateful`` rules use another strategy and keep a state of their own.

    A request counts ``cost`` times in every rule of the scope (a cost above a rule's
    count is never admitted; one above every count is kept as the largest count plus
    one, which is refused alike). A ``deferred`` scope (a ``count_when`` route's) is
    checked and recorded with the others, and the decision says what it reserved there,
    for the storage's ``refund`` to give back once the response is known.

    ``concurrency`` (0: no limit) is how many requests of a client may be in flight in
    the scope at once; each holds a slot, a lease that ends ``lease_us`` microseconds
    after it was taken unless released before (a worker that died never releases).
    Slots are always the request's client's: a scope with an ``owner`` has no limit.

    ``owner``: whose counters these are, when not the request's client: the key that
    rules with their own ``key`` named for this request.

    ``distinct`` rules count values, one per request whatever its cost: ``values`` holds
    this request's value for each (None: the rule does not apply to it), and
    ``distinct_ids`` names each rule's values within the scope (``"20/3600000000"``: its
    count and window; a second rule of the same count and window in the scope gets
    ``/1``), so that each keeps its own.
    """

    name: str
    rules: tuple[Rule, ...]
    depth: int
    logged: tuple[Rule, ...]
    stateful: tuple[Rule, ...]
    cost: int = 1
    deferred: bool = False
    concurrency: int = 0
    lease_us: int = 0
    owner: Optional[str] = None
    keyed: bool = False
    """Some rules have their own ``key``: the policy layer splits them out per request,
    each group into a scope with its ``owner``."""
    distinct: tuple[Rule, ...] = ()
    distinct_ids: tuple[str, ...] = ()
    values: tuple[Optional[str], ...] = ()
    shadow: bool = False
    """Some rules are shadow rules (``Rule.shadow``): checked, never refusing."""
    derived: dict[str, Any] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )
    """What a storage computed from this scope object, under a name of the storage's
    own: computed at its first request, one lookup for every later one (a scope made
    anew, e.g. with other values, starts empty)."""

    def __post_init__(self) -> None:
        # A cost above every count of the scope is refused whatever its size: kept one
        # above the largest, it stays a small number that both storages take exactly.
        largest = max((rule.count for rule in self.logged + self.stateful), default=0)
        if self.cost > largest + 1:
            object.__setattr__(self, "cost", largest + 1)

    @classmethod
    def of(
        cls,
        name: str,
        rules: tuple[Rule, ...],
        *,
        cost: int = 1,
        deferred: bool = False,
        concurrency: int = 0,
        lease: float = 0.0,
    ) -> Scope:
        logged = tuple(rule for rule in rules if rule.logged)
        distinct = tuple(rule for rule in rules if rule.distinct is not None)
        stateful = tuple(rule for rule in rules if not rule.logged and rule.distinct is None)
        depth = max((rule.count for rule in logged), default=0)
        ids: list[str] = []
        twins: dict[tuple[int, int], int] = {}
        for rule in distinct:
            shape = (rule.count, rule.window_us)
            twins[shape] = twin = twins.get(shape, -1) + 1
            ids.append(f"{rule.count}/{rule.window_us}" + (f"/{twin}" if twin else ""))
        values = (None,) * len(distinct)
        keyed = any(rule.key is not None for rule in rules)
        return cls(
            name,
            rules,
            depth,
            logged,
            stateful,
            cost,
            deferred,
            concurrency,
            microseconds(lease) if concurrency else 0,
            keyed=keyed,
            distinct=distinct,
            distinct_ids=(*ids,),
            values=values,
            shadow=any(rule.shadow for rule in rules),
        )


def keyed_prefix(scope: str) -> str:
    """How the names of the scopes of ``scope``'s rules with their own key begin (e.g.
    ``"login per "``): they belong to ``scope`` (``within``)."""
    return f"{scope} per " if scope else "per "


def within(name: str, scope: str) -> bool:
    """Whether counters of scope ``name`` belong to ``scope``: it, or one of its rules
    with their own key. What ``Storage.reset(client, scope)`` forgets."""
    return name == scope or name.startswith(keyed_prefix(scope))
