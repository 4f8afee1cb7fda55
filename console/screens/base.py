"""What every console screen shares: header, footer, polling while visible, `/` filter,
read-only hiding, and the engine-call helper workers use.

A screen polls only while it is the active screen: its timer pauses on ScreenSuspend (another
screen or a modal on top, or another mode shown) and resumes, with an immediate poll, on
ScreenResume. Polls run in `exclusive=True` workers, so they never overlap.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Input, Static

from console.engine.client import RemoteError
from console.messages import EngineDown, EngineUp, RequestFailed, Unsupported
from console.widgets.keyed_table import KeyedTable
from console.widgets.summary import SummaryBar

if TYPE_CHECKING:
    from console.app import FleetdeckApp

MISSING: Any = object()


class FilterInput(Input):
    """The `/` filter line: typing filters the table live; Enter keeps it, Esc clears it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "clear", "Clear filter", show=False),
    ]

    def action_clear(self) -> None:
        self.value = ""
        self.screen.set_focus(None)
        self.display = False
        screen = self.screen
        if isinstance(screen, FleetdeckScreen):
            screen.apply_filter("")
            screen.focus_main()


class FleetdeckScreen(Screen[None]):
    """Base of the console's screens."""

    TITLE_TEXT: ClassVar[str] = ""
    POLL_S: ClassVar[float] = 2.0
    CHANNEL: ClassVar[str] = "main"
    # actions that change the fleet: hidden from the footer in a read-only console
    CHANGING: ClassVar[frozenset[str]] = frozenset()
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "back", "Back", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._timer: Timer | None = None
        self.filter_text = ""
        self.polling = False  # true while this screen is shown and polls

    @property
    def fd(self) -> FleetdeckApp:
        from console.app import FleetdeckApp

        app = self.app
        assert isinstance(app, FleetdeckApp)
        return app

    # -- layout ----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield SummaryBar()
        yield Static("", id="notice", classes="notice")
        with Vertical(id="body"):
            yield from self.compose_body()
        yield FilterInput(placeholder="filter: words, or column:value (Esc clears)",
                          id="filter")
        yield Footer(compact=True, show_command_palette=False)

    def compose_body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.query_one("#filter", FilterInput).display = False
        self.query_one("#notice", Static).display = False
        bar = self.query_one(SummaryBar)
        bar.where = self.where_text()
        bar.mode = self.fd.mode_text
        if self.fd.readonly and self.CHANGING:
            self._hide_changing()

    def where_text(self) -> str:
        """What the header calls this screen."""
        return self.TITLE_TEXT

    def _hide_changing(self) -> None:
        """Read-only: keep the keys (they explain why they do nothing) but hide them."""
        bindings = self._bindings.key_to_bindings
        for key, items in bindings.items():
            bindings[key] = [dataclasses.replace(b, show=False) if b.action in self.CHANGING
                             else b for b in items]

    # -- polling while visible ---------------------------------------------------------------
    def on_screen_resume(self, event: events.ScreenResume) -> None:
        bar = self.query_one(SummaryBar)
        bar.summary = self.fd.summary
        bar.notice = f"engine unreachable: {self.fd.engine_down}" if self.fd.engine_down else ""
        self.refresh_data()
        self.polling = self.POLL_S > 0
        if self.POLL_S > 0:
            if self._timer is None:
                self._timer = self.set_interval(self.POLL_S, self.refresh_data)
            else:
                self._timer.resume()

    def on_screen_suspend(self, event: events.ScreenSuspend) -> None:
        self.polling = False
        if self._timer is not None:
            self._timer.pause()

    def refresh_data(self) -> None:
        """Start this screen's poll (an exclusive worker); screens override."""

    async def fetch(self, method: str, **params: Any) -> Any:
        """Call the engine from a worker. On failure posts a message and returns MISSING."""
        try:
            return await self.fd.remote.call(method, channel=self.CHANNEL, **params)
        except RemoteError as e:
            if e.code == "bad_request" and "unknown method" in str(e):
                self.post_message(Unsupported(method))
            else:
                self.post_message(RequestFailed(method, e.code, str(e)))
            return MISSING
        except Exception as e:  # engine gone: the header says so, the screen keeps its data
            self.post_message(EngineDown(str(e)))
            return MISSING

    async def fetch_fleet(self, **params: Any) -> Any:
        """(nodes, True) from `fleet`; from an engine without it, (inventory rows, False).
        `params` may narrow the reply (`node=NAME`); callers still filter what comes back."""
        try:
            return await self.fd.remote.call("fleet", channel=self.CHANNEL, **params), True
        except RemoteError as e:
            if not (e.code == "bad_request" and "unknown method" in str(e)):
                self.post_message(RequestFailed("fleet", e.code, str(e)))
                return MISSING
        except Exception as e:
            self.post_message(EngineDown(str(e)))
            return MISSING
        nodes = await self.fetch("nodes")
        return MISSING if nodes is MISSING else (nodes, False)

    def show_notice(self, text: str) -> None:
        notice = self.query_one("#notice", Static)
        notice.update(text)
        notice.display = bool(text)

    @on(Unsupported)
    def _unsupported(self, message: Unsupported) -> None:
        message.stop()
        self.show_notice(f"engine does not support {message.method} yet")

    @on(RequestFailed)
    def _failed(self, message: RequestFailed) -> None:
        message.stop()
        self.show_notice(f"{message.method}: {message.text}")

    @on(EngineDown)
    def _down(self, message: EngineDown) -> None:
        message.stop()
        self.fd.post_message(EngineDown(message.reason))

    @on(EngineUp)
    def _up(self, message: EngineUp) -> None:
        self.show_notice("")

    # -- filter and navigation ---------------------------------------------------------------
    def main_table(self) -> KeyedTable | None:
        """The table `/` filters and Enter drills into (the focused one if several)."""
        focused = self.focused
        if isinstance(focused, KeyedTable):
            return focused
        tables = list(self.query(KeyedTable))
        return tables[0] if tables else None

    def focus_main(self) -> None:
        table = self.main_table()
        if table is not None:
            table.focus()

    def action_filter(self) -> None:
        """Filter the current table: words, or column:value (e.g. user:ann state:running)."""
        box = self.query_one("#filter", FilterInput)
        self._filter_target = self.main_table()
        box.display = True
        box.value = self.filter_text
        box.focus()

    def apply_filter(self, text: str) -> None:
        self.filter_text = text
        table = getattr(self, "_filter_target", None) or self.main_table()
        if table is not None:
            table.set_filter(text)

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.apply_filter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        event.stop()
        box = self.query_one("#filter", FilterInput)
        if not box.value:
            box.display = False
        self.focus_main()

    def action_back(self) -> None:
        """Back to the previous screen (or clear the filter on a top-level screen)."""
        if self.filter_text:
            self.query_one("#filter", FilterInput).action_clear()
            return
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()
