"""The apps every benchmark measures, how they are sent requests, and the workers.

The drivers import it, and run it as a worker, one per venv: ours, and (with ``-I``)
Flask-Limiter's and flask-gatekeeper 1.0's under ``benchmarks/.venvs/``. So it imports
only the standard library, Flask and Werkzeug at the top, each peer inside its builder.

Requests call ``app.wsgi_app`` directly on a copy of one prebuilt environ (no server), the
body consumed and closed; an unexpected status fails the run rather than measure another
path. ``served`` is the same app behind ``ProxyFix``, gunicorn's app factory in ``load.py``.

Worker protocol: one JSON command per line on stdin, one JSON reply per line on stdout
(``{"error": ...}`` when it failed); what the code under test prints goes to stderr.
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
from dataclasses import dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Optional

from flask import Flask, request
from werkzeug.test import EnvironBuilder

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

Clock = Callable[[], float]
Reply = dict[str, Any]

# The rules of the design's example, given to every peer that has each part.
RATE_LIMIT_RULES = [{"count": 20, "window": 1}, {"count": 100, "window": 10}]
BAN_RULE = {"count": 3, "window": 10, "duration": 600}

START = 1000.0
"""Where every fake clock starts (seconds; only differences matter)."""
SECONDS_PER_REQUEST = 0.25
"""How far a fake clock moves per admitted request: 4 requests per simulated second at
one client, inside every rule, so each rule is evaluated and admits without sleeping. Each
reading moves it by this over the peer's readings per request (``calibrate``)."""
WARM_UP_ONE_CLIENT = 500
"""Requests sent to a one-client case before timing: every log in its steady state."""
PACKAGES = ("flask", "werkzeug", "flask-gatekeeper", "flask-limiter", "limits", "redis")
OK, TOO_MANY, FORBIDDEN = "200 OK", "429 TOO MANY REQUESTS", "403 FORBIDDEN"


# -- requests ------------------------------------------------------------------------------


def index() -> str:
    return "ok"


def new_app(name: str) -> Flask:
    app = Flask(name)
    app.add_url_rule("/", view_func=index)
    return app


def _write(data: bytes) -> None:
    """The ``write`` callable of ``start_response``; Flask never calls it."""


statuses: dict[str, int] = {}
"""Every status line seen since the last ``take_statuses``."""


def start_response(
    status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None, /
) -> Callable[[bytes], object]:
    statuses[status] = statuses.get(status, 0) + 1
    return _write


def take_statuses() -> dict[str, int]:
    seen = dict(statuses)
    statuses.clear()
    return seen


def expect_only(status: str, what: str) -> None:
    seen = take_statuses()
    if set(seen) - {status}:
        raise RuntimeError(f"{what}: expected only {status!r}, got {seen}")


def client_ip(number: int) -> str:
    """The number-th distinct client address, from 10.0.0.1 on (a new string each call)."""
    number += 1
    return f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}"


def client_address(number: int, ipv6_every: int = 0) -> str:
    """``client_ip``, but every ``ipv6_every``-th client an IPv6 address in a /64 of its own."""
    if ipv6_every and number % ipv6_every == ipv6_every - 1:
        return f"2001:db8:{number >> 16:x}:{number & 0xFFFF:x}::{number * 40503 & 0xFFFF:x}"
    return client_ip(number)


def client_key(number: int, ipv6_every: int) -> str:
    """The key ours counts ``client_address`` under (an IPv6 address: its /64)."""
    address = client_address(number, ipv6_every)
    return address.rpartition("::")[0] + "::/64" if ":" in address else address


GET: WSGIEnvironment = EnvironBuilder(path="/", method="GET").get_environ()
"""The environ every request copies (they share its empty ``wsgi.input``: nothing reads it)."""
PROXIED: WSGIEnvironment = EnvironBuilder(environ_base={"REMOTE_ADDR": "172.16.0.2"}).get_environ()
"""The same from a proxy, for ``Config.proxies``: the client goes in ``X-Forwarded-For``."""


def serve(
    wsgi: WSGIApplication,
    clients: Iterable[str],
    base: WSGIEnvironment = GET,
    where: str = "REMOTE_ADDR",
) -> None:
    """One request per client: a copy of ``base`` with the client in ``where``."""
    for client in clients:
        environ = base.copy()
        environ[where] = client
        body = wsgi(environ, start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()


def run_requests(
    wsgi: WSGIApplication, clients: Iterator[str], count: int, base: WSGIEnvironment = GET
) -> int:
    """``count`` requests from the next clients, no garbage collection among them; ns."""
    gc.disable()
    try:
        start = time.perf_counter_ns()
        serve(wsgi, itertools.islice(clients, count), base)
        return time.perf_counter_ns() - start
    finally:
        gc.enable()


# -- fake clocks for the peers that read time.time() -----------------------------------------

_time = SimpleNamespace(time=time.time)
"""The ``time`` module as the patched peers see it (``limits.storage.memory``, 1.0.0)."""


def use_clock(clock: Clock) -> None:
    """Make ``clock`` the one the patched peers read, once Flask-Limiter's pending expiry
    sweeps have run (each sweep reads the clock of the case whose requests set it)."""
    settle()
    _time.time = clock


def settle() -> None:
    """Wait for every pending ``threading.Timer`` (only Flask-Limiter's expiry sweeps)."""
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            thread.join()


def patch_time(module_name: str) -> None:
    module: Any = importlib.import_module(module_name)
    module.time = _time


# -- the peers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """The equivalent configuration every peer gets, as far as it has each part."""

    rules: list[dict[str, int]]
    ban_rule: dict[str, int]
    storage: str = "memory"
    """``memory`` or a ``redis://`` URL."""
    clock: Optional[Clock] = None
    """A fake clock (memory storages only), or None for the peer's real one."""
    max_clients: Optional[int] = None
    """Ours' memory bound, when not the default."""
    proxies: Optional[int] = None
    """Ours' ``trusted_proxies``: requests then come through ``PROXIED``."""


@dataclass
class Built:
    """A peer's app, ready to serve."""

    app: Flask
    fill: Optional[Callable[[Sequence[str]], None]] = None
    """Brings every tracked client's log to its steady state (a full ring) through the
    peer's own data structures: through Flask it would take minutes at 100 000 clients."""
    ban: Optional[Callable[[str], None]] = None
    environ: WSGIEnvironment = field(default_factory=lambda: GET)
    storage: Any = None
    """Ours' storage (its tracked logs and bans)."""


PRO_LIMIT, FREE_LIMIT = "1000/minute", "100/minute"
FUNCTION_GET: WSGIEnvironment = EnvironBuilder(
    path="/", method="GET", query_string={"n": "2"}, headers=[("X-Plan", "pro")]
).get_environ()
"""What the ``-function`` peers are sent: a pro client's request that costs 2."""


def plan_limit() -> str:
    return PRO_LIMIT if request.headers.get("X-Plan") == "pro" else FREE_LIMIT


def batch_cost() -> int:
    return int(request.args.get("n", "1"))


def function_view() -> Callable[[], str]:
    """A fresh view for each app (the peers' decorators mark or register the function)."""

    def index() -> str:
        return "ok"

    return index


def ours_scopes(rules: Iterable[dict[str, Any]]) -> Any:
    """The scopes our extension builds for global ``rules``, to call a storage directly."""
    gatekeeper: Any = importlib.import_module("flask_gatekeeper")
    plan: Any = importlib.import_module("flask_gatekeeper.storage.plan")
    decision: Any = importlib.import_module("flask_gatekeeper.decision")
    rules = tuple(gatekeeper.Rule(**rule) for rule in rules)
    return (plan.Scope.of(decision.GLOBAL_SCOPE, rules),)


def build_hook(config: Config) -> Built:
    """The floor of any ``before_request`` extension: one that does nothing."""
    app = new_app("hook")
    app.before_request(lambda: None)
    return Built(app)


def build_pinged(config: Config) -> Built:
    """The floor of a limiter that asks Redis once a request: one redis-py PING."""
    redis: Any = importlib.import_module("redis")
    client = redis.Redis.from_url(config.storage)
    app = new_app("pinged")

    @app.before_request
    def ping() -> None:
        client.ping()

    return Built(app)


def build_ours(config: Config, function: bool = False) -> Built:
    """Ours; with ``function``, ``GET /`` also under ``gk.specific(plan_limit,
    cost=batch_cost)`` and the memory bound doubled (each client then has two logs)."""
    gatekeeper: Any = importlib.import_module("flask_gatekeeper")
    app = Flask("ours-function") if function else new_app("ours")
    storage: Any = config.storage
    if storage == "memory":
        options: dict[str, Any] = {} if config.clock is None else {"clock": config.clock}
        if function or config.max_clients:
            default = importlib.import_module("flask_gatekeeper.storage").DEFAULT_MAX_CLIENTS
            options["max_clients"] = config.max_clients or 2 * default
        storage = gatekeeper.MemoryStorage(**options)
    gk = gatekeeper.GateKeeper(
        app,
        ban_rule=config.ban_rule,
        rate_limit_rules=config.rules,
        storage=storage,
        trusted_proxies=config.proxies,
    )
    if function:
        app.add_url_rule("/", view_func=gk.specific(plan_limit, cost=batch_cost)(function_view()))

    def fill(clients: Sequence[str]) -> None:
        scopes = ours_scopes(config.rules)
        for _ in range(max(rule["count"] for rule in config.rules) - 1):
            for client in clients:
                if not storage.hit(client, scopes).admitted:
                    raise RuntimeError("the ring fill was refused")

    def ban(client: str) -> None:
        with app.app_context():
            for _ in range(config.ban_rule["count"]):
                gk.report(ip=client)

    environ = FUNCTION_GET if function else GET
    memory = config.storage == "memory"
    return Built(app, fill if memory else None, ban, environ, storage if memory else None)


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
        """Each deque full of timestamps older than every window: every request then
        filters all of them, as on a long-running server."""
        for client in clients:
            entries = gk.ips[client].rate_entries
            old = entries[0] - 10_000.0
            entries.extendleft(old - step for step in range(entries.maxlen - len(entries)))

    def ban(client: str) -> None:
        """1.0.0 bans at the client's next request, and counts reports only for a client
        it tracks (``_create``)."""
        gk._create(client)
        for _ in range(config.ban_rule["count"]):
            gk.report(ip=client)

    return Built(app, fill, ban)


def build_limiter(config: Config, strategy: str, function: bool = False) -> Built:
    """Flask-Limiter (no ban rule); its memory storage reads ``time.time()``. With
    ``function``, ``GET /`` also under ``limiter.limit(plan_limit, cost=batch_cost,
    override_defaults=False)``, so its default limits keep applying, as ours' global
    rules do."""
    flask_limiter: Any = importlib.import_module("flask_limiter")
    util: Any = importlib.import_module("flask_limiter.util")
    uri = "memory://" if config.storage == "memory" else config.storage
    if config.storage == "memory" and config.clock is not None:
        patch_time("limits.storage.memory")
    name = f"limiter-{strategy}"
    app = Flask(f"{name}-function") if function else new_app(name)
    limiter = flask_limiter.Limiter(
        util.get_remote_address,
        app=app,
        default_limits=[  # "20 per 1 second"
            f"{rule['count']} per {rule['window']} second{'s' if rule['window'] != 1 else ''}"
            for rule in config.rules
        ],
        storage_uri=uri,
        strategy=strategy,
    )
    if not function:
        return Built(app)
    limit = limiter.limit(plan_limit, cost=batch_cost, override_defaults=False)
    app.add_url_rule("/", view_func=limit(function_view()))
    return Built(app, environ=FUNCTION_GET)


BUILDERS: dict[str, Callable[[Config], Built]] = {
    "bare": lambda config: Built(new_app("bare")),
    "hook": build_hook,
    "pinged": build_pinged,
    "ours": build_ours,
    "original": build_original,
    "limiter-moving": lambda config: build_limiter(config, "moving-window"),
    "limiter-fixed": lambda config: build_limiter(config, "fixed-window"),
    "ours-function": lambda config: build_ours(config, function=True),
    "limiter-moving-function": lambda config: build_limiter(config, "moving-window", True),
}
CLOCKLESS = {"bare", "hook", "pinged"}


def build(peer: str, config: Config) -> Built:
    if config.clock is not None:
        use_clock(config.clock)  # the warm-up requests already read it
    return BUILDERS[peer](config)


def served(peer: str, storage: str = "memory") -> WSGIApplication:
    """gunicorn's app factory (``harness:served("ours")``): ``peer`` with the shared rules
    on real clocks, behind ``ProxyFix(x_for=1)``, so that for every peer the client is the
    ``X-Forwarded-For`` value the load generator sends."""
    from werkzeug.middleware.proxy_fix import ProxyFix

    app = build(peer, Config(RATE_LIMIT_RULES, BAN_RULE, storage)).app
    return ProxyFix(app.wsgi_app, x_for=1)


# -- timed cases -------------------------------------------------------------------------------


@dataclass
class Case:
    """One built configuration and the endless round-robin of clients it is sent."""

    wsgi: WSGIApplication
    clients: Iterator[str]
    status: str
    clock: Optional[Clock]
    environ: WSGIEnvironment = field(default_factory=lambda: GET)

    def run(self, requests: int) -> int:
        """Elapsed ns for ``requests`` requests."""
        if self.clock is not None:
            use_clock(self.clock)
        elapsed = run_requests(self.wsgi, self.clients, requests, self.environ)
        settle()  # a sweep still running would steal the next case's time, in any process
        expect_only(self.status, "timed requests")
        return elapsed


class CountingClock:
    """A clock that counts its readings (``calibrate`` only: a Python call is slower)."""

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
        wsgi, environ = built.app.wsgi_app, built.environ
        clients = itertools.repeat(client_ip(0))
        run_requests(wsgi, clients, WARM_UP_ONE_CLIENT, environ)
        before = clock.reads  # time never goes back: the logs hold its readings
        run_requests(wsgi, clients, 1000, environ)
        expect_only(OK, f"calibrating {peer}")
        _readings[peer] = (clock.reads - before) / 1000
    return _readings[peer]


def build_case(
    peer: str, mode: str, clients: int, config: Config, accept: Optional[str] = None
) -> tuple[Case, Reply]:
    """A warmed-up case, and facts about it. ``admitted``: a fake clock advancing with
    every reading, every client tracked, its log full; ``refused``: one client over its
    limit, ``banned``: one banned client, each under a frozen clock; ``redis``: real
    clocks, every client seen. ``accept``: the requests' ``Accept`` header."""
    facts: Reply = {}
    addresses = [client_ip(number) for number in range(clients)]
    clock: Optional[Clock] = None
    if mode == "admitted" and peer not in CLOCKLESS:
        readings = calibrate(peer, config)
        facts["clock_readings_per_request"] = readings
        clock = itertools.count(START, SECONDS_PER_REQUEST / max(readings, 1.0)).__next__
    elif mode in ("refused", "banned"):
        clock = itertools.repeat(START).__next__
    built = build(peer, replace(config, clock=clock))
    wsgi, environ = built.app.wsgi_app, built.environ
    if accept is not None:
        environ = {**environ, "HTTP_ACCEPT": accept}
    status = OK
    if mode == "refused":
        limit = min(rule["count"] for rule in config.rules)
        run_requests(wsgi, itertools.cycle(addresses), limit + 1, environ)
        seen = take_statuses()
        if seen != {OK: limit, TOO_MANY: 1}:
            raise RuntimeError(f"filling the refused client's rule: got {seen}")
        status = TOO_MANY
    elif mode == "banned":
        if built.ban is None:
            raise ValueError(f"{peer} cannot ban")
        for address in addresses:
            built.ban(address)
        status = FORBIDDEN
    elif clients == 1:
        serve(wsgi, itertools.repeat(addresses[0], WARM_UP_ONE_CLIENT), environ)
        expect_only(OK, "warm-up")
    else:
        serve(wsgi, addresses, environ)
        expect_only(OK, f"warm-up of {clients} clients")
        if built.fill is not None and mode == "admitted":
            built.fill(addresses)
            facts["logs_filled"] = True
    return Case(wsgi, itertools.cycle(addresses), status, clock, environ), facts


# -- memory --------------------------------------------------------------------------------------


def traced_now() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0


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
    """One request from each client, the collector on, each address built afresh while
    tracing, as a server builds it: a peer that keeps it as its key is charged for it."""
    serve(wsgi, (client_ip(number) for number in clients))


def memory(peer: str, clients: int, config: Config, after: Sequence[int]) -> Reply:
    """Traced growth per client once each of ``clients`` made ``after[i]`` requests, on a
    clock moving 0.1 µs per reading: every request of a burst of 20 is admitted, and every
    reading is a new float, as ``time.time()`` returns."""
    clock = itertools.count(START, 1e-7).__next__
    wsgi = build(peer, replace(config, clock=clock)).app.wsgi_app
    send_each(wsgi, range(clients, clients + 1))  # lazy setup, off the books
    expect_only(OK, "memory warm-up")
    tracemalloc.start()
    try:
        base = traced_now()
        per_client: dict[str, float] = {}
        made = 0
        for target in after:
            while made < target:
                send_each(wsgi, range(clients))
                made += 1
            expect_only(OK, f"{clients} clients x {made} requests")
            per_client[str(target)] = (traced_now() - base) / clients
    finally:
        tracemalloc.stop()
    settle()
    return {"bytes_per_client": per_client}


def flood(
    peer: str,
    config: Config,
    clients: int,
    every: int,
    trace: bool = True,
    ceiling: int = 1 << 40,
    budget: Optional[float] = None,
    ipv6_every: int = 0,
    clock_step: Optional[float] = None,
    banned: Optional[str] = None,
    scale: bool = False,
) -> Reply:
    """Distinct clients (``client_address``), one request each, the collector on: a point
    every ``every`` clients (RSS, traced memory, seconds, the slice's ns, ours' tracked
    logs) until ``clients``, RSS past ``ceiling`` bytes or ``budget`` seconds (checked
    every tenth of ``every``). ``clock_step``: a fake clock (else the real one), objects
    made before the flood frozen out of the collector; ``banned``: a client banned before,
    still refused after; ``scale``: bare Flask's µs per request over ``every`` clients."""
    base, where = (PROXIED, "HTTP_X_FORWARDED_FOR") if config.proxies else (GET, "REMOTE_ADDR")

    def send(wsgi: WSGIApplication, numbers: range) -> int:
        addresses = [client_address(number, ipv6_every) for number in numbers]
        start = time.perf_counter_ns()
        serve(wsgi, addresses, base, where)
        return time.perf_counter_ns() - start

    reply: Reply = {"stopped": "finished"}
    if scale:  # it also warms the interpreter up
        reply["bare_us"] = send(new_app("bare").wsgi_app, range(every)) / every / 1000
        expect_only(OK, "bare Flask")
    clock = None if clock_step is None else itertools.count(START, clock_step).__next__
    config = replace(config, clock=clock)
    if trace:
        build(peer, config)  # its imports off the books
        tracemalloc.start()
    built = build(peer, config)
    tracked = (lambda: built.storage.tracked) if built.storage is not None else lambda: None
    if banned is not None and built.ban is not None:
        built.ban(banned)
        reply["ban_seconds"] = built.storage.banned_for(banned)
        serve(built.app.wsgi_app, [banned], base, where)
        expect_only(FORBIDDEN, "the ban before the flood")
    else:
        send(built.app.wsgi_app, range(clients, clients + 1))
        expect_only(OK, "flood warm-up")
    points: list[Reply] = [{"clients": 0, "rss": rss(), "traced": traced_now(), "ns": 0}]
    points[0].update(tracked=tracked(), seconds=0.0)
    if clock is not None:
        gc.freeze()
    step, ns = max(every // 10, 1), 0
    started = time.perf_counter()
    for first in range(0, clients, step):
        done = min(first + step, clients)
        ns += send(built.app.wsgi_app, range(first, done))
        expect_only(OK, f"flood, clients {first:,}+")
        elapsed = time.perf_counter() - started
        if rss() > ceiling:
            reply["stopped"] = "memory ceiling"
        elif budget is not None and elapsed > budget and done < clients:
            reply["stopped"] = "time budget"
        if done % every == 0 or done == clients or reply["stopped"] != "finished":
            point = {"clients": done, "tracked": tracked(), "traced": traced_now(), "rss": rss()}
            points.append({**point, "seconds": elapsed, "ns": ns})
            ns = 0
            if config.max_clients and (point["tracked"] or 0) > config.max_clients:
                raise RuntimeError(f"{point['tracked']:,} logs tracked, over the cap")
        if reply["stopped"] != "finished":
            break
    gc.unfreeze()
    if banned is not None and built.ban is not None:
        serve(built.app.wsgi_app, [banned], base, where)
        expect_only(FORBIDDEN, "the ban after the flood")
        reply["ban_left_after"] = built.storage.banned_for(banned)
        reply["bans_after"] = len(built.storage.bans())
    if clock is not None:
        reply["clock_seconds"] = clock() - START
    tracemalloc.stop()
    settle()
    return {**reply, "points": points}


def fill(clients: int, requests: int, ipv6_every: int, step: float) -> Reply:
    """Bytes per tracked log with ours' storage called directly (no Flask): ``clients``
    logs of ``requests`` each, keys as ours builds them, the clock moving ``step`` per
    reading (each request then seconds after the client's previous one: admitted)."""
    storage_module: Any = importlib.import_module("flask_gatekeeper.storage")
    scopes = ours_scopes(RATE_LIMIT_RULES)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    storage = storage_module.MemoryStorage(
        max_clients=max(clients, storage_module.DEFAULT_MAX_CLIENTS),
        clock=itertools.count(START, step).__next__,
    )
    keys = [client_key(number, ipv6_every) for number in range(clients)]
    for _ in range(requests):
        for key in keys:
            if not storage.hit(key, scopes).admitted:
                raise RuntimeError("the direct fill was refused")
    del keys  # the storage holds them
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return {"tracked": storage.tracked, "bytes_per_client": used / storage.tracked}


# -- the worker ------------------------------------------------------------------------------------


def ping(url: str, count: int) -> Reply:
    """Elapsed ns for ``count`` redis-py PINGs: the floor of one round trip from Python."""
    redis: Any = importlib.import_module("redis")
    client = redis.Redis.from_url(url)
    client.ping()
    start = time.perf_counter_ns()
    for _ in range(count):
        client.ping()
    elapsed = time.perf_counter_ns() - start
    client.close()
    return {"ns": elapsed}


def versions(extra: Sequence[str] = ()) -> Reply:
    found: dict[str, str] = {}
    for package in (*PACKAGES, *extra):
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    return {"python": platform.python_version(), "packages": found}


@dataclass
class Worker:
    """The commands, and the cases built so far in this process."""

    cases: dict[str, Case] = field(default_factory=dict)

    def handle(self, request: Reply) -> Reply:
        command = request.pop("cmd")
        if "rules" in request:
            fields = ("rules", "ban_rule", "storage", "max_clients", "proxies")
            request["config"] = Config(
                **{name: request.pop(name) for name in fields if name in request}
            )
        if command == "build":
            name = request.pop("case")
            self.cases[name], facts = build_case(**request)
            return {"facts": facts}
        if command == "run":
            return {"ns": self.cases[request["case"]].run(request["requests"])}
        if command in ("drop", "collect", "freeze"):
            if command == "drop":
                self.cases.clear()
            gc.collect()
            if command == "freeze":
                gc.freeze()
            return {}
        commands: dict[str, Callable[..., Reply]] = {
            "hello": versions,
            "memory": memory,
            "flood": flood,
            "fill": fill,
            "ping": ping,
        }
        return commands[command](**request)


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
