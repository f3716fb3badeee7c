"""The examples shipped in ``examples/`` keep working."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from flask.testing import FlaskClient

EXAMPLES = Path(__file__).parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scraped(client: FlaskClient) -> dict[str, float]:
    """The ``gatekeeper_*`` samples of a scrape of ``/metrics``, by name and labels."""
    scrape = client.get("/metrics")
    assert scrape.status_code == 200
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in scrape.get_data(as_text=True).splitlines()
        if line.startswith("gatekeeper_")
    }


def test_prometheus_example_exports_counters_by_rule_and_ban_reasons() -> None:
    pytest.importorskip("prometheus_client")
    example = load("prometheus")
    client = example.app.test_client()
    before = scraped(client)  # the default registry: other loads of the example counted too
    statuses = [client.get("/").status_code for _ in range(22)]
    other = {"REMOTE_ADDR": "192.0.2.7"}  # the global rules are full for the first
    statuses += [client.get("/export", environ_base=other).status_code for _ in range(3)]
    assert statuses.count(429) == 2 + 1
    with example.app.app_context():
        example.gk.ban("192.0.2.1", 60)
    after = scraped(client)  # bypassed: scraping never counts
    counted = {name: value - before.get(name, 0) for name, value in after.items()}
    assert counted["gatekeeper_admitted_total"] == 20 + 2
    assert counted["gatekeeper_rate_limited_total"] == 3
    assert counted['gatekeeper_rule_refused_total{rule="20-per-1s",scope="global"}'] == 2
    assert counted['gatekeeper_rule_refused_total{rule="2-per-3600s",scope="export"}'] == 1
    assert counted['gatekeeper_bans_total{reason="manual"}'] == 1
    assert counted['gatekeeper_bans_total{reason="reports"}'] == 0
    assert after["gatekeeper_storage_outage"] == 0
    assert after["gatekeeper_tracked_clients"] >= 2  # this app's: global and /export logs
