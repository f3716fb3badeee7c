"""The examples shipped in ``examples/`` keep working."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prometheus_example_exports_counters_and_ban_reasons() -> None:
    pytest.importorskip("prometheus_client")
    example = load("prometheus")
    client = example.app.test_client()
    statuses = [client.get("/").status_code for _ in range(22)]
    assert statuses.count(429) == 2
    with example.app.app_context():
        example.gk.ban("192.0.2.1", 60)
    scrape = client.get("/metrics")
    assert scrape.status_code == 200  # bypassed: scraping never counts
    metrics = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in scrape.get_data(as_text=True).splitlines()
        if line.startswith("gatekeeper_")
    }
    assert metrics["gatekeeper_admitted_total"] == 20
    assert metrics["gatekeeper_rate_limited_total"] == 2
    assert metrics["gatekeeper_bans_total"] == 1
    assert metrics['gatekeeper_bans_by_reason_total{reason="manual"}'] == 1
    assert metrics["gatekeeper_tracked_clients"] == 1
