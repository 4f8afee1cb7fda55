"""What-if prompt: which GPUs to add or remove before replaying recent jobs."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Label

from collectors.errors import InputError
from console.screens.dialog import DialogScreen, dialog_buttons
from scheduler.sim.whatif import parse_change


class WhatIfScreen(DialogScreen[str]):
    """Ask for a change like "+16 A100"; answers the text, or None when cancelled."""

    FOCUS = "#change"

    def __init__(self, days: int) -> None:
        super().__init__()
        self.days = days

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"What if: replay the last {self.days} days of jobs on a changed fleet",
                        classes="dialog-title")
            yield Input(placeholder='+16 A100   or   -8 T4, +4 H100', id="change")
            yield Label("", id="whatif-error", classes="field-error")
            yield dialog_buttons("Replay", "primary")

    def action_confirm(self) -> None:
        """Replay with this change (once it parses)."""
        text = self.query_one("#change", Input).value.strip()
        try:
            parse_change(text)
        except InputError as e:
            self.query_one("#whatif-error", Label).update(str(e).split(": ", 1)[-1])
            return
        self.dismiss(text)
