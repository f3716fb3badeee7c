"""Requests through Flask's test client from a named client, and what they answered.

A client is named by ``REMOTE_ADDR`` unless ``ip_header`` names the header the app reads
it from (the seed's apps read ``x-my-ip``): then only that header carries it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Optional

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

IP = "10.0.0.1"
OTHER_IP = "10.0.0.2"
ADMIN_IP = "10.0.0.99"


def _sent_by(ip: str, ip_header: Optional[str], headers: dict[str, str]) -> dict[str, Any]:
    """``client.open`` keywords that name the client ``ip``."""
    if ip_header is None:
        return {"headers": headers, "environ_base": {"REMOTE_ADDR": ip}}
    return {"headers": {**headers, ip_header: ip}}


def get(
    client: FlaskClient,
    path: str = "/",
    ip: str = IP,
    *,
    method: str = "GET",
    accept: Optional[str] = None,
    headers: Optional[Mapping[str, str]] = None,
    ip_header: Optional[str] = None,
) -> TestResponse:
    """One request from ``ip``, with ``headers`` and an ``Accept`` header when one is given."""
    sent = dict(headers or {})
    if accept is not None:
        sent["Accept"] = accept
    return client.open(path, method=method, **_sent_by(ip, ip_header, sent))


def statuses(
    client: FlaskClient, times: int, path: str = "/", ip: str = IP, **options: Any
) -> list[int]:
    """The status codes of ``times`` requests made at the same instant (``options`` as
    ``get`` takes them)."""
    return [get(client, path, ip, **options).status_code for _ in range(times)]


def status_codes(responses: Iterable[TestResponse]) -> list[int]:
    """The status codes of responses a test holds (open ones hold their slots)."""
    return [response.status_code for response in responses]


def bad_login(
    client: FlaskClient, ip: str = IP, *, ip_header: Optional[str] = None
) -> TestResponse:
    """A wrong password: the ``/login`` view reports ``ip``."""
    return client.post("/login", data={"password": "wrong"}, **_sent_by(ip, ip_header, {}))


def retry_after(response: TestResponse) -> int:
    """The ``Retry-After`` header, which must be whole seconds."""
    value = response.headers["Retry-After"]
    assert value.isdigit(), value
    return int(value)
