"""Reports: chargeback, usage, forecast and right-sizing previews (table, chart, notes), and
export to a file in any format (w asks for the path)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Static

from console.engine.api.replies import ReportData, ReportTable, WhatifReply
from console.engine.api.requests import ExportRequest, ReportQuery, WhatifRequest
from console.screens.base import MISSING, FleetdeckScreen
from console.widgets.bar_chart import BarChart

if TYPE_CHECKING:
    from reports.export.columns import Kind

PERIODS_D = (7, 30, 90, 365)
# which numeric column the preview chart shows, by preference
CHART_PREFERENCE = ("cost", "gpu_h_allocated", "gpu_h", "gpus", "util")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def cell(v: Any, kind: Kind | None = None) -> str | Text:
    """A report cell as the HTML pack shows it: ids as names, yes/no, "-" when missing,
    numbers right-aligned."""
    if v is None:
        return Text("-", style="dim")
    if kind is not None:
        from reports.export.columns import display, is_numeric  # on first use: start-up

        text = display(v, kind)
        return Text(text, justify="right") if is_numeric(kind) else text
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return Text(f"{v:,.2f}", justify="right")
    if isinstance(v, int):
        return Text(f"{v:,}", justify="right")
    return str(v)


PARTIAL_MARK = " *"  # a period the report's end cuts short: a short bar, not a drop


def chart_from(table: ReportTable) -> tuple[str, list[tuple[str, float]]]:
    """A bar chart for the preview: the table's first numeric column by its first text
    column."""
    columns: Sequence[str] = table.columns
    rows: Sequence[Sequence[Any]] = table.rows
    if not rows:
        return "", []
    label_i = next((i for i, v in enumerate(rows[0]) if isinstance(v, str)), None)
    numeric = [i for i, v in enumerate(rows[0])
               if isinstance(v, int | float) and not isinstance(v, bool)]
    if label_i is None or not numeric:
        return "", []
    value_i = numeric[0]
    for wanted in CHART_PREFERENCE:
        match = next((i for i in numeric if wanted in str(columns[i])), None)
        if match is not None:
            value_i = match
            break
    partial_i = list(columns).index("partial") if "partial" in columns else None
    pairs = [(str(r[label_i]) + (PARTIAL_MARK if partial_i is not None and r[partial_i] is True
                                 else ""), float(r[value_i] or 0))
             for r in rows if isinstance(r[value_i], int | float)]
    title = f"{columns[value_i]} by {columns[label_i]}"
    if any(label.endswith(PARTIAL_MARK) for label, _ in pairs):
        title += f" ({PARTIAL_MARK.strip()} partial period, still filling)"
    return title, pairs


def whatif_report(result: WhatifReply) -> ReportData:
    """The engine's `whatif` answer as a one-table report for the preview."""
    cur, new = result.current, result.changed
    seen = result.observed or {}
    rows: list[list[Any]] = []
    for key, label in (("gpus", "GPUs"), ("mean_queue_delay_s", "mean queue wait (s)"),
                       ("p95_queue_delay_s", "p95 queue wait (s)"),
                       ("mean_alloc_pct", "GPU allocation (%)"),
                       ("burst_gpu_h", "burst GPU-hours"), ("burst_cost", "burst cost")):
        a, b = getattr(cur, key), getattr(new, key)
        delta = None if a is None or b is None else round(b - a, 2)
        rows.append([label, seen.get(key), a, b, delta])
    notes = [f"what if {result.what_if}: {result.jobs} jobs of the last "
             f"{result.days:g} days replayed on the current and the changed fleet"]
    if seen:
        notes.append(
            f"observed: {seen.get('jobs_submitted', 0)} jobs submitted in the window, "
            f"{seen.get('jobs_started', 0)} started. The replay re-places every job at once "
            "on a fleet that is always up, without quotas or priorities: compare its "
            "'current' column with 'observed' before trusting the change.")
        if seen.get("jobs_started", 0) > result.jobs * 1.2 + 10:
            notes.append("fewer jobs replayed than started: some specs could not be read")
    return ReportData(name="what-if", title=f"What if {result.what_if}", period=None,
                      currency=None, columns=["measure", "observed", "current (replay)",
                                              "changed (replay)", "change"],
                      rows=rows, tables=[], notes=notes)


class ReportsScreen(FleetdeckScreen):
    """Report previews; n next report, b group by, p period, w export."""

    TITLE_TEXT = "Reports"
    CHANNEL = "reports"
    POLL_S = 0.0  # reports are computed on demand, not polled
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "next_report", "Report"),
        Binding("b", "next_by", "Group by"),
        Binding("p", "next_period", "Period"),
        Binding("t", "next_table", "Table"),
        Binding("w", "export", "Export"),
        Binding("i", "what_if", "What-if"),
    ]

    class ReportLoaded(Message):
        """The engine's `report` reply for the current choice."""

        def __init__(self, key: tuple[str, str, int], report: ReportData) -> None:
            super().__init__()
            self.key = key
            self.report = report

    def __init__(self) -> None:
        super().__init__()
        from reports.chargeback import KEYS
        from reports.pack import REPORTS

        self.report_names: tuple[str, ...] = tuple(REPORTS)
        self.by_keys: tuple[str, ...] = tuple(KEYS)
        self.report_name = self.report_names[0]
        self.by = self.by_keys[0]
        self.days = 30
        self.loaded_key: tuple[str, str, int] | None = None
        self.report: ReportData | None = None
        self.table_i = 0

    def compose_body(self) -> ComposeResult:
        yield Static("", id="report-choice")
        with Horizontal(id="report-main"):
            yield DataTable(id="report-table", cursor_type="row")
            yield BarChart(id="report-chart")
        yield VerticalScroll(Static("", id="report-notes"), id="report-notes-box")

    def on_mount(self) -> None:
        super().on_mount()
        self._choice()
        self.query_one("#report-table", DataTable).focus()

    def period(self) -> tuple[str, str]:
        end = self.fd.clock()
        return iso(end - self.days * 86400), iso(end)

    def _choice(self, loading: bool = False, extra: str = "") -> None:
        t = Text()
        for n in self.report_names:
            t.append(f" {n} ", style="reverse bold" if n == self.report_name else "dim")
        start, end = self.period()
        if self.report_name == "forecast":  # the CLI's default history, so both agree
            from reports.command import FORECAST_DAYS

            t.append(f"   history: the last {FORECAST_DAYS} days (as `fleetdeck report "
                     "forecast`)")
        else:
            t.append(f"   by {self.by}   last {self.days} days ({start[:10]} to {end[:10]})")
        if loading:
            t.append("   loading...", style="dim")
        if extra:
            t.append("   " + extra, style="dim")
        self.query_one("#report-choice", Static).update(t)

    def refresh_data(self) -> None:
        key = (self.report_name, self.by, self.days)
        if key != self.loaded_key:
            self._choice(loading=True)
            start, end = self.period()
            self.load(key, start, end)

    def action_refresh_report(self) -> None:
        self.loaded_key = None
        self.refresh_data()

    @work(exclusive=True, group="report")
    async def load(self, key: tuple[str, str, int], start: str, end: str) -> None:
        name, by, _days = key
        query = ReportQuery(name=name, by=by, start=None if name == "forecast" else start,
                            end=end)
        report = await self.fetch(query)
        if report is not MISSING:
            self.post_message(self.ReportLoaded(key, report))

    @on(ReportLoaded)
    def show(self, message: ReportLoaded) -> None:
        self.show_notice("")
        self.loaded_key = message.key
        self.report = message.report
        self.table_i = 0
        self._choice()
        self.show_table()
        report = message.report
        notes = Text("\n".join(str(n) for n in report.notes), style="dim")
        if report.headline:
            notes = Text(report.headline, style="bold yellow").append("\n").append(notes)
        self.query_one("#report-notes", Static).update(notes)

    def tables(self) -> list[ReportTable]:
        r = self.report
        if r is None:
            return []
        return r.tables or [ReportTable(name=r.name, title=r.title, columns=r.columns,
                                        rows=r.rows)]

    def show_table(self) -> None:
        """Show table `table_i` of the report and its chart (a new report replaces columns)."""
        tables = self.tables()
        if not tables:
            return
        current = tables[self.table_i % len(tables)]
        table = self.query_one("#report-table", DataTable)
        with self.app.batch_update():
            table.clear(columns=True)
            columns = [str(c) for c in current.columns]
            titles = current.titles or columns
            col_kinds: Sequence[Any] = current.kinds or [None] * len(columns)
            for col, text in zip(columns, titles, strict=False):
                table.add_column(str(text), key=col)
            for i, row in enumerate(current.rows):
                table.add_row(*(cell(v, k) for v, k in zip(row, col_kinds, strict=False)),
                              key=str(i))
            if current.totals:
                table.add_row(*(Text(str(v), style="bold") if j == 0 else cell(v, k)
                                for j, (v, k) in enumerate(zip(current.totals, col_kinds,
                                                               strict=False))), key="total")
        title, pairs = chart_from(current)
        chart = self.query_one(BarChart)
        chart.title = title
        chart.bars = tuple(pairs)
        if len(tables) > 1:
            name = current.title or current.name or ""
            self._choice(extra=f"table {self.table_i % len(tables) + 1}/{len(tables)}: {name}")

    def action_next_table(self) -> None:
        """Show the report's next table (forecast and usage have several)."""
        if len(self.tables()) > 1:
            self.table_i = (self.table_i + 1) % len(self.tables())
            self.show_table()

    def action_next_report(self) -> None:
        """Show the next report: chargeback, usage, forecast, rightsizing."""
        names = self.report_names
        self.report_name = names[(names.index(self.report_name) + 1) % len(names)]
        self.refresh_data()

    def action_next_by(self) -> None:
        """Group by the next key: user, project, team, pool, model."""
        self.by = self.by_keys[(self.by_keys.index(self.by) + 1) % len(self.by_keys)]
        self.refresh_data()

    def action_next_period(self) -> None:
        """Cycle the period: last 7, 30, 90 or 365 days."""
        self.days = PERIODS_D[(PERIODS_D.index(self.days) + 1) % len(PERIODS_D)]
        self.refresh_data()

    def action_export(self) -> None:
        """Export this report to a file (asks for the path; the extension picks the format)."""
        from console.screens.export import ExportScreen

        start, end = self.period()
        stamp = end[:10]

        def done(answer: tuple[str, str] | None) -> None:
            if answer is not None:
                path, fmt_name = answer
                self.fd.run_action_call(
                    ExportRequest(name=self.report_name, by=self.by, format=fmt_name,
                                  path=path, start=start, end=end),
                    f"exported {self.report_name} to {path}")

        self.app.push_screen(ExportScreen(f"fleetdeck-{self.report_name}-{stamp}.csv"), done)

    def action_what_if(self) -> None:
        """Replay the period's jobs on the fleet with GPUs added or removed ("+16 A100")."""
        from console.screens.whatif import WhatIfScreen

        def done(change: str | None) -> None:
            if change:
                self._choice(loading=True, extra=f"what if {change}")
                self.what_if(change, self.days)

        self.app.push_screen(WhatIfScreen(self.days), done)

    @work(exclusive=True, group="report")
    async def what_if(self, change: str, days: int) -> None:
        result = await self.fetch(WhatifRequest(changes=[change], days=days))
        if result is MISSING:
            return
        self.post_message(self.ReportLoaded(("what-if", change, days), whatif_report(result)))

    def action_filter(self) -> None:
        """Reports are not filtered; use b (group by) and p (period)."""
        self.notify("reports: b groups by, p changes the period", timeout=3)

