"""Job: its spec, its events and placement or pending reason (`explain`), and live logs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Input, Static, TabbedContent, TabPane

from console.engine.api.replies import Explanation, JobInfo
from console.engine.api.requests import ExplainRequest, JobsQuery, LogsRequest
from console.engine.client import failure_text
from console.screens.base import MISSING, FilterInput, FleetdeckScreen, Missing
from console.screens.jobs import job_gpus, runtime
from console.widgets import fmt
from console.widgets.keyed_table import Column, KeyedTable, Row
from console.widgets.log_view import LogView
from scheduler.policies.idle import verdict_numbers
from scheduler.states import ACTIVE, JobState

LOG_TAIL = 1000
EVENT_COLUMNS = (
    Column("ts", "Time", 19), Column("from", "From", 9), Column("to", "To", 9),
    Column("actor", "Actor", 14), Column("reason", "Reason"),
)
SPEC_ORDER = ("name", "command", "shell", "user", "project", "team", "executor", "image", "gpus",
              "gpu_models", "min_gpu_mem_bytes", "cpus", "mem_bytes", "labels", "pool", "node",
              "priority", "max_runtime_s", "env", "workdir", "retries", "array", "kind",
              "protect")


def spec_text(spec: Mapping[str, Any]) -> Text:
    t = Text()
    keys = [k for k in SPEC_ORDER if k in spec] + sorted(k for k in spec if k not in SPEC_ORDER)
    for k in keys:
        v = spec[k]
        if k.endswith("_bytes") and isinstance(v, int | float):
            shown = fmt.size(v) if v else "-"
        elif k.endswith("_s") and isinstance(v, int | float):
            shown = fmt.duration(v)
        elif isinstance(v, list | dict):
            shown = json.dumps(v) if v else "-"
        else:
            shown = "-" if v in (None, "") else str(v)
        t.append(f"{k:<18}", style="bold").append(shown + "\n")
    return t


def event_row(e: Mapping[str, Any]) -> Row:
    ts = fmt.epoch(e.get("ts"))
    return (fmt.clock_text(ts), str(e.get("from_state") or "-"),
            fmt.state_text(str(e.get("to_state") or "")), str(e.get("actor") or ""),
            str(e.get("reason") or ""))


def where_text(info: Explanation, now: float) -> Text:
    """Placement for a placed job; the pending reason (and reserved start) for a waiting one."""
    t = Text()
    placement = info.placement
    if placement:
        t.append("placed on ", style="bold")
        t.append(f"{placement.get('node')}", style="bold cyan")
        idx = placement.get("gpu_indices") or []
        if idx:
            t.append(f"  GPUs {','.join(str(i) for i in idx)}")
            milli = placement.get("gpu_milli")
            if milli and int(milli) < 1000:
                t.append(f" ({fmt.num(int(milli) / 1000)} of a GPU)")
        if placement.get("executor"):
            t.append(f"  via {placement['executor']}")
    if info.reason:
        if t:
            t.append("   ")
        t.append(info.reason, style="yellow" if not placement else "dim")
    reserved = info.reserved_start
    if reserved is not None:
        t.append(f"   reserved start in {fmt.duration(reserved - now)}", style="cyan")
    usage = info.usage
    if usage:
        cpu = usage.cpu_util_pct
        t.append("\nprocesses ", style="bold").append(
            f"{usage.procs} on {usage.node}  CPU "
            f"{'-' if cpu is None else f'{cpu:.0f}%'}  "
            f"RSS {fmt.size(usage.rss_bytes)}")
    idle = info.idle
    if idle:
        t.append("\nidle policy ", style="bold").append(
            idle.summary or "", style="yellow" if idle.status in ("idle", "no_data") else "")
        numbers = verdict_numbers(msgspec.to_builtins(idle))
        if numbers:
            t.append(f"\n  {numbers}", style="dim")
    return t


class JobScreen(FleetdeckScreen):
    """One job: p spec, e events/explain, l logs (f follow, / search)."""

    TITLE_TEXT = "Job"
    CHANNEL = "job"
    POLL_S = 2.0
    CHANGING = frozenset({"stop"})
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("p", "section('spec')", "Spec", tooltip="The job's spec: every field as submitted"),
        Binding("e", "section('events')", "Explain",
                tooltip="Explain: its events and why it is placed, waiting or stopped"),
        Binding("l", "section('logs')", "Logs",
                tooltip="Logs: its output, live (f follows, / searches)"),
        Binding("f", "follow", "Follow"),
        Binding("x", "stop", "Stop"),
    ]

    class Explained(Message):
        """The engine's `explain` for this job."""

        def __init__(self, info: Explanation) -> None:
            super().__init__()
            self.info = info

    class RowLoaded(Message):
        """The job's row from `jobs` (spec, user, GPUs...)."""

        def __init__(self, row: JobInfo | None) -> None:
            super().__init__()
            self.row = row

    class LogChunk(Message):
        """Text from the job's log stream."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class LogEnded(Message):
        """The log stream ended (job finished, or follow off)."""

    def __init__(self, job_id: int, *, section: str = "spec") -> None:
        super().__init__()
        self.job_id = job_id
        self.section = section
        self.row: JobInfo | None = None
        self.info: Explanation | None = None
        self._logs_started = False
        self._streaming = False

    def where_text(self) -> str:
        return f"Job {self.job_id}"

    def compose_body(self) -> ComposeResult:
        yield Static(f"job {self.job_id}", id="job-head")
        yield Static("", id="job-where")
        with TabbedContent(initial=self.section, id="job-tabs"):
            with TabPane("Spec", id="spec"):
                yield VerticalScroll(Static("", id="job-spec"))
            with TabPane("Events", id="events"):
                yield KeyedTable(EVENT_COLUMNS, id="events-table")
            with TabPane("Logs", id="logs"):
                yield Static("", id="log-status")
                yield LogView(id="log")

    def on_mount(self) -> None:
        super().on_mount()
        cached = next((j for j in self.fd.last_jobs if j.id == self.job_id), None)
        if cached is not None:
            self.post_message(self.RowLoaded(cached))
        else:
            self.load_row()
        self.action_section(self.section)

    # -- data ------------------------------------------------------------------------------
    async def poll_once(self) -> None:
        """`explain` and, while the job is live, its row: side by side on two connections."""
        live = self.row is None or self.row.state in (JobState.QUEUED, *ACTIVE)
        explain = self.fetch(ExplainRequest(job=self.job_id))
        if live:
            info, rows = await asyncio.gather(explain, self._rows(f"{self.CHANNEL}-row"))
        else:
            info, rows = await explain, MISSING
        if info is not MISSING:
            self.post_message(self.Explained(info))
        if rows is not MISSING:
            self.post_message(self.RowLoaded(next((j for j in rows if j.id == self.job_id),
                                                  None)))

    async def _rows(self, channel: str | None = None) -> list[JobInfo] | Missing:
        """The job's row from `jobs` (a list of one, or none)."""
        return await self.fetch(JobsQuery(ids=[self.job_id], limit=1), channel=channel)

    @work(exclusive=True, group="job-row")
    async def load_row(self) -> None:
        rows = await self._rows()
        if rows is not MISSING:
            self.post_message(self.RowLoaded(next((j for j in rows if j.id == self.job_id),
                                                  None)))

    @work(exclusive=True, group="job-logs")
    async def stream_logs(self, follow: bool) -> None:
        try:
            async for chunk in self.fd.remote.stream(LogsRequest(job=self.job_id, tail=LOG_TAIL,
                                                                 follow=follow)):
                self.post_message(self.LogChunk(chunk))
        except Exception as e:
            text = failure_text(e, "logs")
            self.post_message(self.LogChunk(f"[{text}]\n"))
        self.post_message(self.LogEnded())

    @on(Explained)
    def show_explain(self, message: Explained) -> None:
        self.info = message.info
        self.query_one("#job-where", Static).update(where_text(message.info, self.fd.clock()))
        self.query_one("#events-table", KeyedTable).sync(
            {str(i): event_row(e) for i, e in enumerate(message.info.events)})
        if self.row is not None and message.info.state:
            self.row = msgspec.structs.replace(self.row, state=message.info.state)
            self._show_head()

    @on(RowLoaded)
    def show_row(self, message: RowLoaded) -> None:
        if message.row is None:
            if self.row is None:
                self.show_notice(f"no job {self.job_id}")
            return
        self.row = message.row
        self._show_head()
        self.query_one("#job-spec", Static).update(spec_text(message.row.spec))

    def _show_head(self) -> None:
        j = self.row
        if j is None:
            return
        t = Text()
        t.append(f"job {self.job_id} ", style="bold").append(j.name or "")
        t.append("  ").append_text(fmt.state_text(j.state or ""))
        t.append(f"   {j.user or '-'}/{j.project or '-'}")
        t.append(f"   GPUs {job_gpus(j)}")
        if j.node:
            t.append(f" on {j.node}")
            if j.gpu_indices:
                t.append(f" [{','.join(str(i) for i in j.gpu_indices)}]")
        t.append("   runtime ").append_text(runtime(j, self.fd.clock()))
        if j.exit_code is not None:
            t.append(f"   exit {j.exit_code}", style="bold")
        self.query_one("#job-head", Static).update(t)

    @on(LogChunk)
    def _log_chunk(self, message: LogChunk) -> None:
        self.query_one(LogView).append(message.text)

    @on(LogEnded)
    def _log_ended(self, message: LogEnded) -> None:
        self._streaming = False
        self.query_one(LogView).flush_partial()
        self._log_status()

    def _log_status(self) -> None:
        log = self.query_one(LogView)
        parts = ["following" if self._streaming else "not following"]
        if log.search:
            parts.append(f"search {log.search!r}: {log.match_count} lines")
        parts.append("f: follow on/off   /: search")
        self.query_one("#log-status", Static).update("   ".join(parts))

    # -- actions ---------------------------------------------------------------------------
    def action_section(self, section: str) -> None:
        """Show the spec, the events (explain) or the logs."""
        self.query_one(TabbedContent).active = section
        if section == "logs" and not self._logs_started:
            self._logs_started = True
            self._start_logs()
        if section == "events":
            self.query_one("#events-table", KeyedTable).focus()
        elif section == "logs":
            self.query_one(LogView).focus()

    @on(TabbedContent.TabActivated)
    def _tab(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane.id or ""
        if pane == "logs" and not self._logs_started:
            self._logs_started = True
            self._start_logs()

    def _start_logs(self) -> None:
        log = self.query_one(LogView)
        log.reset()
        self._streaming = log.follow
        self.stream_logs(log.follow)
        self._log_status()

    def action_follow(self) -> None:
        """Follow the log as it grows (on/off)."""
        log = self.query_one(LogView)
        log.follow = not log.follow
        if not log.follow:
            self.workers.cancel_group(self, "job-logs")
            self._streaming = False
        else:
            self._start_logs()
        self._log_status()

    def action_filter(self) -> None:
        """Search the logs (on the Logs tab) or filter the events."""
        if self.query_one(TabbedContent).active == "logs":
            box = self.query_one("#filter", FilterInput)
            box.display = True
            box.placeholder = "search the log (Esc clears)"
            box.value = self.query_one(LogView).search
            box.focus()
            return
        super().action_filter()

    def apply_filter(self, text: str) -> None:
        if self.query_one(TabbedContent).active == "logs":
            self.filter_text = text
            self.query_one(LogView).search = text
            self._log_status()
            return
        super().apply_filter(text)

    @on(Input.Submitted, "#filter")
    def _search_done(self, event: Input.Submitted) -> None:
        if self.query_one(TabbedContent).active == "logs":
            event.stop()
            event.prevent_default()
            self.query_one(LogView).focus()

    def focus_main(self) -> None:
        if self.query_one(TabbedContent).active == "logs":
            self.query_one(LogView).focus()
        else:
            super().focus_main()

    def action_stop(self) -> None:
        """Stop this job (asks first)."""
        shown = self.row or self.info
        name = (shown.name or "") if shown is not None else ""
        self.fd.ask_stop(self.job_id, name)
