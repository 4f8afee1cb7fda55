"""The store: forward migrations, refusal of newer stores, the single-writer lock."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from collectors.store import SCHEMA_VERSION, Store, StoreError, StoreLockedError
from collectors.store.schema import MIGRATIONS


def make_v1_store(path: Path) -> None:
    """What an older fleetdeck (schema version 1) left behind, with a row in it."""
    con = duckdb.connect(str(path))
    con.execute(MIGRATIONS[0])
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.execute("INSERT INTO actions (ts, actor, action, target_kind, target, reason) "
                "VALUES (TIMESTAMP '2026-01-01 00:00:00', 'alice', 'submit', 'job', '1', 'x')")
    con.close()


def test_old_store_opens_and_upgrades(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    make_v1_store(path)
    with Store.open(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        counts = store.row_counts()
        assert counts["actions"] == 1  # nothing stored is lost
        assert counts["gpu_samples_1h"] == 0  # v2 tables exist


def test_read_only_refuses_to_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    make_v1_store(path)
    with pytest.raises(StoreError, match="older than"):
        Store.open(path, read_only=True)


def test_newer_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.duckdb"
    with Store.open(path) as store:
        store.con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                          [str(SCHEMA_VERSION + 1)])
    with pytest.raises(StoreError, match="newer than this fleetdeck supports"):
        Store.open(path)


def test_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store.open(path), pytest.raises(StoreLockedError, match="in use by another"):
        Store.open(path)
    Store.open(path).close()  # free again once the first closed


def test_append_frames_by_column_name(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        ts = datetime(2026, 1, 1)
        n = store.append("gpu_samples", pl.DataFrame({
            "node": ["a", "a"], "ts": [ts, ts], "gpu_index": [0, 1],
            "util_pct": [10.0, 90.0], "mem_used_bytes": [1 << 30, 2 << 30]}))
        assert n == 2
        rows = store.con.execute(
            "SELECT gpu_index, util_pct, mem_used_bytes, power_w FROM gpu_samples "
            "ORDER BY gpu_index").fetchall()
        assert rows == [(0, 10.0, 1 << 30, None), (1, 90.0, 2 << 30, None)]
        assert store.append_rows("job_events", []) == 0
        with pytest.raises(StoreError, match="unknown table"):
            store.append("nope", pl.DataFrame({"a": [1]}))


def test_fleet_id_is_stable_and_per_store(tmp_path: Path) -> None:
    with Store.open(tmp_path / "a.duckdb") as a:
        first = a.fleet_id()
    with Store.open(tmp_path / "a.duckdb") as a, Store.open(tmp_path / "b.duckdb") as b:
        assert a.fleet_id() == first and len(first) == 10
        assert b.fleet_id() != first
