"""The apps every benchmark measures, the requests sent to them, and the worker running them
(a JSON command a line on stdin, a reply a line on stdout) in each venv: only the standard
library, Flask and Werkzeug are imported at the top, each peer in its builder."""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import itertools
import json
import os
import platform
import socket
import sys
import threading
import time
import traceback
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
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
Run = Callable[[int], int]  # a built case: makes that many requests (or calls); the elapsed ns
Rules = Sequence[dict[str, Any]]

# The rules of the design's example, given to every peer that has each part.
RATE_LIMIT_RULES = [{"count": 20, "window": 1}, {"count": 100, "window": 10}]
BAN_RULE = {"count": 3, "window": 10, "duration": 600}
RULES = {"ban_rule": BAN_RULE, "rate_limit_rules": RATE_LIMIT_RULES}
LARGEST = max(rule["count"] for rule in RATE_LIMIT_RULES)
START = 1000.0  # where every fake clock starts (seconds; only differences matter)
SECONDS_PER_REQUEST = 0.25  # a fake clock's step per admitted request: 4 a second, all admitted
WARM_UP_ONE_CLIENT = 500  # requests before timing one client: every log in its steady state
PACKAGES = ["flask", "werkzeug", "flask-gatekeeper", "flask-limiter", "limits", "redis"]
PACKAGES += ["hiredis", "gunicorn"]
OK, TOO_MANY, FORBIDDEN = "200 OK", "429 TOO MANY REQUESTS", "403 FORBIDDEN"
PRO_LIMIT, FREE_LIMIT = "1000/minute", "100/minute"


def function_view() -> Callable[[], str]:
    """A fresh ``GET /`` view for each app (the peers' decorators mark or register it)."""
    return lambda: "ok"


def new_app(name: str, before: Optional[Callable[[], None]] = None) -> Flask:
    app = Flask(name)
    app.add_url_rule("/", view_func=function_view())
    if before is not None:
        app.before_request(before)
    return app


statuses: Counter[str] = Counter()  # every status line seen since the last ``expect_only``


def start_response(
    status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None, /
) -> Callable[[bytes], object]:
    statuses[status] += 1
    return len  # ``write``: Flask never calls it


def expect_only(expected: dict[str, int] | str, what: str) -> None:
    """Fail unless the statuses since the last call are only ``expected`` (or these counts)."""
    seen = dict(statuses)
    statuses.clear()
    unexpected = seen != expected if isinstance(expected, dict) else set(seen) - {expected}
    if unexpected:
        raise RuntimeError(f"{what}: expected {expected!r}, got {seen}")


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
FUNCTION_GET: WSGIEnvironment = EnvironBuilder(
    path="/", method="GET", query_string={"n": "2"}, headers=[("X-Plan", "pro")]
).get_environ()
"""What the ``-function`` peers are sent: a pro client's request that costs 2."""


def serve(
    wsgi: WSGIApplication,
    clients: Iterable[str],
    base: WSGIEnvironment = GET,
    where: str = "REMOTE_ADDR",
    collect: bool = True,
) -> int:
    """One request per client (in ``where`` of a copy of ``base``); the elapsed ns."""
    if not collect:
        gc.disable()
    started = time.perf_counter_ns()
    try:
        for client in clients:
            environ = base.copy()
            environ[where] = client
            body = wsgi(environ, start_response)
            for _chunk in body:
                pass
            if hasattr(body, "close"):
                body.close()
        return time.perf_counter_ns() - started
    finally:
        gc.enable()


def calls(call: Callable[[int], object]) -> Run:
    """The ``Run`` that times ``call(0)``, ``call(1)``, ... ``call(count - 1)``."""

    def timed(count: int) -> int:
        started = time.perf_counter_ns()
        for number in range(count):
            call(number)
        return time.perf_counter_ns() - started

    return timed


_time = SimpleNamespace(time=time.time)
"""The ``time`` module as the patched peers see it (``limits.storage.memory``, 1.0.0)."""


def use_clock(clock: Clock) -> None:
    """Make ``clock`` the patched peers', once Flask-Limiter's pending expiry sweeps have run."""
    settle()
    _time.time = clock


def settle() -> None:
    """Wait for every pending ``threading.Timer`` (only Flask-Limiter's expiry sweeps)."""
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            thread.join()


@dataclass(frozen=True)
class Config:
    """What a peer gets besides the shared rules, where it has the part (a None clock: its own)."""

    storage: str = "memory"
    clock: Optional[Clock] = None
    max_clients: Optional[int] = None
    proxies: Optional[int] = None  # ours' ``trusted_proxies``: requests are then PROXIED


@dataclass
class Built:
    """A peer's app; ``fill``: logs to their steady state directly (through Flask: minutes)."""

    app: Flask
    fill: Optional[Callable[[Sequence[str]], None]] = None
    ban: Optional[Callable[[str], None]] = None
    environ: WSGIEnvironment = field(default_factory=lambda: GET)
    storage: Any = None  # ours' memory storage


def plan_limit() -> str:
    return PRO_LIMIT if request.headers.get("X-Plan") == "pro" else FREE_LIMIT


def batch_cost() -> int:
    return int(request.args.get("n", "1"))


def ours_scopes(rules: Rules) -> Any:
    """The scopes our extension builds for global ``rules``, to call a storage directly."""
    gatekeeper: Any = importlib.import_module("flask_gatekeeper")
    plan: Any = importlib.import_module("flask_gatekeeper.storage.plan")
    scope = importlib.import_module("flask_gatekeeper.decision").GLOBAL_SCOPE
    return (plan.Scope.of(scope, tuple(gatekeeper.Rule(**rule) for rule in rules)),)


def hit_all(storage: Any, keys: Sequence[str], scopes: Any, times: int, what: str) -> None:
    """``times`` rounds of one ``storage.hit`` per key, each of which must be admitted."""
    for _ in range(times):
        for key in keys:
            if not storage.hit(key, scopes).admitted:
                raise RuntimeError(f"{what} was refused")


def build_pinged(config: Config) -> Built:
    """The floor of a limiter that asks Redis once a request: one redis-py PING."""
    client = importlib.import_module("redis").Redis.from_url(config.storage)

    def ping() -> None:
        client.ping()

    return Built(new_app("pinged", ping))


def build_ours(config: Config, function: bool = False) -> Built:
    """Ours; ``function`` doubles the memory bound: each client then has two logs."""
    gatekeeper: Any = importlib.import_module("flask_gatekeeper")
    app = Flask("ours-function") if function else new_app("ours")
    storage: Any = config.storage
    memory = storage == "memory"
    if memory:
        options: dict[str, Any] = {} if config.clock is None else {"clock": config.clock}
        if function or config.max_clients:
            default = importlib.import_module("flask_gatekeeper.storage").DEFAULT_MAX_CLIENTS
            options["max_clients"] = config.max_clients or 2 * default
        storage = gatekeeper.MemoryStorage(**options)
    gk = gatekeeper.GateKeeper(app, storage=storage, trusted_proxies=config.proxies, **RULES)
    if function:
        app.add_url_rule("/", view_func=gk.specific(plan_limit, cost=batch_cost)(function_view()))

    def fill(clients: Sequence[str]) -> None:
        hit_all(storage, clients, ours_scopes(RATE_LIMIT_RULES), LARGEST - 1, "the ring fill")

    def ban(client: str) -> None:
        with app.app_context():
            for _ in range(BAN_RULE["count"]):
                gk.report(ip=client)

    environ = FUNCTION_GET if function else GET
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
        module.time = _time
    app = new_app("original")
    gk = module.GateKeeper(app, **RULES)

    def fill(clients: Sequence[str]) -> None:  # old timestamps, as on a long-running server
        for client in clients:
            entries = gk.ips[client].rate_entries
            old = entries[0] - 10_000.0
            entries.extendleft(old - step for step in range(entries.maxlen - len(entries)))

    def ban(client: str) -> None:
        gk._create(client)  # 1.0.0 counts reports of clients it tracks only
        for _ in range(BAN_RULE["count"]):
            gk.report(ip=client)

    return Built(app, fill, ban)


def build_limiter(config: Config, strategy: str, function: bool = False) -> Built:
    """Flask-Limiter (no ban rule); its memory storage reads ``time.time()``."""
    flask_limiter: Any = importlib.import_module("flask_limiter")
    memory = config.storage == "memory"
    if memory and config.clock is not None:
        importlib.import_module("limits.storage.memory").time = _time  # type: ignore[attr-defined]
    name = f"limiter-{strategy}"
    app = Flask(f"{name}-function") if function else new_app(name)
    key = importlib.import_module("flask_limiter.util").get_remote_address
    limits = [f"{rule['count']} per {rule['window']} seconds" for rule in RATE_LIMIT_RULES]
    uri = "memory://" if memory else config.storage
    limiter = flask_limiter.Limiter(
        key, app=app, default_limits=limits, storage_uri=uri, strategy=strategy
    )
    if not function:
        return Built(app)
    limit = limiter.limit(plan_limit, cost=batch_cost, override_defaults=False)
    app.add_url_rule("/", view_func=limit(function_view()))
    return Built(app, environ=FUNCTION_GET)


BUILDERS: dict[str, Callable[[Config], Built]] = {
    "bare": lambda config: Built(new_app("bare")),
    "hook": lambda config: Built(new_app("hook", lambda: None)),
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
    """gunicorn's app factory: behind ``ProxyFix``, the client is the address wrk sends."""
    from werkzeug.middleware.proxy_fix import ProxyFix

    return ProxyFix(build(peer, Config(storage)).app.wsgi_app, x_for=1)


@functools.cache
def calibrate(peer: str) -> float:
    """Clock readings per admitted request at one client (a Python clock counts them)."""
    reads = itertools.count(1)

    def clock() -> float:
        return START + next(reads) * SECONDS_PER_REQUEST  # 4 a second: admitted

    built = build(peer, Config(clock=clock))
    serve(built.app.wsgi_app, [client_ip(0)] * WARM_UP_ONE_CLIENT, built.environ)
    before = clock()  # time never goes back: the logs hold its readings
    serve(built.app.wsgi_app, [client_ip(0)] * 1000, built.environ)
    expect_only(OK, f"calibrating {peer}")
    return ((clock() - before) / SECONDS_PER_REQUEST - 1) / 1000


def build_case(
    peer: str, mode: str, clients: int, config: Config, accept: Optional[str] = None
) -> tuple[Run, Reply]:
    """A warmed-up case: ``admitted`` on a clock moving with each reading, every log full;
    ``refused`` and ``banned`` on a frozen one; ``redis`` on real clocks."""
    facts: Reply = {}
    addresses = [client_ip(number) for number in range(clients)]
    clock: Optional[Clock] = None
    if mode == "admitted" and peer not in CLOCKLESS:
        readings = facts["clock_readings_per_request"] = calibrate(peer)
        clock = itertools.count(START, SECONDS_PER_REQUEST / max(readings, 1.0)).__next__
    elif mode in ("refused", "banned"):
        clock = itertools.repeat(START).__next__
    built = build(peer, replace(config, clock=clock))
    wsgi, environ = built.app.wsgi_app, built.environ
    if accept is not None:
        environ = {**environ, "HTTP_ACCEPT": accept}
    status = {"refused": TOO_MANY, "banned": FORBIDDEN}.get(mode, OK)
    if mode == "refused":
        limit = min(rule["count"] for rule in RATE_LIMIT_RULES)
        serve(wsgi, addresses * (limit + 1), environ)
        expect_only({OK: limit, TOO_MANY: 1}, "filling the refused client's rule")
    elif mode == "banned":
        if built.ban is None:
            raise ValueError(f"{peer} cannot ban")
        for address in addresses:
            built.ban(address)
    else:
        serve(wsgi, addresses * WARM_UP_ONE_CLIENT if clients == 1 else addresses, environ)
        expect_only(OK, f"warm-up of {clients} client(s)")
        if clients > 1 and built.fill is not None and mode == "admitted":
            built.fill(addresses)
    cycle = itertools.cycle(addresses)

    def run(requests: int) -> int:
        if clock is not None:
            use_clock(clock)
        elapsed = serve(wsgi, itertools.islice(cycle, requests), environ, collect=False)
        settle()  # a sweep still running would steal the next case's time, in any process
        expect_only(status, "timed requests")
        return elapsed

    return run, facts


def resp(*words: object) -> bytes:
    """One command in RESP, as a client library writes it."""
    data = [str(word).encode() for word in words]
    return b"*%d\r\n" % len(data) + b"".join(b"$%d\r\n%b\r\n" % (len(d), d) for d in data)


def bare_socket(port: int) -> Callable[[bytes], None]:
    """Sends a prebuilt RESP command to Redis on a bare socket and reads its whole reply."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=30)
    reader = connection.makefile("rb")

    def skip_reply() -> None:
        head = reader.readline()
        if head[:1] == b"-":
            raise RuntimeError(f"Redis replied {head!r}")
        if head[:1] == b"*":
            for _ in range(int(head[1:])):
                skip_reply()
        elif head[:1] == b"$" and int(head[1:]) >= 0:
            reader.readline()

    def call(command: bytes) -> None:
        connection.sendall(command)
        skip_reply()

    return call


def redis_parts(port: int, clients: int, config: Config) -> tuple[dict[str, Run], Reply]:
    """A Redis request's parts (``peers.PARTS``), the EVALSHAs those ``RedisStorage.hit`` sent."""
    storage_module: Any = importlib.import_module("flask_gatekeeper.storage.redis")
    scripts_module: Any = importlib.import_module("flask_gatekeeper.storage.redis.scripts")
    storage = storage_module.RedisStorage.from_url(config.storage)
    client, scopes = storage.client, ours_scopes(RATE_LIMIT_RULES)
    names = [client_ip(number) for number in range(clients)]
    sent: list[tuple[Any, ...]] = []
    run_script = storage._run

    def capture(script: Any, keys: list[str], args: Sequence[Any]) -> Any:
        sent.append((scripts_module.HIT.sha, len(keys), *keys, *args))
        return run_script(script, keys, args)

    storage._run = capture  # this instance only: every client seen once, its log exists
    for name in names:
        storage.hit(name, scopes)
    del storage._run
    evalsha = storage_module.RedisStorage(client)
    evalsha._pooled = None  # the path of Redis Cluster and of wrapped clients
    raw, ping = bare_socket(port), resp("PING")
    evalshas = [resp("EVALSHA", *arguments) for arguments in sent]
    parts = {
        "raw-ping": calls(lambda number: raw(ping)),
        "ping": calls(lambda number: client.ping()),
        "raw-evalsha": calls(lambda number: raw(evalshas[number % len(sent)])),
        "evalsha": calls(lambda number: client.evalsha(*sent[number % len(sent)])),
        "hit": calls(lambda number: storage.hit(names[number % clients], scopes)),
        "hit-evalsha": calls(lambda number: evalsha.hit(names[number % clients], scopes)),
    }
    for peer in ("bare", "pinged", "ours"):
        parts[peer] = build_case(peer, "redis", clients, config)[0]
    parser = type(client.connection_pool.get_connection()._parser).__name__
    hiredis = importlib.import_module("redis.utils").HIREDIS_AVAILABLE
    return parts, {"parser": parser, "hiredis": bool(hiredis), **versions()}


def pinger(url: str) -> tuple[Run, Reply]:
    """redis-py PINGs: the floor of one round trip from Python."""
    client = importlib.import_module("redis").Redis.from_url(url)
    client.ping()
    return calls(lambda number: client.ping()), {}


def traced_now() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0


def rss() -> int:
    """This process's resident set size in bytes (Linux, as the other benchmarks)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory(peer: str, clients: int, config: Config, after: Sequence[int]) -> Reply:
    """Traced growth per client once each made ``after[i]`` requests: a burst on a clock
    moving 0.1 µs a reading (a new float each, as ``time.time()``), fresh addresses."""
    clock = itertools.count(START, 1e-7).__next__
    wsgi = build(peer, replace(config, clock=clock)).app.wsgi_app
    serve(wsgi, [client_ip(clients)])  # lazy setup, off the books
    expect_only(OK, "memory warm-up")
    per_client: dict[str, float] = {}
    tracemalloc.start()  # a failure ends the run: no need to stop it then
    base, made = traced_now(), 0
    for target in after:
        while made < target:
            serve(wsgi, (client_ip(number) for number in range(clients)))
            made += 1
        expect_only(OK, f"{clients} clients x {made} requests")
        per_client[str(target)] = (traced_now() - base) / clients
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
) -> Reply:
    """Distinct clients, one request each, a point every ``every``, until RSS passes ``ceiling``
    or ``budget`` s; ``banned``: a client banned throughout; untraced: bare Flask's µs first."""
    base, where = (PROXIED, "HTTP_X_FORWARDED_FOR") if config.proxies else (GET, "REMOTE_ADDR")

    def send(wsgi: WSGIApplication, numbers: Iterable[int]) -> int:
        elapsed = serve(wsgi, [client_address(n, ipv6_every) for n in numbers], base, where)
        expect_only(OK, f"flood of {peer}")
        return elapsed

    def still_banned(when: str) -> None:
        serve(wsgi, [str(banned)], base, where)
        expect_only(FORBIDDEN, f"the ban {when} the flood")

    reply: Reply = {"stopped": "finished"}
    if not trace:  # for scale; it also warms the interpreter up
        reply["bare_us"] = send(new_app("bare").wsgi_app, range(every)) / every / 1000
    clock = None if clock_step is None else itertools.count(START, clock_step).__next__
    config = replace(config, clock=clock)
    if trace:
        build(peer, config)  # its imports off the books
        tracemalloc.start()
    built = build(peer, config)
    storage, wsgi = built.storage, built.app.wsgi_app
    if banned is not None and built.ban is not None:
        built.ban(banned)
        reply["ban_seconds"] = storage.banned_for(banned)
        still_banned("before")
    else:
        send(wsgi, [clients])

    def point(done: int, seconds: float, ns: int) -> Reply:
        tracked = None if storage is None else storage.tracked
        if config.max_clients and (tracked or 0) > config.max_clients:
            raise RuntimeError(f"{tracked:,} logs tracked, over the cap")
        found = {"clients": done, "tracked": tracked, "traced": traced_now(), "rss": rss()}
        return {**found, "seconds": seconds, "ns": ns}

    points, step, ns = [point(0, 0.0, 0)], max(every // 10, 1), 0
    if clock is not None:
        gc.freeze()  # the objects made before the flood: the collector skips them
    started = time.perf_counter()
    for first in range(0, clients, step):
        done = min(first + step, clients)
        ns += send(wsgi, range(first, done))
        elapsed = time.perf_counter() - started
        if rss() > ceiling:
            reply["stopped"] = "memory ceiling"
        elif budget is not None and elapsed > budget and done < clients:
            reply["stopped"] = "time budget"
        if done % every == 0 or done == clients or reply["stopped"] != "finished":
            points.append(point(done, elapsed, ns))
            ns = 0
        if reply["stopped"] != "finished":
            break
    gc.unfreeze()
    if banned is not None and built.ban is not None:
        still_banned("after")
        reply.update(ban_left_after=storage.banned_for(banned), bans_after=len(storage.bans()))
    if clock is not None:
        reply["clock_seconds"] = clock() - START
    if storage is not None:  # ours: traced growth since before the flood, per log tracked
        tracked = reply["tracked"] = points[-1]["tracked"]
        reply["bytes_per_client"] = (points[-1]["traced"] - points[0]["traced"]) / tracked
    tracemalloc.stop()
    settle()
    return {**reply, "points": points}


def fill(
    clients: int, requests: int, step: float, ipv6_every: int = 0, rules: Rules = RATE_LIMIT_RULES
) -> Reply:
    """Bytes per log of ``requests`` requests in ours' memory storage, called directly."""
    storage_module: Any = importlib.import_module("flask_gatekeeper.storage")
    scopes = ours_scopes(rules)
    tracemalloc.start()
    before = traced_now()
    bound = max(clients, storage_module.DEFAULT_MAX_CLIENTS)
    storage = storage_module.MemoryStorage(
        max_clients=bound, clock=itertools.count(START, step).__next__
    )
    keys = [client_key(number, ipv6_every) for number in range(clients)]
    hit_all(storage, keys, scopes, requests, "the direct fill")
    del keys  # the storage holds them
    used = traced_now() - before
    tracemalloc.stop()
    return {"tracked": storage.tracked, "bytes_per_client": used / storage.tracked}


def versions() -> Reply:
    found: dict[str, str] = {}
    for package in PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    return {"python": platform.python_version(), "packages": found}


cases: dict[str, Run] = {}
BUILDS: dict[str, Callable[..., Any]] = {"build": build_case, "parts": redis_parts, "ping": pinger}
"""Commands that build cases: ``case`` names one (``parts``: the prefix of several)."""
COMMANDS: dict[str, Callable[..., Reply]] = {
    "hello": versions,
    "memory": memory,
    "flood": flood,
    "fill": fill,
}


def handle(command: str, request: Reply) -> Reply:
    if "config" in request:
        request["config"] = Config(**request["config"])
    if command in BUILDS:
        prefix = request.pop("case", "")
        built, facts = BUILDS[command](**request)
        parts = built if isinstance(built, dict) else {"": built}
        cases.update({prefix + name: run for name, run in parts.items()})
        return {"facts": facts}
    if command == "run":
        return {"ns": cases[request["case"]](request["requests"])}
    if command in ("drop", "collect", "freeze"):
        if command == "drop":
            cases.clear()
        gc.collect()
        if command == "freeze":
            gc.freeze()
        return {}
    return COMMANDS[command](**request)


def main() -> None:
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints go to stderr
    for line in sys.stdin:
        request = json.loads(line)
        if request["cmd"] == "quit":
            break
        try:
            reply = handle(request.pop("cmd"), request)
        except Exception:
            reply = {"error": traceback.format_exc()}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
