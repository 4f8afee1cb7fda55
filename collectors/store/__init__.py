"""The DuckDB store: schema, migrations, the single-writer lock and batched writes.

`Store` and its errors load DuckDB and Arrow on first use (`collectors.lazy`): a module that
needs a light part of the package (`audit_kinds`) stays light."""

from __future__ import annotations

from typing import TYPE_CHECKING

from collectors import lazy

if TYPE_CHECKING:
    from collectors.store.db import Store, StoreError, StoreLockedError
    from collectors.store.schema import SCHEMA_VERSION, TABLES

__all__ = ["SCHEMA_VERSION", "TABLES", "Store", "StoreError", "StoreLockedError"]
if not TYPE_CHECKING:  # so mypy still checks every imported name
    __getattr__ = lazy.exports(__name__, {
        "Store": "db", "StoreError": "db", "StoreLockedError": "db",
        "SCHEMA_VERSION": "schema", "TABLES": "schema"})
