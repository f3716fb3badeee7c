"""Storage outages: fail open or closed (503), one warning an outage, and a storage left
alone for ``outage.RETRY_INTERVAL`` after a failure (issue 5).

Apps come from the ``build`` fixture (``conftest.py``), on a ``FakeClock``: every number
below is exact.
"""

from __future__ import annotations

import json

import pytest

from flask_gatekeeper.testing import FakeClock, FlakyStorage
from support import AppFactory, gatekeeper_logs, get, probed_storage, statuses


def test_one_warning_per_storage_outage(
    build: AppFactory,
    clock: FakeClock,
    logs: pytest.LogCaptureFixture,
) -> None:
    storage = probed_storage(clock)  # every call tries the storage while it fails
    app, gk = build(storage=storage)
    client = app.test_client()
    logs.clear()

    storage.failing = True
    assert statuses(client, 3) == [200, 200, 200]  # fail open
    assert storage.calls == 3
    warnings = [entry for entry in gatekeeper_logs(logs) if entry[0] == "WARNING"]
    assert warnings == [
        (
            "WARNING",
            "storage unavailable, admitting requests until it answers again: "
            "connection refused (1)",
        )
    ]
    assert gatekeeper_logs(logs) == warnings  # the other two failures are silent

    storage.failing = False
    assert statuses(client, 2) == [200, 200]
    storage.failing = True
    assert statuses(client, 2) == [200, 200]  # a second outage

    assert gatekeeper_logs(logs) == [
        *warnings,
        ("INFO", "storage available again"),
        (
            "WARNING",
            "storage unavailable, admitting requests until it answers again: "
            "connection refused (4)",
        ),
    ]
    with app.app_context():
        assert gk.stats()["storage_errors"] == 5


def test_storage_is_left_alone_for_retry_interval_after_a_failure(
    build: AppFactory, clock: FakeClock
) -> None:
    storage = FlakyStorage(clock=clock)
    app, gk = build(storage=storage)
    client = app.test_client()
    storage.failing = True

    assert statuses(client, 3) == [200, 200, 200]

    assert storage.calls == 1  # the two next requests came within RETRY_INTERVAL (1 s)
    with app.app_context():
        assert gk.stats()["storage_errors"] == 1


def test_fail_closed_refuses_with_503(build: AppFactory, clock: FakeClock) -> None:
    storage = probed_storage(clock)  # every call tries the storage while it fails
    app, _ = build(storage=storage, fail_open=False)
    client = app.test_client()
    storage.failing = True

    refused = get(client)

    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert refused.text == "rate limiter unavailable, retry in 1s\n"
    assert get(client, "/health").status_code == 200  # bypass never asks the storage
    storage.failing = False
    assert get(client).status_code == 200


def test_fail_closed_503_as_problem_json(build: AppFactory, clock: FakeClock) -> None:
    storage = probed_storage(clock)  # every call tries the storage while it fails
    app, _ = build(storage=storage, fail_open=False)
    storage.failing = True

    refused = get(app.test_client(), accept="application/json")

    assert refused.status_code == 503
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert json.loads(refused.text) == {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "rate limiter unavailable, retry in 1s",
        "retry_after": 1,
    }


def test_one_probe_a_second_while_the_storage_is_down(clock: FakeClock) -> None:
    """Concurrent requests do not all wait on a storage that is down: one tries it."""
    import threading

    from flask_gatekeeper.outage import OutageGuard

    moment = [0.0]
    guard = OutageGuard("open", clock=lambda: moment[0])
    guard.failed(RuntimeError("down"))
    moment[0] = 5.0  # due for another try
    allowed: list[bool] = []
    barrier = threading.Barrier(16)

    def ask() -> None:
        barrier.wait()
        allowed.append(guard.may_probe())

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(True) == 1


def test_a_call_from_before_an_outage_does_not_end_it() -> None:
    from flask_gatekeeper.outage import OutageGuard

    guard = OutageGuard("open")
    started = guard.outages  # a slow call starts...
    guard.failed(RuntimeError("down"))  # ...another one fails meanwhile...
    guard.recovered(started)  # ...and the slow one's late success proves nothing
    assert guard.down
    guard.recovered(guard.outages)
    assert not guard.down
