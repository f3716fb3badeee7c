"""gunicorn's configuration for examples/prometheus.py in multi-process mode.

gunicorn reads ``gunicorn.conf.py`` from the directory it runs in (``--chdir examples``
makes that this one), or the file ``-c`` names.
"""

from typing import Any

from prometheus_client import multiprocess


def child_exit(server: Any, worker: Any) -> None:  # gunicorn's Arbiter and Worker
    """A worker exited: forget its gauges (``gatekeeper_storage_outage``)."""
    multiprocess.mark_process_dead(worker.pid)
