"""The one option table and everything read from it: the constructor's and ``specific()``'s
signatures, their checks, ``flask gatekeeper config`` and docs/configuration.md.

The signatures are written out by hand (type checkers and IDEs need them), so these tests
are what keeps them and the table in step: a row added, moved or given another default
fails here until the signature (and the docs) follow.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_gatekeeper import ConfigError, ConfigTypeError, GateKeeper
from flask_gatekeeper.cli import gatekeeper
from flask_gatekeeper.options import APP_OPTIONS, CONFIG_KEYS, OPTIONS, ROUTE_OPTIONS, Option

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
SEED = ("ban_rule", "rate_limit_rules", "ip_header", "excluded_methods")
"""flask-gatekeeper 1.0's options, positional after ``app``, in this order."""

Parameter = inspect.Parameter


def parameters(function: Any) -> list[Parameter]:
    return list(inspect.signature(function).parameters.values())


# --- the table ------------------------------------------------------------------------


def test_each_option_is_one_row() -> None:
    names = [option.name for option in OPTIONS]
    assert len(set(names)) == len(names)
    keys = [option.key for option in APP_OPTIONS]
    assert len(set(keys)) == len(keys)
    for option in OPTIONS:
        assert option.where in ("app", "route", "both")
        assert (option.key is None) == (option.where == "route"), option.name
        assert option.doc, option.name
    assert {option.name: option.key for option in APP_OPTIONS} == CONFIG_KEYS


@pytest.mark.parametrize("option", APP_OPTIONS, ids=lambda option: option.name)
def test_each_default_of_the_app_passes_its_own_check(option: Option) -> None:
    if option.default is not None:
        option.read_app(option.default, option.name)


@pytest.mark.parametrize("option", ROUTE_OPTIONS, ids=lambda option: option.name)
def test_each_default_of_a_route_passes_its_own_check(option: Option) -> None:
    if option.default is not None:
        option.read(option.default)


# --- signatures -----------------------------------------------------------------------


def test_the_constructor_takes_every_option_of_the_table_in_order() -> None:
    found = parameters(GateKeeper)
    assert [p.name for p in found] == [
        "app",
        *(option.name for option in APP_OPTIONS),
        "unexpected",
    ]
    assert found[-1].kind is Parameter.VAR_KEYWORD  # only to name what was meant
    positional = [p.name for p in found if p.kind is Parameter.POSITIONAL_OR_KEYWORD]
    assert positional == ["app", *SEED]
    assert all(p.default is None for p in found[:-1])  # None: from app.config, then default


def test_specific_takes_every_route_option_of_the_table_in_order() -> None:
    found = parameters(GateKeeper.specific)[1:]  # after self
    assert [p.name for p in found] == [option.name for option in ROUTE_OPTIONS]
    positional = [p.name for p in found if p.kind is Parameter.POSITIONAL_OR_KEYWORD]
    assert positional == ["rate_limit_rules", "standalone"]  # flask-gatekeeper 1.0's
    assert all(p.kind is Parameter.KEYWORD_ONLY for p in found[2:])
    assert [p.default for p in found] == [option.default for option in ROUTE_OPTIONS]


def test_limit_takes_the_route_rows_of_its_options() -> None:
    rows = {option.name: option for option in ROUTE_OPTIONS}
    found = {p.name: p for p in parameters(GateKeeper.limit)[1:]}
    assert {"rate_limit_rules", "scope", "cost"} <= set(found)
    assert found["cost"].default == rows["cost"].default


# --- one check for each option, wherever it is given -------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("rate_limit_rules", []),
        ("rate_limit_rules", "20 per fortnight"),
        ("key_func", 5),
        ("key_func", lambda request: "key"),
        ("report_when", lambda: True),
        ("exempt_when", lambda response: True),
        ("concurrency", 0),
        ("concurrency", "3"),
        ("offence", ""),
        ("offence", 5),
    ],
)
def test_an_option_of_app_and_route_is_checked_alike_in_both(name: str, value: object) -> None:
    options: dict[str, Any] = {name: value, "ban_rule": {"count": 1, "window": 1, "duration": 1}}
    route: dict[str, Any] = {"rate_limit_rules": "1/second"}
    with pytest.raises(ConfigError) as at_start_up:
        GateKeeper(Flask(__name__), **options)
    with pytest.raises(ConfigError) as at_decoration:
        GateKeeper().specific(**{**route, name: value})
    assert type(at_start_up.value) is type(at_decoration.value)
    assert str(at_start_up.value) == str(at_decoration.value)
    assert str(at_start_up.value).startswith(f"{name}")


@pytest.mark.parametrize("name", ["key_func", "report_when", "exempt_when"])
def test_an_import_string_names_a_function_of_the_app_but_not_of_a_route(name: str) -> None:
    app = Flask(__name__)
    options: dict[str, Any] = {name: "os:getcwd" if name != "report_when" else "os:fspath"}
    GateKeeper(app, ban_rule={"count": 1, "window": 1, "duration": 1}, **options)
    with pytest.raises(ConfigTypeError, match=rf"^{name}: expected a function called as"):
        GateKeeper().specific(rate_limit_rules="1/second", **options)


def test_limit_checks_scope_and_cost_as_specific_does() -> None:
    gk = GateKeeper()
    for options in ({"scope": ""}, {"scope": 5}, {"cost": 0}, {"cost": lambda r: 1}):
        values: dict[str, Any] = {"scope": "export", **options}
        with pytest.raises(ConfigError) as in_limit:
            gk.limit("1/second", **values)
        with pytest.raises(ConfigError) as in_specific:
            gk.specific("1/second", **values)
        assert str(in_limit.value) == str(in_specific.value)


# --- flask gatekeeper config --------------------------------------------------------------


def test_config_shows_each_default_in_force() -> None:
    app = Flask(__name__)
    GateKeeper(app)
    result = app.test_cli_runner().invoke(gatekeeper, ["config"])
    assert result.stdout.splitlines() == [
        f"{option.key} = {option.default!r}  (default)" for option in APP_OPTIONS
    ]
    assert "GATEKEEPER_MAX_CLIENTS = 100000  (default)" in result.stdout


def test_config_shows_the_header_that_trusted_proxies_read() -> None:
    app = Flask(__name__)
    GateKeeper(app, trusted_proxies=1)
    result = app.test_cli_runner().invoke(gatekeeper, ["config"])
    assert "GATEKEEPER_IP_HEADER = 'X-Forwarded-For'  (default)" in result.stdout.splitlines()


# --- docs/configuration.md ------------------------------------------------------------------


def documented(default: object) -> str:
    """How the configuration reference writes a default: a Python literal, with the docs'
    double quotes for text, or "empty" for an empty list."""
    if isinstance(default, str):
        return f'`"{default}"`'
    if default == ():
        return "empty"
    return f"`{default!r}`"


def table(heading: str) -> list[list[str]]:
    """The cells of each row of the first table after ``heading``."""
    text = DOCS.read_text(encoding="utf-8")
    after = text[text.index(heading) :]
    start = after.index("\n|")
    rows = []
    for line in after[start + 1 :].split("\n")[2:]:  # after the header and the rule
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def signature_block(call: str) -> str:
    """The signature written in the text block that starts with ``call``, on one line."""
    text = DOCS.read_text(encoding="utf-8")
    start = text.index(f"```text\n{call}") + len("```text\n")
    return " ".join(text[start : text.index("```", start)].split())


def test_the_options_table_is_the_apps_rows_with_their_keys_and_defaults() -> None:
    rows = table("## Options")
    assert [row[0] for row in rows] == [f"`{option.name}`" for option in APP_OPTIONS]
    for row, option in zip(rows, APP_OPTIONS):
        assert row[1] == f"`{option.key}`", option.name
        assert row[-1].startswith(documented(option.default)), option.name


def test_the_specific_table_is_the_route_rows() -> None:
    rows = table("## Per-route options")
    assert [row[0] for row in rows] == [f"`{option.name}`" for option in ROUTE_OPTIONS]


def test_the_documented_signatures_are_the_real_ones() -> None:
    shown_specific: list[str] = []
    for p in parameters(GateKeeper.specific)[1:]:
        if p.kind is Parameter.KEYWORD_ONLY and "*" not in shown_specific:
            shown_specific.append("*")
        shown_specific.append(f"{p.name}={p.default!r}")
    assert signature_block("gk.specific(") == f"gk.specific({', '.join(shown_specific)})"
    constructor = signature_block("GateKeeper(")
    shown = re.findall(r"(\w+)=None", constructor)
    assert shown == [p.name for p in parameters(GateKeeper)][: len(shown)]
