"""Reports screen: `i` asks for a fleet change and shows the what-if replay beside today."""

from __future__ import annotations

from textual.widgets import DataTable, Label

from console.app import EngineLink
from console.screens.reports import ReportsScreen
from console.screens.whatif import WhatIfScreen
from tests.console.conftest import fixed_app, wait_for


async def test_what_if_from_the_reports_screen(fixed_link: EngineLink) -> None:
    app = fixed_app(fixed_link, "reports")
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ReportsScreen), what="Reports")
        reports = app.screen
        assert isinstance(reports, ReportsScreen)
        await wait_for(pilot, lambda: reports.loaded_key is not None, timeout=30,
                       what="the report preview")

        # a malformed change is refused inline, the dialog stays
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, WhatIfScreen), what="the prompt")
        await pilot.press(*"16 A100", "enter")
        await pilot.pause(0.2)
        assert isinstance(app.screen, WhatIfScreen)
        error = str(app.screen.query_one("#whatif-error", Label).render())
        assert 'changes like "+16 A100"' in error

        await pilot.press("ctrl+u", *"+16 A100", "enter")
        await wait_for(pilot, lambda: reports.loaded_key is not None
                       and reports.loaded_key[0] == "what-if", timeout=60, what="the what-if")
        table = reports.query_one("#report-table", DataTable)
        measures = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert measures[0] == "GPUs" and "burst cost" in measures
        gpus = table.get_row_at(0)  # measure, observed, current (replay), changed, change
        assert float(str(gpus[3])) == float(str(gpus[2])) + 16  # changed = current + 16
        waits = table.get_row_at(measures.index("mean queue wait (s)"))
        assert str(waits[1]) != "-", "what the window really had is shown beside the replay"
        await pilot.press("q")
