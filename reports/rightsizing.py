"""Right-sizing: jobs that hold more GPU than they use, and what fixing it would free.

Findings per job with at least `min_gpu_h` GPU-hours allocated and telemetry:
- idle-gpus: a multi-GPU job where some GPUs averaged under 5% utilization -> request fewer;
  frees those GPUs' hours.
- small-memory: a whole-GPU job whose peak memory stayed under 25% of the GPU's -> a
  fractional GPU (the smallest quarter that holds the peak with 25% headroom) when it is also
  under 50% busy, else a larger batch; frees the hours of the unused fraction.
- smaller-model: peak memory (with 20% headroom) fits a GPU model of the fleet with less memory
  and a GPU-hour rate no higher, and utilization is under 60% -> run there; frees the hours on the
  current model.
- low-utilization: none of the above, but under 20% busy -> look for idle notebooks or input
  bottlenecks; frees nothing by itself (its idle hours are in chargeback's waste).
A job's `gpu_h_freed` is its largest finding, not their sum.
"""

from __future__ import annotations

import polars as pl

from reports.ledger import Ledger
from reports.rates import Rates

IDLE_GPU_PCT = 5.0
SMALL_MEM_FRAC = 0.25
FRACTION_BUSY_PCT = 50.0
SMALLER_MODEL_BUSY_PCT = 60.0
MEM_HEADROOM = 1.2
LOW_UTIL_PCT = 20.0
GIB = 2**30


def rightsizing(
    ledger: Ledger, *, rates: Rates | None = None, by: str | None = None, min_gpu_h: float = 1.0,
) -> pl.DataFrame:
    """One row per flagged job (most GPU-hours freed first), or totals per `by` key."""
    rates = rates or Rates()
    jobs = _measured_jobs(ledger, min_gpu_h)
    alloc, util, n, idle = (pl.col("gpu_h_allocated"), pl.col("util"), pl.col("gpu_count"),
                            pl.col("gpus_idle"))
    quarter = pl.max_horizontal(pl.lit(0.25), (pl.col("frac") * 1.25 * 4).ceil() / 4)
    small = (pl.col("share") >= 1.0) & (pl.col("frac") < SMALL_MEM_FRAC)
    fractional = small & (util < FRACTION_BUSY_PCT)
    smaller = _smaller_model(_models(ledger, rates))
    pct = (util.round(0)).cast(pl.Int64)
    mem_pct = (pl.col("frac") * 100).round(0).cast(pl.Int64)
    findings = [
        ("idle-gpus", (n >= 2) & (idle > 0),
         pl.format("{} of {} GPUs averaged under {}% busy: request {}", idle, n,
                   pl.lit(f"{IDLE_GPU_PCT:g}"), pl.max_horizontal(pl.lit(1), n - idle)),
         pl.when(idle >= n).then(alloc * (n - 1) / n)
         .otherwise(pl.col("idle_gpu_h").fill_null(0.0))),
        ("small-memory", fractional,
         pl.format("peak memory {}% of the GPU and {}% busy: a fractional GPU (gpu_milli={}) "
                   "would do", mem_pct, pct, (quarter * 1000).cast(pl.Int64)),
         alloc * (1 - quarter)),
        ("small-memory", small & ~fractional,
         pl.format("peak memory {}% of the GPU: a larger batch would use it better", mem_pct),
         pl.lit(0.0)),
        ("smaller-model", pl.col("smaller_model").is_not_null(),
         pl.format("peak {} GiB fits {} ({} GiB)",
                   (pl.col("mem_peak_bytes") / GIB).round(1), pl.col("smaller_model"),
                   (pl.col("smaller_mem") / GIB).round(0).cast(pl.Int64)),
         alloc),
    ]
    cols = []
    for i, (kind, cond, text, freed) in enumerate(findings):
        cols += [pl.when(cond).then(pl.lit(kind)).alias(f"k{i}"),
                 pl.when(cond).then(text).alias(f"s{i}"),
                 pl.when(cond).then(freed).alias(f"f{i}")]
    k = len(findings)
    any_found = pl.any_horizontal([pl.col(f"k{i}").is_not_null() for i in range(k)])
    low = ~any_found & pl.col("util_mean_pct").is_not_null() & (util < LOW_UTIL_PCT)
    cols_low = [pl.when(low).then(pl.lit("low-utilization")).alias(f"k{k}"),
                pl.when(low).then(pl.format("{}% busy on average: check for idle notebooks "
                                            "or input bottlenecks", pct)).alias(f"s{k}"),
                pl.when(low).then(0.0).alias(f"f{k}")]
    out = (
        jobs.with_columns(smaller).with_columns(cols).with_columns(cols_low)
        .filter(pl.any_horizontal([pl.col(f"k{i}").is_not_null() for i in range(k + 1)]))
        .select(
            pl.col("id").alias("job_id"), "name", "user", "project", "team", "pool", "model",
            pl.col("gpu_count").cast(pl.Int64), pl.col("share").alias("gpu_share"),
            "gpu_h_allocated", "util_mean_pct", pl.col("gpus_idle").cast(pl.Int64),
            (pl.col("mem_peak_bytes") / GIB).alias("mem_peak_gib"),
            (pl.col("mem_total_bytes") / GIB).alias("mem_total_gib"),
            pl.concat_list([f"k{i}" for i in range(k + 1)]).list.drop_nulls().list.unique(
                maintain_order=True).list.join(", ").alias("findings"),
            pl.concat_list([f"s{i}" for i in range(k + 1)]).list.drop_nulls().list.join("; ")
            .alias("suggestion"),
            pl.max_horizontal([pl.col(f"f{i}") for i in range(k + 1)]).alias("gpu_h_freed"),
        )
        .cast(_SCHEMA)  # type: ignore[arg-type]
        .sort(["gpu_h_freed", "gpu_h_allocated", "job_id"], descending=[True, True, False])
    )
    return out if by is None else _totals_by(out, by)


def _measured_jobs(ledger: Ledger, min_gpu_h: float) -> pl.DataFrame:
    """Jobs with at least `min_gpu_h` GPU-hours and measured GPUs, with their idle GPU-hours,
    mean utilization (`util`) and peak memory share of the GPU (`frac`)."""
    idle_h = (ledger.job_gpus.filter(pl.col("util_mean_pct") < IDLE_GPU_PCT)
              .group_by("job_id").agg(pl.col("gpu_h_allocated").sum().alias("idle_gpu_h")))
    return (
        ledger.jobs.filter((pl.col("gpu_h_allocated") >= min_gpu_h)
                           & (pl.col("gpus_measured") > 0))
        .join(idle_h, left_on="id", right_on="job_id", how="left")
        .with_columns(util=pl.col("util_mean_pct").fill_null(0.0),
                      frac=pl.col("mem_peak_bytes") / pl.col("mem_total_bytes"))
    )


def _totals_by(out: pl.DataFrame, by: str) -> pl.DataFrame:
    """Flagged jobs, GPU-hours and findings per `by` key (most GPU-hours freed first)."""
    return (
        out.group_by(by)
        .agg(jobs_flagged=pl.len().cast(pl.Int64),
             gpu_h_allocated=pl.col("gpu_h_allocated").sum(),
             gpu_h_freed=pl.col("gpu_h_freed").sum(),
             idle_gpus=pl.col("findings").str.contains("idle-gpus").sum().cast(pl.Int64),
             small_memory=pl.col("findings").str.contains("small-memory").sum().cast(pl.Int64),
             smaller_model=pl.col("findings").str.contains("smaller-model").sum()
             .cast(pl.Int64),
             low_utilization=pl.col("findings").str.contains("low-utilization").sum()
             .cast(pl.Int64))
        .sort(["gpu_h_freed", by], descending=[True, False])
    )


_SCHEMA: dict[str, pl.DataType] = {
    "job_id": pl.Int64(), "name": pl.String(), "user": pl.String(), "project": pl.String(),
    "team": pl.String(), "pool": pl.String(), "model": pl.String(), "gpu_count": pl.Int64(),
    "gpu_share": pl.Float64(), "gpu_h_allocated": pl.Float64(), "util_mean_pct": pl.Float64(),
    "gpus_idle": pl.Int64(), "mem_peak_gib": pl.Float64(), "mem_total_gib": pl.Float64(),
    "findings": pl.String(), "suggestion": pl.String(), "gpu_h_freed": pl.Float64(),
}


def _models(ledger: Ledger, rates: Rates) -> list[tuple[str, float, float]]:
    """(model, memory bytes, GPU-hour rate) of every GPU model in the fleet."""
    m = (ledger.gpus.filter(pl.col("mem_total_bytes").is_not_null())
         .group_by("model").agg(pl.col("mem_total_bytes").median()))
    return [(str(name), float(mem), rates.gpu_rate(str(name)).per_gpu_hour)
            for name, mem in m.iter_rows()]


def _smaller_model(models: list[tuple[str, float, float]]) -> list[pl.Expr]:
    """Columns smaller_model / smaller_mem: the cheapest fleet model with less memory than the
    job's GPU, a rate no higher, room for the job's peak memory, when the job is not busy."""
    rate_now = pl.lit(None, pl.Float64)
    for name, _, rate in models:
        rate_now = pl.when(pl.col("model") == name).then(pl.lit(rate)).otherwise(rate_now)
    name_expr: pl.Expr = pl.lit(None, pl.String)
    mem_expr: pl.Expr = pl.lit(None, pl.Float64)
    # cheapest first wins: build the when-chain from the most expensive up
    for name, mem, rate in sorted(models, key=lambda m: (m[2], m[1]), reverse=True):
        ok = ((pl.col("model") != name) & (pl.lit(mem) < pl.col("mem_total_bytes"))
              & (pl.col("mem_peak_bytes") * MEM_HEADROOM <= mem)
              & ((pl.lit(rate) <= rate_now) | rate_now.is_null())
              & (pl.col("util") < SMALLER_MODEL_BUSY_PCT))
        name_expr = pl.when(ok).then(pl.lit(name)).otherwise(name_expr)
        mem_expr = pl.when(ok).then(pl.lit(mem)).otherwise(mem_expr)
    return [name_expr.alias("smaller_model"), mem_expr.alias("smaller_mem")]
