"""Fleet: one row per node, or (h) a GPU heatmap with one cell per GPU."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Static

from console.engine.api.replies import FleetNode
from console.fleet_mirror import FleetMirror
from console.screens.base import MISSING, FleetdeckScreen
from console.widgets import fmt
from console.widgets.heatmap import GpuHeatmap, HeatCell, HeatRow
from console.widgets.keyed_table import Cell, Column, KeyedTable, Row

COLUMNS = (
    Column("node", "Node", 16, priority=9, grow=True),
    Column("state", "State", 11, priority=9),
    Column("pool", "Pool", 8, priority=3, grow=True),
    Column("labels", "Labels", 14, priority=1, grow=True),
    Column("cpu", "CPU%", 4, priority=6),
    Column("mem", "Memory", 11, priority=4),
    Column("gpus", "GPUs", 6, priority=8),
    Column("util", "GPU util", 8, priority=8),
    Column("gpumem", "GPU mem", 11, priority=5),
    Column("power", "Power", 10, priority=2),
    Column("jobs", "Jobs", 4, priority=4),
    Column("seen", "Seen", 7, priority=3),
)
LEGEND = ("[b]GPU heatmap[/b]  colour = utilization  "
          "[on #3a4a6b]  [/] <5%  [on #2f7fbf]  [/] <30%  [on #3fae5a]  [/] <60%  "
          "[on #d6a21e]  [/] <85%  [on #d9442b]  [/] hot   "
          "▪ allocated   [b #ffd54a]![/] allocated but idle   [b white on #b00020]✕[/] unhealthy")


def node_state(n: FleetNode) -> Text:
    extra = " ⊘" if n.cordoned else (" ⚕" if n.drained_reason else "")
    return fmt.state_text(n.state or "unknown", extra)


LIVE_COLUMNS = ("cpu", "mem", "util", "gpumem", "power", "seen")


def node_row(n: FleetNode) -> Row:
    """One Fleet table row from a `fleet` node; the live columns (which move on every
    sample) are placeholders, see `node_live`."""
    count = len(n.gpus)
    alloc = sum(float(g.alloc_milli) for g in n.gpus) / 1000
    return (
        n.name, node_state(n), n.pool or "",
        fmt.labels_text(n.labels), "", "",
        f"{fmt.num(alloc)}/{count}" if count else "-", "", "", "",
        str(len(n.jobs)), "",
    )


def node_live(n: FleetNode, now: float) -> tuple[Cell, ...]:
    """CPU %, memory, GPU utilization blocks, GPU memory, power and last seen."""
    gpus = n.gpus
    mem_used = sum(g.mem_used_bytes or 0 for g in gpus)
    mem_total = sum(g.mem_total_bytes or 0 for g in gpus)
    power = sum(float(g.power_w or 0) for g in gpus)
    limit = sum(float(g.power_limit_w or 0) for g in gpus)
    last_seen = n.last_seen
    return (
        fmt.pct_text(n.cpu_util_pct),
        f"{fmt.size(n.mem_used_bytes)}/{fmt.size(n.mem_total_bytes)}",
        fmt.gpu_spark([g.util_pct for g in gpus]) if gpus else "-",
        f"{fmt.size(mem_used)}/{fmt.size(mem_total)}" if gpus else "-",
        f"{power:.0f}/{limit:.0f}W" if gpus else "-",
        fmt.duration(now - last_seen) if last_seen is not None else "-",
    )


def heat_row(n: FleetNode) -> HeatRow:
    cells = tuple(HeatCell(util_pct=g.util_pct, allocated=bool(g.alloc_milli), idle=g.idle,
                           healthy=g.healthy) for g in n.gpus)
    return HeatRow(n.name, n.state or "unknown", cells)


class FleetScreen(FleetdeckScreen):
    """Every node with its CPU, memory and GPU use; Enter opens the node."""

    TITLE_TEXT = "Fleet"
    CHANNEL = "fleet"
    CHANGING = frozenset({"cordon"})
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open node"),
        Binding("h", "heatmap", "Heatmap"),
        Binding("c", "cordon", "Cordon"),
    ]

    class FleetLoaded(Message):
        """The engine's `fleet` reply."""

        def __init__(self, nodes: list[FleetNode]) -> None:
            super().__init__()
            self.nodes = nodes

    def __init__(self) -> None:
        super().__init__()
        self.nodes: dict[str, FleetNode] = {}
        self.mirror = FleetMirror()  # the engine's fleet, kept by deltas
        self.heatmap_mode = False

    def compose_body(self) -> ComposeResult:
        yield KeyedTable(COLUMNS, id="fleet-table", live_columns=LIVE_COLUMNS, live=self.live,
                         sorter=self.sort_number)
        yield Static(LEGEND, id="legend")
        yield GpuHeatmap(id="heatmap")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#legend").display = False
        self.query_one(GpuHeatmap).display = False
        self.query_one(KeyedTable).focus()

    async def poll_once(self) -> None:
        """Only what changed since the last answer (`fleet_delta`), merged into the copy."""
        delta = await self.fetch(self.mirror.query())
        if delta is not MISSING:
            self.mirror.apply(delta)
            self.post_message(self.FleetLoaded(self.mirror.by_name()))

    @on(FleetLoaded)
    def show_fleet(self, message: FleetLoaded) -> None:
        self.show_notice("")
        self.nodes = {n.name: n for n in message.nodes}
        self.fd.last_fleet = message.nodes
        self.render_view()

    def render_view(self) -> None:
        if self.heatmap_mode:
            self.query_one(GpuHeatmap).rows = tuple(heat_row(n) for n in self.nodes.values())
        else:
            table = self.query_one(KeyedTable)
            table.sync({name: node_row(n) for name, n in self.nodes.items()})
            table.refresh_live()

    def live(self, key: str) -> tuple[Cell, ...]:
        node = self.nodes.get(key)
        return node_live(node, self.fd.clock()) if node is not None else ()

    def sort_number(self, key: str, column: str) -> float | None:
        """GPU util sorts by the node's mean GPU utilization (its cell is a sparkline)."""
        node = self.nodes.get(key)
        if column != "util" or node is None:
            return None
        utils = [g.util_pct for g in node.gpus if g.util_pct is not None]
        return sum(utils) / len(utils) if utils else None

    def current_node(self) -> str | None:
        if self.heatmap_mode:
            return self.query_one(GpuHeatmap).current_node
        return self.query_one(KeyedTable).current_key

    def action_open(self) -> None:
        """Open the node under the cursor."""
        node = self.current_node()
        if node is not None:
            self.fd.open_node(node)

    @on(KeyedTable.Drill)
    def _drill(self, message: KeyedTable.Drill) -> None:
        self.fd.open_node(message.key)

    @on(GpuHeatmap.Drill)
    def _drill_heat(self, message: GpuHeatmap.Drill) -> None:
        self.fd.open_node(message.node)

    def action_heatmap(self) -> None:
        """Switch between the node table and the GPU heatmap."""
        node = self.current_node()
        self.heatmap_mode = not self.heatmap_mode
        table, heat = self.query_one(KeyedTable), self.query_one(GpuHeatmap)
        table.display = not self.heatmap_mode
        heat.display = self.heatmap_mode
        self.query_one("#legend").display = self.heatmap_mode
        self.render_view()
        if self.heatmap_mode:
            heat.focus()
            if node:
                heat.select_node(node)
        else:
            table.focus()
            if node:
                table.select_key(node)

    def action_cordon(self) -> None:
        """Cordon the node under the cursor (or uncordon it), with a reason."""
        node = self.current_node()
        if node is not None:
            shown = self.nodes.get(node)
            self.fd.ask_cordon(node, shown is not None and shown.cordoned)
