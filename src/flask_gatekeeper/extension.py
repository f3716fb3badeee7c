"""The public Flask extension: ``GateKeeper``, its decorators and its manual controls.

Kept thin on purpose: what happens to a request is ``gate.Gate``; options are the table
in ``options``. Per-app state (the gate) lives in ``app.extensions["gatekeeper"]``, never
on the extension, so one ``GateKeeper`` can serve several apps with separate counters.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import (
    Any,
    Callable,
    Literal,
    NoReturn,
    Optional,
    TypeVar,
    Union,
    cast,
    overload,
)

from flask import (
    Blueprint,
    Flask,
    current_app,
    got_request_exception,
    has_app_context,
    has_request_context,
)

from .decision import BY_HAND, DEFAULT_OFFENCE, MANUAL, BanDetail, Usage
from .errors import ClientNameError, ConfigError
from .events import Meter, StatsDetail, install_default_handler
from .gate import Gate
from .limit import Limit
from .limiter_names import unexpected_keyword
from .options import (
    APP_OPTIONS,
    CONFIG_KEYS,
    ROUTE_OPTIONS,
    Settings,
    load_settings,
    parse_route,
    route_option,
)
from .outage import check_storage
from .request import Cost, KeyFunc, Pending, PerRequest, Predicate, ResponsePredicate
from .routes import Mark, put_mark, shared_scope_name
from .rules import BanRule, RuleLike, SubnetBanRule, check_offence, check_seconds, known_offences
from .storage import Storage

__all__ = ["GateKeeper"]

EXTENSION_KEY = "gatekeeper"

logger = logging.getLogger("flask_gatekeeper")

Target = TypeVar("Target", bound=Union[Callable[..., Any], Blueprint, type])
Rules = Union[RuleLike, Sequence[RuleLike], Callable[..., Any]]
"""Rules in any accepted form, or a function returning them for each request."""
Addresses = Union[Iterable[str], str]


class GateKeeper:
    """Banning and rate limiting for a Flask app.

    The first five parameters keep flask-gatekeeper 1.0's order and meaning; every other
    option is keyword-only. Options left as None fall back to ``app.config["GATEKEEPER_*"]``
    and then to defaults, when ``init_app`` runs (see ``options.OPTIONS``).
    """

    def __init__(
        self,
        app: Optional[Flask] = None,
        ban_rule: Union[BanRule, dict[str, Any], None] = None,
        rate_limit_rules: Optional[Rules] = None,
        ip_header: Optional[str] = None,
        excluded_methods: Union[Iterable[str], str, None] = None,
        *,
        default_rules: Optional[Rules] = None,
        enabled: Optional[bool] = None,
        storage: Union[str, Storage, Any, None] = None,
        max_clients: Optional[int] = None,
        trusted_proxies: Union[int, Addresses, None] = None,
        ipv6_prefix: Optional[int] = None,
        allowlist: Optional[Addresses] = None,
        denylist: Union[Addresses, Path, None] = None,
        key_func: Union[KeyFunc, str, None] = None,
        hash_keys: Union[bool, str, bytes, None] = None,
        key_prefix: Optional[str] = None,
        fail_open: Optional[bool] = None,
        headers: Union[bool, str, None] = None,
        dry_run: Optional[bool] = None,
        report_rate_limited: Optional[bool] = None,
        report_when: Union[ResponsePredicate, str, None] = None,
        offence: Optional[str] = None,
        subnet_ban_rule: Union[SubnetBanRule, dict[str, Any], None] = None,
        ban_rules: Optional[Mapping[str, Union[BanRule, dict[str, Any]]]] = None,
        strategy: Optional[str] = None,
        exempt_static: Optional[bool] = None,
        exempt_when: Optional[Predicate] = None,
        concurrency: Optional[int] = None,
        concurrency_lease: Optional[float] = None,
        state_file: Union[str, os.PathLike[str], None] = None,
        cache_refusals: Optional[bool] = None,
        on_outage: Optional[str] = None,
        **unexpected: NoReturn,
    ) -> None:
        if unexpected:  # Flask-Limiter's names, or typos: say which option was meant
            raise unexpected_keyword(unexpected, CONFIG_KEYS)
        arguments = locals()
        self._given = {
            option.name: arguments[option.name]
            for option in APP_OPTIONS
            if arguments[option.name] is not None
        }
        self._constructor_gate: Optional[Gate] = None
        self._gates: weakref.WeakSet[Gate] = weakref.WeakSet()
        """The gates of the apps initialised so far, for checks made at decoration."""
        self._meters: list[Meter] = []
        """What counts the events of every app of this extension (``add_meter``)."""
        if app is not None:
            self.init_app(app)
            self._constructor_gate = app.extensions[EXTENSION_KEY]

    @property
    def options(self) -> dict[str, object]:
        """The options given to the constructor (those left as None are not listed)."""
        return dict(self._given)

    def init_app(self, app: Flask) -> None:
        """Read and check the settings for ``app`` and install the request hooks (once)."""
        gate = app.extensions.get(EXTENSION_KEY)
        if isinstance(gate, Gate):
            if gate.owner is self:
                return
            raise RuntimeError(f"{app.name!r} already has another GateKeeper")
        install_default_handler()
        gate = Gate(self, load_settings(self._given, app.config), app)
        for mark in gate.policies.marks():
            _check_route_offence(mark.offence, bool(mark.report_when), gate.settings, "specific")
        check_storage(gate.settings.storage, gate.settings.named("storage"), gate.guard)
        if not gate.settings.ip_header_trusted:
            logger.warning(
                "GateKeeper on %r believes the %r header from any client, so a client can "
                "pick its own identity and dodge every limit and ban. Behind proxies you "
                "control, set trusted_proxies (GATEKEEPER_TRUSTED_PROXIES) to their number "
                "or addresses; without a proxy, drop ip_header.",
                app.name,
                gate.settings.identifier.ip_header,
            )
        app.extensions[EXTENSION_KEY] = gate
        self._gates.add(gate)
        for meter in self._meters:
            gate.add_meter(meter)
        app.before_request(gate.check_request)
        got_request_exception.connect(gate.release_on_error, app)
        if gate.settings.headers:
            app.after_request(gate.add_headers)

    def _gate(self) -> Gate:
        """The gate of the current app, or of the constructor's app outside any context."""
        if has_app_context():
            gate = current_app.extensions.get(EXTENSION_KEY)
            if isinstance(gate, Gate) and gate.owner is self:
                return gate
            raise RuntimeError(f"GateKeeper.init_app() was not called for {current_app.name!r}")
        if self._constructor_gate is None:
            raise RuntimeError("working outside of an app context: use 'with app.app_context():'")
        return self._constructor_gate

    # -- in views -------------------------------------------------------------------------

    def report(self, ip: Optional[str] = None, *, offence: Optional[str] = None) -> bool:
        """Count one offence against the current client (or ``ip``) toward the ban rule,
        or with ``offence`` toward that offence's (a name of ``ban_rules``).

        Returns True when this report bans the client. Never fails: not for a client never
        seen before, not in a bypassed route, not when the storage is down (it is logged);
        when disabled or for an allow-listed client it does nothing, and without a ban
        rule it does nothing but log a warning, once per app and process. An ``ip``
        written as an address or network that is not one (often a request's own text)
        reports nothing and logs a warning. An ``offence`` the app does not count is a
        mistake in the code, not in the request: ``ValueError``, naming those it counts.
        """
        gate = self._gate()
        settings = gate.settings
        if offence is not None and offence != DEFAULT_OFFENCE:
            if offence not in settings.ban_rules:
                raise ValueError(
                    f"report(offence={offence!r}): the app counts no such offence (it counts "
                    f"{known_offences(settings.ban_rules)}; ban_rules names offences)"
                )
        else:
            offence = DEFAULT_OFFENCE
        try:
            client = None if ip is None else settings.identifier.key_for(ip)
        except ClientNameError as exc:
            logger.warning("gk.report(ip=...) reports nothing: %s", exc)
            return False
        if not settings.enabled:
            return False
        if offence not in settings.ban_rules:  # the default offence, without a ban_rule
            if gate not in _WARNED_UNREPORTED:
                _WARNED_UNREPORTED.add(gate)
                logger.warning(
                    "gk.report() in %r counts nothing: there is no ban_rule "
                    "(GATEKEEPER_BAN_RULE) to count reports toward (logged once)",
                    gate.events.app().name,
                )
            return False
        if ip is not None:
            if settings.identifier.allowed(ip):
                return False
        elif has_request_context():
            client = gate.requester()
        else:
            raise RuntimeError("report() outside a request needs the client: report(ip=...)")
        if client is None:
            return False  # allow-listed (never banned), skipped, or denied already
        return gate.count_report(client, offence=offence)

    def client_ip(self) -> Optional[str]:
        """The current request's address as the library keys it: proxy-aware (as far as
        ``trusted_proxies`` allows) and normalised (an IPv6 address is its network). For
        a ``key_func`` that falls back to the address; None without one."""
        return self._gate().client_ip()

    # -- decorators -----------------------------------------------------------------------

    def bypass(self, target: Target) -> Target:
        """Decorate a view, a class-based view or a blueprint: no rule and no ban applies."""
        _check_target(target, "gk.bypass", _APP_WIDE_BYPASS)
        put_mark(target, self, Mark(bypass=True))
        return target

    def specific(
        self,
        rate_limit_rules: Optional[Rules] = None,
        standalone: bool = False,
        *,
        methods: Union[Iterable[str], str, None] = None,
        scope: Optional[str] = None,
        cost: Cost = 1,
        count_when: Optional[ResponsePredicate] = None,
        key_func: Optional[KeyFunc] = None,
        report_when: Optional[ResponsePredicate] = None,
        offence: Optional[str] = None,
        exempt_when: Optional[Predicate] = None,
        concurrency: Optional[int] = None,
    ) -> Callable[[Target], Target]:
        """Decorate a view (or blueprint) with its own rules, counted per client and route.

        They apply on top of the global rules, or instead of them with ``standalone=True``
        (``specific(standalone=True)`` alone exempts a route from the global rules). Bans
        apply either way. ``key_func`` names the client on this route (ban and every rule
        then use that key); returning None leaves the request uncounted, though a ban of
        its address still applies.

        ``rate_limit_rules`` may be a function computing the rules for each request.
        ``methods``: the decorator applies to those methods only. ``scope``: the rules
        count in the budget of that name, shared by every route (and ``gk.limit``) that
        names it. ``exempt_when``: a function that returns true for a request that is
        neither counted nor limited on this route (bans still apply). ``cost``: how many
        requests one request counts as in these rules, a number or a function of the
        request. ``count_when``: a function of the response; an admitted request reserves
        its place at once, given back after the response unless this returns true.
        ``report_when``: a function of the response; when it returns true, the client is
        reported once toward the ban rule (as ``report()`` does). ``offence``: the offence
        (a name of ``ban_rules``) that the route's reports count toward: ``report_when``'s
        (else the app's ``offence``) and its 429s counted as reports
        (``report_rate_limited``; else the default offence). ``concurrency``: at most
        this many requests of a client in flight at once in these rules' scope (the
        route's own, or ``scope``); the next one is refused with ``TooManyInFlight``.
        """
        arguments = locals()
        given = {option.name: arguments[option.name] for option in ROUTE_OPTIONS}
        if all(given[option.name] is option.default for option in ROUTE_OPTIONS[1:]):
            self._refuse_bare_use(rate_limit_rules)  # the one argument a bare decorator passes
        values = parse_route(given)
        for gate in self._gates:
            _check_route_offence(values["offence"], report_when is not None, gate.settings)
        in_flight: int = values["concurrency"] or 0
        other_purpose = standalone or key_func or exempt_when or report_when or offence or in_flight
        if rate_limit_rules is None and not other_purpose:
            route_option("rate_limit_rules").read(None)  # refused: the mark would do nothing
        mark = Mark(
            rules=() if rate_limit_rules is None else values["rate_limit_rules"],
            standalone=standalone,
            key_func=key_func,
            methods=values["methods"],
            scope=values["scope"],
            exempt_when=exempt_when,
            cost=values["cost"],
            count_when=count_when,
            report_when=report_when,
            concurrency=in_flight,
            offence=values["offence"],
        )

        return _Decorator(self, mark)

    def _refuse_bare_use(self, rules: object) -> None:
        """``@gk.specific`` without parentheses calls ``specific(view)``, which cannot be
        told from ``specific(rules_function)``. Below ``@app.route`` the decorator is
        then registered as the view, and ``_Decorator`` refuses that; above it, the view
        is registered already, and an app this extension was given shows it."""
        if isinstance(rules, Flask):
            _check_target(rules, "gk.specific(...)", _APP_WIDE_RULES)
        if callable(rules) and any(gate.policies.has_view(rules) for gate in self._gates):
            raise TypeError(f"{_BARE_USE} (it was given {getattr(rules, '__name__', rules)})")

    def limit(
        self, rate_limit_rules: Rules, *, scope: str, key: Optional[str] = None, cost: Cost = 1
    ) -> Limit:
        """A limit checked inside a view: ``with gk.limit("3/hour", scope="export"):``, or
        the same object decorating any function, checked at each call.

        It counts one request (or ``cost``) of the current client (or of ``key``) in the
        budget named ``scope``, the one ``specific(scope=...)`` routes share, and raises
        ``RateLimited`` (429), or ``Banned`` (403) for a banned client, as a request
        refused by the gate.
        """
        rules = route_option("rate_limit_rules").read(rate_limit_rules)
        name = shared_scope_name(route_option("scope").read(scope))
        pending = Pending(name).add(rules, route_option("cost").read(cost))
        return Limit(self._gate, PerRequest((pending,)), key)

    # -- manual control (in a request or an app context) -----------------------------------

    # Every control names its client as ``identity.keys.client_key`` reads it: an IP address
    # (normalised like a request's), a key as the library shows it, or a key_func key.

    def ban(
        self,
        client: str,
        duration: Optional[float] = None,
        *,
        force: bool = False,
        reason: str = MANUAL,
    ) -> None:
        """Ban ``client`` for ``duration`` seconds, by default the ban rule's duration.
        A longer ban in force stands. A network wider than /8 (IPv4) or /32 (IPv6), or
        one holding a trusted proxy or an allow-listed address, needs ``force=True``.
        ``reason`` is ``"manual"`` or ``"blocklist"`` (what listings and signals say)."""
        if reason not in BY_HAND:
            raise ConfigError(f"ban(): reason must be one of {BY_HAND}, got {reason!r}")
        gate = self._gate()
        if duration is None:
            if gate.settings.ban_rule is None:
                raise ConfigError("ban(): give a duration, or configure a ban_rule")
            duration = gate.settings.ban_rule.duration
        try:
            check_seconds("duration", duration)
        except ConfigError as exc:
            raise type(exc)(f"ban(): {exc}") from None
        key = gate.settings.identifier.ban_key(client, force)
        storage = gate.settings.storage
        storage.ban(key, duration, reason)
        gate.forget_refusals(None if gate.settings.identifier.is_network(key) else key)
        detail = storage.ban_detail(key)  # a longer ban may stand
        gate.events.banned(key, detail.left if detail else 0.0, reason, detail)

    def unban(self, client: str) -> bool:
        """End ``client``'s ban and forget its ban history; True if it was banned."""
        gate = self._gate()
        key = gate.settings.identifier.key_for(client)
        was_banned = gate.settings.storage.unban(key)
        gate.forget_refusals()
        if was_banned:
            gate.events.unbanned(key)
        return was_banned

    def banned_for(self, client: str) -> float:
        """Seconds left of ``client``'s ban (0 when not banned)."""
        gate = self._gate()
        return gate.settings.storage.banned_for(gate.settings.identifier.key_for(client))

    @overload
    def bans(self, detail: Literal[False] = False) -> dict[str, float]: ...

    @overload
    def bans(self, detail: Literal[True]) -> dict[str, BanDetail]: ...

    def bans(self, detail: bool = False) -> Union[dict[str, float], dict[str, BanDetail]]:
        """Every active ban: client key -> seconds left; with ``detail``, -> a
        ``BanDetail`` (seconds left and since it started, reason, strikes)."""
        storage = self._gate().settings.storage
        return storage.ban_details() if detail else storage.bans()

    def reset(
        self, client: str, *, scope: Optional[str] = None, endpoint: Optional[str] = None
    ) -> None:
        """Forget ``client``: its counters on every route, its reports, its ban. With
        ``scope`` (a name given to ``specific(scope=...)`` or ``limit``), only its
        counters in that shared budget; with ``endpoint``, only that route's own."""
        gate = self._gate()
        key = gate.settings.identifier.key_for(client)
        storage = gate.settings.storage
        if scope is not None or endpoint is not None:
            shared = None if scope is None else route_option("scope").read(scope)
            names = set() if shared is None else {shared_scope_name(shared)}
            if endpoint is not None:
                names |= gate.policies.own_scopes(endpoint)
            for name in sorted(names):
                storage.reset(key, name)
            gate.forget_refusals()
            return
        was_banned = storage.banned_for(key) > 0
        storage.reset(key)
        gate.forget_refusals()
        if was_banned:
            gate.events.unbanned(key)

    def usage(
        self, client: str, endpoint: Optional[str] = None, method: str = "GET"
    ) -> list[Usage]:
        """Where ``client`` stands against every rule a ``method`` request to ``endpoint``
        would meet (None: the global rules), counting nothing: for each rule, the
        requests left and the seconds until its quota is whole again. Rules computed per
        request are computed for this client (in a request, with its data)."""
        gate = self._gate()
        key = gate.settings.identifier.key_for(client)
        policy = gate.policies.policy_for(endpoint, method.upper())
        if policy.bypass:
            return []
        scopes = policy.scopes
        if policy.per_request is not None:
            scopes = policy.per_request.scopes_for(
                key, gate.settings.strategy, values=False, hasher=gate.identifier.hasher
            )
        return gate.settings.storage.usage(key, scopes) if scopes else []

    @overload
    def stats(self, detail: Literal[False] = False) -> dict[str, Optional[int]]: ...

    @overload
    def stats(self, detail: Literal[True]) -> StatsDetail: ...

    def stats(self, detail: bool = False) -> Union[dict[str, Optional[int]], StatsDetail]:
        """This process's counters for the current app, and the clients tracked in memory
        (None for storages that do not count them cheaply, such as Redis). With
        ``detail``, also ``rules``: the refusals of each rule that refused, by scope and
        rule name; ``bans_by_reason``; and ``bans_by_offence``, the bans each offence's
        ban rule made (jails). Without it every value is a number or None,
        as code written for the flat dictionary expects."""
        gate = self._gate()
        stats = gate.events.stats
        counts: dict[str, Optional[int]] = dict(stats.snapshot())
        counts["tracked_clients"] = getattr(gate.settings.storage, "tracked", None)
        if not detail:
            return counts
        detailed = {
            **counts,
            "rules": stats.by_rule(),
            "bans_by_reason": stats.bans_by_reason(),
            "bans_by_offence": stats.bans_by_offence(),
        }
        return cast(StatsDetail, detailed)

    def _add_meter(self, meter: Meter) -> None:
        """Count the events of every app of this extension with ``meter`` too: those
        initialised already and those to come (``flask_gatekeeper.prometheus``)."""
        if meter not in self._meters:
            self._meters.append(meter)
        for gate in list(self._gates):
            gate.add_meter(meter)


_APP_WIDE_RULES = (
    "rules for the whole app are the rate_limit_rules option (GATEKEEPER_RATE_LIMIT_RULES), "
    "and exempt_when, key_func, report_when and concurrency are app-wide options too"
)
_APP_WIDE_BYPASS = (
    "to switch the gate off for the whole app, use enabled=False (GATEKEEPER_ENABLED); "
    "to let some clients through, the allowlist (GATEKEEPER_ALLOWLIST) or exempt_when"
)


def _check_target(target: object, decorator: str, app_wide: str) -> None:
    """A mark is read from a view function, a view class or a blueprint; put anywhere
    else it would change nothing, silently: the Flask app above all, where someone used
    to Flask-Limiter's per-app defaults might try it."""
    if isinstance(target, Flask):
        raise TypeError(
            f"{decorator} marks a view, a view class or a blueprint, not the Flask app: {app_wide}"
        )
    if not (callable(target) or isinstance(target, Blueprint)):
        raise TypeError(f"{decorator} marks a view, a view class or a blueprint, got {target!r}")


_NO_BAN_RULE = "{option}: the app has no ban_rule (GATEKEEPER_BAN_RULE) to count its reports toward"


def _check_route_offence(
    offence: Optional[str], report_when: bool, settings: Settings, within: str = ""
) -> None:
    """A route's ``offence`` must be one of the app's, and its ``report_when`` needs a
    ban rule to count toward (its offence's, else the app's ``offence``'s). ``within``:
    "specific" at start-up, where the error names the decorator (at decoration, the
    option alone)."""
    named = (lambda option: f"{within}({option}=...)") if within else (lambda option: option)
    if offence is not None:
        check_offence(offence, settings.ban_rules, named("offence"))
    if report_when and (offence or settings.offence) not in settings.ban_rules:
        raise ConfigError(_NO_BAN_RULE.format(option=named("report_when")))


_WARNED_UNREPORTED: weakref.WeakSet[Gate] = weakref.WeakSet()
"""The gates whose ``gk.report()`` was called without a ban rule, warned once."""

_BARE_USE = (
    '@gk.specific needs parentheses and some options: @gk.specific("10/minute"), '
    "@gk.specific(standalone=True)... (a function given alone is a rules function)"
)


class _Decorator:
    """What ``gk.specific(...)`` returns: applied to a view, a view class or a blueprint,
    it marks it for ``owner``. Flask reads ``__name__`` and ``required_methods`` from a
    view function it registers: read here, they mean that this decorator is registered
    as a view, which only ``@gk.specific`` written without parentheses does (it made a
    decorator of the view), so they raise at import instead of every request being a 500.
    """

    def __init__(self, owner: GateKeeper, mark: Mark) -> None:
        self._owner = owner
        self._mark = mark

    def __call__(self, target: Target) -> Target:
        _check_target(target, "gk.specific(...)", _APP_WIDE_RULES)
        put_mark(target, self._owner, self._mark)
        return target

    @property
    def __name__(self) -> str:
        raise TypeError(_BARE_USE)

    @property
    def required_methods(self) -> frozenset[str]:
        raise TypeError(_BARE_USE)
