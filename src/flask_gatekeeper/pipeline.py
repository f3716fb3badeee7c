"""One app's gate: the request path identify -> policy -> storage -> decision, run by the
``before_request`` hook, plus the events (counters, signals, logs) it produces.

Kept apart from ``extension.py`` (the public ``GateKeeper`` API) so that a reader who
wants "what happens to a request" reads one short file.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable
from typing import Any, Callable, Optional, TypeVar, Union

from flask import Flask, Response, g, request

from . import signals
from .config import Settings
from .decision import Banned, Decision, Denied, RateLimited, StorageUnavailable
from .errors import StorageError
from .headers import policy_name, rate_limit_headers, scope_of
from .outage import RETRY_INTERVAL, OutageGuard
from .policy import Mark, RoutePolicy, marks_of, resolve, with_strategy
from .rules import Rule

__all__ = ["DOWN", "AppState", "Down"]

logger = logging.getLogger("flask_gatekeeper")

_G_HEADERS = "_gatekeeper_headers"

LARGE_LOG = 1000
"""Sliding-log counts above this (8 KB of timestamps per client) get a start-up warning."""

Refusal = Union[Banned, Denied, RateLimited]
T = TypeVar("T")


class Down:
    """What ``AppState.ask_storage`` returns while the storage is down."""


DOWN = Down()


class AppState:
    """One app's settings, route policies, storage health and counters.

    Lives in ``app.extensions["gatekeeper"]``; ``owner`` is the ``GateKeeper`` whose
    decorators' marks it reads.
    """

    def __init__(self, owner: object, settings: Settings, app: Flask) -> None:
        self.owner = owner
        self.settings = settings
        self.guard = OutageGuard(settings.fail_open)
        self.stats = signals.Stats()
        self._usage = bool(settings.headers)
        self._strike = settings.ban_rule if settings.report_rate_limited else None
        self._app = weakref.ref(app)
        self._view_functions = app.view_functions
        self._blueprints = app.blueprints
        self._policies: dict[tuple[Optional[str], bool], RoutePolicy] = {}
        self._warned: set[Rule] = set()
        self.warn_large_logs(with_strategy(settings.rate_limit_rules, settings.strategy))

    def app(self) -> Flask:
        """The app this state belongs to (a weak reference: the app owns its state)."""
        app = self._app()
        assert app is not None, "the app was garbage-collected"
        return app

    # -- policy ---------------------------------------------------------------------------

    def policy_for(self, endpoint: Optional[str], method: str) -> RoutePolicy:
        """The cached policy of an endpoint (None: no route matched, global rules apply)."""
        cache_key = (endpoint, method in self.settings.excluded_methods)
        policy = self._policies.get(cache_key)
        if policy is None:
            policy = resolve(
                endpoint,
                self._marks(endpoint),
                self.settings.rate_limit_rules,
                cache_key[1],
                self.settings.strategy,
            )
            for scope in policy.scopes:
                self.warn_large_logs(scope.logged)
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

    # -- the request path -----------------------------------------------------------------

    def check_request(self) -> None:
        """``before_request``: return to admit, raise a refusal (an ``HTTPException``)."""
        settings = self.settings
        if not settings.enabled:
            return
        req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
        policy = self._policies.get((req.endpoint, req.method in settings.excluded_methods))
        if policy is None:
            policy = self.policy_for(req.endpoint, req.method)
        if policy.bypass:
            return
        client = settings.identifier.identify(req.headers, req.remote_addr, policy.key_func)
        if client is None:
            return
        key, denied = client
        if denied:
            self._refuse(Denied(key))
            return
        decision = self._hit(key, policy)
        if decision is None:
            return
        if decision.usage is not None:
            setattr(
                g, _G_HEADERS, rate_limit_headers(policy.scopes, decision.usage, settings.headers)
            )
        if decision.admitted:
            self.stats.admitted()
        elif decision.banned:
            rule = None if decision.manual else settings.ban_rule
            self._refuse(Banned(key, decision.retry_after, rule))
        else:
            self._rate_limited(key, decision, policy)

    def _hit(self, client: str, policy: RoutePolicy) -> Optional[Decision]:
        """The storage's decision, or None when the storage is down (and fail-open)."""
        decision = self.ask_storage(self._storage_hit, client, policy)
        if not isinstance(decision, Down):
            return decision
        if not self.guard.fail_open:
            raise StorageUnavailable(RETRY_INTERVAL)
        self.stats.add("admitted")
        return None

    def _storage_hit(self, client: str, policy: RoutePolicy) -> Decision:
        return self.settings.storage.hit(
            client, policy.scopes, usage=self._usage and bool(policy.scopes), strike=self._strike
        )

    def ask_storage(self, call: Callable[..., T], *args: Any) -> Union[T, Down]:
        """``call(*args)``'s result, or ``DOWN`` while the storage fails (counted, logged
        once per outage, signalled); a down storage is tried again once a second."""
        guard = self.guard
        if guard.down and not guard.may_probe():
            return DOWN
        outages = guard.outages
        try:
            result = call(*args)
        except StorageError as exc:
            self.stats.add("storage_errors")
            guard.failed(exc)
            signals.storage_error.send(self.app(), error=exc)
            return DOWN
        if guard.down:
            guard.recovered(outages)
        return result

    def _rate_limited(self, client: str, decision: Decision, policy: RoutePolicy) -> None:
        assert decision.rule is not None  # a refusal by a rule names it
        if self.settings.report_rate_limited:
            self.reported(client, decision.new_ban, reason="rate_limit")
        name = policy_name(decision.rule, scope_of(decision.rule, policy.scopes))
        self._refuse(RateLimited(client, decision.retry_after, decision.rule, policy=name))

    def _refuse(self, refusal: Refusal) -> None:
        """Count, signal and raise the refusal, or only log it in a dry run."""
        app = self.app()
        dry_run = self.settings.dry_run
        retry_after = getattr(refusal, "retry_after", None)
        if isinstance(refusal, RateLimited):
            self.stats.add("rate_limited")
            signals.request_rate_limited.send(
                app,
                client=refusal.client,
                rule=refusal.rule,
                retry_after=retry_after,
                dry_run=dry_run,
            )
        else:
            self.stats.add("banned")
            signals.request_banned.send(
                app, client=refusal.client, retry_after=retry_after, dry_run=dry_run
            )
        if not dry_run:
            raise refusal
        logger.info(
            "dry run, would refuse %s %s: %s", request.method, request.path, refusal.description
        )

    def add_headers(self, response: Response) -> Response:
        """``after_request``: the RateLimit fields computed for this request, if any."""
        fields = g.pop(_G_HEADERS, None)
        if fields:
            response.headers.extend(fields)
        return response

    # -- events shared with the manual API ------------------------------------------------

    def reported(self, client: str, banned_for: Optional[float], reason: str = "reports") -> None:
        self.stats.add("reports")
        signals.client_reported.send(
            self.app(),
            client=client,
            banned_for=banned_for,
        )
        if banned_for is not None:
            self.banned(client, banned_for, reason)

    def banned(self, client: str, duration: float, reason: str) -> None:
        self.stats.add("bans")
        logger.info("banned %s for %gs (%s)", client, duration, reason)
        signals.client_banned.send(
            self.app(),
            client=client,
            duration=duration,
            reason=reason,
        )

    def unbanned(self, client: str) -> None:
        logger.info("unbanned %s", client)
        signals.client_unbanned.send(self.app(), client=client)
