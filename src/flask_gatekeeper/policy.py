"""Which rules apply to a request: global, ``specific``, ``standalone``, ``bypass``, method.

Pure and Flask-free: the extension hands in what the decorators marked on the view and its
blueprints, and gets back a frozen ``RoutePolicy`` that it caches per endpoint.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Callable, Optional

from .rules import Rule
from .strategies import SLIDING_LOG

KeyFunc = Callable[[], Optional[str]]

__all__ = [
    "GLOBAL_SCOPE",
    "Mark",
    "RoutePolicy",
    "Scope",
    "marks_of",
    "put_mark",
    "resolve",
    "with_strategy",
]

GLOBAL_SCOPE = ""
"""Scope name of the global rules; a ``specific`` route's scope is its endpoint name."""

_MARKS_ATTRIBUTE = "_gatekeeper_marks"


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
