"""What is computed for each request: the app's functions that run per request, the
scopes a route's rules functions, costs, keys and distinct rules make of it, and the
one per-request state the gate keeps on ``g``.

Flask-free but for ``g``: ``PerRequest.scopes_for`` finishes the ``Pending`` scopes that
``routes.resolve`` left, from a cache of parsed rules; a scope with distinct rules gets
this request's values too. ``RequestState`` is what the gate keeps between its hooks
(the RateLimit fields, the slots held), on ``g`` under one private name.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Union

from flask import g

from .errors import ConfigError
from .identity.keys import KeyHasher, key_of, key_reader, stored_value
from .rules import KeySource, Rule, RulesFunction, key_label, parse_rules
from .storage.plan import Scope, keyed_prefix
from .strategies import SLIDING_LOG

__all__ = [
    "Cost",
    "KeyFunc",
    "Pending",
    "PerRequest",
    "Predicate",
    "RequestState",
    "ResponsePredicate",
    "RulesOrFunction",
    "current_state",
    "keyed_scope_name",
    "keyed_scopes",
    "owners",
    "pop_state",
    "state",
    "with_strategy",
    "with_values",
]

KeyFunc = Callable[[], Optional[str]]
"""``key_func``: the request's client key, or None to leave the request alone."""
Predicate = Callable[[], object]
"""``exempt_when``: called bare; true exempts the request."""
RulesOrFunction = Union[tuple[Rule, ...], RulesFunction]
CostFunction = Callable[[], int]
Cost = Union[int, CostFunction]
ResponsePredicate = Callable[[Any], object]
"""``count_when``, ``report_when``: called with the response."""

_PARSED_SCOPES = 1024
"""How many scopes built from rules functions' results are kept parsed."""

_G_STATE = "_gatekeeper"
"""The one attribute of ``g`` the gate uses."""

logger = logging.getLogger("flask_gatekeeper")


class RequestState:
    """What the gate keeps for the current request between its hooks: the RateLimit
    header ``fields`` for the response, and ``release_slots``, which gives back the
    slots an admitted request holds. Made only when one of them is needed: most
    requests never make one."""

    __slots__ = ("fields", "release_slots")

    def __init__(self) -> None:
        self.fields: Optional[list[tuple[str, str]]] = None
        self.release_slots: Optional[Callable[[], None]] = None


def current_state() -> Optional[RequestState]:
    """The current request's state, if it has one."""
    found: Optional[RequestState] = g.get(_G_STATE)
    return found


def state() -> RequestState:
    """The current request's state, made on first use."""
    found = current_state()
    if found is None:
        found = RequestState()
        setattr(g, _G_STATE, found)
    return found


def pop_state() -> Optional[RequestState]:
    """The current request's state, taken off ``g`` (the request ends: an app context
    that outlives it, as in tests, must not hand it to the next request)."""
    popped: Optional[RequestState] = g.pop(_G_STATE, None)
    return popped


def with_strategy(rules: tuple[Rule, ...], strategy: str) -> tuple[Rule, ...]:
    """The rules, those without a strategy of their own given ``strategy`` (distinct
    rules have none)."""
    if strategy == SLIDING_LOG:
        return rules  # a rule without a strategy already is a sliding log
    return tuple(
        rule if rule.strategy or rule.distinct is not None else replace(rule, strategy=strategy)
        for rule in rules
    )


def with_values(scope: Scope) -> Scope:
    """``scope`` with the current request's value for each distinct rule: its function's
    result as text (``identity.keys.stored_value``), or None when it returns None or raises
    (logged: the rule does not apply to this request)."""
    return replace(scope, values=tuple(_value(rule) for rule in scope.distinct))


def _value(rule: Rule) -> Optional[str]:
    try:
        value = rule.distinct() if rule.distinct is not None else None
        return None if value is None else stored_value(str(value))
    except Exception:
        logger.exception("a distinct function failed; its rule does not apply to this request")
        return None


def keyed_scope_name(scope: str, key: KeySource) -> str:
    """The scope that a rule with its own ``key`` counts in: its route's (or the global)
    scope's name and the key's, e.g. ``"login per form[user]"``. Resetting a scope
    resets these too (``within``)."""
    return keyed_prefix(scope) + key_label(key)


KeyedScope = tuple[Callable[[], Optional[str]], Scope]
"""A reader of the current request's key, and the scope its rules count in."""


@functools.lru_cache(maxsize=_PARSED_SCOPES)
def keyed_scopes(scope: Scope) -> tuple[Optional[Scope], tuple[KeyedScope, ...]]:
    """``scope`` split into the rules counted under the client, with the scope's limit
    of requests in flight (None when it has neither), and, per key, those with their own
    ``key`` (never with that limit: a slot is the client's, whatever the key)."""
    groups: dict[KeySource, list[Rule]] = {}
    for rule in scope.rules:
        if rule.key is not None:
            groups.setdefault(rule.key, []).append(rule)
    names: dict[str, int] = {}
    keyed = []
    for key, rules in groups.items():
        name = keyed_scope_name(scope.name, key)
        names[name] = names.get(name, 0) + 1
        if names[name] > 1:  # two functions of one name (lambdas): told apart
            name = f"{name} {names[name]}"
        of = Scope.of(name, tuple(rules), cost=scope.cost, deferred=scope.deferred)
        keyed.append((key_reader(key), of))
    plain = tuple(rule for rule in scope.rules if rule.key is None)
    own = None
    if plain or scope.concurrency:
        own = replace(
            Scope.of(scope.name, plain, cost=scope.cost, deferred=scope.deferred),
            concurrency=scope.concurrency,
            lease_us=scope.lease_us,
        )
    return own, tuple(keyed)


def owners(scopes: Iterable[Scope]) -> tuple[str, ...]:
    """The keys that rules with their own ``key`` count under: a ban of any of them
    refuses the request too."""
    return tuple(dict.fromkeys(scope.owner for scope in scopes if scope.owner is not None))


@dataclass(frozen=True)
class Pending:
    """A scope whose rules are partly computed per request: ``rules`` and whatever each
    of ``functions`` returns. Its ``concurrency`` and ``lease`` never are."""

    name: str
    rules: tuple[Rule, ...] = ()
    functions: tuple[RulesFunction, ...] = ()
    cost: Cost = 1
    deferred: bool = False
    concurrency: int = 0
    lease: float = 0.0

    @property
    def keyed(self) -> bool:
        """Whether some of its rules have their own ``key``, read per request."""
        return any(rule.key is not None for rule in self.rules)

    def add(
        self, rules: RulesOrFunction, cost: Cost = 1, deferred: bool = False, concurrency: int = 0
    ) -> Pending:
        """With ``rules`` too; the first mark that names a cost (the view's, before its
        blueprints') sets it, any deferred mark defers the scope, and the smallest
        concurrency limit given applies (every limit given holds)."""
        cost = self.cost if self.cost != 1 else cost
        deferred = self.deferred or deferred
        if concurrency and self.concurrency:
            concurrency = min(concurrency, self.concurrency)
        concurrency = concurrency or self.concurrency
        functions, fixed = self.functions, self.rules
        if isinstance(rules, RulesFunction):
            functions = (*functions, rules)
        else:
            fixed += rules
        return replace(
            self,
            rules=fixed,
            functions=functions,
            cost=cost,
            deferred=deferred,
            concurrency=concurrency,
        )

    def ready(self, strategy: str) -> Union[Scope, Pending]:
        """The scope itself when nothing in it is computed per request."""
        distinct = any(rule.distinct is not None for rule in self.rules)
        if self.functions or not isinstance(self.cost, int) or self.keyed or distinct:
            return self
        return self.scope(with_strategy(self.rules, strategy), self.cost)

    def scope(self, rules: tuple[Rule, ...], cost: int) -> Scope:
        """The scope with these rules (its own, or those computed for a request)."""
        return Scope.of(
            self.name,
            rules,
            cost=cost,
            deferred=self.deferred,
            concurrency=self.concurrency,
            lease=self.lease,
        )


def _hashable(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


def _scope_of(
    pending: Pending, values: tuple[object, ...], strategy: str, cost: int
) -> Optional[Scope]:
    rules = pending.rules
    for function, value in zip(pending.functions, values):
        if value is not None:
            rules += parse_rules(value, f"{function.name} (a function's result)")
    if not rules and not pending.concurrency:
        return None
    return pending.scope(with_strategy(rules, strategy), cost)


_parsed_scope = functools.lru_cache(maxsize=_PARSED_SCOPES)(_scope_of)


@dataclass(frozen=True)
class PerRequest:
    """What a route computes for each request: whether ``exempt_when`` exempts it, the
    rules of the ``Pending`` among its scopes, and their distinct rules' values."""

    scopes: tuple[Union[Scope, Pending], ...]
    exempt_when: tuple[Predicate, ...] = ()

    def scopes_for(
        self,
        client: str,
        strategy: str,
        *,
        values: bool = True,
        hasher: Optional[KeyHasher] = None,
    ) -> tuple[Scope, ...]:
        """This request's scopes (none when exempt), with their distinct rules' values
        unless ``values`` is false (reading usage needs none), and the keys of rules with
        their own by the key rule (``hasher``: ``hash_keys``). Raises what the app's
        rules and ``exempt_when`` functions raise, and ``ConfigError`` for a result that
        is not rules."""
        for exempt in self.exempt_when:
            if exempt():
                return ()
        scopes = []
        for item in self.scopes:
            scope = item if isinstance(item, Scope) else _computed(item, client, strategy)
            if scope is None:
                continue
            if scope.keyed:
                own, keyed = keyed_scopes(scope)
                found = [] if own is None else [own]
                for read, template in keyed:
                    text = _key_of_request(read, template)
                    if text is not None:
                        found.append(replace(template, owner=key_of(text, hasher)))
            else:
                found = [scope]
            for each in found:
                scopes.append(with_values(each) if values and each.distinct else each)
        return tuple(scopes)


def _key_of_request(read: Callable[[], Optional[str]], scope: Scope) -> Optional[str]:
    """The key ``scope``'s rules count under for this request; None, leaving them out
    of this request, when there is none or reading it fails (logged: the client's own
    rules still apply)."""
    try:
        return read()
    except Exception as exc:
        logger.warning(
            "the key of the rules of scope %r could not be read (%s: %s); "
            "they do not apply to this request",
            scope.name,
            type(exc).__name__,
            exc,
        )
        return None


def _computed(pending: Pending, client: str, strategy: str) -> Optional[Scope]:
    values = tuple(_hashable(function(client)) for function in pending.functions)
    cost = pending.cost if isinstance(pending.cost, int) else _checked_cost(pending.cost())
    try:
        hash(values)
    except TypeError:  # e.g. dicts: parsed every time
        return _scope_of(pending, values, strategy, cost)
    return _parsed_scope(pending, values, strategy, cost)


def _checked_cost(cost: object) -> int:
    """A cost function's result: a whole number of requests, at least 1."""
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
        raise ConfigError(f"cost: a cost function must return an integer >= 1, got {cost!r}")
    return cost
