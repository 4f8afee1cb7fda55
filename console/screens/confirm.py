"""Confirmation dialogs for changing actions: stop, cordon, uncordon, snooze.

`ConfirmScreen` answers the reason typed (possibly "") on confirm, None on cancel. Enter or `y`
confirms (when no text box has focus), Esc or `n` cancels.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Button, Input, Label, Static

from console.screens.dialog import DialogScreen, dialog_buttons


class ConfirmScreen(DialogScreen[str]):
    """Ask before doing something that changes the fleet."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "cancel", "Cancel"),
        Binding("y", "confirm", "Confirm"),
    ]

    def __init__(self, title: str, detail: str = "", *, confirm: str = "Confirm",
                 ask_reason: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.detail = detail
        self.confirm_label = confirm
        self.ask_reason = ask_reason

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title", id="confirm-title")
            if self.detail:
                yield Static(self.detail, classes="dialog-detail")
            if self.ask_reason:
                yield Input(placeholder=self.ask_reason, id="reason")
            yield dialog_buttons(self.confirm_label, "error")

    def on_mount(self) -> None:
        if self.ask_reason:
            self.query_one("#reason", Input).focus()
        else:
            self.query_one("#yes", Button).focus()

    def action_confirm(self) -> None:
        """Do it."""
        reason = self.query_one("#reason", Input).value.strip() if self.ask_reason else ""
        self.dismiss(reason)


class SnoozeScreen(DialogScreen[tuple[float, str]]):
    """Snooze idle stopping of one job: hours and a reason (both required)."""

    FOCUS = "#reason"

    def __init__(self, job_id: int, name: str) -> None:
        super().__init__()
        self.job_id = job_id
        self.job_name = name

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Snooze idle stopping of job {self.job_id} ({self.job_name})",
                        classes="dialog-title")
            yield Input(value="4", placeholder="hours", id="hours")
            yield Input(placeholder="reason (required), e.g. debugging in the notebook",
                        id="reason")
            yield Label("", id="snooze-error", classes="field-error")
            yield dialog_buttons("Snooze", "warning")

    def action_confirm(self) -> None:
        """Snooze with these hours and reason."""
        error = self.query_one("#snooze-error", Label)
        try:
            hours = float(self.query_one("#hours", Input).value)
        except ValueError:
            hours = -1.0
        reason = self.query_one("#reason", Input).value.strip()
        if not 0 < hours <= 24 * 14:
            error.update("hours: expected a number of hours > 0 (at most 336)")
            return
        if not reason:
            error.update("reason: expected why the job may sit idle")
            return
        self.dismiss((hours, reason))
