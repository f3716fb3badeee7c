"""Per-request cost of GateKeeper over bare Flask, through the WSGI app called directly.

Not a test: it prints a Markdown table and asserts no speed. ``make bench`` runs the full
measurement (about five minutes on two cores); ``make bench-smoke`` (``--smoke``) runs the
same code with tiny counts, for CI, in a few seconds.

What is measured, per request, in this process with ``harness.py``'s method (the WSGI app
called directly on a copy of a prebuilt GET environ, the body consumed and closed, no GC
inside a timed loop), for

- bare Flask (the same ``"ok"`` view, no extension), as the baseline;
- GateKeeper admitting the request: the seed's two rate rules and ban rule, clients
  identified by ``REMOTE_ADDR``, at 1, 1 000 and 100 000 distinct clients taken
  round-robin, every one already tracked and its log ring full before timing starts;
- Flask calling one empty ``before_request``: the floor of any such extension;
- GateKeeper refusing it: a client over its limit (429), and a banned client (403).

Configurations are interleaved round by round (``common.run_rounds``); the table shows
medians over rounds. The overhead and the ratios are medians of per-round paired
differences and ratios (each configuration against bare Flask at the same number of
clients, timed in the same round).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Sequence
from typing import Optional

import harness
from common import Series, overhead, parser, ratio, run_rounds, setting, spread, table

FULL = (1, 1_000, 100_000), 15, 10_000
"""Client counts (MemoryStorage's default max_clients is 100 000: none is evicted),
rounds, and requests per configuration per round."""
SMOKE = (1, 10, 100), 2, 200
BARE, OURS = "bare Flask", "GateKeeper, admitted"


def build(label: str, peer: str, mode: str, clients: int) -> tuple[Series, int]:
    config = harness.Config(harness.RATE_LIMIT_RULES, harness.BAN_RULE)
    case, _facts = harness.build_case(peer, mode, clients, config)
    return Series(label, case.run), clients


def build_rows(client_counts: Sequence[int]) -> list[tuple[Series, int]]:
    """Bare and admitted at each client count, then the hook and refusals at one client."""
    rows = [
        build(label, peer, "admitted", count)
        for count in client_counts
        for label, peer in ((BARE, "bare"), (OURS, "ours"))
    ]
    return [
        *rows,
        build("Flask + an empty before_request", "hook", "admitted", 1),
        build("GateKeeper, refused (429)", "ours", "refused", 1),
        build("GateKeeper, banned (403)", "ours", "banned", 1),
    ]


def report(rows: Sequence[tuple[Series, int]], rounds: int, requests: int) -> str:
    found = {(row.label, clients): row for row, clients in rows}
    lines = []
    for row, clients in rows:
        bare = found[BARE, clients if row.label == OURS else 1]
        versus = ["", "1.00x"]
        if row.label != BARE:
            versus = [f"{overhead(row, bare):+.2f} µs", f"{ratio(row, bare):.2f}x"]
        median = f"{statistics.median(row.samples):.2f}"
        lines.append([row.label, f"{clients:,}", median, spread(row.samples), *versus])
    few, many = rows[0][1], max(clients for _, clients in rows)
    bare_few, bare_many = found[BARE, few], found[BARE, many]
    ours_few, ours_many = found[OURS, few], found[OURS, many]
    headings = ["path", "clients", "µs/request", "spread", "overhead vs bare", "ratio vs bare"]
    return "\n".join(
        [
            f"{setting()}; {rounds} rounds x {requests} requests per configuration; "
            "medians over rounds.",
            "",
            table(headings, lines),
            "",
            f"- GateKeeper, admitted, {many:,} vs {few} client: "
            f"{ratio(ours_many, ours_few):.2f}x per request",
            f"- bare Flask, {many:,} vs {few} client: "
            f"{ratio(bare_many, bare_few):.2f}x per request",
            f"- GateKeeper's own overhead, {many:,} vs {few} client: "
            f"{overhead(ours_many, bare_many):.2f} µs vs {overhead(ours_few, bare_few):.2f} µs",
            "- Targets (design): admitted within 1.10x of bare Flask; "
            f"{many:,} clients within 1.10x of {few}.",
        ]
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    smoke = parser(__doc__, "tiny counts: checks that everything runs (CI)").parse_args(argv).smoke
    client_counts, rounds, requests = SMOKE if smoke else FULL
    started = time.perf_counter()
    rows = build_rows(client_counts)
    gc.collect()
    gc.freeze()  # the apps, addresses and logs built above: later collections skip them
    run_rounds([row for row, _ in rows], rounds, requests)
    print(report(rows, rounds, requests))
    print(f"\n(run took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
