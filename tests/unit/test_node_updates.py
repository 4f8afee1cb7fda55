"""The flush's node updates are one statement for every node (`svc_telemetry.update_nodes`):
each node gets exactly what the flush says of it (state, facts, last seen) and keeps every
other column; a state change worth telling is an outbox event; an unknown name changes
nothing."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from collectors.store import Store
from console.engine.svc_telemetry import update_nodes

COLS = ("name, state, state_reason, hostname, kernel, cpu_model, cpu_count, mem_total_bytes, "
        "gpu_count, gpu_model, last_seen, cordoned, pool")


def rows(store: Store) -> dict[str, tuple[object, ...]]:
    return {r[0]: r[1:] for r in store.con.execute(
        f"SELECT {COLS} FROM nodes ORDER BY name").fetchall()}


def test_each_node_gets_what_the_flush_says_of_it(tmp_path: Path) -> None:
    t0 = datetime(2026, 1, 1)
    with Store.open(tmp_path / "s.duckdb") as store:
        for name in ("a", "b", "c", "d"):
            store.con.execute(
                "INSERT INTO nodes (name, pool, state, state_reason, hostname, cpu_count, "
                "last_seen, cordoned) VALUES (?, 'p', 'up', '', 'old', 4, ?, ?)",
                [name, t0, name == "d"])
        inv = {"hostname": "h-b", "kernel": "6.1", "cpu_model": "EPYC", "cpu_count": 64,
               "mem_total_bytes": 2**40, "gpu_count": 8, "gpu_model": None,
               "name": "b", "last_seen": t0}  # not facts: left to `seen`
        update_nodes(store, {"a": ("unreachable", "connection refused")},
                      {"b": inv, "c": {"cpu_count": 16}},
                      {"b": 1_767_225_600.0, "zz": 1_767_225_600.0}, now=1_767_225_600.0)
        got = rows(store)
        seen = datetime(2026, 1, 1)
        assert got["a"] == ("unreachable", "connection refused", "old", None, None, 4, None,
                            None, None, t0, False, "p")
        assert got["b"] == ("up", "", "h-b", "6.1", "EPYC", 64, 2**40, 8, None, seen, False,
                            "p")
        assert got["c"] == ("up", "", "old", None, None, 16, None, None, None, t0, False, "p")
        assert got["d"] == ("up", "", "old", None, None, 4, None, None, None, t0, True, "p")
        assert "zz" not in got
        events = store.con.execute("SELECT name, node FROM events ORDER BY id").fetchall()
        assert len(events) == 1 and events[0][1] == "a" and "unreachable" in events[0][0]
