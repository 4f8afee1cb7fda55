"""Node: its GPUs, the processes on them (with container and job), containers, and history."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Label, Sparkline, Static

from console.engine.api.replies import FleetNode, GpuInfo, NodeHistory
from console.engine.api.requests import FleetQuery, NodeHistoryQuery
from console.screens.base import MISSING, FleetdeckScreen
from console.screens.fleet import node_state
from console.widgets import fmt
from console.widgets.keyed_table import Column, KeyedTable, Row

HISTORY_MINUTES = 30
HISTORY_POLL_S = 10.0

GPU_COLUMNS = (
    Column("index", "GPU", 3), Column("model", "Model", 16), Column("util", "Util", 14),
    Column("mem", "Memory", 13), Column("temp", "Temp", 5), Column("power", "Power", 10),
    Column("ecc", "ECC", 4), Column("health", "Health", 9), Column("alloc", "Alloc", 5),
    Column("jobs", "Jobs", 10),
)
PROC_COLUMNS = (
    Column("pid", "PID", 8), Column("gpu", "GPU", 3), Column("mem", "GPU mem", 8),
    Column("job", "Job", 6), Column("container", "Container", 12), Column("command", "Command"),
)
CONTAINER_COLUMNS = (
    Column("id", "Container", 12), Column("name", "Name", 12), Column("state", "State", 7),
    Column("cpu", "CPU%", 4), Column("mem", "Memory", 6), Column("job", "Job", 5),
    Column("image", "Image"),
)


def gpu_row(g: GpuInfo) -> Row:
    util = g.util_pct
    util_cell = fmt.bar((util or 0) / 100, 8)
    util_cell.append(f" {fmt.pct(util, 4)}", style="")
    health = Text("ok", style="green") if g.healthy else Text("UNHEALTHY", style="bold red")
    if g.healthy and g.idle:
        health = Text("idle ⚠", style="bold yellow")
    ecc = g.ecc_uncorrected or 0
    return (
        str(g.index),
        g.model or "",
        util_cell,
        f"{fmt.size(g.mem_used_bytes)}/{fmt.size(g.mem_total_bytes)}",
        "-" if g.temp_c is None else f"{g.temp_c:.0f}°C",
        f"{float(g.power_w or 0):.0f}/{float(g.power_limit_w or 0):.0f}W",
        Text(str(ecc), style="bold red" if ecc else "dim"),
        health,
        fmt.num(g.alloc_milli / 1000),
        ",".join(str(j) for j in g.jobs),
    )


def proc_key(p: Mapping[str, Any]) -> str:
    return f"{p.get('pid')}:{p.get('gpu_index')}"


def proc_row(p: Mapping[str, Any]) -> Row:
    cid = str(p.get("container_id") or "")
    return (str(p.get("pid")), str(p.get("gpu_index", "")), fmt.size(p.get("gpu_mem_used_bytes")),
            str(p.get("job_id") or "-"), cid[:12] or "-", str(p.get("command") or ""))


def container_row(c: Mapping[str, Any]) -> Row:
    return (str(c.get("id") or "")[:12], str(c.get("name") or ""),
            fmt.state_text(str(c.get("state") or "")), fmt.pct(c.get("cpu_util_pct"), 4),
            fmt.size(c.get("mem_used_bytes")), str(c.get("job_id") or "-"),
            str(c.get("image") or ""))


def info_text(n: FleetNode, now: float) -> Text:
    t = Text()
    t.append(n.name, style="bold").append("  ")
    t.append_text(node_state(n))
    if n.state_reason:
        t.append(f" ({n.state_reason})", style="dim")
    if n.cordoned:
        t.append("  cordoned", style="bold yellow")
    if n.drained_reason:
        t.append(f"  drained: {n.drained_reason}", style="bold red")
    t.append(f"   pool {n.pool or '-'}")
    labels = fmt.labels_text(n.labels)
    if labels:
        t.append(f"   labels {labels}")
    t.append("\n")
    t.append(f"CPU {n.cpu_count or '-'} cores at {fmt.pct(n.cpu_util_pct)}")
    t.append(f"   load {n.load1 if n.load1 is not None else '-'}")
    t.append(f"   memory {fmt.size(n.mem_used_bytes)}/{fmt.size(n.mem_total_bytes)}")
    t.append(f"   seen {fmt.ago(n.last_seen, now)}")
    return t


class NodeScreen(FleetdeckScreen):
    """One node in detail; Enter on a process or container opens its job."""

    TITLE_TEXT = "Node"
    CHANNEL = "node"
    CHANGING = frozenset({"cordon"})
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("enter", "open", "Open job"),
        Binding("c", "cordon", "Cordon"),
    ]

    class NodeLoaded(Message):
        """The node's entry from `fleet` (None: no such node)."""

        def __init__(self, node: FleetNode | None) -> None:
            super().__init__()
            self.node = node

    class HistoryLoaded(Message):
        """`node_history`: per-GPU and CPU samples for the last minutes."""

        def __init__(self, history: NodeHistory) -> None:
            super().__init__()
            self.history = history

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node_name = node
        self.node: FleetNode | None = None
        self._history_timer: Any = None

    def compose_body(self) -> ComposeResult:
        yield Static(self.node_name, id="node-info")
        yield KeyedTable(GPU_COLUMNS, id="gpus")
        with Horizontal(id="node-lower"):
            with Vertical():
                yield Label("Processes on GPUs", classes="section")
                yield KeyedTable(PROC_COLUMNS, id="procs")
            with Vertical():
                yield Label("Containers", classes="section")
                yield KeyedTable(CONTAINER_COLUMNS, id="containers")
        yield Label(f"History (last {HISTORY_MINUTES} min)", classes="section")
        yield Vertical(id="history")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#gpus", KeyedTable).focus()

    def where_text(self) -> str:
        return f"Node {self.node_name}"

    def on_screen_resume(self, event: Any) -> None:
        super().on_screen_resume(event)
        self.poll_history()
        if self._history_timer is None:
            self._history_timer = self.set_interval(HISTORY_POLL_S, self.poll_history)
        else:
            self._history_timer.resume()

    def on_screen_suspend(self, event: Any) -> None:
        super().on_screen_suspend(event)
        if self._history_timer is not None:
            self._history_timer.pause()

    async def poll_once(self) -> None:
        nodes = await self.fetch(FleetQuery(node=self.node_name))
        if nodes is MISSING:
            return
        match = next((n for n in nodes if n.name == self.node_name), None)
        self.post_message(self.NodeLoaded(match))

    @work(exclusive=True, group="node-history")
    async def poll_history(self) -> None:
        history = await self.fetch(NodeHistoryQuery(node=self.node_name,
                                                    minutes=HISTORY_MINUTES))
        if history is not MISSING:
            self.post_message(self.HistoryLoaded(history))

    @on(NodeLoaded)
    def show_node(self, message: NodeLoaded) -> None:
        n = message.node
        if n is None:
            self.show_notice(f"no node named {self.node_name}")
            return
        self.node = n
        self.query_one("#node-info", Static).update(info_text(n, self.fd.clock()))
        self.query_one("#gpus", KeyedTable).sync({str(g.index): gpu_row(g) for g in n.gpus})
        self.query_one("#procs", KeyedTable).sync(
            {proc_key(p): proc_row(p) for p in n.processes})
        self.query_one("#containers", KeyedTable).sync(
            {str(c.get("id")): container_row(c) for c in n.containers})

    @on(HistoryLoaded)
    def show_history(self, message: HistoryLoaded) -> None:
        box = self.query_one("#history", Vertical)
        series: list[tuple[str, str, list[float]]] = []
        cpu = message.history.cpu
        if cpu:
            series.append(("cpu", "CPU util", [float(s[1] or 0) for s in cpu]))
        gpus = message.history.gpus
        for index in sorted(gpus, key=lambda k: int(k)):
            samples = gpus[index]
            series.append((f"gpu{index}", f"GPU {index} util",
                           [float(s[1] or 0) for s in samples]))
        for key, label, data in series:
            existing = box.query(f"#spark-{key}")
            last = f"{data[-1]:.0f}%" if data else "-"
            if existing:
                existing.first(Sparkline).data = data
                box.query_one(f"#spark-label-{key}", Label).update(f"{label:<11} {last:>4}")
            else:
                box.mount(Horizontal(
                    Label(f"{label:<11} {last:>4}", id=f"spark-label-{key}",
                          classes="spark-label"),
                    Sparkline(data, id=f"spark-{key}"), classes="spark-row"))

    def action_open(self) -> None:
        """Open the job of the process or container under the cursor."""
        table = self.main_table()
        if table is None or table.id == "gpus":
            key = table.current_key if table is not None else None
            jobs: list[int] = []
            if key is not None and self.node is not None:
                for g in self.node.gpus:
                    if str(g.index) == key:
                        jobs = list(g.jobs)
            if jobs:
                self.fd.open_job(jobs[0])
            return
        key = table.current_key
        if key is None:
            return
        job = table.data_of(key).get("job", "-")
        if job and job != "-":
            self.fd.open_job(job)

    @on(KeyedTable.Drill)
    def _drill(self, message: KeyedTable.Drill) -> None:
        message.table.focus()
        self.action_open()

    def action_cordon(self) -> None:
        """Cordon this node (or uncordon it), with a reason."""
        cordoned = self.node is not None and self.node.cordoned
        self.fd.ask_cordon(self.node_name, cordoned)
