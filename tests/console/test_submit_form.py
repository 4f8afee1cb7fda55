"""The submit form against a real engine on this machine: the last command comes back
selected (typing replaces it), keys typed while the form opens are kept, the preview follows
every edit (invalid while a field is red, refused for a job that can never fit, which the
engine refuses too), and after submitting a toast names the job and Enter opens it."""

from __future__ import annotations

from textual.widgets import Input, Static

from console.app import EngineLink, FleetdeckApp
from console.screens.job import JobScreen
from console.screens.submit import SubmitScreen
from tests.console.conftest import wait_for


def preview(app: FleetdeckApp) -> str:
    return str(app.screen.query_one("#preview", Static).render())


async def test_submit_form_flow(live_link: EngineLink) -> None:
    app = FleetdeckApp(live_link, user=None)
    async with app.run_test(size=(140, 40)) as pilot:
        # keys typed right after `s`, before the form has focus, land in the command
        await pilot.press("s", *"true")
        await wait_for(pilot, lambda: isinstance(app.screen, SubmitScreen), what="the form")
        command = app.screen.query_one("#f-command", Input)
        await wait_for(pilot, lambda: command.value == "true",
                       what=lambda: f"the typed command, got {command.value!r}")
        await wait_for(pilot, lambda: "would start now" in preview(app), timeout=30,
                       what=lambda: f"the preview, got {preview(app)!r}")
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, SubmitScreen), what="closed")
        notes = [n.message for n in app._notifications]
        assert any("queued job 1: Enter opens it" in n for n in notes), notes
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, JobScreen), what="job 1")
        assert isinstance(app.screen, JobScreen) and app.screen.job_id == 1
        await pilot.press("escape")

        # the last command comes back selected: typing replaces it
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, SubmitScreen), what="the form")
        form = app.screen
        command = form.query_one("#f-command", Input)
        await wait_for(pilot, lambda: command.value == "true" and command.selected_text == "true",
                       timeout=30, what=lambda: f"the last command selected, got "
                                                f"{command.value!r} / {command.selected_text!r}")
        await pilot.press(*"echo hi")
        assert command.value == "echo hi"

        # a red field makes the preview say the form is invalid, at once
        form.query_one("#f-gpus", Input).value = "1.5"
        await wait_for(pilot, lambda: "form is invalid" in preview(app), what="invalid")
        # a job larger than any node: the preview says refused, so does the engine
        form.query_one("#f-gpus", Input).value = "64"
        await wait_for(pilot, lambda: "refused: never fits" in preview(app), timeout=30,
                       what=lambda: f"never fits, got {preview(app)!r}")
        await pilot.press("ctrl+s")
        error = form.query_one("#form-error", Static)
        await wait_for(pilot, lambda: "never fits" in str(error.render()), timeout=30,
                       what="the engine's refusal")
        assert isinstance(app.screen, SubmitScreen), "a refused job keeps the form open"
