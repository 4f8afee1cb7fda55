"""GPU heatmap: one line per node, one cell per GPU coloured by utilization.

Marks: `▪` allocated, `!` allocated but idle (an idle warning), `✕` unhealthy. Lines are
rendered lazily (only those on screen) and cached per node, so a 1,000-node fleet costs what
the visible 40 lines cost.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from console.widgets import fmt

NAME_W = 18
CELL_W = 3


@dataclass(frozen=True, slots=True)
class HeatCell:
    util_pct: float | None
    allocated: bool
    idle: bool
    healthy: bool


@dataclass(frozen=True, slots=True)
class HeatRow:
    node: str
    state: str
    cells: tuple[HeatCell, ...]


def cell_mark(c: HeatCell) -> tuple[str, Style]:
    bg = fmt.util_style(c.util_pct)
    if not c.healthy:
        return "✕", Style.parse("bold white on #b00020")
    if c.idle:
        return "!", Style.parse(f"bold #ffd54a on {bg}")
    if c.allocated:
        return "▪", Style.parse(f"white on {bg}")
    return " ", Style.parse(f"on {bg}")


class GpuHeatmap(ScrollView, can_focus=True):
    """Rows of GPU cells; Enter opens the node under the cursor."""

    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "move(-20)", "Page up", show=False),
        Binding("pagedown", "move(20)", "Page down", show=False),
        Binding("enter", "drill", "Open node", show=False),
    ]

    DEFAULT_CSS = """
    GpuHeatmap { height: 1fr; }
    """

    class Drill(Message):
        """Enter on a node row."""

        def __init__(self, node: str) -> None:
            super().__init__()
            self.node = node

    rows: reactive[tuple[HeatRow, ...]] = reactive((), always_update=False)
    cursor: reactive[int] = reactive(0)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._cache: dict[tuple[HeatRow, bool, int], Strip] = {}

    def watch_rows(self, rows: tuple[HeatRow, ...]) -> None:
        width = NAME_W + CELL_W * max((len(r.cells) for r in rows), default=0)
        self.virtual_size = Size(width, len(rows))
        if self.cursor >= len(rows):
            self.cursor = max(0, len(rows) - 1)
        if len(self._cache) > 4 * max(len(rows), 100):
            self._cache.clear()
        self.refresh()

    def watch_cursor(self, old: int, new: int) -> None:
        self.scroll_to_region_if_needed(new)
        self.refresh()

    def scroll_to_region_if_needed(self, y: int) -> None:
        top = self.scroll_offset.y
        h = self.scrollable_content_region.height or 1
        if y < top:
            self.scroll_to(y=y, animate=False)
        elif y >= top + h:
            self.scroll_to(y=y - h + 1, animate=False)

    @property
    def current_node(self) -> str | None:
        if 0 <= self.cursor < len(self.rows):
            return self.rows[self.cursor].node
        return None

    def select_node(self, node: str) -> bool:
        for i, r in enumerate(self.rows):
            if r.node == node:
                self.cursor = i
                return True
        return False

    def action_move(self, delta: int) -> None:
        if self.rows:
            self.cursor = min(len(self.rows) - 1, max(0, self.cursor + delta))

    def action_drill(self) -> None:
        node = self.current_node
        if node is not None:
            self.post_message(self.Drill(node))

    def render_line(self, y: int) -> Strip:
        index = y + self.scroll_offset.y
        if index >= len(self.rows):
            return Strip.blank(self.size.width)
        row = self.rows[index]
        selected = index == self.cursor
        key = (row, selected, self.size.width)
        strip = self._cache.get(key)
        if strip is None:
            strip = self._render_row(row, selected)
            self._cache[key] = strip
        return strip.crop(self.scroll_offset.x, self.scroll_offset.x + self.size.width)

    def _render_row(self, row: HeatRow, selected: bool) -> Strip:
        name_style = Style.parse(fmt.STATE_STYLE.get(row.state, ""))
        if selected:
            name_style += Style(reverse=True)
        segs = [Segment(row.node[: NAME_W - 1].ljust(NAME_W), name_style)]
        for c in row.cells:
            mark, style = cell_mark(c)
            segs.append(Segment(f"{mark} ", style))
            segs.append(Segment(" "))
        if not row.cells:
            segs.append(Segment("no GPUs", Style(dim=True)))
        return Strip(segs).extend_cell_length(max(self.size.width, NAME_W))
