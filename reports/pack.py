"""Reports as documents: each report's frames with its notes and chart data, and the `all` pack.

Pure: ledgers in, `Report`s out.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from reports.chargeback import KEYS, chargeback
from reports.forecast import forecast, headline
from reports.ledger import Ledger
from reports.model import Band, BarChart, Chart, LineChart, Report, Series, Table
from reports.rates import Rates
from reports.rightsizing import rightsizing
from reports.usage import EVERY, fleet_series, partial_period, usage

REPORTS = ("chargeback", "usage", "forecast", "rightsizing")
TITLES = {
    "chargeback": "Chargeback",
    "usage": "Capacity, allocation and utilization",
    "forecast": "Forecast and purchase plan",
    "rightsizing": "Right-sizing",
}
MAX_FORECAST_CHARTS = 6


def build_report(
    name: str, ledger: Ledger, *, generated_at: datetime, rates: Rates | None = None,
    by: str | None = None, every: str = "day", months: int = 3, ceiling_pct: float = 80.0,
    user: str | None = None,
) -> Report:
    """One report over a ledger. `by` applies to chargeback (default user) and rightsizing;
    `user` narrows a chargeback to that user's jobs."""
    rates = rates or Rates()
    if name not in REPORTS:
        raise ValueError(f"report must be one of {', '.join(REPORTS)}")
    if by is not None and by not in KEYS:
        raise ValueError(f"by must be one of {', '.join(KEYS)}")
    if every not in EVERY:
        raise ValueError(f"every must be one of {', '.join(EVERY)}")
    if user is not None and name != "chargeback":
        raise ValueError("user narrows a chargeback only")
    f = ledger.frames
    common = (f"Period {f.start:%Y-%m-%d %H:%M} to {f.end:%Y-%m-%d %H:%M} UTC; GPU telemetry "
              f"in {f.bucket_s // 60}-minute buckets ({f.resolution} rollups).")
    tables: tuple[Table, ...]
    notes: list[str] = [common]
    charts: list[Chart] = []
    answer = ""
    if name == "chargeback":
        key = by or "user"
        frame = chargeback(ledger, by=key, rates=rates, user=user)
        title = f"Chargeback by {key}" + (f" for {user}" if user is not None else "")
        tables = (Table("chargeback", title, frame, totals=True),)
        notes += _chargeback_notes(frame, ledger, rates)
        charts.append(_wasters_chart(frame, key, rates.currency))
    elif name == "usage":
        frame = usage(ledger, every=every)
        tables = (Table("usage", f"Capacity, allocation and utilization by {every}", frame),)
        notes.append("GPUs present: with telemetry; allocated: job shares with broken time "
                     "excluded (mean, p95 and peak of bucket means); used: sum of "
                     "utilization / 100; queue wait: submitted -> started of the jobs "
                     "submitted in the period. A period cut short by the report's end is "
                     "marked partial and left out of the chart.")
        charts.append(_usage_chart(ledger))
    elif name == "forecast":
        fc = forecast(ledger, rates=rates, months=months, ceiling_pct=ceiling_pct)
        answer = headline(fc.plan, rates.currency, months)
        tables = (Table("forecast", "Forecast and purchase plan", fc.plan),
                  Table("forecast series", "Monthly history and forecast", fc.series))
        notes.append(
            "Method: Theil-Sen trend of monthly mean GPUs allocated (median of all pairwise "
            "slopes, last 12 months), damped per month ahead; 80% band from one-month-ahead "
            "backtest errors; p95 allocation forecast the same way decides the purchase.")
        notes += [str(e) for e in fc.plan["explanation"]]
        charts += _forecast_charts(fc.series, ceiling_pct)
    else:
        frame = rightsizing(ledger, rates=rates, by=by)
        tables = (Table("rightsizing", "Right-sizing" + (f" by {by}" if by else " by job"),
                        frame),)
        freed = float(frame["gpu_h_freed"].sum()) if frame.height else 0.0
        notes.append(f"{frame.height} {'groups' if by else 'jobs'} flagged; "
                     f"{freed:,.1f} GPU-hours would be freed.")
    return Report(name=name, title=TITLES[name], start=f.start, end=f.end,
                  generated_at=generated_at, currency=rates.currency, tables=tables,
                  notes=tuple(notes), charts=tuple(charts), headline=answer)


def build_all(
    ledger: Ledger, history: Ledger, *, generated_at: datetime, rates: Rates | None = None,
    by: str | None = None, every: str = "day", months: int = 3, ceiling_pct: float = 80.0,
) -> tuple[Report, ...]:
    """The capacity-planning pack: every report; the forecast reads `history` (a longer
    ledger ending where `ledger` ends)."""
    kw = {"generated_at": generated_at, "rates": rates, "every": every, "months": months,
          "ceiling_pct": ceiling_pct}
    return (
        build_report("usage", ledger, **kw),  # type: ignore[arg-type]
        build_report("forecast", history, **kw),  # type: ignore[arg-type]
        build_report("chargeback", ledger, by=by, **kw),  # type: ignore[arg-type]
        build_report("rightsizing", ledger, **kw),  # type: ignore[arg-type]
    )


def _chargeback_notes(frame: pl.DataFrame, ledger: Ledger, rates: Rates) -> list[str]:
    t = frame.select(pl.col("gpu_h_allocated", "gpu_h_used", "gpu_h_idle", "idle_cost",
                            "burst_cost", "total_cost", "gpu_h_broken").sum())
    row = t.row(0, named=True) if frame.height else dict.fromkeys(t.columns, 0.0)
    cur = rates.currency
    notes = [
        f"Totals: {row['gpu_h_allocated']:,.1f} GPU-h allocated, {row['gpu_h_used']:,.1f} used, "
        f"{row['gpu_h_idle']:,.1f} idle ({row['idle_cost']:,.2f} {cur}); burst "
        f"{row['burst_cost']:,.2f} {cur}; total {row['total_cost']:,.2f} {cur}. "
        f"{row['gpu_h_broken']:,.1f} GPU-h on broken GPUs were not billed.",
        "GPU-hours used = allocated x the time-weighted mean utilization of the job's GPUs "
        "(a shared GPU: the job's share x utilization); idle = allocated - used, priced at the "
        "same rate and already part of the GPU cost.",
    ]
    pairs = ledger.gpus.select("pool", "model").unique().sort("pool", "model")
    rate_txt = [f"{m} in {p}: {rates.gpu_rate(m, p).per_gpu_hour:.4f}"
                for p, m in pairs.iter_rows()]
    if rate_txt:
        notes.append(f"GPU rates ({cur}/GPU-h): " + "; ".join(rate_txt) + ". CPU "
                     f"{rates.cpu_core_hour:g}/core-h, memory {rates.mem_gb_hour:g}/GB-h.")
    return notes


def _epoch(col: pl.Series) -> tuple[float, ...]:
    return tuple(float(v) / 1e6 for v in col.cast(pl.Datetime("us")).dt.epoch("us"))


def _usage_chart(ledger: Ledger) -> LineChart:
    f = ledger.frames
    span_days = (f.end - f.start).total_seconds() / 86400
    every = "hour" if span_days <= 14 else "day"
    s = fleet_series(ledger, every=every)
    partial = partial_period(ledger, every=every)
    left_out = ("" if partial is None else
                f"; the {every} from {partial:%Y-%m-%d %H:%M} is still filling, not shown")
    x = _epoch(s["period_start"])
    series = [Series("GPUs present", x, tuple(s["gpus_present"].to_list())),
              Series("GPUs allocated", x, tuple(s["gpus_allocated"].to_list())),
              Series("GPUs used", x, tuple(s["gpus_used"].to_list()))]
    if s.height and float(s["burst_gpus"].max() or 0) > 0:  # type: ignore[arg-type]
        series.append(Series("burst GPUs", x, tuple(s["burst_gpus"].to_list()), dashed=True))
    return LineChart(title=f"Allocation vs utilization (fleet, by {every}{left_out})",
                     y_label="GPUs",
                     series=tuple(series))


def _wasters_chart(frame: pl.DataFrame, key: str, currency: str) -> BarChart:
    top = frame.filter(pl.col("gpu_h_idle") > 0).sort("gpu_h_idle", descending=True).head(10)
    return BarChart(title=f"Top idle wasters by {key} (idle GPU-hours)", x_label="GPU-h idle",
                    labels=tuple(str(v) for v in top[key]),
                    values=tuple(float(v) for v in top["gpu_h_idle"]))


def _forecast_charts(series: pl.DataFrame, ceiling_pct: float) -> list[Chart]:
    charts: list[Chart] = []
    groups = series.select("pool", "model").unique(maintain_order=True).head(MAX_FORECAST_CHARTS)
    for pool, model in groups.iter_rows():
        g = series.filter((pl.col("pool") == pool) & (pl.col("model") == model)).sort("month")
        x = _epoch(g["month"].cast(pl.Datetime("us")))
        hist = g["kind"] == "history"
        last_hist = int(hist.arg_true().max() or 0)  # type: ignore[arg-type]
        alloc = g["allocation_pct"].to_list()
        hist_y = tuple(v if h else None for v, h in zip(alloc, hist, strict=True))
        fc_y = tuple(v if (not h or i == last_hist) else None
                     for i, (v, h) in enumerate(zip(alloc, hist, strict=True)))
        util = tuple(g["utilization_pct"].to_list())
        band = g.filter(~hist)
        bx = (x[last_hist], *_epoch(band["month"].cast(pl.Datetime("us"))))
        lo = (alloc[last_hist], *band["allocation_pct_low"].to_list())
        hi = (alloc[last_hist], *band["allocation_pct_high"].to_list())
        charts.append(LineChart(
            title=f"Forecast: {model} in {pool} (% of current GPUs)", y_label="%",
            series=(Series("allocation", x, hist_y), Series("allocation forecast", x, fc_y,
                                                          dashed=True),
                    Series("utilization", x, util)),
            bands=(Band("80% band", bx, tuple(float(v) for v in lo),
                        tuple(float(v) for v in hi)),),
            hlines=((f"ceiling {ceiling_pct:g}%", ceiling_pct),),
        ))
    return charts
