"""Signals (blinker, as Flask's own) for what the gate decides; ``events`` sends them.

Every signal is sent with the app as sender and keyword arguments:

=======================  ===============================================================
``client_reported``      ``client``, ``banned_for`` (the new ban's seconds, or None),
                         ``offence`` (the one it counted toward: "default" or a name
                         of ``ban_rules``)
``client_banned``        ``client``, ``duration``, ``reason`` (one of
                         ``decision.BAN_REASONS``: "reports", "response", "rate_limit",
                         "manual", "subnet", "blocklist"), ``detail``
                         (the ban in force: a ``BanDetail``, as ``gk.bans(detail=True)``
                         gives it; None when the storage could not be read),
                         ``offence`` (the offence whose reports made this ban; None
                         for a ban made without a ban rule)
``client_unbanned``      ``client``
``request_rate_limited`` ``client``, ``rule``, ``retry_after``, ``dry_run``
``request_banned``       ``client``, ``retry_after`` (None for the deny list), ``dry_run``
``storage_error``        ``error``
=======================  ===============================================================

Nothing is sent or logged for an admitted request, unless a shadow rule would have
refused it (``request_rate_limited`` with ``dry_run=True`` and ``rule.shadow``): that path
stays cheap.
"""

from __future__ import annotations

from blinker import Namespace

__all__ = [
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
