"""Export flask-gatekeeper's metrics to Prometheus, in one process or under gunicorn.

    pip install ".[prometheus]"          # in a checkout: the project and prometheus_client
    flask --app examples/prometheus.py run   # then: curl http://127.0.0.1:5000/metrics

Under gunicorn, set PROMETHEUS_MULTIPROC_DIR to an empty directory and share the counts
in Redis (GATEKEEPER_STORAGE_URI): a scrape of any worker then shows the sum of all.
gunicorn reads examples/gunicorn.conf.py (its working directory's, after --chdir), which
forgets the outage gauge of workers that exit.

    PROMETHEUS_MULTIPROC_DIR=$(mktemp -d) GATEKEEPER_STORAGE_URI=redis://localhost:6379 \\
        gunicorn -w 2 --chdir examples prometheus:app
"""

from __future__ import annotations

import os

from flask import Flask, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from flask_gatekeeper import GateKeeper
from flask_gatekeeper.prometheus import instrument

app = Flask(__name__)
app.config["GATEKEEPER_STORAGE_URI"] = os.environ.get("GATEKEEPER_STORAGE_URI", "memory://")
gk = GateKeeper(
    app,
    ban_rule={"count": 3, "window": 10, "duration": 600},
    rate_limit_rules=["20/second", "100 per 10 seconds"],
)
instrument(gk)  # the gatekeeper_* metrics, in prometheus_client's default registry


@app.route("/")
def index() -> str:
    return "hello\n"


@app.route("/export")
@gk.specific("2/hour")
def export() -> str:
    return "a,b\n1,2\n"


@app.route("/metrics")
@gk.bypass  # scraping is never counted, limited or banned
def metrics() -> Response:
    registry = REGISTRY
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:  # every worker's counts, summed
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
