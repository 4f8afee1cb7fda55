"""The console starts on an embedded engine, shows its status and quits with q."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from console.app import FleetdeckApp, open_link
from console.config import load
from tests.helpers import write_config


async def test_console_starts_and_quits(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.toml", tmp_path / "store.duckdb")
    loaded = load(str(cfg))
    link = await open_link(loaded)
    assert link.embedded is not None
    try:
        app = FleetdeckApp(link)
        async with app.run_test() as pilot:
            for _ in range(50):
                await pilot.pause(0.1)
                text = str(app.query_one("#status", Static).render())
                if "engine" in text and "uptime_s" in text:
                    break
            assert str(tmp_path / "store.duckdb") in text
            await pilot.press("q")
        assert app.return_code in (0, None)
    finally:
        link.embedded.stop()
    assert not (tmp_path / "store.duckdb.sock").exists()
