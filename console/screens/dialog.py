"""The base of fleetdeck's modal dialogs (confirm, snooze, export, submit).

A dialog answers through `dismiss`: `action_confirm` (Enter in a text box, the #yes button)
decides the answer, `action_cancel` (Esc, the #no button) answers None. `fd` is the running
app as a `ConsoleHost` (console.screens.host), never importing console.app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, TypeVar, cast

from textual import on
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen
from textual.widgets import Button, Input

from console.screens.host import ConsoleHost

if TYPE_CHECKING:
    from textual.app import App

ResultT = TypeVar("ResultT")


def fleetdeck_app(app: App[object]) -> ConsoleHost:
    """`app` as the ConsoleHost every fleetdeck screen runs under (FleetdeckApp)."""
    return cast(ConsoleHost, app)


class DialogScreen(ModalScreen[ResultT | None]):
    """A modal dialog answering a `ResultT`, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    @property
    def fd(self) -> ConsoleHost:
        return fleetdeck_app(self.app)

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
