"""The request path's short cuts decide exactly as the general paths they skip.

- ``Gate.hit`` calls the storage itself while it is up, where the general path is
  ``Gate.ask_storage``: the same decisions, outage state, counters and log lines, for
  any run of answers and failures of every class.
- ``Gate.check_request`` reads the policy cache before ``Policies.policy_for``: the same
  policy for every endpoint and method, known, unknown or misspelt.
- ``Gate.check_request`` takes a plain IPv4 socket peer's key from
  ``Identifier.peer_key``: exactly what ``Identifier.identify`` answers for it.
- ``Decision.__init__`` writes its fields at once: the same fields, defaults, equality
  and hash as the frozen dataclass's own ``__init__``.
- The memory storage's refusal by a rule (``limited``) makes its ``Decision`` by
  position: the one its fields' keywords make.

(The memory storage's one-scope path has its own test: ``test_memory_fast_path.py``.)
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import Any, Optional, Union

import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import Headers

from flask_gatekeeper import GateKeeper
from flask_gatekeeper.decision import Decision, NewBan, Reservation, ShadowRefusal, Usage
from flask_gatekeeper.errors import StorageCallError, StorageError
from flask_gatekeeper.gate import Down, Gate
from flask_gatekeeper.identity.addresses import AddressSet, parse_address_list
from flask_gatekeeper.identity.proxies import Client, Identifier
from flask_gatekeeper.routes import HTTP_METHODS
from flask_gatekeeper.rules import Rule
from flask_gatekeeper.storage.model import limited
from flask_gatekeeper.storage.plan import GLOBAL_SCOPE, Scope
from flask_gatekeeper.testing import FakeClock, FlakyStorage

FAILURES: dict[str, Optional[Exception]] = {
    "answers": None,
    "outage": StorageError("connection refused"),
    "its socket": OSError("connection reset"),
    "this call": StorageCallError("WRONGTYPE"),
    "a bug": KeyError("oops"),
}
"""How the storage meets one call: each failure class of the design."""


class ScriptedStorage(FlakyStorage):
    """A memory storage that raises ``failure`` on every call while it is set."""

    failure: Optional[Exception] = None

    def _maybe_fail(self) -> None:
        if self.failure is not None:
            raise self.failure


class Captured(logging.Handler):
    """The package's log lines, as text."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


@pytest.fixture(scope="module")
def captured() -> Iterator[Captured]:
    handler = Captured()
    logger = logging.getLogger("flask_gatekeeper")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def scripted_gate(on_outage: str) -> tuple[Gate, ScriptedStorage, FakeClock]:
    clock = FakeClock()
    storage = ScriptedStorage(clock=clock)
    app = Flask(__name__)
    GateKeeper(
        app,
        storage=storage,
        on_outage=on_outage,
        ban_rule={"count": 2, "window": 10, "duration": 60},
        report_rate_limited=True,
    )
    gate: Gate = app.extensions["gatekeeper"]
    return gate, storage, clock


def asked_as_in_general(
    gate: Gate, client: str, scopes: tuple[Scope, ...], usage: bool
) -> Optional[Decision]:
    """``Gate.hit`` as it would be with every call through ``ask_storage`` (no fallback,
    no remembered refusals: a memory storage has neither)."""
    storage = gate.settings.storage
    options: dict[str, Any] = {"usage": usage and bool(scopes), "also": (), "token": None}
    decision: Union[Decision, Down] = gate.ask_storage(
        storage.hit, client, scopes, report_to=gate._report_to, **options
    )
    if isinstance(decision, Down):
        gate._unanswered()
        return None
    return decision


steps = st.lists(
    st.tuples(
        st.sampled_from([0, 0.25, 0.5, 1, 3]),  # seconds before the call
        st.sampled_from(sorted(FAILURES)),
        st.sampled_from(["10.0.0.1", "10.0.0.2"]),
        st.booleans(),  # usage asked for
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(steps=steps, on_outage=st.sampled_from(["open", "closed"]))
def test_the_gates_storage_call_while_up_is_ask_storage(
    steps: list[tuple[float, str, str, bool]], on_outage: str, captured: Captured
) -> None:
    short, short_storage, short_clock = scripted_gate(on_outage)
    general, general_storage, general_clock = scripted_gate(on_outage)
    scopes = (Scope.of(GLOBAL_SCOPE, (Rule(2, 1), Rule(5, 10))),)
    for wait, failure, client, usage in steps:
        short_clock.advance(wait)
        general_clock.advance(wait)
        short_storage.failure = general_storage.failure = FAILURES[failure]
        outcomes = []
        for gate, call in ((short, Gate.hit), (general, asked_as_in_general)):
            captured.lines.clear()
            try:
                answer: object = call(gate, client, scopes, usage=usage)
            except Exception as exc:  # failing closed: the 503
                answer = repr(exc)
            guard = gate.guard
            stats = gate.events.stats.snapshot()
            outcomes.append((answer, guard.down, guard.outages, stats, list(captured.lines)))
        assert outcomes[0] == outcomes[1]


endpoints = st.sampled_from([None, "index", "api", "missing", "static", "\\odd"])
methods = st.sampled_from([*sorted(HTTP_METHODS), "get", "PURGE", "", "BREW"])


@settings(max_examples=100, deadline=None)
@given(lookups=st.lists(st.tuples(endpoints, methods), max_size=30))
def test_the_gates_read_of_the_policy_cache_is_policy_for(
    lookups: list[tuple[Optional[str], str]],
) -> None:
    app = Flask(__name__)
    gk = GateKeeper(app, rate_limit_rules="10/second", excluded_methods=["HEAD"])
    app.add_url_rule("/", "index", lambda: "hello")
    app.add_url_rule("/api", "api", gk.specific("1/second")(lambda: "api"))
    policies = app.extensions["gatekeeper"].policies
    for endpoint, method in lookups:
        # check_request's read, as written there
        read = policies.cache.get((endpoint, method))
        if read is None:
            read = policies.policy_for(endpoint, method)
        assert read is policies.policy_for(endpoint, method)
    for (endpoint, method), policy in policies.cache.items():  # what the read relies on
        assert policy is policies.policy_for(endpoint, method)


def an_identifier(ip_header: Optional[str], denylist: bool, key_func: bool) -> Identifier:
    listed = AddressSet(parse_address_list(["192.0.2.0/24"], "denylist"))
    return Identifier(
        ip_header=ip_header,
        trusted_proxies=None,
        ipv6_prefix=64,
        allowlist=AddressSet(()),
        denylist=listed if denylist else AddressSet(()),
        key_func=(lambda: "user") if key_func else None,
    )


peers = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.sampled_from(["192.0.2.7", "", "unix", "10.0.0.1:80"]),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(
    peer=peers,
    ip_header=st.sampled_from([None, "X-Real-IP"]),
    denylist=st.booleans(),
    key_func=st.booleans(),
    lengths=st.sampled_from([frozenset(), frozenset({(4, 16)}), frozenset({(6, 48)})]),
)
def test_a_peer_key_is_what_identify_answers(
    peer: Optional[str],
    ip_header: Optional[str],
    denylist: bool,
    key_func: bool,
    lengths: frozenset[tuple[int, int]],
) -> None:
    identifier = an_identifier(ip_header, denylist, key_func)
    key = identifier.peer_key(peer, None, lengths)
    if key is not None:
        client = identifier.identify(Headers(), peer, None, lengths)
        assert type(client) is Client
        assert client == Client(key, False, ())
        assert key == peer  # never parsed, never chosen by the client
    if ip_header is None and not denylist and not key_func and not lengths and peer:
        assert (key is not None) == (":" not in peer)  # the common case takes it


rules = st.builds(Rule, st.integers(1, 5), st.sampled_from([1, 2.5]))
decision_fields: dict[str, st.SearchStrategy[Any]] = {
    "banned": st.booleans(),
    "retry_after": st.floats(0, 100),
    "rule": st.none() | rules,
    "scope": st.sampled_from([GLOBAL_SCOPE, "route"]),
    "usage": st.none() | st.builds(Usage, rules, st.integers(0, 5), st.floats(0, 10)),
    "new_ban": st.none() | st.floats(1, 600),
    "manual": st.booleans(),
    "banned_as": st.none() | st.just("10.0.0.1"),
    "concurrency": st.integers(0, 3),
    "reserved": st.lists(st.builds(Reservation, st.integers(0, 10**9)), max_size=2).map(tuple),
    "ban": st.none() | st.builds(NewBan, st.floats(1, 600)),
    "offence": st.none() | st.just("login"),
    "shadowed": st.lists(
        st.builds(ShadowRefusal, st.just(Rule(1, 1, shadow=True)), st.just(""), st.just(1.0)),
        max_size=2,
    ).map(tuple),
}


@dataclasses.dataclass(frozen=True)
class GeneralDecision:
    """``Decision`` as a frozen dataclass makes it, with the defaults of its signature."""

    admitted: bool
    banned: bool = False
    retry_after: float = 0.0
    rule: Optional[Rule] = None
    scope: str = GLOBAL_SCOPE
    usage: Optional[Usage] = None
    new_ban: Optional[float] = None
    manual: bool = False
    banned_as: Optional[str] = None
    concurrency: int = 0
    reserved: tuple[Reservation, ...] = ()
    ban: Optional[NewBan] = None
    offence: Optional[str] = None
    shadowed: tuple[ShadowRefusal, ...] = ()


def test_the_general_decision_has_decisions_fields() -> None:
    assert [f.name for f in dataclasses.fields(GeneralDecision)] == [
        f.name for f in dataclasses.fields(Decision)
    ]


@settings(max_examples=200, deadline=None)
@given(admitted=st.booleans(), given_fields=st.fixed_dictionaries({}, optional=decision_fields))
def test_a_decision_is_made_as_a_frozen_dataclass_makes_it(
    admitted: bool, given_fields: dict[str, Any]
) -> None:
    made = Decision(admitted, **given_fields)
    general = GeneralDecision(admitted, **given_fields)
    assert dataclasses.asdict(made) == dataclasses.asdict(general)
    assert vars(made) == vars(general)  # nothing more, nothing less
    assert made == Decision(admitted, **given_fields)
    assert hash(made) == hash(Decision(admitted, **given_fields))
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.admitted = not admitted  # type: ignore[misc]


@given(
    wait=st.integers(1, 10**12),
    scope=st.sampled_from([GLOBAL_SCOPE, "search"]),
    usage=st.booleans(),
    new_ban=st.none() | st.floats(1, 600),
)
def test_a_rules_refusal_is_the_decision_its_fields_name(
    wait: int, scope: str, usage: bool, new_ban: Optional[float]
) -> None:
    rule = Rule(3, 60)
    expected = Decision(
        admitted=False,
        retry_after=wait / 1_000_000,
        rule=rule,
        scope=scope,
        usage=Usage(rule, 0, wait / 1_000_000, scope) if usage else None,
        new_ban=new_ban,
    )
    assert limited(wait, rule, scope, usage, new_ban) == expected
