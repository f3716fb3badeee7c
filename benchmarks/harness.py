"""The apps every benchmark measures, how they are sent requests, and the peers' worker.

Our benchmarks import it; the drivers also run it as a script, one worker per venv (ours,
and with ``-I`` Flask-Limiter's and flask-gatekeeper 1.0's under ``benchmarks/.venvs/``,
where no other module of this project can be imported). So it imports only the standard
library, Flask and Werkzeug at the top, and each peer by name inside the function that
builds it, typed ``Any`` (mypy's venv holds none of the others).

- Requests: ``app.wsgi_app(environ, start_response)`` called directly (no test client, no
  server, no network) on a copy of one prebuilt GET environ with the client's address in
  it, the body consumed and closed; ``start_response`` counts the status lines, and a run
  that got an unexpected status fails rather than measure another path.
- Peers: ``build(peer, config)`` makes the same ``GET /`` app (a view returning ``ok``)
  bare, with an empty ``before_request``, with one making a redis-py PING (``pinged``),
  or behind ours, Flask-Limiter or 1.0.0, each given the configuration it can take;
  ``build_case`` warms one up to the path a mode measures (admitted, refused, banned, on
  Redis); ``memory`` and ``flood`` measure memory. The ``-function`` peers add a route
  limit and a cost given by functions of the request (``plan_limit``, ``batch_cost``) and
  are sent ``GET /?n=2`` with ``X-Plan: pro`` (``FUNCTION_GET``). ``served`` is the same
  app behind ``ProxyFix``: the gunicorn app factory of ``load.py``.

Worker protocol: one JSON object per line on stdin (``{"cmd": "build", ...}``), one per
line on stdout in reply (``{"error": "..."}`` when the command failed); whatever the code
under test prints goes to stderr. Commands: ``hello`` (versions), ``build`` / ``run`` /
``drop`` (timed cases, by name), ``collect``, ``freeze``, ``memory``, ``flood``, ``ping``.
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
from dataclasses import dataclass, field
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
"""Where every fake clock starts (seconds; only differences matter to every peer)."""

SECONDS_PER_REQUEST = 0.25
"""How far a fake clock moves per request on the admitted path. Huge counts would admit
everything too, but then no log fills and no rule is evaluated: not the path a server
runs. So the rules stay realistic and time is faked: at one client, 4 requests per
simulated second, well inside 20 per 1 s and 100 per 10 s, so every rule is evaluated and
admits. Peers read the clock a different number of times per request (``calibrate``):
each reading moves it on by this divided by the peer's readings per request, so every
peer sees the same traffic. The clocks are ``itertools.count(...).__next__``, a C call
like ``time.time``: they cost what the production clock costs."""

WARM_UP_ONE_CLIENT = 500
"""Requests sent to a one-client case before timing: every log reaches its steady state."""

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
"""Every status line seen by ``start_response`` since the last ``take_statuses``."""


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
    """Fail loudly when requests got another status: the numbers would measure another path."""
    seen = take_statuses()
    if set(seen) - {status}:
        raise RuntimeError(f"{what}: expected only {status!r}, got {seen}")


def client_ip(number: int) -> str:
    """The number-th distinct client address, from 10.0.0.1 on (a new string each call)."""
    number += 1
    return f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}"


GET: WSGIEnvironment = EnvironBuilder(path="/", method="GET").get_environ()
"""The environ every request copies. The copies share its empty ``wsgi.input``, which is
fine for GET requests without a body: nothing reads it."""


def serve(
    wsgi: WSGIApplication,
    clients: Iterable[str],
    base: WSGIEnvironment = GET,
    where: str = "REMOTE_ADDR",
) -> None:
    """One request per client: a copy of ``base`` (Flask stores the request object in
    it) with the client's address in ``where``; the body consumed and closed."""
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


@dataclass
class Built:
    """A peer's app, ready to serve."""

    app: Flask
    fill: Optional[Callable[[Sequence[str]], None]] = None
    """Brings every (already tracked) client's log to its steady state, a full ring of
    timestamps, through the peer's own data structures (through Flask it would take
    minutes at 100 000 clients); None where there is nothing to fill."""
    ban: Optional[Callable[[str], None]] = None
    """Bans a client, where the peer can."""
    environ: WSGIEnvironment = field(default_factory=lambda: GET)
    """The environ its requests copy (``FUNCTION_GET`` for the ``-function`` peers)."""


PRO_LIMIT, FREE_LIMIT = "1000/minute", "100/minute"
"""The route's limit for a client whose ``X-Plan`` header says ``pro``, and otherwise."""

FUNCTION_GET: WSGIEnvironment = EnvironBuilder(
    path="/", method="GET", query_string={"n": "2"}, headers=[("X-Plan", "pro")]
).get_environ()
"""What the ``-function`` peers are sent: a pro client's request that costs 2. At one
client, 4 requests per simulated second cost 480 a minute: within ``PRO_LIMIT``."""


def plan_limit() -> str:
    """The route's limit for this request, from its headers (both peers take this string)."""
    return PRO_LIMIT if request.headers.get("X-Plan") == "pro" else FREE_LIMIT


def batch_cost() -> int:
    """What this request counts as in the route's limit: its ``n`` query argument."""
    return int(request.args.get("n", "1"))


def function_view() -> Callable[[], str]:
    """A fresh view for each app (the peers' decorators mark or register the function)."""

    def index() -> str:
        return "ok"

    return index


def ours_scopes(rules: Iterable[dict[str, Any]]) -> Any:
    """The scopes our extension builds for global ``rules``, to call a storage directly."""
    gatekeeper: Any = importlib.import_module("flask_gatekeeper")
    policy: Any = importlib.import_module("flask_gatekeeper.policy")
    return (policy.Scope.of(policy.GLOBAL_SCOPE, tuple(gatekeeper.Rule(**r) for r in rules)),)


def build_hook(config: Config) -> Built:
    """The floor of any ``before_request`` extension: Flask calling one that does nothing."""
    app = new_app("hook")
    app.before_request(lambda: None)
    return Built(app)


def build_pinged(config: Config) -> Built:
    """The floor of any limiter that asks Redis once per request: a ``before_request``
    that makes one redis-py PING to ``config.storage`` (a ``redis://`` URL)."""
    redis: Any = importlib.import_module("redis")
    client = redis.Redis.from_url(config.storage)
    app = new_app("pinged")

    @app.before_request
    def ping() -> None:
        client.ping()

    return Built(app)


def build_ours(config: Config, function: bool = False) -> Built:
    """Ours; with ``function``, ``GET /`` also under ``gk.specific(plan_limit,
    cost=batch_cost)``, and the memory bound doubled: it counts logs, and each client
    then has two (the global rules' and the route's)."""
    gatekeeper: Any = importlib.import_module("flask_gatekeeper")
    app = Flask("ours-function") if function else new_app("ours")
    storage: Any = config.storage
    if storage == "memory":  # the default clock unless a fake one is given
        options: dict[str, Any] = {} if config.clock is None else {"clock": config.clock}
        if function:
            default = importlib.import_module("flask_gatekeeper.storage").DEFAULT_MAX_CLIENTS
            options["max_clients"] = 2 * default
        storage = gatekeeper.MemoryStorage(**options)
    gk = gatekeeper.GateKeeper(
        app, ban_rule=config.ban_rule, rate_limit_rules=config.rules, storage=storage
    )
    if function:
        app.add_url_rule("/", view_func=gk.specific(plan_limit, cost=batch_cost)(function_view()))

    def fill(clients: Sequence[str]) -> None:
        """``RING_DEPTH - 1`` more requests per client, through the storage."""
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
    return Built(app, fill if config.storage == "memory" else None, ban, environ)


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

    def ban(client: str) -> None:
        """Enough reports to ban: 1.0.0 bans at the client's next request (``report``
        counts only for a client it tracks, which ``_create`` makes it)."""
        gk._create(client)
        for _ in range(config.ban_rule["count"]):
            gk.report(ip=client)

    return Built(app, fill, ban)


def build_limiter(config: Config, strategy: str, function: bool = False) -> Built:
    """Flask-Limiter with ``limits``; it has no ban rule. Its memory storage reads
    ``time.time()`` in ``limits.storage.memory``, in requests and in its expiry thread.
    With ``function``, ``GET /`` also under ``limiter.limit(plan_limit, cost=batch_cost,
    override_defaults=False)``: the default limits keep applying there, as ours' global
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
    """The app ``load.py`` serves behind gunicorn, as an app factory
    (``gunicorn 'harness:served("ours")'``): ``build``'s app for ``peer`` with the shared
    rules on its real clock and ``storage``, behind werkzeug's ``ProxyFix(x_for=1)``, so
    that for every peer alike the client is the ``X-Forwarded-For`` value the load
    generator sends (a deployment behind one proxy)."""
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
    """A warmed-up case, and what the driver may want to state about it.

    ``admitted``: a fake clock advancing with every reading (see SECONDS_PER_REQUEST),
    every client tracked and its log full; ``refused``: one client over its limit under
    a frozen clock; ``banned``: one banned client under a frozen clock; ``redis``: the
    real clocks (Redis's and the peer's), every client seen. ``accept``: the requests'
    ``Accept`` header (none by default).
    """
    facts: Reply = {}
    addresses = [client_ip(number) for number in range(clients)]
    clock: Optional[Clock] = None
    if mode == "admitted" and peer not in CLOCKLESS:
        readings = calibrate(peer, config)
        facts["clock_readings_per_request"] = readings
        clock = itertools.count(START, SECONDS_PER_REQUEST / max(readings, 1.0)).__next__
    elif mode in ("refused", "banned"):
        clock = itertools.repeat(START).__next__
    built = build(peer, Config(config.rules, config.ban_rule, config.storage, clock))
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
    """One request from each client, the collector on (as in a server), each address
    string built afresh while tracing, as a server builds it: a peer that keeps the
    string as its key is charged for it."""
    serve(wsgi, (client_ip(number) for number in clients))


def memory(peer: str, clients: int, config: Config, after: Sequence[int]) -> Reply:
    """Traced memory growth per client once each of ``clients`` made ``after[i]`` requests.

    The clock moves 0.1 µs per reading: every request of a burst of 20 stays in every
    window and is admitted (the state right after a client's burst), and every reading is
    a new float, as ``time.time()`` returns (a frozen clock would hand the peers that keep
    float objects one shared float, and hide their cost).
    """
    clock = itertools.count(START, 1e-7).__next__
    wsgi = build(peer, Config(config.rules, config.ban_rule, "memory", clock)).app.wsgi_app
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
    peer: str, config: Config, clients: int, every: int, ceiling: int, budget: Optional[float]
) -> Reply:
    """Distinct clients, one request each, on the peer's real clock and default storage
    bound: RSS and traced memory every ``every`` clients, until ``clients``, or until RSS
    passes ``ceiling`` bytes or ``budget`` seconds have passed (checked every tenth of
    ``every``, with a last point where it stopped)."""
    wsgi = build(peer, Config(config.rules, config.ban_rule)).app.wsgi_app
    send_each(wsgi, range(clients, clients + 1))
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
            send_each(wsgi, range(first, done))
            expect_only(OK, "flood: a new client")
            elapsed = time.perf_counter() - started
            if rss() > ceiling:
                stopped = "memory ceiling"
            elif budget is not None and elapsed > budget and done < clients:
                stopped = "time budget"
            if done % every == 0 or done == clients or stopped != "finished":
                point = {"clients": done, "rss": rss(), "traced": traced_now() - base}
                points.append({**point, "seconds": elapsed})
            if stopped != "finished":
                break
    finally:
        tracemalloc.stop()
    settle()
    return {"points": points, "stopped": stopped}


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
    """This interpreter's version and those of the packages it has (``PACKAGES``, ``extra``)."""
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
            request["config"] = Config(
                request.pop("rules"), request.pop("ban_rule"), request.pop("storage", "memory")
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
