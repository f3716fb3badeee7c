"""The one table of options: every option of ``GateKeeper(...)``, ``gk.specific(...)`` and
``gk.limit(...)`` is one ``Option`` row of ``OPTIONS``.

A row says the option's name, its ``app.config`` key (None for an option of routes only),
how its value is checked and parsed, its default (the value in force when none is given),
one line of meaning, and where it applies: the app, a route, or both. Everything else reads
the table: the constructor's options and their config keys (``load_settings``, the
unknown-key check, the hints for misspelt keywords), the checks of ``specific()`` and
``gk.limit`` (``parse_route``), and ``flask gatekeeper config``.

The constructor and ``specific()`` keep their explicit, typed parameters for type checkers
and IDEs; tests/test_options.py fails when their names, order or defaults and the table
disagree. It also checks docs/configuration.md against the table (every option's name,
config key and default are there, and no other), rather than generating the page from it:
the page says more about each option than one line can.

Each app-wide value is validated once, in ``init_app``, and a route's when its decorator
runs; an error names the option or config key the value came from, and the value, so a
typo fails at start-up, not mid-traffic.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Union

from werkzeug.utils import ImportStringError, import_string

from .decision import DEFAULT_OFFENCE
from .errors import ConfigError, ConfigTypeError
from .identity.addresses import AddressSet, parse_address_list, read_address_file
from .identity.keys import HIDDEN_KEY, key_hasher, parse_hash_keys
from .identity.proxies import Identifier
from .limiter_names import config_hint
from .request import Predicate, ResponsePredicate, RulesOrFunction
from .responses import parse_headers_option
from .routes import HTTP_METHODS
from .rules import (
    BanRule,
    Calls,
    SubnetBanRule,
    check_offence,
    check_seconds,
    parse_ban_rule,
    parse_rules_or_function,
    parse_subnet_ban_rule,
)
from .state_file import parse_state_file
from .storage import DEFAULT_MAX_CLIENTS, MemoryStorage, Storage, storage_from
from .storage.base import DEFAULT_KEY_PREFIX, check_key_prefix
from .strategies import DEFAULT_STRATEGY, check_strategy

__all__ = [
    "APP_OPTIONS",
    "CONFIG_KEYS",
    "COST_CALLS",
    "COUNT_WHEN_CALLS",
    "EXEMPT_WHEN_CALLS",
    "KEY_FUNC_CALLS",
    "OPTIONS",
    "REPORT_WHEN_CALLS",
    "ROUTE_OPTIONS",
    "FunctionOf",
    "Option",
    "Settings",
    "load_settings",
    "parse_route",
    "route_option",
]

DEFAULT_PROXY_HEADER = "X-Forwarded-For"
"""The header read when ``trusted_proxies`` is set without ``ip_header``."""
DEFAULT_CONCURRENCY_LEASE = 300
"""Seconds a request may hold a slot of a concurrency limit: far above any sane request
timeout, so only a worker that died holding a slot ever meets it."""

KEY_FUNC_CALLS = Calls("key_func")
"""``key_func`` is called bare for each request (``identity.proxies.Identifier.identify``)."""
EXEMPT_WHEN_CALLS = Calls("exempt_when")
"""``exempt_when`` is called bare for each request (``request.PerRequest.scopes_for``)."""
COST_CALLS = Calls("cost")
"""A cost function is called bare for each request (``request.PerRequest.scopes_for``)."""
COUNT_WHEN_CALLS = Calls("count_when", (("response",),))
"""``count_when`` is called with the response (``gate.Gate._settle_after_response``)."""
REPORT_WHEN_CALLS = Calls("report_when", (("response",),))
"""``report_when`` is called with the response (``gate.Gate._report_after_response``)."""

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HOP_COUNT = re.compile(r"\s*[0-9]+\s*")
_BOOL_TEXT = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}

Parser = Callable[[object, str], Any]
"""Checks a value given as the option or config key named by the second argument, and
returns it parsed; an error names that name and the value."""
Where = Literal["app", "route", "both"]

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


OUTAGE_POLICIES = ("local", "open", "closed")
"""What requests meet while the storage is down (``on_outage``; see ``outage``)."""


def _outage_policy(value: object, name: str) -> str:
    if not isinstance(value, str) or value.strip().lower() not in OUTAGE_POLICIES:
        raise ConfigError(
            f"{name}: expected one of {', '.join(map(repr, OUTAGE_POLICIES))}, got {value!r}"
        )
    return value.strip().lower()


def _outage_policy_of(
    values: Mapping[str, Any],
    sources: Mapping[str, tuple[object, str]],
    storage: object,
    named: Callable[[str], str],
) -> str:
    """``on_outage`` as given, or ``fail_open`` (its two old spellings: True is "open",
    False "closed"); by default "local" for a storage shared by processes (Redis), whose
    outages are the ones that happen, else "open" as before."""
    policy: Optional[str] = values["on_outage"]
    fail_open_given = sources["fail_open"][1] != "default"
    spelled = "open" if values["fail_open"] else "closed"
    if policy is not None and fail_open_given and policy != spelled:
        raise ConfigError(
            f"{named('on_outage')}: {policy!r} contradicts {named('fail_open')}="
            f"{values['fail_open']!r} (True is 'open', False is 'closed'): give one"
        )
    if policy is not None:
        return policy
    if fail_open_given:
        return spelled
    return "local" if callable(getattr(storage, "operator_changes", None)) else "open"


def _header_name(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise ConfigTypeError(f"{name}: expected a header name, got {value!r}")
    if not _HEADER_NAME.fullmatch(value):
        raise ConfigError(f"{name}: {value!r} is not a valid header name")
    return value


def _methods(value: object, name: str) -> frozenset[str]:
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


def _some_methods(value: object, name: str) -> frozenset[str]:
    """The methods a route's mark applies to: an empty list would apply to none."""
    methods = _methods(value, name)
    if not methods:
        raise ConfigError(f"{name}: the list is empty; leave it out for every method")
    return methods


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigTypeError(f"{name}: expected a positive integer, got {value!r}")
    if value < 1:
        raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
    return value


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


def _denylist(value: object, name: str) -> AddressSet:
    """A denylist, or a block list file (a ``Path``, or text naming an existing file) read
    once here, at start-up: a list of ten thousand networks is one line of config."""
    if isinstance(value, str) and Path(value).is_file():
        value = Path(value)
    if isinstance(value, Path):
        return AddressSet(read_address_file(value, name))
    return _address_set(value, name)


def _storage(value: object, name: str) -> object:
    """Checked when it is built, in ``load_settings``: it depends on two other options."""
    return value


def _scope(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise ConfigTypeError(f"{name}: expected a name (a string), got {value!r}")
    if not value:
        raise ConfigError(f"{name}: the name is empty")
    return value


def _offence(value: object, name: str) -> str:
    """An offence's name: the default one's, or one of ``ban_rules`` (checked by
    ``load_settings`` and ``GateKeeper``, which know them)."""
    if not isinstance(value, str):
        raise ConfigTypeError(f"{name}: expected an offence's name (a string), got {value!r}")
    if not value:
        raise ConfigError(f"{name}: the offence's name is empty")
    return value


def _ban_rules(value: object, name: str) -> dict[str, BanRule]:
    """``ban_rules``: offence name -> its ban rule, each in a form ``ban_rule`` takes.
    The default offence is ``ban_rule``'s: naming it here would give it two rules."""
    if not isinstance(value, Mapping):
        raise ConfigTypeError(
            f"{name}: expected a dict of offence names and ban rules, got {value!r}"
        )
    rules = {}
    for offence, rule in value.items():
        _offence(offence, f"{name}: {offence!r}")
        if offence == DEFAULT_OFFENCE:
            raise ConfigError(
                f"{name}: {offence!r} is the default offence, counted by ban_rule "
                "(GATEKEEPER_BAN_RULE): give it there, or name this offence otherwise"
            )
        rules[offence] = parse_ban_rule(rule, f"{name}[{offence!r}]")
    return rules


def _cost(value: object, name: str) -> object:
    """A cost: a whole number of requests (at least 1), or a function returning one (its
    result is checked on each call, ``request._checked_cost``)."""
    if callable(value):
        COST_CALLS.check(value, name)
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}: expected an integer >= 1 or a function, got {value!r}")
    return value


@dataclass(frozen=True)
class FunctionOf:
    """The parser of an option that is a function the library calls as ``calls`` says.

    Given to the app (constructor or ``app.config``), the function may also be named by an
    import string, since the environment can only give text (``Option.read_app`` imports
    it). A decorator's argument is the function itself."""

    calls: Calls

    def __call__(self, value: object, name: str) -> object:
        self.calls.check(value, name)
        return value


def _imported(value: str, name: str) -> object:
    try:
        return import_string(value)
    except ImportStringError as exc:
        raise ConfigError(
            f"{name}: cannot import {value!r} ({type(exc.exception).__name__}: "
            f"{exc.exception}); expected 'package.module:function' or "
            "'package.module.function'"
        ) from None


@dataclass(frozen=True)
class Option:
    """One option: its keyword, its ``app.config`` key (None: routes only), how a value is
    checked and parsed, the value in force when none is given, what it means, and where
    it applies (``app``: the constructor; ``route``: ``specific()``; ``both``)."""

    name: str
    key: Optional[str]
    parse: Parser
    default: object
    doc: str
    where: Where = "app"

    @property
    def app(self) -> bool:
        """An option of the constructor and ``app.config``."""
        return self.where != "route"

    @property
    def route(self) -> bool:
        """An option of ``gk.specific(...)``."""
        return self.where != "app"

    def read(self, value: object) -> Any:
        """``value`` given to a decorator or ``gk.limit`` as this option, parsed."""
        return self.parse(value, self.name)

    def read_app(self, value: object, name: str) -> Any:
        """``value`` given to the app as ``name`` (this option or its config key), parsed;
        a function may be named by an import string there."""
        if isinstance(self.parse, FunctionOf) and isinstance(value, str):
            value = _imported(value, name)
        return self.parse(value, name)


OPTIONS: tuple[Option, ...] = (
    Option("ban_rule", "GATEKEEPER_BAN_RULE", parse_ban_rule, None, "reports that ban a client"),
    Option(
        "rate_limit_rules",
        "GATEKEEPER_RATE_LIMIT_RULES",
        parse_rules_or_function,
        None,
        "rules, or a function returning them for each request",
        "both",
    ),
    Option("standalone", None, _bool, False, "the app's rules do not apply", "route"),
    Option("methods", None, _some_methods, None, "the methods the mark applies to", "route"),
    Option("scope", None, _scope, None, "a budget shared by the routes naming it", "route"),
    Option("cost", None, _cost, 1, "how many requests one request counts as", "route"),
    Option(
        "count_when",
        None,
        FunctionOf(COUNT_WHEN_CALLS),
        None,
        "responses it declines give their place back",
        "route",
    ),
    Option("ip_header", "GATEKEEPER_IP_HEADER", _header_name, None, "client IP from a header"),
    Option("excluded_methods", "GATEKEEPER_EXCLUDED_METHODS", _methods, (), "never counted"),
    Option(
        "default_rules",
        "GATEKEEPER_DEFAULT_RULES",
        parse_rules_or_function,
        None,
        "rules counted per route, on routes without rules of their own",
    ),
    Option("enabled", "GATEKEEPER_ENABLED", _bool, True, "master switch"),
    Option("storage", "GATEKEEPER_STORAGE_URI", _storage, "memory://", "where counts live"),
    Option(
        "max_clients", "GATEKEEPER_MAX_CLIENTS", _positive_int, DEFAULT_MAX_CLIENTS, "memory bound"
    ),
    Option(
        "trusted_proxies",
        "GATEKEEPER_TRUSTED_PROXIES",
        _trusted_proxies,
        None,
        "proxies trusted to name the client",
    ),
    Option("ipv6_prefix", "GATEKEEPER_IPV6_PREFIX", _ipv6_prefix, 64, "IPv6 aggregation"),
    Option(
        "allowlist", "GATEKEEPER_ALLOWLIST", _address_set, (), "never counted, limited or banned"
    ),
    Option("denylist", "GATEKEEPER_DENYLIST", _denylist, (), "always refused"),
    Option(
        "key_func",
        "GATEKEEPER_KEY_FUNC",
        FunctionOf(KEY_FUNC_CALLS),
        None,
        "custom client key",
        "both",
    ),
    Option(
        "hash_keys",
        "GATEKEEPER_HASH_KEYS",
        parse_hash_keys,
        False,
        "key_func and rule keys stored as keyed hashes",
    ),
    Option(
        "key_prefix",
        "GATEKEEPER_KEY_PREFIX",
        check_key_prefix,
        DEFAULT_KEY_PREFIX,
        "Redis key prefix",
    ),
    Option("fail_open", "GATEKEEPER_FAIL_OPEN", _bool, True, "admit during an outage (or 503)"),
    Option("headers", "GATEKEEPER_HEADERS", parse_headers_option, False, "RateLimit fields"),
    Option("dry_run", "GATEKEEPER_DRY_RUN", _bool, False, "count and signal, refuse nothing"),
    Option(
        "report_rate_limited",
        "GATEKEEPER_REPORT_RATE_LIMITED",
        _bool,
        False,
        "each 429 is a report",
    ),
    Option(
        "report_when",
        "GATEKEEPER_REPORT_WHEN",
        FunctionOf(REPORT_WHEN_CALLS),
        None,
        "responses that report",
        "both",
    ),
    Option(
        "offence",
        "GATEKEEPER_OFFENCE",
        _offence,
        None,
        "the offence report_when reports (on a route, its 429 reports too)",
        "both",
    ),
    Option(
        "subnet_ban_rule",
        "GATEKEEPER_SUBNET_BAN_RULE",
        parse_subnet_ban_rule,
        None,
        "banned addresses that ban their network",
    ),
    Option(
        "ban_rules",
        "GATEKEEPER_BAN_RULES",
        _ban_rules,
        None,
        "a ban rule per offence besides the default (jails)",
    ),
    Option("strategy", "GATEKEEPER_STRATEGY", _strategy, DEFAULT_STRATEGY, "default strategy"),
    Option("exempt_static", "GATEKEEPER_EXEMPT_STATIC", _bool, True, "static files not counted"),
    Option(
        "exempt_when",
        "GATEKEEPER_EXEMPT_WHEN",
        FunctionOf(EXEMPT_WHEN_CALLS),
        None,
        "requests it accepts are neither counted nor limited",
        "both",
    ),
    Option(
        "concurrency",
        "GATEKEEPER_CONCURRENCY",
        _positive_int,
        None,
        "requests in flight",
        "both",
    ),
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
    Option(
        "on_outage",
        "GATEKEEPER_ON_OUTAGE",
        _outage_policy,
        None,
        "while the storage is down: local limits, open or closed",
    ),
)
"""Every option. Those of the app are in the constructor's order (the first four are
flask-gatekeeper 1.0's), those of routes in ``specific()``'s."""

APP_OPTIONS = tuple(option for option in OPTIONS if option.app)
"""The constructor's options, in its order, each with its ``app.config`` key."""
ROUTE_OPTIONS = tuple(option for option in OPTIONS if option.route)
"""``specific()``'s options, in its order."""

CONFIG_KEYS = {option.name: option.key for option in APP_OPTIONS if option.key is not None}
"""Each option and the ``app.config`` key that sets it when the constructor does not."""

_KNOWN_KEYS = frozenset(CONFIG_KEYS.values())
_ROUTE_BY_NAME = {option.name: option for option in ROUTE_OPTIONS}


def route_option(name: str) -> Option:
    """The row of the route option ``name`` (``gk.limit`` reads ``scope`` and ``cost``)."""
    return _ROUTE_BY_NAME[name]


def parse_route(given: Mapping[str, object]) -> dict[str, Any]:
    """``specific()``'s arguments, each checked by its row (those left at None stay None)."""
    return {
        option.name: None if given[option.name] is None else option.read(given[option.name])
        for option in ROUTE_OPTIONS
    }


_IDENTITY = (
    "ip_header",
    "trusted_proxies",
    "ipv6_prefix",
    "allowlist",
    "denylist",
    "key_func",
    "hash_keys",
)
"""The options that say who a client is: ``Settings.identifier`` is made of them."""
_STORAGE_BUILT_WITH = ("max_clients", "key_prefix")
"""The options that ``storage`` is built with: ``Settings.storage`` holds them."""


@dataclass(frozen=True)
class Settings:
    """Validated settings of one app, and where each option's value came from: an option
    of ``APP_OPTIONS`` as parsed, or in ``identifier`` or ``storage``."""

    enabled: bool
    ban_rule: Optional[BanRule]
    rate_limit_rules: RulesOrFunction
    excluded_methods: frozenset[str]
    default_rules: RulesOrFunction
    """Counted per client and per route (``routes.default_scope_name``), on every route
    whose marks for the method give no rules of their own; not on standalone routes."""
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
    offence: str
    """The offence ``report_when``'s reports count toward, on routes that name none."""
    subnet_ban_rule: Optional[SubnetBanRule]
    """Banned addresses of one network that ban the network."""
    ban_rules: Mapping[str, BanRule]
    """Every offence the app counts and its ban rule: ``ban_rule``'s, the default offence
    (when given), and those of the ``ban_rules`` option."""
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
    on_outage: str
    """While the storage is down: "local" (this process's own memory storage enforces the
    same rules), "open" (admit) or "closed" (503). ``fail_open`` follows it."""
    ip_header_trusted: bool
    """False when ``ip_header`` is believed without ``trusted_proxies`` (init_app warns)."""
    sources: Mapping[str, tuple[object, str]]
    """Option -> (the value in force as given, where from: the option name, the config
    key, or "default"), for ``flask gatekeeper config``."""

    def named(self, option: str) -> str:
        """How the user set ``option``: its keyword or config key (the key by default)."""
        return _named(self.sources, option)


def _named(sources: Mapping[str, tuple[object, str]], option: str) -> str:
    source = sources[option][1]
    return CONFIG_KEYS[option] if source == "default" else source


def _check_known_keys(config: Iterable[object]) -> None:
    """A misspelt key would silently leave a protection off: refuse it instead."""
    for key in config:
        if isinstance(key, str) and key.startswith("GATEKEEPER_") and key not in _KNOWN_KEYS:
            close = difflib.get_close_matches(key, list(_KNOWN_KEYS), n=1)
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
    for option in APP_OPTIONS:
        key = CONFIG_KEYS[option.name]
        if given.get(option.name) is not None:
            value, source = given[option.name], option.name
        elif config.get(key) is not None:
            value, source = config[key], key
        else:
            value, source = option.default, "default"
        sources[option.name] = (value, source)
        values[option.name] = None if value is None else option.read_app(value, source)

    def named(option: str) -> str:
        return _named(sources, option)

    def given_or_none(option: str) -> Any:
        """The value of an option the user set, None for its default."""
        return None if sources[option][1] == "default" else values[option]

    trusted_proxies = values["trusted_proxies"]
    ip_header = values["ip_header"]
    if ip_header is None and trusted_proxies is not None:
        ip_header = DEFAULT_PROXY_HEADER
        sources["ip_header"] = (ip_header, "default")
    subnet_rule = values["subnet_ban_rule"]
    if subnet_rule is not None and subnet_rule.ipv6_prefix >= values["ipv6_prefix"]:
        raise ConfigError(
            f"{named('subnet_ban_rule')}: 'ipv6_prefix' must be shorter than ipv6_prefix "
            f"({values['ipv6_prefix']}), the length of one IPv6 client, got "
            f"{subnet_rule.ipv6_prefix!r}"
        )
    ban_rules = values["ban_rules"] or {}
    if values["ban_rule"] is not None:
        ban_rules = {DEFAULT_OFFENCE: values["ban_rule"], **ban_rules}
    values["ban_rules"] = ban_rules
    if values["offence"] is None:
        values["offence"] = DEFAULT_OFFENCE
    else:
        check_offence(values["offence"], ban_rules, named("offence"))
    counted_by = {  # report_when's reports count toward its offence's ban rule
        "report_rate_limited": values["ban_rule"],
        "subnet_ban_rule": values["ban_rule"],
        "report_when": ban_rules.get(values["offence"]),
    }
    for needs_bans, ban_rule in counted_by.items():
        if values[needs_bans] and ban_rule is None:
            raise ConfigError(
                f"{named(needs_bans)}: {sources[needs_bans][0]!r} needs a ban_rule "
                "(GATEKEEPER_BAN_RULE) to count reports toward"
            )
    # max_clients and key_prefix are passed only when given: storage_from refuses each
    # where it would be silently ignored (a storage object, or the other backend)
    storage = storage_from(
        values["storage"],
        named("storage"),
        max_clients=given_or_none("max_clients"),
        key_prefix=given_or_none("key_prefix"),
    )
    if values["state_file"] is not None and not isinstance(storage, MemoryStorage):
        raise ConfigError(
            f"{named('state_file')}: the state file keeps the memory storage's bans; "
            f"{storage!r} keeps its own (drop {named('state_file')}, or use memory://)"
        )
    values["on_outage"] = _outage_policy_of(values, sources, storage, named)
    if isinstance(values["hash_keys"], bytes):
        sources["hash_keys"] = (HIDDEN_KEY, sources["hash_keys"][1])
    values["hash_keys"] = key_hasher(
        values["hash_keys"], config.get("SECRET_KEY"), named("hash_keys")
    )
    values["fail_open"] = values["on_outage"] != "closed"
    identity = {name: values.pop(name) for name in _IDENTITY}
    identity["ip_header"] = ip_header
    for name in _STORAGE_BUILT_WITH:
        del values[name]
    return Settings(
        **{
            **values,
            "rate_limit_rules": values["rate_limit_rules"] or (),
            "default_rules": values["default_rules"] or (),
            "storage": storage,
            "identifier": Identifier(**identity),
            "ip_header_trusted": ip_header is None or trusted_proxies is not None,
            "sources": sources,
        }
    )
