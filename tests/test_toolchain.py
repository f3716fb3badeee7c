"""The development toolchain is the pinned one: ``make test`` gives the same answer any day.

Every make target installs through ``constraints.txt``; these tests check that the file
pins each tool exactly, and that the venv ``make test`` built (``.venv``) holds those very
versions. Other venvs (``make test-oldest``, ``make test-latest``, a developer's own) hold
other versions on purpose, so the second check applies to ``.venv`` only.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PINS = ROOT / "constraints.txt"
TOOLS = (
    "pytest",
    "hypothesis",
    "mypy",
    "ruff",
    "redis",
    "flask",
    "werkzeug",
    "pip",
    "hatchling",
    "flask-limiter",
    "prometheus-client",
)
"""What ``make test`` runs or tests against: each must be pinned."""

_PIN = re.compile(r"([A-Za-z0-9._-]+)==([^\s;#]+)")


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def pins() -> dict[str, str]:
    found = {}
    for line in PINS.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _PIN.fullmatch(line)
        assert match, f"constraints.txt: {line!r} is not an exact pin (name==version)"
        found[_name(match[1])] = match[2]
    return found


def test_every_tool_is_pinned_exactly() -> None:
    pinned = pins()
    assert [tool for tool in TOOLS if tool not in pinned] == []


def test_every_make_target_that_installs_goes_through_the_pins() -> None:
    dry_run = subprocess.run(
        ["make", "-n", "-B", "test", "demo", "dist-check", "VENV=.venv-dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    installs = [line for line in dry_run.stdout.splitlines() if "pip install" in line]
    assert installs
    assert [line for line in installs if f'PIP_CONSTRAINT="{PINS}"' not in line] == []


def test_the_venv_of_make_test_holds_the_pinned_versions() -> None:
    if Path(sys.prefix).resolve() != ROOT / ".venv":
        pytest.skip("not running in the .venv that `make test` builds")
    pinned_versions, wrong = pins(), {}
    for distribution in metadata.distributions():
        name = _name(distribution.metadata["Name"])
        pinned = pinned_versions.get(name)
        if pinned is not None and distribution.version != pinned:
            wrong[name] = (distribution.version, pinned)
    assert wrong == {}
    installed = {_name(d.metadata["Name"]) for d in metadata.distributions()}
    assert [tool for tool in TOOLS if tool not in installed] == []
