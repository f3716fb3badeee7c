"""Storage outages: never a 500, logged once per outage, counted, and left by themselves.

When the storage fails, requests meet the outage policy (``on_outage``): "local", the
default for Redis, decides them with this process's own memory storage, on the same
rules (a client gets at most its limit in each process); "open" admits them (a limiter
outage should not become a site outage); "closed" refuses them with 503. For a second
after a failure the storage is not asked at all, so a stalled Redis costs one timeout per
second and process, not one per request; then one request tries again, and its success
ends the outage.
"""

from __future__ import annotations

import logging
import threading
import time

from .errors import ConfigError, StorageError
from .storage.base import Clock

__all__ = ["OutageGuard", "check_storage"]

logger = logging.getLogger("flask_gatekeeper")

RETRY_INTERVAL = 1.0
"""Seconds between attempts while the storage is down."""


class OutageGuard:
    """Tracks one app's storage health: whether it is down, and when to try it again.

    While down, ``may_probe`` lets exactly one caller a second through to try the
    storage; the others are answered at once by the outage policy. ``outages`` numbers
    the outages: read before a call and handed to ``recovered``, it keeps a call which
    started before an outage, and succeeded after it began, from ending it.
    """

    def __init__(self, policy: str, clock: Clock = time.monotonic) -> None:
        """``policy``: "local", "open" or "closed" (``on_outage``). ``clock`` is the
        storage's own when it has one, so a test that moves its storage's clock
        (``testing.FakeClock``) moves the retry interval along."""
        self.policy = policy
        self.outages = 0
        self.down = False
        self._retry_at = 0.0
        self.clock = clock
        self._lock = threading.Lock()

    def may_probe(self) -> bool:
        """Whether this caller may try the storage now; True for one caller a second."""
        with self._lock:
            if not self.down:
                return True
            now = self.clock()
            if now < self._retry_at:
                return False
            self._retry_at = now + RETRY_INTERVAL  # this caller probes; the others wait
            return True

    def failed(self, error: Exception, *, at_start: str = "") -> None:
        """Note a failure; log it when it starts an outage. ``at_start``: the setting
        whose storage did not answer the start-up check, which the log line names."""
        with self._lock:
            self._retry_at = self.clock() + RETRY_INTERVAL
            if self.down:
                return
            self.down = True
            self.outages += 1
        logger.warning(
            "%sstorage unavailable, %s until it answers again: %s",
            f"{at_start}: at start-up, " if at_start else "",
            _MEETS[self.policy],
            error,
        )

    def recovered(self, outages: int) -> bool:
        """A call that started when ``outages`` had this value succeeded: end that outage
        (logged once); True when this call ended it."""
        with self._lock:
            if not self.down or outages != self.outages:
                return False
            self.down = False
        logger.info("storage available again")
        return True


_MEETS = {
    "local": "deciding requests with this process's own limits",
    "open": "admitting requests",
    "closed": "refusing (503) requests",
}
"""What requests meet during an outage, as the log line says it."""


def check_storage(storage: object, name: str, guard: OutageGuard) -> None:
    """Check the storage once, at start-up, with its ``check()`` when it has one: a
    misconfiguration is a ``ConfigError`` naming the setting ``name``; a storage that
    does not answer (yet: servers often start before Redis) is a warning naming the
    setting and where the storage is, and an outage from the start, so that requests
    follow the outage policy until it answers."""
    check = getattr(storage, "check", None)
    if not callable(check):
        return
    try:
        check()
    except ConfigError as exc:
        raise type(exc)(f"{name}: {exc}") from None
    except StorageError as exc:
        guard.failed(exc, at_start=name)
