"""Draw how each strategy admits the same traffic: ``docs/strategies.svg``.

Run ``python docs/make_strategy_picture.py [OUTPUT]`` (no dependency beyond
flask-gatekeeper; ``--help`` for usage): it replays one request pattern through the
memory storage with a fake clock, once per strategy, and draws admitted requests as
filled dots and refused ones as rings.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from flask_gatekeeper import MemoryStorage, Rule
from flask_gatekeeper.storage.plan import GLOBAL_SCOPE, Scope
from flask_gatekeeper.strategies import STRATEGIES
from flask_gatekeeper.testing import FakeClock

COUNT, WINDOW = 5, 10.0
"""The rule drawn: 5 requests per 10 seconds."""
DURATION = 25.0
ROW, LEFT, SCALE, TOP = 60, 130, 26, 50


def traffic() -> list[float]:
    """A burst of 8 at t=1, one request every 1.5 s from t=5, then a burst of 6 at t=22."""
    times = [1.0 + 0.35 * n for n in range(8)]
    times += [5.0 + 1.5 * n for n in range(10)]
    times += [22.0 + 0.35 * n for n in range(6)]
    return sorted(times)


def replay(strategy: str) -> list[tuple[float, bool]]:
    clock = FakeClock(0.0)
    storage = MemoryStorage(clock=clock)
    scopes = [Scope.of(GLOBAL_SCOPE, (Rule(COUNT, WINDOW, strategy),))]
    outcome = []
    for moment in traffic():
        clock.set(moment)
        outcome.append((moment, storage.hit("client", scopes).admitted))
    return outcome


def svg() -> str:
    width = LEFT + int(DURATION * SCALE) + 40
    height = TOP + ROW * len(STRATEGIES) + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="13">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="15">The same requests against "{COUNT} per '
        f'{WINDOW:g} seconds": filled = admitted, ring = refused</text>',
    ]
    for row, strategy in enumerate(STRATEGIES):
        y = TOP + row * ROW + ROW // 2
        outcome = replay(strategy)
        admitted = sum(ok for _, ok in outcome)
        parts.append(f'<text x="10" y="{y + 4}">{strategy}</text>')
        parts.append(f'<text x="10" y="{y + 20}" fill="#666">{admitted} admitted</text>')
        parts.append(
            f'<line x1="{LEFT}" y1="{y}" x2="{LEFT + DURATION * SCALE}" y2="{y}" stroke="#ccc"/>'
        )
        for moment, ok in outcome:
            x = LEFT + moment * SCALE
            fill = "#2a6" if ok else "white"
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y}" r="5" fill="{fill}" stroke="#2a6" '
                'stroke-width="1.5"/>'
            )
    axis = TOP + ROW * len(STRATEGIES) + 5
    for second in range(0, int(DURATION) + 1, 5):
        x = LEFT + second * SCALE
        parts.append(f'<line x1="{x}" y1="{TOP}" x2="{x}" y2="{axis}" stroke="#eee"/>')
        parts.append(f'<text x="{x - 6}" y="{axis + 18}" fill="#666">{second}s</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description="Draw how each rate-limit strategy admits the same requests, as SVG.",
    )
    parser.add_argument(
        "output",
        nargs="?",
        type=Path,
        default=Path(__file__).with_name("strategies.svg"),
        help="the SVG file to write (default: strategies.svg next to this script)",
    )
    target: Path = parser.parse_args(argv).output
    target.write_text(svg(), encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
