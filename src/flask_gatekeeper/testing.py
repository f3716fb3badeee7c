"""Helpers for testing apps that use flask-gatekeeper: move time instead of sleeping.

Example::

    clock = FakeClock()
    gk = GateKeeper(app, rate_limit_rules=[{"count": 1, "window": 10}],
                    storage=MemoryStorage(clock=clock))
    ...
    clock.advance(10)   # the window has passed
"""

from __future__ import annotations

import threading

from .storage import MemoryStorage

__all__ = ["FakeClock", "MemoryStorage"]


class FakeClock:
    """A clock that only moves when told to; pass it as a storage's ``clock``."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` and return the new time."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back, got advance({seconds!r})")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, now: float) -> None:
        """Jump to ``now`` (tests of edge cases, e.g. exactly at a window's end)."""
        with self._lock:
            self._now = now
