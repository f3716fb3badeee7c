"""What the storage decided about a request, and the HTTP refusals made from it.

``Decision`` is a frozen value with no Flask in it. ``Banned`` and ``RateLimited`` are
werkzeug ``HTTPException`` subclasses, so an app's ``@app.errorhandler(429)`` (or 403)
replaces our default response like any other error's.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from werkzeug.datastructures import MIMEAccept
from werkzeug.exceptions import Forbidden, HTTPException, ServiceUnavailable, TooManyRequests
from werkzeug.http import parse_accept_header

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
    "Usage",
    "retry_after_header",
]


@dataclass(frozen=True)
class Usage:
    """Where a client stands against one rule: for the ``RateLimit`` header field.

    ``reset`` is the number of seconds until the oldest request still counted stops
    counting (0 when none counts).
    """

    rule: Rule
    remaining: int
    reset: float


@dataclass(frozen=True)
class Decision:
    """The outcome of one atomic storage call for one request.

    ``retry_after`` is the exact wait in seconds until the request would be admitted
    (the ban's end, or the moment every full rule has room again); ``rule`` is the full
    rule that makes the client wait longest. ``usage``, when asked for, is the rule
    closest to its limit. ``new_ban`` is the duration of a ban this request started
    (a refusal counted as a report); ``manual`` says a ban was set by hand.
    """

    admitted: bool
    banned: bool = False
    retry_after: float = 0.0
    rule: Optional[Rule] = None
    usage: Optional[Usage] = None
    new_ban: Optional[float] = None
    manual: bool = False


ADMITTED = Decision(admitted=True)
"""Shared by every admitted request, so the common path allocates nothing."""


def retry_after_header(seconds: float) -> int:
    """Whole seconds, rounded up, never below 1: a client that waits this long is admitted."""
    return max(1, math.ceil(seconds))


_PROBLEM_JSON = "application/problem+json"
_OFFERED = ("text/plain", _PROBLEM_JSON, "application/json")


def _wants_json(environ: WSGIEnvironment | None) -> bool:
    """Whether the client prefers JSON to plain text (RFC 9457 problem details)."""
    if environ is None or "HTTP_ACCEPT" not in environ:
        return False
    accept = parse_accept_header(environ["HTTP_ACCEPT"], MIMEAccept)
    return accept.best_match(_OFFERED) in _OFFERED[1:]


class _PlainTextRefusal(HTTPException):
    """A refusal with a ``Retry-After`` header and a short body: one line of plain text,
    like flask-gatekeeper 1.0's, or problem+json when the client prefers JSON."""

    retry_after_seconds: Optional[int] = None

    def problem_members(self) -> dict[str, Any]:
        """Members added to the problem details (RFC 9457 extension members)."""
        return {}

    def _problem(self) -> dict[str, Any]:
        problem: dict[str, Any] = {
            "type": "about:blank",
            "title": self.name,
            "status": self.code,
            "detail": self.description,
        }
        if self.retry_after_seconds is not None:
            problem["retry_after"] = self.retry_after_seconds
        problem.update(self.problem_members())
        return problem

    def get_body(
        self,
        environ: WSGIEnvironment | None = None,
        scope: dict[str, Any] | None = None,
    ) -> str:
        if _wants_json(environ):
            return json.dumps(self._problem())
        return f"{self.description}\n"

    def get_headers(
        self,
        environ: WSGIEnvironment | None = None,
        scope: dict[str, Any] | None = None,
    ) -> list[tuple[str, str]]:
        content_type = _PROBLEM_JSON if _wants_json(environ) else "text/plain; charset=utf-8"
        headers = [("Content-Type", content_type)]
        if self.retry_after_seconds is not None:
            headers.append(("Retry-After", str(self.retry_after_seconds)))
        return headers


class Banned(_PlainTextRefusal, Forbidden):
    """403: the client is banned. ``retry_after`` is the exact number of seconds left;
    ``rule`` (also ``ban_rule``) is the ban rule, None for a ban set by hand."""

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
        self.ban_rule = self.rule = ban_rule


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
        *,
        policy: str | None = None,
    ) -> None:
        seconds = retry_after_header(retry_after)
        super().__init__(f"ip {client} rate limited for {seconds}s (over {rule})", response)
        self.client = client
        self.retry_after = retry_after  # type: ignore[assignment]  # exact, not werkzeug's
        self.retry_after_seconds = seconds
        self.rule = rule
        self.policy = policy or rule.name

    def problem_members(self) -> dict[str, Any]:
        return {"violated-policies": [self.policy]}


class StorageUnavailable(_PlainTextRefusal, ServiceUnavailable):
    """503: the storage is down and ``fail_open=False``; try again in ``retry_after`` s."""

    def __init__(self, retry_after: float, response: Response | None = None) -> None:
        seconds = retry_after_header(retry_after)
        super().__init__(f"rate limiter unavailable, retry in {seconds}s", response)
        self.retry_after = retry_after  # type: ignore[assignment]  # exact, not werkzeug's
        self.retry_after_seconds = seconds
