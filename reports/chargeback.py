"""Chargeback: who allocated what, how much of it they used, and what it cost.

One line item per job (plus burst time no job used and spend no instance explains); every line
carries all keys, so totals by user, project, team, pool or model always sum to the same amounts.

- On-prem GPU cost = GPU-hours allocated x the pool's amortized rate for the model
  (`Rates.gpu_rate`). Broken GPU time is not billed (see `reports.ledger`).
- Idle waste = allocated - used GPU-hours, in hours and at the same rate (part of the GPU cost,
  not added to it).
- CPU and memory cost = requested cores / GB x hours run in the period x pool rates.
- Burst cost is what `spend` recorded for the instance in the period (else its `cost` prorated,
  else price_per_hour x hours). It is split over the jobs on the instance's node by GPU-hours;
  what no job used goes to a `(burst idle)` line of the instance's team and project. Jobs on
  burst nodes pay no on-prem GPU, CPU or memory rate.
"""

from __future__ import annotations

import polars as pl

from reports.ledger import Ledger
from reports.rates import Rates

KEYS = ("user", "project", "team", "pool", "model")  # what a chargeback groups by
SUM_COLUMNS = (
    "gpu_h_allocated", "gpu_h_used", "gpu_h_idle", "gpu_h_unmeasured", "gpu_h_broken",
    "cpu_core_h", "mem_gb_h", "burst_instance_h", "gpu_cost", "idle_cost", "cpu_cost",
    "mem_cost", "burst_cost", "total_cost",
)
BURST_IDLE = "(burst idle)"
UNATTRIBUTED = "(unattributed)"


def chargeback(ledger: Ledger, *, by: str = "user", rates: Rates | None = None,
               user: str | None = None) -> pl.DataFrame:
    """Totals per `by` key (user, project, team, pool or model), most expensive first;
    with `user`, that user's line items alone."""
    if by not in KEYS:
        raise ValueError(f"by must be one of {', '.join(KEYS)}")
    lines = chargeback_lines(ledger, rates or Rates())
    if user is not None:
        lines = lines.filter(pl.col("user") == user)
    return summarize(lines, by)


def summarize(lines: pl.DataFrame, by: str) -> pl.DataFrame:
    out = (
        lines.group_by(by)
        .agg(pl.col("job_id").drop_nulls().n_unique().alias("jobs"),
             *[pl.col(c).sum() for c in SUM_COLUMNS])
        .with_columns(util_pct=pl.when(pl.col("gpu_h_allocated") > 0)
                      .then(pl.col("gpu_h_used") / pl.col("gpu_h_allocated") * 100))
        .sort(["total_cost", "gpu_h_allocated", by], descending=[True, True, False])
    )
    cols = [by, "jobs", "gpu_h_allocated", "gpu_h_used", "gpu_h_idle", "util_pct",
            *[c for c in SUM_COLUMNS if c not in ("gpu_h_allocated", "gpu_h_used", "gpu_h_idle")]]
    return out.select(cols)


def chargeback_lines(ledger: Ledger, rates: Rates) -> pl.DataFrame:
    """Every billed line item of the period (jobs, idle burst time, unexplained spend)."""
    f = ledger.frames
    instances = _instances(ledger)
    burst_nodes = instances.filter(pl.col("node").is_not_null())["node"].unique()
    jobs = ledger.jobs.filter(pl.col("ran")).with_columns(
        on_burst=pl.col("burst") | pl.col("node").is_in(burst_nodes.implode()),
    )
    pairs = jobs.select("pool", "model").unique()
    rate_rows = [
        {"pool": p, "model": m, "gpu_rate": rates.gpu_rate(m, p).per_gpu_hour,
         "cpu_rate": rates.cpu_rate(p), "mem_rate": rates.mem_rate(p)}
        for p, m in pairs.iter_rows()
    ]
    rate_frame = pl.DataFrame(rate_rows, schema={
        "pool": pl.String, "model": pl.String, "gpu_rate": pl.Float64, "cpu_rate": pl.Float64,
        "mem_rate": pl.Float64})
    onprem = ~pl.col("on_burst")
    lines = (
        jobs.join(rate_frame, on=["pool", "model"], how="left")
        .join(_burst_shares(jobs, instances), on="id", how="left")
        .with_columns(pl.col("burst_cost", "burst_instance_h").fill_null(0.0))
        .with_columns(
            job_id=pl.col("id"),
            gpu_h_idle=(pl.col("gpu_h_allocated") - pl.col("gpu_h_used")).clip(0.0),
            gpu_cost=pl.when(onprem).then(pl.col("gpu_h_allocated") * pl.col("gpu_rate"))
            .otherwise(0.0),
            cpu_cost=pl.when(onprem).then(pl.col("cpu_core_h") * pl.col("cpu_rate"))
            .otherwise(0.0),
            mem_cost=pl.when(onprem).then(pl.col("mem_gb_h") * pl.col("mem_rate"))
            .otherwise(0.0),
        )
        .with_columns(
            idle_cost=pl.when(onprem).then(pl.col("gpu_h_idle") * pl.col("gpu_rate"))
            .otherwise(pl.col("gpu_h_idle") * pl.col("burst_gpu_rate").fill_null(0.0)),
        )
    )
    parts = [lines, _burst_idle_lines(lines, instances), _unattributed_spend(f.spend, instances)]
    cols = ["job_id", *KEYS, *SUM_COLUMNS]
    present = [_with_total(p).select(cols) for p in parts if p.height]
    if not present:
        return pl.DataFrame(schema={"job_id": pl.Int64, **{k: pl.String for k in KEYS},
                                    **{c: pl.Float64 for c in SUM_COLUMNS}})
    return pl.concat(present, how="vertical")


def _with_total(lines: pl.DataFrame) -> pl.DataFrame:
    for c in SUM_COLUMNS:
        if c not in lines.columns:
            lines = lines.with_columns(pl.lit(0.0).alias(c))
    if "job_id" not in lines.columns:
        lines = lines.with_columns(job_id=pl.lit(None, pl.Int64))
    return lines.with_columns(
        pl.col("job_id").cast(pl.Int64),
        *[pl.col(c).cast(pl.Float64) for c in SUM_COLUMNS if c != "total_cost"],
        total_cost=(pl.col("gpu_cost") + pl.col("cpu_cost") + pl.col("mem_cost")
                    + pl.col("burst_cost")).cast(pl.Float64),
    )


def _instances(ledger: Ledger) -> pl.DataFrame:
    """Burst instances alive in the period with their hours and recorded cost in it."""
    f = ledger.frames
    b = ledger.instances
    spend = (f.spend.collect().filter(pl.col("instance_id").is_not_null())
             .group_by("instance_id").agg(pl.col("amount").sum().alias("spend_amount"),
                                          pl.col("hours").sum().alias("spend_hours")))
    alive_from = pl.col("ready_at").fill_null(pl.col("launched_at"))
    alive_to = pl.col("terminated_at").fill_null(pl.lit(f.now))
    lifetime_h = (alive_to - alive_from).dt.total_microseconds() / 3.6e9
    clip_from = pl.max_horizontal(alive_from, pl.lit(f.start))
    clip_to = pl.min_horizontal(alive_to, pl.lit(f.end))
    period_h = ((clip_to - clip_from).dt.total_microseconds() / 3.6e9).clip(0.0)
    return (
        b.join(spend, on="instance_id", how="left")
        .with_columns(lifetime_h=lifetime_h, period_h=period_h)
        .with_columns(
            inst_h=pl.col("spend_hours").fill_null(pl.col("period_h")),
            inst_cost=pl.coalesce(
                pl.col("spend_amount"),
                pl.when(pl.col("lifetime_h") > 0)
                .then(pl.col("cost") * pl.col("period_h") / pl.col("lifetime_h")),
                pl.col("price_per_hour") * pl.col("period_h"),
                pl.lit(0.0)),
        )
        .with_columns(
            inst_gpu_h=pl.col("inst_h") * pl.col("gpu_count"),
            burst_gpu_rate=pl.when(pl.col("gpu_count") > 0)
            .then(pl.col("price_per_hour") / pl.col("gpu_count")),
        )
    )


def _burst_shares(jobs: pl.DataFrame, instances: pl.DataFrame) -> pl.DataFrame:
    """Each burst job's share of its instance's recorded cost and hours."""
    on = jobs.filter(pl.col("on_burst") & pl.col("node").is_not_null()).select(
        "id", "node", "gpu_h_allocated", "run_h")
    inst = instances.filter(pl.col("node").is_not_null()).select(
        "node", "inst_h", "inst_cost", "inst_gpu_h", "burst_gpu_rate", "gpu_count")
    if on.height == 0 or inst.height == 0:
        return pl.DataFrame(schema={"id": pl.Int64, "burst_cost": pl.Float64,
                                    "burst_instance_h": pl.Float64,
                                    "burst_gpu_rate": pl.Float64})
    weight = pl.when(pl.col("gpu_count") > 0).then(pl.col("gpu_h_allocated")) \
        .otherwise(pl.col("run_h"))
    capacity = pl.when(pl.col("gpu_count") > 0).then(
        pl.max_horizontal(pl.col("inst_gpu_h"), pl.col("w").sum().over("node"))
    ).otherwise(pl.col("w").sum().over("node"))
    return (
        on.join(inst, on="node", how="inner")
        .with_columns(w=weight)
        .with_columns(frac=pl.when(capacity > 0).then(pl.col("w") / capacity).otherwise(0.0))
        .select("id", (pl.col("inst_cost") * pl.col("frac")).alias("burst_cost"),
                (pl.col("inst_h") * pl.col("frac")).alias("burst_instance_h"), "burst_gpu_rate")
    )


def _burst_idle_lines(lines: pl.DataFrame, instances: pl.DataFrame) -> pl.DataFrame:
    """Burst cost and hours no job accounts for, billed to the instance's team and project."""
    used = (lines.filter(pl.col("on_burst")).group_by("node")
            .agg(pl.col("burst_cost").sum().alias("c"), pl.col("burst_instance_h").sum()
                 .alias("h")))
    return (
        instances.join(used, on="node", how="left")
        .with_columns(burst_cost=(pl.col("inst_cost") - pl.col("c").fill_null(0.0)).clip(0.0),
                      burst_instance_h=(pl.col("inst_h") - pl.col("h").fill_null(0.0)).clip(0.0))
        .filter((pl.col("burst_cost") > 1e-12) | (pl.col("burst_instance_h") > 1e-12))
        .select(pl.lit(BURST_IDLE).alias("user"), "project", "team", "pool", "model",
                "burst_cost", "burst_instance_h")
    )


def _unattributed_spend(spend: pl.LazyFrame, instances: pl.DataFrame) -> pl.DataFrame:
    known = instances["instance_id"].implode()
    return (
        spend.collect()
        .filter(pl.col("instance_id").is_null() | ~pl.col("instance_id").is_in(known))
        .select(pl.lit(UNATTRIBUTED).alias("user"), "project", "team",
                pl.lit("(burst)").alias("pool"), pl.lit("(none)").alias("model"),
                pl.col("amount").alias("burst_cost"),
                pl.col("hours").fill_null(0.0).alias("burst_instance_h"))
    )
