"""The seed example, made to work: ``make demo`` serves it on http://127.0.0.1:5000.

The client address comes from the ``x-my-ip`` header so that you can play several
clients from one terminal with curl; a real deployment sets ``trusted_proxies`` too.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import Flask, request

from flask_gatekeeper import GateKeeper

HOST, PORT = "127.0.0.1", 5000
PASSWORD = "correct horse"


def create_app(**gatekeeper_options: Any) -> tuple[Flask, GateKeeper]:
    """The demo app and its GateKeeper; tests pass e.g. ``storage=`` to inject a clock."""
    app = Flask(__name__)
    gk = GateKeeper(
        app,
        ip_header="x-my-ip",
        ban_rule={"count": 3, "window": 10, "duration": 600},
        rate_limit_rules=[{"count": 20, "window": 1}, {"count": 100, "window": 10}],
        excluded_methods=["HEAD"],
        **gatekeeper_options,
    )

    @app.route("/")
    def index() -> str:
        return "hello\n"

    @app.route("/login", methods=["POST"])
    def login() -> tuple[str, int]:
        if request.form.get("password") != PASSWORD:
            gk.report()  # 3 bad passwords in 10 s: banned for 600 s
            return "bad password\n", 401
        return f"token {secrets.token_hex(16)}\n", 200

    @app.route("/burst")
    @gk.specific(rate_limit_rules=[{"count": 1, "window": 2}])  # on top of the global rules
    def burst() -> str:
        return "one per 2 seconds\n"

    @app.route("/alone")
    @gk.specific(rate_limit_rules=[{"count": 10, "window": 3600}], standalone=True)
    def alone() -> str:
        return "ten per hour, global rules do not apply\n"

    @app.route("/health")
    @gk.bypass  # nothing applies
    def health() -> str:
        return "ok\n"

    return app, gk


app, gk = create_app()

TRY_IT = f"""\
flask-gatekeeper demo on http://{HOST}:{PORT}  (Ctrl-C to stop)

  # 21 requests within a second: the 21st is refused with 429 and Retry-After
  for i in $(seq 21); do curl -s -o /dev/null -w "%{{http_code}} " -H "x-my-ip: 10.0.0.1" \\
      http://{HOST}:{PORT}/; done; echo

  # three bad passwords: the client is banned (403) for 600 s, everywhere but /health
  for i in 1 2 3; do curl -s -H "x-my-ip: 10.0.0.2" -d password=guess \\
      http://{HOST}:{PORT}/login; done
  curl -i -H "x-my-ip: 10.0.0.2" http://{HOST}:{PORT}/
  curl -i -H "x-my-ip: 10.0.0.2" http://{HOST}:{PORT}/health

  # the right password returns a token
  curl -s -H "x-my-ip: 10.0.0.3" -d "password={PASSWORD}" http://{HOST}:{PORT}/login
"""

if __name__ == "__main__":
    print(TRY_IT, flush=True)
    app.run(host=HOST, port=PORT)
