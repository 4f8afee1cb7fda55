"""Forecast: monthly allocation and utilization trend, when allocation crosses a ceiling, and
how many GPUs to buy (against bursting the same demand).

Method, per pool and GPU model, on monthly means of GPUs allocated (and their p95, and GPUs
used), in GPUs so capacity changes do not bend the series:
- trend = Theil-Sen slope (the median of the slopes between every pair of months, over the last
  12): one jump month cannot swing it the way a least-squares fit would;
- level = the robust line's value at the last month (median of y_i - slope * (i - last));
- forecast h months ahead = level + slope * (phi + phi^2 + ... + phi^h): a damped trend, so growth
  fades instead of running away. phi = 0.6 below six months of history; with six or more, the
  phi in (0.6, 0.8, 0.9, 1.0) with the smallest backtest error;
- backtest = one-month-ahead forecasts made from each prefix of at least two months, compared
  with what happened (also for "same as last month", so a reader can judge the method);
- band = forecast +/- 1.28 * RMSE(backtest errors) * sqrt(h), an 80% band if errors were normal.
Percentages are of the GPUs present in the last month (history: of that month's GPUs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from statistics import median

import polars as pl

from reports.ledger import Ledger
from reports.rates import HOURS_PER_MONTH, Rates

PHI_SHORT = 0.6
PHI_CHOICES = (0.6, 0.8, 0.9, 1.0)
BAND_Z = 1.2816
FIT_MONTHS = 12
MIN_COVERAGE = 0.5


@dataclass(frozen=True, slots=True)
class Forecast:
    plan: pl.DataFrame
    """One row per pool and model: trend, crossing, recommendation, backtest, explanation."""
    series: pl.DataFrame
    """History and forecast months per pool and model (the chart's data)."""


@dataclass(frozen=True, slots=True)
class Trend:
    slope: float
    level: float
    phi: float
    sigma: float
    errors: tuple[float, ...]
    naive_errors: tuple[float, ...]

    def point(self, h: int) -> float:
        return self.level + self.slope * sum(self.phi**k for k in range(1, h + 1))

    def band(self, h: int) -> tuple[float, float]:
        p, d = self.point(h), BAND_Z * self.sigma * math.sqrt(h)
        return max(0.0, p - d), p + d


def theil_sen(y: list[float]) -> tuple[float, float]:
    """(slope per step, level at the last point) of the robust line through y."""
    n = len(y)
    if n == 1:
        return 0.0, y[0]
    slope = median((y[j] - y[i]) / (j - i) for i in range(n) for j in range(i + 1, n))
    level = median(y[i] - slope * (i - (n - 1)) for i in range(n))
    return slope, level


def _one_step(y: list[float], phi: float) -> float:
    slope, level = theil_sen(y[-FIT_MONTHS:])
    return level + slope * phi


def backtest(y: list[float], phi: float) -> list[float]:
    """actual - forecast, one month ahead, from every prefix of at least two months."""
    return [y[t] - _one_step(y[:t], phi) for t in range(2, len(y))]


def fit_trend(y: list[float], *, floor_sigma: float, phi: float | None = None) -> Trend:
    if phi is None:
        phi = PHI_SHORT
        if len(y) >= 6:
            phi = min(PHI_CHOICES, key=lambda p: (_mae(backtest(y, p)), p))
    errors = backtest(y, phi)
    naive = [y[t] - y[t - 1] for t in range(2, len(y))]
    if len(errors) >= 1:
        sigma = math.sqrt(sum(e * e for e in errors) / len(errors))
    elif len(y) == 2:
        sigma = abs(y[1] - y[0])
    else:
        sigma = 10 * floor_sigma
    slope, level = theil_sen(y[-FIT_MONTHS:])
    return Trend(slope=slope, level=level, phi=phi, sigma=max(sigma, floor_sigma),
                 errors=tuple(errors), naive_errors=tuple(naive))


def _mae(errors: list[float] | tuple[float, ...]) -> float:
    return sum(abs(e) for e in errors) / len(errors) if errors else math.inf


def monthly_history(ledger: Ledger) -> pl.DataFrame:
    """Per pool, model and month: mean GPUs present / broken / allocated / used, p95 allocated
    and coverage (share of the month's buckets that had GPUs present)."""
    per_month_buckets = pl.col("month").dt.month_end().dt.day() * (24.0 / ledger.bucket_h)
    return (
        ledger.buckets.with_columns(month=pl.col("ts").dt.truncate("1mo").dt.date())
        .group_by("pool", "model", "month")
        .agg(gpus_present=pl.col("gpus_present").mean(),
             gpus_broken=pl.col("gpus_broken").mean(),
             gpus_allocated=pl.col("gpus_allocated").mean(),
             gpus_allocated_p95=pl.col("gpus_allocated").quantile(0.95, "linear"),
             gpus_used=pl.col("gpus_used").mean(),
             buckets_seen=(pl.col("gpus_present") > 0).sum())
        .with_columns(coverage=pl.col("buckets_seen") / per_month_buckets)
        .filter(pl.col("coverage") >= MIN_COVERAGE)
        .drop("buckets_seen")
        .sort("pool", "model", "month")
    )


def forecast(
    ledger: Ledger, *, rates: Rates | None = None, months: int = 3, ceiling_pct: float = 80.0,
) -> Forecast:
    """Forecast `months` ahead per pool and model present in the last history month."""
    rates = rates or Rates()
    hist = monthly_history(ledger)
    plan_rows: list[dict[str, object]] = []
    series_rows: list[dict[str, object]] = []
    for (pool, model), g in hist.group_by(["pool", "model"], maintain_order=True):
        g = g.sort("month")
        cap = g["gpus_present"][-1] - g["gpus_broken"][-1]
        if cap <= 0:
            continue
        plan, rows = _forecast_group(ledger, rates, str(pool), str(model), g, float(cap),
                                     months, ceiling_pct)
        plan_rows.append(plan)
        series_rows.extend(rows)
    return Forecast(plan=pl.DataFrame(plan_rows, schema=_PLAN_SCHEMA, orient="row")
                    if plan_rows else pl.DataFrame(schema=_PLAN_SCHEMA),
                    series=pl.DataFrame(series_rows, schema=_SERIES_SCHEMA, orient="row")
                    if series_rows else pl.DataFrame(schema=_SERIES_SCHEMA))


_PLAN_SCHEMA: dict[str, pl.DataType] = {
    "pool": pl.String(), "model": pl.String(), "gpus_now": pl.Float64(),
    "months_history": pl.Int64(), "allocation_pct_last": pl.Float64(),
    "allocation_p95_pct_last": pl.Float64(), "utilization_pct_last": pl.Float64(),
    "trend_pp_per_month": pl.Float64(), "damping": pl.Float64(), "horizon_month": pl.Date(),
    "allocation_pct_forecast": pl.Float64(), "allocation_pct_low": pl.Float64(),
    "allocation_pct_high": pl.Float64(), "crossing_month": pl.Date(), "crossing": pl.String(),
    "buy_gpus": pl.Int64(), "buy_gpus_high": pl.Int64(),
    "buy_cost_per_month_amortized": pl.Float64(),
    "burst_gpu_h_per_month": pl.Float64(), "cloud_gpu_hour": pl.Float64(),
    "burst_cost_per_month": pl.Float64(), "break_even_gpu_h_per_month": pl.Float64(),
    "cheaper": pl.String(), "backtest_mae_pp": pl.Float64(), "backtest_rmse_pp": pl.Float64(),
    "naive_mae_pp": pl.Float64(), "explanation": pl.String(),
}
_SERIES_SCHEMA: dict[str, pl.DataType] = {
    "pool": pl.String(), "model": pl.String(), "month": pl.Date(), "kind": pl.String(),
    "gpus_present": pl.Float64(), "allocation_pct": pl.Float64(),
    "allocation_pct_low": pl.Float64(), "allocation_pct_high": pl.Float64(),
    "allocation_p95_pct": pl.Float64(), "utilization_pct": pl.Float64(),
}


def _add_months(d: date, k: int) -> date:
    m = d.month - 1 + k
    return date(d.year + m // 12, m % 12 + 1, 1)


def _forecast_group(
    ledger: Ledger, rates: Rates, pool: str, model: str, g: pl.DataFrame, cap: float,
    months: int, ceiling_pct: float,
) -> tuple[dict[str, object], list[dict[str, object]]]:
    month_list: list[date] = g["month"].to_list()
    alloc = [float(v) for v in g["gpus_allocated"]]
    p95 = [float(v) for v in g["gpus_allocated_p95"]]
    used = [float(v) for v in g["gpus_used"]]
    present = [float(v) for v in g["gpus_present"]]
    floor = 0.01 * cap
    t_alloc = fit_trend(alloc, floor_sigma=floor)
    t_p95 = fit_trend(p95, floor_sigma=floor, phi=t_alloc.phi)
    t_used = fit_trend(used, floor_sigma=floor, phi=t_alloc.phi)
    pct = 100.0 / cap
    hist_pct = [a / p * 100 if p > 0 else 0.0 for a, p in zip(alloc, present, strict=True)]
    rows: list[dict[str, object]] = []
    for m, a, q, u, p in zip(month_list, alloc, p95, used, present, strict=True):
        rows.append({"pool": pool, "model": model, "month": m, "kind": "history",
                     "gpus_present": p, "allocation_pct": a / p * 100 if p else None,
                     "allocation_pct_low": None, "allocation_pct_high": None,
                     "allocation_p95_pct": q / p * 100 if p else None,
                     "utilization_pct": u / p * 100 if p else None})
    future = [_add_months(month_list[-1], h) for h in range(1, months + 1)]
    for h, m in enumerate(future, start=1):
        lo, hi = t_alloc.band(h)
        rows.append({"pool": pool, "model": model, "month": m, "kind": "forecast",
                     "gpus_present": cap, "allocation_pct": max(0.0, t_alloc.point(h)) * pct,
                     "allocation_pct_low": lo * pct, "allocation_pct_high": hi * pct,
                     "allocation_p95_pct": max(0.0, t_p95.point(h)) * pct,
                     "utilization_pct": max(0.0, t_used.point(h)) * pct})

    ceiling = ceiling_pct / 100.0
    crossing_month, crossing = _crossing(month_list, hist_pct, future, t_alloc, pct,
                                         ceiling_pct, months)
    peak_p95 = max([p95[-1]] + [t_p95.point(h) for h in range(1, months + 1)])
    peak_p95_hi = max([p95[-1]] + [t_p95.band(h)[1] for h in range(1, months + 1)])
    buy = max(0, math.ceil(peak_p95 / ceiling - cap - 1e-9))
    buy_hi = max(0, math.ceil(peak_p95_hi / ceiling - cap - 1e-9))
    rate = rates.gpu_rate(model, pool)
    owned = buy * rate.per_gpu_hour * HOURS_PER_MONTH
    cloud = rate.cloud_gpu_hour if rate.cloud_gpu_hour is not None else _observed_cloud(
        ledger, model)
    growth = [t_alloc.point(h) / alloc[-1] if alloc[-1] > 0 else 1.0
              for h in range(1, months + 1)]
    excess = _excess_gpu_h_per_month(ledger, pool, model, month_list[-1], growth, ceiling * cap)
    burst_cost = excess * cloud if cloud is not None else None
    break_even = owned / cloud if cloud else None
    if buy == 0:
        cheaper = "-"
    elif burst_cost is None:
        cheaper = "unknown"
    else:
        cheaper = "buy" if burst_cost > owned else "burst"
    mae = _mae(t_alloc.errors)
    rmse = math.sqrt(sum(e * e for e in t_alloc.errors) / len(t_alloc.errors)) \
        if t_alloc.errors else None
    naive = _mae(t_alloc.naive_errors)
    lo_h, hi_h = t_alloc.band(months)
    plan: dict[str, object] = {
        "pool": pool, "model": model, "gpus_now": cap, "months_history": len(alloc),
        "allocation_pct_last": hist_pct[-1],
        "allocation_p95_pct_last": p95[-1] / present[-1] * 100 if present[-1] else None,
        "utilization_pct_last": used[-1] / present[-1] * 100 if present[-1] else None,
        "trend_pp_per_month": t_alloc.slope * pct, "damping": t_alloc.phi,
        "horizon_month": future[-1], "allocation_pct_forecast": t_alloc.point(months) * pct,
        "allocation_pct_low": lo_h * pct, "allocation_pct_high": hi_h * pct,
        "crossing_month": crossing_month, "crossing": crossing, "buy_gpus": buy,
        "buy_gpus_high": buy_hi, "buy_cost_per_month_amortized": owned,
        "burst_gpu_h_per_month": excess, "cloud_gpu_hour": cloud,
        "burst_cost_per_month": burst_cost, "break_even_gpu_h_per_month": break_even,
        "cheaper": cheaper,
        "backtest_mae_pp": mae * pct if t_alloc.errors else None,
        "backtest_rmse_pp": rmse * pct if rmse is not None else None,
        "naive_mae_pp": naive * pct if t_alloc.naive_errors else None,
    }
    plan["explanation"] = _explain(plan, month_list, hist_pct, t_alloc, pct, future, ceiling_pct,
                                   rates.currency, _waits(ledger, pool, model))
    return plan, rows


def _crossing(month_list: list[date], hist_pct: list[float], future: list[date], t: Trend,
              pct: float, ceiling_pct: float, months: int) -> tuple[date | None, str]:
    if hist_pct[-1] >= ceiling_pct:
        i = len(hist_pct) - 1
        while i > 0 and hist_pct[i - 1] >= ceiling_pct:
            i -= 1
        return month_list[i], f"above the ceiling since {month_list[i]:%Y-%m}"
    for h, m in enumerate(future, start=1):
        if t.point(h) * pct >= ceiling_pct:
            return m, f"forecast to cross in {m:%Y-%m}"
    for h, m in enumerate(future, start=1):
        if t.band(h)[1] * pct >= ceiling_pct:
            return None, (f"not expected within {months} months "
                          f"(possible from {m:%Y-%m} at the band's upper edge)")
    return None, f"not expected within {months} months"


def _observed_cloud(ledger: Ledger, model: str) -> float | None:
    b = ledger.frames.burst_instances.collect().filter(
        (pl.col("gpu_count") > 0) & pl.col("price_per_hour").is_not_null()
        & pl.col("gpu_model").is_not_null())
    low = model.lower()
    prices = [p / n for m, p, n in b.select("gpu_model", "price_per_hour", "gpu_count")
              .iter_rows() if m.lower() in low or low in m.lower()]
    return sum(prices) / len(prices) if prices else None


def _excess_gpu_h_per_month(ledger: Ledger, pool: str, model: str, last: date,
                            growth: list[float], limit: float) -> float:
    """GPU-hours per month above `limit` GPUs if last month's hourly allocation grew as
    forecast (each forecast month, averaged)."""
    a = (ledger.buckets.filter((pl.col("pool") == pool) & (pl.col("model") == model)
                               & (pl.col("ts").dt.truncate("1mo").dt.date() == last))
         ["gpus_allocated"])
    if a.len() == 0:
        return 0.0
    bh = ledger.bucket_h
    per_month = [float(((a * gm - limit).clip(0.0)).sum()) * bh for gm in growth]
    return sum(per_month) / len(per_month) * HOURS_PER_MONTH / (a.len() * bh)


def _waits(ledger: Ledger, pool: str, model: str) -> list[tuple[date, float]]:
    w = (ledger.jobs.filter((pl.col("pool") == pool) & (pl.col("model") == model)
                            & pl.col("wait_s").is_not_null())
         .group_by(month=pl.col("submitted_at").dt.truncate("1mo").dt.date())
         .agg(pl.col("wait_s").quantile(0.95, "linear")).sort("month"))
    return [(m, float(v)) for m, v in w.iter_rows()]


def _explain(plan: dict[str, object], month_list: list[date], hist_pct: list[float], t: Trend,
             pct: float, future: list[date], ceiling_pct: float, currency: str,
             waits: list[tuple[date, float]]) -> str:
    out: list[str] = []
    path = " -> ".join(f"{v:.0f}%" for v in hist_pct[-6:])
    out.append(f"{plan['model']} in pool {plan['pool']} ({plan['gpus_now']:.0f} GPUs): "
               f"allocation {path} ({month_list[max(0, len(month_list) - 6)]:%Y-%m} to "
               f"{month_list[-1]:%Y-%m}).")
    slope = t.slope * pct
    how = "chosen by backtest" if len(hist_pct) >= 6 else "the default below six months"
    out.append(f"Robust trend {slope:+.1f} pp/month (median of all pairwise monthly slopes), "
               f"damped by {t.phi:g} per month ahead ({how}), so it fades rather than runs on.")
    if len(hist_pct) >= 3 and abs(slope) > 1e-9:
        last_change = hist_pct[-1] - hist_pct[-2]
        if last_change * slope <= 0 or abs(last_change) < 0.25 * abs(slope):
            note = (f"The last month moved {last_change:+.1f} pp against that trend: growth "
                    "may have paused, or allocation is capped by capacity")
            recent = [w for m, w in waits if m >= month_list[-2]]
            if len(recent) == 2 and max(recent) >= 60:
                note += (f" (queue wait p95 went from {recent[0] / 60:.0f} to "
                         f"{recent[1] / 60:.0f} min)")
            out.append(note + "; one month cannot tell which, hence the wide band.")
    h = len(future)
    out.append(f"Forecast for {future[-1]:%Y-%m}: {plan['allocation_pct_forecast']:.0f}% "
               f"(80% band {plan['allocation_pct_low']:.0f}-{plan['allocation_pct_high']:.0f}%),"
               f" {h} month{'s' if h != 1 else ''} ahead.")
    out.append(f"Ceiling {ceiling_pct:g}%: {plan['crossing']}.")
    buy = plan["buy_gpus"]
    if buy:
        txt = (f"Keeping p95 allocation under {ceiling_pct:g}% through {future[-1]:%Y-%m} "
               f"needs {buy} more {plan['model']} (upper band: {plan['buy_gpus_high']}), "
               f"{plan['buy_cost_per_month_amortized']:,.0f} {currency}/month amortized.")
        cloud = plan["cloud_gpu_hour"]
        if isinstance(cloud, float):
            txt += (f" Bursting the same demand instead: about "
                    f"{plan['burst_gpu_h_per_month']:,.0f} GPU-h/month at {cloud:.2f} "
                    f"{currency}/GPU-h = {plan['burst_cost_per_month']:,.0f} {currency}/month; "
                    f"break-even at {plan['break_even_gpu_h_per_month']:,.0f} GPU-h/month, so "
                    f"{plan['cheaper']} is cheaper.")
        else:
            txt += (" No cloud price known for this model (set rates.gpu.<model>."
                    "cloud_gpu_hour) to compare with bursting.")
        out.append(txt)
    else:
        out.append(f"No purchase needed to keep p95 allocation under {ceiling_pct:g}% "
                   f"through {future[-1]:%Y-%m} (upper band: {plan['buy_gpus_high']} GPUs).")
    if t.errors:
        naive = plan["naive_mae_pp"]
        txt = (f"Backtest, one month ahead over {len(t.errors)} month(s): mean error "
               f"{plan['backtest_mae_pp']:.1f} pp (\"same as last month\": {naive:.1f} pp)")
        mae = plan["backtest_mae_pp"]
        worse = isinstance(naive, float) and isinstance(mae, float) and naive < mae
        out.append(txt + ("; the trend did worse than no change on this history, so read the "
                          "band, not the line." if worse else "."))
    else:
        out.append("Too little history to backtest (needs three months): the band is a "
                   "rough guess.")
    return " ".join(out)


def headline(plan: pl.DataFrame, currency: str, months: int) -> str:
    """The purchase answer in one sentence per pool and model that needs GPUs ("Buy 15 x
    H100 80GB by 2027-02 (upper band 24): 12,806 USD/month amortized, or burst for 21,714
    USD/month"; "by now" when allocation is already above the ceiling), or that none is
    needed through the horizon (`months` after the last month of history)."""
    if plan.height == 0:
        return "No forecast: no GPU history in this period."
    buys = plan.filter(pl.col("buy_gpus") > 0).sort("buy_gpus", descending=True)
    if buys.height == 0:
        horizon = max(plan["horizon_month"].to_list())
        return (f"No GPUs to buy through {horizon:%Y-%m}: allocation stays under the ceiling "
                f"in every pool.")
    out = []
    for p in buys.iter_rows(named=True):
        last = _add_months(p["horizon_month"], -months)
        when = p["crossing_month"] or p["horizon_month"]
        by = "now" if when <= last else f"{when:%Y-%m}"
        text = (f"Buy {p['buy_gpus']} x {p['model']} in {p['pool']} by {by} (upper band "
                f"{p['buy_gpus_high']}): {p['buy_cost_per_month_amortized']:,.0f} "
                f"{currency}/month amortized")
        if p["burst_cost_per_month"] is not None:
            text += f", or burst for {p['burst_cost_per_month']:,.0f} {currency}/month"
        out.append(text)
    return "; ".join(out) + "."
