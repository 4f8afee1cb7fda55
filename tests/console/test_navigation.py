"""Navigation and sorting on the fixed fleet: 1-5 reach their list screens from a job opened
through Fleet -> Node -> Job, the breadcrumb names the path, the palette's "user X" opens the
Jobs list filtered to X, and tables sort by any column (Shift+letter, a header click),
remembered per screen."""

from __future__ import annotations

from textual.command import CommandPalette

from console.app import EngineLink
from console.screens.audit import AuditScreen
from console.screens.fleet import FleetScreen
from console.screens.job import JobScreen
from console.screens.jobs import JobsScreen
from console.screens.node import NodeScreen
from console.screens.policies import PoliciesScreen
from console.screens.reports import ReportsScreen
from console.widgets.keyed_table import KeyedTable, plain
from console.widgets.summary import SummaryBar
from tests.console.conftest import fixed_app, wait_for


async def test_number_keys_from_a_drilled_in_job(fixed_link: EngineLink) -> None:
    app = fixed_app(fixed_link)
    async with app.run_test(size=(140, 36)) as pilot:
        table = app.screen.query_one(KeyedTable)
        await wait_for(pilot, lambda: "gpu-a01" in table.shown_keys, what="the fleet")
        table.select_key("gpu-a01")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NodeScreen), what="the node")
        app.open_job(1)
        await wait_for(pilot, lambda: isinstance(app.screen, JobScreen)
                       and bool(app.screen.query(SummaryBar)), what="the job")
        bar = app.screen.query_one(SummaryBar)
        await wait_for(pilot, lambda: bar.where == "Fleet ▸ Node gpu-a01 ▸ Job 1",
                       what=lambda: f"the breadcrumb, got {bar.where!r}")

        for key, kind in (("2", JobsScreen), ("3", PoliciesScreen), ("4", ReportsScreen),
                          ("5", AuditScreen), ("1", FleetScreen)):
            await pilot.press(key)
            await wait_for(pilot, lambda kind=kind: type(app.screen) is kind,  # type: ignore[misc]
                           what=kind.__name__)
            assert len(app.screen_stack) == 1, f"{key} lands on the list, not a drilled screen"
        assert app.screen.query_one(SummaryBar).where == "Fleet"


async def test_palette_user_opens_jobs_filtered(fixed_link: EngineLink) -> None:
    app = fixed_app(fixed_link, "jobs")
    async with app.run_test(size=(140, 36)) as pilot:
        jobs = app.screen
        table = jobs.query_one(KeyedTable)
        await wait_for(pilot, lambda: table.row_count >= 7, what="the jobs")
        app.open_job(3)  # a job of bob's is open in the Jobs mode
        await wait_for(pilot, lambda: isinstance(app.screen, JobScreen), what="the job")
        await pilot.press("colon")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), what="palette")
        await pilot.press(*"user carol")
        await pilot.pause(0.5)
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: app.screen is jobs and table.filter_text == "user:carol",
                       what=lambda: f"Jobs filtered to carol, got {app.screen}")
        assert table.shown_keys == ["7"]
        users = {plain(table.row_cells(k)[2]) for k in table.shown_keys}  # type: ignore[index]
        assert users == {"carol"}


def column(table: KeyedTable, key: str) -> list[str]:
    at = [c.key for c in table.columns_spec].index(key)
    return [plain(table.row_cells(k)[at]) for k in table.shown_keys]  # type: ignore[index]


async def test_sort_fleet_by_gpu_util_and_jobs_by_runtime(fixed_link: EngineLink) -> None:
    app = fixed_app(fixed_link)
    async with app.run_test(size=(140, 36)) as pilot:
        fleet = app.screen
        assert isinstance(fleet, FleetScreen)
        table = fleet.query_one(KeyedTable)
        await wait_for(pilot, lambda: table.row_count >= 4, what="the fleet")
        await pilot.press("U")  # GPU util: G is GPUs', P Pool's, so U (underlined in the header)
        assert table.sort == ("util", True), "numbers sort largest first"
        means = [fleet.sort_number(k, "util") for k in table.shown_keys]
        assert means[-1] is None and table.shown_keys[-1] == "cpu-c01", "no GPUs: last"
        shown = [m for m in means if m is not None]
        assert shown == sorted(shown, reverse=True) and len(shown) >= 3

        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen), what="Jobs")
        jobs = app.screen.query_one(KeyedTable)
        await wait_for(pilot, lambda: jobs.row_count >= 7, what="the jobs")
        header_x = next(x for x in range(jobs.size.width) if jobs.column_at(x) == "runtime")
        await pilot.click(jobs, offset=(header_x + 1, 0))
        assert jobs.sort == ("runtime", True)
        assert column(jobs, "name")[:2] == ["train-resnet", "notebook-ann"]
        await pilot.press("R")  # again: shortest first
        assert jobs.sort == ("runtime", False)

        # remembered per screen: back on Fleet the util sort is still there
        await pilot.press("1")
        await wait_for(pilot, lambda: isinstance(app.screen, FleetScreen), what="Fleet")
        assert app.screen.query_one(KeyedTable).sort == ("util", True)


async def test_jobs_at_100_columns_show_the_full_reason(fixed_link: EngineLink) -> None:
    """At 100x30 big-pretrain's row shows its whole waiting reason: lower-priority columns
    give way to it, ID, Name, User and State stay."""
    app = fixed_app(fixed_link, "jobs")
    reason = "needs 4 x A100-80GB, largest free block is 1 on node gpu-a01"
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one(KeyedTable)
        await wait_for(pilot, lambda: table.row_count >= 7, what="the jobs")
        await pilot.pause()
        lines = [table.render_line(y).text for y in range(table.size.height)]
        assert any("big-pretrain" in line and reason in line for line in lines), lines
        assert table.shown_columns == ["id", "name", "user", "state", "reason"]
