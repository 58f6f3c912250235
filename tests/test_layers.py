"""The package's layers: each module imports only from its own layer or those below, no module
imports itself back through others, and only capture and catalogue (and the glue, lazily) touch
torch or tensorflow.

Read from the source with ``ast``, so every import counts: at module level, inside functions
(the lazy ones) and under ``if TYPE_CHECKING:``. A type-only import still ties the layers
together for anyone reading the code, and the next refactor turns it into a real one.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest_losstrend

PACKAGE = "pytest_losstrend"
ROOT = Path(pytest_losstrend.__file__).parent

#: Subpackage -> layer rank; a module may import from ranks <= its own. Top-level modules
#: (plugin, fixture, runner, hookspecs, options, session, the package itself) are the pytest
#: glue, the top layer, except ``_version``, a leaf below everything. capture and reports
#: share a rank but may not import each other.
LAYERS = {
    "_version": -1,
    "verdict": 0,
    "diagnosis": 1,
    "capture": 2,
    "reports": 2,
    "catalogue": 3,
}
GLUE = 4

#: Deep-learning frameworks, imported only by these subpackages (and by the glue, lazily:
#: tests/test_import_cost.py checks that loading the plugin imports none). verdict, diagnosis
#: and reports stay plain data and numpy.
FRAMEWORKS = {"torch", "tensorflow", "keras"}
MAY_IMPORT_FRAMEWORKS = {"capture", "catalogue"}


@dataclass(frozen=True)
class Import:
    """One import statement's target, where it is written."""

    source: str  # importing module, e.g. "pytest_losstrend.reports.html"
    target: str  # imported module, e.g. "pytest_losstrend.reports.report"
    path: Path
    line: int

    def __str__(self) -> str:
        where = self.path.relative_to(ROOT.parent)
        return f"{where}:{self.line}: {self.source} imports {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> Iterator[Import]:
    """Every import in the file, anywhere in it; ``from package import module`` resolves to the
    module when it is one."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, path, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import (use absolute ones)"
            base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield Import(name, sub if sub in known else base, path, node.lineno)


def all_imports() -> list[Import]:
    mods = modules()
    found = (imp for name, path in mods.items() for imp in imports_of(name, path, set(mods)))
    return list(dict.fromkeys(found))  # ``from m import a, b`` is one import of m


def subpackage(module: str) -> str | None:
    """``"reports"`` for ``pytest_losstrend.reports.html``; None for the glue."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else None


def rank(module: str) -> int:
    sub = subpackage(module)
    return GLUE if sub is None else LAYERS[sub]


def internal(imports: list[Import]) -> list[Import]:
    return [i for i in imports if i.target.split(".")[0] == PACKAGE and i.source != i.target]


def test_every_subpackage_has_a_layer() -> None:
    subs = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert subs == set(LAYERS) - {"_version"}


def test_imports_go_down_the_layers() -> None:
    bad = []
    for imp in internal(all_imports()):
        src, dst = subpackage(imp.source), subpackage(imp.target)
        if rank(imp.target) > rank(imp.source):
            bad.append(f"{imp}  (upward: {src or 'glue'} -> {dst or 'glue'})")
        elif src != dst and rank(imp.target) == rank(imp.source):
            bad.append(f"{imp}  (siblings: {src} and {dst} do not import each other)")
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_no_import_circles() -> None:
    graph: dict[str, dict[str, Import]] = {}
    for imp in internal(all_imports()):
        graph.setdefault(imp.source, {}).setdefault(imp.target, imp)
    cycles: list[str] = []
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            loop = [*path[path.index(node):], node]
            cycles.append("\n  ".join(str(graph[a][b]) for a, b in itertools.pairwise(loop)))
            return
        if node in done:
            return
        for nxt in graph.get(node, {}):
            visit(nxt, [*path, node])
        done.add(node)

    for start in sorted(graph):
        visit(start, [])
    assert not cycles, "import circles:\n" + "\n".join(f"- {c}" for c in cycles)


def test_frameworks_only_where_they_belong() -> None:
    bad = []
    for imp in all_imports():
        sub = subpackage(imp.source)
        framework = imp.target.split(".")[0] in FRAMEWORKS
        if framework and sub is not None and sub not in MAY_IMPORT_FRAMEWORKS:
            bad.append(str(imp))
    assert not bad, "framework imports outside capture and catalogue:\n" + "\n".join(bad)
