"""Config that forgives what it can and explains what it cannot: the quirks a newcomer
met, one test each (the table every option comes from is tests/test_options.py's)."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask

from flask_gatekeeper import ConfigError, GateKeeper, MemoryStorage
from flask_gatekeeper.testing import FakeClock
from support import AppFactory


def test_excluded_methods_as_a_comma_separated_string(make_app: AppFactory) -> None:
    app, _ = make_app(base={}, excluded_methods="head, options", rate_limit_rules="1/minute")
    client = app.test_client()
    assert [client.head("/").status_code for _ in range(3)] == [200, 200, 200]
    assert [client.options("/").status_code for _ in range(3)] == [200, 200, 200]
    assert [client.get("/").status_code for _ in range(2)] == [200, 429]


@pytest.mark.parametrize("methods", [["GETT"], "HEAD,PSOT", ["HEAD", ""]])
def test_an_unknown_http_method_fails_naming_it(methods: object) -> None:
    with pytest.raises(ConfigError, match=r"excluded_methods: .* is not an HTTP method"):
        GateKeeper(Flask(__name__), excluded_methods=methods)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("limiter_name", "ours"),
    [
        ("moving-window", "sliding-log"),
        ("fixed-window-elastic-expiry", "fixed-window"),
        ("sliding-window-counter", "sliding-window"),
    ],
)
def test_flask_limiter_strategy_names_get_a_hint(limiter_name: str, ours: str) -> None:
    hint = f"Flask-Limiter's '{limiter_name}' is '{ours}' here"
    with pytest.raises(ConfigError, match=rf"^strategy: .*{hint}"):
        GateKeeper(Flask(__name__), strategy=limiter_name)
    with pytest.raises(ConfigError, match=rf"rate_limit_rules: .*{hint}"):
        GateKeeper(Flask(__name__), rate_limit_rules=f"10/minute ({limiter_name})")


def test_a_bad_key_func_import_string_is_one_clear_line() -> None:
    app = Flask(__name__)
    app.config["GATEKEEPER_KEY_FUNC"] = "myapp.nowhere:api_key"
    with pytest.raises(ConfigError) as caught:
        GateKeeper(app)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("GATEKEEPER_KEY_FUNC: cannot import 'myapp.nowhere:api_key'")
    assert "ModuleNotFoundError" in message


@pytest.mark.parametrize(("text", "meant"), [("False", False), ("true", True), ("0", False)])
def test_a_boolean_as_text_gets_a_hint(text: str, meant: bool) -> None:
    app = Flask(__name__)
    app.config["GATEKEEPER_ENABLED"] = text
    with pytest.raises(ConfigError, match=rf"GATEKEEPER_ENABLED: .*got '{text}'.*use {meant}"):
        GateKeeper(app)


@pytest.mark.parametrize("text", ["20/second;", "20/second; ; 5/minute", ";20/second"])
def test_an_empty_rule_between_separators_says_so(text: str) -> None:
    with pytest.raises(ConfigError, match="empty rule between separators"):
        GateKeeper(Flask(__name__), rate_limit_rules=text)


def test_key_prefix_with_a_storage_object_is_refused(clock: FakeClock) -> None:
    with pytest.raises(ConfigError, match=r"storage: key_prefix applies to a Redis storage"):
        GateKeeper(Flask(__name__), storage=MemoryStorage(clock=clock), key_prefix="app1:")


def test_max_clients_with_a_storage_object_shows_the_value_given(clock: FakeClock) -> None:
    with pytest.raises(ConfigError, match=r"MemoryStorage\(max_clients=500\)"):
        GateKeeper(Flask(__name__), storage=MemoryStorage(clock=clock), max_clients=500)


def test_the_constructor_passes_every_option_through(clock: FakeClock) -> None:
    storage = MemoryStorage(clock=clock)
    gk = GateKeeper(storage=storage, strategy="gcra", dry_run=True, excluded_methods="HEAD")
    assert gk.options == {
        "storage": storage,
        "strategy": "gcra",
        "dry_run": True,
        "excluded_methods": "HEAD",
    }


def test_status_lists_each_routes_own_rules(make_app: AppFactory, clock: FakeClock) -> None:
    from flask_gatekeeper.cli import gatekeeper
    from flask_gatekeeper.testing import FlakyStorage

    app, gk = make_app(storage=FlakyStorage(MemoryStorage(clock=clock)))

    @app.route("/export")
    @gk.specific(rate_limit_rules="2/hour")
    def export() -> str:
        return "data"

    @app.route("/health")
    @gk.bypass
    def health() -> str:
        return "ok"

    output = app.test_cli_runner().invoke(gatekeeper, ["status"]).output.splitlines()
    assert "route export: 2 requests in a 3600s window" in output
    assert "route health: bypassed" in output


def test_no_multiprocess_warning_for_a_single_process_server(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_gatekeeper")
    app, _ = make_app(base={})
    client = app.test_client()
    client.get("/")
    client.get("/", environ_overrides={"wsgi.multiprocess": False})
    assert not [record for record in caplog.records if "several" in record.getMessage()]


def test_one_multiprocess_warning_per_process(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_gatekeeper")
    app, _ = make_app(base={})
    client = app.test_client()
    for _ in range(3):
        client.get("/", environ_overrides={"wsgi.multiprocess": True})
    warnings = [
        record.getMessage() for record in caplog.records if "several" in record.getMessage()
    ]
    assert len(warnings) == 1
    assert "Redis storage" in warnings[0]


WARN_IN_A_FRESH_PROCESS = """
import logging
from flask import Flask
from flask_gatekeeper import GateKeeper

def warn(name):
    app = Flask(name)
    GateKeeper(app)
    app.add_url_rule("/", "index", lambda: "ok")
    app.test_client().get("/", environ_overrides={"wsgi.multiprocess": True})

warn("unconfigured")
logging.basicConfig(format="configured %(levelname)s %(name)s: %(message)s")
warn("configured")
"""


def test_warnings_name_their_level_and_logger_when_no_logging_is_configured() -> None:
    """As Flask's ``app.logger`` does: with no logging configured, a line with the level
    and the logger's name (not the message alone); once the app configures logging, its
    handler writes the line, and ours stays silent."""
    source = Path(__file__).resolve().parent.parent / "src"
    result = subprocess.run(
        [sys.executable, "-c", WARN_IN_A_FRESH_PROCESS],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(source)},
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "several processes" in line]
    assert len(lines) == 2, result.stderr
    assert re.match(r"\[[^]]+\] WARNING in flask_gatekeeper: this server runs several", lines[0])
    assert lines[1].startswith("configured WARNING flask_gatekeeper: this server runs several")
