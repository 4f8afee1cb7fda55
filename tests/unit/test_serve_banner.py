"""The line `fleetdeck serve` prints on start names the store, the socket and what is
collected."""

from __future__ import annotations

from pathlib import Path

from console.config import load
from console.engine.banner import start_line
from tests.helpers import write_config


def test_start_line_names_store_socket_and_collection(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    cfg = load(str(write_config(tmp_path / "c.toml", store,
                                "[collect]\ninterval_s = 3.0\n"))).config
    line = start_line(cfg)
    assert "\n" not in line
    assert line.startswith(f"fleetdeck engine: store {store} · socket {store}.sock · ")
    assert f"collecting {len(cfg.nodes)} node" in line and "every 3s" in line
    assert "scheduling on" in line


def test_start_line_when_not_collecting(tmp_path: Path) -> None:
    cfg = load(str(write_config(tmp_path / "c.toml", tmp_path / "s.duckdb",
                                "[engine]\ncollect = false\n"))).config
    assert "not collecting (serving stored data)" in start_line(cfg)
