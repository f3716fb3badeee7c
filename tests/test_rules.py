"""Rules as values, and the parsers that validate what users write (``rules.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from flask_gatekeeper import BanRule, ConfigError, ConfigTypeError, GateKeeperError, Rule
from flask_gatekeeper.rules import parse_ban_rule, parse_rules

DAY = 86400
HUGE = 10**400  # a positive int that no float can hold


# --- the error classes ------------------------------------------------------------------------


def test_config_errors_are_plain_python_errors_too() -> None:
    assert issubclass(ConfigError, ValueError)
    assert issubclass(ConfigError, GateKeeperError)
    assert issubclass(ConfigTypeError, ConfigError)
    assert issubclass(ConfigTypeError, TypeError)
    assert issubclass(ConfigTypeError, ValueError)


# --- Rule and BanRule -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "window"),
    [
        pytest.param(20, 1, id="int window"),
        pytest.param(20, 1.0, id="float window"),
        pytest.param(1, 0.5, id="sub-second window"),
        pytest.param(10**9, 1e-3, id="large count, tiny window"),
    ],
)
def test_rule_accepts_ints_and_floats(count: int, window: float) -> None:
    rule = Rule(count, window)
    assert rule.count == count
    assert rule.window == window


@pytest.mark.parametrize(
    ("count", "window", "duration"),
    [
        pytest.param(3, 10, 600, id="ints"),
        pytest.param(3, 10.5, 0.25, id="floats"),
        pytest.param(1, 0.5, 1, id="mixed"),
    ],
)
def test_ban_rule_accepts_ints_and_floats(count: int, window: float, duration: float) -> None:
    rule = BanRule(count, window, duration)
    assert (rule.count, rule.window, rule.duration) == (count, window, duration)


def test_rules_are_values() -> None:
    assert Rule(20, 1) == Rule(20, 1.0)
    assert Rule(20, 1) != Rule(20, 2)
    assert len({Rule(20, 1), Rule(20, 1), Rule(5, 60)}) == 2
    assert BanRule(3, 10, 600) == BanRule(3, 10.0, 600.0)


BAD_RULE_FIELDS = [
    pytest.param((0, 1), ConfigError, "'count'", "0", id="count 0"),
    pytest.param((-1, 1), ConfigError, "'count'", "-1", id="count negative"),
    pytest.param(("3", 1), ConfigTypeError, "'count'", "'3'", id="count a string"),
    pytest.param((True, 1), ConfigTypeError, "'count'", "True", id="count a bool"),
    pytest.param((2.5, 1), ConfigTypeError, "'count'", "2.5", id="count a float"),
    pytest.param((None, 1), ConfigTypeError, "'count'", "None", id="count None"),
    pytest.param((1, 0), ConfigError, "'window'", "0", id="window 0"),
    pytest.param((1, -0.5), ConfigError, "'window'", "-0.5", id="window negative"),
    pytest.param((1, float("inf")), ConfigError, "'window'", "inf", id="window inf"),
    pytest.param((1, float("nan")), ConfigError, "'window'", "nan", id="window nan"),
    pytest.param((1, "1"), ConfigTypeError, "'window'", "'1'", id="window a string"),
    pytest.param((1, True), ConfigTypeError, "'window'", "True", id="window a bool"),
]


@pytest.mark.parametrize(("args", "error", "field", "value"), BAD_RULE_FIELDS)
def test_rule_rejects_bad_fields(
    args: tuple[Any, ...], error: type[ConfigError], field: str, value: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Rule(*args)
    assert type(info.value) is error
    assert field in str(info.value)
    assert f"got {value}" in str(info.value)


@pytest.mark.parametrize(
    ("args", "error", "field", "value"),
    [
        *BAD_RULE_FIELDS,
        pytest.param((1, 1, 0), ConfigError, "'duration'", "0", id="duration 0"),
        pytest.param((1, 1, -5), ConfigError, "'duration'", "-5", id="duration negative"),
        pytest.param((1, 1, float("inf")), ConfigError, "'duration'", "inf", id="duration inf"),
        pytest.param((1, 1, float("nan")), ConfigError, "'duration'", "nan", id="duration nan"),
        pytest.param((1, 1, "600"), ConfigTypeError, "'duration'", "'600'", id="duration str"),
    ],
)
def test_ban_rule_rejects_bad_fields(
    args: tuple[Any, ...], error: type[ConfigError], field: str, value: str
) -> None:
    full_args = args if len(args) == 3 else (*args, 600)
    with pytest.raises(ConfigError) as info:
        BanRule(*full_args)
    assert type(info.value) is error
    assert field in str(info.value)
    assert f"got {value}" in str(info.value)


@pytest.mark.parametrize(
    ("rule", "text"),
    [
        pytest.param(Rule(20, 1), "20 requests in a 1s window", id="seed"),
        pytest.param(Rule(20, 1.0), "20 requests in a 1s window", id="float whole seconds"),
        pytest.param(Rule(100, 10), "100 requests in a 10s window", id="10s"),
        pytest.param(Rule(3, 0.5), "3 requests in a 0.5s window", id="half a second"),
        pytest.param(Rule(5, 2.25), "5 requests in a 2.25s window", id="fraction"),
        pytest.param(Rule(1000, DAY), "1000 requests in a 86400s window", id="a day"),
        pytest.param(Rule(2, 30 * DAY), "2 requests in a 2592000s window", id="a month"),
        pytest.param(Rule(2, 360 * DAY), "2 requests in a 31104000s window", id="a year"),
    ],
)
def test_rule_reads_as_text(rule: Rule, text: str) -> None:
    assert str(rule) == text


@pytest.mark.parametrize(
    ("rule", "text"),
    [
        pytest.param(BanRule(3, 10, 600), "reported 3 times in a 10s window", id="seed"),
        pytest.param(BanRule(2, 0.5, 1), "reported 2 times in a 0.5s window", id="half second"),
        pytest.param(BanRule(5, 60.0, 3600), "reported 5 times in a 60s window", id="float"),
    ],
)
def test_ban_rule_reads_as_text(rule: BanRule, text: str) -> None:
    assert str(rule) == text


# --- parse_rules: what users may write ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param({"count": 20, "window": 1}, [Rule(20, 1)], id="one seed dict"),
        pytest.param(
            [{"count": 20, "window": 1}, {"count": 100, "window": 10}],
            [Rule(20, 1), Rule(100, 10)],
            id="seed list of dicts",
        ),
        pytest.param([{"count": 2, "window": 0.5}], [Rule(2, 0.5)], id="float window in dict"),
        pytest.param(({"count": 2, "window": 1},), [Rule(2, 1)], id="tuple of dicts"),
        pytest.param(Rule(5, 60), [Rule(5, 60)], id="one Rule"),
        pytest.param([Rule(5, 60), Rule(1, 1)], [Rule(5, 60), Rule(1, 1)], id="list of Rules"),
        pytest.param("20/second", [Rule(20, 1)], id="slash"),
        pytest.param("20 per second", [Rule(20, 1)], id="per"),
        pytest.param("100 per 10 seconds", [Rule(100, 10)], id="per multiple plural"),
        pytest.param("100/10 seconds", [Rule(100, 10)], id="slash multiple"),
        pytest.param("3/2minutes", [Rule(3, 120)], id="multiple without space"),
        pytest.param("1/seconds", [Rule(1, 1)], id="plural without multiple"),
        pytest.param("1/minute", [Rule(1, 60)], id="minute"),
        pytest.param("1/hour", [Rule(1, 3600)], id="hour"),
        pytest.param("2/day", [Rule(2, DAY)], id="day"),
        pytest.param("1/month", [Rule(1, 30 * DAY)], id="month is 30 days"),
        pytest.param("1/year", [Rule(1, 360 * DAY)], id="year is 360 days as in limits"),
        pytest.param("20/SECOND", [Rule(20, 1)], id="upper case"),
        pytest.param("20 PER Second", [Rule(20, 1)], id="mixed case"),
        pytest.param("  7 / day  ", [Rule(7, DAY)], id="spaces"),
        pytest.param("5/minute; 1000/day", [Rule(5, 60), Rule(1000, DAY)], id="semicolon"),
        pytest.param("5/minute,1000/day", [Rule(5, 60), Rule(1000, DAY)], id="comma"),
        pytest.param("5/minute | 1000/day", [Rule(5, 60), Rule(1000, DAY)], id="pipe"),
        pytest.param(
            "1/second; 5 per 10 seconds, 100/hour | 1000/day",
            [Rule(1, 1), Rule(5, 10), Rule(100, 3600), Rule(1000, DAY)],
            id="every separator",
        ),
        pytest.param(["20/second"], [Rule(20, 1)], id="list of one string"),
        pytest.param(
            [Rule(1, 1), {"count": 2, "window": 2}, "3/minute; 4/hour"],
            [Rule(1, 1), Rule(2, 2), Rule(3, 60), Rule(4, 3600)],
            id="list mixing all three",
        ),
    ],
)
def test_parse_rules_accepts(value: object, expected: list[Rule]) -> None:
    rules = parse_rules(value, "rate_limit_rules")
    assert rules == tuple(expected)
    for rule in rules:
        assert type(rule) is Rule
        assert type(rule.count) is int


def test_parse_rules_keeps_the_given_rule_objects() -> None:
    rule = Rule(3, 1.5)
    assert parse_rules(rule, "rate_limit_rules")[0] is rule
    assert parse_rules([rule], "rate_limit_rules")[0] is rule


NAME = "rate_limit_rules"


@pytest.mark.parametrize(
    ("value", "error", "fragments"),
    [
        # dicts: keys
        pytest.param(
            [{"count": 1}], ConfigError, [f"{NAME}[0]", "missing key 'window'"], id="missing window"
        ),
        pytest.param(
            {"window": 1}, ConfigError, [f"{NAME}: ", "missing key 'count'"], id="missing count"
        ),
        pytest.param(
            [{"count": 1, "window": 1, "burst": 2}],
            ConfigError,
            [f"{NAME}[0]", "unknown key 'burst'"],
            id="unknown key",
        ),
        pytest.param(
            [{"count": 1, "windows": 1}],
            ConfigError,
            [f"{NAME}[0]", "'windows'"],
            id="misspelt key",
        ),
        # dicts: values
        pytest.param(
            [{"count": 0, "window": 1}], ConfigError, [f"{NAME}[0]", "'count'", "got 0"], id="0"
        ),
        pytest.param(
            [{"count": 1, "window": 1}, {"count": 0, "window": 1}],
            ConfigError,
            [f"{NAME}[1]", "'count'", "got 0"],
            id="position named",
        ),
        pytest.param(
            [{"count": -3, "window": 1}],
            ConfigError,
            [f"{NAME}[0]", "'count'", "got -3"],
            id="count negative",
        ),
        pytest.param(
            [{"count": "3", "window": 1}],
            ConfigTypeError,
            [f"{NAME}[0]", "'count'", "got '3'"],
            id="count non-numeric",
        ),
        pytest.param(
            [{"count": True, "window": 1}],
            ConfigTypeError,
            [f"{NAME}[0]", "'count'", "got True"],
            id="count bool",
        ),
        pytest.param(
            [{"count": 2.5, "window": 1}],
            ConfigTypeError,
            [f"{NAME}[0]", "'count'", "got 2.5"],
            id="count float",
        ),
        pytest.param(
            [{"count": 1, "window": 0}],
            ConfigError,
            [f"{NAME}[0]", "'window'", "got 0"],
            id="window 0",
        ),
        pytest.param(
            [{"count": 1, "window": -1}],
            ConfigError,
            [f"{NAME}[0]", "'window'", "got -1"],
            id="window negative",
        ),
        pytest.param(
            [{"count": 1, "window": float("inf")}],
            ConfigError,
            [f"{NAME}[0]", "'window'", "got inf"],
            id="window inf",
        ),
        pytest.param(
            [{"count": 1, "window": float("nan")}],
            ConfigError,
            [f"{NAME}[0]", "'window'", "got nan"],
            id="window nan",
        ),
        pytest.param(
            [{"count": 1, "window": "1"}],
            ConfigTypeError,
            [f"{NAME}[0]", "'window'", "got '1'"],
            id="window string",
        ),
        # containers
        pytest.param([], ConfigError, [NAME, "empty"], id="empty list"),
        pytest.param((), ConfigError, [NAME, "empty"], id="empty tuple"),
        pytest.param(42, ConfigTypeError, [NAME, "got 42"], id="non-list"),
        pytest.param(None, ConfigTypeError, [NAME, "got None"], id="None"),
        pytest.param({"20/second"}, ConfigTypeError, [NAME, "'20/second'"], id="a set"),
        pytest.param(b"20/second", ConfigTypeError, [NAME, "b'20/second'"], id="bytes"),
        pytest.param([42], ConfigTypeError, [f"{NAME}[0]", "got 42"], id="item not a rule"),
        pytest.param(
            [Rule(1, 1), BanRule(1, 1, 1)],
            ConfigTypeError,
            [f"{NAME}[1]", "BanRule"],
            id="ban rule as a rate rule",
        ),
        # strings
        pytest.param(
            "20/fortnight", ConfigError, [f"{NAME}: ", "'20/fortnight'"], id="unknown unit"
        ),
        pytest.param("", ConfigError, [f"{NAME}: ", "''"], id="empty string"),
        pytest.param("per second", ConfigError, [NAME, "'per second'"], id="no count"),
        pytest.param("abc", ConfigError, [NAME, "'abc'"], id="not a rule"),
        pytest.param("20/", ConfigError, [NAME, "'20/'"], id="no unit"),
        pytest.param("20 second", ConfigError, [NAME, "'20 second'"], id="no separator"),
        pytest.param("2.5/second", ConfigError, [NAME, "'2.5/second'"], id="fractional count"),
        pytest.param("-1/second", ConfigError, [NAME, "'-1/second'"], id="negative count"),
        pytest.param("20/second;", ConfigError, [NAME, "'20/second;'"], id="trailing separator"),
        pytest.param("0/second", ConfigError, [NAME, "'count'", "got 0"], id="zero count"),
        pytest.param("1 per 0 seconds", ConfigError, [NAME, "'window'", "got 0"], id="zero window"),
        pytest.param(
            ["20/second", "20/fortnight"],
            ConfigError,
            [f"{NAME}[1]", "'20/fortnight'"],
            id="bad string at a position",
        ),
    ],
)
def test_parse_rules_rejects(value: object, error: type[ConfigError], fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_rules(value, NAME)
    assert type(info.value) is error
    message = str(info.value)
    assert message.startswith(NAME)
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"count": 0, "window": 1}, id="dict"),
        pytest.param("20/fortnight", id="string"),
        pytest.param(42, id="type"),
    ],
)
def test_parse_rules_errors_name_the_option_or_config_key_given(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^GATEKEEPER_RATE_LIMIT_RULES: "):
        parse_rules(value, "GATEKEEPER_RATE_LIMIT_RULES")


def test_parse_rules_error_for_a_single_rule_has_no_position() -> None:
    with pytest.raises(ConfigError) as info:
        parse_rules({"count": 0, "window": 1}, NAME)
    assert f"{NAME}[" not in str(info.value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"count": 1, "window": HUGE}, id="dict"),
        pytest.param(f"1 per {HUGE} seconds", id="string"),
    ],
)
def test_parse_rules_rejects_a_window_no_float_can_hold(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^rate_limit_rules: .*'window'"):
        parse_rules(value, NAME)


# --- parse_ban_rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            {"count": 3, "window": 10, "duration": 600}, BanRule(3, 10, 600), id="seed dict"
        ),
        pytest.param(
            {"duration": 0.5, "window": 2.5, "count": 1}, BanRule(1, 2.5, 0.5), id="floats"
        ),
        pytest.param(BanRule(2, 5, 60), BanRule(2, 5, 60), id="BanRule"),
    ],
)
def test_parse_ban_rule_accepts(value: object, expected: BanRule) -> None:
    assert parse_ban_rule(value, "ban_rule") == expected


def test_parse_ban_rule_keeps_the_given_object() -> None:
    rule = BanRule(2, 5, 60)
    assert parse_ban_rule(rule, "ban_rule") is rule


SEED_BAN: dict[str, object] = {"count": 3, "window": 10, "duration": 600}


def _ban(**changes: object) -> dict[str, object]:
    return {**SEED_BAN, **changes}


@pytest.mark.parametrize(
    ("value", "error", "fragments"),
    [
        pytest.param(
            {"count": 3, "window": 10},
            ConfigError,
            ["missing key 'duration'"],
            id="missing duration",
        ),
        pytest.param(
            {"window": 10, "duration": 600}, ConfigError, ["missing key 'count'"], id="no count"
        ),
        pytest.param(_ban(ip="1.2.3.4"), ConfigError, ["unknown key 'ip'"], id="unknown key"),
        pytest.param(_ban(count=0), ConfigError, ["'count'", "got 0"], id="count 0"),
        pytest.param(_ban(count=-1), ConfigError, ["'count'", "got -1"], id="count negative"),
        pytest.param(_ban(count="3"), ConfigTypeError, ["'count'", "got '3'"], id="count str"),
        pytest.param(_ban(count=True), ConfigTypeError, ["'count'", "got True"], id="count bool"),
        pytest.param(_ban(count=2.5), ConfigTypeError, ["'count'", "got 2.5"], id="count float"),
        pytest.param(_ban(window=0), ConfigError, ["'window'", "got 0"], id="window 0"),
        pytest.param(
            _ban(window=float("inf")), ConfigError, ["'window'", "got inf"], id="window inf"
        ),
        pytest.param(_ban(duration=0), ConfigError, ["'duration'", "got 0"], id="duration 0"),
        pytest.param(
            _ban(duration=-600), ConfigError, ["'duration'", "got -600"], id="duration negative"
        ),
        pytest.param(
            _ban(duration=float("nan")), ConfigError, ["'duration'", "got nan"], id="duration nan"
        ),
        pytest.param(
            _ban(duration="600"),
            ConfigTypeError,
            ["'duration'", "got '600'"],
            id="duration string",
        ),
        pytest.param(
            _ban(duration=None), ConfigTypeError, ["'duration'", "got None"], id="duration None"
        ),
        pytest.param(42, ConfigTypeError, ["got 42"], id="not a dict"),
        pytest.param(None, ConfigTypeError, ["got None"], id="None"),
        pytest.param("3/10 seconds", ConfigTypeError, ["'3/10 seconds'"], id="a string"),
        pytest.param([SEED_BAN], ConfigTypeError, ["[{'count': 3"], id="a list"),
        pytest.param(Rule(3, 10), ConfigTypeError, ["Rule(count=3"], id="a rate rule"),
    ],
)
def test_parse_ban_rule_rejects(
    value: object, error: type[ConfigError], fragments: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_ban_rule(value, "GATEKEEPER_BAN_RULE")
    assert type(info.value) is error
    message = str(info.value)
    assert message.startswith("GATEKEEPER_BAN_RULE: ")
    for fragment in fragments:
        assert fragment in message


def test_parse_ban_rule_rejects_a_duration_no_float_can_hold() -> None:
    with pytest.raises(ConfigError, match=r"^ban_rule: .*'duration'"):
        parse_ban_rule(_ban(duration=HUGE), "ban_rule")
