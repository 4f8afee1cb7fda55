"""The header every screen shows: fleet capacity, allocation and utilization at a glance."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from console.widgets import fmt

BAR_W = 10


class SummaryBar(Widget):
    """Two lines: where you are and the fleet's health, then GPU and CPU bars.

    `summary` is the engine's `summary` reply (or None before the first one); `where` names the
    screen; `notice` replaces the totals with a line such as "engine unreachable".
    """

    DEFAULT_CSS = """
    SummaryBar { height: 2; background: $panel; color: $text; padding: 0 1; }
    """

    summary: reactive[dict[str, Any] | None] = reactive(None, layout=False)
    where: reactive[str] = reactive("")
    mode: reactive[str] = reactive("")
    notice: reactive[str] = reactive("")

    def render(self) -> Text:
        head = Text()
        head.append("fleetdeck", style="bold")
        if self.where:
            head.append(" ▸ ").append(self.where, style="bold cyan")
        s = self.summary
        status = Text()
        if self.notice:
            status.append(self.notice, style="bold red")
        if not s:
            if not self.notice:
                status.append("waiting for the engine...", style="dim")
        else:
            head.append("   ")
            self._resource(head, "GPU", s.get("gpus_total"), s.get("gpus_allocated"),
                           s.get("gpu_util_pct"))
            head.append("   ")
            self._resource(head, "CPU", s.get("cpus_total"), s.get("cpus_allocated"),
                           s.get("cpu_util_pct"))
            if not self.notice:
                self._status(status, s)
        if self.mode:
            status.append("   " + self.mode, style="dim")
        return Text("\n").join([head, status])

    @staticmethod
    def _status(line: Text, s: dict[str, Any]) -> None:
        line.append("nodes ")
        line.append(f"{s.get('nodes_up', 0)} up", style="green")
        line.append(" · ")
        line.append(f"{s.get('nodes_degraded', 0)} degraded",
                    style="yellow" if s.get("nodes_degraded") else "dim")
        line.append(" · ")
        line.append(f"{s.get('nodes_unreachable', 0)} unreachable",
                    style="bold red" if s.get("nodes_unreachable") else "dim")
        line.append(f"   queue {s.get('queue_len', 0)}")
        line.append(f" · running {s.get('running_jobs', 0)}")
        spend = s.get("burst_spend_today")
        budget = s.get("burst_budget_today")
        line.append("   burst today ")
        over = budget is not None and spend is not None and spend >= budget
        line.append(fmt.money(spend or 0.0), style="bold red" if over else "")
        line.append(" / " + (fmt.money(budget) if budget is not None else "no budget"),
                    style="dim")
        idle = int(s.get("idle_warnings") or 0)
        line.append("   idle GPUs ")
        line.append(f"⚠ {idle}" if idle else "0", style="bold yellow" if idle else "dim")

    @staticmethod
    def _resource(line: Text, name: str, total: float | None, allocated: float | None,
                  util_pct: float | None) -> None:
        total_f = float(total or 0)
        alloc_f = float(allocated or 0)
        frac = alloc_f / total_f if total_f else 0.0
        line.append(f"{name} ", style="bold")
        line.append_text(fmt.bar(frac, BAR_W, style="cyan"))
        line.append(f" {fmt.num(alloc_f)}/{fmt.num(total_f)} alloc")
        line.append("  util ", style="dim")
        line.append(fmt.pct(util_pct), style=fmt.util_style(util_pct))
