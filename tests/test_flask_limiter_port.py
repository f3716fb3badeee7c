"""docs/migrating.md, "A port, side by side": a Flask-Limiter app with default limits, an
application limit, a shared limit, an exempt route, ``deduct_when``, ``exempt_when`` and
``cost``, and its port, both taken from the page, give the same statuses for the same
requests. Then the one difference the page names, shown under both.

Flask-Limiter runs on its in-memory storage with its "moving-window" strategy, the
counterpart of our exact sliding log. One ``FakeClock`` drives both: our storage reads it,
and ``time.time``, which limits' memory storage reads, is patched to follow it (as
Flask-Limiter's own tests patch the time)."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import pytest
from flask import Blueprint, Flask

from flask_gatekeeper import GateKeeper
from flask_gatekeeper.testing import FakeClock, MemoryStorage
from support import IP, OTHER_IP
from test_docs import ROOT, code_blocks

pytest.importorskip(
    "flask_limiter",
    reason="Flask-Limiter is not installed; the dev extra installs it (make test)",
)
from flask_limiter import Limiter  # after the skip: an optional dependency

PAGE = ROOT / "docs" / "migrating.md"
EPOCH = 1_700_000_000.0
"""Flask-Limiter's wall clock when ours reads 0."""

AppFactory = Callable[[Optional[dict[str, Any]]], Flask]


@dataclass(frozen=True)
class Request:
    path: str
    method: str = "GET"
    form: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    ip: str = IP


@dataclass(frozen=True)
class Wait:
    seconds: float


Step = Union[Request, Wait]


def get(path: str, ip: str = IP, **headers: str) -> Request:
    return Request(path, headers=headers, ip=ip)


def login(password: str) -> Request:
    return Request("/login", "POST", form={"password": password})


WRONG, RIGHT = login("nope"), login("secret")
INTERNAL = {"X_Internal": "1"}

ADMITTED_EACH_MINUTE: list[tuple[Step, Optional[int]]] = [
    *[(get("/"), 200)] * 3,
    *[(get("/search"), 200)] * 3,
    *[(get("/reports/daily"), 200)] * 4,
    (Wait(61), None),
]
"""Ten requests that every limit admits, then a minute on."""

SEQUENCE: list[tuple[Step, Optional[int]]] = [
    # each limit of a route, within the application limit
    *[(get("/"), 200)] * 3,
    (get("/"), 429),  # the default 3/minute, on this route
    *[(get("/search"), 200)] * 2,  # a budget of its own
    *[(get("/reports/daily"), 200)] * 3,
    (get("/reports/weekly"), 200),
    (get("/reports/weekly"), 429),  # one shared 4/minute, no defaults
    *[(get("/health"), 200)] * 5,  # exempt
    *[(WRONG, 401)] * 2,
    (WRONG, 429),  # 2 failures a minute
    (get("/", ip=OTHER_IP), 200),  # per client
    (Wait(61), None),
    *[(RIGHT, 200)] * 3,  # successes are not counted
    *[(WRONG, 401)] * 2,
    (WRONG, 429),
    *[(get("/export?full=1"), 200)] * 2,  # cost 2 of 5
    (get("/export?full=1"), 429),
    (get("/export"), 200),  # cost 1: the 5th
    (get("/export"), 429),
    *[(get("/feed", **INTERNAL), 200)] * 3,  # exempt from the route's limit
    *[(get("/feed"), 200)] * 2,
    (get("/feed"), 429),
    (Wait(3601), None),
    # the application limit, 40/hour, filled by requests that the routes admit
    *ADMITTED_EACH_MINUTE * 4,
    (get("/search"), 429),  # the 41st request of the hour
    (get("/reports/weekly"), 429),
    (get("/health"), 200),  # exempt from it too
    (get("/", ip=OTHER_IP), 200),  # per client
    (Wait(3601), None),
    *[(get("/"), 200)] * 3,
    (get("/"), 429),
    (get("/search"), 200),
]
"""Requests and the status each gets under both. Between two waits of an hour, no limit
of a route's own refuses a request before the application limit fills: Flask-Limiter
would have counted that request in the application limit (see the last test)."""


@pytest.fixture
def limiter_clock(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> FakeClock:
    """``clock``, which ``time.time`` follows for Flask-Limiter."""
    monkeypatch.setattr(time, "time", lambda: EPOCH + clock())
    return clock


def factories() -> tuple[AppFactory, AppFactory]:
    """The page's two ``create_app``: Flask-Limiter's, then the port."""
    found = []
    for block in code_blocks(PAGE):
        if block.info == "python" and "def create_app" in block.code:
            namespace: dict[str, Any] = {"__name__": "ported_app"}
            exec(compile(block.code, block.id, "exec"), namespace)
            found.append(namespace["create_app"])
    limiter, port = found
    return limiter, port


def send(app: Flask, step: Request) -> int:
    response = app.test_client().open(
        step.path,
        method=step.method,
        data=step.form or None,
        headers={name.replace("_", "-"): value for name, value in step.headers.items()},
        environ_base={"REMOTE_ADDR": step.ip},
    )
    return response.status_code


def statuses(app: Flask, steps: Sequence[Step], clock: FakeClock) -> list[Optional[int]]:
    found: list[Optional[int]] = []
    for step in steps:
        if isinstance(step, Wait):
            clock.advance(step.seconds)
            found.append(None)
        else:
            found.append(send(app, step))
    return found


def test_the_port_gives_flask_limiters_statuses(limiter_clock: FakeClock) -> None:
    limiter_factory, port_factory = factories()
    steps = [step for step, _ in SEQUENCE]
    expected = [status for _, status in SEQUENCE]

    start = limiter_clock()
    under_flask_limiter = statuses(limiter_factory(None), steps, limiter_clock)
    limiter_clock.set(start)
    port = port_factory({"GATEKEEPER_STORAGE_URI": MemoryStorage(clock=limiter_clock)})
    under_the_port = statuses(port, steps, limiter_clock)

    assert under_flask_limiter == expected
    assert under_the_port == expected


def index() -> str:
    return "home"


def search() -> str:
    return "results"


def export() -> str:
    return "csv"


def limiter_and_port(clock: FakeClock) -> tuple[Flask, Flask]:
    """An application limit, default limits of the same window, and a route with a limit
    of its own, under each library (Flask-Limiter knows views by their qualified names:
    each has its own)."""
    apps = []
    own: Callable[[Callable[[], str]], Callable[..., Any]]
    for kind in ("limiter", "port"):
        app = Flask(kind)
        app.add_url_rule("/", "index", index)
        app.add_url_rule("/search", "search", search)
        if kind == "limiter":
            limiter = Limiter(
                lambda: "client",
                app=app,
                default_limits=["3/minute"],
                application_limits=["5/minute"],
                strategy="moving-window",
                storage_uri="memory://",
            )
            own = limiter.limit("1/minute")
        else:
            gk = GateKeeper(
                app,
                default_rules="3/minute",
                rate_limit_rules="5/minute",
                storage=MemoryStorage(clock=clock),
            )
            own = gk.specific("1/minute")
        view = functools.wraps(export)(lambda: export())  # of this app alone, same name
        app.add_url_rule("/export", "export", own(view))
        apps.append(app)
    return apps[0], apps[1]


@pytest.mark.parametrize(
    ("refused", "first"),
    [
        pytest.param("/", [200, 200, 200, 429], id="by a default limit"),
        pytest.param("/export", [200, 429, 429, 429], id="by a route's own limit"),
    ],
)
def test_a_refused_request_counts_in_the_limits_flask_limiter_checked_before(
    limiter_clock: FakeClock, refused: str, first: list[int]
) -> None:
    """The difference docs/migrating.md names. Flask-Limiter checks the application limit
    before a default limit of the same window, and before any limit of a route's own (in
    the view's wrapper): the requests these refuse have spent places of the application's
    5/minute, and the client has one left for /search. Here a refused request counts
    nowhere, and the client has two."""
    limiter_app, port = limiter_and_port(limiter_clock)
    steps = [get(refused)] * 4 + [get("/search")] * 2

    assert statuses(limiter_app, steps, limiter_clock) == [*first, 200, 429]
    assert statuses(port, steps, limiter_clock) == [*first, 200, 200]


def where_defaults_apply(clock: FakeClock) -> tuple[Flask, Flask]:
    """The rows of docs/migrating.md on where default limits apply, under each library:
    limits for some methods, ``override_defaults=False``, a blueprint's limits, a limit
    inside a view."""
    apps = []
    for kind in ("limiter", "port"):
        app = Flask(kind)
        bp = Blueprint("bp", kind)
        views: dict[str, Callable[[], str]] = {}
        inside: Any  # a limit used inside a view
        for name in ("form", "both", "inside"):
            views[name] = functools.wraps(index)(lambda name=name: name)  # this app's own
            views[name].__qualname__ = f"{kind}.{name}"  # Flask-Limiter's name for it
        if kind == "limiter":
            limiter = Limiter(
                lambda: "client",
                app=app,
                default_limits=["2/minute"],
                strategy="moving-window",
                storage_uri="memory://",
            )
            form = limiter.limit("1/minute", methods=["POST"])(views["form"])
            both = limiter.limit("3/minute", override_defaults=False)(views["both"])
            limiter.limit("3/minute")(bp)
            inside = limiter.limit("5/minute")
        else:
            gk = GateKeeper(app, default_rules="2/minute", storage=MemoryStorage(clock=clock))
            form = gk.specific("1/minute", methods=["POST"])(views["form"])
            both = gk.specific(["3/minute", "2/minute"])(views["both"])
            gk.specific("3/minute")(bp)
            inside = gk.limit("5/minute", scope="ctx")

        def ctx(inside: Any = inside) -> str:
            with inside:
                return "ctx"

        ctx.__qualname__ = f"{kind}.ctx"
        app.add_url_rule("/form", "form", form, methods=["GET", "POST"])
        app.add_url_rule("/both", "both", both)
        app.add_url_rule("/ctx", "ctx", ctx)
        bp.add_url_rule("/in", "inside", views["inside"])
        app.register_blueprint(bp, url_prefix="/bp")
        apps.append(app)
    return apps[0], apps[1]


def test_default_limits_apply_where_flask_limiters_do(limiter_clock: FakeClock) -> None:
    limiter_app, port = where_defaults_apply(limiter_clock)
    sequence: list[tuple[Request, int]] = [
        *[(get("/form"), 200)] * 2,
        (get("/form"), 429),  # GET keeps the defaults
        (Request("/form", "POST"), 200),
        (Request("/form", "POST"), 429),  # POST has its own 1/minute
        *[(get("/both"), 200)] * 2,
        (get("/both"), 429),  # the defaults beside its own 3/minute
        *[(get("/bp/in"), 200)] * 3,
        (get("/bp/in"), 429),  # the blueprint's 3/minute instead of the defaults
    ]
    steps = [step for step, _ in sequence]
    expected = [status for _, status in sequence]

    assert statuses(limiter_app, steps, limiter_clock) == expected
    assert statuses(port, steps, limiter_clock) == expected


def test_a_limit_inside_a_view_leaves_the_defaults_in_place(limiter_clock: FakeClock) -> None:
    """A difference docs/migrating.md names: once a limit inside a view has run,
    Flask-Limiter leaves the route's defaults out (a limit that overrides them, remembered
    for the endpoint); ``gk.limit`` is a check of its own and the defaults stay."""
    limiter_app, port = where_defaults_apply(limiter_clock)
    steps = [get("/ctx")] * 3

    assert statuses(limiter_app, steps, limiter_clock) == [200, 200, 200]  # 5/minute only
    assert statuses(port, steps, limiter_clock) == [200, 200, 429]  # the default 2/minute
