"""Rate limit header fields: the IETF httpapi draft's and, on request, the legacy trio.

``RateLimit-Policy`` lists every rule of the route as a Structured Field list item
``"name";q=<count>;w=<window>``; ``RateLimit`` reports the rule closest to its limit as
``"name";r=<remaining>;t=<seconds>``. The legacy ``X-RateLimit-*`` fields say the same
for that rule, with ``Reset`` as a Unix time as most clients expect.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Union

from .decision import GLOBAL_SCOPE, Usage
from .errors import ConfigError, ConfigTypeError
from .rules import ConcurrencyLimit, Rule
from .storage.plan import Scope

__all__ = ["HEADER_MODES", "parse_headers_option", "policy_name", "rate_limit_headers"]

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
        ]
        name = policy_name(usage.rule, usage.scope)
        fields.append(("RateLimit-Policy", ", ".join(dict.fromkeys(policies))))
        fields.append(("RateLimit", f'"{name}";r={usage.remaining};t={reset}'))
    if "legacy" in modes:
        fields.append(("X-RateLimit-Limit", str(usage.rule.count)))
        fields.append(("X-RateLimit-Remaining", str(usage.remaining)))
        fields.append(("X-RateLimit-Reset", str(math.ceil(time.time() + usage.reset))))
    return fields
