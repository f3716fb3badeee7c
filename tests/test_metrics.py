"""Metrics per rule (issue 25): ``gk.stats(detail=True)`` counts refusals by scope and
rule and bans by reason, on both storages; ``flask_gatekeeper.prometheus`` exports the
same counts with prometheus_client's own metric objects, in one process and summed over
gunicorn's workers in prometheus_client's multi-process mode.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import pytest
from flask import Flask, Response, request

from flask_gatekeeper import GateKeeper, Rule
from flask_gatekeeper.decision import BAN_REASONS
from flask_gatekeeper.errors import StorageError
from flask_gatekeeper.events import Stats
from flask_gatekeeper.testing import FakeClock, FlakyStorage
from support import OTHER_IP, AppFactory, get, probed_storage, statuses
from support.servers import TIMEOUT, ServerProcess, absolute_pythonpath, fetch, wait_until
from test_docs import ROOT, code_blocks

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402

from flask_gatekeeper.prometheus import instrument  # noqa: E402

EXAMPLES = Path(__file__).parent.parent / "examples"
GUNICORN_CONF = EXAMPLES / "gunicorn.conf.py"
FLAT_KEYS = {
    "admitted",
    "rate_limited",
    "banned",
    "reports",
    "bans",
    "storage_errors",
    "shadow_refused",
    "tracked_clients",
}
"""``gk.stats()``'s keys: those since issue 5, unchanged, and ``shadow_refused``."""


def streamed() -> Response:
    """A response produced while it is sent: it holds its slot until closed."""
    return Response(iter(["part one, ", "part two"]))


def policies_app(make: AppFactory, **options: Any) -> tuple[Flask, GateKeeper]:
    """Global rules of 3 a minute, and a route for each kind of scope a rule may be in."""
    app, gk = make(rate_limit_rules="3/minute", **options)

    @app.route("/")
    def index() -> str:
        return "hello"

    @app.route("/export")
    @gk.specific("1/hour")
    def export() -> str:
        return "a,b"

    @app.route("/a")
    @app.route("/b", endpoint="b")
    @gk.specific("2/hour", scope="reports")
    def report() -> str:
        return "report"

    @app.route("/login", methods=["POST"])
    @gk.specific(Rule(1, 60, key="form[user]"), standalone=True)
    def login() -> str:
        return "welcome"

    @app.route("/stream")
    @gk.specific(concurrency=1, standalone=True)
    def stream() -> Response:
        return streamed()

    return app, gk


def refuse_once_or_more_in_every_scope(app: Flask) -> None:
    """Requests that each scope of ``policies_app`` refuses, from a client of its own."""
    client = app.test_client()
    assert statuses(client, 4) == [200, 200, 200, 429]
    assert statuses(client, 3, "/export", "10.0.0.2") == [200, 429, 429]
    assert statuses(client, 1, "/a", "10.0.0.3") + statuses(client, 2, "/b", "10.0.0.3") == [
        200,
        200,
        429,
    ]
    login = {"data": {"user": "ann"}, "environ_base": {"REMOTE_ADDR": "10.0.0.4"}}
    assert [client.post("/login", **login).status_code for _ in range(2)] == [200, 429]
    held = get(client, "/stream", "10.0.0.5")  # open: holds the one slot
    assert get(client, "/stream", "10.0.0.5").status_code == 429
    held.close()


RULES_REFUSED = {
    "global": {"3-per-60s": 1},
    "export": {"1-per-3600s": 2},
    "=reports": {"2-per-3600s": 1},
    "login per form[user]": {"1-per-60s": 1},
    "stream": {"1-in-flight": 1},
}
"""What ``refuse_once_or_more_in_every_scope`` refuses: scope label -> rule -> count."""


def counts(refused: dict[str, dict[str, int]], key: str) -> dict[str, dict[str, Any]]:
    other = "would_refuse" if key == "refused" else "refused"
    return {
        scope: {rule: {key: n, other: 0} for rule, n in rules.items()}
        for scope, rules in refused.items()
    }


# --- gk.stats(detail=True) ----------------------------------------------------------------


def test_stats_detail_counts_refusals_by_scope_and_rule(make: AppFactory) -> None:
    app, gk = policies_app(make)
    with app.app_context():
        assert gk.stats(detail=True)["rules"] == {}  # a rule appears at its first refusal
    refuse_once_or_more_in_every_scope(app)

    with app.app_context():
        detail = gk.stats(detail=True)
        flat = gk.stats()
    assert detail["rules"] == counts(RULES_REFUSED, "refused")
    assert detail["rate_limited"] == 6 == sum(n for r in RULES_REFUSED.values() for n in r.values())
    assert set(flat) == FLAT_KEYS  # unchanged: numbers or None only, as before
    assert all(value is None or isinstance(value, int) for value in flat.values())
    assert {key: detail[key] for key in FLAT_KEYS} == flat  # type: ignore[literal-required]


def test_dry_run_counts_what_each_rule_would_refuse(make: AppFactory) -> None:
    app, gk = policies_app(make, dry_run=True)
    client = app.test_client()
    assert statuses(client, 4) == [200] * 4
    assert statuses(client, 3, "/export", OTHER_IP) == [200] * 3

    with app.app_context():
        detail = gk.stats(detail=True)
    assert detail["rules"] == counts(
        {"global": {"3-per-60s": 1}, "export": {"1-per-3600s": 2}}, "would_refuse"
    )
    assert detail["rate_limited"] == 3  # would-be 429s, as documented for a dry run


def test_in_a_dry_run_shadow_rules_count_apart_from_rate_limited(make: AppFactory) -> None:
    """docs/metrics.md: in a dry run ``rate_limited`` is the sum of the ``would_refuse``
    of the rules that are not shadow rules; a shadow rule's count in ``shadow_refused``."""
    app, gk = make(rate_limit_rules=["3/minute", Rule(1, 60, shadow=True)], dry_run=True)
    app.add_url_rule("/", "index", lambda: "hello")
    assert statuses(app.test_client(), 5) == [200] * 5

    with app.app_context():
        detail = gk.stats(detail=True)
    assert detail["rules"] == counts({"global": {"3-per-60s": 2, "1-per-60s": 2}}, "would_refuse")
    assert detail["rate_limited"] == 2  # the 4th and 5th, over 3/minute
    assert detail["shadow_refused"] == 2  # the 2nd and 3rd, admitted by 3/minute
    assert detail["admitted"] == 3


def test_a_shadow_rule_shares_its_name_with_an_enforcing_one(
    make: AppFactory, clock: FakeClock
) -> None:
    """docs/metrics.md: ``shadow`` does not change a rule's name; beside an enforcing rule
    of the same count and window, the shadow rule counts under ``would_refuse``."""
    shadow = Rule(2, 60, shadow=True)  # the exact log, tried beside the approximate one
    app, gk = make(rate_limit_rules=[Rule(2, 60, strategy="sliding-window"), shadow])
    app.add_url_rule("/", "index", lambda: "hello")
    client = app.test_client()
    seen = []
    for now in (1036, 1037, 1076, 1097):
        clock.set(now)
        seen += statuses(client, 1, "/", "127.0.0.1")  # its windows' offset: found so
    assert seen == [200, 200, 200, 429]  # the 3rd: over the shadow rule only
    with app.app_context():
        assert gk.stats(detail=True)["rules"] == {
            "global": {"2-per-60s": {"refused": 1, "would_refuse": 1}}
        }


def test_stats_detail_counts_bans_by_reason(make: AppFactory, clock: FakeClock) -> None:
    app, gk = make(
        rate_limit_rules="1/minute",
        ban_rule={"count": 2, "window": 60, "duration": 600},
        report_rate_limited=True,
    )

    @app.route("/")
    def index() -> str:
        return "hello"

    client = app.test_client()
    assert statuses(client, 3) == [200, 429, 429]  # two 429s counted as reports: banned
    with app.app_context():
        assert gk.report(OTHER_IP) is False
        assert gk.report(OTHER_IP) is True
        gk.ban("192.0.2.1", 60)
        gk.ban("192.0.2.0/24", 60, reason="blocklist")
        detail = gk.stats(detail=True)
    expected = dict.fromkeys(BAN_REASONS, 0)  # every reason, from the start
    expected.update(rate_limit=1, reports=1, manual=1, blocklist=1)
    assert detail["bans_by_reason"] == expected
    assert detail["bans"] == 4
    assert list(detail["bans_by_reason"]) == list(BAN_REASONS)


def test_bans_count_by_offence_each_joining_at_its_first_ban() -> None:
    """A ban a ban rule made counts under its offence (jails), from the default one; a
    ban without a ban rule (by hand, a block list, the subnet rule) under none. A reason
    not in ``BAN_REASONS`` joins the reasons at its first ban."""
    stats = Stats()
    stats.ban_started("reports", "login")
    stats.ban_started("manual", None)
    stats.ban_started("rate_limit", "default")
    stats.ban_started("reports", "login")
    stats.ban_started("imported", None)
    assert stats.bans_by_offence() == {"default": 1, "login": 2}
    expected = {**dict.fromkeys(BAN_REASONS, 0), "reports": 2, "manual": 1, "rate_limit": 1}
    assert stats.bans_by_reason() == {**expected, "imported": 1}


def test_stats_and_prometheus_count_bans_by_offence(make: AppFactory) -> None:
    registry = CollectorRegistry()
    login = {"count": 2, "window": 60, "duration": 600}
    seed = {"count": 3, "window": 60, "duration": 600}
    app, gk = make(rate_limit_rules="3/minute", ban_rule=seed, ban_rules={"login": login})
    instrument(gk, registry)
    with app.app_context():
        for _ in range(2):
            gk.report("192.0.2.1", offence="login")
        for _ in range(3):  # the seed's ban rule: 3 reports
            gk.report("192.0.2.2")
        gk.ban("192.0.2.3", 60)
        stats = gk.stats(detail=True)
    assert stats["bans_by_offence"] == {"default": 1, "login": 1}
    assert stats["bans"] == 3
    assert sample(registry, "gatekeeper_offence_bans_total", offence="login") == 1
    assert sample(registry, "gatekeeper_offence_bans_total", offence="default") == 1


def test_rules_are_named_by_their_scope_and_policy_name(make: AppFactory) -> None:
    """The names docs/metrics.md lists: a global rule with its own key, a route's rule of
    some methods, a rule counting distinct values, a route's default rules."""
    app, gk = make(rate_limit_rules=[Rule(1, 86400, key="args[user]")], default_rules="1/hour")
    app.add_url_rule("/", "index", lambda: "hello")
    app.add_url_rule("/plain", "plain", lambda: "hello")

    @app.route("/login", methods=["GET", "POST"])
    @gk.specific("1/minute", methods="POST", standalone=True)
    def login() -> str:
        return "welcome"

    @app.route("/names")
    @gk.specific(Rule(1, 3600, distinct=lambda: request.args["name"]), standalone=True)
    def names() -> str:
        return "found"

    client = app.test_client()
    assert statuses(client, 2, "/?user=ann") == [200, 429]  # the longest wait: per user
    assert statuses(client, 2, "/plain", OTHER_IP) == [200, 429]  # no user: no such key
    assert [client.post("/login").status_code for _ in range(2)] == [200, 429]
    assert statuses(client, 1, "/names?name=a") + statuses(client, 1, "/names?name=b") == [
        200,
        429,
    ]
    with app.app_context():
        rules = gk.stats(detail=True)["rules"]
    assert rules == counts(
        {
            "per args[user]": {"1-per-86400s": 1},
            "@default plain": {"1-per-3600s": 1},
            "@POST login": {"1-per-60s": 1},
            "names": {"1-distinct-per-3600s": 1},
        },
        "refused",
    )


def test_nothing_but_the_prometheus_module_imports_prometheus_client() -> None:
    loaded = "import sys, flask_gatekeeper.cli, flask_gatekeeper.testing; "
    loaded += "print('prometheus_client' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", loaded], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "False"


# --- Prometheus, in one process -----------------------------------------------------------


def sample(registry: CollectorRegistry, name: str, **labels: str) -> Optional[float]:
    value: Optional[float] = registry.get_sample_value(name, labels)
    return value


def test_prometheus_counts_what_stats_counts(make: AppFactory) -> None:
    registry = CollectorRegistry()
    app, gk = policies_app(make, ban_rule={"count": 1, "window": 60, "duration": 600})
    instrument(gk, registry)
    refuse_once_or_more_in_every_scope(app)
    with app.app_context():
        gk.ban("192.0.2.1", 60)
        gk.report("192.0.2.2")
        stats = gk.stats(detail=True)

    counted: dict[str, object] = dict(stats)
    fields = ("admitted", "rate_limited", "banned", "reports", "bans", "storage_errors")
    for field in (*fields, "shadow_refused"):
        exported = sum(
            value
            for metric in registry.collect()
            if metric.name == f"gatekeeper_{field}"
            for value in (s.value for s in metric.samples if s.name.endswith("_total"))
        )
        assert exported == counted[field], field
    for scope, rules in RULES_REFUSED.items():
        for rule, refused in rules.items():
            labels = {"scope": scope, "rule": rule}
            assert sample(registry, "gatekeeper_rule_refused_total", **labels) == refused
            assert sample(registry, "gatekeeper_rule_would_refuse_total", **labels) is None
    for reason, bans in stats["bans_by_reason"].items():
        assert sample(registry, "gatekeeper_bans_total", reason=reason) == bans
    tracked = sample(registry, "gatekeeper_tracked_clients")
    assert tracked == stats["tracked_clients"]  # None for Redis: no sample
    assert sample(registry, "gatekeeper_storage_outage") == 0

    text = generate_latest(registry).decode()
    assert 'gatekeeper_rule_refused_total{rule="3-per-60s",scope="global"} 1.0\n' in text
    assert 'gatekeeper_bans_total{reason="manual"} 1.0\n' in text
    assert "# TYPE gatekeeper_storage_outage gauge\n" in text


@pytest.mark.parametrize(
    ("options", "rate_limited", "shadow_refused"),
    [
        ({"rate_limit_rules": "1/minute", "dry_run": True}, 2, 0),
        ({"rate_limit_rules": ["5/minute", Rule(1, 60, shadow=True)]}, 0, 2),
    ],
    ids=["dry run", "shadow rule"],
)
def test_prometheus_counts_would_be_refusals_apart(
    build: AppFactory, options: dict[str, Any], rate_limited: int, shadow_refused: int
) -> None:
    """A dry run's would-be 429s count in ``rate_limited``, a shadow rule's in
    ``shadow_refused``; both under the rule's ``would_refuse``, never its ``refused``."""
    registry = CollectorRegistry()
    app, gk = build(**options)
    instrument(gk, registry)
    assert statuses(app.test_client(), 3) == [200, 200, 200]
    labels = {"scope": "global", "rule": "1-per-60s"}
    assert sample(registry, "gatekeeper_rule_would_refuse_total", **labels) == 2
    assert sample(registry, "gatekeeper_rule_refused_total", **labels) is None
    assert sample(registry, "gatekeeper_rate_limited_total") == rate_limited
    assert sample(registry, "gatekeeper_shadow_refused_total") == shadow_refused


def test_counters_follow_prometheus_client_conventions(build: AppFactory) -> None:
    """What docs/metrics.md promises a dashboard: counters with a help text, ``_total``
    and (in one process) ``_created`` samples, and the labels its PromQL example sums by."""
    registry = CollectorRegistry()
    app, gk = build(rate_limit_rules="1/minute")
    instrument(gk, registry)
    assert statuses(app.test_client(), 2) == [200, 429]
    families = {metric.name: metric for metric in registry.collect()}
    for name, metric in families.items():
        assert name.startswith("gatekeeper_"), name
        assert metric.documentation, name
        if metric.type == "counter":
            suffixes = {each.name.removeprefix(name) for each in metric.samples}
            assert suffixes in ({"_total", "_created"}, set()), name  # set(): no labels yet
    refused = families["gatekeeper_rule_refused"].samples
    assert {(each.name, tuple(sorted(each.labels))) for each in refused} == {
        ("gatekeeper_rule_refused_total", ("rule", "scope")),
        ("gatekeeper_rule_refused_created", ("rule", "scope")),
    }
    assert sample(registry, "gatekeeper_admitted_created") is not None
    for reason in BAN_REASONS:  # shown from 0, as the default offence is
        assert sample(registry, "gatekeeper_bans_total", reason=reason) == 0
    assert sample(registry, "gatekeeper_offence_bans_total", offence="default") == 0
    assert families["gatekeeper_storage_outage"].type == "gauge"


def test_prometheus_storage_outage_gauge(build: AppFactory, clock: FakeClock) -> None:
    storage = probed_storage(clock)  # every call tries the storage while it fails
    registry = CollectorRegistry()
    app, gk = build(storage=storage)
    instrument(gk, registry)
    client = app.test_client()
    assert statuses(client, 1) == [200]
    assert sample(registry, "gatekeeper_storage_outage") == 0

    storage.failing = True
    assert statuses(client, 2) == [200, 200]  # admitted: the outage policy
    assert sample(registry, "gatekeeper_storage_outage") == 1
    assert sample(registry, "gatekeeper_storage_errors_total") == 2
    assert sample(registry, "gatekeeper_admitted_total") == 3

    storage.failing = False
    assert statuses(client, 1) == [200]
    assert sample(registry, "gatekeeper_storage_outage") == 0
    assert sample(registry, "gatekeeper_tracked_clients") is None  # not a MemoryStorage


def test_the_outage_gauge_stays_up_while_any_instrumented_app_is_down(
    clock: FakeClock,
) -> None:
    """Two apps counted in one registry: one recovering leaves the gauge at 1 for the
    other, as "1 while the storage is in an outage" says of each."""
    registry = CollectorRegistry()
    apps = []
    for name in ("first", "second"):
        storage = probed_storage(clock)
        app = Flask(name)
        instrument(GateKeeper(app, storage=storage), registry)
        app.add_url_rule("/", "index", lambda: "hello")
        apps.append((app.test_client(), storage))
    for client, storage in apps:
        storage.failing = True
        assert statuses(client, 1) == [200]
    assert sample(registry, "gatekeeper_storage_outage") == 1

    for (client, storage), outage in zip(apps, (1, 0)):
        storage.failing = False
        assert statuses(client, 1) == [200]
        assert sample(registry, "gatekeeper_storage_outage") == outage


class _DownAtStart(FlakyStorage):
    """A storage that does not answer its start-up check."""

    def check(self) -> None:
        raise StorageError("connection refused")


def test_an_outage_from_start_up_shows_once_instrumented(build: AppFactory) -> None:
    registry = CollectorRegistry()
    _, gk = build(storage=_DownAtStart())
    instrument(gk, registry)
    assert sample(registry, "gatekeeper_storage_outage") == 1


def test_instrument_covers_apps_initialised_later_and_adds_up_extensions() -> None:
    registry = CollectorRegistry()
    late = GateKeeper(rate_limit_rules="1/minute")
    instrument(late, registry)
    instrument(late, registry)  # again: the same metrics, nothing counted twice
    app = Flask(__name__)
    late.init_app(app)  # an app factory: init_app after instrument
    other = Flask(__name__)
    instrument(GateKeeper(other, rate_limit_rules="1/minute"), registry)
    for each in (app, other):
        each.add_url_rule("/", "index", lambda: "hello")
        assert statuses(each.test_client(), 2) == [200, 429]

    labels = {"scope": "global", "rule": "1-per-60s"}
    assert sample(registry, "gatekeeper_rule_refused_total", **labels) == 2
    assert sample(registry, "gatekeeper_admitted_total") == 2
    assert sample(registry, "gatekeeper_tracked_clients") == 2  # one log in each app


def test_counts_from_many_threads_add_up(build: AppFactory) -> None:
    """Requests refused in several threads at once, first refusals of a rule included:
    every one counted, in ``stats`` and in Prometheus."""
    registry = CollectorRegistry()
    app, gk = build(rate_limit_rules="1/hour")
    instrument(gk, registry)

    def client_requests(number: int) -> list[int]:
        return statuses(app.test_client(), 20, "/", f"10.0.1.{number}")

    with ThreadPoolExecutor(8) as pool:
        seen = [status for each in pool.map(client_requests, range(8)) for status in each]
    assert seen.count(429) == 8 * 19
    labels = {"scope": "global", "rule": "1-per-3600s"}
    assert sample(registry, "gatekeeper_rule_refused_total", **labels) == 8 * 19
    assert sample(registry, "gatekeeper_admitted_total") == 8
    with app.app_context():
        assert gk.stats(detail=True)["rules"] == counts({"global": {"1-per-3600s": 152}}, "refused")


def test_without_prometheus_client_the_import_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "flask_gatekeeper.prometheus")
    with pytest.raises(ImportError, match=r'pip install "\.\[prometheus\]"'):
        importlib.import_module("flask_gatekeeper.prometheus")


# --- Prometheus under gunicorn, multi-process mode ----------------------------------------


def worker_counts(directory: Path, name: str, **labels: str) -> dict[str, float]:
    """Each worker's own value of a counter, from its file: pid -> value."""
    from prometheus_client.multiprocess import MultiProcessCollector

    found = {}
    for path in directory.glob("counter_*.db"):
        for metric in MultiProcessCollector.merge([str(path)]):
            for each in metric.samples:
                if each.name == name and each.labels == labels:
                    found[path.stem.split("_")[1]] = each.value
    return found


OUTAGE_WORKER = """
import os, sys
from flask import Flask
from flask_gatekeeper import GateKeeper
from flask_gatekeeper.prometheus import instrument
from flask_gatekeeper.testing import FlakyStorage

app, storage = Flask("worker"), FlakyStorage()
instrument(GateKeeper(app, storage=storage))
app.add_url_rule("/", "index", lambda: "hello")
storage.failing = sys.argv[1] == "down"
assert app.test_client().get("/").status_code == 200
print(os.getpid())
"""
"""A worker in multi-process mode that meets an outage (``down``) or not, then exits."""


def test_the_outage_gauge_of_workers_is_their_max_until_marked_dead(tmp_path: Path) -> None:
    """In multi-process mode ``gatekeeper_storage_outage`` is 1 while any worker not
    marked dead (gunicorn's ``child_exit``) is in an outage."""
    from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    env["PYTHONPATH"] = absolute_pythonpath(env)
    pids = {}
    for state in ("down", "up"):
        done = subprocess.run(
            [sys.executable, "-c", OUTAGE_WORKER, state],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        pids[state] = int(done.stdout)

    def outage() -> Optional[float]:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(tmp_path))
        return sample(registry, "gatekeeper_storage_outage")

    assert outage() == 1
    mark_process_dead(pids["down"], str(tmp_path))
    assert outage() == 0


HELD_APP = """
import os
import time
from pathlib import Path
from types import SimpleNamespace

from prometheus_example import app, gk  # the shipped example, as it is

HOLDS = Path(os.environ["HOLDS"])


@app.route("/hold/<name>")
@gk.bypass
def hold(name):
    (HOLDS / f"{name}.pid").write_text(str(os.getpid()))
    while not (HOLDS / f"{name}.release").exists():
        time.sleep(0.01)
    return "released"
"""
"""The example, and a route that keeps the worker that takes it busy until released: a
sync worker busy with a request accepts no other, so the next ones go to the other."""


def child_exit_hooks() -> dict[str, Any]:
    """``child_exit`` of docs/metrics.md's gunicorn.conf.py and of the shipped one."""
    (block,) = [
        block
        for block in code_blocks(ROOT / "docs" / "metrics.md")
        if block.first_line == "# fragment: gunicorn.conf.py"
    ]
    hooks = {}
    for name, code in (("docs", block.code), ("example", GUNICORN_CONF.read_text())):
        namespace: dict[str, Any] = {}
        exec(compile(code, name, "exec"), namespace)
        hooks[name] = namespace["child_exit"]
    return hooks


@pytest.mark.parametrize("where", ["docs", "example"])
def test_the_gunicorn_child_exit_hook_forgets_the_workers_gauges(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    dead, alive = (tmp_path / f"gauge_livemax_{pid}.db" for pid in (4001, 4002))
    counted = tmp_path / "counter_4001.db"
    for path in (dead, alive, counted):
        path.write_bytes(b"")
    child_exit_hooks()[where](None, SimpleNamespace(pid=4001))
    assert not dead.exists()
    assert alive.exists()
    assert counted.exists()  # its counts stay in the sums: counters never decrease


@pytest.mark.e2e
@pytest.mark.redis
def test_a_scrape_sums_the_refusals_of_every_gunicorn_worker(
    redis_url: str, raw_redis: Any, tmp_path: Path
) -> None:
    """The shipped example under gunicorn with two workers, sharing Redis, with its
    gunicorn.conf.py: a scrape reaching either worker shows every 429, made by
    both; a worker that dies keeps its counts and leaves the outage gauge."""
    app_dir, multiproc, holds = (tmp_path / name for name in ("app", "prometheus", "holds"))
    for directory in (app_dir, multiproc, holds):
        directory.mkdir()
    (app_dir / "prometheus_example.py").write_text((EXAMPLES / "prometheus.py").read_text())
    (app_dir / "metrics_app.py").write_text(HELD_APP)
    (app_dir / "gunicorn.conf.py").write_text(GUNICORN_CONF.read_text())  # read: no -c
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "GATEKEEPER_STORAGE_URI": redis_url,
        "HOLDS": str(holds),
    }
    server = ServerProcess.gunicorn(
        app_dir,
        "metrics_app",
        workers=2,
        env=env,
        probe="/metrics",
    )
    export = server.url + "/export"

    def hold(pool: ThreadPoolExecutor, name: str) -> tuple[Future[Any], int]:
        """Keep one worker busy: the request in flight and the worker's pid."""
        held = pool.submit(fetch, f"{server.url}/hold/{name}")
        wait_until(lambda: (holds / f"{name}.pid").exists(), TIMEOUT, f"hold {name}")
        return held, int((holds / f"{name}.pid").read_text())

    server.start()
    try:
        with ThreadPoolExecutor(2) as pool:
            first, first_pid = hold(pool, "first")
            assert [fetch(export).status for _ in range(3)] == [200, 200, 429]  # the other
            second, second_pid = hold(pool, "second")  # the other, as the first is busy
            (holds / "first.release").touch()
            assert first.result(TIMEOUT).status == 200
            assert fetch(export).status == 429  # the first worker: the second is busy
            (holds / "second.release").touch()
            assert second.result(TIMEOUT).status == 200
        assert first_pid != second_pid
        name = "gatekeeper_rule_refused_total"
        labels = {"scope": "export", "rule": "2-per-3600s"}
        by_worker = worker_counts(multiproc, name, **labels)
        assert by_worker == {str(first_pid): 1.0, str(second_pid): 1.0}, server.log

        line = f'{name}{{rule="2-per-3600s",scope="export"}} 2.0'
        for _ in range(4):  # whichever worker answers, the same sum
            scraped = fetch(server.url + "/metrics").body.splitlines()
            assert line in scraped, scraped
        assert "gatekeeper_admitted_total 2.0" in scraped  # /hold and /metrics: bypassed
        assert "gatekeeper_storage_outage 0.0" in scraped
        assert not [each for each in scraped if each.startswith("gatekeeper_tracked_clients")]
        assert not [each for each in scraped if "_created" in each]  # one process only

        outage_file = multiproc / f"gauge_livemax_{first_pid}.db"
        assert outage_file.exists()
        os.kill(first_pid, signal.SIGKILL)  # gunicorn's child_exit forgets its gauge
        wait_until(lambda: not outage_file.exists(), TIMEOUT, "child_exit")
        scraped = fetch(server.url + "/metrics").body.splitlines()
        assert line in scraped, scraped  # a dead worker's counts stay: never decreasing
    finally:
        server.stop()
