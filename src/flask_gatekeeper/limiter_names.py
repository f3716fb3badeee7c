"""Flask-Limiter's option names and what does their job here: hints for an app being
ported, given where its old names would otherwise be ignored (``RATELIMIT_*`` keys in
``app.config``) or refused with Python's bare ``TypeError`` (``Limiter``'s keywords
given to ``GateKeeper``). The names are those of Flask-Limiter 4's ``Limiter.__init__``
and ``flask_limiter.constants.ConfigVars``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Optional

__all__ = ["config_hint", "unexpected_keyword"]

_METHODS = "give rules per method with gk.specific(..., methods=[...])"
_COUNT_WHEN = "count after the response with gk.specific(..., count_when=...)"
_COST = "give a cost per route with gk.specific(..., cost=...)"
_HEADER_NAMES = (
    'header names are fixed: headers=True sends the IETF RateLimit fields, headers="legacy" '
    "the X-RateLimit-* ones"
)


@dataclass(frozen=True)
class _Counterpart:
    """A Flask-Limiter setting: its ``Limiter`` keyword (None: the same name here, or
    none), its config key, and our option doing its job (None: there is none), with a
    note on how to get the same effect."""

    keyword: Optional[str]
    config_key: Optional[str]
    option: Optional[str]
    note: str = ""


_COUNTERPARTS = (
    _Counterpart(
        "default_limits",
        "RATELIMIT_DEFAULT",
        "default_rules",
        "counted per client and route, on routes without rules of their own",
    ),
    _Counterpart("default_limits_per_method", "RATELIMIT_DEFAULTS_PER_METHOD", None, _METHODS),
    _Counterpart(
        "default_limits_exempt_when",
        "RATELIMIT_DEFAULTS_EXEMPT_WHEN",
        "default_rules",
        "a function returning the rules, or None for a request they skip",
    ),
    _Counterpart("default_limits_deduct_when", "RATELIMIT_DEFAULTS_DEDUCT_WHEN", None, _COUNT_WHEN),
    _Counterpart("default_limits_cost", "RATELIMIT_DEFAULTS_COST", None, _COST),
    _Counterpart("application_limits", "RATELIMIT_APPLICATION", "rate_limit_rules"),
    _Counterpart(
        "application_limits_per_method", "RATELIMIT_APPLICATION_PER_METHOD", None, _METHODS
    ),
    _Counterpart(
        "application_limits_exempt_when", "RATELIMIT_APPLICATION_EXEMPT_WHEN", "exempt_when"
    ),
    _Counterpart(
        "application_limits_deduct_when", "RATELIMIT_APPLICATION_DEDUCT_WHEN", None, _COUNT_WHEN
    ),
    _Counterpart("application_limits_cost", "RATELIMIT_APPLICATION_COST", None, _COST),
    _Counterpart(
        "headers_enabled",
        "RATELIMIT_HEADERS_ENABLED",
        "headers",
        'headers="legacy" sends the X-RateLimit-* headers',
    ),
    _Counterpart("header_name_mapping", "RATELIMIT_HEADER_LIMIT", None, _HEADER_NAMES),
    _Counterpart(None, "RATELIMIT_HEADER_REMAINING", None, _HEADER_NAMES),
    _Counterpart(None, "RATELIMIT_HEADER_RESET", None, _HEADER_NAMES),
    _Counterpart(None, "RATELIMIT_HEADER_RETRY_AFTER", None, _HEADER_NAMES),
    _Counterpart(
        "retry_after",
        "RATELIMIT_HEADER_RETRY_AFTER_VALUE",
        None,
        "Retry-After is always whole seconds",
    ),
    _Counterpart("storage_uri", "RATELIMIT_STORAGE_URI", "storage"),
    _Counterpart(None, "RATELIMIT_STORAGE_URL", "storage"),
    _Counterpart(
        "storage_options",
        "RATELIMIT_STORAGE_OPTIONS",
        "storage",
        "give a redis.Redis client, or a storage object, built with those options",
    ),
    _Counterpart("swallow_errors", "RATELIMIT_SWALLOW_ERRORS", "on_outage", 'on_outage="open"'),
    _Counterpart(
        "in_memory_fallback",
        "RATELIMIT_IN_MEMORY_FALLBACK",
        "on_outage",
        'on_outage="local" (the default with Redis) enforces the same rules in memory',
    ),
    _Counterpart(
        "in_memory_fallback_enabled",
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED",
        "on_outage",
        'on_outage="local" (the default with Redis) enforces the same rules in memory',
    ),
    _Counterpart(
        "fail_on_first_breach",
        "RATELIMIT_FAIL_ON_FIRST_BREACH",
        None,
        "every rule is checked in one atomic step, and a refused request counts in none",
    ),
    _Counterpart(
        "on_breach",
        "RATELIMIT_ON_BREACH_CALLBACK",
        None,
        "connect to the request_rate_limited signal, or handle 429 with @app.errorhandler",
    ),
    _Counterpart(
        "meta_limits",
        "RATELIMIT_META",
        "ban_rule",
        "with report_rate_limited=True each 429 is a report toward it",
    ),
    _Counterpart(
        "on_meta_breach",
        "RATELIMIT_ON_META_BREACH_CALLBACK",
        None,
        "connect to the client_banned signal",
    ),
    _Counterpart(
        "request_identifier",
        "RATELIMIT_REQUEST_IDENTIFIER",
        None,
        "each route counts apart by endpoint; gk.specific(..., scope=...) shares a budget",
    ),
    # Limiter.limit()'s keywords, given to the constructor in the hope of app-wide use
    _Counterpart("deduct_when", None, None, _COUNT_WHEN),
    _Counterpart("per_method", None, None, _METHODS),
    _Counterpart("methods", None, None, _METHODS),
    _Counterpart("cost", None, None, _COST),
    _Counterpart(
        "override_defaults",
        None,
        None,
        "a route with rules of its own skips default_rules: list them among its rules to keep them",
    ),
    _Counterpart(
        "error_message", None, None, "write the refusal in an @app.errorhandler(429) handler"
    ),
    _Counterpart(None, "RATELIMIT_ENABLED", "enabled"),
    _Counterpart(None, "RATELIMIT_KEY_FUNC", "key_func"),
    _Counterpart(None, "RATELIMIT_KEY_PREFIX", "key_prefix"),
    _Counterpart(
        None, "RATELIMIT_STRATEGY", "strategy", "Flask-Limiter's moving-window is sliding-log"
    ),
)
_BY_KEYWORD = {c.keyword: c for c in _COUNTERPARTS if c.keyword is not None}
_BY_CONFIG_KEY = {c.config_key: c for c in _COUNTERPARTS if c.config_key is not None}

_FLASK_LIMITER_PREFIX = "RATELIMIT_"


def unexpected_keyword(names: Iterable[str], config_keys: Mapping[str, str]) -> TypeError:
    """The error for keywords ``GateKeeper()`` does not take (the first of ``names``):
    Flask-Limiter's name for one of our options (the keys of ``config_keys``, which maps
    each to its config key) says which, and so does a near miss."""
    name = next(iter(names))
    counterpart = _BY_KEYWORD.get(name)
    message = f"GateKeeper() got an unexpected keyword argument {name!r}"
    if counterpart is not None:
        message += f", Flask-Limiter's: {_instead(counterpart, config_keys, keyword=True)}"
    else:
        close = difflib.get_close_matches(name, list(config_keys), n=1)
        if close:
            message += f": did you mean {close[0]}= ({config_keys[close[0]]})?"
    return TypeError(message)


def config_hint(config: Mapping[str, object], config_keys: Mapping[str, str]) -> Optional[str]:
    """What to use instead of the Flask-Limiter keys in ``config``, which nothing here
    reads; None when there are none."""
    found = sorted(
        key for key in config if isinstance(key, str) and key.startswith(_FLASK_LIMITER_PREFIX)
    )
    if not found:
        return None
    hints = []
    for key in found:
        counterpart = _BY_CONFIG_KEY.get(key)
        if counterpart is None:
            hints.append(f"{key}: no equivalent")
        else:
            hints.append(f"{key}: {_instead(counterpart, config_keys, keyword=False)}")
    return (
        "app.config has Flask-Limiter's settings, which flask-gatekeeper does not read: "
        + "; ".join(hints)
    )


def _instead(counterpart: _Counterpart, config_keys: Mapping[str, str], *, keyword: bool) -> str:
    note = f" ({counterpart.note})" if counterpart.note else ""
    option = counterpart.option
    if option is None:
        return f"no equivalent option: {counterpart.note}"
    if keyword:
        return f"did you mean {option}= ({config_keys[option]})?{note}"
    return f"use {config_keys[option]}{note}"
