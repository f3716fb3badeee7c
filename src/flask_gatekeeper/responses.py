"""What the client is told: the HTTP refusals made from a storage's decision, and the
RateLimit header fields of the responses that are not refused.

Refusals are werkzeug ``HTTPException`` subclasses, so an app's
``@app.errorhandler(429)`` (or 403) replaces our default response like any other
error's. Each carries the exact wait as ``retry_after_exact`` (seconds, a float) and the
header's whole seconds as werkzeug's own ``retry_after``; its body is one line of plain
text, or problem+json for a client that prefers JSON.

Header fields: the IETF httpapi draft's and, on request, the legacy trio.
``RateLimit-Policy`` lists every rule of the route as a Structured Field list item
``"name";q=<count>;w=<window>``; ``RateLimit`` reports the rule closest to its limit as
``"name";r=<remaining>;t=<seconds>``. The legacy ``X-RateLimit-*`` fields say the same
for that rule, with ``Reset`` as a Unix time as most clients expect.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Optional, Union

from werkzeug.datastructures import MIMEAccept
from werkzeug.exceptions import Forbidden, HTTPException, ServiceUnavailable, TooManyRequests
from werkzeug.http import parse_accept_header

from .decision import GLOBAL_SCOPE, IN_FLIGHT_WAIT, Usage
from .errors import ConfigError, ConfigTypeError
from .identity.keys import key_kind
from .rules import BanRule, ConcurrencyLimit, Rule
from .storage.plan import Scope

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment
    from werkzeug.sansio.response import Response

__all__ = [
    "HEADER_MODES",
    "Banned",
    "Denied",
    "RateLimited",
    "StorageUnavailable",
    "TooManyInFlight",
    "parse_headers_option",
    "policy_name",
    "rate_limit_headers",
    "retry_after_header",
]


def retry_after_header(seconds: float) -> int:
    """Whole seconds, rounded up, never below 1: a client that waits this long is admitted."""
    return max(1, math.ceil(seconds))


_PROBLEM_JSON = "application/problem+json"
_OFFERED = ("text/plain", _PROBLEM_JSON, "application/json")


@functools.lru_cache(maxsize=256)
def _prefers_json(accept_header: str) -> bool:
    """The negotiation for one ``Accept`` value, parsed once: clients send few values."""
    accept = parse_accept_header(accept_header, MIMEAccept)
    return accept.best_match(_OFFERED) in _OFFERED[1:]


class _TextOrJsonRefusal(HTTPException):
    """A refusal with a ``Retry-After`` header and a short body: one line of plain text,
    like flask-gatekeeper 1.0's, or problem+json when the client prefers JSON.

    ``wait`` is the exact wait in seconds; ``retry_after`` (werkzeug's name and type) is
    the header's value, whole seconds rounded up; None when waiting will not help."""

    wait: Optional[float] = None
    retry_after: Union[datetime, int, None] = None  # werkzeug's; ours are whole seconds

    def _set_wait(self, wait: float, seconds: int) -> None:
        """After werkzeug's ``__init__``, which resets ``retry_after``: the exact wait and
        the header's seconds, computed once by the caller for its description too."""
        self.wait = wait
        self.retry_after = seconds

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
        if self.retry_after is not None:
            problem["retry_after"] = self.retry_after
        problem.update(self.problem_members())
        return problem

    def get_body(
        self,
        environ: WSGIEnvironment | None = None,
        scope: dict[str, Any] | None = None,
    ) -> str:
        return self.response_parts(environ)[0]

    def get_headers(
        self,
        environ: WSGIEnvironment | None = None,
        scope: dict[str, Any] | None = None,
    ) -> list[tuple[str, str]]:
        return self.response_parts(environ)[1]

    def response_parts(self, environ: WSGIEnvironment | None) -> tuple[str, list[tuple[str, str]]]:
        """``get_body`` and ``get_headers`` at once, the negotiation made once: for a
        response built without werkzeug running the exception, and for werkzeug's."""
        if (
            environ is not None
            and "HTTP_ACCEPT" in environ
            and _prefers_json(environ["HTTP_ACCEPT"])
        ):
            body, content_type = json.dumps(self._problem()), _PROBLEM_JSON
        else:
            body, content_type = f"{self.description}\n", "text/plain; charset=utf-8"
        if self.retry_after is None:
            return body, [("Content-Type", content_type)]
        return body, [("Content-Type", content_type), ("Retry-After", str(self.retry_after))]


def _named(client: str, ipv6_prefix: int) -> str:
    """The client as a body names it (``key_kind``): ``ip 10.0.0.1``, ``network
    203.0.113.0/24`` or ``client user-42``; ``ipv6_prefix`` is the app's, the length of
    one IPv6 client, whose key is a network's text."""
    return f"{key_kind(client, ipv6_prefix)} {client}"


class Banned(_TextOrJsonRefusal, Forbidden):
    """403: the client is banned for ``wait`` more seconds; ``rule`` (also ``ban_rule``)
    is the ban rule, None for a ban set by hand; ``offence`` names the offence of
    ``ban_rules`` whose reports made the ban (None: the default offence's, or by hand)."""

    def __init__(
        self,
        client: str,
        wait: float,
        ban_rule: BanRule | None = None,
        response: Response | None = None,
        *,
        ipv6_prefix: int = 64,
        offence: str | None = None,
    ) -> None:
        seconds = retry_after_header(wait)
        reason = f" ({ban_rule})" if ban_rule is not None else ""
        if offence is not None and ban_rule is not None:  # an offence of ``ban_rules``
            reason = f" ({offence}: {ban_rule})"
        super().__init__(f"{_named(client, ipv6_prefix)} banned for {seconds}s{reason}", response)
        self._set_wait(wait, seconds)
        self.client = client
        self.ban_rule = self.rule = ban_rule
        self.offence = offence


class Denied(_TextOrJsonRefusal, Forbidden):
    """403: the client is on the deny list; no ``Retry-After``, waiting will not help."""

    def __init__(
        self, client: str, response: Response | None = None, *, ipv6_prefix: int = 64
    ) -> None:
        super().__init__(f"{_named(client, ipv6_prefix)} denied", response)
        self.client = client


class RateLimited(_TextOrJsonRefusal, TooManyRequests):
    """429: a rate rule is full; ``wait`` is the exact wait until every full rule admits.
    ``policy`` names the rule as the ``RateLimit`` header fields do. (Its subclass
    ``TooManyInFlight`` names a ``ConcurrencyLimit`` as its ``rule``.)"""

    wait: float
    rule: Union[Rule, ConcurrencyLimit]

    def __init__(
        self,
        client: str,
        wait: float,
        rule: Rule,
        response: Response | None = None,
        *,
        policy: str | None = None,
        ipv6_prefix: int = 64,
    ) -> None:
        seconds = retry_after_header(wait)
        text = f"{_named(client, ipv6_prefix)} rate limited for {seconds}s (over {rule})"
        super().__init__(text, response)
        self._set_wait(wait, seconds)
        self.client = client
        self.rule = rule
        self.policy = policy or rule.name

    def problem_members(self) -> dict[str, Any]:
        return {"violated-policies": [self.policy]}


class TooManyInFlight(RateLimited):
    """429: the client already has ``rule.count`` requests in flight (a ``ConcurrencyLimit``)
    in the scope; one may be admitted as soon as another ends, so ``Retry-After`` is 1."""

    rule: ConcurrencyLimit

    def __init__(
        self,
        client: str,
        limit: ConcurrencyLimit,
        response: Response | None = None,
        *,
        policy: str | None = None,
        ipv6_prefix: int = 64,
    ) -> None:
        seconds = retry_after_header(IN_FLIGHT_WAIT)
        who = _named(client, ipv6_prefix)
        text = f"{who} has too many requests in flight (at most {limit.count} at once)"
        TooManyRequests.__init__(self, f"{text}, retry in {seconds}s", response)
        self._set_wait(IN_FLIGHT_WAIT, seconds)
        self.client = client
        self.rule = limit
        self.policy = policy or limit.name


class StorageUnavailable(_TextOrJsonRefusal, ServiceUnavailable):
    """503: the storage is down and ``on_outage="closed"`` (``fail_open=False``); try
    again in ``wait`` seconds."""

    def __init__(self, wait: float, response: Response | None = None) -> None:
        seconds = retry_after_header(wait)
        super().__init__(f"rate limiter unavailable, retry in {seconds}s", response)
        self._set_wait(wait, seconds)


# -- RateLimit header fields --------------------------------------------------------------

HEADER_MODES = ("ietf", "legacy", "both")


def parse_headers_option(value: object, name: str) -> frozenset[str]:
    """``True``/``"ietf"``, ``"legacy"``, ``"both"`` or ``False``: which fields to send."""
    if value is True:
        value = "ietf"
    if value is False:
        return frozenset()
    if not isinstance(value, str):
        raise ConfigTypeError(
            f"{name}: expected True, False or one of {HEADER_MODES}, got {value!r}"
        )
    if value not in HEADER_MODES:
        raise ConfigError(f"{name}: expected True, False or one of {HEADER_MODES}, got {value!r}")
    return frozenset(("ietf", "legacy")) if value == "both" else frozenset((value,))


def _number(seconds: float) -> str:
    """A Structured Field integer, or a decimal with one to three fractional digits
    (never 0: a window shorter than a millisecond reads as 0.001)."""
    value = max(round(float(seconds), 3), 0.001)
    if value.is_integer():
        return str(int(value))
    return f"{value:.3f}".rstrip("0")


def policy_name(rule: Union[Rule, ConcurrencyLimit], scope_name: str = GLOBAL_SCOPE) -> str:
    """The rule's name, ``"route-"`` in front for a ``specific`` route's own rule."""
    return rule.name if scope_name == GLOBAL_SCOPE else f"route-{rule.name}"


def rate_limit_headers(
    scopes: Sequence[Scope], usage: Usage, modes: frozenset[str]
) -> list[tuple[str, str]]:
    """The header fields for a response of a route with ``scopes``."""
    fields = []
    reset = max(0, math.ceil(usage.reset))
    if "ietf" in modes:
        policies = [
            f'"{policy_name(rule, scope.name)}";q={rule.count};w={_number(rule.window)}'
            for scope in scopes
            for rule in scope.rules
            if not rule.shadow  # the fields describe what enforces
        ]
        name = policy_name(usage.rule, usage.scope)
        fields.append(("RateLimit-Policy", ", ".join(dict.fromkeys(policies))))
        fields.append(("RateLimit", f'"{name}";r={usage.remaining};t={reset}'))
    if "legacy" in modes:
        fields.append(("X-RateLimit-Limit", str(usage.rule.count)))
        fields.append(("X-RateLimit-Remaining", str(usage.remaining)))
        fields.append(("X-RateLimit-Reset", str(math.ceil(time.time() + usage.reset))))
    return fields
