"""The memory storage's short path (one scope of sliding-log rules, no slot) decides
exactly as its general path: the same decisions, usage and logs, for any rules, cost
and timing. A request with a ``token`` always takes the general path; with no
concurrency limit in its scope, the token takes no slot and changes nothing else."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flask_gatekeeper.rules import Rule
from flask_gatekeeper.storage.plan import GLOBAL_SCOPE, Scope
from flask_gatekeeper.testing import FakeClock, MemoryStorage

rules = st.lists(
    st.builds(Rule, st.integers(min_value=1, max_value=5), st.sampled_from([0.5, 1, 2.5])),
    min_size=1,
    max_size=3,
).map(tuple)
steps = st.lists(
    st.tuples(
        st.sampled_from([0, 1e-6, 0.1, 0.25, 0.5, 1, 2.5]),  # seconds before the request
        st.sampled_from(["10.0.0.1", "10.0.0.2"]),
        st.booleans(),  # usage asked for
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(
    scope_rules=rules,
    cost=st.integers(min_value=1, max_value=7),
    name=st.sampled_from([GLOBAL_SCOPE, "route"]),
    steps=steps,
)
def test_the_short_path_decides_as_the_general_path(
    scope_rules: tuple[Rule, ...], cost: int, name: str, steps: list[tuple[float, str, bool]]
) -> None:
    clock = FakeClock()
    short, general = MemoryStorage(clock=clock), MemoryStorage(clock=clock)
    scope = Scope.of(name, scope_rules, cost=cost)
    for wait, client, usage in steps:
        clock.advance(wait)
        expected = general.hit(client, [scope], usage=usage, token="general path")
        assert short.hit(client, [scope], usage=usage) == expected
        assert short.usage(client, [scope]) == general.usage(client, [scope])
