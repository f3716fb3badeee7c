"""Settings: constructor arguments, then ``app.config["GATEKEEPER_*"]``, then defaults.

Every option is read and validated here, once, in ``init_app``; an error names the option
or config key it came from and the value, so a typo fails at start-up, not mid-traffic.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable, Optional, TypeVar

from .errors import ConfigError, ConfigTypeError
from .rules import BanRule, Rule, parse_ban_rule, parse_rules
from .storage import DEFAULT_MAX_CLIENTS, MemoryStorage, Storage, storage_from

__all__ = ["CONFIG_KEYS", "Settings", "load_settings"]

CONFIG_KEYS = {
    "enabled": "GATEKEEPER_ENABLED",
    "ban_rule": "GATEKEEPER_BAN_RULE",
    "rate_limit_rules": "GATEKEEPER_RATE_LIMIT_RULES",
    "ip_header": "GATEKEEPER_IP_HEADER",
    "excluded_methods": "GATEKEEPER_EXCLUDED_METHODS",
    "storage": "GATEKEEPER_STORAGE_URI",
    "max_clients": "GATEKEEPER_MAX_CLIENTS",
}
"""Each option and the ``app.config`` key that sets it when the constructor does not."""

_METHOD = re.compile(r"[A-Za-z]+")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """Validated settings of one app."""

    enabled: bool
    ban_rule: Optional[BanRule]
    rate_limit_rules: tuple[Rule, ...]
    ip_header: Optional[str]
    excluded_methods: frozenset[str]
    storage: Storage


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


def load_settings(given: Mapping[str, object], config: Mapping[str, object]) -> Settings:
    """Settings for one app from the constructor's ``given`` options and its ``config``."""

    def read(option: str, parse: Callable[[object, str], T], default: T) -> T:
        if option in given:
            return parse(given[option], option)
        key = CONFIG_KEYS[option]
        if config.get(key) is not None:
            return parse(config[key], key)
        return default

    max_clients = read("max_clients", _positive_int, DEFAULT_MAX_CLIENTS)
    return Settings(
        enabled=read("enabled", _bool, True),
        ban_rule=read("ban_rule", parse_ban_rule, None),
        rate_limit_rules=read("rate_limit_rules", parse_rules, ()),
        ip_header=read("ip_header", _header_name, None),
        excluded_methods=read("excluded_methods", _methods, frozenset()),
        storage=read("storage", lambda value, name: storage_from(value, name, max_clients), None)
        or MemoryStorage(max_clients=max_clients),
    )
