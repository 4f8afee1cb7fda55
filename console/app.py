"""The Textual console. Workers talk to the engine and post messages; handlers own state.

Screens (one key each): 1 Fleet, 2 Jobs, 3 Policies, 4 Reports, 5 Audit; Node and Job open
from them with Enter; Submit (s) is a modal form. Each top-level screen is a Textual mode, so
it keeps its own stack and only the visible one renders and polls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import getpass
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.command import Provider
from textual.screen import ModalScreen, Screen
from textual.widgets import Input
from textual.worker import Worker

from collectors.errors import EngineError
from collectors.private_files import enter_private_umask
from collectors.store import StoreLockedError
from console.commands.common import loaded_config, me_line
from console.config import Loaded
from console.engine.api.methods import BY_REQUEST
from console.engine.api.replies import FleetNode, JobInfo, Summary
from console.engine.api.requests import (
    CordonRequest,
    FleetQuery,
    JobsQuery,
    Request,
    SnoozeRequest,
    StatusQuery,
    StopRequest,
    SummaryQuery,
    UncordonRequest,
    WhoAmIQuery,
)
from console.engine.client import (
    EngineClient,
    NoEngine,
    RemoteError,
    failure_text,
    missing_text,
)
from console.engine.gc_tuning import tune_gc
from console.engine.host import EmbeddedEngine
from console.engine.protocol import ErrorCode
from console.messages import ActionDone, EngineDown, EngineUp, RequestFailed, SummaryLoaded
from console.screens.host import ConsoleHost
from console.widgets.summary import SummaryBar

SUMMARY_POLL_S = 2.0
JUMP_S = 8.0  # how long Enter opens a job just submitted (its toast shows as long)
ME_POLL_S = 30.0
NAMES_FRESH_S = 15.0  # the palette asks the engine for names at most this often
LIMITED_ROLES = ("member", "viewer")
R = TypeVar("R")
# changing keys a member has (on their own jobs); the rest (cordon, drain...) are not offered
MEMBER_ACTIONS = frozenset({"submit", "stop", "snooze"})


@dataclass(frozen=True, slots=True)
class EngineLink:
    """How the console reaches its engine."""

    loaded: Loaded
    embedded: EmbeddedEngine | None
    readonly: bool = False
    role: str = "admin"  # the caller's role as the engine's hello says (admin when embedded)
    user: str | None = None  # the caller as the engine sees it (an SSH login, say)
    label: str = ""  # what the header calls this console's source (the demo: its store)


class Remote:
    """The console's engine connections: one per channel (a screen's poll, actions, a report),
    so a slow report never holds up the fleet poll. Streams get a connection of their own."""

    def __init__(self, socket_path: Path, *, readonly: bool = False) -> None:
        self.socket_path = socket_path
        self.readonly = readonly  # the engine refuses changes on these connections too
        self._clients: dict[str, EngineClient] = {}

    async def _client(self, channel: str) -> EngineClient:
        client = self._clients.get(channel)
        if client is None:
            client = await EngineClient.connect(self.socket_path, readonly=self.readonly)
            self._clients[channel] = client
        return client

    async def call(self, request: Request[R], /, *, channel: str = "main") -> R:
        """`call(StopRequest(job=3))` answers a `JobInfo`: the reply type the method table
        declares for the request's type."""
        client = await self._client(channel)
        try:
            return await client.call(request)
        except RemoteError:
            raise
        except (EngineError, OSError, ValueError):
            self._clients.pop(channel, None)
            with contextlib.suppress(Exception):
                await client.close()
            raise

    async def stream(self, request: Request[R], /) -> AsyncIterator[R]:
        client = await EngineClient.connect(self.socket_path, readonly=self.readonly)
        try:
            async for event in client.stream(request):
                yield event
        finally:
            await client.close()

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            with contextlib.suppress(Exception):
                await c.close()


def _modes() -> dict[str, Callable[[], Screen[Any]]]:
    from console.screens.audit import AuditScreen
    from console.screens.fleet import FleetScreen
    from console.screens.jobs import JobsScreen
    from console.screens.policies import PoliciesScreen
    from console.screens.reports import ReportsScreen

    return {"fleet": FleetScreen, "jobs": JobsScreen, "policies": PoliciesScreen,
            "reports": ReportsScreen, "audit": AuditScreen}


def _commands() -> type[Provider]:
    from console.screens.palette import FleetdeckCommands

    return FleetdeckCommands


SCREEN_TITLES = {"fleet": "Fleet", "jobs": "Jobs", "policies": "Policies",
                 "reports": "Reports", "audit": "Audit"}


def _mode(name: str) -> Callable[[], Screen[Any]]:
    def make() -> Screen[Any]:
        return _modes()[name]()

    return make


class FleetdeckApp(App[int]):
    """fleetdeck's console."""

    TITLE = "fleetdeck"
    CSS_PATH = "app.tcss"
    MODES: ClassVar[dict[str, str | Callable[[], Screen[Any]]]] = {
        m: _mode(m) for m in SCREEN_TITLES}
    DEFAULT_MODE: ClassVar[str] = "fleet"
    ENABLE_COMMAND_PALETTE = True
    COMMANDS = {*App.COMMANDS, _commands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("colon", "goto_palette", "Go to"),
        Binding("1,f1", "goto('fleet')", "Fleet"),
        Binding("2,f2", "goto('jobs')", "Jobs"),
        Binding("3,f3", "goto('policies')", "Policies"),
        Binding("4,f4", "goto('reports')", "Reports"),
        Binding("5,f5", "goto('audit')", "Audit"),
        Binding("s", "submit", "Submit"),
        Binding("question_mark", "keys", "Keys"),
        Binding("ctrl+r", "refresh", "Refresh", show=False),
        Binding("enter", "open_submitted", "Open the submitted job", show=False, priority=True),
    ]

    def __init__(self, link: EngineLink, *, clock: Callable[[], float] = time.time,
                 start: str = "fleet", user: str | None = None) -> None:
        super().__init__()
        # Every poll decodes thousands of short-lived rows; with the default thresholds the
        # cyclic GC's full passes land on refreshes (p95 ~170 ms at 10,000 jobs). Rarer
        # passes keep refreshes under 40 ms; refcounting still frees the rows at once.
        gc.set_threshold(50_000, 20, 1000)
        self.start_mode = start
        self.link = link
        self.clock = clock
        self.remote = Remote(link.loaded.config.socket_path, readonly=link.readonly)
        self.summary: Summary | None = None
        self.engine_down: str = ""
        self.user = user or link.user or getpass.getuser()
        self._user_fixed = user is not None
        self.role = link.role
        self.me_text = ""  # a member's quota use and spend today, for the header
        self.last_fleet: list[FleetNode] = []
        self.last_jobs: list[JobInfo] = []
        self.known_users: tuple[str, ...] = ()
        self.jump_to_job: int | None = None  # Enter opens it (just submitted)
        self._jump_screen: Screen[Any] | None = None
        self.table_sorts: dict[str, tuple[str, bool] | None] = {}  # KeyedTable sort memory
        self._names_worker: Worker[None] | None = None
        self._names_at = float("-inf")  # when the palette's names were last asked for

    @property
    def readonly(self) -> bool:
        return self.link.readonly

    @property
    def limited(self) -> bool:
        """A member or viewer: the console opens on their own jobs and shows their day."""
        return self.role in LIMITED_ROLES

    def may(self, action: str) -> bool:
        """Whether this caller may take `action` (a changing key of a screen) at all."""
        if self.readonly or self.role == "viewer":
            return False
        return self.role != "member" or action in MEMBER_ACTIONS

    @property
    def mode_text(self) -> str:
        where = "embedded engine" if self.link.embedded else "attached"
        source = self.link.loaded.source
        name = self.link.label or (Path(source).name if "/" in source else source)
        role = f" · {self.user} ({self.role})" if self.limited else ""
        return f"{name} · {where}{role}" + (" · read-only" if self.readonly else "")

    def on_mount(self) -> None:
        if self.start_mode != self.current_mode:
            self.switch_mode(self.start_mode)
        self.sub_title = self.mode_text
        self.poll_summary()
        self.refresh_names()
        if not self._user_fixed:
            self.load_identity()
        self.set_interval(SUMMARY_POLL_S, self.poll_summary)
        if self.limited:
            self.poll_me()
            self.set_interval(ME_POLL_S, self.poll_me)

    @work(exclusive=True, group="me")
    async def poll_me(self) -> None:
        """A member's own numbers for the header: GPUs in use of their quota, spend today."""
        try:
            me = await self.remote.call(WhoAmIQuery(), channel="summary")
        except Exception:  # an older engine, or it is down: the header simply omits it
            return
        self.me_text = me_line(me)
        for bar in self.bars():
            bar.me = self.me_text

    # -- polling ---------------------------------------------------------------------------
    @work(exclusive=True, group="summary")
    async def poll_summary(self) -> None:
        try:
            summary = await self.remote.call(SummaryQuery(), channel="summary")
        except RemoteError as e:
            self.post_message(RequestFailed("summary", e.code, str(e)))
            return
        except Exception as e:  # the engine may be gone; show it, keep the UI alive
            self.post_message(EngineDown(str(e)))
            return
        self.post_message(SummaryLoaded(summary))

    def refresh_names(self) -> None:
        """Bring the palette's names (nodes, jobs, users) up to date in the background when
        older than NAMES_FRESH_S; one refresh at a time, never cancelled."""
        if self.clock() - self._names_at < NAMES_FRESH_S:
            return
        if self._names_worker is None or self._names_worker.is_finished:
            self._names_worker = self.run_worker(self._load_names(), group="names",
                                                 exit_on_error=False)

    async def _load_names(self) -> None:
        self._names_at = self.clock()
        with contextlib.suppress(Exception):
            self.last_fleet = await self.remote.call(FleetQuery(), channel="palette")
        with contextlib.suppress(Exception):
            jobs = await self.remote.call(JobsQuery(limit=10_000), channel="palette")
            self.last_jobs = jobs
            self.known_users = tuple(sorted({j.user for j in jobs if j.user}))

    @work(exclusive=True, group="identity")
    async def load_identity(self) -> None:
        with contextlib.suppress(Exception):
            status = await self.remote.call(StatusQuery(), channel="summary")
            if status.caller:
                self.user = status.caller

    def bars(self) -> Iterable[SummaryBar]:
        for screen in self.screen_stack:
            yield from screen.query(SummaryBar)

    @on(SummaryLoaded)
    def _summary(self, message: SummaryLoaded) -> None:
        self.summary = message.summary
        if self.engine_down:
            self.engine_down = ""
            self.post_message(EngineUp())
        for bar in self.bars():
            bar.notice = ""
            bar.summary = message.summary

    @on(RequestFailed)
    def _request_failed(self, message: RequestFailed) -> None:
        if message.method == "summary":
            note = (missing_text("summary")
                    if message.code == ErrorCode.UNKNOWN_METHOD else f"summary: {message.text}")
            for bar in self.bars():
                bar.notice = note
            return
        self.notify(f"{message.method}: {message.text}", severity="error", timeout=6)

    @on(EngineDown)
    def _engine_down(self, message: EngineDown) -> None:
        self.engine_down = message.reason
        for bar in self.bars():
            bar.notice = f"engine unreachable: {message.reason}"

    @on(ActionDone)
    def _action_done(self, message: ActionDone) -> None:
        self.notify(message.text, title=message.action, timeout=4)
        self.refresh_screen()

    def refresh_screen(self) -> None:
        refresh = getattr(self.screen, "refresh_data", None)
        if callable(refresh):
            refresh()
        self.poll_summary()

    # -- navigation and shared actions --------------------------------------------------------
    async def action_goto(self, mode: str) -> None:
        """Show this top-level list screen, from anywhere: screens opened on top of it (a
        node, a job) are closed, so 1-5 always land on the list the footer names."""
        if self.current_mode != mode:
            await self.switch_mode(mode)
        while len(self.screen_stack) > 1 and not isinstance(self.screen, ModalScreen):
            await self.pop_screen()

    def action_goto_palette(self) -> None:
        """Go to a node, job or user by name, or run a command (the command palette)."""
        self.action_command_palette()

    def action_command_palette(self) -> None:
        from console.screens.palette import QuickPalette

        if self.use_command_palette and not isinstance(self.screen, QuickPalette):
            self.push_screen(QuickPalette(id="--command-palette"))

    def action_refresh(self) -> None:
        """Ask the engine again now."""
        self.refresh_screen()

    def action_keys(self) -> None:
        """Show every key of this screen with what it does."""
        from console.screens.help import KeysScreen

        if not isinstance(self.screen, KeysScreen):
            self.push_screen(KeysScreen(self.screen))

    def guard(self, what: str) -> bool:
        """True (and a notice) when this console is read-only and `what` would change things."""
        if self.readonly:
            self.notify(f"read-only console: {what} is disabled", severity="warning", timeout=4)
            return True
        return False

    def action_submit(self) -> None:
        """Open the submit form (a new job)."""
        if self.guard("submit"):
            return
        from console.screens.submit import SubmitScreen

        if not isinstance(self.screen, SubmitScreen):
            self.push_screen(SubmitScreen(), self._submitted)

    def _submitted(self, ids: list[int] | None) -> None:
        """A toast with the new job's id; Enter opens it while the toast shows."""
        if not ids:
            return
        what = f"job {ids[0]}" if len(ids) == 1 else f"jobs {ids[0]}-{ids[-1]}"
        self.jump_to_job = ids[0]
        self._jump_screen = self.screen  # Enter jumps only here, and not while typing
        self.notify(f"queued {what}: Enter opens it", title="Submitted", timeout=JUMP_S)
        self.set_timer(JUMP_S, partial(self._jump_expired, ids[0]))
        self.refresh_screen()

    def _jump_expired(self, job_id: int) -> None:
        if self.jump_to_job == job_id:
            self.jump_to_job = None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "open_submitted":
            return (self.jump_to_job is not None and self.screen is self._jump_screen
                    and not isinstance(self.focused, Input))
        return not (action == "submit" and self.role == "viewer")  # not offered to viewers

    def action_open_submitted(self) -> None:
        """Open the job just submitted (Enter while its toast shows)."""
        job_id, self.jump_to_job = self.jump_to_job, None
        if job_id is not None:
            self.open_job(job_id)

    def open_node(self, node: str) -> None:
        from console.screens.node import NodeScreen

        self.push_screen(NodeScreen(node))

    def open_job(self, job_id: int | str, *, section: str = "spec") -> None:
        from console.screens.job import JobScreen

        self.push_screen(JobScreen(int(job_id), section=section))

    async def open_jobs_filtered(self, text: str) -> None:
        """The Jobs list (never a job opened from it) with this filter, e.g. `user:ann`."""
        await self.action_goto("jobs")
        show_filter = getattr(self.screen, "show_filter", None)
        if callable(show_filter):
            show_filter(text)

    def ask_stop(self, job_id: int, name: str) -> None:
        """Confirm, then stop the job (graceful, then forced by the engine)."""
        if self.guard("stop"):
            return
        from console.screens.confirm import ConfirmScreen

        def done(reason: str | None) -> None:
            if reason is not None:
                self.run_action_call(StopRequest(job=job_id,
                                                 reason=reason or "stopped from the console"),
                                     f"stopped job {job_id}")

        self.push_screen(ConfirmScreen(
            f"Stop job {job_id} ({name})?",
            "It gets SIGTERM, then SIGKILL after the grace period.",
            confirm="Stop job", ask_reason="reason (optional)"), done)

    def ask_cordon(self, node: str, cordoned: bool) -> None:
        """Cordon (no new placements) or uncordon a node, with a reason."""
        if self.guard("cordon"):
            return
        from console.screens.confirm import ConfirmScreen

        if cordoned:
            def undo(reason: str | None) -> None:
                if reason is not None:
                    self.run_action_call(UncordonRequest(node=node), f"uncordoned {node}")

            self.push_screen(ConfirmScreen(f"Uncordon {node}?", "New jobs may be placed there.",
                                           confirm="Uncordon"), undo)
            return

        def do(reason: str | None) -> None:
            if reason is not None:
                self.run_action_call(CordonRequest(
                    node=node, reason=reason or "cordoned from the console"), f"cordoned {node}")

        self.push_screen(ConfirmScreen(
            f"Cordon {node}?", "No new jobs will be placed there; running jobs keep running.",
            confirm="Cordon", ask_reason="reason"), do)

    def ask_snooze(self, job_id: int, name: str) -> None:
        """Snooze idle stopping for a job, for some hours, with a reason."""
        if self.guard("snooze"):
            return
        from console.screens.confirm import SnoozeScreen

        def done(result: tuple[float, str] | None) -> None:
            if result is not None:
                hours, reason = result
                self.run_action_call(SnoozeRequest(job=job_id, hours=hours, reason=reason),
                                     f"snoozed job {job_id} for {hours:g}h")

        self.push_screen(SnoozeScreen(job_id, name), done)

    @work(group="actions")
    async def run_action_call(self, request: Request[Any], text: str) -> None:
        method = BY_REQUEST[type(request)].name
        try:
            result = await self.remote.call(request, channel="actions")
        except RemoteError as e:
            note = failure_text(e, method)
            self.post_message(RequestFailed(method, e.code, note))
            return
        except Exception as e:
            self.post_message(EngineDown(str(e)))
            return
        self.post_message(ActionDone(method, text, result))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for mode, title in SCREEN_TITLES.items():
            yield SystemCommand(title, f"Show the {title} screen",
                                partial(self.action_goto, mode))
        if not self.readonly:
            yield SystemCommand("Submit", "Submit a job (form)", self.action_submit)

    def deliver_screenshot(self, filename: str | None = None, path: str | None = None,
                           time_format: str | None = None) -> str | None:
        """The palette's screenshot: into ~/Downloads, or the home folder when there is none
        (Textual's default fails without it)."""
        return super().deliver_screenshot(filename, path or str(screenshot_dir()), time_format)

    async def on_unmount(self) -> None:
        await self.remote.close()


def screenshot_dir() -> Path:
    """~/Downloads if it exists, else the home folder, else the working directory."""
    home = Path.home()
    for candidate in (home / "Downloads", home):
        if candidate.is_dir() and os.access(candidate, os.W_OK):
            return candidate
    return Path.cwd()


async def open_link(loaded: Loaded, *, readonly: bool = False,
                    embed: bool = True) -> EngineLink:
    """Attach to a running engine, or start an embedded one (unless `embed` is False: an
    engine named with --engine is attached to or nothing)."""
    try:
        client = await EngineClient.connect(loaded.config.socket_path, timeout=2.0)
    except NoEngine:
        if not embed:
            raise
    else:
        await client.close()
        hello = client.hello
        return EngineLink(loaded, None, readonly, role=hello.role or "admin", user=hello.user)
    embedded = EmbeddedEngine(loaded)
    try:
        await asyncio.to_thread(embedded.start)
    except StoreLockedError:
        # another engine took the store between our probe and start: attach to it
        return EngineLink(loaded, None, readonly)
    return EngineLink(loaded, embedded, readonly)


def run_console(args: argparse.Namespace) -> int:
    loaded = loaded_config(args)
    enter_private_umask()  # an embedded engine's store and WAL are born 0600
    link = asyncio.run(open_link(loaded, readonly=bool(getattr(args, "readonly", False)),
                                 embed=getattr(args, "engine_socket", None) is None))
    try:
        tune_gc()  # see console/engine/gc_tuning.py
        FleetdeckApp(link).run()
    finally:
        if link.embedded is not None:
            link.embedded.stop()
    return 0


def as_host(app: FleetdeckApp) -> ConsoleHost:
    """The app as screens see it (mypy checks FleetdeckApp provides ConsoleHost)."""
    return app

