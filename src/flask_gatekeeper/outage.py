"""Storage outages: never a 500, logged once per outage, counted, and left by themselves.

When the storage fails, requests are admitted (``fail_open=True``, the default: a limiter
outage should not become a site outage) or refused with 503 (``fail_open=False``). For a
second after a failure the storage is not asked at all, so a stalled Redis costs one
timeout per second, not one per request; then the next request tries again, and the
first success ends the outage.
"""

from __future__ import annotations

import logging
import threading
import time

from .storage.base import Clock

__all__ = ["OutageGuard"]

logger = logging.getLogger("flask_gatekeeper")

RETRY_INTERVAL = 1.0
"""Seconds between attempts while the storage is down."""


class OutageGuard:
    """Tracks one app's storage health: errors, outages, and when to try again."""

    def __init__(self, fail_open: bool, clock: Clock = time.monotonic) -> None:
        self.fail_open = fail_open
        self.errors = 0
        self.outages = 0
        self.down = False
        self._retry_at = 0.0
        self._clock = clock
        self._lock = threading.Lock()

    def skip(self) -> bool:
        """True while the storage is down and not due for another attempt."""
        return self.down and self._clock() < self._retry_at

    def failed(self, error: Exception) -> None:
        """Count a failure; log it when it starts an outage."""
        with self._lock:
            self.errors += 1
            self._retry_at = self._clock() + RETRY_INTERVAL
            if self.down:
                return
            self.down = True
            self.outages += 1
        logger.warning(
            "storage unavailable, %s requests until it answers again: %s",
            "admitting" if self.fail_open else "refusing (503)",
            error,
        )

    def recovered(self) -> None:
        """The storage answered: end the outage (logged once)."""
        with self._lock:
            if not self.down:
                return
            self.down = False
        logger.info("storage available again")
