"""Capacity, allocation and utilization per pool and GPU model, by day, week or month.

Per bucket of the ledger (an hour, or a minute for short periods): GPUs present (with a
sample), broken, allocated (job shares, broken time excluded), used (sum of utilization / 100)
and burst GPUs alive. Per reporting period these become means; allocation also p95 and peak
over the buckets. Queue wait is submitted -> started of the jobs submitted in the period.
A period that the report's end cuts short (today, this week) is marked `partial`; the chart
leaves it out, so it never reads as a drop.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from reports.ledger import Ledger

EVERY = {"day": "1d", "week": "1w", "month": "1mo"}
SERIES_EVERY = {"hour": "1h", **EVERY}  # the fleet series (the usage chart) also by hour


def usage(ledger: Ledger, *, every: str = "day") -> pl.DataFrame:
    """One row per period start (a date), pool and model; most recent period last."""
    if every not in EVERY:
        raise ValueError(f"every must be one of {', '.join(EVERY)}")
    step = EVERY[every]
    f = ledger.frames
    bh = ledger.bucket_h
    keys = ["period_start", "pool", "model"]
    capacity = (
        ledger.buckets
        .with_columns(period_start=pl.col("ts").dt.truncate(step).dt.date())
        .group_by(keys)
        .agg(
            gpus_present=pl.col("gpus_present").mean(),
            gpus_broken=pl.col("gpus_broken").mean(),
            gpus_allocated_mean=pl.col("gpus_allocated").mean(),
            gpus_allocated_p95=pl.col("gpus_allocated").quantile(0.95, "linear"),
            gpus_allocated_peak=pl.col("gpus_allocated").max(),
            gpus_used=pl.col("gpus_used").mean(),
            gpu_h_allocated=pl.col("gpus_allocated").sum() * bh,
            gpu_h_used=pl.col("gpus_used").sum() * bh,
            burst_gpus_mean=pl.col("burst_gpus").mean(),
            burst_gpu_h=pl.col("burst_gpus").sum() * bh,
        )
    )
    waits = (
        ledger.jobs
        .filter((pl.col("submitted_at") >= f.start) & (pl.col("submitted_at") < f.end))
        .with_columns(period_start=pl.col("submitted_at").dt.truncate(step).dt.date(),
                      waited=pl.col("started_at").is_not_null()
                      & (pl.col("started_at") < pl.lit(f.end)))
        .group_by(keys)
        .agg(
            jobs_submitted=pl.len().cast(pl.Int64),
            jobs_started=pl.col("waited").sum().cast(pl.Int64),
            queue_wait_median_s=pl.col("wait_s").filter(pl.col("waited")).median(),
            queue_wait_p95_s=pl.col("wait_s").filter(pl.col("waited"))
            .quantile(0.95, "linear"),
        )
    )
    cost = _burst_cost(ledger, step, keys)
    out = (
        capacity.join(waits, on=keys, how="full", coalesce=True)
        .join(cost, on=keys, how="full", coalesce=True)
        .with_columns(pl.col("jobs_submitted", "jobs_started").fill_null(0),
                      pl.col("burst_cost").fill_null(0.0),
                      pl.col("gpus_present", "gpus_broken", "gpus_allocated_mean",
                             "gpus_allocated_p95", "gpus_allocated_peak", "gpus_used",
                             "gpu_h_allocated", "gpu_h_used", "burst_gpus_mean",
                             "burst_gpu_h").fill_null(0.0))
        .with_columns(
            allocation_pct=_pct("gpus_allocated_mean", "gpus_present"),
            allocation_p95_pct=_pct("gpus_allocated_p95", "gpus_present"),
            utilization_pct=_pct("gpus_used", "gpus_present"),
            used_of_allocated_pct=_pct("gpus_used", "gpus_allocated_mean"),
        )
        .filter((pl.col("gpus_present") > 0) | (pl.col("gpus_allocated_mean") > 0)
                | (pl.col("burst_gpus_mean") > 0) | (pl.col("jobs_submitted") > 0)
                | (pl.col("burst_cost") > 0))
        .sort(keys)
    )
    return out.select(
        "period_start", "pool", "model", "gpus_present", "gpus_broken", "gpus_allocated_mean",
        "gpus_allocated_p95", "gpus_allocated_peak", "gpus_used", "allocation_pct",
        "allocation_p95_pct", "utilization_pct", "used_of_allocated_pct", "gpu_h_allocated",
        "gpu_h_used", "jobs_submitted", "jobs_started", "queue_wait_median_s",
        "queue_wait_p95_s", "burst_gpus_mean", "burst_gpu_h", "burst_cost",
    ).with_columns(partial=_partial(pl.col("period_start").cast(pl.Datetime("us")), step,
                                    f.end))


def _partial(start: pl.Expr, step: str, end: object) -> pl.Expr:
    """True for a period that ends after the report's end (cut short, still filling)."""
    return start.dt.offset_by(step) > pl.lit(end).cast(pl.Datetime("us"))


def fleet_series(ledger: Ledger, *, every: str = "day") -> pl.DataFrame:
    """Fleet totals per complete period (GPUs present, allocated, used): the usage chart's
    data; a last period the report's end cuts short is left out (see `partial_period`)."""
    step = SERIES_EVERY[every]
    end = ledger.frames.end
    return (
        ledger.buckets.group_by("ts")
        .agg(pl.col("gpus_present", "gpus_allocated", "gpus_used", "burst_gpus").sum())
        .with_columns(period_start=pl.col("ts").dt.truncate(step))
        .group_by("period_start").agg(pl.col("gpus_present", "gpus_allocated", "gpus_used",
                                             "burst_gpus").mean())
        .filter(~_partial(pl.col("period_start").cast(pl.Datetime("us")), step, end))
        .sort("period_start")
    )


def partial_period(ledger: Ledger, *, every: str = "day") -> datetime | None:
    """The start of the last period when the report's end cuts it short (the hour or day
    still filling, left out of `fleet_series`); None when the end is on a period boundary
    or no bucket falls in that period."""
    step = SERIES_EVERY[every]
    end = pl.lit(ledger.frames.end).cast(pl.Datetime("us"))
    starts = (ledger.buckets.select(start=pl.col("ts").cast(pl.Datetime("us")).dt.truncate(step))
              .filter(pl.col("start").dt.offset_by(step) > end)["start"])
    return None if starts.is_empty() else starts.max()  # type: ignore[return-value]


def _pct(num: str, den: str) -> pl.Expr:
    return pl.when(pl.col(den) > 0).then(pl.col(num) / pl.col(den) * 100)


def _burst_cost(ledger: Ledger, step: str, keys: list[str]) -> pl.DataFrame:
    f = ledger.frames
    inst = ledger.instances.select("instance_id", "pool", "model")
    return (
        f.spend.collect()
        .join(inst, on="instance_id", how="left")
        .with_columns(pl.col("pool").fill_null("(burst)"), pl.col("model").fill_null("(none)"),
                      period_start=pl.col("ts").dt.truncate(step).dt.date())
        .group_by(keys).agg(burst_cost=pl.col("amount").sum())
    )
