"""Apps for the tests: option sets and routes for ``make_app`` (the fixture, see
``conftest.py``), and the project's scripts (the demo) loaded as modules.

A route here is a function ``route(app, gk)`` that adds one view to ``app``; ``make_app``
takes a tuple of them, so each test module picks the views it needs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from flask import Flask, request

from flask_gatekeeper import GateKeeper
from flask_gatekeeper.rules import RuleLike

ROOT = Path(__file__).resolve().parents[2]
"""The project's checkout."""

DEMO = ROOT / "examples" / "demo.py"
"""The demo app (``make demo``)."""

AppFactory = Callable[..., "tuple[Flask, GateKeeper]"]
"""``make_app(*, config=None, base=SEED_OPTIONS, routes=SEED_ROUTES, **options)``."""

Route = Callable[[Flask, GateKeeper], None]

RULES: dict[str, Any] = {
    "ban_rule": {"count": 3, "window": 10, "duration": 600},
    "rate_limit_rules": [{"count": 20, "window": 1}, {"count": 100, "window": 10}],
}
"""The seed's ban rule and rate limits."""

PEER_OPTIONS: dict[str, Any] = {**RULES, "excluded_methods": ["HEAD"]}
"""The seed's options without its proxy header: clients are told apart by REMOTE_ADDR."""

SEED_IP_HEADER = "x-my-ip"
"""The header the seed's apps read the client's address from."""

SEED_OPTIONS: dict[str, Any] = {"ip_header": SEED_IP_HEADER, **PEER_OPTIONS}
"""The seed's configuration (flask-gatekeeper 1.0's README), as constructor keywords."""


# --- Routes ---------------------------------------------------------------------------------


def index(app: Flask, gk: GateKeeper) -> None:
    """``GET /`` answers ``hello`` under the global rules."""
    app.add_url_rule("/", "index", lambda: "hello")


def login(app: Flask, gk: GateKeeper) -> None:
    """``POST /login`` reports the client unless the form's password is ``right``, answering
    401 with ``banned`` when that report bans."""

    @app.route("/login", methods=["POST"])
    def login() -> tuple[str, int]:
        if request.form.get("password") == "right":
            return "welcome", 200
        return ("banned" if gk.report() else "bad password"), 401


def burst(rules: list[RuleLike]) -> Route:
    """``GET /burst`` with its own ``rules`` on top of the global ones."""

    def add(app: Flask, gk: GateKeeper) -> None:
        @app.route("/burst")
        @gk.specific(rate_limit_rules=rules)
        def burst() -> str:
            return "burst"

    return add


def alone(app: Flask, gk: GateKeeper) -> None:
    """``GET /alone`` under only its own 2 per 60 s."""

    @app.route("/alone")
    @gk.specific(rate_limit_rules=[{"count": 2, "window": 60}], standalone=True)
    def alone() -> str:
        return "alone"


def health(app: Flask, gk: GateKeeper) -> None:
    """``GET /health``, bypassed."""

    @app.route("/health")
    @gk.bypass
    def health() -> str:
        return "ok"


def trap(app: Flask, gk: GateKeeper) -> None:
    """``GET /trap`` bans its caller."""

    @app.route("/trap")
    def trap() -> str:
        gk.ban(request.remote_addr or "")
        return "gotcha"


def admin(app: Flask, gk: GateKeeper) -> None:
    """The bypassed ``POST /admin/ban`` and ``/admin/unban``: manual control from a view."""

    @app.route("/admin/ban", methods=["POST"])
    @gk.bypass
    def admin_ban() -> dict[str, Any]:
        ip = request.form["ip"]
        gk.ban(ip, request.form.get("duration", type=float))
        return {"banned_for": gk.banned_for(ip), "bans": gk.bans()}

    @app.route("/admin/unban", methods=["POST"])
    @gk.bypass
    def admin_unban() -> dict[str, Any]:
        return {"unbanned": gk.unban(request.form["ip"])}


SEED_ROUTES: tuple[Route, ...] = (index, login)
"""The seed README's views."""

OPERATIONS_ROUTES: tuple[Route, ...] = (
    index,
    login,
    burst([{"count": 1, "window": 2}]),
    alone,
    health,
    trap,
    admin,
)
"""Every view the operations tests use (escalation, manual control, signals, logs, outages,
headers, responses, dry run and stats)."""


def load_script(path: Path, name: str) -> ModuleType:
    """A script of the project (not a package module) loaded as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
