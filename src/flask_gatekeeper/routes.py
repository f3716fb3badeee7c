"""Which rules apply to a route: the marks the decorators leave (``@gk.bypass``,
``@gk.specific``), the scopes they count in, and the ``RoutePolicy`` each endpoint and
method resolves to: global, ``specific`` (per route, per method or in a shared scope),
``standalone``, ``bypass``, excluded methods and static files.

Flask-free: ``Policies`` reads the marks on a view, its view class and its blueprints
(from the app's own tables, handed in), and caches per endpoint and method the frozen
``RoutePolicy`` that ``resolve`` makes of them. A policy with nothing computed per
request has its scopes ready; otherwise ``request.PerRequest`` finishes them for each
request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from .decision import GLOBAL_SCOPE
from .request import (
    Cost,
    KeyFunc,
    Pending,
    PerRequest,
    Predicate,
    ResponsePredicate,
    RulesOrFunction,
    with_strategy,
)
from .rules import Rule, RulesFunction
from .storage.plan import Scope

if TYPE_CHECKING:
    from .options import Settings

__all__ = [
    "BYPASS",
    "HTTP_METHODS",
    "LARGE_LOG",
    "Mark",
    "Policies",
    "RoutePolicy",
    "default_scope_name",
    "is_static",
    "marks_of",
    "own_scope_name",
    "put_mark",
    "resolve",
    "shared_scope_name",
]

_MARKS_ATTRIBUTE = "_gatekeeper_marks"

HTTP_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)
"""RFC 9110's methods and PATCH: a name outside them is most likely a typo."""

_SHARED = "="
_METHODS = "@"
_ESCAPE = "\\"

LARGE_LOG = 1000
"""Sliding-log counts above this (8 KB of timestamps per client) get a start-up warning."""

logger = logging.getLogger("flask_gatekeeper")


def shared_scope_name(name: str) -> str:
    """The scope that every ``specific(scope=name)`` mark and ``gk.limit(scope=name)``
    counts in: one budget per client, whatever the route."""
    return _SHARED + name


def own_scope_name(endpoint: str, methods: Optional[frozenset[str]] = None) -> str:
    """A route's own scope: its endpoint's name, or for rules given to some methods only,
    ``"@POST,PUT endpoint"``. Neither can be a shared scope's name (those begin with
    ``=``): an endpoint that begins with a marker character is escaped with a backslash."""
    if methods is not None:
        return f"{_METHODS}{','.join(sorted(methods))} {endpoint}"
    if not endpoint or endpoint[0] in (_SHARED, _METHODS, _ESCAPE):
        return _ESCAPE + endpoint
    return endpoint


def default_scope_name(endpoint: str) -> str:
    """The scope a route's ``default_rules`` count in: ``"@default endpoint"``, one budget
    per client and route whatever the method. No other scope has this name: a method list
    is in capitals, and an endpoint that begins with ``@`` is escaped."""
    return f"{_METHODS}default {endpoint}"


def is_static(endpoint: Optional[str]) -> bool:
    """Whether ``endpoint`` serves static files: the app's ``static`` or a blueprint's."""
    return endpoint is not None and (endpoint == "static" or endpoint.endswith(".static"))


@dataclass(frozen=True)
class Mark:
    """What one ``@gk.bypass`` or ``@gk.specific(...)`` said about a view or blueprint.

    ``rules`` (or a function computing them per request) count in the route's own scope,
    or in the shared ``scope``, each request ``cost`` times (a number, or a function of
    the request), given back after the response when ``count_when`` declines it; with
    ``methods`` the whole mark applies to those methods only. ``concurrency`` (0: none)
    caps the client's requests in flight in that scope.
    """

    bypass: bool = False
    rules: RulesOrFunction = ()
    standalone: bool = False
    key_func: Optional[KeyFunc] = None
    methods: Optional[frozenset[str]] = None
    scope: Optional[str] = None
    exempt_when: Optional[Predicate] = None
    cost: Cost = 1
    count_when: Optional[ResponsePredicate] = None
    report_when: Optional[ResponsePredicate] = None
    concurrency: int = 0

    def applies_to(self, method: str) -> bool:
        return self.methods is None or method in self.methods

    def scope_name(self, endpoint: str) -> str:
        if self.scope is not None:
            return shared_scope_name(self.scope)
        return own_scope_name(endpoint, self.methods)


@dataclass(frozen=True)
class RoutePolicy:
    """What to do with requests to one endpoint with one method.

    ``bypass``: do nothing at all. Otherwise check the ban, then every rule of ``scopes``
    (none for an excluded method or a static file: the ban still applies, nothing is
    counted), for the client named by ``key_func`` when the route has its own. With
    ``per_request``, the scopes are computed for each request instead.
    """

    bypass: bool
    scopes: tuple[Scope, ...]
    key_func: Optional[KeyFunc] = None
    per_request: Optional[PerRequest] = None
    count_when: tuple[tuple[str, ResponsePredicate], ...] = ()
    """(scope name, predicate) of each deferred scope: counted after the response when
    its predicate says so."""
    report_when: tuple[ResponsePredicate, ...] = ()
    """A response any of these accept is one report of the client."""
    concurrency: bool = False
    """A scope limits the requests in flight: an admitted request holds a slot there
    until it ends."""


BYPASS = RoutePolicy(bypass=True, scopes=())


def put_mark(target: object, owner: object, mark: Mark) -> None:
    """Attach ``mark`` for the extension ``owner`` to a view function, view class or blueprint.

    The mark is an attribute of the object itself, so it follows the view through
    ``functools.wraps`` and ``View.as_view``, and two views of the same name in two
    blueprints stay independent (flask-gatekeeper 1.0 keyed them by function name).
    """
    marks: dict[int, tuple[Mark, ...]] = dict(vars(target).get(_MARKS_ATTRIBUTE, {}))
    marks[id(owner)] = (*marks.get(id(owner), ()), mark)
    setattr(target, _MARKS_ATTRIBUTE, marks)


def marks_of(target: object, owner: object) -> tuple[Mark, ...]:
    """The marks ``owner`` put on ``target``, in the order they were put."""
    marks: dict[int, tuple[Mark, ...]] = getattr(target, _MARKS_ATTRIBUTE, {})
    return marks.get(id(owner), ())


def resolve(
    endpoint: Optional[str],
    marks: Iterable[Mark],
    method: str,
    app: Settings,
    *,
    exempt: bool = False,
) -> RoutePolicy:
    """Combine the marks of a view and its blueprints that apply to ``method`` with what
    routes inherit from the ``app``'s options: its rules (``rate_limit_rules``, in the
    global scope; ``default_rules``, in the route's default scope when no mark for this
    method gives rules of its own, as Flask-Limiter's ``default_limits`` skip a route with
    limits of its own; neither on a standalone route), ``strategy`` for rules without
    one, ``exempt_when``, ``report_when``, ``concurrency`` (in the global scope) and
    ``concurrency_lease``. ``exempt`` (an
    excluded method, a static file): count nothing."""
    marks = [mark for mark in marks if mark.applies_to(method)]
    if any(mark.bypass for mark in marks):
        return BYPASS
    key_func = next((mark.key_func for mark in marks if mark.key_func), None)
    reports = tuple(f for f in (*(mark.report_when for mark in marks), app.report_when) if f)
    if exempt:
        return RoutePolicy(bypass=False, scopes=(), key_func=key_func, report_when=reports)
    scopes: dict[str, Pending] = {}

    def add(
        name: str,
        rules: RulesOrFunction,
        cost: Cost = 1,
        deferred: bool = False,
        concurrency: int = 0,
    ) -> None:
        if rules or concurrency:
            pending = scopes.get(name, Pending(name, lease=app.concurrency_lease))
            scopes[name] = pending.add(rules, cost, deferred, concurrency)

    if not any(mark.standalone for mark in marks):
        add(GLOBAL_SCOPE, app.rate_limit_rules, concurrency=app.concurrency or 0)
        if endpoint is not None and not any(mark.rules for mark in marks):
            add(default_scope_name(endpoint), app.default_rules)
    count_when: dict[str, ResponsePredicate] = {}
    if endpoint is not None:
        for mark in marks:
            name = mark.scope_name(endpoint)
            add(name, mark.rules, mark.cost, mark.count_when is not None, mark.concurrency)
            if mark.count_when is not None:
                count_when.setdefault(name, mark.count_when)
    ready = tuple(pending.ready(app.strategy) for pending in scopes.values())
    static = tuple(scope for scope in ready if isinstance(scope, Scope))
    exempts = tuple(f for f in (app.exempt_when, *(mark.exempt_when for mark in marks)) if f)
    deferred = tuple(count_when.items())
    held = any(pending.concurrency for pending in scopes.values())
    if not exempts and len(static) == len(ready):
        return RoutePolicy(False, static, key_func, None, deferred, reports, held)
    per_request = PerRequest(ready, exempts)
    return RoutePolicy(False, (), key_func, per_request, deferred, reports, held)


class Policies:
    """One app's route policies, resolved once per endpoint and method.

    ``owner`` is the ``GateKeeper`` whose marks count; ``view_functions`` and
    ``blueprints`` are the app's own (live) tables, so routes added later are found;
    ``settings`` are the app's options, which every route inherits (see ``resolve``).
    """

    def __init__(
        self,
        owner: object,
        view_functions: Mapping[str, object],
        blueprints: Mapping[str, object],
        settings: Settings,
    ) -> None:
        self.owner = owner
        self._view_functions = view_functions
        self._blueprints = blueprints
        self._settings = settings
        self.cache: dict[tuple[Optional[str], str], RoutePolicy] = {}
        """(endpoint, method) -> policy; the request path reads it directly. A method
        outside ``HTTP_METHODS`` is cached as "", so clients cannot grow it."""
        self._warned: set[Rule] = set()
        for rules in (settings.rate_limit_rules, settings.default_rules):
            if not isinstance(rules, RulesFunction):
                self.warn_large_logs(with_strategy(rules, settings.strategy))

    def policy_for(self, endpoint: Optional[str], method: str) -> RoutePolicy:
        """The policy of an endpoint (None: no route matched, global rules apply)."""
        cache_key = (endpoint, method if method in HTTP_METHODS else "")
        policy = self.cache.get(cache_key)
        if policy is None:
            settings = self._settings
            exempt = method in settings.excluded_methods or (
                settings.exempt_static and is_static(endpoint)
            )
            policy = resolve(endpoint, self._marks(endpoint), cache_key[1], settings, exempt=exempt)
            if policy.report_when and settings.ban_rule is None:
                # init_app refuses the marks it can see: this one came later
                logger.warning(
                    "report_when on %r reports nothing: there is no ban_rule "
                    "(GATEKEEPER_BAN_RULE) to count reports toward",
                    endpoint,
                )
            scopes = policy.per_request.scopes if policy.per_request else policy.scopes
            for scope in scopes:
                if isinstance(scope, Scope):
                    self.warn_large_logs(scope.logged)
            self.cache[cache_key] = policy
        return policy

    def marks(self) -> Iterable[Mark]:
        """Every mark on the app's views, their view classes and its blueprints."""
        views = self._view_functions.values()
        targets = (*views, *(getattr(view, "view_class", None) for view in views))
        for target in (*targets, *self._blueprints.values()):
            if target is not None:
                yield from marks_of(target, self.owner)

    def has_view(self, function: object) -> bool:
        """Whether ``function`` is one of the app's view functions."""
        return any(view is function for view in self._view_functions.values())

    def own_scopes(self, endpoint: str) -> set[str]:
        """The names of the scopes a route counts in by itself, for any method (not the
        global rules, not shared scopes)."""
        names = set()
        for method in HTTP_METHODS:
            policy = self.policy_for(endpoint, method)
            items = policy.per_request.scopes if policy.per_request else policy.scopes
            names |= {item.name for item in items}
        return {name for name in names if name != GLOBAL_SCOPE and not name.startswith(_SHARED)}

    def route_marks(self, endpoint: str) -> list[Mark]:
        """Every mark that applies to ``endpoint``: its view's, its view class's and its
        blueprints' (the whole policy the route was given, for ``flask gatekeeper status``)."""
        return list(self._marks(endpoint))

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
            if target is not None:
                yield from marks_of(target, self.owner)

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
