"""Which rules apply to a request: global, ``specific``, ``standalone``, ``bypass``, method.

Flask-free: ``Policies`` reads the marks the decorators left on a view, its view class and
its blueprints (from the app's own tables, handed in), and caches per endpoint the frozen
``RoutePolicy`` that ``resolve`` makes of them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Callable, Optional

from .decision import GLOBAL_SCOPE
from .rules import Rule
from .strategies import SLIDING_LOG

KeyFunc = Callable[[], Optional[str]]

__all__ = [
    "GLOBAL_SCOPE",
    "LARGE_LOG",
    "Mark",
    "Policies",
    "RoutePolicy",
    "Scope",
    "marks_of",
    "put_mark",
    "resolve",
    "with_strategy",
]

_MARKS_ATTRIBUTE = "_gatekeeper_marks"

LARGE_LOG = 1000
"""Sliding-log counts above this (8 KB of timestamps per client) get a start-up warning."""

logger = logging.getLogger("flask_gatekeeper")


@dataclass(frozen=True)
class Mark:
    """What ``@gk.bypass`` or ``@gk.specific(...)`` said about one view or blueprint."""

    bypass: bool = False
    rules: tuple[Rule, ...] = ()
    standalone: bool = False
    key_func: Optional[KeyFunc] = None

    def merge(self, other: Mark) -> Mark:
        """Two marks on one route: every rule applies, bypass or standalone sticks, and
        the first ``key_func`` (the view's, before its blueprints') wins."""
        return Mark(
            bypass=self.bypass or other.bypass,
            rules=self.rules + other.rules,
            standalone=self.standalone or other.standalone,
            key_func=self.key_func or other.key_func,
        )


@dataclass(frozen=True)
class Scope:
    """Rules that count the same requests: the global ones, or one route's own.

    ``logged`` are the sliding-log rules, decided from one log of timestamps per client
    and scope; ``depth`` is their largest count, the number of timestamps the log must
    keep. ``stateful`` rules use another strategy and keep a state of their own.
    """

    name: str
    rules: tuple[Rule, ...]
    depth: int
    logged: tuple[Rule, ...]
    stateful: tuple[Rule, ...]

    @classmethod
    def of(cls, name: str, rules: tuple[Rule, ...]) -> Scope:
        logged = tuple(rule for rule in rules if rule.logged)
        stateful = tuple(rule for rule in rules if not rule.logged)
        depth = max((rule.count for rule in logged), default=0)
        return cls(name, rules, depth, logged, stateful)


@dataclass(frozen=True)
class RoutePolicy:
    """What to do with requests to one endpoint.

    ``bypass``: do nothing at all. Otherwise check the ban, then every rule of ``scopes``
    (none for an excluded method: the ban still applies, nothing is counted), for the
    client named by ``key_func`` when the route has its own.
    """

    bypass: bool
    scopes: tuple[Scope, ...]
    key_func: Optional[KeyFunc] = None


BYPASS = RoutePolicy(bypass=True, scopes=())


def put_mark(target: object, owner: object, mark: Mark) -> None:
    """Attach ``mark`` for the extension ``owner`` to a view function, view class or blueprint.

    The mark is an attribute of the object itself, so it follows the view through
    ``functools.wraps`` and ``View.as_view``, and two views of the same name in two
    blueprints stay independent (flask-gatekeeper 1.0 keyed them by function name).
    """
    marks: dict[int, Mark] = dict(vars(target).get(_MARKS_ATTRIBUTE, {}))
    previous = marks.get(id(owner))
    marks[id(owner)] = mark if previous is None else previous.merge(mark)
    setattr(target, _MARKS_ATTRIBUTE, marks)


def marks_of(target: object, owner: object) -> Optional[Mark]:
    """The mark ``owner`` put on ``target``, if any."""
    marks: dict[int, Mark] = getattr(target, _MARKS_ATTRIBUTE, {})
    return marks.get(id(owner))


def with_strategy(rules: tuple[Rule, ...], strategy: str) -> tuple[Rule, ...]:
    """The rules, those without a strategy of their own given ``strategy``."""
    if strategy == SLIDING_LOG:
        return rules  # a rule without a strategy already is a sliding log
    return tuple(rule if rule.strategy else replace(rule, strategy=strategy) for rule in rules)


def resolve(
    endpoint: Optional[str],
    marks: Iterable[Mark],
    global_rules: tuple[Rule, ...],
    method_excluded: bool,
    strategy: str = SLIDING_LOG,
) -> RoutePolicy:
    """Combine the marks of a view and its blueprints with the global rules; rules
    without a strategy get ``strategy``, the extension's default."""
    mark = Mark()
    for each in marks:
        mark = mark.merge(each)
    if mark.bypass:
        return BYPASS
    if method_excluded:
        return RoutePolicy(bypass=False, scopes=(), key_func=mark.key_func)
    scopes = []
    if global_rules and not mark.standalone:
        scopes.append(Scope.of(GLOBAL_SCOPE, with_strategy(global_rules, strategy)))
    if mark.rules and endpoint is not None:
        scopes.append(Scope.of(endpoint, with_strategy(mark.rules, strategy)))
    return RoutePolicy(bypass=False, scopes=tuple(scopes), key_func=mark.key_func)


class Policies:
    """One app's route policies, resolved once per endpoint and method class.

    ``owner`` is the ``GateKeeper`` whose marks count; ``view_functions`` and
    ``blueprints`` are the app's own (live) tables, so routes added later are found.
    """

    def __init__(
        self,
        owner: object,
        view_functions: Mapping[str, object],
        blueprints: Mapping[str, object],
        *,
        global_rules: tuple[Rule, ...],
        excluded_methods: frozenset[str],
        strategy: str,
    ) -> None:
        self.owner = owner
        self._view_functions = view_functions
        self._blueprints = blueprints
        self._global_rules = global_rules
        self.excluded_methods = excluded_methods
        self._strategy = strategy
        self.cache: dict[tuple[Optional[str], bool], RoutePolicy] = {}
        """(endpoint, method excluded) -> policy; the request path reads it directly."""
        self._warned: set[Rule] = set()
        self.warn_large_logs(with_strategy(global_rules, strategy))

    def policy_for(self, endpoint: Optional[str], method: str) -> RoutePolicy:
        """The policy of an endpoint (None: no route matched, global rules apply)."""
        cache_key = (endpoint, method in self.excluded_methods)
        policy = self.cache.get(cache_key)
        if policy is None:
            policy = resolve(
                endpoint, self._marks(endpoint), self._global_rules, cache_key[1], self._strategy
            )
            for scope in policy.scopes:
                self.warn_large_logs(scope.logged)
            self.cache[cache_key] = policy
        return policy

    def route_rules(self, endpoint: str) -> Optional[tuple[Rule, ...]]:
        """The rules a route adds of its own (``specific``), or None when it is bypassed."""
        policy = resolve(endpoint, self._marks(endpoint), (), False, self._strategy)
        if policy.bypass:
            return None
        return tuple(rule for scope in policy.scopes for rule in scope.rules)

    def _marks(self, endpoint: Optional[str]) -> Iterable[Mark]:
        """Marks on the view, on its class-based view class, and on each enclosing blueprint."""
        if endpoint is None:
            return
        view = self._view_functions.get(endpoint)
        targets: list[object] = [view, getattr(view, "view_class", None)]
        blueprint = endpoint.rpartition(".")[0]
        while blueprint:
            targets.append(self._blueprints.get(blueprint))
            blueprint = blueprint.rpartition(".")[0]
        for target in targets:
            mark = marks_of(target, self.owner) if target is not None else None
            if mark is not None:
                yield mark

    def warn_large_logs(self, rules: Iterable[Rule]) -> None:
        """Log once per rule when an exact sliding log would hold many timestamps."""
        for rule in rules:
            if rule.logged and rule.count > LARGE_LOG and rule not in self._warned:
                self._warned.add(rule)
                logger.warning(
                    "rule %r keeps up to %d timestamps (%d KB) per client as an exact sliding "
                    "log; a quota this large fits in a few bytes with strategy 'gcra' "
                    '(or \'sliding-window\'): e.g. "%d per %g seconds (gcra)" or strategy="gcra"',
                    str(rule),
                    rule.count,
                    rule.count * 8 // 1000,
                    rule.count,
                    rule.window,
                )
