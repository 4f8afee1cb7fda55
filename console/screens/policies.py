"""Policies: idle GPU jobs with their evidence (snooze, stop now), burst nodes with their cost,
and cordoned or drained nodes (uncordon)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Label, Static

from console.engine.api.replies import IdleEntry, PoliciesReply
from console.engine.api.requests import PoliciesQuery
from console.screens.base import MISSING, FleetdeckScreen
from console.widgets import fmt
from console.widgets.keyed_table import Column, KeyedTable, Row

IDLE_COLUMNS = (
    Column("job", "Job", 6), Column("name", "Name", 18), Column("user", "User", 10),
    Column("node", "Node", 14), Column("state", "State", 9), Column("since", "Since", 10),
    Column("window", "Window", 7), Column("mean", "Mean", 5), Column("max", "Max", 5),
    Column("mem", "GPU mem held", 12), Column("cpu", "CPU%", 5),
)
BURST_COLUMNS = (
    Column("instance", "Instance", 20), Column("provider", "Provider", 10),
    Column("node", "Node", 14), Column("state", "State", 12), Column("gpus", "GPUs", 10),
    Column("price", "$/hour", 8), Column("cost", "Cost", 10), Column("age", "Up", 9),
)
CORDON_COLUMNS = (Column("node", "Node", 18), Column("state", "State", 9),
                  Column("reason", "Reason"))


def idle_row(w: IdleEntry, now: float) -> Row:
    ev: Mapping[str, Any] = w.evidence or {}
    since = w.since
    return (
        str(w.job), w.name or "", w.user or "",
        w.node or "", fmt.state_text(w.state or "warned"),
        fmt.duration(now - since) if since is not None else "-",
        fmt.duration(ev.get("window_s")), fmt.pct(ev.get("mean_util_pct"), 4),
        fmt.pct(ev.get("max_util_pct"), 4), fmt.size(ev.get("mem_held_bytes")),
        fmt.pct(ev.get("cpu_util_pct"), 4),
    )


def burst_row(b: Mapping[str, Any], now: float) -> Row:
    launched = fmt.epoch(b.get("launched_at"))
    count = b.get("gpu_count") or 0
    return (
        str(b.get("instance_id") or b.get("request_id")), str(b.get("provider") or ""),
        str(b.get("node") or "-"),
        fmt.state_text(str(b.get("state") or "")),
        f"{count} x {b.get('gpu_model') or '?'}" if count else "-",
        fmt.money(b.get("price_per_hour")), fmt.money(b.get("cost")),
        fmt.duration(now - launched) if launched is not None else "-",
    )


class PoliciesScreen(FleetdeckScreen):
    """What the policies are doing: idle warnings, burst nodes, cordoned nodes."""

    TITLE_TEXT = "Policies"
    CHANNEL = "policies"
    CHANGING = frozenset({"snooze", "stop", "uncordon"})
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open"),
        Binding("z", "snooze", "Snooze"),
        Binding("x", "stop", "Stop now"),
        Binding("u", "uncordon", "Uncordon"),
    ]

    class PoliciesLoaded(Message):
        """The engine's `policies` reply."""

        def __init__(self, policies: PoliciesReply) -> None:
            super().__init__()
            self.policies = policies

    def __init__(self) -> None:
        super().__init__()
        self.idle: dict[str, IdleEntry] = {}
        self.burst: dict[str, dict[str, Any]] = {}

    def compose_body(self) -> ComposeResult:
        yield Label("Idle GPU jobs  [dim]z snooze · x stop now · Enter open[/]",
                    classes="section", id="idle-label")
        yield KeyedTable(IDLE_COLUMNS, id="idle")
        yield Static("", id="idle-unjudged")
        yield Static("", id="snoozed")
        yield Label("Burst nodes", classes="section", id="burst-label")
        yield KeyedTable(BURST_COLUMNS, id="burst")
        yield Label("Cordoned and drained nodes  [dim]u uncordon[/]", classes="section",
                    id="cordon-label")
        yield KeyedTable(CORDON_COLUMNS, id="cordoned")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#snoozed").display = False
        self.query_one("#idle-unjudged").display = False
        self.query_one("#idle", KeyedTable).focus()

    def _show_unjudged(self, note: str | None, jobs: list[dict[str, Any]]) -> None:
        """The policy's blind spot: a note when it can judge no job, the jobs it cannot."""
        box = self.query_one("#idle-unjudged", Static)
        t = Text()
        if note:
            t.append(note, style="bold yellow")
        for j in jobs[:8]:
            t.append("\n" if t else "").append(f"job {j.get('job')}: ", style="bold")
            t.append(str(j.get("reason") or ""), style="yellow")
        if len(jobs) > 8:
            t.append(f"\n... {len(jobs) - 8} more (fleetdeck policies)", style="dim")
        box.update(t)
        box.display = bool(t)

    async def poll_once(self) -> None:
        data = await self.fetch(PoliciesQuery())
        if data is not MISSING:
            self.post_message(self.PoliciesLoaded(data))

    @on(PoliciesLoaded)
    def show(self, message: PoliciesLoaded) -> None:
        self.show_notice("")
        p = message.policies
        now = self.fd.clock()
        self.idle = {str(w.job): w for w in p.idle}
        self.burst = {str(b.get("instance_id") or b.get("request_id")): b for b in p.burst}
        self.query_one("#idle", KeyedTable).sync(
            {k: idle_row(w, now) for k, w in self.idle.items()})
        self._show_unjudged(p.idle_note, p.idle_unjudged)
        self.query_one("#burst", KeyedTable).sync(
            {k: burst_row(b, now) for k, b in self.burst.items()})
        nodes: dict[str, Row] = {}
        for c in p.cordoned:
            nodes[c.node] = (c.node, Text("cordoned", style="yellow"), c.reason or "")
        for d in p.drained:
            gpus = ",".join(str(g) for g in d.get("gpus") or [])
            reason = str(d.get("reason") or "") + (f" (GPUs {gpus})" if gpus else "")
            nodes[str(d.get("node"))] = (str(d.get("node")), Text("drained", style="bold red"),
                                         reason)
        self.query_one("#cordoned", KeyedTable).sync(nodes)
        snoozed = [f"job {z.job} by {z.user} until "
                   f"{fmt.clock_text(fmt.epoch(z.until))} ({z.reason})" for z in p.snoozed]
        box = self.query_one("#snoozed", Static)
        box.update("snoozed: " + "; ".join(snoozed) if snoozed else "")
        box.display = bool(snoozed)
        total = sum(float(b.get("cost") or 0) for b in self.burst.values())
        self.query_one("#burst-label", Label).update(
            f"Burst nodes  [dim]{len(self.burst)} instances, {fmt.money(total)} so far[/]")

    def _table_key(self, table_id: str) -> str | None:
        table = self.main_table()
        if table is None or table.id != table_id:
            return None
        return table.current_key

    def action_open(self) -> None:
        """Open the job (idle) or node (burst, cordoned) under the cursor."""
        table = self.main_table()
        if table is None or (key := table.current_key) is None:
            return
        if table.id == "idle":
            self.fd.open_job(key)
        elif table.id == "burst":
            node = self.burst.get(key, {}).get("node")
            if node:
                self.fd.open_node(str(node))
        else:
            self.fd.open_node(key)

    @on(KeyedTable.Drill)
    def _drill(self, message: KeyedTable.Drill) -> None:
        message.table.focus()
        self.action_open()

    def action_snooze(self) -> None:
        """Snooze idle stopping of the job under the cursor (hours and a reason)."""
        key = self._table_key("idle")
        if key is None:
            self.notify("select an idle job first", timeout=3)
            return
        self.fd.ask_snooze(int(key), self._idle_name(key))

    def action_stop(self) -> None:
        """Stop the idle job under the cursor now (asks first)."""
        key = self._table_key("idle")
        if key is None:
            self.notify("select an idle job first", timeout=3)
            return
        self.fd.ask_stop(int(key), self._idle_name(key))

    def _idle_name(self, key: str) -> str:
        w = self.idle.get(key)
        return (w.name or "") if w is not None else ""

    def action_uncordon(self) -> None:
        """Uncordon a node: the one under the cursor of the cordoned table, focused or not."""
        table = self.query_one("#cordoned", KeyedTable)
        key = table.current_key
        if key is None:
            self.notify("no cordoned node", timeout=3)
            return
        table.focus()
        self.fd.ask_cordon(key, True)
