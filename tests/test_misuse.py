"""Mistakes that used to switch a protection off without a word: a function that can never
be called as the library calls it, a decorator misused, reports with nothing to count
them, Flask-Limiter's names. Each fails where it is written (start-up or decoration), or
says once, in the log, why it does nothing."""

from __future__ import annotations

import functools
import re
from typing import Any, Callable

import pytest
from flask import Blueprint, Flask, Response
from flask.views import View

from flask_gatekeeper import ConfigError, ConfigTypeError, GateKeeper, Rule
from support import IP, AppFactory, gatekeeper_logs

BAN_RULE = {"count": 2, "window": 60, "duration": 600}

# --- Every user function checked when it is given --------------------------------------------

APP_WIDE_MISTAKES = [
    pytest.param("exempt_when", lambda r: True, r"exempt_when\(\)", id="exempt_when(r)"),
    pytest.param("report_when", lambda: True, r"report_when\(response\)", id="report_when()"),
    pytest.param("key_func", lambda request: "k", r"key_func\(\)", id="key_func(request)"),
    pytest.param(
        "rate_limit_rules",
        lambda key, plan: "1/second",
        r"rate_limit_rules\(\) or rate_limit_rules\(client_key\)",
        id="rules(key, plan)",
    ),
    pytest.param("exempt_when", lambda *, user: True, r"exempt_when\(\)", id="a required keyword"),
]


@pytest.mark.parametrize(("option", "function", "call"), APP_WIDE_MISTAKES)
def test_an_app_wide_function_that_cannot_be_called_fails_at_start_up(
    option: str, function: Callable[..., object], call: str
) -> None:
    options: dict[str, Any] = {option: function}
    with pytest.raises(ConfigTypeError, match=rf"^{option}: expected a function .* as {call}"):
        GateKeeper(Flask(__name__), ban_rule=BAN_RULE, **options)


@pytest.mark.parametrize(("option", "function", "call"), APP_WIDE_MISTAKES)
def test_a_function_in_app_config_is_checked_under_its_key(
    option: str, function: Callable[..., object], call: str
) -> None:
    app = Flask(__name__)
    key = f"GATEKEEPER_{option.upper()}"
    app.config[key] = function
    with pytest.raises(ConfigTypeError, match=rf"^{key}: expected a function .* as {call}"):
        GateKeeper(app, ban_rule=BAN_RULE)


def test_the_message_shows_the_call_and_the_parameters_found() -> None:
    def exempt_admins(request: object) -> bool:
        return False

    with pytest.raises(ConfigTypeError) as error:
        GateKeeper(Flask(__name__), exempt_when=exempt_admins)  # type: ignore[arg-type]
    assert str(error.value) == (
        "exempt_when: expected a function that can be called as exempt_when(), got "
        "test_the_message_shows_the_call_and_the_parameters_found.<locals>.exempt_admins"
        "(request: 'object') -> 'bool'"
    )


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        pytest.param(
            {"count": 5, "window": 60, "key": lambda request: "alice"},
            r"^rate_limit_rules\[0\]: 'key': expected a function .* as key\(\)",
            id="key(request)",
        ),
        pytest.param(
            {"count": 5, "window": 60, "distinct": lambda request: "alice"},
            r"^rate_limit_rules\[0\]: 'distinct': expected a function .* as distinct\(\)",
            id="distinct(request)",
        ),
    ],
)
def test_a_rules_functions_are_checked_at_start_up(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigTypeError, match=message):
        GateKeeper(Flask(__name__), rate_limit_rules=[rule])


@pytest.mark.parametrize(
    ("options", "call"),
    [
        pytest.param({"exempt_when": lambda r: True}, r"exempt_when\(\)", id="exempt_when"),
        pytest.param({"count_when": lambda: True}, r"count_when\(response\)", id="count_when"),
        pytest.param({"report_when": lambda: True}, r"report_when\(response\)", id="report_when"),
        pytest.param({"key_func": lambda r: "k"}, r"key_func\(\)", id="key_func"),
        pytest.param({"cost": lambda batch: 2}, r"cost\(\)", id="cost"),
        pytest.param(
            {"rate_limit_rules": [{"count": 5, "window": 60, "key": lambda request: "alice"}]},
            r"key\(\)",
            id="a Rule's key",
        ),
    ],
)
def test_a_routes_function_that_cannot_be_called_fails_at_decoration(
    make_app: AppFactory, options: dict[str, Any], call: str
) -> None:
    _, gk = make_app(routes=())
    rules = {"rate_limit_rules": "5/minute", **options}
    with pytest.raises(ConfigTypeError, match=rf"expected a function .* as {call}"):
        gk.specific(**rules)


def test_a_rule_with_a_bad_key_function_fails_where_it_is_made() -> None:
    with pytest.raises(ConfigTypeError, match=r"^'key': expected a function .* as key\(\)"):
        Rule(5, 60, key=lambda request: "alice")  # type: ignore[arg-type,misc]


def test_gk_limit_checks_its_functions_when_it_is_made(make_app: AppFactory) -> None:
    _, gk = make_app(routes=())
    with pytest.raises(ConfigTypeError, match=r"^cost: expected a function .* as cost\(\)"):
        gk.limit("5/minute", scope="export", cost=lambda batch: 2)  # type: ignore[arg-type,misc]
    with pytest.raises(ConfigTypeError, match=r"^rate_limit_rules: expected a function"):
        gk.limit(lambda key, plan: "5/minute", scope="export")


class StatusAtLeast:
    """A callable object (checked by its ``__call__``) with a method to bind."""

    def __init__(self, code: int) -> None:
        self.code = code

    def __call__(self, response: Response) -> bool:
        return response.status_code >= self.code

    def below(self, response: Response) -> bool:
        return response.status_code < self.code


def never(*args: object, **kwargs: object) -> bool:
    return False


@pytest.mark.parametrize(
    ("options", "route_options"),
    [
        pytest.param({"exempt_when": bool}, {"count_when": bool}, id="builtins, no signature"),
        pytest.param(
            {"exempt_when": never},
            {"count_when": lambda response, extra=1: True, "cost": lambda n=1: n},
            id="defaults and *args",
        ),
        pytest.param(
            {"exempt_when": functools.partial(never, "bound")},
            {"count_when": StatusAtLeast(400).below, "report_when": StatusAtLeast(400)},
            id="partial, callable object, bound method",
        ),
    ],
)
def test_functions_that_can_be_called_so_are_accepted_and_still_limit(
    make_app: AppFactory, options: dict[str, Any], route_options: dict[str, Any]
) -> None:
    app, gk = make_app(base={"ban_rule": BAN_RULE}, routes=(), **options)
    app.add_url_rule("/", "index", gk.specific("2/minute", **route_options)(lambda: "hello"))
    client = app.test_client()
    assert [client.get("/").status_code for _ in range(3)] == [200, 200, 429]


# --- Decorators that cannot be misused quietly ------------------------------------------------

BARE = r"^@gk\.specific needs parentheses"


def test_bare_specific_below_the_route_fails_at_import(make_app: AppFactory) -> None:
    app, gk = make_app(routes=())
    with pytest.raises(TypeError, match=BARE):

        @app.route("/")
        @gk.specific  # no parentheses: the mistake
        def index() -> str:
            return "hello"


def test_bare_specific_on_a_blueprint_route_fails_at_import(make_app: AppFactory) -> None:
    _, gk = make_app(routes=())
    blueprint = Blueprint("api", __name__)
    with pytest.raises(TypeError, match=BARE):

        @blueprint.route("/")
        @gk.specific  # no parentheses: the mistake
        def index() -> str:
            return "hello"


def test_bare_specific_above_the_route_fails_when_the_app_is_known(
    make_app: AppFactory,
) -> None:
    app, gk = make_app(routes=())
    with pytest.raises(TypeError, match=BARE):

        @gk.specific  # no parentheses: the mistake
        @app.route("/")
        def index() -> str:
            return "hello"


def test_bare_specific_on_a_view_class_fails_at_import(make_app: AppFactory) -> None:
    _, gk = make_app(routes=())
    with pytest.raises(TypeError, match="rate_limit_rules"):

        @gk.specific  # no parentheses: the mistake
        class Index(View):
            def dispatch_request(self) -> str:
                return "hello"


def test_a_named_rules_function_given_alone_still_works(make_app: AppFactory) -> None:
    app, gk = make_app(base={}, routes=())

    def plan() -> str:
        return "1/minute"

    app.add_url_rule("/", "index", gk.specific(plan)(lambda: "hello"))
    client = app.test_client()
    assert [client.get("/").status_code for _ in range(2)] == [200, 429]


@pytest.mark.parametrize(
    ("decorate", "instead"),
    [
        pytest.param(
            lambda gk: gk.specific("2/hour"),
            "rate_limit_rules option (GATEKEEPER_RATE_LIMIT_RULES)",
            id="specific",
        ),
        pytest.param(
            lambda gk: gk.specific(standalone=True), "rate_limit_rules", id="specific(standalone)"
        ),
        pytest.param(lambda gk: gk.bypass, "enabled=False (GATEKEEPER_ENABLED)", id="bypass"),
    ],
)
def test_a_decorator_applied_to_the_app_says_what_to_use_instead(
    make_app: AppFactory, decorate: Callable[[GateKeeper], Callable[[Flask], Flask]], instead: str
) -> None:
    app, gk = make_app()
    with pytest.raises(TypeError, match=re.escape(instead)) as error:
        decorate(gk)(app)
    assert "not the Flask app" in str(error.value)
    assert [app.test_client().get("/").status_code for _ in range(2)] == [200, 200]


def test_a_decorator_applied_to_text_is_refused(make_app: AppFactory) -> None:
    _, gk = make_app(routes=())
    with pytest.raises(TypeError, match="marks a view, a view class or a blueprint, got 'health'"):
        gk.bypass("health")  # type: ignore[type-var]


# --- Reports always count, or say why not -----------------------------------------------------


def test_report_without_a_ban_rule_warns_once_naming_ban_rule(
    make_app: AppFactory, logs: pytest.LogCaptureFixture
) -> None:
    app, gk = make_app(base={}, routes=())

    @app.route("/login", methods=["POST"])
    def login() -> str:
        assert gk.report() is False
        return "bad password"

    client = app.test_client()
    for _ in range(3):
        assert client.post("/login").status_code == 200
    with app.app_context():
        assert gk.report(ip=IP) is False
    assert gatekeeper_logs(logs) == [
        (
            "WARNING",
            f"gk.report() in {app.name!r} counts nothing: there is no ban_rule "
            "(GATEKEEPER_BAN_RULE) to count reports toward (logged once)",
        )
    ]


def test_a_routes_report_when_without_a_ban_rule_fails_at_decoration(
    make_app: AppFactory,
) -> None:
    _, gk = make_app(base={}, routes=())
    with pytest.raises(ConfigError, match=r"^report_when: the app has no ban_rule"):
        gk.specific("5/minute", report_when=lambda response: response.status_code == 401)


@pytest.mark.parametrize("on", ["view", "blueprint"])
def test_a_routes_report_when_without_a_ban_rule_fails_at_start_up(on: str) -> None:
    gk = GateKeeper()
    app = Flask(__name__)
    mark = gk.specific(report_when=lambda response: response.status_code == 401)
    if on == "view":
        app.add_url_rule("/", "index", mark(lambda: "hello"))
    else:
        blueprint = mark(Blueprint("api", __name__))
        blueprint.add_url_rule("/", "index", lambda: "hello")
        app.register_blueprint(blueprint)
    with pytest.raises(ConfigError, match=r"^specific\(report_when=...\): the app has no ban_rule"):
        gk.init_app(app)


def test_a_route_added_after_start_up_says_its_report_when_reports_nothing(
    logs: pytest.LogCaptureFixture,
) -> None:
    gk = GateKeeper()
    mark = gk.specific(report_when=lambda response: response.status_code == 401)
    app = Flask(__name__)
    gk.init_app(app)
    blueprint = mark(Blueprint("api", __name__))
    blueprint.add_url_rule("/login", "login", lambda: ("bad password", 401))
    app.register_blueprint(blueprint)  # after init_app: too late for its check
    client = app.test_client()
    assert [client.get("/login").status_code for _ in range(3)] == [401] * 3
    assert gatekeeper_logs(logs) == [
        (
            "WARNING",
            "report_when on 'api.login' reports nothing: there is no ban_rule "
            "(GATEKEEPER_BAN_RULE) to count reports toward",
        )
    ]


# --- Hints for Flask-Limiter users ------------------------------------------------------------


@pytest.mark.parametrize(
    ("keyword", "hint"),
    [
        ("storage_uri", "Flask-Limiter's: did you mean storage= (GATEKEEPER_STORAGE_URI)?"),
        ("default_limits", "did you mean default_rules= (GATEKEEPER_DEFAULT_RULES)?"),
        ("application_limits", "did you mean rate_limit_rules= (GATEKEEPER_RATE_LIMIT_RULES)?"),
        ("headers_enabled", "did you mean headers= (GATEKEEPER_HEADERS)?"),
        ("swallow_errors", "did you mean on_outage= (GATEKEEPER_ON_OUTAGE)?"),
        ("in_memory_fallback_enabled", "did you mean on_outage= (GATEKEEPER_ON_OUTAGE)?"),
        ("deduct_when", "no equivalent option: count after the response with gk.specific"),
        ("per_method", "no equivalent option: give rules per method with gk.specific"),
        ("on_breach", "the request_rate_limited signal"),
        ("rate_limit_rule", "did you mean rate_limit_rules= (GATEKEEPER_RATE_LIMIT_RULES)?"),
    ],
)
def test_flask_limiters_keywords_say_what_to_use(keyword: str, hint: str) -> None:
    options: dict[str, Any] = {keyword: "1/second"}
    with pytest.raises(TypeError, match=re.escape(hint)) as error:
        GateKeeper(Flask(__name__), **options)
    assert str(error.value).startswith(
        f"GateKeeper() got an unexpected keyword argument {keyword!r}"
    )


def test_the_seed_arguments_keep_their_positions() -> None:
    app = Flask(__name__)
    GateKeeper(app, BAN_RULE, "5/minute", "x-my-ip", ["HEAD"], trusted_proxies=1)
    assert app.extensions["gatekeeper"].settings.ban_rule.count == 2


def test_ratelimit_config_keys_log_one_warning_naming_ours(
    logs: pytest.LogCaptureFixture,
) -> None:
    app = Flask(__name__)
    app.config.update(
        RATELIMIT_STORAGE_URI="memory://",
        RATELIMIT_DEFAULT="100/hour",
        RATELIMIT_SWALLOW_ERRORS=True,
        RATELIMIT_HEADER_RESET="X-Reset",
    )
    GateKeeper(app)
    assert gatekeeper_logs(logs) == [
        (
            "WARNING",
            "app.config has Flask-Limiter's settings, which flask-gatekeeper does not read: "
            "RATELIMIT_DEFAULT: use GATEKEEPER_DEFAULT_RULES (counted per client and route, on "
            "routes without rules of their own); RATELIMIT_HEADER_RESET: no equivalent option: "
            "header names are fixed: headers=True sends the IETF RateLimit fields, "
            'headers="legacy" the X-RateLimit-* ones; RATELIMIT_STORAGE_URI: use '
            "GATEKEEPER_STORAGE_URI; RATELIMIT_SWALLOW_ERRORS: use GATEKEEPER_ON_OUTAGE "
            '(on_outage="open")',
        )
    ]


def test_no_ratelimit_keys_no_warning(logs: pytest.LogCaptureFixture) -> None:
    GateKeeper(Flask(__name__), rate_limit_rules="5/minute")
    assert gatekeeper_logs(logs) == []


@pytest.mark.parametrize("where", ["constructor", "config"])
def test_trusted_proxies_as_text_is_a_hop_count(where: str) -> None:
    app = Flask(__name__)
    if where == "config":
        app.config["GATEKEEPER_TRUSTED_PROXIES"] = "1"  # as os.environ gives it
        GateKeeper(app, rate_limit_rules="1/minute")
    else:
        GateKeeper(app, rate_limit_rules="1/minute", trusted_proxies=" 1 ")
    app.add_url_rule("/", "index", lambda: "hello")
    client = app.test_client()

    def status(forwarded: str) -> int:
        headers = {"X-Forwarded-For": forwarded}
        return client.get("/", headers=headers, environ_base={"REMOTE_ADDR": IP}).status_code

    assert status("198.51.100.1, 203.0.113.7") == 200
    assert status("198.51.100.2, 203.0.113.7") == 429  # the client the proxy saw, not a spoof
    assert status("198.51.100.1, 203.0.113.8") == 200
