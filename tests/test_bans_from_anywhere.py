"""Bans an attacker cannot step around: an address stays banned behind any ``key_func``
key (made up, or none at all), and responses can report clients (``report_when``). On
both storages."""

from __future__ import annotations

import pytest
from flask import Flask, request
from flask.testing import FlaskClient

from flask_gatekeeper import GateKeeper
from flask_gatekeeper.storage import Storage
from flask_gatekeeper.testing import FakeClock
from support import AppFactory, gatekeeper_logs, index

IP = "10.0.0.1"
BAN_RULE = {"count": 2, "window": 60, "duration": 600}


def api_key() -> object:
    return request.headers.get("X-Api-Key")


def keyed_app(make_app: AppFactory, storage: Storage) -> tuple[Flask, GateKeeper]:
    """``/`` keyed by address; ``/api`` by an API key header (the README's example)."""
    app, gk = make_app(base={}, storage=storage, ban_rule=BAN_RULE, routes=(index,))

    @app.route("/api")
    @gk.specific("10/second", key_func=api_key)  # type: ignore[arg-type]
    def api() -> str:
        return "data"

    return app, gk


def get(client: FlaskClient, path: str, key: object = None, ip: str = IP) -> int:
    headers = {"X-Api-Key": key} if key is not None else {}
    return client.get(path, headers=headers, environ_base={"REMOTE_ADDR": ip}).status_code


@pytest.mark.parametrize("key", ["made-up", "k1", None], ids=["made-up key", "real", "none"])
def test_an_ip_ban_holds_on_key_func_routes(
    make_app: AppFactory, storage: Storage, key: object
) -> None:
    app, gk = keyed_app(make_app, storage)
    client = app.test_client()
    assert get(client, "/api", key) == 200
    with app.app_context():
        gk.ban(IP, 60)
    assert get(client, "/") == 403
    assert get(client, "/api", key) == 403
    assert get(client, "/api", key, ip="10.0.0.2") == 200  # another address: not banned
    with app.app_context():
        gk.unban(IP)
    assert get(client, "/api", key) == 200


def test_the_refusal_names_the_banned_address(make_app: AppFactory, storage: Storage) -> None:
    app, gk = keyed_app(make_app, storage)
    with app.app_context():
        gk.ban(IP, 60)
    response = app.test_client().get(
        "/api", headers={"X-Api-Key": "k1"}, environ_base={"REMOTE_ADDR": IP}
    )
    assert response.status_code == 403
    assert response.text == f"ip {IP} banned for 60s\n"


def test_a_ban_of_the_key_holds_from_any_address(make_app: AppFactory, storage: Storage) -> None:
    app, gk = keyed_app(make_app, storage)
    client = app.test_client()
    with app.app_context():
        gk.ban("k1", 60)
    assert get(client, "/api", "k1", ip="10.0.0.7") == 403
    assert get(client, "/api", "k2", ip="10.0.0.7") == 200


def test_the_deny_list_holds_on_key_func_routes(make_app: AppFactory) -> None:
    app, gk = make_app(base={}, denylist=[IP], routes=(index,))

    @app.route("/api")
    @gk.specific("10/second", key_func=api_key)  # type: ignore[arg-type]
    def api() -> str:
        return "data"

    assert get(app.test_client(), "/api", "k1") == 403


def test_client_ip_is_the_address_as_keyed(make_app: AppFactory) -> None:
    app, gk = make_app(base={}, trusted_proxies=1, routes=())

    @app.route("/whoami")
    def whoami() -> str:
        return gk.client_ip() or "none"

    client = app.test_client()
    forwarded = {"X-Forwarded-For": "2001:db8::7"}
    assert client.get("/whoami", headers=forwarded).text == "2001:db8::/64"
    assert client.get("/whoami").text == "127.0.0.1"


def test_a_key_func_falls_back_to_the_address_with_client_ip(
    make_app: AppFactory, storage: Storage
) -> None:
    """``key_func() or gk.client_ip()``: a request without a key is the address itself,
    counted, reported, banned and reset as the address (not as ``key:10.0.0.1``); text
    that names another address is still a key of that text."""
    gk: GateKeeper
    app, gk = make_app(
        base={},
        storage=storage,
        ban_rule=BAN_RULE,
        rate_limit_rules="3/minute",
        key_func=lambda: request.headers.get("X-Api-Key") or gk.client_ip(),
        routes=(index,),
    )

    @app.route("/report")
    def report() -> str:
        gk.report()
        return "reported"

    client = app.test_client()
    assert [get(client, "/") for _ in range(4)] == [200, 200, 200, 429]
    with app.app_context():
        assert [use.remaining for use in gk.usage(IP)] == [0]
        gk.reset(IP)
        assert [use.remaining for use in gk.usage(IP)] == [3]
    assert get(client, "/", key="10.0.0.9") == 200
    with app.app_context():
        assert [use.remaining for use in gk.usage("key:10.0.0.9")] == [2]
    assert [get(client, "/report") for _ in range(2)] == [200, 200]
    with app.app_context():
        assert set(gk.bans()) == {IP}  # the address, banned by its own reports
    assert get(client, "/", key="k1") == 403  # and its ban holds behind any key


def report_app(make_app: AppFactory, storage: Storage, **options: object) -> Flask:
    app, gk = make_app(base={}, storage=storage, ban_rule=BAN_RULE, routes=(), **options)

    @app.route("/login", methods=["POST"])
    @gk.specific(report_when=lambda response: response.status_code == 401)
    def login() -> tuple[str, int]:
        if request.form.get("password") == "right":
            return "welcome", 200
        return "bad password", 401

    return app


def test_report_when_on_a_route_reports_the_responses_it_accepts(
    make_app: AppFactory, storage: Storage, clock: FakeClock
) -> None:
    client = report_app(make_app, storage).test_client()
    passwords = ["right", "wrong", "right", "wrong", "right"]
    codes = [client.post("/login", data={"password": p}).status_code for p in passwords]
    assert codes == [200, 401, 200, 401, 403]  # two 401s: banned
    assert client.get("/anything").status_code == 403


def test_report_when_for_the_whole_app_bans_scanners(
    make_app: AppFactory, storage: Storage
) -> None:
    app = report_app(make_app, storage, report_when=lambda response: response.status_code == 404)
    client = app.test_client()
    assert [client.get(f"/probe-{n}").status_code for n in range(3)] == [404, 404, 403]


def test_the_gates_own_refusals_never_report(make_app: AppFactory, storage: Storage) -> None:
    app = report_app(
        make_app,
        storage,
        rate_limit_rules="1/minute",
        report_when=lambda response: response.status_code >= 400,
    )
    client = app.test_client()
    assert client.post("/login", data={"password": "right"}).status_code == 200
    assert [client.get("/").status_code for _ in range(5)] == [429] * 5  # not reported
    with app.app_context():
        assert app.extensions["gatekeeper"].owner.banned_for("127.0.0.1") == 0


def test_a_failing_report_when_changes_nothing(
    make_app: AppFactory, logs: pytest.LogCaptureFixture
) -> None:
    app, gk = make_app(base={}, ban_rule=BAN_RULE, routes=(index,))

    @app.route("/odd")
    @gk.specific(report_when=lambda response: 1 / 0)
    def odd() -> str:
        return "fine"

    client = app.test_client()
    assert [client.get("/odd").status_code for _ in range(3)] == [200] * 3
    assert [level for level, _ in gatekeeper_logs(logs)] == ["ERROR"] * 3


def test_report_when_without_a_ban_rule_fails_at_start_up() -> None:
    from flask_gatekeeper import ConfigError

    with pytest.raises(ConfigError, match=r"report_when: .* needs a ban_rule"):
        GateKeeper(Flask(__name__), report_when=lambda response: True)


def test_ban_details_say_why_since_when_and_how_often(storage: Storage, clock: FakeClock) -> None:
    from flask_gatekeeper import BanRule, Rule
    from flask_gatekeeper.decision import BanDetail
    from flask_gatekeeper.storage.plan import Scope

    rule = BanRule(1, 60, 100, factor=2)
    assert storage.report("a", rule) == 100
    assert storage.report("b", rule, "response") == 100
    storage.ban("c", 50)
    scopes = [Scope.of("", (Rule(1, 60),))]
    assert storage.hit("d", scopes).admitted
    assert storage.hit("d", scopes, report_to=rule).new_ban == 100
    clock.advance(10)
    assert storage.ban_details() == {
        "a": BanDetail(90, 10, "reports", 1, "default"),
        "b": BanDetail(90, 10, "response", 1, "default"),
        "c": BanDetail(40, 10, "manual", 0),
        "d": BanDetail(90, 10, "rate_limit", 1, "default"),
    }
    storage.ban("a", 5)  # shorter than the ban in force: it stands, as it was
    assert storage.ban_details()["a"] == BanDetail(90, 10, "reports", 1, "default")
    clock.advance(90)  # a's ban is over; its second ban escalates
    assert storage.report("a", rule) == 200
    assert storage.ban_details()["a"] == BanDetail(200, 0, "reports", 2, "default")
    assert "c" not in storage.ban_details()


def test_bans_with_detail_through_the_app(make_app: AppFactory, storage: Storage) -> None:
    from flask_gatekeeper.decision import BanDetail

    app = report_app(make_app, storage)
    client = app.test_client()
    for _ in range(2):
        client.post("/login", data={"password": "wrong"})
    with app.app_context():
        gk = app.extensions["gatekeeper"].owner
        assert gk.bans(detail=True) == {"127.0.0.1": BanDetail(600, 0, "response", 1, "default")}
        assert gk.bans() == {"127.0.0.1": 600}
