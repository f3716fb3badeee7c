"""Rules as typed values, and the parsers that turn user input into them.

Users write rules three ways: the seed's dicts (``{"count": 20, "window": 1}``),
these dataclasses, or Flask-Limiter's strings (``"20/second; 100 per 10 seconds"``).
Everything is validated here, once, at start-up, so a request never meets a bad rule.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable, Optional, TypeVar, Union

from .errors import ConfigError, ConfigTypeError
from .strategies import SLIDING_LOG, check_strategy
from .units import MAX_MICROSECONDS, MAX_SECONDS, RESOLUTION, microseconds

__all__ = [
    "MAX_COUNT",
    "MAX_SECONDS",
    "REQUEST_FIELDS",
    "BanRule",
    "Calls",
    "ConcurrencyLimit",
    "KeySource",
    "Rule",
    "RuleLike",
    "RulesFunction",
    "SubnetBanRule",
    "check_key_source",
    "check_offence",
    "check_seconds",
    "key_label",
    "known_offences",
    "parse_ban_rule",
    "parse_rules",
    "parse_rules_or_function",
    "parse_subnet_ban_rule",
    "request_field",
]


KeySource = Union[str, Callable[[], object]]
"""What names the key of a rule with its own key: a function, or a request field."""

REQUEST_FIELDS = ("form", "args", "json", "headers", "cookies", "view_args")
"""Where ``"<source>[<name>]"`` reads a key: ``request.<source>``'s value for ``name``."""

_REQUEST_FIELD = re.compile(r"(?P<source>[a-z_]+)\[(?P<name>[^\[\]]+)\]")


def request_field(text: str) -> Optional[tuple[str, str]]:
    """``"form[user]"`` -> ``("form", "user")``; None for text that names no field."""
    match = _REQUEST_FIELD.fullmatch(text)
    if match is None or match["source"] not in REQUEST_FIELDS:
        return None
    return match["source"], match["name"]


def check_key_source(value: object) -> None:
    """A rule's ``key``: a function, or a request field such as ``"form[user]"``."""
    if isinstance(value, str):
        if request_field(value) is None:
            fields = ", ".join(f"{source}[...]" for source in REQUEST_FIELDS)
            raise ConfigError(
                f"'key': expected a function or a request field ({fields}), got {value!r}"
            )
    elif not callable(value):
        raise ConfigTypeError(
            f"'key': expected a function or a request field like 'form[user]', got {value!r}"
        )
    else:
        KEY_CALLS.check(value, "'key'")


def key_label(key: KeySource) -> str:
    """How a rule's key reads in its description and its scope's name."""
    if isinstance(key, str):
        return key
    name = getattr(key, "__name__", "")
    return name if name and name != "<lambda>" else "key"


@dataclass(frozen=True)
class Calls:
    """How the library calls one kind of function that the app gives: ``option``'s
    function, called with the positional arguments of one of ``shapes`` (each names
    them; ``()`` is a bare call). A function is checked against them when it is given,
    so that one which could never be called fails at start-up or at decoration, not on
    every request."""

    option: str
    shapes: tuple[tuple[str, ...], ...] = ((),)

    def __str__(self) -> str:
        return " or ".join(f"{self.option}({', '.join(shape)})" for shape in self.shapes)

    def check(self, func: object, name: str) -> tuple[str, ...]:
        """The first of ``shapes`` that ``func`` accepts (the call the library will
        make); ``ConfigTypeError`` naming ``name``, where it was given, when it accepts
        none. A function whose signature cannot be read (some builtins) is taken at its
        word: the first shape."""
        if not callable(func):
            raise ConfigTypeError(f"{name}: expected a function called as {self}, got {func!r}")
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError):
            return self.shapes[0]
        for shape in self.shapes:
            try:
                signature.bind(*shape)
            except TypeError:
                continue
            return shape
        shown = getattr(func, "__qualname__", None) or repr(func)
        raise ConfigTypeError(
            f"{name}: expected a function that can be called as {self}, got {shown}{signature}"
        )


KEY_CALLS = Calls("key")
"""A rule's ``key`` function: called bare for each request (``identity.keys.key_reader``)."""
DISTINCT_CALLS = Calls("distinct")
"""A distinct rule's function: called bare for each request (``policy.with_values``)."""
RULES_CALLS = Calls("rate_limit_rules", ((), ("client_key",)))
"""A rules function: called bare, or with the client key when it cannot be called bare
(``RulesFunction``)."""


def _seconds_text(seconds: float) -> str:
    """``1`` -> ``"1s"``, ``0.5`` -> ``"0.5s"``: how windows and durations read in messages."""
    return f"{seconds:.15g}s"


@dataclass(frozen=True)
class Rule:
    """At most ``count`` admitted requests per client in any ``window`` seconds.

    ``strategy`` picks the algorithm (see ``strategies``); None means the extension's
    default, itself ``"sliding-log"`` (exact) unless configured.

    ``key`` counts the rule under another key than the client's: a function returning
    it for each request (None: the rule does not apply), or a field of the request,
    ``"form[user]"`` (see ``REQUEST_FIELDS``). "20 per hour per account" beside "5 per
    minute per IP" is then one atomic check of both.

    With ``distinct``, a function with no arguments called for each request, the rule
    counts the distinct values it returns instead of requests: at most ``count`` of them
    in any ``window`` seconds, exactly (no strategy applies); a value seen within the
    window is admitted again, and None leaves the request to the other rules.

    A ``shadow`` rule is checked and counted like the others but never refuses: a
    request that it alone would refuse is admitted (and counted), and reported as one it
    "would refuse" (``Decision.shadowed``, then signals, stats and logs as in a dry
    run), so that a new rule can be tried on real traffic beside rules that enforce.
    """

    count: int
    window: float
    strategy: Optional[str] = None
    key: Optional[KeySource] = None
    distinct: Optional[Callable[[], object]] = field(default=None, hash=False)
    shadow: bool = False
    window_us: int = field(init=False, repr=False, compare=False)
    """``window`` in whole microseconds (rounded up): what the storages compute with."""

    def __post_init__(self) -> None:
        _check_count("count", self.count)
        check_seconds("window", self.window)
        if self.strategy is not None:
            try:
                check_strategy(self.strategy)
            except ConfigError as exc:
                raise ConfigError(f"'strategy': {exc}") from None
        if self.key is not None:
            check_key_source(self.key)
        if self.distinct is not None:
            self._check_distinct()
        if not isinstance(self.shadow, bool):
            raise ConfigTypeError(f"'shadow' must be True or False, got {self.shadow!r}")
        object.__setattr__(self, "window_us", microseconds(self.window))

    def _check_distinct(self) -> None:
        """A distinct rule's function is called bare for each request, and counts exactly."""
        DISTINCT_CALLS.check(self.distinct, "'distinct'")
        if self.strategy is not None:
            raise ConfigError(
                f"'strategy' does not apply to a 'distinct' rule (it counts distinct values "
                f"exactly), got {self.strategy!r}"
            )

    @property
    def logged(self) -> bool:
        """Whether the rule is decided from the sliding log (its default strategy)."""
        return self.distinct is None and (self.strategy is None or self.strategy == SLIDING_LOG)

    @functools.cached_property
    def name(self) -> str:
        """A stable policy name for headers and problem details: ``"20-per-1s"``, or
        ``"20-distinct-per-3600s"`` for a distinct rule."""
        counted = "-distinct" if self.distinct is not None else ""
        return f"{self.count}{counted}-per-{_seconds_text(self.window)}"

    def __str__(self) -> str:
        return self._text

    @functools.cached_property
    def _text(self) -> str:
        """What ``str`` gives, made once: every refusal's description names its rule."""
        if self.distinct is not None:
            noun = "distinct value" if self.count == 1 else "distinct values"
        else:
            noun = "request" if self.count == 1 else "requests"
        text = f"{self.count} {noun} in a {_seconds_text(self.window)} window"
        if self.key is not None:
            text = f"{text} per {key_label(self.key)}"
        if self.strategy not in (None, SLIDING_LOG):
            text = f"{text}, {self.strategy}"
        return f"{text}, shadow" if self.shadow else text


@dataclass(frozen=True)
class ConcurrencyLimit:
    """At most ``count`` requests of a client in flight at once: what a ``TooManyInFlight``
    refusal names as its ``rule``, read like a ``Rule`` (``count``, ``name``, ``str``)."""

    count: int

    def __post_init__(self) -> None:
        _check_count("count", self.count)

    @property
    def name(self) -> str:
        """A stable policy name for problem details: ``"3-in-flight"``."""
        return f"{self.count}-in-flight"

    def __str__(self) -> str:
        noun = "request" if self.count == 1 else "requests"
        return f"{self.count} {noun} in flight"


@dataclass(frozen=True)
class BanRule:
    """``count`` reports within ``window`` seconds ban a client for ``duration`` seconds.

    Repeat offenders (fail2ban's ``bantime.increment``): each ban lasts ``factor`` times
    the previous one, up to ``max_duration``; a client with no ban for ``forget_after``
    seconds after its last one ends starts again from ``duration``. With the default
    ``factor`` of 1 every ban lasts ``duration``, as in flask-gatekeeper 1.0.
    """

    count: int
    window: float
    duration: float
    factor: float = 1
    max_duration: Optional[float] = None
    forget_after: float = 86400

    def __post_init__(self) -> None:
        _check_count("count", self.count)
        check_seconds("window", self.window)
        check_seconds("duration", self.duration)
        if isinstance(self.factor, bool) or not isinstance(self.factor, (int, float)):
            raise ConfigTypeError(f"'factor' must be a number of at least 1, got {self.factor!r}")
        if not 1 <= self.factor <= 1000:
            raise ConfigError(f"'factor' must be a number from 1 to 1000, got {self.factor!r}")
        if self.max_duration is not None:
            check_seconds("max_duration", self.max_duration)
            if self.max_duration < self.duration:
                raise ConfigError(
                    f"'max_duration' must be at least 'duration' ({self.duration!r}), "
                    f"got {self.max_duration!r}"
                )
        check_seconds("forget_after", self.forget_after)

    def duration_after(self, earlier_bans: int) -> int:
        """How long, in microseconds, the next ban lasts for a client banned
        ``earlier_bans`` times lately. ``storage/redis/lua/common.lua`` computes the same
        expression, in the same order, on the same doubles."""
        cap = microseconds(self.max_duration) if self.max_duration is not None else MAX_MICROSECONDS
        grown = microseconds(self.duration) * float(self.factor) ** min(earlier_bans, 64)
        return math.floor(min(grown, cap) + 0.5)

    def __str__(self) -> str:
        return self._text

    @functools.cached_property
    def _text(self) -> str:
        """What ``str`` gives, made once: every refusal of a banned client names it."""
        times = "once" if self.count == 1 else f"{self.count} times"
        return f"reported {times} in a {_seconds_text(self.window)} window"


RuleLike = Union[Rule, Mapping[str, object], str]
"""What users may pass as one rate rule (a string may hold several, separated by ``;``)."""


@dataclass(frozen=True)
class SubnetBanRule:
    """``count`` distinct addresses of one network banned within ``window`` seconds ban
    the whole network for ``duration`` seconds: an IPv4 address's /``ipv4_prefix``
    network, an IPv6 client's /``ipv6_prefix``. The escalation fail2ban's users have
    asked for: one host of a botnet's block is banned, then its neighbours, then the
    block."""

    count: int
    window: float
    duration: float
    ipv4_prefix: int = 24
    ipv6_prefix: int = 48

    def __post_init__(self) -> None:
        _check_count("count", self.count)
        check_seconds("window", self.window)
        check_seconds("duration", self.duration)
        for name, longest in (("ipv4_prefix", 31), ("ipv6_prefix", 127)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigTypeError(f"{name!r} must be a prefix length, got {value!r}")
            if not 0 <= value <= longest:
                raise ConfigError(f"{name!r} must be from 0 to {longest}, got {value!r}")

    def prefix(self, version: int) -> int:
        """The length of the network an address of IP ``version`` escalates to."""
        return self.ipv4_prefix if version == 4 else self.ipv6_prefix

    def __str__(self) -> str:
        return (
            f"{self.count} banned addresses of one /{self.ipv4_prefix} (IPv4) or "
            f"/{self.ipv6_prefix} (IPv6) within {_seconds_text(self.window)}"
        )


def parse_subnet_ban_rule(value: object, name: str) -> SubnetBanRule:
    """Validate the subnet ban rule given as ``name``: a ``SubnetBanRule`` or a dict."""
    return _ban_rule_of(SubnetBanRule, value, name, ("ipv4_prefix", "ipv6_prefix"))


MAX_COUNT = 10**9
"""The largest count of any rule: counts, costs and their sums stay exact in Lua's
doubles and in the numbers a script hands Redis (from about 1e17 Lua writes them in
exponent form, which Redis refuses), with ample room."""


def _check_count(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigTypeError(f"{field!r} must be a positive integer, got {value!r}")
    if value < 1:
        raise ConfigError(f"{field!r} must be a positive integer, got {value!r}")
    if value > MAX_COUNT:
        raise ConfigError(f"{field!r} must be at most {MAX_COUNT}, got {value!r}")


def check_seconds(name: str, value: object) -> None:
    """Refuse anything but a number of seconds from one microsecond (the storages'
    resolution: a shorter window could never limit) up to ``MAX_SECONDS``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigTypeError(f"{name!r} must be a positive number of seconds, got {value!r}")
    if not RESOLUTION <= value <= MAX_SECONDS:  # also refuses nan
        hint = " (one microsecond is the storages' resolution)" if 0 < value < RESOLUTION else ""
        raise ConfigError(
            f"{name!r} must be a number of seconds from {RESOLUTION:g} to {MAX_SECONDS}, "
            f"got {value!r}{hint}"
        )


_UNIT_SECONDS = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "month": 30 * 86400,
    "year": 360 * 86400,
}
_ONE_RULE = re.compile(
    r"\s*(?P<count>\d+)\s*(?:/|\s+per\s+)\s*(?P<multiple>\d+)?\s*"
    r"(?P<unit>second|minute|hour|day|month|year)s?\s*"
    r"(?:\((?P<strategy>[a-z-]+)\)\s*)?(?P<shadow>shadow\s*)?",
    re.IGNORECASE,
)
_SEPARATOR = re.compile(r"[;,|]")


def _parse_rule_string(text: str) -> list[Rule]:
    """Flask-Limiter's grammar: ``"20/second"``, ``"100 per 10 seconds"``, ``"5/minute; 1000/day"``,
    each optionally followed by a strategy in parentheses: ``"10000/day (gcra)"``, then
    optionally by ``shadow`` for a shadow rule: ``"10/minute shadow"``.

    Months are 30 days and years 360 days, as in ``limits``, so migrated rules keep their meaning.
    """
    rules = []
    for part in _SEPARATOR.split(text):
        if not part.strip():
            raise ConfigError(
                f"{text!r} has an empty rule between separators (';', ',' or '|'): "
                "drop the extra separator"
            )
        match = _ONE_RULE.fullmatch(part)
        if match is None:
            raise ConfigError(
                f"{text!r} is not a rule: expected e.g. '20/second', '100 per 10 seconds' "
                "or '5/minute; 1000/day'"
            )
        multiple = int(match["multiple"] or 1)
        seconds = multiple * _UNIT_SECONDS[match["unit"].lower()]
        strategy = match["strategy"].lower() if match["strategy"] else None
        rules.append(Rule(int(match["count"]), seconds, strategy, shadow=bool(match["shadow"])))
    return rules


def _fields(
    value: Mapping[str, object], required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, object]:
    known = required + optional
    unknown = sorted(str(key) for key in value if key not in known)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} (expected {', '.join(known)})")
    missing = [key for key in required if key not in value]
    if missing:
        raise ConfigError(f"missing key {missing[0]!r} in {dict(value)!r}")
    return {str(key): item for key, item in value.items()}


def _parse_one(value: object) -> list[Rule]:
    if isinstance(value, Rule):
        return [value]
    if isinstance(value, str):
        return _parse_rule_string(value)
    if isinstance(value, Mapping):
        fields = _fields(value, ("count", "window"), ("strategy", "key", "distinct", "shadow"))
        return [Rule(**fields)]  # type: ignore[arg-type]  # Rule checks the types
    raise ConfigTypeError(
        f"a rule must be a dict, a Rule or a string like '20/second', got {value!r}"
    )


def parse_rules(value: object, name: str) -> tuple[Rule, ...]:
    """Validate the rules given as ``name`` (an option or config key) and return them typed.

    Accepts one rule (dict, ``Rule`` or string) or a list of them; every error names
    ``name``, the position in the list and the offending value.
    """
    items = [value] if isinstance(value, (str, Rule, Mapping)) else value
    if not isinstance(items, (list, tuple)):
        raise ConfigTypeError(f"{name}: expected a list of rules, got {value!r}")
    if not items:
        raise ConfigError(f"{name}: the list of rules is empty; pass None for no rules")
    rules: list[Rule] = []
    for index, item in enumerate(items):
        where = name if items is not value else f"{name}[{index}]"
        try:
            rules.extend(_parse_one(item))
        except ConfigTypeError as exc:
            raise ConfigTypeError(f"{where}: {exc}") from None
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return tuple(rules)


def parse_ban_rule(value: object, name: str) -> BanRule:
    """Validate the ban rule given as ``name``: a ``BanRule`` or a dict of its three fields."""
    return _ban_rule_of(BanRule, value, name, ("factor", "max_duration", "forget_after"))


def known_offences(ban_rules: Mapping[str, BanRule]) -> str:
    """The offences an app counts, for an error that names an unknown one."""
    return ", ".join(map(repr, ban_rules)) or "none: no ban_rule and no ban_rules"


def check_offence(offence: str, ban_rules: Mapping[str, BanRule], name: str) -> None:
    """Refuse an offence with no ban rule in ``ban_rules`` (every offence of an app)."""
    if offence not in ban_rules:
        raise ConfigError(
            f"{name}: {offence!r} is not an offence of this app (it counts "
            f"{known_offences(ban_rules)}; ban_rules, GATEKEEPER_BAN_RULES, names offences)"
        )


AnyBanRule = TypeVar("AnyBanRule", BanRule, "SubnetBanRule")


def _ban_rule_of(
    kind: type[AnyBanRule], value: object, name: str, optional: tuple[str, ...]
) -> AnyBanRule:
    """A ban rule of ``kind`` as given, or made from a dict of its fields."""
    if isinstance(value, kind):
        return value
    try:
        if not isinstance(value, Mapping):
            raise ConfigTypeError(
                f"expected a dict with count, window and duration, or a {kind.__name__}, "
                f"got {value!r}"
            )
        fields = _fields(value, ("count", "window", "duration"), optional)
        return kind(**fields)  # type: ignore[arg-type]  # the rule checks the types
    except ConfigTypeError as exc:
        raise ConfigTypeError(f"{name}: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None


@dataclass(frozen=True)
class RulesFunction:
    """Rules computed for each request by the app's ``func``, called with no argument or,
    when it cannot be called so, with the client key (``RULES_CALLS``). It returns rules in any
    form ``parse_rules`` accepts, or None for no limit; ``name`` is where it was given."""

    func: Callable[..., object]
    name: str
    takes_key: bool

    def __call__(self, client: str) -> object:
        return self.func(client) if self.takes_key else self.func()


def parse_rules_or_function(value: object, name: str) -> Union[tuple[Rule, ...], RulesFunction]:
    """Rules as ``parse_rules`` reads them, or a function computing them per request."""
    if callable(value) and not isinstance(value, (Rule, type)):
        return RulesFunction(value, name, bool(RULES_CALLS.check(value, name)))
    return parse_rules(value, name)
