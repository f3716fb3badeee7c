"""The storage layer stands alone: ``storage/`` reads nothing of Flask, werkzeug or the
layers above it (policy, routes, gate, extension, options), directly or through the
modules it does import. Read from the source's import statements (``ast``), so that a
forbidden import fails here even where nothing runs it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "flask_gatekeeper"

LOWER_LAYERS = {"identity.addresses", "decision", "errors", "rules", "strategies", "units"}
"""The package's modules that ``storage/`` may import, besides its own."""

FORBIDDEN = ("flask", "werkzeug")
FORBIDDEN_OWN = {"policy", "gate", "extension", "config", "options", "routes", "request"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module that ``source`` (the package's ``module``) imports, absolute: the
    package's named without its own name (``storage.plan``, ``rules``), others as
    written (``flask``, ``redis.retry``)."""
    tree = ast.parse(source)
    here = module.split(".") if module else []
    package = here if is_package else here[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
                base = "flask_gatekeeper." + base if base else "flask_gatekeeper"
            found.add(base)
            # ``from . import x`` and ``from .storage import plan`` may name modules
            found.update(f"{base}.{alias.name}" for alias in node.names)
    own = "flask_gatekeeper."
    return {name[len(own) :] if name.startswith(own) else name for name in found}


def _source(module: str) -> Path | None:
    """The file of one of the package's modules (None: not a module of the package)."""
    base = PACKAGE.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _reached_from_storage() -> dict[str, set[str]]:
    """Every package module that ``storage/`` reaches through imports, with its imports."""
    todo = [_module_name(path) for path in sorted((PACKAGE / "storage").rglob("*.py"))]
    graph: dict[str, set[str]] = {}
    while todo:
        module = todo.pop()
        path = _source(module)
        if module in graph or path is None:
            continue
        graph[module] = _imports(path.read_text("utf-8"), module, path.name == "__init__.py")
        todo.extend(name for name in graph[module] if _source(name) is not None)
    graph.pop("", None)  # the package's __init__ (reached by ``from .. import x``)
    return graph


def test_storage_imports_only_itself_and_the_lower_layers() -> None:
    reached = set(_reached_from_storage())
    outside = {name for name in reached if not name.startswith("storage")} - LOWER_LAYERS
    assert not outside, f"storage/ reaches {sorted(outside)}"


@pytest.mark.parametrize("module", sorted(_reached_from_storage()))
def test_nothing_storage_reaches_imports_flask_or_the_layers_above(module: str) -> None:
    imports = _reached_from_storage()[module]
    for name in imports:
        top = name.split(".")[0]
        assert top not in FORBIDDEN, f"{module} imports {name}"
        assert top not in FORBIDDEN_OWN, f"{module} imports flask_gatekeeper.{name}"


def test_the_reader_resolves_every_form_of_import() -> None:
    source = (
        "from flask import g\nimport werkzeug.exceptions\nfrom ..policy import Scope\n"
        "from .plan import Scope\nfrom .. import gate\nimport flask_gatekeeper.config\n"
    )
    imports = _imports(source, "storage.memory")
    assert {"flask", "werkzeug.exceptions", "policy", "storage.plan", "gate", "config"} <= imports
    assert "storage.lua" in _imports("from . import lua\n", "storage", is_package=True)
