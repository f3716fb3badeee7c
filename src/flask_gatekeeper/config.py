"""Settings: constructor arguments, then ``app.config["GATEKEEPER_*"]``, then defaults.

Every option is one row of ``OPTIONS`` (name, config key, parser, default, meaning); the
constructor, ``load_settings``, the unknown-key check and ``flask gatekeeper config`` all
read that table. Each value is validated once, in ``init_app``; an error names the option
or config key it came from and the value, so a typo fails at start-up, not mid-traffic.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Optional, Union, cast

from werkzeug.utils import ImportStringError, import_string

from .addresses import AddressSet, parse_address_list
from .errors import ConfigError, ConfigTypeError
from .headers import parse_headers_option
from .identify import Identifier, KeyFunc
from .limiter_names import config_hint
from .policy import (
    EXEMPT_WHEN_CALLS,
    HTTP_METHODS,
    KEY_FUNC_CALLS,
    REPORT_WHEN_CALLS,
    Predicate,
    ResponsePredicate,
    RulesOrFunction,
)
from .rules import (
    BanRule,
    Calls,
    SubnetBanRule,
    check_seconds,
    parse_ban_rule,
    parse_rules_or_function,
    parse_subnet_ban_rule,
)
from .state_file import parse_state_file
from .storage import MemoryStorage, Storage, storage_from
from .storage.base import DEFAULT_KEY_PREFIX, check_key_prefix
from .strategies import DEFAULT_STRATEGY, check_strategy

__all__ = [
    "CONFIG_KEYS",
    "DEFAULT_CONCURRENCY_LEASE",
    "OPTIONS",
    "Option",
    "Settings",
    "load_settings",
    "parse_concurrency",
    "parse_methods",
]

DEFAULT_IPV6_PREFIX = 64
"""An IPv6 client is its /64: the block one host or one subscriber usually gets."""
DEFAULT_PROXY_HEADER = "X-Forwarded-For"
"""The header read when ``trusted_proxies`` is set without ``ip_header``."""
DEFAULT_CONCURRENCY_LEASE = 300
"""Seconds a request may hold a slot of a concurrency limit: far above any sane request
timeout, so only a worker that died holding a slot ever meets it."""

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HOP_COUNT = re.compile(r"\s*[0-9]+\s*")
_BOOL_TEXT = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}

Parser = Callable[[object, str], Any]

logger = logging.getLogger("flask_gatekeeper")


def _bool(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    hint = ""
    if isinstance(value, str) and value.strip().lower() in _BOOL_TEXT:
        hint = (
            f" (the string {value!r}, e.g. from the environment: use "
            f"{_BOOL_TEXT[value.strip().lower()]}, or app.config.from_prefixed_env(), "
            "which reads true/false as JSON)"
        )
    raise ConfigTypeError(f"{name}: expected True or False, got {value!r}{hint}")


def _header_name(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise ConfigTypeError(f"{name}: expected a header name, got {value!r}")
    if not _HEADER_NAME.fullmatch(value):
        raise ConfigError(f"{name}: {value!r} is not a valid header name")
    return value


def parse_methods(value: object, name: str) -> frozenset[str]:
    """HTTP methods, as a list or a comma-separated string (``"HEAD, OPTIONS"``)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple, set, frozenset)):
        raise ConfigTypeError(f"{name}: expected a list of HTTP methods, got {value!r}")
    methods = set()
    for item in items:
        if not isinstance(item, str):
            raise ConfigTypeError(f"{name}: expected an HTTP method, got {item!r}")
        method = item.strip().upper()
        if method not in HTTP_METHODS:
            raise ConfigError(
                f"{name}: {item!r} is not an HTTP method (expected some of "
                f"{', '.join(sorted(HTTP_METHODS))})"
            )
        methods.add(method)
    return frozenset(methods)


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigTypeError(f"{name}: expected a positive integer, got {value!r}")
    if value < 1:
        raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
    return value


def parse_concurrency(value: object, name: str) -> int:
    """A limit of requests in flight (``concurrency``): a whole number, at least 1."""
    return _positive_int(value, name)


def _seconds(value: object, name: str) -> float:
    check_seconds(name, value)
    return float(value)  # type: ignore[arg-type]  # check_seconds took a number


def _trusted_proxies(value: object, name: str) -> Union[int, AddressSet]:
    if isinstance(value, str) and _HOP_COUNT.fullmatch(value):
        value = int(value)  # "1", as the environment gives it: no address is all digits
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(f"{name}: a hop count cannot be negative, got {value!r}")
        return value
    return _address_set(value, name)


def _strategy(value: object, name: str) -> str:
    try:
        return check_strategy(value)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _ipv6_prefix(value: object, name: str) -> int:
    prefix = _positive_int(value, name)
    if prefix > 128:
        raise ConfigError(f"{name}: expected a prefix length from 1 to 128, got {value!r}")
    return prefix


def _address_set(value: object, name: str) -> AddressSet:
    return AddressSet(parse_address_list(value, name))


def _function(value: object, name: str, calls: Calls) -> Callable[..., object]:
    """A function, or an import string naming one, that can be called as ``calls`` says."""
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportStringError as exc:
            raise ConfigError(
                f"{name}: cannot import {value!r} ({type(exc.exception).__name__}: "
                f"{exc.exception}); expected 'package.module:function' or "
                "'package.module.function'"
            ) from None
    calls.check(value, name)
    return cast(Callable[..., object], value)


def _key_func(value: object, name: str) -> KeyFunc:
    return cast(KeyFunc, _function(value, name, KEY_FUNC_CALLS))


def _exempt_when(value: object, name: str) -> Predicate:
    return _function(value, name, EXEMPT_WHEN_CALLS)


def _report_when(value: object, name: str) -> ResponsePredicate:
    return _function(value, name, REPORT_WHEN_CALLS)


def _storage(value: object, name: str) -> object:
    """Checked when it is built, in ``load_settings``: it depends on two other options."""
    return value


@dataclass(frozen=True)
class Option:
    """One setting: its constructor keyword, its ``app.config`` key, how its value is
    checked and parsed, its default (before parsing), and what it means."""

    name: str
    key: str
    parse: Parser
    default: object
    meaning: str


OPTIONS: tuple[Option, ...] = (
    Option("ban_rule", "GATEKEEPER_BAN_RULE", parse_ban_rule, None, "reports that ban a client"),
    Option(
        "rate_limit_rules",
        "GATEKEEPER_RATE_LIMIT_RULES",
        parse_rules_or_function,
        None,
        "global rules, or a function returning them for each request",
    ),
    Option("ip_header", "GATEKEEPER_IP_HEADER", _header_name, None, "client IP from a header"),
    Option("excluded_methods", "GATEKEEPER_EXCLUDED_METHODS", parse_methods, (), "never counted"),
    Option("enabled", "GATEKEEPER_ENABLED", _bool, True, "master switch"),
    Option("storage", "GATEKEEPER_STORAGE_URI", _storage, "memory://", "where counts live"),
    Option("max_clients", "GATEKEEPER_MAX_CLIENTS", _positive_int, None, "memory bound"),
    Option("trusted_proxies", "GATEKEEPER_TRUSTED_PROXIES", _trusted_proxies, None, "proxies"),
    Option("ipv6_prefix", "GATEKEEPER_IPV6_PREFIX", _ipv6_prefix, 64, "IPv6 aggregation"),
    Option("allowlist", "GATEKEEPER_ALLOWLIST", _address_set, (), "never limited"),
    Option("denylist", "GATEKEEPER_DENYLIST", _address_set, (), "always refused"),
    Option("key_func", "GATEKEEPER_KEY_FUNC", _key_func, None, "custom client key"),
    Option("key_prefix", "GATEKEEPER_KEY_PREFIX", check_key_prefix, DEFAULT_KEY_PREFIX, "Redis"),
    Option("fail_open", "GATEKEEPER_FAIL_OPEN", _bool, True, "admit during an outage"),
    Option("headers", "GATEKEEPER_HEADERS", parse_headers_option, False, "RateLimit fields"),
    Option("dry_run", "GATEKEEPER_DRY_RUN", _bool, False, "count and signal, refuse nothing"),
    Option("report_rate_limited", "GATEKEEPER_REPORT_RATE_LIMITED", _bool, False, "429s report"),
    Option("report_when", "GATEKEEPER_REPORT_WHEN", _report_when, None, "responses that report"),
    Option(
        "subnet_ban_rule",
        "GATEKEEPER_SUBNET_BAN_RULE",
        parse_subnet_ban_rule,
        None,
        "banned addresses that ban their network",
    ),
    Option("strategy", "GATEKEEPER_STRATEGY", _strategy, DEFAULT_STRATEGY, "default strategy"),
    Option("exempt_static", "GATEKEEPER_EXEMPT_STATIC", _bool, True, "static files not counted"),
    Option("exempt_when", "GATEKEEPER_EXEMPT_WHEN", _exempt_when, None, "true: not counted"),
    Option("concurrency", "GATEKEEPER_CONCURRENCY", parse_concurrency, None, "requests in flight"),
    Option(
        "concurrency_lease",
        "GATEKEEPER_CONCURRENCY_LEASE",
        _seconds,
        DEFAULT_CONCURRENCY_LEASE,
        "longest hold of a slot",
    ),
    Option("state_file", "GATEKEEPER_STATE_FILE", parse_state_file, None, "bans kept on restart"),
    Option(
        "cache_refusals",
        "GATEKEEPER_CACHE_REFUSALS",
        _bool,
        True,
        "refusals of a shared storage answered again in-process",
    ),
)
"""Every option, in the constructor's order (the first four are flask-gatekeeper 1.0's)."""

CONFIG_KEYS = {option.name: option.key for option in OPTIONS}
"""Each option and the ``app.config`` key that sets it when the constructor does not."""

_BY_NAME = {option.name: option for option in OPTIONS}


@dataclass(frozen=True)
class Settings:
    """Validated settings of one app, and where each option's value came from."""

    enabled: bool
    ban_rule: Optional[BanRule]
    rate_limit_rules: RulesOrFunction
    excluded_methods: frozenset[str]
    storage: Storage
    identifier: Identifier
    fail_open: bool
    headers: frozenset[str]
    """Which rate limit header fields to send: "ietf", "legacy", both or none."""
    dry_run: bool
    report_rate_limited: bool
    """Each 429 also counts as a report toward the ban rule."""
    report_when: Optional[ResponsePredicate]
    """A response it accepts is one report of the client (every route but bypassed ones)."""
    subnet_ban_rule: Optional[SubnetBanRule]
    """Banned addresses of one network that ban the network."""
    strategy: str
    """The strategy of rules that do not name one."""
    exempt_static: bool
    """Static files (endpoints ``static`` and ``<blueprint>.static``) are not counted."""
    exempt_when: Optional[Predicate]
    """Returns true for a request that is neither counted nor limited."""
    concurrency: Optional[int]
    """At most this many requests of a client in flight at once in the global scope."""
    concurrency_lease: float
    """Seconds after which a slot that was never released frees by itself."""
    state_file: Optional[Path]
    """Where the memory storage's bans are kept across restarts (``state_file``)."""
    cache_refusals: bool
    """Each process answers the refusals a shared storage made again until they end
    (``known``): no round trip for a client already refused."""
    ip_header_trusted: bool
    """False when ``ip_header`` is believed without ``trusted_proxies`` (init_app warns)."""
    sources: Mapping[str, tuple[object, str]]
    """Option -> (the value as given, where from: the option name, the config key, or
    "default"), for ``flask gatekeeper config``."""

    def named(self, option: str) -> str:
        """How the user set ``option``: its keyword or config key (the key by default)."""
        return _named(self.sources, option)


def _named(sources: Mapping[str, tuple[object, str]], option: str) -> str:
    source = sources[option][1]
    return _BY_NAME[option].key if source == "default" else source


def _check_known_keys(config: Mapping[str, object]) -> None:
    """A misspelt key would silently leave a protection off: refuse it instead."""
    known = set(CONFIG_KEYS.values())
    for key in config:
        if isinstance(key, str) and key.startswith("GATEKEEPER_") and key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{key}: unknown flask-gatekeeper config key{hint}")


def load_settings(given: Mapping[str, object], config: Mapping[str, object]) -> Settings:
    """Settings for one app from the constructor's ``given`` options and its ``config``."""
    _check_known_keys(config)
    hint = config_hint(config, CONFIG_KEYS)
    if hint is not None:
        logger.warning("%s", hint)
    sources: dict[str, tuple[object, str]] = {}
    values: dict[str, Any] = {}
    for option in OPTIONS:
        if given.get(option.name) is not None:
            value, source = given[option.name], option.name
        elif config.get(option.key) is not None:
            value, source = config[option.key], option.key
        else:
            value, source = option.default, "default"
        sources[option.name] = (value, source)
        values[option.name] = None if value is None else option.parse(value, source)

    def named(option: str) -> str:
        return _named(sources, option)

    trusted_proxies = values["trusted_proxies"]
    ip_header = values["ip_header"]
    if ip_header is None and trusted_proxies is not None:
        ip_header = DEFAULT_PROXY_HEADER
    subnet_rule = values["subnet_ban_rule"]
    if subnet_rule is not None and subnet_rule.ipv6_prefix >= values["ipv6_prefix"]:
        raise ConfigError(
            f"{named('subnet_ban_rule')}: 'ipv6_prefix' must be shorter than ipv6_prefix "
            f"({values['ipv6_prefix']}), the length of one IPv6 client, got "
            f"{subnet_rule.ipv6_prefix!r}"
        )
    for needs_bans in ("report_rate_limited", "report_when", "subnet_ban_rule"):
        if values[needs_bans] and values["ban_rule"] is None:
            raise ConfigError(
                f"{named(needs_bans)}: {sources[needs_bans][0]!r} needs a ban_rule "
                "(GATEKEEPER_BAN_RULE) to count reports toward"
            )
    storage = _build_storage(values, sources, named)
    if values["state_file"] is not None and not isinstance(storage, MemoryStorage):
        raise ConfigError(
            f"{named('state_file')}: the state file keeps the memory storage's bans; "
            f"{storage!r} keeps its own (drop {named('state_file')}, or use memory://)"
        )
    derived = {
        "rate_limit_rules": values["rate_limit_rules"] or (),
        "storage": storage,
        "identifier": Identifier(
            ip_header=ip_header,
            trusted_proxies=trusted_proxies,
            ipv6_prefix=values["ipv6_prefix"],
            allowlist=values["allowlist"],
            denylist=values["denylist"],
            key_func=values["key_func"],
        ),
        "ip_header_trusted": ip_header is None or trusted_proxies is not None,
        "sources": sources,
    }
    as_given = {f.name: values[f.name] for f in fields(Settings) if f.name in values}
    return Settings(**{**as_given, **derived})


def _build_storage(
    values: Mapping[str, Any],
    sources: Mapping[str, tuple[object, str]],
    named: Callable[[str], str],
) -> Storage:
    """The storage option, built with ``max_clients`` and ``key_prefix`` where they
    apply (``storage_from`` refuses them where they would be silently ignored)."""
    prefix_given = sources["key_prefix"][1] != "default"
    return storage_from(
        values["storage"],
        named("storage"),
        max_clients=values["max_clients"],
        key_prefix=values["key_prefix"] if prefix_given else None,
    )
