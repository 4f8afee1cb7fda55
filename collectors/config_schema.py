"""Metadata of typed config dataclasses: what `console.typed` reads to build them from TOML.

Every config dataclass, in any package, describes its fields with `doc`:

    interval_s: float = field(default=5.0, metadata=doc("seconds between polls", min=0.1))

The keys it may carry are the ones `console.typed` checks (see its docstring).
"""

from __future__ import annotations

from typing import Any


def doc(text: str, **meta: Any) -> dict[str, Any]:
    """Field metadata: the doc line plus checks (`min`, `max`, `nonempty`, ...)."""
    return {"doc": text, **meta}
