"""What the benchmark drivers share: rounds and paired ratios, reports, and the venvs with
their workers (``harness.py``); redis-server and gunicorn come from ``tests/support``."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any, Optional, Protocol, TypeVar

import jinja2

HERE = Path(__file__).resolve().parent
OURS_VENV, PEER_VENVS = "ours", ("limiter", "original")  # ours: this driver's interpreter
NOT_MEASURED = "not measured: the peer's venv is not built (or --smoke)"
T = TypeVar("T")
Log = Callable[[str], None]
Row = Callable[..., tuple[str, bool]]  # a target's row: what was measured, and whether it is met
sys.path.append(str(HERE.parent / "tests"))  # the tests' support package, imported when used


def logger(name: str) -> Log:
    """Progress lines on stderr, ``[name] message``: stdout carries the report."""
    return lambda message: print(f"[{name}] {message}", file=sys.stderr, flush=True)


def arguments(doc: Optional[str], argv: Optional[Sequence[str]], *flags: str) -> Any:
    """A driver's switches; its docstring, which ``--help`` shows, says what each one does."""
    raw = argparse.RawDescriptionHelpFormatter
    found = argparse.ArgumentParser(description=doc, formatter_class=raw)
    for flag in flags:
        found.add_argument(f"--{flag.replace('_', '-')}", action="store_true")
    return found.parse_args(argv)


class Timed(Protocol):
    """A case a worker built (``name``), timed round by round: µs per request, one a round."""

    worker: Optional[Worker]
    samples: list[float]

    @property
    def name(self) -> str: ...


def measure(case: Timed, requests: int) -> float:
    assert case.worker is not None
    return float(case.worker.ask("run", case=case.name, requests=requests)["ns"]) / requests / 1000


def rotated(items: Sequence[T], number: int) -> list[T]:
    """Round ``number``'s order (A B C, then B C A): drifts in machine speed hit all alike."""
    shift = number % len(items)
    return [*items[shift:], *items[:shift]]


def run_rounds(cases: Sequence[Timed], rounds: int, requests: int, log: Log) -> None:
    """One untimed round, then ``rounds`` in rotating order, each after a full collection."""
    workers = list({id(case.worker): case.worker for case in cases if case.worker}.values())
    for case in cases:
        measure(case, max(requests // 10, 10))
    for number in range(rounds):
        log(f"round {number + 1}/{rounds}")
        for worker in workers:
            worker.ask("collect")
        for case in rotated(cases, number):
            case.samples.append(measure(case, requests))


def paired(case: Timed, other: Timed, combine: Callable[[float, float], float]) -> float:
    """The median over rounds of ``combine(case, other)`` for the same round."""
    return statistics.median(combine(a, b) for a, b in zip(case.samples, other.samples))


def ratio(case: Timed, other: Timed) -> float:
    return paired(case, other, lambda a, b: a / b)


def overhead(case: Timed, bare: Timed) -> float:
    return paired(case, bare, lambda a, b: a - b)


def spread(samples: Sequence[float]) -> str:
    """The interquartile range over rounds, as ± half of it, in microseconds."""
    if len(samples) < 4:
        return "n/a"
    low, _, high = statistics.quantiles(samples, n=4)
    return f"±{(high - low) / 2:.2f}"


def table(headings: Sequence[str], rows: Sequence[Sequence[str]], text: int = 1) -> str:
    """A Markdown table: the first ``text`` columns left-aligned, the others right-aligned."""
    lines = [headings, ["---"] * text + ["---:"] * (len(headings) - text), *rows]
    return "\n".join(f"| {' | '.join(line)} |" for line in lines)


class Targets(list[list[str]]):
    def add(self, target: str, measured: str, met: Optional[bool]) -> None:
        status = "skipped" if met is None else ("met" if met else "**not met**")
        self.append([target, measured, status])

    def measured(self, target: str, row: Row, *arguments: Any, missing: str = NOT_MEASURED) -> None:
        """The target's ``row(*arguments)``, or ``missing`` when a case it reads is missing."""
        try:
            found, met = row(*arguments)
        except KeyError:
            self.add(target, missing, None)
        else:
            self.add(target, found, met)

    def table(self) -> str:
        return table(["target", "measured", "status"], self, text=3)


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        found = re.search(r"^model name\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        model = found[1].strip() if found else model
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def setting() -> str:
    """The first line of a report: where and on what it ran."""
    return f"{machine()}; Python {platform.python_version()}, Flask {version('flask')}"


def generated(script: str, smoke: bool, seconds: float) -> str:
    """A written report's first line: which run made it, when, and how long it took."""
    when = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    name = f"benchmarks/{script}{' --smoke' if smoke else ''}"
    note = ": tiny counts, not numbers to quote." if smoke else "."
    return f"Generated by `{name}` on {when}, in {seconds:.0f} s{note}"


TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
TEMPLATES.filters["f"] = format  # {{ value|f(",.0f") }}: a format specification, as f-strings


def template(name: str, **values: object) -> str:
    """A report from its Jinja2 template: the shape is the template's, the numbers computed here."""
    import harness

    python = platform.python_version()
    found = {"machine": machine(), "setting": setting(), "python": python, "harness": harness}
    return TEMPLATES.get_template(name).render(found | values).rstrip()


def publish(text: str, path: Path, *, smoke: bool, log: Log) -> None:
    """Print a report; a full run also writes it to ``path`` (smoke numbers are noise)."""
    print(text)
    if not smoke:
        path.write_text(text + "\n", encoding="utf-8")
        log(f"written to {path.relative_to(path.parent.parent)}")


def interpreters(versions: dict[str, dict[str, Any]]) -> str:
    """One line naming each venv a run used, its Python and its packages' versions."""
    return "; ".join(
        f"{venv} ({'this driver' if venv == OURS_VENV else f'benchmarks/.venvs/{venv}'}): "
        f"Python {found['python']}, "
        + ", ".join(f"{name} {number}" for name, number in sorted(found["packages"].items()))
        for venv, found in versions.items()
    )


INSTALLS = {
    "limiter": [["flask-limiter>=4,<5", "redis", "gunicorn"]],
    "original": [["flask", "gunicorn"], ["--no-deps", "flask-gatekeeper==1.0.0"]],
    "hiredis": [
        [*(f"{name}=={version(name)}" for name in ("flask", "werkzeug", "redis")), "hiredis"]
    ],
}
"""Each venv's ``pip install`` argument lists, in order. 1.0.0 declares "Flask>=1.1.*", which
newer pips refuse, so Flask goes first; hiredis's has this interpreter's Flask and redis-py."""
Interpreter = tuple[list[str], dict[str, str]]


def built(venv: str) -> bool:
    root = HERE / ".venvs" / venv
    marker, wanted = root / ".bench-installed", json.dumps(INSTALLS[venv])
    return (root / "bin" / "python").exists() and marker.exists() and marker.read_text() == wanted


def interpreter(venv: str) -> Interpreter:
    """Python's command and environment in a venv (built when missing); the peers' run with
    ``-I`` and no ``PYTHONPATH``: nothing of this checkout may shadow flask-gatekeeper 1.0.0."""
    from support.servers import absolute_pythonpath

    paths = [absolute_pythonpath(os.environ), str(HERE.parent / "src") if venv == "hiredis" else ""]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in paths if path)}
    if venv == OURS_VENV:
        return [sys.executable], env
    root = HERE / ".venvs" / venv
    python = root / "bin" / "python"
    if not built(venv):
        logger("venvs")(f"setting up benchmarks/.venvs/{venv}")
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
        for arguments in INSTALLS[venv]:
            pip = ("-m", "pip", "install", "--quiet", "--disable-pip-version-check")
            subprocess.run([str(python), *pip, *arguments], check=True)
        (root / ".bench-installed").write_text(json.dumps(INSTALLS[venv]))
    if venv == "hiredis":
        return [str(python)], env
    env.pop("PYTHONPATH")
    return [str(python), "-I"], env


def worker_interpreters(install: bool) -> dict[str, Interpreter]:
    """Ours and every peer venv that is built (or, with ``install``, built now)."""
    venvs = [OURS_VENV, *(venv for venv in PEER_VENVS if install or built(venv))]
    for venv in set(PEER_VENVS) - set(venvs):
        logger("venvs")(f"skipping the {venv} peers: benchmarks/.venvs/{venv} is not built")
    return {venv: interpreter(venv) for venv in venvs}


def configuration(storage: str = "memory", **options: object) -> dict[str, object]:
    """A ``harness.Config``, as the workers take it."""
    return {"config": {"storage": storage, **options}}


class Worker:
    """``harness.py`` running as a worker in one venv, and the JSON-lines conversation."""

    def __init__(self, venv: str, python: Optional[Interpreter] = None) -> None:
        self.venv = venv
        command, env = python or interpreter(venv)
        pipe = subprocess.PIPE
        self.process = subprocess.Popen(
            [*command, str(HERE / "harness.py")], env=env, stdin=pipe, stdout=pipe, text=True
        )

    def ask(self, command: str, **fields: object) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps({"cmd": command, **fields}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline() or '{"error": "no reply: it died"}'
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise SystemExit(
                f"the {self.venv} worker failed {command!r} {fields}:\n{reply['error']}"
            )
        return reply

    def close(self) -> None:
        """Its loop ends with its input."""
        try:
            self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def once(venv: str, command: str, **fields: object) -> dict[str, Any]:
    """One command in a fresh worker (its RSS its own), closed after."""
    with contextlib.closing(Worker(venv)) as worker:
        return worker.ask(command, **fields)


def in_threads(tasks: Sequence[Callable[[], T]], threads: int = 2) -> list[T]:
    """The tasks' results, in order, run ``threads`` at a time (at most the cores)."""
    with ThreadPoolExecutor(max_workers=max(1, min(threads, os.cpu_count() or 1))) as pool:
        return [future.result() for future in [pool.submit(task) for task in tasks]]


@contextlib.contextmanager
def redis_server() -> Iterator[Optional[int]]:
    """The port of a throwaway redis-server (the tests' launcher), or None without one."""
    from support.redis_server import RedisServer, missing_binary

    if missing_binary("redis-server") is not None:
        yield None
        return
    with RedisServer() as server:
        yield server.port
