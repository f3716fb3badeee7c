"""Prometheus metrics of what the gate does: ``instrument(gk)``.

Every count is a ``prometheus_client`` ``Counter`` incremented when its event happens,
never a value read from ``gk.stats()`` at scrape time. prometheus_client's multi-process
mode (``PROMETHEUS_MULTIPROC_DIR``, for gunicorn) writes only its own metric objects to
the shared directory and sums them over the workers, so a collector that read ``stats()``
would report the one worker a scrape reaches. The same objects work in a single process.

Needs the ``prometheus`` extra (``prometheus_client``).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from typing import Callable

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
    from prometheus_client.core import GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - tested in a process without it
    raise ImportError(
        'flask_gatekeeper.prometheus needs prometheus_client: pip install "prometheus_client'
        '>=0.17" (or this project with its extra: pip install ".[prometheus]" in a checkout)'
    ) from exc

from .decision import BAN_REASONS, DEFAULT_OFFENCE
from .events import scope_label
from .extension import GateKeeper

__all__ = ["PrometheusMeter", "instrument"]

_METERS: weakref.WeakKeyDictionary[CollectorRegistry, PrometheusMeter] = weakref.WeakKeyDictionary()
"""The meter of each registry: instrumenting again reuses its metric objects (a registry
refuses a second metric of one name)."""


def instrument(gk: GateKeeper, registry: CollectorRegistry = REGISTRY) -> None:
    """Count every app of ``gk`` (those initialised already and those to come) in
    ``gatekeeper_*`` metrics of ``registry``, prometheus_client's default registry unless
    given. Extensions instrumented on one registry add up in the same metrics."""
    meter = _METERS.get(registry)
    if meter is None:
        meter = _METERS[registry] = PrometheusMeter(registry)
    meter.watch(gk)


class PrometheusMeter:
    """The ``gatekeeper_*`` metrics of one registry, counted from the gate's events
    (``events.Meter``). Counters follow ``gk.stats()``: the same events, summed over the
    processes in multi-process mode."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, documentation: str, *labels: str) -> Counter:
            return Counter(f"gatekeeper_{name}", documentation, labels, registry=registry)

        bans = counter("bans", "Bans started, by reason (the ban rule, by hand...).", "reason")
        for reason in BAN_REASONS:  # shown at 0 before the first ban of each reason
            bans.labels(reason=reason)
        offence_bans = counter(
            "offence_bans", "Bans a ban rule made, by offence (jail).", "offence"
        )
        offence_bans.labels(offence=DEFAULT_OFFENCE)
        self._counters: dict[str, Counter] = {
            "admitted": counter("admitted", "Requests checked and admitted."),
            "rate_limited": counter(
                "rate_limited", "Requests refused with 429 (or that would be, in a dry run)."
            ),
            "banned": counter(
                "banned", "Requests refused with 403 for a ban or the deny list (or dry run)."
            ),
            "reports": counter("reports", "Offences reported toward a ban rule."),
            "bans": bans,
            "offence_bans": offence_bans,
            "storage_errors": counter("storage_errors", "Failed storage calls."),
            "shadow_refused": counter(
                "shadow_refused", "Admitted requests that a shadow rule would have refused."
            ),
            "rule_refused": counter(
                "rule_refused", "Requests a rule refused with 429, by scope and rule.", *_RULE
            ),
            "rule_would_refuse": counter(
                "rule_would_refuse",
                "Requests a rule would have refused, let through (dry run or shadow rule), "
                "by scope and rule.",
                *_RULE,
            ),
        }
        """Each event the gate counts, by its field (``events.Meter.count``), and the
        counters of ``rule_refused``."""
        self._outage = Gauge(
            "gatekeeper_storage_outage",
            "1 while the storage is in an outage (in any process), else 0.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._down: weakref.WeakSet[object] = weakref.WeakSet()
        """The apps' ``Events`` whose storage is in an outage: the gauge is 1 while any
        is (two apps in one registry, one recovering, leave it at 1 for the other)."""
        self._outage_lock = threading.Lock()
        self.admitted = self._counters["admitted"].inc
        """Count one admitted request: the counter's own ``inc``, called directly."""
        self._rule_counts: dict[tuple[str, str, bool], Callable[[], None]] = {}
        """(scope, rule, dry_run) -> its labelled counter's ``inc``: ``labels()`` takes a
        lock and builds the label values at each call, which every 429 would pay."""
        self._extensions: weakref.WeakSet[GateKeeper] = weakref.WeakSet()
        registry.register(_TrackedClients(self._extensions))

    def watch(self, gk: GateKeeper) -> None:
        self._extensions.add(gk)
        gk._add_meter(self)

    def count(self, field: str, **labels: str) -> None:
        counter = self._counters.get(field)
        if counter is not None:  # a field that is not exported is not counted
            (counter.labels(**labels) if labels else counter).inc()

    def rule_refused(self, scope: str, rule: str, dry_run: bool) -> None:
        key = (scope, rule, dry_run)
        count = self._rule_counts.get(key)
        if count is None:
            counter = self._counters["rule_would_refuse" if dry_run else "rule_refused"]
            child = counter.labels(scope=scope_label(scope), rule=rule)
            count = self._rule_counts.setdefault(key, child.inc)
        count()

    def storage_down(self, source: object, down: bool) -> None:
        with self._outage_lock:
            if down:
                self._down.add(source)
            else:
                self._down.discard(source)
            self._outage.set(1 if self._down else 0)


_RULE = ("scope", "rule")


class _TrackedClients(Collector):
    """``gatekeeper_tracked_clients``: the entries the memory storages of the watched
    extensions hold now, read at scrape time (Redis keeps no such count: no sample). A
    multi-process scrape reads only the metric objects' files, so it leaves this out:
    each worker's memory storage is its own anyway."""

    def __init__(self, extensions: weakref.WeakSet[GateKeeper]) -> None:
        self._extensions = extensions

    def collect(self) -> Iterator[Metric]:
        counts = [
            tracked
            for gk in list(self._extensions)
            for gate in list(gk._gates)
            if isinstance(tracked := getattr(gate.settings.storage, "tracked", None), int)
        ]
        if counts:
            yield GaugeMetricFamily(
                "gatekeeper_tracked_clients", "Entries held by the memory storage.", sum(counts)
            )
