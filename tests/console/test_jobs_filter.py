"""The Jobs filter asks the engine: with more jobs than one page (2,000), a filter finds a job
older than the newest page, and a filter word matches any shown field of every job."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from collectors.store import Store
from console.app import EngineLink
from console.screens.jobs import JOBS_PAGE
from console.widgets.keyed_table import KeyedTable
from scheduler import journal
from scheduler.jobspec import JobSpec
from tests.console import fixed_fleet
from tests.console.conftest import fixed_app, fixed_engine, wait_for

FILLERS = JOBS_PAGE + 100


@pytest.fixture(scope="module")
def many_link(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineLink]:
    """The fixed fleet, then an old job `needle-old` of dave's, then FILLERS newer jobs."""
    root = tmp_path_factory.mktemp("many")
    path = fixed_fleet.build(root / "store.duckdb")
    store = Store.open(path)
    try:
        now = fixed_fleet.FIXED_NOW - 3600
        spec = {"user": "dave", "project": "search", "executor": "process", "gpus": 1}
        journal.submit(store, JobSpec.from_mapping(
            {**spec, "name": "needle-old", "command": "python find.py"}, "test"),
            actor="dave", now=now)
        journal.submit(store, JobSpec.from_mapping(
            {**spec, "user": "erin", "name": "filler", "command": "sleep 1",
             "array": FILLERS}, "test"), actor="erin", now=now + 60)
    finally:
        store.close()
    with fixed_engine(path) as link:
        yield link


async def test_filter_finds_a_job_beyond_the_first_page(many_link: EngineLink) -> None:
    app = fixed_app(many_link, "jobs")
    async with app.run_test(size=(140, 36)) as pilot:
        table = app.screen.query_one(KeyedTable)
        await wait_for(pilot, lambda: table.row_count == JOBS_PAGE, what="the newest page")
        assert not any(table.data_of(k)["name"] == "needle-old" for k in table.shown_keys)

        await pilot.press("slash", *"needle")
        await wait_for(pilot, lambda: table.row_count == 1, timeout=30,
                       what=lambda: f"needle-old alone, got {table.row_count} rows")
        (key,) = table.shown_keys
        assert table.data_of(key)["name"] == "needle-old"

        await pilot.press("escape")  # the filter cleared: the newest page again
        await pilot.press("slash", *"user:dave project:sea")
        await wait_for(pilot, lambda: table.shown_keys == [key], timeout=30,
                       what=lambda: f"dave's job by field terms, got {table.shown_keys[:5]}")
