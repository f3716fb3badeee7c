"""Signals (blinker, as Flask's own) and counters for what the gate decides.

Every signal is sent with the app as sender and keyword arguments:

=======================  ===============================================================
``client_reported``      ``client``, ``banned_for`` (the new ban's seconds, or None)
``client_banned``        ``client``, ``duration``, ``reason`` ("reports", "rate_limit",
                         "manual")
``client_unbanned``      ``client``
``request_rate_limited`` ``client``, ``rule``, ``retry_after``, ``dry_run``
``request_banned``       ``client``, ``retry_after`` (None for the deny list), ``dry_run``
``storage_error``        ``error``
=======================  ===============================================================

Nothing is sent or logged for an admitted request: that path stays cheap.
"""

from __future__ import annotations

import threading

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
    """Counters of one app in this process (each worker counts its own requests)."""

    FIELDS = ("admitted", "rate_limited", "banned", "reports", "bans", "storage_errors")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.FIELDS, 0)

    def add(self, field: str) -> None:
        with self._lock:
            self._counts[field] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
