"""What the benchmarks share to call a Flask app as a WSGI server would, minus the server:
a ``start_response`` that records every status line, and the view they all serve.

(``_peer_worker.py`` keeps its own copy: it runs with ``python -I`` in the peers' venvs,
where this folder is not importable.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import OptExcInfo

statuses: dict[str, int] = {}
"""Every status line seen by ``start_response`` since the caller last cleared it."""


def index() -> str:
    return "ok"


def _write(data: bytes) -> None:
    """The ``write`` callable of ``start_response``; Flask never calls it."""


def start_response(
    status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None, /
) -> Callable[[bytes], object]:
    statuses[status] = statuses.get(status, 0) + 1
    return _write
