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
from collections.abc import Sequence
from typing import Optional

from .decision import DEFAULT_OFFENCE, MANUAL, REPORTS, BanDetail, Decision, Reservation, Usage
from .errors import StorageError
from .identity.addresses import NetworkLengths
from .rules import BanRule
from .storage import Clock, MemoryStorage, Storage
from .storage.plan import Scope

__all__ = ["FakeClock", "FlakyStorage", "MemoryStorage"]


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


class FlakyStorage:
    """A storage you can break: test how your app behaves while the storage is down.

    Every call goes to ``inner`` (a ``MemoryStorage`` on ``clock`` by default) until
    ``failing`` is set; then every call raises ``StorageError``, as a Redis outage would.
    ``calls`` counts ``hit`` calls (the gate skips a failed storage for a second, on
    ``clock``: advance it to let the gate try again) and ``errors`` keeps every error
    raised, in order.
    """

    def __init__(self, inner: Optional[Storage] = None, *, clock: Optional[FakeClock] = None):
        if inner is None:
            clock = clock or FakeClock()
            inner = MemoryStorage(clock=clock)
        self.clock: Optional[Clock] = clock or getattr(inner, "clock", None)
        self.inner: Storage = inner
        self.failing = False
        self.calls = 0
        self.errors: list[StorageError] = []

    def __repr__(self) -> str:
        return f"FlakyStorage({self.inner!r})"

    def _maybe_fail(self) -> None:
        if self.failing:
            error = StorageError(f"connection refused ({len(self.errors) + 1})")
            self.errors.append(error)
            raise error

    def hit(
        self,
        client: str,
        scopes: Sequence[Scope],
        *,
        usage: bool = False,
        report_to: Optional[BanRule] = None,
        also: Sequence[str] = (),
        token: Optional[str] = None,
        offence: str = DEFAULT_OFFENCE,
    ) -> Decision:
        self.calls += 1
        self._maybe_fail()
        return self.inner.hit(
            client,
            scopes,
            usage=usage,
            report_to=report_to,
            also=also,
            token=token,
            offence=offence,
        )

    def release(self, client: str, scope_names: Sequence[str], token: str) -> None:
        self._maybe_fail()
        self.inner.release(client, scope_names, token)

    def refund(self, client: str, scopes: Sequence[Scope], reserved: Sequence[Reservation]) -> None:
        self._maybe_fail()
        self.inner.refund(client, scopes, reserved)

    def record(self, client: str, scopes: Sequence[Scope]) -> None:
        """Deprecated, as ``Storage.record`` is."""
        self._maybe_fail()
        self.inner.record(client, scopes)  # type: ignore[attr-defined]

    def usage(self, client: str, scopes: Sequence[Scope]) -> list[Usage]:
        self._maybe_fail()
        return self.inner.usage(client, scopes)

    def report(
        self,
        client: str,
        ban_rule: BanRule,
        reason: str = REPORTS,
        offence: str = DEFAULT_OFFENCE,
    ) -> Optional[float]:
        self._maybe_fail()
        return self.inner.report(client, ban_rule, reason, offence)

    def ban(
        self, client: str, duration: float, reason: str = MANUAL, offence: str = DEFAULT_OFFENCE
    ) -> None:
        self._maybe_fail()
        self.inner.ban(client, duration, reason, offence)

    def unban(self, client: str) -> bool:
        self._maybe_fail()
        return self.inner.unban(client)

    def banned_for(self, client: str) -> float:
        self._maybe_fail()
        return self.inner.banned_for(client)

    def network_lengths(self, *, cached: bool = False) -> NetworkLengths:
        if not cached:  # a request's answer never raises
            self._maybe_fail()
        return self.inner.network_lengths(cached=cached)

    def bans(self) -> dict[str, float]:
        self._maybe_fail()
        return self.inner.bans()

    def ban_detail(self, client: str) -> Optional[BanDetail]:
        self._maybe_fail()
        return self.inner.ban_detail(client)

    def ban_details(self) -> dict[str, BanDetail]:
        self._maybe_fail()
        return self.inner.ban_details()

    def reset(self, client: str, scope: Optional[str] = None) -> None:
        self._maybe_fail()
        self.inner.reset(client, scope)
