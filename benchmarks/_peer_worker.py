"""The worker of ``benchmarks/peers.py``: runs inside one peer's venv and obeys the driver.

Each venv gets one long-lived worker (the driver starts it as ``<venv>/bin/python -I
_peer_worker.py``), so that the driver can interleave the peers round by round (A B A B ...)
although they cannot share a process: flask-gatekeeper 1.0.0 has our module name.

Protocol: one JSON object per line on stdin (``{"cmd": "build", ...}``), one JSON object per
line on stdout in reply (``{"error": "..."}`` when the command failed). Anything else the
code under test prints goes to stderr. Commands:

- ``hello``: the Python and package versions of this venv.
- ``build``: build one case (a peer's app, a mode, a number of clients) and warm it up;
  ``run``: send it ``requests`` requests and return the elapsed nanoseconds; ``drop``.
- ``collect``: a full garbage collection (between rounds); ``freeze``: ``gc.freeze()``.
- ``memory``: traced memory per client after each client made 1 and 20 requests.
- ``flood``: RSS and traced memory while distinct clients keep arriving.

The peers are imported by name inside functions (``importlib``), typed ``Any``: each venv
holds only its own, and the driver's venv (where mypy runs) holds none of the others.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import itertools
import json
import os
import platform
import sys
import threading
import time
import traceback
import tracemalloc
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Optional

from flask import Flask
from werkzeug.test import EnvironBuilder

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

Clock = Callable[[], float]
Reply = dict[str, Any]

START = 1000.0
"""Where every fake clock starts (seconds; only differences matter to every peer)."""

SECONDS_PER_REQUEST = 0.25
"""How far a fake clock moves per request on the admitted path: at one client, 4 requests
per simulated second, well inside 20 per 1 s and 100 per 10 s, so every request is
admitted while every rule is evaluated. Peers read the clock a different number of times
per request (measured by ``calibrate``): each reading moves it on by this divided by the
peer's readings per request, so every peer sees the same traffic."""

WARM_UP_ONE_CLIENT = 500
"""Requests sent to a one-client case before timing: every log reaches its steady state."""

PACKAGES = ("flask", "werkzeug", "flask-gatekeeper", "flask-limiter", "limits", "redis")

OK, TOO_MANY = "200 OK", "429 TOO MANY REQUESTS"

_time = SimpleNamespace(time=time.time)
"""Stands for the ``time`` module inside the peers that read ``time.time()`` (Flask-Limiter's
memory storage in ``limits``, flask-gatekeeper 1.0): the case about to run puts its clock
here. A module attribute lookup either way, so it costs what ``time.time`` costs."""


def use_clock(clock: Clock) -> None:
    """Make ``clock`` the one the patched peers read, once every expiry sweep that
    Flask-Limiter's memory storages scheduled (``threading.Timer`` threads, 10 ms after a
    request) has run: each sweep then reads the clock of the case whose requests set it."""
    settle()
    _time.time = clock


def settle() -> None:
    """Wait for every pending ``threading.Timer`` (only Flask-Limiter's expiry sweeps)."""
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            thread.join()


def patch_time(module_name: str) -> None:
    """Make ``module_name`` read ``_time.time`` wherever it calls ``time.time()``."""
    module: Any = importlib.import_module(module_name)
    module.time = _time


# -- WSGI plumbing (as in overhead.py) -------------------------------------------------------


def index() -> str:
    return "ok"


def new_app(name: str) -> Flask:
    app = Flask(name)
    app.add_url_rule("/", view_func=index)
    return app


def _write(data: bytes) -> None:
    """The ``write`` callable of ``start_response``; Flask never calls it."""


_statuses: dict[str, int] = {}
"""Every status line seen by ``start_response`` since the last ``take_statuses``."""


def start_response(
    status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None, /
) -> Callable[[bytes], object]:
    _statuses[status] = _statuses.get(status, 0) + 1
    return _write


def take_statuses() -> dict[str, int]:
    seen = dict(_statuses)
    _statuses.clear()
    return seen


def expect_only(status: str, what: str) -> None:
    """Fail loudly when requests got another status: the numbers would measure another path."""
    seen = take_statuses()
    if set(seen) - {status}:
        raise RuntimeError(f"{what}: expected only {status!r}, got {seen}")


def client_ip(number: int) -> str:
    """The number-th distinct client address, from 10.0.0.1 on (a new string each call)."""
    number += 1
    return f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}"


_BASE_ENVIRON: WSGIEnvironment = EnvironBuilder(path="/", method="GET").get_environ()


def environ_for(number: int) -> WSGIEnvironment:
    """A GET environ for client ``number``; they share the base's empty ``wsgi.input``,
    which is fine for GET requests without a body: nothing reads it."""
    return dict(_BASE_ENVIRON, REMOTE_ADDR=client_ip(number))


def serve(wsgi: WSGIApplication, environs: Iterable[WSGIEnvironment]) -> None:
    """Send one request per environ, consuming and closing each response.

    Each call gets a fresh copy of its environ: Flask stores the request object in it
    (a reference cycle, left to the garbage collector).
    """
    for environ in environs:
        body = wsgi(dict(environ), start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()


def run_requests(wsgi: WSGIApplication, environs: Iterable[WSGIEnvironment], count: int) -> int:
    """Send ``count`` requests with no garbage collection among them; return elapsed ns."""
    requests = itertools.islice(environs, count)
    gc.disable()
    try:
        start = time.perf_counter_ns()
        serve(wsgi, requests)
        return time.perf_counter_ns() - start
    finally:
        gc.enable()


# -- the peers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """The equivalent configuration every peer gets, as far as it has each part."""

    rules: list[dict[str, int]]
    ban_rule: dict[str, int]
    storage: str
    """``memory`` or a ``redis://`` URL."""
    clock: Optional[Clock]
    """A fake clock (memory storages only), or None for the peer's real one."""


@dataclass
class Built:
    """A peer's app, ready to serve."""

    wsgi: WSGIApplication
    fill: Optional[Callable[[Sequence[str]], None]] = None
    """Brings every (already tracked) client's log to its steady state, a full ring of
    timestamps, through the peer's own data structures (through Flask it would take
    minutes at 100 000 clients); None where there is nothing to fill."""


def build_bare(config: Config) -> Built:
    return Built(new_app("bare").wsgi_app)


def build_ours(config: Config) -> Built:
    gatekeeper: Any = importlib.import_module("flask_gatekeeper")
    app = new_app("ours")
    storage: Any
    if config.storage != "memory":
        storage = config.storage
    elif config.clock is None:
        storage = gatekeeper.MemoryStorage()
    else:
        storage = gatekeeper.MemoryStorage(clock=config.clock)
    gatekeeper.GateKeeper(
        app, ban_rule=config.ban_rule, rate_limit_rules=config.rules, storage=storage
    )
    if config.storage != "memory":
        return Built(app.wsgi_app)

    def fill(clients: Sequence[str]) -> None:
        """As ``overhead.fill_rings``: the storage with the scope the extension builds."""
        policy: Any = importlib.import_module("flask_gatekeeper.policy")
        rules = tuple(gatekeeper.Rule(**rule) for rule in config.rules)
        scopes = (policy.Scope.of(policy.GLOBAL_SCOPE, rules),)
        for _ in range(max(rule["count"] for rule in config.rules) - 1):
            for client in clients:
                if not storage.hit(client, scopes).admitted:
                    raise RuntimeError("the ring fill was refused")

    return Built(app.wsgi_app, fill)


def build_original(config: Config) -> Built:
    """flask-gatekeeper 1.0.0: a dict of per-IP deques, read with ``time.time()``."""
    if config.storage != "memory":
        raise ValueError("flask-gatekeeper 1.0.0 has no Redis storage")
    found = importlib.import_module("flask_gatekeeper").__version__
    if found != "1.0.0":
        raise RuntimeError(f"expected flask-gatekeeper 1.0.0 in this venv, found {found}")
    module: Any = importlib.import_module("flask_gatekeeper.gatekeeper")
    if config.clock is not None:
        patch_time("flask_gatekeeper.gatekeeper")
    app = new_app("original")
    gk = module.GateKeeper(app, ban_rule=config.ban_rule, rate_limit_rules=config.rules)

    def fill(clients: Sequence[str]) -> None:
        """Each deque full (its maxlen, the largest count) of timestamps older than every
        window: every request then filters all of them, as on a long-running server."""
        for client in clients:
            entries = gk.ips[client].rate_entries
            old = entries[0] - 10_000.0
            entries.extendleft(old - step for step in range(entries.maxlen - len(entries)))

    return Built(app.wsgi_app, fill)


def limit_strings(rules: Sequence[dict[str, int]]) -> list[str]:
    """The rules in Flask-Limiter's notation: ``"20 per 1 second"``."""
    return [
        f"{rule['count']} per {rule['window']} second{'s' if rule['window'] != 1 else ''}"
        for rule in rules
    ]


def build_limiter(config: Config, strategy: str) -> Built:
    """Flask-Limiter with ``limits``; it has no ban rule. Its memory storage reads
    ``time.time()`` in ``limits.storage.memory``, in requests and in its expiry thread."""
    flask_limiter: Any = importlib.import_module("flask_limiter")
    util: Any = importlib.import_module("flask_limiter.util")
    if config.storage == "memory":
        uri = "memory://"
        if config.clock is not None:
            patch_time("limits.storage.memory")
    else:
        uri = config.storage
    app = new_app(f"limiter-{strategy}")
    flask_limiter.Limiter(
        util.get_remote_address,
        app=app,
        default_limits=limit_strings(config.rules),
        storage_uri=uri,
        strategy=strategy,
    )
    return Built(app.wsgi_app)


BUILDERS: dict[str, Callable[[Config], Built]] = {
    "bare": build_bare,
    "ours": build_ours,
    "original": build_original,
    "limiter-moving": lambda config: build_limiter(config, "moving-window"),
    "limiter-fixed": lambda config: build_limiter(config, "fixed-window"),
}


def build(peer: str, config: Config) -> Built:
    if config.clock is not None:
        use_clock(config.clock)  # the warm-up requests already read it
    return BUILDERS[peer](config)


# -- cases -------------------------------------------------------------------------------------


@dataclass
class Case:
    """One built configuration and the endless round-robin of clients it is sent."""

    wsgi: WSGIApplication
    environs: Iterator[WSGIEnvironment]
    status: str
    clock: Optional[Clock]

    def run(self, requests: int) -> int:
        if self.clock is not None:
            use_clock(self.clock)
        elapsed = run_requests(self.wsgi, self.environs, requests)
        settle()  # a sweep still running would steal the next case's time, in any process
        expect_only(self.status, "timed requests")
        return elapsed


class CountingClock:
    """A clock that counts its readings (for ``calibrate`` only: a Python call is slower
    than the C-level clocks the timed cases use)."""

    def __init__(self, step: float) -> None:
        self.step = step
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return START + self.reads * self.step


_readings: dict[str, float] = {}


def calibrate(peer: str, config: Config) -> float:
    """How many times the peer reads its clock per admitted request at one client."""
    if peer not in _readings:
        clock = CountingClock(SECONDS_PER_REQUEST)  # at most 4 requests a second: admitted
        built = build(peer, Config(config.rules, config.ban_rule, "memory", clock))
        environs = itertools.repeat(environ_for(0))
        run_requests(built.wsgi, environs, WARM_UP_ONE_CLIENT)
        before = clock.reads  # time never goes back: the logs hold its readings
        run_requests(built.wsgi, environs, 1000)
        expect_only(OK, f"calibrating {peer}")
        _readings[peer] = (clock.reads - before) / 1000
    return _readings[peer]


def build_case(
    peer: str, mode: str, clients: int, config: Config
) -> tuple[Case, dict[str, object]]:
    """A warmed-up case, and what the driver may want to state about it.

    ``admitted``: a fake clock advancing with every reading (see SECONDS_PER_REQUEST),
    every client tracked and its log full; ``refused``: one client over its limit under
    a frozen clock; ``redis``: the real clocks (Redis's and the peer's), every client seen.
    """
    facts: dict[str, object] = {}
    environs = [environ_for(number) for number in range(clients)]
    clock: Optional[Clock] = None
    if mode == "admitted" and peer != "bare":
        readings = calibrate(peer, config)
        facts["clock_readings_per_request"] = readings
        clock = itertools.count(START, SECONDS_PER_REQUEST / max(readings, 1.0)).__next__
    elif mode == "refused":
        clock = itertools.repeat(START).__next__
    built = build(peer, Config(config.rules, config.ban_rule, config.storage, clock))
    status = OK
    if mode == "refused":
        limit = min(rule["count"] for rule in config.rules)
        run_requests(built.wsgi, itertools.cycle(environs), limit + 1)
        seen = take_statuses()
        if seen != {OK: limit, TOO_MANY: 1}:
            raise RuntimeError(f"filling the refused client's rule: got {seen}")
        status = TOO_MANY
    elif clients == 1:
        serve(built.wsgi, itertools.repeat(environs[0], WARM_UP_ONE_CLIENT))
        expect_only(OK, "warm-up")
    else:
        serve(built.wsgi, environs)
        expect_only(OK, f"warm-up of {clients} clients")
        if built.fill is not None and mode == "admitted":
            built.fill([environ["REMOTE_ADDR"] for environ in environs])
            facts["logs_filled"] = True
    return Case(built.wsgi, itertools.cycle(environs), status, clock), facts


# -- memory --------------------------------------------------------------------------------------


def traced_now() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def rss() -> int:
    """This process's resident set size in bytes (Linux; elsewhere its peak)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def send_each(wsgi: WSGIApplication, clients: range) -> None:
    """One request from each client, the collector on (as in a server), each environ and
    its REMOTE_ADDR string built afresh while tracing, as a server builds them: a peer that
    keeps the string as its key is charged for it."""
    serve(wsgi, (environ_for(number) for number in clients))


def memory(peer: str, clients: int, config: Config, after: Sequence[int]) -> Reply:
    """Traced memory growth per client once each of ``clients`` made ``after[i]`` requests.

    The clock moves 0.1 µs per reading: every request of a burst of 20 stays in every
    window and is admitted (the state right after a client's burst), and every reading is
    a new float, as ``time.time()`` returns (a frozen clock would hand the peers that keep
    float objects one shared float, and hide their cost).
    """
    clock = itertools.count(START, 1e-7).__next__
    built = build(peer, Config(config.rules, config.ban_rule, "memory", clock))
    send_each(built.wsgi, range(clients, clients + 1))  # lazy setup, off the books
    expect_only(OK, "memory warm-up")
    tracemalloc.start()
    try:
        base = traced_now()
        per_client: dict[str, float] = {}
        made = 0
        for target in after:
            while made < target:
                send_each(built.wsgi, range(clients))
                made += 1
            expect_only(OK, f"{clients} clients x {made} requests")
            per_client[str(target)] = (traced_now() - base) / clients
    finally:
        tracemalloc.stop()
    settle()
    return {"bytes_per_client": per_client}


def flood(
    peer: str, config: Config, clients: int, every: int, ceiling: int, budget: Optional[float]
) -> Reply:
    """Distinct clients, one request each, on the peer's real clock and default storage
    bound: RSS and traced memory every ``every`` clients, until ``clients``, or until RSS
    passes ``ceiling`` bytes or ``budget`` seconds have passed (checked every tenth of
    ``every``, with a last point where it stopped)."""
    built = build(peer, Config(config.rules, config.ban_rule, "memory", None))
    send_each(built.wsgi, range(clients, clients + 1))
    expect_only(OK, "flood warm-up")
    points: list[dict[str, float]] = [{"clients": 0, "rss": rss(), "traced": 0, "seconds": 0.0}]
    step = max(every // 10, 1)
    stopped = "finished"
    tracemalloc.start()
    try:
        base = traced_now()
        started = time.perf_counter()
        for first in range(0, clients, step):
            done = min(first + step, clients)
            send_each(built.wsgi, range(first, done))
            seen = take_statuses()
            if set(seen) - {OK}:
                raise RuntimeError(f"flood: a new client was refused: {seen}")
            elapsed = time.perf_counter() - started
            if rss() > ceiling:
                stopped = "memory ceiling"
            elif budget is not None and elapsed > budget and done < clients:
                stopped = "time budget"
            if done % every == 0 or done == clients or stopped != "finished":
                points.append(
                    {
                        "clients": done,
                        "rss": rss(),
                        "traced": traced_now() - base,
                        "seconds": elapsed,
                    }
                )
            if stopped != "finished":
                break
    finally:
        tracemalloc.stop()
    settle()
    return {"points": points, "stopped": stopped}


def ping(url: str, count: int) -> int:
    """Elapsed ns for ``count`` redis-py PINGs: the floor of one round trip from Python."""
    redis: Any = importlib.import_module("redis")
    client = redis.Redis.from_url(url)
    client.ping()
    start = time.perf_counter_ns()
    for _ in range(count):
        client.ping()
    elapsed = time.perf_counter_ns() - start
    client.close()
    return elapsed


# -- the command loop ------------------------------------------------------------------------------


def versions() -> Reply:
    found: dict[str, str] = {}
    for package in PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    return {"python": platform.python_version(), "packages": found}


class Worker:
    """The commands, and the cases built so far in this process."""

    def __init__(self) -> None:
        self.cases: dict[str, Case] = {}

    def handle(self, request: dict[str, Any]) -> Reply:
        command = request["cmd"]
        config = None
        if "rules" in request:
            config = Config(
                request["rules"], request["ban_rule"], request.get("storage", "memory"), None
            )
        if command == "hello":
            return versions()
        if command == "build":
            assert config is not None
            case, facts = build_case(request["peer"], request["mode"], request["clients"], config)
            self.cases[request["case"]] = case
            return {"facts": facts}
        if command == "run":
            return {"ns": self.cases[request["case"]].run(request["requests"])}
        if command == "drop":
            self.cases.clear()
            gc.collect()
            return {}
        if command == "collect":
            gc.collect()
            return {}
        if command == "freeze":
            gc.collect()
            gc.freeze()
            return {}
        if command == "ping":
            return {"ns": ping(request["url"], request["count"])}
        if command == "memory":
            assert config is not None
            return memory(request["peer"], request["clients"], config, request["after"])
        if command == "flood":
            assert config is not None
            return flood(
                request["peer"],
                config,
                request["clients"],
                request["every"],
                request["ceiling"],
                request["budget"],
            )
        raise ValueError(f"unknown command {command!r}")


def main() -> None:
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints go to stderr
    worker = Worker()
    for line in sys.stdin:
        request = json.loads(line)
        if request["cmd"] == "quit":
            break
        try:
            reply = worker.handle(request)
        except Exception:
            reply = {"error": traceback.format_exc()}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
