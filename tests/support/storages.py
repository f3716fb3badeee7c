"""Storages for the outage tests: a flaky storage the gate tries again on every call."""

from __future__ import annotations

from flask_gatekeeper import MemoryStorage
from flask_gatekeeper.outage import RETRY_INTERVAL
from flask_gatekeeper.testing import FakeClock, FlakyStorage


class ProbingClock:
    """An outage guard's clock on which every reading is a retry interval after the last:
    while the storage is down, every call tries it again."""

    def __init__(self) -> None:
        self._now = 0.0

    def __call__(self) -> float:
        self._now += RETRY_INTERVAL
        return self._now


def probed_storage(clock: FakeClock) -> FlakyStorage:
    """A ``FlakyStorage`` over a memory storage on ``clock``, which the gate tries on
    every call while it fails (its own clock is a ``ProbingClock``)."""
    storage = FlakyStorage(MemoryStorage(clock=clock))
    storage.clock = ProbingClock()
    return storage
