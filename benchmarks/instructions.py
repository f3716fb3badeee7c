"""Instructions per request under callgrind: the side-by-side ratios without the noise.

Not a test: it prints INSTRUCTIONS.md's report (a full run writes it). ``make bench`` runs
it when valgrind is installed (about 20 minutes on two cores); ``--smoke``: bare Flask and
ours, a few hundred requests. 100 000 clients are left out (too slow to fill under callgrind).
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
REFUSING = {OURS: ("refused", "banned"), ORIGINAL: ("refused", "banned"), MOVING: ("refused",)}
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
    valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    done = subprocess.run(
        [*valgrind, *command, str(HERE / "harness.py")],
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
    smoke = common.arguments(__doc__, None, smoke="bare Flask and ours, few requests").smoke
    if shutil.which("valgrind") is None:
        log("skipped: valgrind is not installed (apt-get install valgrind)")
        return
    started = time.monotonic()
    pythons = common.worker_interpreters(install=False, log=log)
    client_counts, requests = SMOKE if smoke else FULL
    cases = [Case(peer, "admitted", clients) for clients in client_counts for peer in ADMITTED]
    for peer, modes in {} if smoke else REFUSING.items():
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
    valgrind = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout
    report = common.template(
        "instructions.md",
        generated=common.generated("instructions.py", smoke, time.monotonic() - started),
        setting=common.setting(),
        valgrind=valgrind.strip(),
        requests=f"{requests:,}",
        targets=speed_targets(by_key(cases), client_counts, INSTRUCTIONS).table(),
        table=time_table(cases, [], unit=INSTRUCTIONS),
    )
    common.publish(report, REPORT, smoke=smoke, log=log)


if __name__ == "__main__":
    main()
