"""The Textual console. Workers talk to the engine and post messages; handlers own state."""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Footer, Header, Static

from collectors.store import StoreLockedError
from console.commands.common import loaded_config
from console.config import Loaded
from console.engine.client import EngineClient, NoEngine
from console.engine.host import EmbeddedEngine


@dataclass(frozen=True, slots=True)
class EngineLink:
    """How the console reaches its engine."""

    loaded: Loaded
    embedded: EmbeddedEngine | None
    readonly: bool = False


class FleetdeckApp(App[int]):
    """fleetdeck's console."""

    TITLE = "fleetdeck"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", priority=True),
        Binding("r", "refresh", "Refresh"),
    ]

    class StatusLoaded(Message):
        """The engine answered a status poll."""

        def __init__(self, status: dict[str, Any]) -> None:
            super().__init__()
            self.status = status

    class EngineLost(Message):
        """The engine did not answer."""

        def __init__(self, reason: str) -> None:
            super().__init__()
            self.reason = reason

    def __init__(self, link: EngineLink) -> None:
        super().__init__()
        self.link = link
        self._client: EngineClient | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("connecting to engine...", id="status")
        yield Footer()

    def on_mount(self) -> None:
        mode = "embedded engine" if self.link.embedded else "attached"
        self.sub_title = f"{self.link.loaded.source} · {mode}"
        self.poll_status()
        self.set_interval(2.0, self.poll_status)

    def action_refresh(self) -> None:
        self.poll_status()

    @work(exclusive=True, group="status")
    async def poll_status(self) -> None:
        try:
            if self._client is None:
                self._client = await EngineClient.connect(self.link.loaded.config.socket_path)
            status = await self._client.call("status")
        except Exception as e:  # the engine may be gone; show it, keep the UI alive
            self._client = None
            self.post_message(self.EngineLost(str(e)))
            return
        self.post_message(self.StatusLoaded(status))

    @on(StatusLoaded)
    def show_status(self, message: StatusLoaded) -> None:
        lines = [f"{k:<20} {v}" for k, v in message.status.items()]
        self.query_one("#status", Static).update("\n".join(lines))

    @on(EngineLost)
    def show_lost(self, message: EngineLost) -> None:
        self.query_one("#status", Static).update(f"engine unreachable: {message.reason}")

    async def on_unmount(self) -> None:
        if self._client is not None:
            await self._client.close()


async def open_link(loaded: Loaded, *, readonly: bool = False) -> EngineLink:
    """Attach to a running engine, or start an embedded one."""
    try:
        client = await EngineClient.connect(loaded.config.socket_path, timeout=2.0)
    except NoEngine:
        pass
    else:
        await client.close()
        return EngineLink(loaded, None, readonly)
    embedded = EmbeddedEngine(loaded)
    try:
        await asyncio.to_thread(embedded.start)
    except StoreLockedError:
        # another engine took the store between our probe and start: attach to it
        return EngineLink(loaded, None, readonly)
    return EngineLink(loaded, embedded, readonly)


def run_console(args: argparse.Namespace) -> int:
    loaded = loaded_config(args)
    link = asyncio.run(open_link(loaded, readonly=bool(getattr(args, "readonly", False))))
    try:
        FleetdeckApp(link).run()
    finally:
        if link.embedded is not None:
            link.embedded.stop()
    return 0
