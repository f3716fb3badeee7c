"""Real ``redis-server`` processes for the Redis tests: no fake Redis stands in for them.

``RedisServer`` starts one server on a free loopback port (or only a Unix socket) in its own
temporary directory, with persistence off (``--save "" --appendonly no``), waits until it
answers ``PING``, and stops it by PID. ``restart`` stops it and starts it again on the same
port, with empty data, as after a crash. ``redis_cluster`` starts three cluster nodes, joins
them with ``redis-cli --cluster create`` and waits until the cluster says it is ok.

Every wait is a bounded poll: a server that does not come up fails the test with its log.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Optional

import pytest
import redis

from support.servers import HOST, free_port, wait_until

__all__ = [
    "HOST",
    "RedisServer",
    "free_port",
    "missing_binary",
    "redis_cluster",
    "require",
    "running",
    "wait_until",
]

START_TIMEOUT = 10.0
"""Seconds a server (or a cluster) may take to answer before the test fails."""
STOP_TIMEOUT = 10.0


def missing_binary(*names: str) -> Optional[str]:
    """Why the Redis tests cannot run here, or None when every binary is on PATH."""
    missing = [name for name in names if shutil.which(name) is None]
    if not missing:
        return None
    return (
        f"{' and '.join(missing)} not found on PATH: the Redis tests need a real server "
        "(Debian/Ubuntu: apt-get install redis-server)"
    )


def require(*binaries: str) -> None:
    """Skip without the binaries, but fail under CI, which must run the Redis tests."""
    reason = missing_binary(*binaries)
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so not skipping: {reason}", pytrace=False)
    pytest.skip(reason)


class RedisServer:
    """One ``redis-server`` process; a context manager that starts and stops it.

    ``unix_socket=True`` adds a Unix socket in the server's directory; ``tcp=False`` (with a
    socket) turns TCP off, so a client can only reach it through the socket. ``password``
    starts it with ``--requirepass``: its ``url`` and ``client()`` carry the password.
    """

    def __init__(
        self,
        *,
        unix_socket: bool = False,
        tcp: bool = True,
        extra_args: Sequence[str] = (),
        with_cluster_bus: bool = False,
        password: Optional[str] = None,
    ) -> None:
        if not tcp and not unix_socket:
            raise ValueError("a server needs TCP or a Unix socket")
        self.port = free_port(with_cluster_bus=with_cluster_bus) if tcp else 0
        # A short path: Unix socket paths are limited to about 100 bytes.
        self.directory = Path(tempfile.mkdtemp(prefix="gk-redis-"))
        self.socket_path: Optional[Path] = self.directory / "redis.sock" if unix_socket else None
        self.extra_args = list(extra_args)
        self.password = password
        self.process: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        """``redis://`` URL of database 0 (with the password, if any)."""
        credentials = "" if self.password is None else f":{self.password}@"
        return f"redis://{credentials}{HOST}:{self.port}/0"

    @property
    def unix_url(self) -> str:
        """``unix://`` URL of database 0 (only with ``unix_socket=True``)."""
        if self.socket_path is None:
            raise RuntimeError("this server has no Unix socket")
        return f"unix://{self.socket_path}?db=0"

    @property
    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def client(self, **options: Any) -> redis.Redis:
        """A new client of this server (with the password, if any); the caller closes it."""
        options = {"password": self.password, **options}
        if self.port:
            return redis.Redis(host=HOST, port=self.port, **options)
        return redis.Redis(unix_socket_path=str(self.socket_path), **options)

    def _command(self) -> list[str]:
        command = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--logfile",
            str(self.directory / "redis.log"),
            "--daemonize",
            "no",
        ]
        if self.password is not None:
            command += ["--requirepass", self.password]
        if self.socket_path is not None:
            command += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        return command + self.extra_args

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"redis-server exited with {self.process.returncode}:\n{self.log[-2000:]}"
            )
        client = self.client(socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False
        finally:
            client.close()

    def start(self) -> None:
        """Start the server (again, on the same port) and wait until it answers PING."""
        if self.process is not None:
            raise RuntimeError("already running")
        self.process = subprocess.Popen(
            self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_until(self._answers, START_TIMEOUT, f"redis-server on port {self.port}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server by its PID (SIGTERM, then SIGKILL) and wait for it to exit."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(STOP_TIMEOUT)

    def restart(self) -> None:
        """Stop and start again on the same port; the data is gone (no persistence)."""
        self.stop()
        self.start()

    def __enter__(self) -> RedisServer:
        try:
            self.start()
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextmanager
def running(**options: Any) -> Iterator[RedisServer]:
    """A started ``RedisServer(**options)``; without ``redis-server``, a skip (a failure
    under CI)."""
    require("redis-server")
    with RedisServer(**options) as server:
        yield server


def _cluster_ok(node: RedisServer) -> bool:
    client = node.client(socket_timeout=1, decode_responses=True)
    try:
        info: dict[str, object] = client.cluster("INFO")
    finally:
        client.close()
    return info.get("cluster_state") == "ok"


@contextmanager
def redis_cluster(nodes: int = 3) -> Iterator[list[RedisServer]]:
    """Start ``nodes`` cluster-enabled servers (all primaries), join them, wait for ok."""
    with ExitStack() as stack:
        servers = []
        for _ in range(nodes):
            server = RedisServer(with_cluster_bus=True)
            server.extra_args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(server.directory / f"nodes-{server.port}.conf"),
                "--cluster-node-timeout",
                "5000",
            ]
            servers.append(stack.enter_context(server))
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"{HOST}:{server.port}" for server in servers),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        wait_until(
            lambda: all(_cluster_ok(server) for server in servers),
            START_TIMEOUT,
            "cluster_state:ok on every node",
        )
        yield servers
