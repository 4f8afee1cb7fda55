"""The DuckDB store: schema, migrations, the single-writer lock and batched writes."""

from collectors.store.db import Store, StoreError, StoreLockedError
from collectors.store.schema import SCHEMA_VERSION, TABLES

__all__ = ["SCHEMA_VERSION", "TABLES", "Store", "StoreError", "StoreLockedError"]
