"""Limits that depend on the request (docs/per-request-limits.md): static files, rules
computed per request, ``exempt_when``, per-method rules, shared scopes and ``gk.limit``.

Every test that counts runs on both storages (the ``storage`` fixture)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
from flask import Blueprint, Flask, request
from flask.testing import FlaskClient

from flask_gatekeeper import GateKeeper, RateLimited
from flask_gatekeeper.storage import Storage
from flask_gatekeeper.testing import FakeClock
from support import IP, OTHER_IP, AppFactory, get, recording, retry_after

MINUTE_2 = "2/minute"


def codes(client: FlaskClient, times: int, path: str = "/", ip: str = IP, **kw: Any) -> list[int]:
    """The status codes of ``times`` requests (each response closed: files are sent open)."""
    statuses = []
    for _ in range(times):
        response = get(client, path, ip, **kw)
        response.close()
        statuses.append(response.status_code)
    return statuses


def hello() -> Callable[[], str]:
    """A new view each time: marks stay on the view they were put on."""
    return lambda: "hello"


# --- Static files ------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "a.txt").write_text("a")
    return tmp_path


def static_app(make: AppFactory, files: Path, **options: Any) -> tuple[Flask, GateKeeper]:
    app, gk = make(rate_limit_rules=MINUTE_2, **options)
    app.static_folder = str(files)
    app.add_url_rule("/", "index", hello())
    docs = Blueprint("docs", __name__, static_folder=str(files), static_url_path="/files")
    app.register_blueprint(docs, url_prefix="/docs")
    return app, gk


@pytest.mark.parametrize("path", ["/static/a.txt", "/docs/files/a.txt"])
def test_static_files_are_not_counted(make: AppFactory, files: Path, path: str) -> None:
    app, _ = static_app(make, files)
    client = app.test_client()

    assert codes(client, 3, path) == [200, 200, 200]
    assert codes(client, 3) == [200, 200, 429]  # nor did they count toward the global rules


@pytest.mark.parametrize("path", ["/static/a.txt", "/docs/files/a.txt"])
def test_exempt_static_false_counts_static_files(make: AppFactory, files: Path, path: str) -> None:
    app, _ = static_app(make, files, exempt_static=False)

    assert codes(app.test_client(), 3, path) == [200, 200, 429]


def test_a_banned_client_is_refused_static_files(make: AppFactory, files: Path) -> None:
    app, gk = static_app(make, files)
    with app.app_context():
        gk.ban(IP, 60)

    assert codes(app.test_client(), 1, "/static/a.txt") == [403]
    assert codes(app.test_client(), 1, "/static/a.txt", OTHER_IP) == [200]


# --- Per-method rules ----------------------------------------------------------------------


def form(app: Flask, *marks: Any) -> None:
    """``GET``/``POST /form`` with ``marks`` (decorators), innermost last."""

    def view() -> str:
        return request.method

    for mark in reversed(marks):
        view = mark(view)
    app.add_url_rule("/form", "form", view, methods=["GET", "POST"])


def test_rules_of_some_methods_only(make: AppFactory) -> None:
    app, gk = make()
    form(app, gk.specific("1/minute", methods=["POST"]))
    client = app.test_client()

    assert codes(client, 2, "/form", method="POST") == [200, 429]
    assert codes(client, 3, "/form") == [200, 200, 200]


def test_get_and_post_are_counted_apart(make: AppFactory) -> None:
    app, gk = make()
    form(app, gk.specific(MINUTE_2, methods="GET"), gk.specific("1/minute", methods=["post"]))
    client = app.test_client()

    assert codes(client, 1, "/form", method="POST") == [200]
    assert codes(client, 3, "/form") == [200, 200, 429]
    assert codes(client, 1, "/form", method="POST") == [429]


def test_global_rules_apply_to_the_other_methods(make: AppFactory) -> None:
    app, gk = make(rate_limit_rules=MINUTE_2)
    form(app, gk.specific("1/minute", standalone=True, methods=["POST"]))
    client = app.test_client()

    assert codes(client, 2, "/form", method="POST") == [200, 429]  # its own rule only
    assert codes(client, 3, "/form") == [200, 200, 429]  # the global rules, untouched by POST


def test_unknown_methods_do_not_grow_the_policy_cache(make_app: AppFactory) -> None:
    app, _ = make_app(base={}, routes=(), rate_limit_rules="100/minute")
    app.add_url_rule("/", "index", hello())
    client = app.test_client()
    for number in range(20):
        get(client, method=f"BREW{number}")

    cache = app.extensions["gatekeeper"].policies.cache
    assert len(cache) <= 2


def test_methods_are_checked(make_app: AppFactory) -> None:
    _, gk = make_app()
    with pytest.raises(ValueError, match="methods: 'FETCH' is not an HTTP method"):
        gk.specific("1/minute", methods=["FETCH"])
    with pytest.raises(ValueError, match="methods: the list is empty"):
        gk.specific("1/minute", methods=[])


# --- Shared scopes -------------------------------------------------------------------------


def test_a_scope_shared_by_a_route_and_a_blueprint(make: AppFactory) -> None:
    app, gk = make()
    api = Blueprint("api", __name__)
    api.add_url_rule("/report", "report", hello())
    gk.specific("3/minute", scope="exports")(api)
    app.register_blueprint(api, url_prefix="/api")
    app.add_url_rule("/export", "export", gk.specific("3/minute", scope="exports")(hello()))
    client = app.test_client()

    assert codes(client, 2, "/api/report") == [200, 200]
    assert codes(client, 2, "/export") == [200, 429]
    assert codes(client, 1, "/api/report") == [429]
    assert codes(client, 1, "/export", OTHER_IP) == [200]  # per client


def test_a_shared_scope_never_meets_an_endpoint_of_its_name(make: AppFactory) -> None:
    app, gk = make()
    app.add_url_rule("/exports", "exports", gk.specific("1/minute")(hello()))
    app.add_url_rule("/=exports", "=exports", gk.specific("1/minute")(hello()))
    app.add_url_rule("/other", "other", gk.specific("1/minute", scope="exports")(hello()))
    client = app.test_client()

    assert codes(client, 2, "/exports") == [200, 429]
    assert codes(client, 2, "/=exports") == [200, 429]
    assert codes(client, 2, "/other") == [200, 429]


def test_scope_is_checked(make_app: AppFactory) -> None:
    _, gk = make_app()
    with pytest.raises(TypeError, match="scope: expected a name"):
        gk.specific("1/minute", scope=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scope: the name is empty"):
        gk.limit("1/minute", scope="")


# --- Rules computed per request ------------------------------------------------------------


def plan() -> str:
    return "3/minute" if request.headers.get("x-plan") == "pro" else "1/minute"


def test_rules_function_on_a_route(make: AppFactory) -> None:
    app, gk = make()
    app.add_url_rule("/", "index", gk.specific(plan)(hello()))
    client = app.test_client()
    pro = {"environ_base": {"REMOTE_ADDR": OTHER_IP}, "headers": {"x-plan": "pro"}}

    assert codes(client, 2) == [200, 429]
    assert [client.get("/", **pro).status_code for _ in range(4)] == [200, 200, 200, 429]


def test_a_client_whose_limit_changes_keeps_its_count(make: AppFactory) -> None:
    app, gk = make()
    app.add_url_rule("/", "index", gk.specific(plan)(hello()))
    client = app.test_client()
    pro = {"environ_base": {"REMOTE_ADDR": IP}, "headers": {"x-plan": "pro"}}

    assert codes(client, 2) == [200, 429]
    assert [client.get("/", **pro).status_code for _ in range(3)] == [200, 200, 429]


def test_a_stateful_rule_whose_count_changes_starts_afresh(make: AppFactory) -> None:
    app, gk = make()
    pro = {"environ_base": {"REMOTE_ADDR": IP}, "headers": {"x-plan": "pro"}}

    @app.route("/")
    @gk.specific(lambda: f"{3 if request.headers.get('x-plan') else 1}/minute (fixed-window)")
    def index() -> str:
        return "hello"

    client = app.test_client()
    assert codes(client, 2) == [200, 429]
    assert [client.get("/", **pro).status_code for _ in range(4)] == [200, 200, 200, 429]


def test_a_rules_function_may_take_the_client_key(make: AppFactory) -> None:
    app, _ = make(rate_limit_rules=lambda key: "1/minute" if key == IP else None)
    app.add_url_rule("/", "index", hello())
    client = app.test_client()

    assert codes(client, 2) == [200, 429]
    assert codes(client, 3, ip=OTHER_IP) == [200, 200, 200]


@pytest.mark.parametrize(
    "result",
    [MINUTE_2, [MINUTE_2], {"count": 2, "window": 60}, [{"count": 2, "window": 60}]],
    ids=["string", "list", "dict", "list of dicts"],
)
def test_a_rules_function_returns_any_form(make: AppFactory, result: object) -> None:
    app, _ = make(config={}, rate_limit_rules=lambda: result)
    app.add_url_rule("/", "index", hello())

    assert codes(app.test_client(), 3) == [200, 200, 429]


def test_global_rules_function_from_app_config(make_app: AppFactory, storage: Storage) -> None:
    app, _ = make_app(
        storage=storage, base={}, routes=(), config={"GATEKEEPER_RATE_LIMIT_RULES": plan}
    )
    app.add_url_rule("/", "index", hello())

    assert codes(app.test_client(), 2) == [200, 429]


def test_a_rules_function_returning_none_sets_no_limit(make: AppFactory) -> None:
    app, gk = make(rate_limit_rules="1/minute")
    app.add_url_rule("/", "index", gk.specific(lambda: None, standalone=True)(hello()))

    assert codes(app.test_client(), 3) == [200, 200, 200]


def test_rules_functions_are_parsed_once_per_result(make_app: AppFactory) -> None:
    from flask_gatekeeper import request as per_request

    calls: list[int] = []

    def rules() -> str:
        calls.append(1)
        return "1000/minute; 999/hour"

    app, _ = make_app(base={}, routes=(), rate_limit_rules=rules)
    app.add_url_rule("/", "index", hello())
    client = app.test_client()
    codes(client, 1)
    hits = per_request._parsed_scope.cache_info().hits

    codes(client, 3)

    assert len(calls) == 4
    assert per_request._parsed_scope.cache_info().hits == hits + 3


def test_routes_without_functions_compute_nothing_per_request(make_app: AppFactory) -> None:
    app, gk = make_app(base={}, routes=(), rate_limit_rules="1/minute")
    app.add_url_rule("/", "index", gk.specific("5/minute", methods=["GET"])(hello()))
    get(app.test_client())

    policies = app.extensions["gatekeeper"].policies
    assert [policy.per_request for policy in policies.cache.values()] == [None]


def broken() -> str:
    raise LookupError("no such plan")


@pytest.mark.parametrize("function", [broken, lambda: "lots/minute"], ids=["raises", "not rules"])
def test_a_failing_rules_function_admits(
    make: AppFactory, function: Any, logs: pytest.LogCaptureFixture
) -> None:
    app, gk = make()
    app.add_url_rule("/", "index", gk.specific(function)(hello()))

    assert codes(app.test_client(), 2) == [200, 200]
    assert [record.levelname for record in logs.records] == ["ERROR", "ERROR"]
    assert "admitting the request" in logs.records[0].getMessage()


def test_a_failing_rules_function_refuses_when_failing_closed(make: AppFactory) -> None:
    app, gk = make(fail_open=False)
    app.add_url_rule("/", "index", gk.specific(broken)(hello()))

    response = get(app.test_client())
    assert (response.status_code, retry_after(response)) == (503, 1)


def test_a_rules_function_with_two_parameters_is_refused(make_app: AppFactory) -> None:
    _, gk = make_app()
    with pytest.raises(
        TypeError,
        match=r"rate_limit_rules: expected a function that can be called as rate_limit_rules\(\) "
        r"or rate_limit_rules\(client_key\), got .*<lambda>\(a, b\)$",
    ):
        gk.specific(lambda a, b: None)


# --- exempt_when ---------------------------------------------------------------------------


def is_admin() -> bool:
    return request.headers.get("x-admin") == "yes"


ADMIN = {"environ_base": {"REMOTE_ADDR": IP}, "headers": {"x-admin": "yes"}}


def test_exempt_when_for_the_whole_app(make: AppFactory) -> None:
    app, gk = make(rate_limit_rules=MINUTE_2, exempt_when=is_admin)
    app.add_url_rule("/", "index", hello())
    app.add_url_rule("/own", "own", gk.specific("1/minute")(hello()))
    client = app.test_client()

    assert [client.get(path, **ADMIN).status_code for path in ["/", "/own"] * 3] == [200] * 6
    assert codes(client, 3) == [200, 200, 429]  # the admin's requests did not count


def test_exempt_when_on_one_route(make: AppFactory) -> None:
    app, gk = make(rate_limit_rules="1/minute")
    app.add_url_rule("/", "index", hello())
    app.add_url_rule("/own", "own", gk.specific(exempt_when=is_admin)(hello()))
    client = app.test_client()

    assert [client.get("/own", **ADMIN).status_code for _ in range(3)] == [200] * 3
    assert [client.get("/", **ADMIN).status_code for _ in range(2)] == [200, 429]


def test_exempt_requests_of_a_banned_client_are_refused(make: AppFactory) -> None:
    app, gk = make(rate_limit_rules=MINUTE_2, exempt_when=is_admin)
    app.add_url_rule("/", "index", hello())
    with app.app_context():
        gk.ban(IP, 60)

    assert app.test_client().get("/", **ADMIN).status_code == 403


def test_a_raising_exempt_when_is_met_like_an_outage(
    make: AppFactory, logs: pytest.LogCaptureFixture
) -> None:
    app, _ = make(rate_limit_rules="1/minute", exempt_when=broken)
    app.add_url_rule("/", "index", hello())

    assert codes(app.test_client(), 2) == [200, 200]
    assert "LookupError: no such plan" in logs.text


# --- gk.limit ------------------------------------------------------------------------------


def test_limit_in_a_view(make: AppFactory, clock: FakeClock) -> None:
    app, gk = make(rate_limit_rules="100/minute")

    @app.route("/export")
    def export() -> str:
        with gk.limit(MINUTE_2, scope="export"):
            return "exported"

    client = app.test_client()
    with recording(app) as events:
        assert codes(client, 2, "/export") == [200, 200]
        clock.advance(15)
        refused = get(client, "/export")

    assert refused.status_code == 429
    assert retry_after(refused) == 45
    assert refused.text.startswith(f"ip {IP} rate limited")
    assert [name for name, _ in events] == ["request_rate_limited"]
    with app.app_context():
        assert gk.stats()["rate_limited"] == 1
    assert codes(client, 1, "/export", OTHER_IP) == [200]


def test_limit_shares_a_specific_scope(make: AppFactory) -> None:
    app, gk = make()
    app.add_url_rule("/a", "a", gk.specific(MINUTE_2, scope="export")(hello()))

    @app.route("/b")
    def b() -> str:
        with gk.limit(MINUTE_2, scope="export"):
            return "b"

    client = app.test_client()
    assert codes(client, 1, "/a") + codes(client, 2, "/b") == [200, 200, 429]


def test_limit_in_an_async_view(make: AppFactory) -> None:
    app, gk = make()

    @app.route("/export")
    async def export() -> str:
        with gk.limit("1/minute", scope="export"):
            return "exported"

    assert codes(app.test_client(), 2, "/export") == [200, 429]


def test_limit_as_a_decorator(make: AppFactory) -> None:
    app, gk = make()

    @gk.limit("1/minute", scope="export")
    def export(name: str) -> str:
        return f"exported {name}"

    @gk.limit("1/minute", scope="export-async")
    async def export_async() -> str:
        return "exported"

    @app.route("/export")
    def view() -> str:
        return export("all")

    @app.route("/export-async")
    async def view_async() -> str:
        return await export_async()

    client = app.test_client()
    assert get(client, "/export").text == "exported all"
    assert codes(client, 1, "/export") + codes(client, 2, "/export-async") == [429, 200, 429]


def test_limit_with_a_key_and_a_function(make: AppFactory) -> None:
    app, gk = make()
    user_limit = gk.limit(
        lambda key: "2/minute" if key == "user:ann" else None, scope="u", key="user:ann"
    )
    with app.app_context():
        with user_limit, user_limit:
            pass
        with pytest.raises(RateLimited) as refused:
            user_limit.check()
    assert refused.value.client == "user:ann"


def test_limit_outside_a_request_needs_a_key(make_app: AppFactory) -> None:
    app, gk = make_app()
    with app.app_context(), pytest.raises(RuntimeError, match="needs the client: key="):
        gk.limit("1/minute", scope="x").check()


def test_limit_counts_nothing_for_an_allowlisted_client(make: AppFactory) -> None:
    app, gk = make(allowlist=[IP])

    @app.route("/")
    def index() -> str:
        with gk.limit("1/minute", scope="x"):
            return "ok"

    assert codes(app.test_client(), 3) == [200, 200, 200]


def test_limit_admits_while_the_storage_is_down(make_app: AppFactory, clock: FakeClock) -> None:
    from support import probed_storage

    storage = probed_storage(clock)
    app, gk = make_app(storage=storage, base={}, routes=())

    @app.route("/")
    def index() -> str:
        with gk.limit("1/minute", scope="x"):
            return "ok"

    storage.failing = True
    assert codes(app.test_client(), 2) == [200, 200]


def test_a_nested_blueprints_static_files_are_not_counted(make: AppFactory, files: Path) -> None:
    app, _ = make(rate_limit_rules=MINUTE_2)
    outer = Blueprint("outer", __name__)
    outer.register_blueprint(
        Blueprint("inner", __name__, static_folder=str(files), static_url_path="/files"),
        url_prefix="/inner",
    )
    app.register_blueprint(outer, url_prefix="/outer")

    assert codes(app.test_client(), 3, "/outer/inner/files/a.txt") == [200, 200, 200]


def test_rules_functions_are_not_called_for_what_is_not_counted(make: AppFactory) -> None:
    calls: list[str] = []

    def rules() -> str:
        calls.append(request.method)
        return "1/minute"

    app, _ = make(
        rate_limit_rules=rules,
        exempt_when=is_admin,
        excluded_methods=["HEAD"],
        allowlist=[OTHER_IP],
    )
    app.add_url_rule("/", "index", hello())
    client = app.test_client()

    assert [client.get("/", **ADMIN).status_code for _ in range(2)] == [200, 200]
    assert codes(client, 2, method="HEAD") + codes(client, 2, ip=OTHER_IP) == [200] * 4
    assert calls == []
    assert codes(client, 2) == [200, 429]
    assert calls == ["GET", "GET"]


def test_limit_refuses_a_banned_client_in_a_bypassed_view(make: AppFactory) -> None:
    app, gk = make()

    @app.route("/")
    @gk.bypass
    def index() -> str:
        with gk.limit("5/minute", scope="x"):
            return "ok"

    with app.app_context():
        gk.ban(IP, 60)
    assert codes(app.test_client(), 1) == [403]


def test_limit_in_a_dry_run_logs_and_goes_on(
    make: AppFactory, logs: pytest.LogCaptureFixture
) -> None:
    app, gk = make(dry_run=True)

    @app.route("/")
    def index() -> str:
        with gk.limit("1/minute", scope="x"):
            return "ok"

    assert codes(app.test_client(), 2) == [200, 200]
    assert "dry run, would refuse GET /:" in logs.text
    with app.app_context():
        assert gk.stats()["rate_limited"] == 1


def test_limit_leaves_an_allowlisted_key_alone(make_app: AppFactory) -> None:
    app, gk = make_app(base={}, routes=(), allowlist=["10.9.0.0/16"])
    with app.app_context():
        for _ in range(3):
            gk.limit("1/minute", scope="x", key="10.9.1.1").check()
