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
from typing import Any, Callable, Optional

from blinker import NamedSignal
from flask import Flask
from flask.logging import has_level_handler, wsgi_errors_stream

from . import signals
from .decision import DEFAULT_OFFENCE, BanDetail, ShadowRefusal
from .identity.keys import shown

__all__ = ["Events", "Stats", "default_handler", "install_default_handler", "logger"]

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


class Stats:
    """Counters of one app in this process (each worker counts its own requests).

    Each counter is an ``itertools.count``: ``next()`` on it is one atomic C call, so the
    admitted path pays no lock; its value is read from its ``repr``, ``count(N)``.
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

    def add(self, field: str) -> None:
        next(self._counters[field])

    def counter(self, field: str) -> Callable[[], int]:
        """A call that counts one for ``field``: for the request path, no lookup by name."""
        return self._counters[field].__next__

    def snapshot(self) -> dict[str, int]:
        return {field: _value(counter) for field, counter in self._counters.items()}


def _value(counter: itertools.count[int]) -> int:
    """The next number ``counter`` would give, without taking it."""
    return int(repr(counter)[len("count(") : -1])


class Events:
    """One app's counters (``stats``) and the signals and logs of what its gate does."""

    def __init__(self, app: Flask) -> None:
        self.stats = Stats()
        self.admitted = self.stats.admitted
        """Count one admitted request (the hot path's own bound method)."""
        self._count_rate_limited = self.stats.counter("rate_limited")
        self._count_banned = self.stats.counter("banned")
        self._app = weakref.ref(app)

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

    def admitted_while_down(self) -> None:
        self.stats.add("admitted")

    def rate_limited(self, client: str, rule: object, wait: Optional[float], dry_run: bool) -> None:
        self._count_rate_limited()
        signal = signals.request_rate_limited
        if signal.receivers:  # refusals are the path an attack takes: no call without them
            _send(signal, self.app(), client=client, rule=rule, retry_after=wait, dry_run=dry_run)

    def shadow_refused(self, client: str, shadowed: tuple[ShadowRefusal, ...]) -> None:
        """An admitted request that shadow rules would have refused: counted once, and
        signalled for each rule as a dry run's refusal is (``rule.shadow`` tells them
        apart)."""
        self.stats.add("shadow_refused")
        signal = signals.request_rate_limited
        if signal.receivers:
            app = self.app()
            for refusal in shadowed:
                wait = refusal.retry_after
                _send(signal, app, client=client, rule=refusal.rule, retry_after=wait, dry_run=True)

    def refused_banned(self, client: str, wait: Optional[float], dry_run: bool) -> None:
        """A banned (or, with ``wait`` None, deny-listed) client was refused."""
        self._count_banned()
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
        _send(signals.storage_error, self.app(), error=error)
