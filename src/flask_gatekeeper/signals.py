"""Signals (blinker, as Flask's own) and counters for what the gate decides.

Every signal is sent with the app as sender and keyword arguments:

=======================  ===============================================================
``client_reported``      ``client``, ``banned_for`` (the new ban's seconds, or None)
``client_banned``        ``client``, ``duration``, ``reason`` ("reports", "response",
                         "rate_limit", "manual": ``decision.BAN_REASONS``), ``detail``
                         (the ban in force: a ``BanDetail``, as ``gk.bans(detail=True)``
                         gives it; None when the storage could not be read)
``client_unbanned``      ``client``
``request_rate_limited`` ``client``, ``rule``, ``retry_after``, ``dry_run``
``request_banned``       ``client``, ``retry_after`` (None for the deny list), ``dry_run``
``storage_error``        ``error``
=======================  ===============================================================

Nothing is sent or logged for an admitted request: that path stays cheap.
"""

from __future__ import annotations

import itertools
from typing import Callable

from blinker import Namespace

__all__ = [
    "Stats",
    "client_banned",
    "client_reported",
    "client_unbanned",
    "request_banned",
    "request_rate_limited",
    "storage_error",
]

_signals = Namespace()

client_reported = _signals.signal("gatekeeper.client-reported")
client_banned = _signals.signal("gatekeeper.client-banned")
client_unbanned = _signals.signal("gatekeeper.client-unbanned")
request_rate_limited = _signals.signal("gatekeeper.request-rate-limited")
request_banned = _signals.signal("gatekeeper.request-banned")
storage_error = _signals.signal("gatekeeper.storage-error")


class Stats:
    """Counters of one app in this process (each worker counts its own requests).

    Each counter is an ``itertools.count``: ``next()`` on it is one atomic C call, so the
    admitted path pays no lock; its value is read from its ``repr``, ``count(N)``.
    """

    FIELDS = ("admitted", "rate_limited", "banned", "reports", "bans", "storage_errors")

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
