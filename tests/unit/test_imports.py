"""Import rules read from the source with `ast` (nothing is imported):

- no module imports a `_private` name (or a `_private` module) from another of the project's
  modules (the standard library's own, like `_thread`, are no project module's private parts);
- no import cycle among the modules of console/ and of scheduler/, counting imports inside
  functions (lazy imports), nor one through `if TYPE_CHECKING:` imports either (which never
  run, but tie the modules together all the same: name a `Protocol` instead, as the engine's
  services do with `console.engine.hosting.Host`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("collectors", "console", "scheduler", "reports")
CHECKED = (*PACKAGES, "tests", "benchmarks")
NO_CYCLES = ("console", "scheduler")
KNOWN_CYCLES: list[list[str]] = []


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources(roots: tuple[str, ...]) -> dict[str, Path]:
    return {module_name(p): p for root in roots for p in sorted((REPO / root).rglob("*.py"))}


MODULES = sources(PACKAGES)


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def run_time_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement at any depth, except those under `if TYPE_CHECKING:`."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        if isinstance(child, ast.If) and type_checking_only(child):
            for orelse in child.orelse:
                yield from run_time_imports(ast.Module(body=[orelse], type_ignores=[]))
            continue
        yield from run_time_imports(child)


def absolute(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    """The module `node` imports from, relative imports resolved against module `name`."""
    if not node.level:
        return node.module or ""
    parts = name.split(".") if is_package else name.split(".")[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, node.module] if node.module else parts)


def every_import(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement at any depth, `if TYPE_CHECKING:` ones included."""
    return (n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom))


def dependencies(name: str, path: Path, *, type_only: bool = False) -> set[str]:
    """Modules of the packages that `name` imports when it runs (lazily or not), and with
    `type_only` those it imports for type checking too."""
    out: set[str] = set()
    tree = ast.parse(path.read_text())
    for node in every_import(tree) if type_only else run_time_imports(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
            continue
        base = absolute(node, name, path.name == "__init__.py")
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            # `from pkg import mod` runs pkg/__init__.py too
            out.update((sub, base) if sub in MODULES else (base,))
    return {m for m in out if m in MODULES and m != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, edges = work[-1]
            w = next(edges, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_no_private_name_is_imported_from_another_module() -> None:
    bad = []
    for name, path in sources(CHECKED).items():
        for node in run_time_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = absolute(node, name, path.name == "__init__.py")
                names = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                names = [a.name for a in node.names]
            for full in names:
                if full.split(".")[0] not in CHECKED:
                    continue
                if any(private(part) for part in full.split(".")):
                    bad.append(f"{path.relative_to(REPO)}:{node.lineno}: {full}")
    assert bad == []


@pytest.mark.parametrize("type_only", [False, True], ids=["run-time", "with-type-only"])
@pytest.mark.parametrize("package", NO_CYCLES)
def test_no_import_cycle(package: str, type_only: bool) -> None:
    graph = {
        name: {m for m in dependencies(name, path, type_only=type_only)
               if m.split(".")[0] == package}
        for name, path in MODULES.items()
        if name.split(".")[0] == package
    }
    assert [c for c in cycles(graph) if c not in KNOWN_CYCLES] == []


def test_the_cycle_finder_finds_lazy_and_relative_cycles() -> None:
    # the checks above pass vacuously if the finder is blind: give it a known cycle
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from x import Hidden\n"
        "def f():\n    from .y import _z\n"
    )
    found = [absolute(n, "pkg.mod", False) for n in run_time_imports(tree)
             if isinstance(n, ast.ImportFrom)]
    assert found == ["typing", "pkg.y"]
    every = [absolute(n, "pkg.mod", False) for n in every_import(tree)
             if isinstance(n, ast.ImportFrom)]
    assert sorted(every) == ["pkg.y", "typing", "x"]
