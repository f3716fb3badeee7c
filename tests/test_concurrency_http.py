"""Concurrency limits, and ``count_when`` routes' reservations, over real HTTP: a threaded
werkzeug server with the memory storage, and gunicorn workers sharing Redis.

Slow views wait on events (threads) or on Redis lists (processes) that the test sets,
never on sleeps: the test knows when every request is where it should be. The one real
wait is a lease of two seconds, after a worker was killed holding a slot.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, request

from flask_gatekeeper import GateKeeper, MemoryStorage
from support import servers
from support.servers import HOST

pytestmark = pytest.mark.e2e

TIMEOUT = 10.0
"""Seconds any wait of these tests may take before it fails."""


def fetch(port: int, path: str, ip: str = "10.0.0.1") -> tuple[int, str]:
    """One request over a new connection: its status and body."""
    reply = servers.fetch(f"http://{HOST}:{port}{path}", ip)
    return reply.status, reply.body


# --- one process, threads, the memory storage -------------------------------------------


class Released(MemoryStorage):
    """A memory storage that says when a request's slots were given back."""

    def __init__(self) -> None:
        super().__init__()
        self.released = threading.Semaphore(0)

    def release(self, client: str, scope_names: Any, token: str) -> None:
        super().release(client, scope_names, token)
        self.released.release()


class Views:
    """What the slow views of the threaded app let the test see and control."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.most = 0
        self.entered = threading.Semaphore(0)
        self.go = threading.Event()
        self.first_chunk_sent = threading.Event()
        self.stream_finished = False

    def enter(self) -> None:
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        self.entered.release()

    def leave(self) -> None:
        with self.lock:
            self.inside -= 1


def threaded_app(views: Views, storage: Released) -> Flask:
    app = Flask(__name__)
    gk = GateKeeper(app, storage=storage, trusted_proxies=1)

    @app.route("/slow")
    @gk.specific(concurrency=3)
    def slow() -> str:
        views.enter()
        try:
            assert views.go.wait(TIMEOUT)
            return "done"
        finally:
            views.leave()

    @app.route("/login")
    @gk.specific("5/minute", count_when=lambda response: response.status_code == 401)
    def login() -> tuple[str, int]:
        if request.args.get("hold"):
            views.enter()
            try:
                assert views.go.wait(TIMEOUT)
            finally:
                views.leave()
        return ("welcome", 200) if request.args.get("right") else ("wrong password", 401)

    @app.route("/boom")
    @gk.specific(concurrency=1)
    def boom() -> str:
        raise RuntimeError("the view failed")

    @app.route("/stream")
    @gk.specific(concurrency=1)
    def stream() -> Response:
        if request.args.get("short"):
            return Response(iter(["short"]))

        def chunks() -> Iterator[bytes]:
            yield b"first\n"
            views.first_chunk_sent.set()
            for _ in range(1000):  # until a write fails: the client went away
                yield b"x" * 65536
            views.stream_finished = True

        return Response(chunks())

    return app


@pytest.fixture
def served() -> Iterator[tuple[int, Views, Released]]:
    """The app on a threaded werkzeug server, on a free port, until the test ends."""
    views, storage = Views(), Released()
    with servers.serving(threaded_app(views, storage)) as port:
        try:
            yield port, views, storage
        finally:
            views.go.set()


def first_refused(futures: list[Future[tuple[int, str]]], count: int) -> list[int]:
    """The statuses of the first ``count`` requests to complete."""
    done = []
    for future in as_completed(futures, timeout=TIMEOUT):
        done.append(future.result()[0])
        if len(done) == count:
            return done
    raise AssertionError(f"only {len(done)} requests completed")


def test_twenty_at_once_admit_three_until_they_end(served: tuple[int, Views, Released]) -> None:
    port, views, _ = served
    with ThreadPoolExecutor(20) as pool:
        futures = [pool.submit(fetch, port, "/slow") for _ in range(20)]
        for _ in range(3):
            assert views.entered.acquire(timeout=TIMEOUT)
        assert first_refused(futures, 17) == [429] * 17  # while the three are held
        assert views.most == 3
        views.go.set()
        results = [future.result(TIMEOUT) for future in futures]
    assert Counter(status for status, _ in results) == {200: 3, 429: 17}
    assert views.most == 3
    refusal = next(body for status, body in results if status == 429)
    assert (
        refusal == "ip 10.0.0.1 has too many requests in flight (at most 3 at once), retry in 1s\n"
    )
    assert [fetch(port, "/slow")[0] for _ in range(4)] == [200] * 4  # every slot came back
    assert fetch(port, "/slow", ip="10.0.0.2")[0] == 200


@pytest.mark.parametrize(
    ("path", "status"), [("/login?hold=1", 401), ("/login?hold=1&right=1", 200)]
)
def test_twenty_slow_logins_at_once_admit_five(
    served: tuple[int, Views, Released], path: str, status: int
) -> None:
    port, views, _ = served
    with ThreadPoolExecutor(20) as pool:
        futures = [pool.submit(fetch, port, path) for _ in range(20)]
        for _ in range(5):
            assert views.entered.acquire(timeout=TIMEOUT)
        assert first_refused(futures, 15) == [429] * 15  # each admitted one holds its place
        assert views.most == 5
        views.go.set()
        results = [future.result(TIMEOUT)[0] for future in futures]
    assert Counter(results) == {status: 5, 429: 15}
    if status == 401:  # counted
        assert fetch(port, "/login")[0] == 429
    else:  # given back once their responses were known
        assert [fetch(port, "/login")[0] for _ in range(6)] == [401] * 5 + [429]


def test_a_view_that_raises_gives_its_slot_back(served: tuple[int, Views, Released]) -> None:
    port, _, _ = served
    assert [fetch(port, "/boom")[0] for _ in range(3)] == [500, 500, 500]


def test_a_client_that_leaves_mid_stream_gives_its_slot_back(
    served: tuple[int, Views, Released],
) -> None:
    port, views, storage = served
    with socket.create_connection((HOST, port), timeout=TIMEOUT) as reader:
        reader.sendall(b"GET /stream HTTP/1.1\r\nHost: test\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n")
        received = b""
        while b"first" not in received:
            chunk = reader.recv(4096)
            assert chunk, "the server closed the stream"
            received += chunk
        assert views.first_chunk_sent.wait(TIMEOUT)
        assert fetch(port, "/stream?short=1")[0] == 429  # the stream holds the slot
    # closed with unread data: the server's next writes fail, and it closes the response
    assert storage.released.acquire(timeout=TIMEOUT)
    assert not views.stream_finished
    assert fetch(port, "/stream?short=1") == (200, "short")


# --- gunicorn workers sharing Redis -------------------------------------------------------

REDIS_APP = textwrap.dedent(
    """
    import os

    import redis
    from flask import Flask, request

    from flask_gatekeeper import GateKeeper

    url = os.environ["GK_TEST_REDIS_URL"]
    app = Flask(__name__)
    gk = GateKeeper(
        app,
        storage=url,
        trusted_proxies=1,
        fail_open=False,
        concurrency_lease=float(os.environ["GK_TEST_LEASE"]),
    )
    test = redis.Redis.from_url(url)  # the test's own lists: entered, go


    @app.route("/slow")
    @gk.specific(concurrency=int(os.environ["GK_TEST_CONCURRENCY"]))
    def slow():
        if request.args.get("hold"):
            test.rpush("entered", os.getpid())
            test.blpop("go", timeout=30)
        return "done"


    @app.route("/login")
    @gk.specific("5/minute", count_when=lambda response: response.status_code == 401)
    def login():
        if request.args.get("hold"):
            test.rpush("entered", os.getpid())
            test.blpop("go", timeout=30)
        return "wrong password", 401


    @app.route("/health")
    @gk.bypass
    def health():
        return "ok"
    """
)


@pytest.fixture
def redis_processes(redis_url: str, tmp_path: Path) -> Iterator[Any]:
    """Starts gunicorn with ``REDIS_APP`` (``start(workers, concurrency, lease)``), with
    an empty Redis; stops every server at the end."""
    import redis

    (tmp_path / "gk_app.py").write_text(REDIS_APP)
    db = redis.Redis.from_url(redis_url, decode_responses=True)
    db.flushdb()
    started: list[servers.ServerProcess] = []

    def start(workers: int, concurrency: int, lease: float) -> tuple[int, redis.Redis]:
        env = {
            "GK_TEST_REDIS_URL": redis_url,
            "GK_TEST_CONCURRENCY": str(concurrency),
            "GK_TEST_LEASE": str(lease),
        }
        server = servers.ServerProcess.gunicorn(tmp_path, workers=workers, env=env)
        started.append(server)
        server.start()
        return server.port, db

    yield start
    for server in started:
        server.stop()
    db.close()


@pytest.mark.redis
def test_gunicorn_workers_share_one_limit(redis_processes: Any) -> None:
    port, db = redis_processes(workers=4, concurrency=3, lease=300)
    with ThreadPoolExecutor(20) as pool:
        futures = [pool.submit(fetch, port, "/slow?hold=1") for _ in range(20)]
        holders = [db.blpop(["entered"], timeout=TIMEOUT) for _ in range(3)]
        assert all(holders)
        assert first_refused(futures, 17) == [429] * 17
        assert db.llen("entered") == 0  # no fourth request got in
        db.rpush("go", 1, 1, 1)
        results = [future.result(TIMEOUT)[0] for future in futures]
    assert Counter(results) == {200: 3, 429: 17}
    assert db.keys("gatekeeper:*slots*") == []  # every slot given back
    assert [fetch(port, "/slow")[0] for _ in range(4)] == [200] * 4


@pytest.mark.redis
def test_twenty_slow_logins_at_once_on_gunicorn_admit_five(redis_processes: Any) -> None:
    port, db = redis_processes(workers=6, concurrency=1, lease=300)  # six in views at once
    with ThreadPoolExecutor(20) as pool:
        futures = [pool.submit(fetch, port, "/login?hold=1") for _ in range(20)]
        holders = [db.blpop(["entered"], timeout=TIMEOUT) for _ in range(5)]
        assert all(holders)
        assert first_refused(futures, 15) == [429] * 15
        assert db.llen("entered") == 0  # no sixth request got in
        db.rpush("go", *[1] * 5)
        results = [future.result(TIMEOUT)[0] for future in futures]
    assert Counter(results) == {401: 5, 429: 15}
    assert fetch(port, "/login")[0] == 429  # the five were counted


@pytest.mark.redis
def test_a_worker_killed_holding_a_slot_gives_it_back_after_the_lease(
    redis_processes: Any,
) -> None:
    lease = 2.0
    port, db = redis_processes(workers=2, concurrency=1, lease=lease)
    with ThreadPoolExecutor(1) as pool:
        lost = pool.submit(fetch, port, "/slow?hold=1")
        entered = db.blpop(["entered"], timeout=TIMEOUT)
        assert entered is not None
        held_since = time.monotonic()
        os.kill(int(entered[1]), signal.SIGKILL)  # the worker dies in the view
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            lost.result(TIMEOUT)
    assert fetch(port, "/slow")[0] == 429  # nobody gave the slot back
    servers.wait_until(lambda: fetch(port, "/slow")[0] == 200, TIMEOUT, "the lease to end")
    assert time.monotonic() - held_since >= lease - 0.05
