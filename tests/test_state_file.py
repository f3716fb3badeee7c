"""Bans that survive a restart with the memory storage (``state_file``).

In-process tests move both clocks (the storage's and the wall clock written to the file)
instead of sleeping; the end-to-end tests restart a real server process, once after a clean
shutdown and once after ``kill -9``, and find its bans.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_gatekeeper import BanRule, ConfigError, GateKeeper, MemoryStorage
from flask_gatekeeper.state_file import FORMAT, StateFile
from flask_gatekeeper.testing import FakeClock
from support.servers import ServerProcess, fetch

RULE = BanRule(3, 10, 600)


@pytest.fixture
def wall() -> FakeClock:
    """The Unix time written to the file: far from the storage's clock on purpose."""
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "bans.json"


def state_file(path: Path, clock: FakeClock, wall: FakeClock) -> StateFile:
    return StateFile(path, MemoryStorage(clock=clock), wall=wall)


def test_bans_reports_and_history_come_back_after_a_restart(
    path: Path, clock: FakeClock, wall: FakeClock
) -> None:
    before = state_file(path, clock, wall)
    storage = before.storage
    for _ in range(3):
        storage.report("192.0.2.1", RULE)  # banned by the ban rule: one strike of history
    storage.ban("192.0.2.2", 60)
    storage.ban("203.0.113.0/24", 120)
    storage.report("192.0.2.3", RULE)
    storage.report("192.0.2.3", RULE)  # two reports of three
    assert before.save()

    # The new process starts 5 s later, with a monotonic clock that starts elsewhere.
    wall.advance(5)
    after = state_file(path, FakeClock(5.0), wall)
    assert after.load() == 3
    restored = after.storage
    assert restored.bans() == {"192.0.2.1": 595.0, "192.0.2.2": 55.0, "203.0.113.0/24": 115.0}
    detail = restored.ban_detail("192.0.2.1")
    assert detail is not None
    assert (detail.reason, detail.strikes, detail.since) == ("reports", 1, 5.0)
    assert restored.network_lengths() == frozenset({(4, 24)})  # the registry knows it
    assert restored.report("192.0.2.3", RULE) == 600.0  # the third report bans


def test_reports_come_back_through_two_restarts(
    path: Path, clock: FakeClock, wall: FakeClock
) -> None:
    first = state_file(path, clock, wall)
    first.storage.report("192.0.2.3", RULE)
    first.storage.report("192.0.2.3", RULE)
    assert first.save()
    second = state_file(path, FakeClock(5.0), wall)
    second.load()
    assert second.save()  # what it restored is saved again, unchanged
    third = state_file(path, FakeClock(9.0), wall)
    third.load()
    assert third.storage.report("192.0.2.3", RULE) == 600.0  # the third report bans


def test_each_offences_reports_and_a_bans_offence_come_back(
    path: Path, clock: FakeClock, wall: FakeClock
) -> None:
    before = state_file(path, clock, wall)
    storage = before.storage
    storage.report("192.0.2.3", RULE)
    storage.report("192.0.2.3", RULE, offence="login")
    storage.report("192.0.2.3", RULE, offence="login")  # two of three login reports
    for _ in range(3):
        storage.report("192.0.2.4", RULE, offence="scanner")
    assert before.save()
    after = state_file(path, FakeClock(5.0), wall)
    after.load()
    restored = after.storage
    detail = restored.ban_detail("192.0.2.4")
    assert detail is not None
    assert (detail.offence, detail.strikes) == ("scanner", 1)
    assert restored.report("192.0.2.3", RULE) is None  # two of three default reports
    assert restored.report("192.0.2.3", RULE, offence="login") == 600.0


def test_a_file_written_before_offences_reads_as_the_default_offence(
    path: Path, clock: FakeClock, wall: FakeClock
) -> None:
    now = int(wall() * 1e6)
    path.write_text(
        json.dumps(
            {
                "format": FORMAT,
                "version": 1,
                "bans": [
                    {
                        "client": "192.0.2.1",
                        "start": now,
                        "end": now + 60_000_000,
                        "strikes": 1,
                        "forget_at": now + 120_000_000,
                        "reason": "reports",
                    }
                ],
                "reports": [{"client": "192.0.2.3", "times": [now, now]}],
            }
        )
    )
    after = state_file(path, clock, wall)
    assert after.load() == 1
    detail = after.storage.ban_detail("192.0.2.1")
    assert detail is not None
    assert detail.offence == "default"
    assert after.storage.report("192.0.2.3", RULE) == 600.0  # its third report


def test_what_ended_meanwhile_stays_ended(path: Path, clock: FakeClock, wall: FakeClock) -> None:
    before = state_file(path, clock, wall)
    before.storage.ban("192.0.2.2", 60)
    before.storage.report("192.0.2.3", RULE)
    assert before.save()
    wall.advance(61)
    after = state_file(path, FakeClock(5.0), wall)
    after.load()
    assert after.storage.bans() == {}
    # a report older than the ban rule's window does not count any more
    after.storage.report("192.0.2.3", RULE)
    assert after.storage.report("192.0.2.3", RULE) is None


def test_a_missing_file_is_an_empty_start(
    path: Path, clock: FakeClock, wall: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    assert state_file(path, clock, wall).load() == 0
    assert caplog.records == []


@pytest.mark.parametrize(
    ("content", "why"),
    [
        pytest.param("{not json", "not JSON", id="corrupt"),
        pytest.param('{"bans": []}', "no 'format'", id="foreign JSON"),
        pytest.param("root:x:0:0:root:/root:/bin/bash\n", "not JSON", id="foreign text"),
        pytest.param(
            json.dumps({"format": FORMAT, "version": 99, "bans": [], "reports": []}),
            "version 99",
            id="newer format",
        ),
        pytest.param(
            json.dumps({"format": FORMAT, "version": 1, "bans": [{"client": 1}], "reports": []}),
            "ban 0's client is not text",
            id="wrong type",
        ),
        pytest.param(
            json.dumps({"format": FORMAT, "version": 1, "bans": {}, "reports": []}),
            "'bans' is not a list",
            id="wrong shape",
        ),
    ],
)
def test_a_file_that_is_not_a_state_file_is_a_warning_and_a_clean_start(
    path: Path,
    clock: FakeClock,
    wall: FakeClock,
    caplog: pytest.LogCaptureFixture,
    content: str,
    why: str,
) -> None:
    path.write_text(content)
    keeper = state_file(path, clock, wall)
    with caplog.at_level(logging.WARNING, logger="flask_gatekeeper"):
        assert keeper.load() == 0
    (record,) = caplog.records
    assert record.levelname == "WARNING"
    assert str(path) in record.getMessage()
    assert why in record.getMessage()
    assert keeper.storage.bans() == {}
    aside = path.with_name("bans.json.bad")
    assert aside.read_text() == content  # nothing of the user's is lost
    keeper.storage.ban("192.0.2.2", 60)
    assert keeper.save()
    assert json.loads(path.read_text())["bans"][0]["client"] == "192.0.2.2"


def test_writes_replace_the_file_whole(path: Path, clock: FakeClock, wall: FakeClock) -> None:
    keeper = state_file(path, clock, wall)
    keeper.storage.ban("192.0.2.2", 60)
    assert keeper.save()
    assert [item.name for item in path.parent.iterdir()] == ["bans.json"]  # no temporary left
    document = json.loads(path.read_text())
    assert (document["format"], document["version"]) == (FORMAT, 1)
    assert document["bans"][0]["end"] == (1_700_000_000 + 60) * 1_000_000


def test_two_apps_of_one_process_cannot_write_one_file(
    path: Path, clock: FakeClock, wall: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = state_file(path, clock, wall), state_file(path, clock, wall)
    try:
        assert first.start()
        with caplog.at_level(logging.ERROR, logger="flask_gatekeeper"):
            assert not second.start()
        message = caplog.records[-1].getMessage()
        assert "another app of this process" in message
        assert "Redis" in message
    finally:
        first.close()
    third = state_file(path, clock, wall)
    try:
        assert third.start()  # the first one let it go
    finally:
        third.close()


def test_two_processes_cannot_write_one_file(
    path: Path, clock: FakeClock, wall: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    holder = textwrap.dedent(
        f"""
        import fcntl, os, sys
        descriptor = os.open({str(path) + ".lock"!r}, os.O_RDWR | os.O_CREAT)
        fcntl.lockf(descriptor, fcntl.LOCK_EX)
        print("locked", flush=True)
        sys.stdin.read()
        """
    )
    other = subprocess.Popen(
        [sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout is not None
        assert other.stdout.readline() == "locked\n"
        keeper = state_file(path, clock, wall)
        keeper.storage.ban("192.0.2.2", 60)
        with caplog.at_level(logging.ERROR, logger="flask_gatekeeper"):
            assert not keeper.start()
            keeper.close()  # at exit too: nothing written over the other process's file
        assert "another process" in caplog.records[-1].getMessage()
        assert "GATEKEEPER_STORAGE_URI" in caplog.records[-1].getMessage()
        assert not path.exists()
    finally:
        other.communicate("")


def test_the_writer_saves_what_changed_within_its_interval(
    path: Path, clock: FakeClock, wall: FakeClock
) -> None:
    keeper = StateFile(path, MemoryStorage(clock=clock), wall=wall, interval=0.02)
    try:
        assert keeper.start()
        keeper.storage.ban("192.0.2.2", 60)
        deadline = time.monotonic() + 5  # a bounded poll for the writer thread
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert json.loads(path.read_text())["bans"][0]["client"] == "192.0.2.2"
    finally:
        keeper.close()


def test_a_clean_exit_saves_what_changed(path: Path, clock: FakeClock, wall: FakeClock) -> None:
    keeper = state_file(path, clock, wall)
    keeper.storage.ban("192.0.2.2", 60)
    before = set(threading.enumerate())
    keeper.close()  # what the interpreter's exit runs: it starts no thread (3.12 refuses)
    assert set(threading.enumerate()) - before == set()
    assert json.loads(path.read_text())["bans"][0]["client"] == "192.0.2.2"


# -- the option ---------------------------------------------------------------------------


def test_the_option_and_its_config_key(path: Path) -> None:
    app = Flask(__name__)
    GateKeeper(app, ban_rule=RULE, state_file=path)
    assert app.extensions["gatekeeper"].state_file.path == path.resolve()
    other = Flask(__name__)
    other.config["GATEKEEPER_STATE_FILE"] = str(path)
    GateKeeper(other, ban_rule=RULE)
    assert other.extensions["gatekeeper"].state_file.path == path.resolve()


def test_an_app_starts_with_the_bans_of_the_file(path: Path, clock: FakeClock) -> None:
    first = Flask(__name__)
    gk = GateKeeper(first, ban_rule=RULE, storage=MemoryStorage(clock=clock), state_file=path)
    with first.app_context():
        gk.ban("192.0.2.9", 600)
    first.extensions["gatekeeper"].state_file.close()

    second = Flask(__name__)
    GateKeeper(second, ban_rule=RULE, state_file=path)
    reply = second.test_client().get("/", environ_base={"REMOTE_ADDR": "192.0.2.9"})
    assert reply.status_code == 403
    assert 590 <= int(reply.headers["Retry-After"]) <= 600
    second.extensions["gatekeeper"].state_file.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"storage": "redis://127.0.0.1:1/0"},
            "state_file: the state file keeps the memory storage's bans",
            id="with Redis",
        ),
        pytest.param({"state_file": "/no/such/directory/bans.json"}, "does not exist", id="dir"),
        pytest.param({"state_file": 42}, "expected a file path", id="type"),
        pytest.param({"state_file": ""}, "the path is empty", id="empty"),
    ],
)
def test_a_state_file_that_cannot_work_fails_at_start_up(
    path: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        GateKeeper(Flask(__name__), **{"state_file": path, **options})


# -- a real server, restarted ---------------------------------------------------------------

APP_MODULE = """
from flask import Flask
from flask_gatekeeper import GateKeeper

app = Flask(__name__)
gk = GateKeeper(app, ban_rule={{"count": 3, "window": 10, "duration": 600}},
                state_file={path!r})

@app.route("/login", methods=["POST"])
def login():
    gk.report()
    return "bad password", 401

@app.route("/")
def index():
    return "ok"
"""
"""An app whose three bad passwords ban the client for 600 s, with a state file."""

INTERVAL = """
app.extensions["gatekeeper"].state_file.interval = {interval!r}
"""
"""Sets the writer's interval of ``APP_MODULE``'s state file."""


def status(url: str, method: str = "GET") -> int:
    return fetch(url, method=method).status


@pytest.mark.e2e
@pytest.mark.parametrize("stop", ["clean shutdown", "kill -9 after a write"])
def test_a_restarted_server_keeps_its_bans(tmp_path: Path, path: Path, stop: str) -> None:
    # A clean stop saves at exit, the interval is never reached; kill -9 loses only what
    # the writer did not save yet, so that test waits for the write (a bounded poll).
    interval = 3600.0 if stop == "clean shutdown" else 0.05
    module = APP_MODULE.format(path=str(path)) + INTERVAL.format(interval=interval)
    (tmp_path / "banning.py").write_text(module)
    server = ServerProcess.werkzeug(tmp_path, "banning", probe="/")
    server.start()
    try:
        url = server.url
        assert [status(f"{url}/login", "POST") for _ in range(3)] == [401, 401, 401]
        assert status(url) == 403
        if stop == "clean shutdown":
            server.stop(signal.SIGINT)
        else:
            deadline = time.monotonic() + 10
            while not path.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            server.stop(signal.SIGKILL)
    finally:
        server.stop(signal.SIGKILL)
    assert json.loads(path.read_text())["bans"][0]["client"] == "127.0.0.1"

    server.start()  # on the same port
    try:
        assert status(url) == 403
    finally:
        server.stop(signal.SIGINT)


@pytest.mark.e2e
def test_a_preloading_gunicorn_keeps_its_worker_s_bans(tmp_path: Path, path: Path) -> None:
    """gunicorn ``--preload`` builds the app in its parent, which forks the worker: the
    worker takes the file, and its graceful stop saves it."""
    (tmp_path / "banning.py").write_text(APP_MODULE.format(path=str(path)))
    server = ServerProcess.gunicorn(tmp_path, "banning", workers=1, options=("--preload",))
    for attempt in ("first", "restarted"):
        server.start()  # answers 403 once restarted: the ban came back
        try:
            if attempt == "first":
                assert [status(f"{server.url}/login", "POST") for _ in range(3)] == [401] * 3
            assert status(server.url) == 403
        finally:
            server.stop()  # SIGTERM: gunicorn's graceful stop
        assert "will not be saved" not in server.log
    assert json.loads(path.read_text())["bans"][0]["client"] == "127.0.0.1"
