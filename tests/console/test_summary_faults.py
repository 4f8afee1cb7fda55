"""The console header says a failing store first (#17): "store: writes failing since T"."""

from __future__ import annotations

import msgspec
from textual.app import App, ComposeResult

from console.engine.api.replies import Summary
from console.widgets.summary import SummaryBar

FAULT = "store: writes failing since 06:10:03 UTC"


class BarApp(App[None]):
    def compose(self) -> ComposeResult:
        yield SummaryBar()


async def test_header_shows_a_failing_store() -> None:
    app = BarApp()
    async with app.run_test(size=(160, 4)) as pilot:
        bar = app.query_one(SummaryBar)
        summary = Summary(gpus_total=8, gpus_allocated=2, cpus_total=64, cpus_allocated=8,
                          nodes_up=2, queue_len=0, running_jobs=1, idle_warnings=0,
                          burst_spend_today=0.0)
        bar.summary = msgspec.structs.replace(summary, faults=[])
        await pilot.pause()
        assert "writes failing" not in str(bar.render())
        bar.summary = msgspec.structs.replace(summary, faults=[FAULT])
        await pilot.pause()
        status_line = str(bar.render()).splitlines()[1]
        assert status_line.startswith(FAULT), status_line
