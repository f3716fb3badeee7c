"""The Flask glue: ``GateKeeper``, its request hook and its decorators.

Kept thin on purpose. Each request goes identify -> policy -> one storage call ->
decision, each step in the module of that name; this file wires them to Flask.
Per-app state lives in ``app.extensions["gatekeeper"]``, never on the extension, so one
``GateKeeper`` can serve several apps with separate counters.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Callable, Optional, TypeVar, Union

from flask import Blueprint, Flask, current_app, has_app_context, has_request_context, request

from .config import Settings, load_settings
from .decision import Banned, Decision, Denied, RateLimited, StorageUnavailable
from .errors import ConfigTypeError, StorageError
from .identify import KeyFunc
from .outage import RETRY_INTERVAL, OutageGuard
from .policy import Mark, RoutePolicy, marks_of, put_mark, resolve
from .rules import Rule, RuleLike, parse_rules

__all__ = ["GateKeeper"]

EXTENSION_KEY = "gatekeeper"

logger = logging.getLogger("flask_gatekeeper")

Target = TypeVar("Target", bound=Union[Callable[..., Any], Blueprint, type])


class _AppState:
    """One app's settings and route policies, reached through ``app.extensions``."""

    def __init__(self, owner: GateKeeper, settings: Settings, app: Flask) -> None:
        self.owner = owner
        self.settings = settings
        self._view_functions = app.view_functions
        self._blueprints = app.blueprints
        self._policies: dict[tuple[Optional[str], bool], RoutePolicy] = {}
        self.guard = OutageGuard(settings.fail_open)

    def policy_for(self, endpoint: Optional[str], method: str) -> RoutePolicy:
        """The cached policy of an endpoint (None: no route matched, global rules apply)."""
        cache_key = (endpoint, method in self.settings.excluded_methods)
        policy = self._policies.get(cache_key)
        if policy is None:
            policy = resolve(
                endpoint, self._marks(endpoint), self.settings.rate_limit_rules, cache_key[1]
            )
            self._policies[cache_key] = policy
        return policy

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

    def check_request(self) -> None:
        """``before_request`` hook: return to admit, raise ``Banned``/``RateLimited`` to refuse."""
        settings = self.settings
        if not settings.enabled:
            return
        policy = self.policy_for(request.endpoint, request.method)
        if policy.bypass:
            return
        client = settings.identifier.identify(request.headers, request.remote_addr, policy.key_func)
        if client is None:
            return
        if client.denied:
            raise Denied(client.key)
        guard = self.guard
        if guard.down and guard.skip():
            self._storage_failed()
            return
        try:
            decision = settings.storage.hit(client.key, policy.scopes)
        except StorageError as exc:
            guard.failed(exc)
            self._storage_failed()
            return
        if guard.down:
            guard.recovered()
        if not decision.admitted:
            raise self.refusal(client.key, decision)

    def _storage_failed(self) -> None:
        """Admit (fail open) or refuse with 503 while the storage is down."""
        if not self.guard.fail_open:
            raise StorageUnavailable(RETRY_INTERVAL)

    def refusal(self, client: str, decision: Decision) -> Union[Banned, RateLimited]:
        if decision.banned or decision.rule is None:
            return Banned(client, decision.retry_after, self.settings.ban_rule)
        return RateLimited(client, decision.retry_after, decision.rule)


class GateKeeper:
    """Banning and rate limiting for a Flask app.

    The first five parameters keep flask-gatekeeper 1.0's order and meaning; every other
    option is keyword-only. Options left as None fall back to ``app.config["GATEKEEPER_*"]``
    and then to defaults, when ``init_app`` runs.
    """

    def __init__(
        self,
        app: Optional[Flask] = None,
        ban_rule: Optional[object] = None,
        rate_limit_rules: Optional[object] = None,
        ip_header: Optional[str] = None,
        excluded_methods: Optional[Iterable[str]] = None,
        *,
        enabled: Optional[bool] = None,
        storage: Optional[object] = None,
        max_clients: Optional[int] = None,
        trusted_proxies: Union[int, Iterable[str], str, None] = None,
        ipv6_prefix: Optional[int] = None,
        allowlist: Union[Iterable[str], str, None] = None,
        denylist: Union[Iterable[str], str, None] = None,
        key_func: Union[KeyFunc, str, None] = None,
        key_prefix: Optional[str] = None,
        fail_open: Optional[bool] = None,
    ) -> None:
        options = {
            "ban_rule": ban_rule,
            "rate_limit_rules": rate_limit_rules,
            "ip_header": ip_header,
            "excluded_methods": excluded_methods,
            "enabled": enabled,
            "storage": storage,
            "max_clients": max_clients,
            "trusted_proxies": trusted_proxies,
            "ipv6_prefix": ipv6_prefix,
            "allowlist": allowlist,
            "denylist": denylist,
            "key_func": key_func,
            "key_prefix": key_prefix,
            "fail_open": fail_open,
        }
        self._given = {name: value for name, value in options.items() if value is not None}
        self._constructor_state: Optional[_AppState] = None
        if app is not None:
            self._constructor_state = self.init_app(app)

    def init_app(self, app: Flask) -> _AppState:
        """Read and check the settings for ``app`` and install the request hook (once)."""
        state = app.extensions.get(EXTENSION_KEY)
        if isinstance(state, _AppState):
            if state.owner is self:
                return state
            raise RuntimeError(f"{app.name!r} already has another GateKeeper")
        state = _AppState(self, load_settings(self._given, app.config), app)
        if not state.settings.ip_header_trusted:
            logger.warning(
                "GateKeeper on %r believes the %r header from any client, so a client can "
                "pick its own identity and dodge every limit and ban. Behind proxies you "
                "control, set trusted_proxies (GATEKEEPER_TRUSTED_PROXIES) to their number "
                "or addresses; without a proxy, drop ip_header.",
                app.name,
                state.settings.identifier.ip_header,
            )
        app.extensions[EXTENSION_KEY] = state
        app.before_request(state.check_request)
        return state

    def _state(self) -> _AppState:
        """The state of the current app, or of the constructor's app outside any context."""
        if has_app_context():
            state = current_app.extensions.get(EXTENSION_KEY)
            if isinstance(state, _AppState) and state.owner is self:
                return state
            raise RuntimeError(f"GateKeeper.init_app() was not called for {current_app.name!r}")
        if self._constructor_state is None:
            raise RuntimeError("working outside of an app context: use 'with app.app_context():'")
        return self._constructor_state

    def report(self, ip: Optional[str] = None) -> bool:
        """Count one offence against the current client (or ``ip``) toward the ban rule.

        Returns True when this report bans the client. Never fails for a client never
        seen before; without a ban rule (or when disabled) it does nothing.
        """
        state = self._state()
        settings = state.settings
        if not settings.enabled or settings.ban_rule is None:
            return False
        if ip is not None:
            client = settings.identifier.key_for(ip)
        elif has_request_context():
            policy = state.policy_for(request.endpoint, request.method)
            identified = settings.identifier.identify(
                request.headers, request.remote_addr, policy.key_func
            )
            if identified is None or identified.denied:
                return False  # allow-listed (never banned), skipped, or denied already
            client = identified.key
        else:
            raise RuntimeError("report() outside a request needs the client: report(ip=...)")
        try:
            banned = settings.storage.report(client, settings.ban_rule)
        except StorageError as exc:
            state.guard.failed(exc)
            return False
        state.guard.recovered()
        return banned

    def bypass(self, target: Target) -> Target:
        """Decorate a view, a class-based view or a blueprint: no rule and no ban applies."""
        put_mark(target, self, Mark(bypass=True))
        return target

    def specific(
        self,
        rate_limit_rules: Union[RuleLike, list[RuleLike], None] = None,
        standalone: bool = False,
        *,
        key_func: Optional[KeyFunc] = None,
    ) -> Callable[[Target], Target]:
        """Decorate a view (or blueprint) with its own rules, counted per client and route.

        They apply on top of the global rules, or instead of them with ``standalone=True``
        (``specific(standalone=True)`` alone exempts a route from the global rules). Bans
        apply either way. ``key_func`` names the client on this route (ban and every rule
        then use that key); returning None skips limiting for the request.
        """
        if not isinstance(standalone, bool):
            raise ConfigTypeError(f"standalone: expected True or False, got {standalone!r}")
        if key_func is not None and not callable(key_func):
            raise ConfigTypeError(f"key_func: expected a function, got {key_func!r}")
        rules: tuple[Rule, ...] = ()
        if rate_limit_rules is not None or not (standalone or key_func):
            rules = parse_rules(rate_limit_rules, "rate_limit_rules")
        mark = Mark(rules=rules, standalone=standalone, key_func=key_func)

        def decorate(target: Target) -> Target:
            put_mark(target, self, mark)
            return target

        return decorate
