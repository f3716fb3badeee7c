"""``make demo``: the port it listens on, and the curl walkthrough it prints, run for real.

The walkthrough's curl lines run in ``bash`` against the demo served on a free loopback
port, as a reader would paste them (skipped without ``curl`` and ``bash``). The demo's
storage runs on a fake clock there, so a slow machine cannot spread a burst over two
windows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from types import ModuleType
from typing import Optional

import pytest

from flask_gatekeeper import MemoryStorage
from flask_gatekeeper.testing import FakeClock
from support import DEMO, load_script
from support.servers import serving


def load_demo() -> ModuleType:
    return load_script(DEMO, "gatekeeper_demo_walkthrough")


@pytest.mark.parametrize(
    ("value", "port"), [(None, 5000), ("", 5000), ("5001", 5001), (" 8080 ", 8080)]
)
def test_port_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: Optional[str], port: int
) -> None:
    demo = load_demo()
    if value is None:
        monkeypatch.delenv("PORT", raising=False)
    else:
        monkeypatch.setenv("PORT", value)
    assert demo.port_from_environment() == port


@pytest.mark.parametrize("value", ["http", "0", "65536", "-1"])
def test_a_bad_port_stops_with_a_message(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("PORT", value)
    with pytest.raises(SystemExit, match="PORT must be a port number"):
        load_demo().port_from_environment()


def test_makefile_passes_port_to_the_demo() -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make not found on PATH")
    root = DEMO.parent.parent
    dry_run = subprocess.run(
        [make, "-n", "demo", "PORT=5123", "VENV=.venv-dry-run"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "PORT=5123 .venv-dry-run/bin/python examples/demo.py" in dry_run.stdout


@pytest.fixture
def served_demo() -> Iterator[tuple[ModuleType, int]]:
    demo = load_demo()
    app, _ = demo.create_app(storage=MemoryStorage(clock=FakeClock()))  # time stands still
    with serving(app) as port:
        yield demo, port


@pytest.mark.e2e
def test_the_printed_walkthrough_does_what_it_says(served_demo: tuple[ModuleType, int]) -> None:
    if shutil.which("curl") is None or shutil.which("bash") is None:
        pytest.skip("the walkthrough needs curl and bash")
    demo, port = served_demo
    text = demo.walkthrough(port)
    assert f"http://127.0.0.1:{port}" in text.splitlines()[0]
    commands = "\n".join(
        line for line in text.splitlines()[1:] if not line.lstrip().startswith("#")
    )
    proxies = {"http_proxy", "https_proxy", "all_proxy"}
    env = {name: value for name, value in os.environ.items() if name.lower() not in proxies}
    result = subprocess.run(
        ["bash", "-c", commands], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert " ".join(["200"] * 20 + ["429"]) in out  # 21 requests in a second
    assert "ip 10.0.0.4 rate limited for 2s (over 1 request in a 2s window)" in out
    assert " ".join(["200"] * 10 + ["429"]) in out  # /standalone: 10 per hour
    assert out.count("bad password") == 3
    assert "HTTP/1.1 403 FORBIDDEN" in out
    assert "Retry-After: 600" in out
    assert "ip 10.0.0.2 banned for 600s (reported 3 times in a 10s window)" in out
    lines = out.rstrip("\n").splitlines()
    assert len(lines[-1]) == 32  # the right password's token
    assert lines[-2] == "ok"  # /bypass still answers the banned client
