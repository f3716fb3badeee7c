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

Configurations are interleaved round by round; the table shows medians over rounds. The
overhead and the ratios are medians of per-round paired differences and ratios (each
configuration against bare Flask at the same number of clients, timed in the same round).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import harness
from harness import BAN_RULE, RATE_LIMIT_RULES, Case, Config, overhead, ratio

FULL = (1, 1_000, 100_000), 15, 10_000
"""Client counts (MemoryStorage's default max_clients is 100 000: none is evicted),
rounds, and requests per configuration per round."""
SMOKE = (1, 10, 100), 2, 200


@dataclass
class Row:
    label: str
    clients: int
    case: Case
    baseline: Optional[Row] = None
    samples: list[float] = field(default_factory=list)
    """Mean microseconds per request, one per round."""

    def measure(self, requests: int) -> float:
        return self.case.run(requests) / requests / 1000


def build(label: str, peer: str, mode: str, clients: int, baseline: Optional[Row] = None) -> Row:
    case, _facts = harness.build_case(peer, mode, clients, Config(RATE_LIMIT_RULES, BAN_RULE))
    return Row(label, clients, case, baseline)


def build_rows(client_counts: Sequence[int]) -> list[Row]:
    """Bare and admitted at each client count, then the hook and refusals at one client."""
    rows: list[Row] = []
    for count in client_counts:
        bare = build("bare Flask", "bare", "admitted", count)
        rows += [bare, build("GateKeeper, admitted", "ours", "admitted", count, bare)]
    bare_one = rows[0]
    return [
        *rows,
        build("Flask + an empty before_request", "hook", "admitted", 1, bare_one),
        build("GateKeeper, refused (429)", "ours", "refused", 1, bare_one),
        build("GateKeeper, banned (403)", "ours", "banned", 1, bare_one),
    ]


def report(rows: Sequence[Row], rounds: int, requests: int) -> str:
    lines = [
        f"{harness.setting()}; {rounds} rounds x {requests} requests per configuration; "
        "medians over rounds.",
        "",
        "| path | clients | µs/request | spread | overhead vs bare | ratio vs bare |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        versus = ("", "1.00x")
        if row.baseline is not None:
            versus = (
                f"{overhead(row, row.baseline):+.2f} µs",
                f"{ratio(row, row.baseline):.2f}x",
            )
        lines.append(
            f"| {row.label} | {row.clients:,} | {statistics.median(row.samples):.2f} "
            f"| {harness.spread(row.samples)} | {versus[0]} | {versus[1]} |"
        )
    found = {(row.label, row.clients): row for row in rows}
    few, many = rows[0].clients, max(row.clients for row in rows)
    bare_few, bare_many = found["bare Flask", few], found["bare Flask", many]
    ours_few, ours_many = found["GateKeeper, admitted", few], found["GateKeeper, admitted", many]
    over_few, over_many = overhead(ours_few, bare_few), overhead(ours_many, bare_many)
    return "\n".join(
        [
            *lines,
            "",
            f"- GateKeeper, admitted, {many:,} vs {few} client: "
            f"{ratio(ours_many, ours_few):.2f}x per request",
            f"- bare Flask, {many:,} vs {few} client: "
            f"{ratio(bare_many, bare_few):.2f}x per request",
            f"- GateKeeper's own overhead, {many:,} vs {few} client: "
            f"{over_many:.2f} µs vs {over_few:.2f} µs",
            "- Targets (design): admitted within 1.10x of bare Flask; "
            f"{many:,} clients within 1.10x of {few}.",
        ]
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny counts: checks that everything runs (CI)"
    )
    client_counts, rounds, requests = SMOKE if parser.parse_args(argv).smoke else FULL
    started = time.perf_counter()
    rows = build_rows(client_counts)
    gc.collect()
    gc.freeze()  # the apps, addresses and logs built above: later collections skip them
    harness.run_rounds(rows, rounds, requests)
    print(report(rows, rounds, requests))
    print(f"\n(run took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
