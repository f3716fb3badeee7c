"""The storage protocol: the only boundary that knows about time and data layout.

Each method is one atomic step that reads the clock once. ``hit`` does a whole request's
work (ban check, every rule's check, record if admitted) so that a request costs one lock
in memory and one round trip in Redis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable, Protocol

from ..decision import Decision
from ..policy import Scope
from ..rules import BanRule

__all__ = ["Clock", "Storage"]

Clock = Callable[[], float]
"""Returns the current time in seconds; only differences matter (e.g. ``time.monotonic``)."""


class Storage(Protocol):
    """What the extension needs from a storage backend."""

    def hit(self, client: str, scopes: Sequence[Scope]) -> Decision:
        """Refuse a banned client; else refuse if any rule of ``scopes`` is full; else
        record one request in every scope and admit. Refused requests are not recorded."""
        ...

    def report(self, client: str, ban_rule: BanRule) -> bool:
        """Record one offence; return True when it completes ``ban_rule`` and bans the client."""
        ...
