"""What-if prompt: which GPUs to add or remove before replaying recent jobs."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

from collectors.errors import InputError
from scheduler.sim.whatif import parse_change


class WhatIfScreen(ModalScreen[str | None]):
    """Ask for a change like "+16 A100"; answers the text, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, days: int) -> None:
        super().__init__()
        self.days = days

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"What if: replay the last {self.days} days of jobs on a changed fleet",
                        classes="dialog-title")
            yield Input(placeholder='+16 A100   or   -8 T4, +4 H100', id="change")
            yield Label("", id="whatif-error", classes="field-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Replay", variant="primary", id="yes")
                yield Button("Cancel", id="no")

    def on_mount(self) -> None:
        self.query_one("#change", Input).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#yes")
    def submit(self) -> None:
        text = self.query_one("#change", Input).value.strip()
        try:
            parse_change(text)
        except InputError as e:
            self.query_one("#whatif-error", Label).update(str(e).split(": ", 1)[-1])
            return
        self.dismiss(text)

    @on(Button.Pressed, "#no")
    def action_cancel(self) -> None:
        self.dismiss(None)
