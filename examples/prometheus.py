"""Export flask-gatekeeper's counters and signals to Prometheus.

    pip install prometheus_client
    flask --app examples/prometheus.py run   # then: curl http://127.0.0.1:5000/metrics

``gk.stats()`` gives this process's counters (each worker of a multi-process server
exports its own: let Prometheus sum them); the ``client_banned`` signal adds a counter of
bans by reason.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import Flask, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flask_gatekeeper import GateKeeper, signals

app = Flask(__name__)
gk = GateKeeper(
    app,
    ban_rule={"count": 3, "window": 10, "duration": 600},
    rate_limit_rules=["20/second", "100 per 10 seconds"],
)
registry = CollectorRegistry()

bans_by_reason = Counter(
    "gatekeeper_bans_by_reason", "Bans started, by reason.", ["reason"], registry=registry
)


@signals.client_banned.connect_via(app)
def count_ban(sender: Flask, client: str, duration: float, reason: str, **extra: object) -> None:
    bans_by_reason.labels(reason=reason).inc()


class GateKeeperCollector(Collector):
    """Reads ``gk.stats()`` at each scrape."""

    def collect(self) -> Iterator[Metric]:
        with app.app_context():
            stats = gk.stats()
        tracked = stats.pop("tracked_clients")
        for name, value in stats.items():
            yield CounterMetricFamily(f"gatekeeper_{name}", f"Requests or events: {name}.", value)
        if tracked is not None:
            yield GaugeMetricFamily(
                "gatekeeper_tracked_clients", "Client logs held in memory.", tracked
            )


registry.register(GateKeeperCollector())


@app.route("/")
def index() -> str:
    return "hello\n"


@app.route("/metrics")
@gk.bypass
def metrics() -> Response:
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
