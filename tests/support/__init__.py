"""What the tests share besides their fixtures (those are in ``conftest.py``).

- ``apps``: option sets and routes for the ``make_app`` fixture; the demo, loaded.
- ``requests``: requests from a named client through Flask's test client.
- ``events``: recorders of signals and log records.
- ``storages``: storages for the outage tests.
- ``servers``: apps served over real HTTP, in a thread or in their own processes.
- ``redis_server``: real ``redis-server`` processes (not imported here: redis-py is an extra).

The names of the first four are imported here: ``from support import IP, get, recording``.
"""

from support.apps import (
    DEMO,
    OPERATIONS_ROUTES,
    PEER_OPTIONS,
    ROOT,
    RULES,
    SEED_IP_HEADER,
    SEED_OPTIONS,
    SEED_ROUTES,
    AppFactory,
    Route,
    admin,
    alone,
    burst,
    health,
    index,
    load_script,
    login,
    trap,
)
from support.events import SIGNALS, Event, gatekeeper_logs, recording
from support.requests import (
    ADMIN_IP,
    IP,
    OTHER_IP,
    bad_login,
    get,
    retry_after,
    status_codes,
    statuses,
)
from support.storages import ProbingClock, probed_storage

__all__ = [
    "ADMIN_IP",
    "DEMO",
    "IP",
    "OPERATIONS_ROUTES",
    "OTHER_IP",
    "PEER_OPTIONS",
    "ROOT",
    "RULES",
    "SEED_IP_HEADER",
    "SEED_OPTIONS",
    "SEED_ROUTES",
    "SIGNALS",
    "AppFactory",
    "Event",
    "ProbingClock",
    "Route",
    "admin",
    "alone",
    "bad_login",
    "burst",
    "gatekeeper_logs",
    "get",
    "health",
    "index",
    "load_script",
    "login",
    "probed_storage",
    "recording",
    "retry_after",
    "status_codes",
    "statuses",
    "trap",
]
