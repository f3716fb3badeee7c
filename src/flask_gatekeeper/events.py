"""What the gate tells the world: counters (``Stats``), signals and log lines, in one place.

A signal receiver is the app's code running inside our request path; one that raises is
logged with its name and skipped, so the refusal or admission it was told about stands
and no request becomes a 500. Nothing is sent or logged for an admitted request (unless
a shadow rule would have refused it), and a signal nobody listens to costs one
attribute test.
"""

from __future__ import annotations

import itertools
import logging
import weakref
from typing import Any, Callable, Optional, Protocol, TypedDict, Union

from blinker import NamedSignal
from flask import Flask
from flask.logging import has_level_handler, wsgi_errors_stream

from . import signals
from .decision import BAN_REASONS, DEFAULT_OFFENCE, GLOBAL_SCOPE, BanDetail, ShadowRefusal
from .identity.keys import shown
from .rules import ConcurrencyLimit, Rule

__all__ = [
    "GLOBAL_LABEL",
    "Events",
    "Meter",
    "RuleCounts",
    "Stats",
    "StatsDetail",
    "default_handler",
    "install_default_handler",
    "logger",
    "scope_label",
]

logger = logging.getLogger("flask_gatekeeper")


class _Unconfigured(logging.Filter):
    """Passes a record only while no other handler would show it: logging configured
    after ``init_app`` (``logging.basicConfig()``, a handler of the app's own on our
    logger) takes over, and no line is written twice."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not logging.root.handlers and logger.handlers == [default_handler]


default_handler = logging.StreamHandler(wsgi_errors_stream)  # type: ignore[call-overload]
"""Writes our records to the request's ``wsgi.errors`` (else stderr) as
``[time] WARNING in flask_gatekeeper: message``, like Flask's ``default_handler`` for
``app.logger``, when the app configured no logging; Python's last-resort handler would
print the message alone, with no level or logger name."""
default_handler.setFormatter(
    logging.Formatter("[%(asctime)s] %(levelname)s in %(name)s: %(message)s")
)
default_handler.addFilter(_Unconfigured())


def install_default_handler() -> None:
    """At ``init_app``, as Flask does for ``app.logger``: our ``default_handler`` on the
    ``flask_gatekeeper`` logger when no handler in its chain would take its records."""
    if default_handler not in logger.handlers and not has_level_handler(logger):
        logger.addHandler(default_handler)


def _send(signal: NamedSignal, app: Flask, **kwargs: Any) -> None:
    """Call every receiver of ``signal`` for ``app``; log one that raises and go on."""
    if not signal.receivers:
        return
    for receiver in list(signal.receivers_for(app)):
        try:
            receiver(app, **kwargs)
        except Exception:
            name = getattr(receiver, "__qualname__", None) or repr(receiver)
            logger.exception("a receiver of %s raised; ignored: %s", signal.name, name)


GLOBAL_LABEL = "global"
"""What metrics call the scope of the global rules (``GLOBAL_SCOPE`` is empty)."""


def scope_label(scope: str) -> str:
    """The name metrics give a rule's scope: ``"global"`` for the global rules, else the
    scope's own name, the one ``Usage.scope`` shows: a route's endpoint (``"@POST
    login"`` for rules of some methods, ``"@default login"`` for its default rules),
    ``"=name"`` for ``specific(scope="name")`` and ``gk.limit``, ``"login per
    form[user]"`` for rules with their own key."""
    return GLOBAL_LABEL if scope == GLOBAL_SCOPE else scope


class RuleCounts(TypedDict):
    """One rule's refusals: ``refused`` (429s), ``would_refuse`` (let through: in a dry
    run, or by a shadow rule)."""

    refused: int
    would_refuse: int


class StatsDetail(TypedDict):
    """``gk.stats(detail=True)``: the counters of ``gk.stats()`` and, by name, ``rules``
    (scope label -> rule name -> ``RuleCounts``), ``bans_by_reason`` and
    ``bans_by_offence``."""

    admitted: int
    rate_limited: int
    banned: int
    reports: int
    bans: int
    storage_errors: int
    shadow_refused: int
    tracked_clients: Optional[int]
    rules: dict[str, dict[str, RuleCounts]]
    bans_by_reason: dict[str, int]
    bans_by_offence: dict[str, int]


class Meter(Protocol):
    """What counts the gate's events besides ``Stats``: a metrics exporter such as
    ``flask_gatekeeper.prometheus``. ``admitted`` counts one admitted request (on every
    one: keep it fast); ``count`` one event of another field of ``Stats.FIELDS`` (its
    labels: ``reason`` for ``bans``), or of ``offence_bans`` (``offence``: a ban rule's
    ban); ``rule_refused`` one refusal by a rule (as
    ``Stats.rule_refused``: the scope's own name, see ``scope_label``), on every 429;
    ``storage_down`` says whether the storage of ``source`` (one app's ``Events``) is in
    an outage: a meter counting several apps is down while any of them is."""

    @property
    def admitted(self) -> Callable[[], object]: ...

    def count(self, field: str, **labels: str) -> None: ...

    def rule_refused(self, scope: str, rule: str, dry_run: bool) -> None: ...

    def storage_down(self, source: object, down: bool) -> None: ...


class Stats:
    """Counters of one app in this process (each worker counts its own requests).

    Each counter is an ``itertools.count``: ``next()`` on it is one atomic C call, so the
    admitted path pays no lock; its value is read from its ``repr``, ``count(N)``. The
    counters by rule and by ban reason are made at their first count, on refusals and
    bans only: the admitted path never reads them.
    """

    FIELDS = (
        "admitted",
        "rate_limited",
        "banned",
        "reports",
        "bans",
        "storage_errors",
        "shadow_refused",
    )

    def __init__(self) -> None:
        self._counters = {field: itertools.count() for field in self.FIELDS}
        self.admitted = self.counter("admitted")
        """Count one admitted request (the hot path's own bound method)."""
        self._by_rule: dict[tuple[str, str, bool], itertools.count[int]] = {}
        """(scope name, rule name, in a dry run) -> refusals."""
        self._by_reason = {reason: itertools.count() for reason in BAN_REASONS}
        """Ban reason -> bans; a reason not in ``BAN_REASONS`` joins at its first ban."""
        self._by_offence = {DEFAULT_OFFENCE: itertools.count()}
        """Offence -> bans its ban rule made; an offence of ``ban_rules`` joins at its
        first ban."""

    def add(self, field: str) -> None:
        next(self._counters[field])

    def counter(self, field: str) -> Callable[[], int]:
        """A call that counts one for ``field``: for the request path, no lookup by name."""
        return self._counters[field].__next__

    def rule_refused(self, scope: str, rule: str, dry_run: bool) -> None:
        """Count one refusal (``dry_run``: one that a dry run let through) by the rule
        named ``rule`` in the scope named ``scope`` (``Scope.name``)."""
        key = (scope, rule, dry_run)
        counter = self._by_rule.get(key)  # _next_of's, without its call: every 429 pays
        if counter is None:
            counter = self._by_rule.setdefault(key, itertools.count())
        next(counter)

    def ban_started(self, reason: str, offence: Optional[str]) -> None:
        """Count one ban, by its reason and, when a ban rule made it, its offence."""
        _next_of(self._by_reason, reason)
        if offence is not None:
            _next_of(self._by_offence, offence)

    def snapshot(self) -> dict[str, int]:
        return {field: _value(counter) for field, counter in self._counters.items()}

    def by_rule(self) -> dict[str, dict[str, RuleCounts]]:
        """Scope label -> rule name -> its refusals, for every rule that refused."""
        rules: dict[str, dict[str, RuleCounts]] = {}
        for (scope, rule, dry_run), counter in sorted(self._by_rule.items()):
            by_name = rules.setdefault(scope_label(scope), {})
            counts = by_name.setdefault(rule, {"refused": 0, "would_refuse": 0})
            counts["would_refuse" if dry_run else "refused"] += _value(counter)
        return rules

    def bans_by_reason(self) -> dict[str, int]:
        """Ban reason -> bans started: every reason of ``BAN_REASONS``, then the others."""
        return {reason: _value(counter) for reason, counter in list(self._by_reason.items())}

    def bans_by_offence(self) -> dict[str, int]:
        """Offence -> bans its ban rule made: the default offence, then the others."""
        return {offence: _value(counter) for offence, counter in list(self._by_offence.items())}


def _next_of(counters: dict[str, itertools.count[int]], key: str) -> None:
    """Count one under ``key``, its counter made at the first count. ``setdefault`` is
    one atomic call: two threads counting a new key at once share one counter."""
    counter = counters.get(key)
    if counter is None:
        counter = counters.setdefault(key, itertools.count())
    next(counter)


def _value(counter: itertools.count[int]) -> int:
    """The next number ``counter`` would give, without taking it."""
    return int(repr(counter)[len("count(") : -1])


class Events:
    """One app's counters (``stats``) and the signals and logs of what its gate does."""

    def __init__(self, app: Flask) -> None:
        self.stats = Stats()
        self.admitted: Callable[[], object] = self.stats.admitted
        """Count one admitted request (the hot path's own bound method, until a meter
        is added)."""
        self._count_rate_limited = self.stats.counter("rate_limited")
        self._count_banned = self.stats.counter("banned")
        self._app = weakref.ref(app)
        self.meters: tuple[Meter, ...] = ()
        """What counts these events besides ``stats`` (see ``add_meter``)."""

    def add_meter(self, meter: Meter) -> None:
        """Count every event with ``meter`` too, from now on. Only then does an admitted
        request pay for more than its ``Stats`` counter."""
        if meter in self.meters:
            return
        self.meters += (meter,)
        counts = (self.stats.admitted, *(each.admitted for each in self.meters))

        def admitted() -> None:
            for count in counts:
                count()

        self.admitted = admitted

    def _meter(self, field: str, **labels: str) -> None:
        for meter in self.meters:
            meter.count(field, **labels)

    def app(self) -> Flask:
        """The app these events belong to (a weak reference: the app owns its state)."""
        app = self._app()
        assert app is not None, "the app was garbage-collected"
        return app

    def hears_bans(self) -> bool:
        """Whether a receiver of ``client_banned`` listens for this app (the ban's
        detail is read for it)."""
        signal = signals.client_banned
        return bool(signal.receivers) and any(True for _ in signal.receivers_for(self.app()))

    def rate_limited(
        self,
        client: str,
        rule: Union[Rule, ConcurrencyLimit],
        wait: Optional[float],
        dry_run: bool,
        scope: str = GLOBAL_SCOPE,
    ) -> None:
        """``client`` was refused (``dry_run``: would have been) by ``rule`` of ``scope``."""
        self._count_rate_limited()
        if self.meters:
            self._meter("rate_limited")
        self.rule_refused(scope, rule, dry_run)
        signal = signals.request_rate_limited
        if signal.receivers:  # refusals are the path an attack takes: no call without them
            _send(signal, self.app(), client=client, rule=rule, retry_after=wait, dry_run=dry_run)

    def rule_refused(self, scope: str, rule: Union[Rule, ConcurrencyLimit], dry_run: bool) -> None:
        """Count one refusal by ``rule`` of ``scope`` (a scope's name, as ``Scope.name``),
        under ``would_refuse`` when ``dry_run`` says it refused nothing: in the app's dry
        run, or by a rule that only reports (a shadow rule)."""
        name = rule.name
        self.stats.rule_refused(scope, name, dry_run)
        for meter in self.meters:
            meter.rule_refused(scope, name, dry_run)

    def shadow_refused(self, client: str, shadowed: tuple[ShadowRefusal, ...]) -> None:
        """An admitted request that shadow rules would have refused: counted once, each
        rule's ``would_refuse`` too, and signalled for each rule as a dry run's refusal
        is (``rule.shadow`` tells them apart)."""
        self.stats.add("shadow_refused")
        if self.meters:
            self._meter("shadow_refused")
        for refusal in shadowed:
            self.rule_refused(refusal.scope, refusal.rule, dry_run=True)
        signal = signals.request_rate_limited
        if signal.receivers:
            app = self.app()
            for refusal in shadowed:
                wait = refusal.retry_after
                _send(signal, app, client=client, rule=refusal.rule, retry_after=wait, dry_run=True)

    def refused_banned(self, client: str, wait: Optional[float], dry_run: bool) -> None:
        """A banned (or, with ``wait`` None, deny-listed) client was refused."""
        self._count_banned()
        if self.meters:
            self._meter("banned")
        signal = signals.request_banned
        if signal.receivers:
            _send(signal, self.app(), client=client, retry_after=wait, dry_run=dry_run)

    def report_counted(
        self,
        client: str,
        banned_for: Optional[float],
        reason: str,
        detail: Optional[BanDetail] = None,
        offence: str = DEFAULT_OFFENCE,
    ) -> None:
        """One report of ``client`` was counted toward ``offence``'s ban rule;
        ``banned_for``: the ban it started, if it did."""
        self.stats.add("reports")
        if self.meters:
            self._meter("reports")
        _send(
            signals.client_reported,
            self.app(),
            client=client,
            banned_for=banned_for,
            offence=offence,
        )
        if banned_for is not None:
            self.banned(client, banned_for, reason, detail, offence)

    def banned(
        self,
        client: str,
        duration: float,
        reason: str,
        detail: Optional[BanDetail] = None,
        offence: Optional[str] = None,
    ) -> None:
        """A ban was made (by ``offence``'s reports; None: without a ban rule); ``detail``
        is the ban in force after it (a longer one may stand), when the caller read it."""
        self.stats.add("bans")
        self.stats.ban_started(reason, offence)
        if self.meters:
            self._meter("bans", reason=reason)
            if offence is not None:
                self._meter("offence_bans", offence=offence)
        named = offence is not None and offence != DEFAULT_OFFENCE  # logged as before jails
        why = f"{reason} of offence {offence}" if named else reason
        logger.info("banned %s for %gs (%s)", shown(client), duration, why)
        _send(
            signals.client_banned,
            self.app(),
            client=client,
            duration=duration,
            reason=reason,
            detail=detail,
            offence=offence,
        )

    def unbanned(self, client: str) -> None:
        logger.info("unbanned %s", shown(client))
        _send(signals.client_unbanned, self.app(), client=client)

    def storage_failed(self, error: Exception) -> None:
        self.stats.add("storage_errors")
        if self.meters:
            self._meter("storage_errors")
        _send(signals.storage_error, self.app(), error=error)

    def storage_down(self, down: bool) -> None:
        """The storage's health changed, or was confirmed: ``down`` during an outage."""
        for meter in self.meters:
            meter.storage_down(self, down)
