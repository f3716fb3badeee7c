"""What the storage decided about a request, and the HTTP refusals made from it.

``Decision`` is a frozen value with no Flask in it. ``Banned`` and ``RateLimited`` are
werkzeug ``HTTPException`` subclasses, so an app's ``@app.errorhandler(429)`` (or 403)
replaces our default response like any other error's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from werkzeug.exceptions import Forbidden, HTTPException, ServiceUnavailable, TooManyRequests

from .rules import BanRule, Rule

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment
    from werkzeug.sansio.response import Response

__all__ = [
    "ADMITTED",
    "Banned",
    "Decision",
    "Denied",
    "RateLimited",
    "StorageUnavailable",
    "retry_after_header",
]


@dataclass(frozen=True)
class Decision:
    """The outcome of one atomic storage call for one request.

    ``retry_after`` is the exact wait in seconds until the request would be admitted
    (the ban's end, or the moment every full rule has room again); ``rule`` is the full
    rule that makes the client wait longest.
    """

    admitted: bool
    banned: bool = False
    retry_after: float = 0.0
    rule: Optional[Rule] = None


ADMITTED = Decision(admitted=True)
"""Shared by every admitted request, so the common path allocates nothing."""


def retry_after_header(seconds: float) -> int:
    """Whole seconds, rounded up, never below 1: a client that waits this long is admitted."""
    return max(1, math.ceil(seconds))


class _PlainTextRefusal(HTTPException):
    """Short plain-text body, like flask-gatekeeper 1.0's, plus a ``Retry-After`` header."""

    retry_after_seconds: Optional[int] = None

    def get_body(
        self,
        environ: WSGIEnvironment | None = None,
        scope: dict[str, Any] | None = None,
    ) -> str:
        return f"{self.description}\n"

    def get_headers(
        self,
        environ: WSGIEnvironment | None = None,
        scope: dict[str, Any] | None = None,
    ) -> list[tuple[str, str]]:
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        if self.retry_after_seconds is not None:
            headers.append(("Retry-After", str(self.retry_after_seconds)))
        return headers


class Banned(_PlainTextRefusal, Forbidden):
    """403: the client is banned. ``retry_after`` is the exact number of seconds left."""

    def __init__(
        self,
        client: str,
        retry_after: float,
        ban_rule: BanRule | None = None,
        response: Response | None = None,
    ) -> None:
        seconds = retry_after_header(retry_after)
        reason = f" ({ban_rule})" if ban_rule is not None else ""
        super().__init__(f"ip {client} banned for {seconds}s{reason}", response)
        self.client = client
        self.retry_after = retry_after
        self.retry_after_seconds = seconds
        self.ban_rule = ban_rule


class Denied(_PlainTextRefusal, Forbidden):
    """403: the client is on the deny list; no ``Retry-After``, waiting will not help."""

    def __init__(self, client: str, response: Response | None = None) -> None:
        super().__init__(f"ip {client} denied", response)
        self.client = client


class RateLimited(_PlainTextRefusal, TooManyRequests):
    """429: a rate rule is full. ``retry_after`` is the wait until every full rule admits."""

    def __init__(
        self,
        client: str,
        retry_after: float,
        rule: Rule,
        response: Response | None = None,
    ) -> None:
        seconds = retry_after_header(retry_after)
        super().__init__(f"ip {client} rate limited for {seconds}s (over {rule})", response)
        self.client = client
        self.retry_after = retry_after  # type: ignore[assignment]  # exact, not werkzeug's
        self.retry_after_seconds = seconds
        self.rule = rule


class StorageUnavailable(_PlainTextRefusal, ServiceUnavailable):
    """503: the storage is down and ``fail_open=False``; try again in ``retry_after`` s."""

    def __init__(self, retry_after: float, response: Response | None = None) -> None:
        seconds = retry_after_header(retry_after)
        super().__init__(f"rate limiter unavailable, retry in {seconds}s", response)
        self.retry_after = retry_after  # type: ignore[assignment]  # exact, not werkzeug's
        self.retry_after_seconds = seconds
