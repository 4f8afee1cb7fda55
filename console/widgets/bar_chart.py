"""A horizontal bar chart: one labelled bar per row, scaled to the largest value."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from console.widgets import fmt

LABEL_W = 14
VALUE_W = 10


class BarChart(Widget):
    """`bars` ((label, value), ...) drawn largest-first, as many as fit."""

    DEFAULT_CSS = """
    BarChart { width: 1fr; height: 1fr; padding: 0 1; }
    """

    bars: reactive[tuple[tuple[str, float], ...]] = reactive(())
    title: reactive[str] = reactive("")

    def render(self) -> Text:
        out = Text()
        out.append((self.title or "chart") + "\n", style="bold")
        if not self.bars:
            out.append("no data for this period", style="dim")
            return out
        rows = sorted(self.bars, key=lambda b: -abs(b[1]))[: max(1, self.size.height - 1)]
        top = max(abs(v) for _, v in rows) or 1.0
        width = max(4, self.size.width - LABEL_W - VALUE_W - 2)
        lines = []
        for label, value in rows:
            line = Text(label[: LABEL_W - 1].ljust(LABEL_W))
            line.append_text(fmt.bar(abs(value) / top, width, style="cyan"))
            line.append(f"{value:>{VALUE_W},.1f}")
            lines.append(line)
        out.append_text(Text("\n").join(lines))
        return out
