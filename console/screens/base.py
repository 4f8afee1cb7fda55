"""What every console screen shares: header, footer, polling while visible, `/` filter,
read-only hiding, and the engine-call helper workers use.

A screen polls only while it is the active screen: its timer pauses on ScreenSuspend (another
screen or a modal on top, or another mode shown) and resumes, with an immediate poll, on
ScreenResume. One poll runs at a time and is never cancelled: a tick or an explicit refresh
(Ctrl+R, a changed view, a finished action) that finds one in flight makes it poll once more
when it ends, so an engine slower than the interval gets polls back to back, never starved. The
header shows when the data was last refreshed and marks it stale past two intervals.
"""

from __future__ import annotations

import time
from enum import Enum
from typing import ClassVar, Final, TypeVar

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Input, Static
from textual.worker import Worker

from console.engine.api.methods import BY_REQUEST
from console.engine.api.requests import Request
from console.engine.client import RemoteError, missing_text, unsupported
from console.messages import EngineDown, EngineUp, RequestFailed, Unsupported
from console.screens.dialog import OnFleetdeck
from console.widgets.keyed_table import KeyedTable
from console.widgets.summary import SummaryBar

R = TypeVar("R")


class Missing(Enum):
    """What `fetch` answers when the call failed (it already said why)."""

    MISSING = "missing"


MISSING: Final = Missing.MISSING
MIN_SIZE = (60, 12)  # below this the console shows a note instead of its screens


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


class FleetdeckScreen(OnFleetdeck, Screen[None]):
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
        self._poll_worker: Worker[None] | None = None
        self._poll_again = False  # an explicit refresh came while a poll was in flight
        self._poll_failed = False
        self.polls_done = 0  # complete polls (tests wait on it)
        self.refreshed_at: float | None = None  # app clock of the last complete poll
        self._refreshed_mono: float | None = None  # monotonic: staleness, whatever the clock

    # -- layout ----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield SummaryBar()
        yield Static("", id="too-small")
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
        self._check_size()
        bar = self.query_one(SummaryBar)
        bar.where = self.breadcrumb()
        bar.mode = self.fd.mode_text
        bar.me = self.fd.me_text

    def on_resize(self, event: events.Resize) -> None:
        self._check_size()

    def _check_size(self) -> None:
        """Below MIN_SIZE, say so plainly instead of showing a screen cut to pieces."""
        width, height = self.app.size
        small = width < MIN_SIZE[0] or height < MIN_SIZE[1]
        note = self.query_one("#too-small", Static)
        note.display = small
        self.query_one("#body").display = not small
        if small:
            note.update(f"This terminal is {width}x{height}: fleetdeck needs at least "
                        f"{MIN_SIZE[0]}x{MIN_SIZE[1]}. Enlarge the window (q quits).")

    def where_text(self) -> str:
        """What the header calls this screen."""
        return self.TITLE_TEXT

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Changing keys this caller may not use (read-only console, or their role) are not
        offered in the footer (see `on_key` for what pressing one does)."""
        return not (action in self.CHANGING and not self.fd.may(action))

    def on_key(self, event: events.Key) -> None:
        """A changing key this caller may not use still runs its action, which explains why
        it does nothing (read-only notice, or the engine's refusal)."""
        action = self._refused_keys().get(event.key)
        if action is not None:
            event.stop()
            getattr(self, f"action_{action}")()

    def _refused_keys(self) -> dict[str, str]:
        """Key -> changing action of this screen that this caller may not use."""
        out: dict[str, str] = {}
        for cls in type(self).__mro__:
            for b in getattr(cls, "BINDINGS", ()):
                if isinstance(b, Binding) and not self.check_action(b.action, ()):
                    for key in b.key.split(","):
                        out[key.strip()] = b.action
        return out

    # -- polling while visible ---------------------------------------------------------------
    def on_screen_resume(self, event: events.ScreenResume) -> None:
        bar = self.query_one(SummaryBar)
        bar.summary = self.fd.summary
        bar.where = self.breadcrumb()
        bar.me = self.fd.me_text
        bar.notice = f"engine unreachable: {self.fd.engine_down}" if self.fd.engine_down else ""
        self.refresh_data()
        self.polling = self.POLL_S > 0
        if self.POLL_S > 0:
            if self._timer is None:
                self._timer = self.set_interval(self.POLL_S, self._tick)
            else:
                self._timer.resume()

    def on_screen_suspend(self, event: events.ScreenSuspend) -> None:
        self.polling = False
        if self._timer is not None:
            self._timer.pause()

    def breadcrumb(self) -> str:
        """The path to this screen: the titles of the screens under it, then its own."""
        names = [s.where_text() for s in self.app.screen_stack if isinstance(s, FleetdeckScreen)]
        if self not in self.app.screen_stack:
            names.append(self.where_text())
        return " ▸ ".join(n for n in names if n)

    def _tick(self) -> None:
        """The poll timer: poll (once more after the one in flight); update the age."""
        self.show_age()
        self.timed_refresh()

    def timed_refresh(self) -> None:
        """The poll timer's refresh (a screen may ask for less than on Ctrl+R)."""
        self.refresh_data()

    @property
    def poll_in_flight(self) -> bool:
        return self._poll_worker is not None and not self._poll_worker.is_finished

    def refresh_data(self) -> None:
        """Poll now; if a poll is in flight, poll once more when it ends (never cancel it)."""
        if self.poll_in_flight:
            self._poll_again = True
        else:
            self._start_poll()

    def _start_poll(self) -> None:
        self._poll_again = False
        self._poll_worker = self.run_worker(self._poll_loop(), group="poll", exclusive=False,
                                            exit_on_error=False)

    async def _poll_loop(self) -> None:
        while True:
            self._poll_again = False
            self._poll_failed = False
            await self.poll_once()
            if not self._poll_failed:
                self.polls_done += 1
                self.refreshed_at = self.fd.clock()
                self._refreshed_mono = time.monotonic()
                self.show_age()
            if not (self._poll_again and self.polling):
                return

    async def poll_once(self) -> None:
        """One poll: fetch this screen's data and post it; screens with data override."""

    def data_age_s(self) -> float | None:
        """Seconds since the last complete poll (None before the first)."""
        if self._refreshed_mono is None:
            return None
        return time.monotonic() - self._refreshed_mono

    def show_age(self) -> None:
        """Tell the header when this screen's data was refreshed and whether it is stale."""
        if self.POLL_S <= 0:
            return
        age = self.data_age_s()
        bar = self.query_one(SummaryBar)
        bar.refreshed_at = self.refreshed_at
        bar.stale_s = (age if age is not None and age > 2 * self.POLL_S else None)

    async def fetch(self, request: Request[R], *, channel: str | None = None) -> R | Missing:
        """Call the engine from a worker (on this screen's connection, or `channel` to ask
        side by side). On failure posts a message and returns MISSING."""
        try:
            return await self.fd.remote.call(request, channel=channel or self.CHANNEL)
        except RemoteError as e:
            self._poll_failed = True
            method = BY_REQUEST[type(request)].name
            if unsupported(e):
                self.post_message(Unsupported(method))
            else:
                self.post_message(RequestFailed(method, e.code, str(e)))
            return MISSING
        except Exception as e:  # engine gone: the header says so, the screen keeps its data
            self._poll_failed = True
            self.post_message(EngineDown(str(e)))
            return MISSING

    def show_notice(self, text: str) -> None:
        notice = self.query_one("#notice", Static)
        notice.update(text)
        notice.display = bool(text)

    @on(Unsupported)
    def _unsupported(self, message: Unsupported) -> None:
        message.stop()
        self.show_notice(missing_text(message.method))

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

    def show_filter(self, text: str) -> None:
        """Filter the main table by `text` and show the filter line with it."""
        box = self.query_one("#filter", FilterInput)
        self._filter_target = self.main_table()
        box.value = text
        box.display = bool(text)
        self.apply_filter(text)
        self.focus_main()

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
