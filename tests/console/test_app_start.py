"""The console starts on an embedded engine with no fleet config, shows the header and the
local node, and quits with q, taking the engine's socket with it."""

from __future__ import annotations

from pathlib import Path

from console.app import FleetdeckApp, open_link
from console.config import load
from console.widgets.keyed_table import KeyedTable
from console.widgets.summary import SummaryBar
from tests.console.conftest import wait_for
from tests.helpers import write_config


async def test_console_starts_and_quits(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.toml", tmp_path / "store.duckdb")
    loaded = load(str(cfg))
    link = await open_link(loaded)
    assert link.embedded is not None
    try:
        app = FleetdeckApp(link)
        async with app.run_test(size=(140, 36)) as pilot:
            bar = app.screen.query_one(SummaryBar)
            await wait_for(pilot, lambda: bar.summary is not None, what="the first summary")
            assert bar.where == "Fleet"
            assert "embedded engine" in bar.mode
            table = app.screen.query_one(KeyedTable)
            await wait_for(pilot, lambda: table.row_count == 1, what="the local node")
            await pilot.press("q")
        assert app.return_code in (0, None)
    finally:
        link.embedded.stop()
    assert not (tmp_path / "store.duckdb.sock").exists()
