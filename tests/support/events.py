"""Recorders of what the gatekeeper tells the app: its signals and its log records."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from blinker import Signal
from flask import Flask

from flask_gatekeeper import signals

SIGNALS: dict[str, Signal] = {
    "client_reported": signals.client_reported,
    "client_banned": signals.client_banned,
    "client_unbanned": signals.client_unbanned,
    "request_rate_limited": signals.request_rate_limited,
    "request_banned": signals.request_banned,
    "storage_error": signals.storage_error,
}

Event = tuple[str, dict[str, Any]]


class _Receiver:
    """Appends ``(signal name, keyword arguments)`` to ``events``; checks the sender."""

    def __init__(self, name: str, app: Flask, events: list[Event]) -> None:
        self.name = name
        self.app = app
        self.events = events

    def __call__(self, sender: object, **kwargs: Any) -> None:
        assert sender is self.app
        self.events.append((self.name, kwargs))


@contextmanager
def recording(app: Flask) -> Iterator[list[Event]]:
    """Every gatekeeper signal ``app`` sends inside the block, in order."""
    events: list[Event] = []
    with ExitStack() as stack:
        for name, signal in SIGNALS.items():
            stack.enter_context(signal.connected_to(_Receiver(name, app, events), sender=app))
        yield events


def gatekeeper_logs(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """``(level, message)`` of every record of the ``flask_gatekeeper`` logger."""
    return [
        (record.levelname, record.getMessage())
        for record in caplog.records
        if record.name == "flask_gatekeeper"
    ]
