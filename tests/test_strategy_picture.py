"""``docs/make_strategy_picture.py``: a command with ``--help``, and the picture is current."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from support import load_script

SCRIPT = Path(__file__).resolve().parent.parent / "docs" / "make_strategy_picture.py"


def load() -> ModuleType:
    return load_script(SCRIPT, "make_strategy_picture")


def test_help_prints_usage_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        load().main(["--help"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.startswith("usage: ")
    assert list(tmp_path.iterdir()) == []


def test_writes_the_picture_that_the_docs_show(tmp_path: Path) -> None:
    target = tmp_path / "picture.svg"
    load().main([str(target)])
    assert target.read_text(encoding="utf-8") == SCRIPT.with_name("strategies.svg").read_text(
        encoding="utf-8"
    )
