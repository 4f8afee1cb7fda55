"""The header every screen shows: fleet capacity, allocation and utilization at a glance."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from console.engine.api.replies import Summary
from console.widgets import fmt

BAR_W = 10


class SummaryBar(Widget):
    """Two lines: where you are and the fleet's allocation, then the fleet's health.

    `summary` is the engine's `summary` reply (or None before the first one); `where` is the
    breadcrumb; `notice` replaces the health with a line such as "engine unreachable";
    `refreshed_at` (app clock) is when the screen's data was last refreshed, `stale_s` its age
    once it is older than two poll intervals. Each line keeps to one row: parts with the least
    priority are left out first on a narrow terminal, the breadcrumb and the health stay.
    """

    DEFAULT_CSS = """
    SummaryBar { height: 2; background: $panel; color: $text; padding: 0 1; }
    """

    summary: reactive[Summary | None] = reactive(None, layout=False)
    where: reactive[str] = reactive("")
    mode: reactive[str] = reactive("")
    notice: reactive[str] = reactive("")
    refreshed_at: reactive[float | None] = reactive(None)
    stale_s: reactive[float | None] = reactive(None)
    me: reactive[str] = reactive("")  # a member's own line: quota use, spend today

    def render(self) -> Text:
        width = max(1, self.size.width)
        head: list[Part] = [(9, Text("fleetdeck", style="bold"))]
        if self.where:
            head[0][1].append(" ▸ ").append(self.where, style="bold cyan")
        s = self.summary
        status: list[Part] = []
        if self.notice:
            status.append((9, Text(self.notice, style="bold red")))
        if not s:
            if not self.notice:
                status.append((9, Text("waiting for the engine...", style="dim")))
        else:
            head.append((5, self._resource("GPU", s.gpus_total, s.gpus_allocated,
                                           s.gpu_util_pct)))
            head.append((3, self._resource("CPU", s.cpus_total, s.cpus_allocated,
                                           s.cpu_util_pct)))
            if not self.notice:
                status.extend((9, Text(f, style="bold red")) for f in s.faults)
                status.extend(self._status(s))
        if self.me:
            status.append((7, Text(self.me, style="bold")))
        status.extend(self._age())
        if self.mode:
            status.append((5, Text(self.mode, style="dim")))  # which engine, read-only, demo store
        return Text("\n").join([fit(head, width), fit(status, width)])

    def _age(self) -> list[Part]:
        if self.stale_s is not None:
            since = f" since {fmt.clock_text(self.refreshed_at)[11:]}" if self.refreshed_at else ""
            return [(8, Text(f"STALE {fmt.duration(self.stale_s)}{since}",
                             style="bold black on yellow"))]
        if self.refreshed_at is not None:
            return [(6, Text(f"as of {fmt.clock_text(self.refreshed_at)[11:]}", style="dim"))]
        return []

    @staticmethod
    def _status(s: Summary) -> list[Part]:
        nodes = Text("nodes ")
        nodes.append(f"{s.nodes_up} up", style="green")
        nodes.append(" · ")
        nodes.append(f"{s.nodes_degraded} degraded",
                     style="yellow" if s.nodes_degraded else "dim")
        nodes.append(" · ")
        nodes.append(f"{s.nodes_unreachable} unreachable",
                     style="bold red" if s.nodes_unreachable else "dim")
        queue = Text(f"queue {s.queue_len} · running {s.running_jobs}")
        spend = s.burst_spend_today
        budget = s.burst_budget_today
        burst = Text("burst today ")
        over = budget is not None and spend >= budget
        burst.append(fmt.money(spend or 0.0), style="bold red" if over else "")
        burst.append(" / " + (fmt.money(budget) if budget is not None else "no budget"),
                     style="dim")
        idle = s.idle_warnings
        idle_text = Text("idle GPUs ")
        idle_text.append(f"⚠ {idle}" if idle else "0", style="bold yellow" if idle else "dim")
        parts: list[Part] = [(7, nodes), (9, queue), (4, burst), (5, idle_text)]
        failed = s.notify_failed
        if failed:  # notifications given up on: `fleetdeck notify status` says which
            parts.append((6, Text(f"notify ✗ {failed} failed", style="bold red")))
        return parts

    @staticmethod
    def _resource(name: str, total: float | None, allocated: float | None,
                  util_pct: float | None) -> Text:
        total_f = float(total or 0)
        alloc_f = float(allocated or 0)
        frac = alloc_f / total_f if total_f else 0.0
        line = Text(f"{name} ", style="bold")
        line.append_text(fmt.bar(frac, BAR_W, style="cyan"))
        line.append(f" {fmt.num(alloc_f)}/{fmt.num(total_f)} alloc")
        line.append("  util ", style="dim")
        line.append(fmt.pct(util_pct), style=fmt.util_style(util_pct))
        return line


Part = tuple[int, Text]  # (priority: higher stays longer, text)
GAP = "   "


def fit(parts: list[Part], width: int) -> Text:
    """Join `parts` in order, leaving out the lowest-priority ones until the line fits;
    what is left is cut with an ellipsis (never wrapped)."""
    kept = list(parts)
    while len(kept) > 1 and sum(len(t) for _, t in kept) + len(GAP) * (len(kept) - 1) > width:
        kept.remove(min(kept, key=lambda p: p[0]))
    line = Text(GAP).join(t for _, t in kept)
    line.truncate(width, overflow="ellipsis")
    return line
