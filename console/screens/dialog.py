"""The base of fleetdeck's modal dialogs (confirm, snooze, export, submit).

A dialog answers through `dismiss`: `action_confirm` (Enter in a text box, the #yes button)
decides the answer, `action_cancel` (Esc, the #no button) answers None; `dialog_buttons` is
that button row and `FOCUS` the text box focused on opening. `fd` is the running app as a
`ConsoleHost` (console.screens.host), never importing console.app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, TypeVar, cast

from textual import on
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import ModalScreen
from textual.widgets import Button, Input
from textual.widgets.button import ButtonVariant

from console.screens.host import ConsoleHost

if TYPE_CHECKING:
    from textual.screen import Screen

ResultT = TypeVar("ResultT")


class OnFleetdeck:
    """`fd`: the running app as the ConsoleHost every fleetdeck screen runs under
    (FleetdeckApp), for screens and dialogs alike."""

    @property
    def fd(self) -> ConsoleHost:
        return cast(ConsoleHost, cast("Screen[object]", self).app)


def dialog_buttons(yes: str, variant: ButtonVariant) -> Horizontal:
    """The row a dialog ends with: `yes` (#yes) and Cancel (#no)."""
    return Horizontal(Button(yes, variant=variant, id="yes"), Button("Cancel", id="no"),
                      classes="dialog-buttons")


class DialogScreen(OnFleetdeck, ModalScreen[ResultT | None]):
    """A modal dialog answering a `ResultT`, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    FOCUS: ClassVar[str] = ""  # the text box (a selector) focused on opening; "" for none

    def on_mount(self) -> None:
        if self.FOCUS:
            self.query_one(self.FOCUS, Input).focus()

    def action_confirm(self) -> None:
        """Answer (subclasses decide what)."""
        raise NotImplementedError

    def action_cancel(self) -> None:
        """Close without answering."""
        self.dismiss(None)

    @on(Input.Submitted)
    def _enter(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_confirm()

    @on(Button.Pressed, "#yes")
    def _yes(self) -> None:
        self.action_confirm()

    @on(Button.Pressed, "#no")
    def _no(self) -> None:
        self.action_cancel()
