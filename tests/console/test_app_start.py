"""The console starts on an embedded engine with no fleet config, shows the header and the
local node, and quits with q, taking the engine's socket with it; only the screen on show
polls the engine."""

from __future__ import annotations

from pathlib import Path

from console.app import EngineLink, FleetdeckApp, open_link
from console.config import load
from console.screens.fleet import FleetScreen
from console.screens.job import JobScreen
from console.screens.jobs import JobsScreen
from console.widgets.keyed_table import KeyedTable
from console.widgets.summary import SummaryBar
from tests.console.conftest import fixed_app, wait_for
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


async def test_only_the_visible_screen_polls(fixed_link: EngineLink) -> None:
    app = fixed_app(fixed_link)
    async with app.run_test(size=(140, 36)) as pilot:
        fleet = app.screen
        assert isinstance(fleet, FleetScreen)
        await wait_for(pilot, lambda: fleet.polling, what="fleet polling")
        await pilot.press("2")
        jobs = app.screen
        assert isinstance(jobs, JobsScreen)
        await wait_for(pilot, lambda: jobs.polling, what="jobs polling")
        assert not fleet.polling
        table = jobs.query_one(KeyedTable)
        await wait_for(pilot, lambda: table.row_count == 7, what="jobs")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, JobScreen), what="a job")
        assert not jobs.polling
        await pilot.press("escape")
        await wait_for(pilot, lambda: jobs.polling, what="jobs polling again")
        await pilot.press("1")
        await wait_for(pilot, lambda: fleet.polling and not jobs.polling, what="fleet again")
