"""Time as both storages count it: whole microseconds, with the limits both enforce.

This is the one place these numbers are written. ``MemoryStorage`` computes with them in
Python; ``RedisStorage`` puts them into its Lua scripts' preamble when it loads them
(``lua_constants``), so the two storages cannot drift apart.

Spans (windows, ban durations) are rounded *up* to whole microseconds, so a wait is
never shorter than the rule says and a client that waits ``Retry-After`` seconds is
admitted; instants (the clock) are rounded to the nearest microsecond.
"""

from __future__ import annotations

import math

__all__ = [
    "MAX_MICROSECONDS",
    "MAX_SECONDS",
    "MICROSECONDS",
    "RESOLUTION",
    "instant",
    "lua_constants",
    "microseconds",
    "seconds",
]

MICROSECONDS = 1_000_000
"""Microseconds per second."""

RESOLUTION = 1 / MICROSECONDS
"""The shortest window or duration a rule may have: one microsecond."""

MAX_SECONDS = 10**9
"""About 31 years: the longest window or ban. Every escalated ban is capped here too."""

MAX_MICROSECONDS = MAX_SECONDS * MICROSECONDS
"""``MAX_SECONDS`` in microseconds: 1e15, exact in a double (Lua's only number type)."""

_ULPS = 4
"""Float noise tolerated when rounding up (``0.1 * 1e6`` is 100000.00000000001)."""


def microseconds(span: float) -> int:
    """A span of seconds as whole microseconds, rounded up, float noise aside."""
    exact = span * MICROSECONDS
    nearest = round(exact)
    if abs(exact - nearest) <= _ULPS * math.ulp(exact):
        return nearest
    return math.ceil(exact)


def instant(now: float) -> int:
    """A clock reading (seconds) as whole microseconds, to the nearest."""
    return round(now * MICROSECONDS)


def seconds(count: float) -> float:
    """Microseconds back as seconds."""
    return count / MICROSECONDS


def lua_constants() -> str:
    """The constants above as Lua ``local`` statements, for the scripts' preamble."""
    return f"local MICROSECONDS = {MICROSECONDS}\nlocal MAX_MICROSECONDS = {MAX_MICROSECONDS}\n"
