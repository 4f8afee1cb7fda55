"""What screens need from the console app, as a Protocol: screens never import console.app.

`console.app.FleetdeckApp` provides it (mypy checks that in `console.app.as_host`); screens
reach it as `self.fd`. Textual's own App methods (push_screen, screen_stack) stay on
`self.app`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TypeVar

from textual.message import Message

from console.config import Loaded
from console.engine.api.replies import FleetNode, JobInfo, Summary
from console.engine.api.requests import Request

R = TypeVar("R")


class EngineCalls(Protocol):
    """The console's engine connections (one per channel)."""

    async def call(self, request: Request[R], /, *, channel: str = "main") -> R:
        """The method the table declares for the request's type, answering its reply type."""

    def stream(self, request: Request[R], /) -> AsyncIterator[R]:
        """The events of a streaming method, on a connection of their own."""


class LinkInfo(Protocol):
    @property
    def loaded(self) -> Loaded: ...

    @property
    def readonly(self) -> bool: ...


class ConsoleHost(Protocol):
    """The app as screens see it: the engine, shared caches, and the actions they ask for."""

    last_fleet: list[FleetNode]
    last_jobs: list[JobInfo]
    known_users: tuple[str, ...]
    summary: Summary | None
    engine_down: str
    user: str

    @property
    def remote(self) -> EngineCalls: ...

    @property
    def link(self) -> LinkInfo: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def readonly(self) -> bool: ...

    @property
    def mode_text(self) -> str: ...

    @property
    def limited(self) -> bool:
        """A member or viewer: screens open on their own jobs."""

    @property
    def me_text(self) -> str:
        """A member's quota use and spend today, for the header."""

    def may(self, action: str) -> bool:
        """Whether the caller's role allows `action` (a changing key of a screen)."""

    def post_message(self, message: Message) -> bool: ...

    def refresh_names(self) -> None: ...

    def open_node(self, node: str) -> None: ...

    def open_job(self, job_id: int | str, *, section: str = "spec") -> None: ...

    async def open_jobs_filtered(self, text: str) -> None: ...

    def ask_stop(self, job_id: int, name: str) -> None: ...

    def ask_cordon(self, node: str, cordoned: bool) -> None: ...

    def ask_snooze(self, job_id: int, name: str) -> None: ...

    def run_action_call(self, request: Request[Any], text: str) -> object:
        """Call a changing method in the background; the app reports done or failed."""
