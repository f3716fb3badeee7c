"""Limits checked inside a view: ``gk.limit(...)``, for checks that need what only the
view knows (the authenticated user, the object asked for).

A ``Limit`` goes the gate's way: the same client key, one storage call, the same
refusals, signals and counters, the same outage policy. Its scope is the name it was
given, never one derived from where it is written.
"""

from __future__ import annotations

import functools
import inspect
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar, cast

from flask import has_request_context

from .request import PerRequest, owners

if TYPE_CHECKING:
    from .gate import Gate

__all__ = ["Limit"]

F = TypeVar("F", bound=Callable[..., Any])


class Limit:
    """A check of one scope's rules: ``with limit:`` checks on entering, and ``@limit``
    checks at each call of the function it decorates (``async def`` ones too)."""

    def __init__(self, gate: Callable[[], Gate], per_request: PerRequest, key: Optional[str]):
        self._gate = gate
        self._per_request = per_request
        self._key = key

    def check(self) -> None:
        """Count one request of the client, or raise the refusal (``RateLimited``,
        ``Banned``; ``StorageUnavailable`` when failing closed)."""
        gate = self._gate()
        if not gate.settings.enabled:
            return
        identifier = gate.settings.identifier
        if self._key is not None:
            allowed = identifier.allowed(self._key)
            # often a request's own text (a user name): never an error, a key like any
            client: Optional[str] = None if allowed else identifier.key_for(self._key, strict=False)
        elif has_request_context():
            client = gate.requester()
        else:
            raise RuntimeError("gk.limit() outside a request needs the client: key=...")
        if client is None:
            return  # allow-listed, left alone by a key_func, or denied already
        scopes = gate.scopes_for(self._per_request, client)
        if not scopes:
            return
        decision = gate.hit(client, scopes, usage=False, also=owners(scopes))
        if decision is not None and not decision.admitted:
            gate.refuse(client, decision)
        elif decision is not None and decision.shadowed:
            gate.shadow_refused(client, decision.shadowed)

    def __enter__(self) -> Limit:
        self.check()
        return self

    def __exit__(
        self,
        kind: Optional[type[BaseException]],
        error: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        return None

    def __call__(self, function: F) -> F:
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def checked_async(*args: Any, **kwargs: Any) -> Any:
                self.check()
                return await function(*args, **kwargs)

            return cast(F, checked_async)

        @functools.wraps(function)
        def checked(*args: Any, **kwargs: Any) -> Any:
            self.check()
            return function(*args, **kwargs)

        return cast(F, checked)
