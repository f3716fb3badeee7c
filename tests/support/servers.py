"""Apps served over real HTTP on a loopback port: in a thread of the test's process
(``serving``), or in their own process group (``ServerProcess``: gunicorn, or werkzeug
through ``flask run``), and requests to them over a new connection each (``fetch``).

Every wait is bounded: a server that does not come up fails the test with its log.
"""

from __future__ import annotations

import http.client
import json as jsonlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from email.message import Message
from pathlib import Path
from typing import Callable, NamedTuple, Optional
from urllib.parse import urlsplit

from flask import Flask
from werkzeug.serving import make_server

HOST = "127.0.0.1"
CLUSTER_BUS_OFFSET = 10_000
"""A Redis Cluster node also listens on its port + 10000 (the cluster bus)."""
TIMEOUT = 10.0
"""Seconds one request, or a server's stop, may take."""
START_TIMEOUT = 30.0
"""Seconds a server process may take to answer (gunicorn boots its workers first)."""


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(*, with_cluster_bus: bool = False) -> int:
    """A loopback port nobody listens on now (and its cluster bus port, when asked)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((HOST, 0))
            port: int = probe.getsockname()[1]
        if not with_cluster_bus:
            return port
        bus = port + CLUSTER_BUS_OFFSET
        if bus < 65_536 and _port_is_free(bus):
            return port
    raise RuntimeError("no free loopback port found")


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@contextmanager
def serving(app: Flask) -> Iterator[int]:
    """``app`` on a threaded werkzeug server on a free loopback port: the port."""
    server = make_server(HOST, 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=TIMEOUT)


class Reply(NamedTuple):
    """What a server answered, and on which port (when a test spreads over several)."""

    status: int
    headers: Message
    body: str
    port: int


def fetch(
    url: str,
    ip: Optional[str] = None,
    json: Optional[object] = None,
    *,
    method: Optional[str] = None,
    ip_header: str = "X-Forwarded-For",
) -> Reply:
    """One request over a new connection (no proxy from the environment in between), from
    client ``ip`` in ``ip_header`` when one is given, with a JSON body when ``json`` is
    given (then a POST unless ``method`` says otherwise)."""
    parts = urlsplit(url)
    headers = {} if ip is None else {ip_header: ip}
    body = None
    if json is not None:
        body = jsonlib.dumps(json).encode()
        headers["Content-Type"] = "application/json"
    method = method or ("GET" if json is None else "POST")
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    port = parts.port or 80
    connection = http.client.HTTPConnection(parts.hostname or HOST, port, timeout=TIMEOUT)
    try:
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read().decode(), port)
    finally:
        connection.close()


def absolute_pythonpath(env: Mapping[str, str]) -> str:
    """``PYTHONPATH`` with every entry absolute: the server runs in another directory, and
    ``PYTHONPATH=src`` there would import some other copy of the package."""
    paths = env.get("PYTHONPATH", "").split(os.pathsep)
    return os.pathsep.join(str(Path(path).resolve()) for path in paths if path)


class ServerProcess:
    """An app server in its own process group, its output in a log file of ``directory``.

    It is up once it answers HTTP (any status: ``/health`` by default) and gunicorn booted
    its ``workers``. ``stop`` signals the whole group (the master and its workers).
    """

    def __init__(
        self,
        command: list[str],
        directory: Path,
        *,
        port: int,
        env: Optional[Mapping[str, str]] = None,
        workers: int = 0,
        probe: str = "/health",
    ) -> None:
        self.command = command
        self.directory = directory
        self.port = port
        self.env = {**os.environ, **(env or {})}
        self.env["PYTHONPATH"] = absolute_pythonpath(self.env)
        self.workers = workers
        self.probe = probe
        self.log_path = directory / f"server-{port}.log"
        self.process: Optional[subprocess.Popen[bytes]] = None

    @classmethod
    def gunicorn(
        cls,
        directory: Path,
        module: str = "gk_app",
        *,
        workers: int,
        options: tuple[str, ...] = (),
        env: Optional[Mapping[str, str]] = None,
        probe: str = "/health",
    ) -> ServerProcess:
        """``module:app`` of ``directory`` on gunicorn with ``workers`` workers."""
        port = free_port()
        command = [sys.executable, "-m", "gunicorn", *options, "-w", str(workers)]
        command += ["-b", f"{HOST}:{port}", "--chdir", str(directory), f"{module}:app"]
        return cls(command, directory, port=port, env=env, workers=workers, probe=probe)

    @classmethod
    def werkzeug(
        cls,
        directory: Path,
        module: str = "gk_app",
        *,
        env: Optional[Mapping[str, str]] = None,
        probe: str = "/health",
    ) -> ServerProcess:
        """``module:app`` of ``directory`` on werkzeug's threaded server (``flask run``)."""
        port = free_port()
        command = [sys.executable, "-m", "flask", "--app", module, "run"]
        command += ["--host", HOST, "--port", str(port), "--with-threads"]
        return cls(command, directory, port=port, env=env, probe=probe)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.command} exited:\n{self.log[-3000:]}")
        try:
            fetch(self.url + self.probe)
        except OSError:
            return False
        return self.log.count("Booting worker with pid") >= self.workers

    def start(self) -> None:
        """Start the server (again, on the same port) and wait until it answers."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.directory,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until(self._ready, START_TIMEOUT, f"{self.command[2]} on port {self.port}")
        except BaseException:
            self.stop()
            raise

    def stop(self, how: signal.Signals = signal.SIGTERM) -> None:
        """Send ``how`` to the whole process group (SIGTERM: a graceful stop) and wait for
        it to exit; SIGKILL when it does not."""
        process, self.process = self.process, None
        if process is None:
            return
        try:
            os.killpg(process.pid, how)
            process.wait(START_TIMEOUT / 2)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(START_TIMEOUT / 2)
        except ProcessLookupError:
            process.wait(START_TIMEOUT / 2)
