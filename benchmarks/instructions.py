"""Instructions per request under callgrind: the side-by-side ratios without the noise.

Not a test: it prints a Markdown report (written to ``benchmarks/INSTRUCTIONS.md`` too).
``make bench`` runs it when valgrind is installed (about 20 minutes on two cores);
``--smoke``: bare Flask and ours, a few hundred requests.

Timings on a shared machine move by as much as the overhead they measure; instructions
do not. Each configuration is built by ``harness.py`` as ``peers.py`` builds it, in the
same venvs, and run twice under ``valgrind --tool=callgrind`` (``PYTHONHASHSEED`` fixed):
built and warmed up, then with 4 000 more requests; the difference over 4 000 is one
request's instructions. The targets are ``peers.py``'s, in instructions. 100 000 clients
are left out (filling them under callgrind takes longer than the rest together;
``peers.py`` times them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import common
from common import HERE, Interpreter
from peers import BARE, HOOK, MOVING, ORIGINAL, OURS, Case, Unit, by_key, speed_targets, time_table

REPORT = HERE / "INSTRUCTIONS.md"
ADMITTED = (BARE, HOOK, OURS, MOVING, ORIGINAL)
REFUSING = (
    (OURS, ("refused", "banned")),
    (ORIGINAL, ("refused", "banned")),
    (MOVING, ("refused",)),
)
FULL = (1, 1_000), 4_000
SMOKE = (1,), 200
"""Client counts, and requests counted per configuration."""
INSTRUCTIONS = Unit("instructions", ",.0f", digits=3)

log = common.logger("instructions")


def collected(python: Interpreter, case: Case, requests: int) -> int:
    """Instructions a worker executes building ``case`` and then running ``requests``
    requests (none: built and warmed up only)."""
    lines = [{"cmd": "build", **case.fields()}]
    lines += [{"cmd": "run", "case": case.name, "requests": requests}] * bool(requests)
    command, env = python
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            *command,
            str(HERE / "harness.py"),
        ],
        input="".join(json.dumps(line) + "\n" for line in [*lines, {"cmd": "quit"}]),
        capture_output=True,
        text=True,
        env={**env, "PYTHONHASHSEED": "0"},
        check=False,
    )
    for reply in map(json.loads, done.stdout.splitlines()):
        if "error" in reply:
            raise SystemExit(f"{case.label}: {reply['error']}")
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"{case.label}: no instruction count from callgrind:\n{done.stderr}")
    return int(found.group(1))


def main() -> None:
    smoke = common.parser(__doc__, "bare Flask and ours, few requests").parse_args().smoke
    if shutil.which("valgrind") is None:
        log("skipped: valgrind is not installed (apt-get install valgrind)")
        return
    started = time.monotonic()
    pythons = common.worker_interpreters(install=False, log=log)
    client_counts, requests = SMOKE if smoke else FULL
    cases = [Case(peer, "admitted", clients) for clients in client_counts for peer in ADMITTED]
    for peer, modes in () if smoke else REFUSING:
        cases += [Case(peer, mode, 1, accept) for mode in modes for accept in (None, "*/*")]
    cases = [
        case
        for case in cases
        if case.peer.venv in pythons and (not smoke or case.peer in (BARE, OURS))
    ]

    def count(case: Case) -> None:
        log(f"counting {case.label}, {case.clients} client(s)")
        python = pythons[case.peer.venv]
        case.samples = [(collected(python, case, requests) - collected(python, case, 0)) / requests]

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(count, cases))
    text = common.generated(
        "instructions.py", smoke, time.monotonic() - started, "tiny counts, not numbers to quote."
    )
    valgrind = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout
    report = "\n".join(
        [
            "# Instructions per request, side by side",
            "",
            text,
            "",
            f"- {common.setting()}; {valgrind.strip()}.",
            "- The configurations, clocks, warm-up and filled logs of [RESULTS.md](RESULTS.md), "
            "each run under `valgrind --tool=callgrind`: a request's instructions are the "
            "difference between a run that builds and warms up the configuration and one that "
            f"then serves {requests:,} more requests, divided by {requests:,}. Deterministic "
            "(`PYTHONHASHSEED=0`); cache misses and the CPU's speed do not count, which is why "
            "RESULTS.md times the same configurations too.",
            "",
            "## Targets (issue 15), in instructions",
            "",
            speed_targets(by_key(cases), client_counts, INSTRUCTIONS).table(),
            "",
            "## Instructions per request",
            "",
            time_table(cases, [], unit=INSTRUCTIONS),
            "",
        ]
    )
    common.publish(report, REPORT, smoke=smoke, log=log)


if __name__ == "__main__":
    main()
