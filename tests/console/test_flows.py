"""Pilot drives the console by keyboard against a real engine on this machine (local node,
process executor): submit through the form, watch the job run, read its logs, stop it, filter,
jump with the palette, export a report; and a read-only console refuses every change."""

from __future__ import annotations

from pathlib import Path

from textual.command import CommandPalette
from textual.widgets import Input, Label

from console.app import EngineLink, FleetdeckApp
from console.screens.audit import AuditScreen
from console.screens.confirm import ConfirmScreen
from console.screens.export import ExportScreen
from console.screens.job import JobScreen
from console.screens.jobs import JobsScreen
from console.screens.node import NodeScreen
from console.screens.policies import PoliciesScreen
from console.screens.reports import ReportsScreen
from console.screens.submit import SubmitScreen
from console.widgets.heatmap import GpuHeatmap
from console.widgets.keyed_table import KeyedTable, plain
from console.widgets.log_view import LogView
from tests.console.conftest import fixed_app, wait_for

MARK = "hello-from-fleetdeck"


def job_state(app: FleetdeckApp, job_id: str) -> str:
    table = app.screen.query_one(KeyedTable)
    row = table.row_cells(job_id)
    return plain(row[4]) if row else ""


async def test_submit_logs_stop_filter_jump_export(live_link: EngineLink, tmp_path: Path,
                                                    ) -> None:
    app = FleetdeckApp(live_link)
    async with app.run_test(size=(140, 40)) as pilot:
        # the form: a bad GPU amount is flagged under its field and blocks submitting
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, SubmitScreen), what="the form")
        form = app.screen
        await pilot.press("tab", "tab", "tab", *"1.5")
        assert form.focused is form.query_one("#f-gpus", Input)
        error = form.query_one("#e-gpus", Label)
        await wait_for(pilot, lambda: error.display, what="the GPUs error")
        assert "expected" in str(error.render())
        await pilot.press("backspace", "backspace", "backspace", "shift+tab", "shift+tab",
                          "shift+tab")
        assert not error.display
        await pilot.press(*f'sh -c "echo {MARK}; sleep 60"')
        preview = form.query_one("#preview")
        await wait_for(pilot, lambda: "would start now" in str(preview.render()),
                       what="the placement preview")
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, SubmitScreen),
                       what="the form to close")

        # Jobs: it is placed and running
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen), what="Jobs")
        table = app.screen.query_one(KeyedTable)
        await wait_for(pilot, lambda: job_state(app, "1") == "running", timeout=30,
                       what=lambda: f"job 1 running, got {app.last_jobs}")
        assert table.current_key == "1"

        # its logs, searched
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, JobScreen), what="the job")
        log = app.screen.query_one(LogView)
        await wait_for(pilot, lambda: any(MARK in line for line in log.lines_seen),
                       timeout=30, what=lambda: f"the job's output, got {log.lines_seen}")
        await pilot.press("slash", *"from-fleet", "enter")
        assert log.search == "from-fleet" and log.match_count == 1
        await pilot.press("slash", "escape", "escape")
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen), what="back to Jobs")

        # stop with x, confirming a dialog that names the job
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        title = str(app.screen.query_one("#confirm-title", Label).render())
        assert "job 1" in title and "(sh)" in title
        await pilot.press(*"done testing", "enter")
        await wait_for(pilot, lambda: job_state(app, "1") in ("stopped", "failed"), timeout=30,
                       what=lambda: f"job 1 stopped, got {job_state(app, '1')} "
                                    f"{[n.message for n in app._notifications]}")

        # filter with / (the engine matches it: rows outside the filter leave the table)
        ended = job_state(app, "1")
        await pilot.press("slash", *"state:running")
        await wait_for(pilot, lambda: table.row_count == 0, what="no running rows")
        await pilot.press(*["backspace"] * 7, *ended, "enter")
        await wait_for(pilot, lambda: table.shown_keys == ["1"], what="the stopped row")
        await pilot.press("escape")
        assert table.filter_text == ""

        # jump with : to the job by name
        await pilot.press("colon")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), what="palette")
        await pilot.press(*"job 1 sh")
        await pilot.pause(0.5)
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, JobScreen), what="the job")
        assert isinstance(app.screen, JobScreen) and app.screen.job_id == 1
        await pilot.press("escape")

        # export a report to a file
        await pilot.press("4")
        await wait_for(pilot, lambda: isinstance(app.screen, ReportsScreen), what="Reports")
        reports = app.screen
        assert isinstance(reports, ReportsScreen)
        await wait_for(pilot, lambda: reports.loaded_key is not None, timeout=30,
                       what="the report preview")
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen), what="export")
        target = tmp_path / "out" / "chargeback.xlsx"
        target.parent.mkdir()
        await pilot.press("ctrl+u", *str(target), "enter")
        await wait_for(pilot, lambda: target.exists() and target.stat().st_size > 0,
                       timeout=30, what="the exported file")
        assert target.read_bytes()[:2] == b"PK"  # an xlsx is a zip
        await pilot.press("q")


async def test_readonly_console_changes_nothing(fixed_link: EngineLink) -> None:
    app = fixed_app(fixed_link, "jobs", readonly=True)
    async with app.run_test(size=(140, 36)) as pilot:
        screen = app.screen
        table = screen.query_one(KeyedTable)
        await wait_for(pilot, lambda: table.row_count > 0, what="jobs")
        footer = {a.binding.action for a in screen.active_bindings.values() if a.binding.show}
        assert "stop" not in footer, "stop must be hidden from the footer"
        await pilot.press("x")
        await pilot.press("s")
        await pilot.pause(0.2)
        assert app.screen is screen
        notes = [n.message for n in app._notifications]
        assert any("read-only console: stop is disabled" in n for n in notes)
        assert any("read-only console: submit is disabled" in n for n in notes)


async def test_fleet_node_cordon_policies_audit(live_link: EngineLink) -> None:
    app = FleetdeckApp(live_link)
    async with app.run_test(size=(140, 40)) as pilot:
        table = app.screen.query_one(KeyedTable)
        await wait_for(pilot, lambda: table.row_count == 1, what="the local node")
        node = table.shown_keys[0]

        # Enter opens the node; c cordons it after a confirmation naming it
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NodeScreen), what="the node")
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        assert node in str(app.screen.query_one("#confirm-title", Label).render())
        await pilot.press(*"swap the fan", "enter")
        screen = app.screen
        assert isinstance(screen, NodeScreen)
        await wait_for(pilot, lambda: bool(screen.node and screen.node.cordoned),
                       what="the node cordoned")

        # back on Fleet the row shows it; h toggles the heatmap and back
        await pilot.press("escape")
        await wait_for(pilot, lambda: "⊘" in plain(table.row_cells(node)[1]),  # type: ignore[index]
                       what="the cordon mark")
        await pilot.press("h")
        heat = app.screen.query_one(GpuHeatmap)
        await wait_for(pilot, lambda: [r.node for r in heat.rows] == [node], what="heatmap")
        await pilot.press("h")

        # Policies lists it; u on the cordoned table uncordons after confirming
        await pilot.press("3")
        await wait_for(pilot, lambda: isinstance(app.screen, PoliciesScreen), what="Policies")
        cordoned = app.screen.query_one("#cordoned", KeyedTable)
        await wait_for(pilot, lambda: cordoned.shown_keys == [node], what="the cordoned node")
        cordoned.focus()
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        await pilot.press("y")
        await wait_for(pilot, lambda: cordoned.row_count == 0, what="the node uncordoned")

        # Audit has both actions; / filters, Enter opens the node
        await pilot.press("5")
        await wait_for(pilot, lambda: isinstance(app.screen, AuditScreen), what="Audit")
        audit = app.screen.query_one(KeyedTable)
        await wait_for(pilot, lambda: audit.row_count >= 2, what="audit rows")
        await pilot.press("slash", *"action:cordon")  # substring: cordon and uncordon
        await wait_for(pilot, lambda: audit.row_count == 2, what="the two node actions")
        await pilot.press(*" fan", "enter")
        await wait_for(pilot, lambda: audit.row_count == 1, what="the cordon row")
        assert plain(audit.row_cells(audit.shown_keys[0])[4]) == f"node:{node}"  # type: ignore[index]
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NodeScreen), what="the node")
        assert isinstance(app.screen, NodeScreen) and app.screen.node_name == node
