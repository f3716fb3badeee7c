"""Time per request of ours over bare Flask, through ``peers.py``'s worker and rounds.

Not a test: it prints a Markdown table and asserts no speed. ``make bench`` runs it (about
five minutes on two cores); ``--smoke``: tiny counts, in seconds.

Bare Flask and ours admitting (the seed's rules and ban rule, every client tracked and its
ring full) at 1, 1 000 and 100 000 clients in turn; Flask calling one empty
``before_request`` (the floor of any such extension); ours refusing (429) and banning
(403) one client. Medians over interleaved rounds; overhead and ratios are medians of
per-round differences and ratios to bare Flask at the same clients, timed in the same round.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Optional

import common
from common import OURS_VENV, Worker, overhead, ratio
from peers import BARE, HOOK, Case, Peer, build, time_table

FULL = (1, 1_000, 100_000), 15, 10_000
"""Client counts (none evicted under the default bound), rounds, requests per round."""
SMOKE = (1, 10, 100), 2, 200
OURS = Peer("ours", "GateKeeper", "ours", OURS_VENV)


def main(argv: Optional[Sequence[str]] = None) -> None:
    smoke = common.parser(__doc__, "tiny counts: checks that everything runs").parse_args(argv)
    counts, rounds, requests = SMOKE if smoke.smoke else FULL
    started = time.perf_counter()
    python = common.interpreter(OURS_VENV, install=False)
    assert python is not None
    workers = {OURS_VENV: Worker(OURS_VENV, python)}
    try:
        cases = [Case(peer, "admitted", n) for n in counts for peer in (BARE, OURS)]
        cases += [
            Case(HOOK, "admitted", 1),
            *(Case(OURS, mode, 1) for mode in ("refused", "banned")),
        ]
        cases = [build(workers, case) for case in cases]
        workers[OURS_VENV].ask("freeze")  # the apps, addresses and logs: collections skip them
        common.run_rounds(cases, rounds, requests, common.logger("overhead"))
    finally:
        workers[OURS_VENV].close()
    bare_few, ours_few, *_, bare_many, ours_many = cases[: 2 * len(counts)]
    few, many = counts[0], counts[-1]
    print(
        f"{common.setting()}; {rounds} rounds x {requests} requests per configuration; "
        f"medians over rounds.\n\n{time_table(cases, [])}\n\n"
        f"- GateKeeper, admitted, {many:,} vs {few} client: "
        f"{ratio(ours_many, ours_few):.2f}x per request\n"
        f"- bare Flask, {many:,} vs {few} client: {ratio(bare_many, bare_few):.2f}x per request\n"
        f"- GateKeeper's own overhead, {many:,} vs {few} client: "
        f"{overhead(ours_many, bare_many):.2f} µs vs {overhead(ours_few, bare_few):.2f} µs\n"
        "- Targets (design): admitted within 1.10x of bare Flask; "
        f"{many:,} clients within 1.10x of {few}."
    )
    print(f"\n(run took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
