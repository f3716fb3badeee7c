"""Every Python code block of README.md and docs/*.md runs (docs/testing.md has the rules).

A block runs on its own, in a fresh namespace, as if pasted into an empty file, and then
every function in it whose name starts with ``test_`` is called. A first-line comment
changes that:

- ``# fragment: <why>``: a piece of an app; it is compiled, not run.
- ``# continues the block above``: runs in the namespace that the block above left.
- ``# needs: redis``: runs against this suite's redis-server (marked ``redis``); every
  ``redis://host:port`` in it is pointed at that server, whose data is emptied first.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FRAGMENT = "# fragment:"
CONTINUES = "# continues the block above"
NEEDS_REDIS = "# needs: redis"
REDIS_URL = re.compile(r"redis://[A-Za-z0-9.\-]+:\d+")

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^`\s]*)[^`]*$")


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    """The line of the opening fence, counted from 1."""
    info: str
    code: str

    @property
    def first_line(self) -> str:
        return self.code.lstrip("\n").split("\n", 1)[0].strip()

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def code_blocks(path: Path) -> Iterator[Block]:
    """Every fenced code block of a Markdown page, dedented by its fence's indent."""
    lines = path.read_text(encoding="utf-8").split("\n")
    page = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    number = 0
    while number < len(lines):
        opening = _FENCE.match(lines[number])
        number += 1
        if opening is None:
            continue
        indent, start = opening["indent"], number
        while number < len(lines) and lines[number].strip() != "```":
            number += 1
        if number == len(lines):
            raise AssertionError(f"{page}:{start}: a code block is never closed")
        body = [
            line[len(indent) :] if line.startswith(indent) else line for line in lines[start:number]
        ]
        number += 1
        yield Block(page, start, opening["info"], textwrap.dedent("\n".join(body)) + "\n")


def python_blocks() -> list[Block]:
    return [block for page in PAGES for block in code_blocks(page) if block.info == "python"]


BLOCKS = python_blocks()


def as_param(block: Block) -> Any:
    marks = [pytest.mark.redis] if block.first_line == NEEDS_REDIS else []
    return pytest.param(block, id=block.id, marks=marks)


def previous_block(block: Block) -> Optional[Block]:
    on_page = [other for other in BLOCKS if other.page == block.page]
    index = on_page.index(block)
    return on_page[index - 1] if index else None


def run(block: Block, redis_url: Optional[str]) -> dict[str, Any]:
    """The namespace that running ``block`` (and the blocks it continues) leaves."""
    if block.first_line == CONTINUES:
        above = previous_block(block)
        assert above is not None, f"{block.id} continues a block, but it is the page's first"
        assert not above.first_line.startswith(FRAGMENT), f"{block.id} continues a fragment"
        namespace = run(above, redis_url)
    else:
        namespace = {"__name__": "docs_snippet"}
    code = block.code
    if redis_url is not None:
        code = REDIS_URL.sub(redis_url.rsplit("/", 1)[0], code)
    exec(compile(code, block.id, "exec"), namespace)
    for name, value in list(namespace.items()):
        if name.startswith("test_") and callable(value):
            value()
    return namespace


def test_the_pages_have_python_blocks() -> None:
    assert {block.page for block in BLOCKS} >= {"README.md", "docs/rules.md"}


@pytest.mark.parametrize("block", [as_param(block) for block in BLOCKS])
def test_block(block: Block, request: pytest.FixtureRequest) -> None:
    if block.first_line.startswith(FRAGMENT):
        reason = block.first_line[len(FRAGMENT) :].strip()
        assert reason, f"{block.id}: say what the fragment needs, after '# fragment:'"
        compile(block.code, block.id, "exec")
        return
    needs_redis = any(candidate.first_line == NEEDS_REDIS for candidate in chain_of(block))
    redis_url: Optional[str] = None
    if needs_redis:
        import redis

        redis_url = request.getfixturevalue("redis_url")
        with redis.Redis.from_url(redis_url) as server:
            server.flushdb()
    run(block, redis_url)


def chain_of(block: Block) -> list[Block]:
    """``block`` and the blocks it continues."""
    chain = [block]
    while chain[-1].first_line == CONTINUES:
        above = previous_block(chain[-1])
        if above is None:
            break
        chain.append(above)
    return chain


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        pytest.param("```python\nx = 1\n```\n", ["x = 1\n"], id="plain"),
        pytest.param(
            "- item\n\n  ```python\n  x = 1\n    y\n  ```\n", ["x = 1\n  y\n"], id="indented"
        ),
        pytest.param("```sh\nls\n```\n```python\nx = 1\n```\n", ["x = 1\n"], id="other languages"),
    ],
)
def test_code_blocks_are_found(tmp_path: Path, markdown: str, expected: list[str]) -> None:
    page = tmp_path / "page.md"
    page.write_text(markdown, encoding="utf-8")
    assert [block.code for block in code_blocks(page) if block.info == "python"] == expected


_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def slug(heading: str) -> str:
    """The anchor that GitHub gives a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    outside_code, found = True, set()
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.lstrip().startswith("```"):
            outside_code = not outside_code
        elif outside_code and line.startswith("#"):
            found.add(slug(line.lstrip("#")))
    return found


@pytest.mark.parametrize("page", PAGES, ids=[page.relative_to(ROOT).as_posix() for page in PAGES])
def test_relative_links_lead_somewhere(page: Path) -> None:
    broken = []
    for match in _LINK.finditer(page.read_text(encoding="utf-8")):
        target = match["target"]
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists() or (
            anchor and linked.suffix == ".md" and anchor not in anchors(linked)
        ):
            broken.append(target)
    assert broken == []


def test_every_docs_page_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    pages = {page.name for page in (ROOT / "docs").glob("*.md")}
    assert {page for page in pages if f"(docs/{page}" not in readme} == set()


def test_the_sdist_ships_the_docs() -> None:
    tomllib = pytest.importorskip("tomllib")
    with (ROOT / "pyproject.toml").open("rb") as file:
        include = tomllib.load(file)["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]
    assert "docs" in include


_SECONDS = re.compile(r"\b(\d+)s\b")


def console_transcript(page: Path, prompt: str) -> list[tuple[list[str], list[str]]]:
    """The commands after ``prompt`` in a page's console block, each with its output."""
    block = next(block for block in code_blocks(page) if block.info == "console")
    steps: list[tuple[list[str], list[str]]] = []
    for line in block.code.rstrip("\n").split("\n"):
        if line.startswith("$ "):
            assert line.startswith(f"$ {prompt} "), line
            steps.append((line[len(prompt) + 3 :].split(), []))
        else:
            steps[-1][1].append(line)
    return steps


def same_but_seconds(printed: str, documented: str) -> bool:
    """Equal, except that each "<n>s" may be up to 5 s apart (time passes as it runs)."""
    if _SECONDS.sub("Ns", printed) != _SECONDS.sub("Ns", documented):
        return False
    pairs = zip(_SECONDS.findall(printed), _SECONDS.findall(documented))
    return all(abs(int(a) - int(b)) <= 5 for a, b in pairs)


@pytest.mark.redis
def test_the_command_line_transcript_is_what_the_commands_print(
    request: pytest.FixtureRequest,
) -> None:
    """docs/operating-bans.md: the ``flask gatekeeper`` session, run against its myapp.py."""
    import redis

    from flask_gatekeeper.cli import gatekeeper

    page = ROOT / "docs" / "operating-bans.md"
    myapp = next(
        block
        for block in BLOCKS
        if block.page == "docs/operating-bans.md" and block.first_line == NEEDS_REDIS
    )
    redis_url = request.getfixturevalue("redis_url")
    with redis.Redis.from_url(redis_url) as server:
        server.flushdb()
    app = run(myapp, redis_url)["app"]
    documented_url = REDIS_URL.search(myapp.code)
    assert documented_url is not None
    for args, documented in console_transcript(page, "flask --app myapp gatekeeper"):
        result = app.test_cli_runner().invoke(gatekeeper, args)
        assert result.exit_code == 0, result.output
        printed = result.output.replace(redis_url.rsplit("/", 1)[0], documented_url[0])
        lines = printed.rstrip("\n").split("\n")
        if documented[-1] == "...":
            documented, lines = documented[:-1], lines[: len(documented) - 1]
        assert len(lines) == len(documented), (args, printed)
        for line, expected in zip(lines, documented):
            assert same_but_seconds(line, expected), (args, line, expected)
