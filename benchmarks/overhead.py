"""Time per request of ours over bare Flask, through ``peers.py``'s worker and rounds.

Not a test: it prints a Markdown table and asserts no speed. ``make bench`` runs it (about
five minutes on two cores); ``--smoke``: tiny counts, in seconds.
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
    smoke = common.arguments(__doc__, argv, smoke="tiny counts: checks that it runs").smoke
    counts, rounds, requests = SMOKE if smoke else FULL
    started = time.perf_counter()
    python = common.interpreter(OURS_VENV, install=False)
    assert python is not None
    workers = {OURS_VENV: Worker(OURS_VENV, python)}
    try:
        cases = [Case(peer, "admitted", n) for n in counts for peer in (BARE, OURS)]
        cases += [Case(HOOK, "admitted", 1), Case(OURS, "refused", 1), Case(OURS, "banned", 1)]
        cases = [build(workers, case) for case in cases]
        workers[OURS_VENV].ask("freeze")  # the apps, addresses and logs: collections skip them
        common.run_rounds(cases, rounds, requests, common.logger("overhead"))
    finally:
        workers[OURS_VENV].close()
    bare_few, ours_few, *_, bare_many, ours_many = cases[: 2 * len(counts)]
    print(
        common.template(
            "overhead.md",
            setting=common.setting(),
            rounds=rounds,
            requests=requests,
            table=time_table(cases, []),
            many=f"{counts[-1]:,}",
            few=counts[0],
            ours_ratio=f"{ratio(ours_many, ours_few):.2f}x",
            bare_ratio=f"{ratio(bare_many, bare_few):.2f}x",
            ours_many=f"{overhead(ours_many, bare_many):.2f}",
            ours_few=f"{overhead(ours_few, bare_few):.2f}",
            seconds=f"{time.perf_counter() - started:.0f}",
        )
    )


if __name__ == "__main__":
    main()
