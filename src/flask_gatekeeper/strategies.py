"""The O(1)-memory strategies, as pure arithmetic on a few numbers per client and rule.

The sliding log (the default, exact) lives in the storages themselves: it keeps the
newest ``count`` timestamps. The other strategies keep a fixed-size state:

- ``fixed-window``: ``[window index, count]``. Windows are aligned per client, offset by a
  stable hash of its key, so that all clients do not reset at the same instant.
- ``sliding-window``: ``[window index, this window's count, the previous window's]``; the
  previous count is weighted by how much of it still overlaps the sliding window (the
  approximation Cloudflare and others use). A request is admitted only while the
  estimate, itself included, stays within ``count``. Worst case: when the previous
  window's requests all came at its very end, nearly ``2 * count`` requests can be
  admitted within one real sliding window; with evenly spread traffic it is close to
  exact (and it errs on the strict side when they came at its start).
- ``gcra``: ``[theoretical arrival time]``, the generic cell rate algorithm: a burst of
  ``count`` requests, then one every ``window / count`` (a token bucket, in one number).

All times are microseconds, computed with the same expressions as ``storage/redis/lua/`` so
that the memory and Redis storages take identical decisions for the same clock.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Optional

from .errors import ConfigError

__all__ = [
    "DEFAULT_STRATEGY",
    "FIXED_WINDOW",
    "GCRA",
    "SLIDING_LOG",
    "SLIDING_WINDOW",
    "STRATEGIES",
    "STRATEGY_CODES",
    "check",
    "check_strategy",
    "offset",
    "record",
    "refund",
    "usage",
]

SLIDING_LOG = "sliding-log"
FIXED_WINDOW = "fixed-window"
SLIDING_WINDOW = "sliding-window"
GCRA = "gcra"
STRATEGIES = (SLIDING_LOG, FIXED_WINDOW, SLIDING_WINDOW, GCRA)
DEFAULT_STRATEGY = SLIDING_LOG
STRATEGY_CODES = {FIXED_WINDOW: 1, SLIDING_WINDOW: 2, GCRA: 3}
"""How the Lua scripts name the stateful strategies."""

State = Optional[Sequence[float]]

FLASK_LIMITER_NAMES = {
    "moving-window": SLIDING_LOG,
    "fixed-window-elastic-expiry": FIXED_WINDOW,
    "sliding-window-counter": SLIDING_WINDOW,
}
"""Flask-Limiter's (``limits``') strategy names, and ours that does the same job."""


def check_strategy(value: object) -> str:
    """``value`` if it names a strategy; else an error that suggests the right name."""
    if isinstance(value, str) and value in STRATEGIES:
        return value
    hint = ""
    if isinstance(value, str) and value.lower() in FLASK_LIMITER_NAMES:
        hint = f" (Flask-Limiter's {value!r} is {FLASK_LIMITER_NAMES[value.lower()]!r} here)"
    raise ConfigError(f"expected one of {', '.join(STRATEGIES)}, got {value!r}{hint}")


def offset(client: str, window: int) -> int:
    """A stable per-client shift of the window boundaries, in ``[0, window)``."""
    return zlib.crc32(client.encode("utf-8", "surrogatepass")) % window


def _window(now: int, window: int, shift: int) -> int:
    return math.floor((now - shift) / window)


def _counts(state: State, index: int) -> tuple[float, float]:
    """This window's and the previous window's counts as of window ``index``."""
    if not state:
        return 0, 0
    if state[0] == index:
        return state[1], state[2] if len(state) > 2 else 0
    if state[0] == index - 1:
        return 0, state[1]
    return 0, 0


def check(
    strategy: str, state: State, count: int, window: int, shift: int, now: int, cost: int = 1
) -> int:
    """Whole microseconds (rounded up) until ``strategy`` admits a request of ``cost``
    (0: admit now). The caller refuses a cost above ``count`` before asking."""
    if strategy == GCRA:
        allow_at = max(state[0] if state else now, now) + cost * window / count - window
        return math.ceil(allow_at - now) if allow_at > now else 0
    index = _window(now, window, shift)
    current, previous = _counts(state, index)
    start = index * window + shift
    if strategy == FIXED_WINDOW:
        return start + window - now if current + cost > count else 0
    fraction = (now - start) / window
    if previous * (1 - fraction) + current + cost <= count:
        return 0
    if current + cost > count:  # full even once the previous window has slid out: wait for
        # the next window, where this one's requests weigh less and less
        free_at = start + window + max(0, 1 - (count - cost) / current) * window
    else:
        free_at = start + (1 - (count - cost - current) / previous) * window
    return max(1, math.ceil(free_at - now))


def record(
    strategy: str, state: State, count: int, window: int, shift: int, now: int, cost: int = 1
) -> list[float]:
    """The state after an admitted request of ``cost``."""
    if strategy == GCRA:
        return [max(state[0] if state else now, now) + cost * window / count]
    index = _window(now, window, shift)
    current, previous = _counts(state, index)
    if strategy == SLIDING_WINDOW:
        return [index, current + cost, previous]
    return [index, current + cost]


def refund(
    strategy: str, state: Sequence[float], count: int, window: int, now: int, cost: int, left: float
) -> Optional[list[float]]:
    """The state once an admitted request of ``cost`` is taken back, given ``left``, the
    first number of the state its record left (``Reservation.states``); None when none of
    it counts any more (its window has passed, its share of the bucket has drained).

    The windows: its cost comes off the window it was counted in, whether that is the
    current window or (sliding window) the previous one. GCRA: the bucket drains in
    arrival order, so what is left of its share is what lies ahead of now up to where
    its share ended (``left``), at most its cost, and never more than the bucket holds:
    later requests' shares move forward, none is given back."""
    if strategy == GCRA:
        back = min(cost * window / count, left - now, state[0] - now)
        return [state[0] - back] if back > 0 else None
    values = list(state)
    if values[0] == left:
        values[1] = max(0, values[1] - cost)
    elif strategy == SLIDING_WINDOW and values[0] == left + 1:
        values[2] = max(0, values[2] - cost)
    else:
        return None
    return values


def usage(
    strategy: str, state: State, count: int, window: int, shift: int, now: int
) -> tuple[int, int]:
    """Requests left and whole microseconds until the quota is whole again, for headers."""
    if strategy == GCRA:
        tat = max(state[0] if state else now, now)
        return max(0, math.floor((now + window - tat) / (window / count))), math.ceil(tat - now)
    index = _window(now, window, shift)
    current, previous = _counts(state, index)
    start = index * window + shift
    if strategy == SLIDING_WINDOW:
        current += previous * (1 - (now - start) / window)
    return max(0, math.floor(count - current)), start + window - now
