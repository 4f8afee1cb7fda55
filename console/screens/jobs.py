"""Jobs: the queue, running and finished jobs; filter by user, project, state, pool with `/`."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from functools import lru_cache
from itertools import pairwise
from operator import attrgetter
from typing import Any, ClassVar, TypeVar

import msgspec
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Static

from console.engine.api.replies import FleetNode, JobInfo, PoliciesReply
from console.engine.api.requests import JobsQuery, PoliciesQuery, Request
from console.fleet_mirror import FleetMirror
from console.screens.base import MISSING, FleetdeckScreen, Missing
from console.screens.jobs_window import FULL_EVERY, LIVE_STATES, ids_ahead, ids_to_ask, merge
from console.widgets import fmt
from console.widgets.keyed_table import Cell, Column, KeyedTable, Row
from scheduler.job_match import engine_part
from scheduler.placement.reasons import WAITING_PREFIX
from scheduler.states import ACTIVE, TERMINAL, JobState

VIEWS: dict[str, tuple[JobState, ...]] = {
    "all": (),
    "queue": (JobState.QUEUED, JobState.STARTING),
    "running": ACTIVE,
    "finished": TERMINAL,
}
JOBS_LIMIT = 10_000
# one poll asks for the newest page only: 2,000 rows every 2 s keep the console light on a
# store with months of history (the engine pages; the palette knows older jobs by name)
JOBS_PAGE = 2_000
COLUMNS = (
    Column("id", "ID", 7, priority=9, grow=True),
    Column("name", "Name", 18, priority=7, grow=True),
    Column("user", "User", 8, priority=8, grow=True),
    Column("project", "Project", 9, priority=3, grow=True),
    Column("state", "State", 9, priority=9), Column("gpus", "GPUs", 4, priority=6),
    Column("node", "Node", 10, priority=4, grow=True),
    Column("pool", "Pool", 7, priority=2, grow=True),
    Column("runtime", "Runtime", 8, priority=6), Column("util", "Util", 4, priority=3),
    Column("idle", "Idle", 8, priority=2), Column("reason", "Reason", 16, priority=7, grow=True),
)
GpuUtil = Mapping[tuple[str, int], float]
R = TypeVar("R")


def runtime(job: JobInfo, now: float) -> Text:
    """Running: time since start; finished: start to end; waiting: time queued (dim)."""
    text, waiting = runtime_text(job, now)
    return _runtime_cell(text, waiting) if waiting else Text(text)


def runtime_text(job: JobInfo, now: float) -> tuple[str, bool]:
    """(runtime, waiting): waiting means the time since submission of a job not started."""
    started = fmt.epoch(job.started_at)
    ended = fmt.epoch(job.ended_at)
    if started is not None:  # the node's end can precede the engine's start: a short job
        return fmt.duration(max(0.0, (ended if ended is not None else now) - started)), False
    submitted = fmt.epoch(job.submitted_at)
    if submitted is not None and ended is None:
        return fmt.duration(now - submitted), True
    return "-", False


@lru_cache(maxsize=4096)
def _runtime_cell(text: str, waiting: bool) -> Text:
    return Text(text, style="dim italic" if waiting else "")


@lru_cache(maxsize=64)
def _idle_cell(warn: str) -> Text:
    return Text("⚠ " + warn, style=fmt.STATE_STYLE.get(warn, "yellow")) if warn else Text("")


def job_util(job: JobInfo, util: GpuUtil) -> float | None:
    node = job.node or ""
    values = [util[(node, i)] for i in job.gpu_indices if (node, i) in util]
    return sum(values) / len(values) if values else None


def job_gpus(job: JobInfo) -> str:
    return fmt.num(job.gpus) if job.gpus else "-"


LIVE_COLUMNS = ("runtime", "util")
# what job_row reads: equal values, equal row
SHOWN_FIELDS = attrgetter("state", "name", "user", "project", "gpus", "node", "pool", "reason",
                          "exit_code")


def job_row(job: JobInfo, idle: Mapping[str, str]) -> Row:
    """The job's row; its live cells (runtime, util) are placeholders, see `live_cells`."""
    state = job.state or ""
    reason = job.reason or ""
    code = job.exit_code
    ended = state in (JobState.SUCCEEDED, JobState.FAILED)
    if ended and code is not None and reason != f"exit {code}":
        reason = f"exit {code}" + (f": {reason}" if reason else "")
    elif state == JobState.QUEUED:
        reason = reason.removeprefix(WAITING_PREFIX)  # the State column says it waits
    key = str(job.id)
    return (key, job.name or "", job.user or "", job.project or "", fmt.state_text(state),
            job_gpus(job), job.node or "-", job.pool or "", "", "",
            _idle_cell(idle.get(key, "")), reason)


def live_cells(job: JobInfo, now: float, util: GpuUtil) -> tuple[Cell, Cell]:
    """Runtime and GPU utilization: change on every refresh, drawn only when on screen."""
    text, waiting = runtime_text(job, now)
    u = job_util(job, util) if job.state == JobState.RUNNING else None
    return (_runtime_cell(text, waiting) if waiting else text,
            fmt.pct_text(u) if u is not None else "-")


def gpu_util_index(nodes: list[FleetNode]) -> dict[tuple[str, int], float]:
    return {(n.name, g.index): g.util_pct for n in nodes for g in n.gpus
            if g.util_pct is not None}


class JobsScreen(FleetdeckScreen):
    """All jobs; t cycles all/queue/running/finished, Enter opens a job."""

    TITLE_TEXT = "Jobs"
    CHANNEL = "jobs"
    CHANGING = frozenset({"stop"})
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open"),
        Binding("t", "view", "View"),
        Binding("l", "logs", "Logs"),
        Binding("e", "explain", "Explain"),
        Binding("x", "stop", "Stop"),
    ]

    class JobsLoaded(Message):
        """`jobs` rows, plus GPU utilization and idle warnings when the engine has them."""

        def __init__(self, jobs: list[JobInfo], util: dict[tuple[str, int], float],
                     idle: dict[str, str], view: str, match: str = "", *,
                     full: bool = True) -> None:
            super().__init__()
            self.full = full  # a whole page (else live jobs merged into the last one)
            self.view = view
            self.match = match  # the filter terms the engine matched
            self.jobs = jobs
            self.util = util
            self.idle = idle

    def __init__(self) -> None:
        super().__init__()
        self.view = "all"
        self.capped = False  # the last poll filled a whole page: older jobs are not shown
        self.match = ""  # the filter's terms the engine matches (every job, not a page)
        self._polls = 0  # polls of this screen: every FULL_EVERY-th asks for a whole page
        self._full_next = True  # the next poll asks for a whole page (Ctrl+R, a new filter)
        self.jobs: dict[str, JobInfo] = {}
        self.fleet_copy = FleetMirror()  # for the Util column, kept by deltas
        self._util: dict[tuple[str, int], float] = {}
        self._idle: dict[str, str] = {}
        # last shown fields, idle state and row per job: an unchanged job reuses its row
        self._rows: dict[str, tuple[tuple[Any, ...], str, Row]] = {}

    def compose_body(self) -> ComposeResult:
        yield Static(self._tabs_text(), id="job-views")
        yield KeyedTable(COLUMNS, id="jobs-table", live_columns=LIVE_COLUMNS, live=self.live)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(KeyedTable).focus()
        if self.fd.limited:  # a member's console opens on their own jobs
            self.apply_filter(f"user:{self.fd.user}")

    def _tabs_text(self) -> Text:
        t = Text()
        for name in VIEWS:
            t.append(f" {name} ", style="reverse bold" if name == self.view else "dim")
            t.append(" ")
        t.append("   t: next view   /: filter (user:NAME project: state: pool:)", style="dim")
        if self.capped:
            which = "matching " if self.match else ""
            t.append(f"   newest {JOBS_PAGE:,} {which}shown", style="yellow")
        return t

    async def poll_once(self) -> None:
        """`jobs` for the view; while jobs run, GPU utilization (`fleet`) and idle warnings
        (`policies`) too, asked side by side on connections of their own."""
        view, match = self.view, self.match
        query = JobsQuery(limit=JOBS_PAGE, states=list(VIEWS[view]), match=match or None)
        full = view != "all" or self._full_next or self._polls % FULL_EVERY == 0
        self._full_next = False  # asked again while this poll runs: the next one is full
        self._polls += 1
        running = any(j.state == JobState.RUNNING for j in self.jobs.values())
        jobs, fleet, policies = await asyncio.gather(
            self._page(query) if full else self._live_jobs(query),
            self._extra(running, self._fleet()), self._extra(running, self._policies()))
        if jobs is MISSING:
            return
        if fleet is MISSING and any(j.state == JobState.RUNNING for j in jobs):
            fleet, policies = await asyncio.gather(self._fleet(), self._policies())
        util: dict[tuple[str, int], float] = {}
        idle: dict[str, str] = {}
        if fleet is not MISSING:
            util = gpu_util_index(fleet)
        if policies is not MISSING:
            idle = {str(w.job): w.state or "warned" for w in policies.idle}
        self.post_message(self.JobsLoaded(jobs, util, idle, view, match, full=full))

    async def _page(self, query: JobsQuery) -> list[JobInfo] | Missing:
        return await self.fetch(query)

    async def _fleet(self) -> list[FleetNode] | Missing:
        """GPU utilization for the Util column, on a connection of its own: what changed
        since the last poll (`fleet_delta`), merged into this screen's copy."""
        delta = await self.fetch(self.fleet_copy.query(),
                                 channel=f"{self.CHANNEL}-fleet")
        if delta is MISSING:
            return MISSING
        self.fleet_copy.apply(delta)
        return self.fleet_copy.by_name()

    async def _policies(self) -> PoliciesReply | Missing:
        """Idle warnings for the Idle column, on a connection of its own."""
        return await self.fetch_quiet(PoliciesQuery(), channel=f"{self.CHANNEL}-policies")

    async def _live_jobs(self, query: JobsQuery) -> list[JobInfo] | Missing:
        """The "all" view between full pages (jobs_window.py): the live jobs, and by id the
        ones that left the live set or were born and ended since the last poll."""
        shown = self.jobs
        live = await self.fetch(msgspec.structs.replace(query, states=list(LIVE_STATES)))
        if live is MISSING:
            return MISSING
        ask = ids_to_ask(shown, live)
        if ask is None:
            return await self.fetch(query)
        ids = [*ask, *ids_ahead(shown, live)]
        found = await self.fetch(JobsQuery(ids=ids, match=query.match))
        if found is MISSING:
            return MISSING
        return merge(shown, live, ask, found, JOBS_PAGE)

    @staticmethod
    async def _extra(wanted: bool, call: Coroutine[Any, Any, R | Missing]) -> R | Missing:
        """Await `call` only when `wanted` (else close it unstarted): MISSING when not."""
        if wanted:
            return await call
        call.close()
        return MISSING

    async def fetch_quiet(self, request: Request[R], *, channel: str) -> R | Missing:
        """Like fetch, but an engine without the method just means no data for that column."""
        try:
            return await self.fd.remote.call(request, channel=channel)
        except Exception:
            return MISSING

    @on(JobsLoaded)
    def show_jobs(self, message: JobsLoaded) -> None:
        if message.view != self.view or message.match != self.match:
            return  # asked before the view or filter changed; the next poll asks anew
        self.show_notice("")
        if message.full and self.capped != (len(message.jobs) >= JOBS_PAGE):
            self.capped = not self.capped
            self.query_one("#job-views", Static).update(self._tabs_text())
        ordered = message.jobs  # the engine answers newest first; sort only if not
        if any(a.id < b.id for a, b in pairwise(ordered)):
            ordered = sorted(ordered, key=lambda j: -j.id)
        self.jobs = {str(j.id): j for j in ordered}
        if not message.match:  # the palette's names: the newest jobs, unfiltered
            self.fd.last_jobs = ordered
        self._util, self._idle = message.util, message.idle
        table = self.query_one(KeyedTable)
        table.sync(self.rows_for())
        table.refresh_live()

    def rows_for(self) -> dict[str, Row]:
        """Rows for the jobs, reusing last refresh's row object when the fields the row shows
        and the idle warning are unchanged (a tuple comparison, no formatting)."""
        old, new = self._rows, {}
        rows: dict[str, Row] = {}
        idle = self._idle
        for key, job in self.jobs.items():
            hit = old.get(key)
            warn = idle.get(key, "")
            shown = SHOWN_FIELDS(job)
            if hit is not None and hit[1] == warn and hit[0] == shown:
                new[key] = hit
            else:
                new[key] = (shown, warn, job_row(job, idle))
            rows[key] = new[key][2]
        self._rows = new
        return rows

    def live(self, key: str) -> tuple[Cell, ...]:
        job = self.jobs.get(key)
        if job is None:
            return ("", "")
        return live_cells(job, self.fd.clock(), self._util)

    def apply_filter(self, text: str) -> None:
        """Filter the table now, and ask the engine for every job matching the filter's
        job terms (a filter finds jobs beyond the newest page)."""
        super().apply_filter(text)
        match = engine_part(text)
        if match != self.match:
            self.match = match
            self._full_next = True
            self.refresh_data()

    def action_view(self) -> None:
        """Cycle the view: all, queue, running, finished."""
        names = list(VIEWS)
        self.view = names[(names.index(self.view) + 1) % len(names)]
        self.query_one("#job-views", Static).update(self._tabs_text())
        self._full_next = True
        self.refresh_data()

    def refresh_data(self) -> None:
        """Poll now; asked for (Ctrl+R, after an action), it reads a whole page."""
        self._full_next = True
        super().refresh_data()

    def timed_refresh(self) -> None:
        super().refresh_data()

    def current(self) -> JobInfo | None:
        key = self.query_one(KeyedTable).current_key
        return self.jobs.get(key) if key is not None else None

    def action_open(self) -> None:
        """Open the job under the cursor (spec, events, logs)."""
        job = self.current()
        if job is not None:
            self.fd.open_job(job.id)

    @on(KeyedTable.Drill)
    def _drill(self, message: KeyedTable.Drill) -> None:
        self.fd.open_job(message.key)

    def action_logs(self) -> None:
        """Open the job's live logs."""
        job = self.current()
        if job is not None:
            self.fd.open_job(job.id, section="logs")

    def action_explain(self) -> None:
        """Why the job is where it is: events, placement or pending reason."""
        job = self.current()
        if job is not None:
            self.fd.open_job(job.id, section="events")

    def action_stop(self) -> None:
        """Stop the job under the cursor (asks first)."""
        job = self.current()
        if job is not None:
            self.fd.ask_stop(job.id, job.name or "")
