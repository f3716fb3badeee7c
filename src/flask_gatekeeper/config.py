"""Settings: constructor arguments, then ``app.config["GATEKEEPER_*"]``, then defaults.

Every option is read and validated here, once, in ``init_app``; an error names the option
or config key it came from and the value, so a typo fails at start-up, not mid-traffic.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable, Optional, TypeVar, Union, cast

from werkzeug.utils import import_string

from .addresses import AddressSet, parse_address_list
from .errors import ConfigError, ConfigTypeError
from .headers import parse_headers_option
from .identify import Identifier, KeyFunc
from .rules import BanRule, Rule, parse_ban_rule, parse_rules
from .storage import DEFAULT_MAX_CLIENTS, MemoryStorage, Storage, storage_from
from .storage.base import DEFAULT_KEY_PREFIX, check_key_prefix
from .strategies import DEFAULT_STRATEGY, STRATEGIES

__all__ = ["CONFIG_KEYS", "Settings", "load_settings"]

CONFIG_KEYS = {
    "enabled": "GATEKEEPER_ENABLED",
    "ban_rule": "GATEKEEPER_BAN_RULE",
    "rate_limit_rules": "GATEKEEPER_RATE_LIMIT_RULES",
    "ip_header": "GATEKEEPER_IP_HEADER",
    "excluded_methods": "GATEKEEPER_EXCLUDED_METHODS",
    "storage": "GATEKEEPER_STORAGE_URI",
    "max_clients": "GATEKEEPER_MAX_CLIENTS",
    "trusted_proxies": "GATEKEEPER_TRUSTED_PROXIES",
    "ipv6_prefix": "GATEKEEPER_IPV6_PREFIX",
    "allowlist": "GATEKEEPER_ALLOWLIST",
    "denylist": "GATEKEEPER_DENYLIST",
    "key_func": "GATEKEEPER_KEY_FUNC",
    "key_prefix": "GATEKEEPER_KEY_PREFIX",
    "fail_open": "GATEKEEPER_FAIL_OPEN",
    "headers": "GATEKEEPER_HEADERS",
    "dry_run": "GATEKEEPER_DRY_RUN",
    "report_rate_limited": "GATEKEEPER_REPORT_RATE_LIMITED",
    "strategy": "GATEKEEPER_STRATEGY",
}
"""Each option and the ``app.config`` key that sets it when the constructor does not."""

DEFAULT_IPV6_PREFIX = 64
"""An IPv6 client is its /64: the block one host or one subscriber usually gets."""
DEFAULT_PROXY_HEADER = "X-Forwarded-For"
"""The header read when ``trusted_proxies`` is set without ``ip_header``."""

_METHOD = re.compile(r"[A-Za-z]+")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """Validated settings of one app."""

    enabled: bool
    ban_rule: Optional[BanRule]
    rate_limit_rules: tuple[Rule, ...]
    excluded_methods: frozenset[str]
    storage: Storage
    identifier: Identifier
    fail_open: bool
    headers: frozenset[str]
    """Which rate limit header fields to send: "ietf", "legacy", both or none."""
    dry_run: bool
    report_rate_limited: bool
    """Each 429 also counts as a report toward the ban rule."""
    strategy: str
    """The strategy of rules that do not name one."""
    ip_header_trusted: bool
    """False when ``ip_header`` is believed without ``trusted_proxies`` (init_app warns)."""


def _bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigTypeError(f"{name}: expected True or False, got {value!r}")
    return value


def _header_name(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise ConfigTypeError(f"{name}: expected a header name, got {value!r}")
    if not _HEADER_NAME.fullmatch(value):
        raise ConfigError(f"{name}: {value!r} is not a valid header name")
    return value


def _methods(value: object, name: str) -> frozenset[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple, set, frozenset)):
        raise ConfigTypeError(f"{name}: expected a list of HTTP methods, got {value!r}")
    for item in items:
        if not isinstance(item, str) or not _METHOD.fullmatch(item):
            raise ConfigError(f"{name}: {item!r} is not an HTTP method")
    return frozenset(str(item).upper() for item in items)


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigTypeError(f"{name}: expected a positive integer, got {value!r}")
    if value < 1:
        raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
    return value


def _trusted_proxies(value: object, name: str) -> Union[int, AddressSet]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(f"{name}: a hop count cannot be negative, got {value!r}")
        return value
    return _address_set(value, name)


def _strategy(value: object, name: str) -> str:
    if value not in STRATEGIES:
        raise ConfigError(f"{name}: expected one of {', '.join(STRATEGIES)}, got {value!r}")
    return str(value)


def _ipv6_prefix(value: object, name: str) -> int:
    prefix = _positive_int(value, name)
    if prefix > 128:
        raise ConfigError(f"{name}: expected a prefix length from 1 to 128, got {value!r}")
    return prefix


def _address_set(value: object, name: str) -> AddressSet:
    return AddressSet(parse_address_list(value, name))


def _key_func(value: object, name: str) -> KeyFunc:
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as exc:
            raise ConfigError(f"{name}: cannot import {value!r} ({exc})") from None
    if not callable(value):
        raise ConfigTypeError(f"{name}: expected a function returning a key, got {value!r}")
    return cast(KeyFunc, value)


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

    source = {}  # option -> the name it was read under, for errors found later

    def read(option: str, parse: Callable[[object, str], T], default: T) -> T:
        if option in given:
            source[option] = option
            return parse(given[option], option)
        key = source[option] = CONFIG_KEYS[option]
        if config.get(key) is not None:
            return parse(config[key], key)
        return default

    max_clients: Optional[int] = read("max_clients", _positive_int, None)
    key_prefix = read("key_prefix", check_key_prefix, DEFAULT_KEY_PREFIX)
    trusted_proxies = read("trusted_proxies", _trusted_proxies, None)
    ip_header = read("ip_header", _header_name, None)
    if ip_header is None and trusted_proxies is not None:
        ip_header = DEFAULT_PROXY_HEADER
    identifier = Identifier(
        ip_header=ip_header,
        trusted_proxies=trusted_proxies,
        ipv6_prefix=read("ipv6_prefix", _ipv6_prefix, DEFAULT_IPV6_PREFIX),
        allowlist=read("allowlist", _address_set, AddressSet(())),
        denylist=read("denylist", _address_set, AddressSet(())),
        key_func=read("key_func", _key_func, None),
    )
    settings = Settings(
        enabled=read("enabled", _bool, True),
        ban_rule=read("ban_rule", parse_ban_rule, None),
        rate_limit_rules=read("rate_limit_rules", parse_rules, ()),
        excluded_methods=read("excluded_methods", _methods, frozenset()),
        identifier=identifier,
        ip_header_trusted=ip_header is None or trusted_proxies is not None,
        storage=read(
            "storage",
            lambda value, name: storage_from(
                value, name, max_clients=max_clients, key_prefix=key_prefix
            ),
            None,
        )
        or MemoryStorage(max_clients=max_clients or DEFAULT_MAX_CLIENTS),
        fail_open=read("fail_open", _bool, True),
        headers=read("headers", parse_headers_option, frozenset()),
        dry_run=read("dry_run", _bool, False),
        report_rate_limited=read("report_rate_limited", _bool, False),
        strategy=read("strategy", _strategy, DEFAULT_STRATEGY),
    )
    if settings.report_rate_limited and settings.ban_rule is None:
        raise ConfigError(
            f"{source['report_rate_limited']}: True needs a ban_rule "
            "(GATEKEEPER_BAN_RULE) to count reports toward"
        )
    return settings
