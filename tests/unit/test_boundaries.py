"""collectors, scheduler and reports never import textual or console."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

CORE = ("collectors", "scheduler", "reports")
FORBIDDEN = ("textual", "console")

BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {forbidden!r}:
            raise ImportError('forbidden import: ' + name)
        return None
sys.meta_path.insert(0, Block())
import pkgutil, importlib
for pkg in {core!r}:
    mod = importlib.import_module(pkg)
    for info in pkgutil.walk_packages(mod.__path__, pkg + '.'):
        importlib.import_module(info.name)
print('ok')
"""


def test_core_packages_import_without_textual_or_console() -> None:
    code = BLOCKER.format(forbidden=FORBIDDEN, core=CORE)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


@pytest.mark.parametrize("pkg", CORE)
def test_no_forbidden_import_statements(pkg: str) -> None:
    bad = []
    for path in sorted((REPO / pkg).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            bad += [f"{path.relative_to(REPO)}: {n}" for n in names
                    if n.split(".")[0] in FORBIDDEN]
    assert not bad


def test_core_is_on_disk() -> None:
    for pkg in CORE:
        assert (Path(REPO) / pkg / "__init__.py").exists()


ENGINE_FORBIDDEN = ("textual", "console.commands", "console.screens", "console.cli",
                    "console.app", "console.widgets")


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_engine_never_imports_the_cli_screens_or_textual() -> None:
    bad = [f"{path.relative_to(REPO)}: {n}"
           for path in sorted((REPO / "console" / "engine").rglob("*.py"))
           for n in _imports(path)
           if any(n == f or n.startswith(f + ".") for f in ENGINE_FORBIDDEN)]
    assert not bad


def test_screens_never_import_the_app() -> None:
    """Screens reach the app through console.screens.host.ConsoleHost."""
    bad = [f"{path.relative_to(REPO)}: {n}"
           for path in sorted((REPO / "console" / "screens").rglob("*.py"))
           for n in _imports(path) if n == "console.app"]
    assert not bad
