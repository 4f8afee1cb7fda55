"""Names a package exports from its heavy modules, loaded on first use (PEP 562 `__getattr__`),
so that importing a light part of the package (a config schema, an enum) does not load
numpy, DuckDB or Arrow. In the package, the names imported under `if TYPE_CHECKING:` for type
checkers, and under `if not TYPE_CHECKING:` (so mypy still checks every imported name)
`__getattr__ = lazy.exports(__name__, {"Name": "module"})`."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: `where` maps an exported name to the submodule
    that defines it; the value is kept in the package once loaded."""

    def getattr_(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return getattr_
