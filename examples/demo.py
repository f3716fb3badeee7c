"""flask-gatekeeper 1.0's README example, made to work: ``make demo`` serves it.

The routes and rules are 1.0's: ``/ping``, ``/login`` (a JSON password),
``/global_plus_specific``, ``/standalone`` and ``/bypass``. The server listens on
http://127.0.0.1:5000, or on the port in the ``PORT`` environment variable
(``make demo PORT=5001``).

The client address comes from the ``x-my-ip`` header so that you can play several
clients from one terminal with curl. Because the demo believes that header from anyone,
it logs a warning at start-up; a real deployment sets ``trusted_proxies`` too.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from flask import Flask, request

from flask_gatekeeper import GateKeeper

HOST = "127.0.0.1"
DEFAULT_PORT = 5000
PASSWORD = "password"
"""The right password, as in 1.0's example."""


def create_app(**gatekeeper_options: Any) -> tuple[Flask, GateKeeper]:
    """The demo app and its GateKeeper; tests pass e.g. ``storage=`` to inject a clock."""
    app = Flask(__name__)
    gk = GateKeeper(
        app,  # or gk.init_app(app) later
        ip_header="x-my-ip",  # the client IP comes from this header
        ban_rule={"count": 3, "window": 10, "duration": 600},  # 3 reports in 10 s: 600 s ban
        rate_limit_rules=[{"count": 20, "window": 1}, {"count": 100, "window": 10}],
        excluded_methods=["HEAD"],  # HEAD requests are not counted
        **gatekeeper_options,
    )

    @app.route("/ping")  # the global rules apply
    def ping() -> str:
        return "ok"

    # 1.0's example routed /login for GET and read a JSON body; POST works too.
    @app.route("/login", methods=["GET", "POST"])
    def login() -> tuple[str, int]:
        body = request.get_json(silent=True)
        password = body.get("password") if isinstance(body, dict) else None
        if password != PASSWORD:
            gk.report()  # after 3 reports in 10 s, the client is banned for 600 s
            return "bad password", 401
        return secrets.token_hex(16), 200

    @app.route("/global_plus_specific")
    @gk.specific(rate_limit_rules=[{"count": 1, "window": 2}])  # on top of the global rules
    def specific() -> tuple[str, int]:
        return "ok", 200

    @app.route("/standalone")
    @gk.specific(rate_limit_rules=[{"count": 10, "window": 3600}], standalone=True)  # only this
    def standalone() -> tuple[str, int]:
        return "ok", 200

    @app.route("/bypass")
    @gk.bypass  # nothing applies: not counted, not limited, not banned
    def bypass() -> tuple[str, int]:
        return "ok", 200

    return app, gk


app, gk = create_app()


def port_from_environment() -> int:
    """``PORT`` from the environment, or 5000."""
    text = os.environ.get("PORT", "").strip()
    if not text:
        return DEFAULT_PORT
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise SystemExit(f"PORT must be a port number from 1 to 65535, got {text!r}")
    return int(text)


def walkthrough(port: int) -> str:
    """The curl lines that ``make demo`` prints."""
    url = f"http://{HOST}:{port}"
    return f"""\
flask-gatekeeper demo on {url}  (Ctrl-C to stop; another port: make demo PORT=5001)

  # 21 requests within a second: the 21st is refused with 429 and Retry-After
  for i in $(seq 21); do curl -s -o /dev/null -w "%{{http_code}} " -H "x-my-ip: 10.0.0.1" \\
      {url}/ping; done; echo

  # one request per 2 s on /global_plus_specific, on top of the global rules
  curl -si -w "\\n" -H "x-my-ip: 10.0.0.4" {url}/global_plus_specific
  curl -si -w "\\n" -H "x-my-ip: 10.0.0.4" {url}/global_plus_specific

  # /standalone has its own rule only (10 per hour): the 11th request gets 429,
  # and these requests did not count toward the global rules of /ping
  for i in $(seq 11); do curl -s -o /dev/null -w "%{{http_code}} " -H "x-my-ip: 10.0.0.5" \\
      {url}/standalone; done; echo
  curl -s -w "\\n" -H "x-my-ip: 10.0.0.5" {url}/ping

  # three bad passwords: the client is banned (403) for 600 s, everywhere but /bypass
  for i in 1 2 3; do curl -s -w "\\n" -H "x-my-ip: 10.0.0.2" \\
      -H "Content-Type: application/json" -d '{{"password": "guess"}}' {url}/login; done
  curl -si -w "\\n" -H "x-my-ip: 10.0.0.2" {url}/ping
  curl -si -w "\\n" -H "x-my-ip: 10.0.0.2" {url}/bypass

  # the right password returns a token
  curl -s -w "\\n" -H "x-my-ip: 10.0.0.3" -H "Content-Type: application/json" \\
      -d '{{"password": "{PASSWORD}"}}' {url}/login
"""


if __name__ == "__main__":
    port = port_from_environment()
    print(walkthrough(port), flush=True)
    app.run(host=HOST, port=port)
