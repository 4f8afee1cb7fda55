"""The one heavy pass every report shares: jobs x GPU telemetry x health for a period.

Pure: `Frames` in, `Ledger` out. GPU telemetry becomes a dense GPU x bucket grid (NumPy), so a
job's utilization over any interval is a difference of two prefix sums instead of a join of
job-hours against samples; allocation per pool and bucket is an interval scatter. Everything
else (clipping, shares, attribution, grouping) is Polars.

Definitions (the reports' glossary):
- A job's billed interval per GPU is its run [started_at, ended_at or now) clipped to the period,
  minus the time that GPU was broken (`gpu_health`).
- GPU-hours allocated = billed hours x share, share = gpu_milli / 1000 (whole GPU when unset).
- Mean utilization of a job-GPU = time-weighted mean of the GPU's samples over its billed
  interval, over the buckets that have samples; GPU-hours used = allocated x mean util / 100
  (for a shared GPU: the job's share x util). Billed time with no samples at all counts as
  allocated but not used, and is reported as `gpu_h_unmeasured`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
import polars as pl

from reports.sources import Frames

IDLE_UTIL_PCT = 5.0
_CHUNK = 1 << 21
_EPOCH = datetime(1970, 1, 1)
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Ledger:
    """Per job, per job-GPU and per pool/model/bucket figures for one period."""

    frames: Frames
    gpus: pl.DataFrame
    jobs: pl.DataFrame
    """One row per job that ran or was submitted in the period (see module docs)."""
    job_gpus: pl.DataFrame
    """One row per job and GPU held (gid NULL when the GPU has no telemetry)."""
    buckets: pl.DataFrame
    """pool, model, ts, and mean GPUs present / broken / allocated / used / burst per bucket."""
    instances: pl.DataFrame
    """Burst instances of the period; `model` is the model its node reports when it joined."""

    @property
    def bucket_h(self) -> float:
        return self.frames.bucket_h


def _us(t: datetime) -> int:
    return int((t - _EPOCH).total_seconds() * 1_000_000)


class _Grid:
    """Dense GPU x bucket arrays, GPU-major and flattened so a GPU's buckets are contiguous,
    with a sentinel at the end for `reduceat` (float32: sums accumulate in float64)."""

    def __init__(self, samples: pl.DataFrame, n_gpus: int, n_buckets: int) -> None:
        self.g, self.b = n_gpus, n_buckets
        size = n_gpus * n_buckets
        self.util = np.zeros(size + 1, np.float32)
        self.cov = np.zeros(size + 1, np.float32)
        self.mem = np.full(size + 1, -1.0, np.float32)
        if samples.height:
            if samples["util_pct"].null_count():
                samples = samples.filter(pl.col("util_pct").is_not_null())
            if samples["mem_used_bytes_max"].null_count():
                samples = samples.with_columns(pl.col("mem_used_bytes_max").fill_null(-1.0))
            gid, bkt = samples["gid"].to_numpy(), samples["bucket"].to_numpy()
            vals, mem = samples["util_pct"].to_numpy(), samples["mem_used_bytes_max"].to_numpy()
            for i in range(0, samples.height, _CHUNK):  # small index temporaries, reused
                b = bkt[i:i + _CHUNK]
                flat = gid[i:i + _CHUNK].astype(np.int64)
                flat *= n_buckets
                flat += b
                v, m = vals[i:i + _CHUNK], mem[i:i + _CHUNK]
                if b.min() < 0 or b.max() >= n_buckets:
                    keep = (b >= 0) & (b < n_buckets)
                    flat, v, m = flat[keep], v[keep], m[keep]
                self.util[flat] = v
                self.cov[flat] = 1.0
                self.mem[flat] = m

    def interval_stats(self, gid: I64, xs: F64, xe: F64) -> tuple[F64, F64, F64]:
        """Per interval [xs, xe) of a GPU (bucket units): sum of util x covered fraction of
        each bucket, covered bucket-fraction (buckets with samples), and peak memory (-1: none).
        """
        n = gid.size
        if n == 0 or self.b == 0:
            return np.zeros(n), np.zeros(n), np.full(n, -1.0)
        k0 = np.clip(np.floor(xs).astype(np.int64), 0, self.b - 1)
        k1 = np.clip(np.ceil(xe).astype(np.int64), k0 + 1, self.b)
        lo, hi = gid * self.b + k0, gid * self.b + k1
        # reduceat also reduces the gaps between consecutive intervals: in start order these
        # gaps add up to at most the grid, in any other order to far more
        order = np.argsort(lo, kind="stable")
        idx = np.empty(2 * n, np.int64)
        idx[0::2], idx[1::2] = lo[order], hi[order]
        u, w, mem = np.empty(n), np.empty(n), np.empty(n)
        u[order] = np.add.reduceat(self.util, idx, dtype=np.float64)[0::2]
        w[order] = np.add.reduceat(self.cov, idx)[0::2]
        mem[order] = np.maximum.reduceat(self.mem, idx)[0::2]
        head = xs - k0  # fraction of the first bucket before the interval
        tail = k1 - xe  # fraction of the last bucket after it
        u -= self.util[lo] * head + self.util[hi - 1] * tail
        w -= self.cov[lo] * head + self.cov[hi - 1] * tail
        return np.maximum(u, 0.0), np.maximum(w, 0.0), mem

    def group_sums(self, group_of_gpu: I64, n_groups: int) -> tuple[F64, F64]:
        """(GPUs present, GPUs used) per group and bucket. Sources order GPUs by pool and
        model, so groups are runs of rows and one `reduceat` pass sums them."""
        present = np.zeros((n_groups, self.b))
        used = np.zeros((n_groups, self.b))
        if self.g == 0 or self.b == 0:
            return present, used
        size = self.g * self.b
        cov = self.cov[:size].reshape(self.g, self.b)
        util = self.util[:size].reshape(self.g, self.b)
        if np.all(np.diff(group_of_gpu) >= 0):
            starts = np.flatnonzero(np.r_[True, np.diff(group_of_gpu) != 0])
            rows = group_of_gpu[starts]
            present[rows] = np.add.reduceat(cov, starts, axis=0, dtype=np.float64)
            used[rows] = np.add.reduceat(util, starts, axis=0, dtype=np.float64) / 100.0
            return present, used
        onehot = np.zeros((n_groups, self.g))
        onehot[group_of_gpu, np.arange(self.g)] = 1.0
        return onehot @ cov, (onehot @ util.astype(np.float64)) / 100.0


def add_intervals(n_rows: int, n_buckets: int, rows: I64, xs: F64, xe: F64, w: F64) -> F64:
    """Scatter weighted intervals [xs, xe) (in bucket units) into a rows x buckets array of
    bucket means: a bucket half covered by weight 2 gets 1."""
    out = np.zeros(n_rows * n_buckets, np.float64)
    if rows.size == 0 or n_buckets == 0:
        return out.reshape(n_rows, n_buckets)
    xs = np.clip(xs, 0, n_buckets)
    xe = np.clip(xe, 0, n_buckets)
    ok = xe > xs
    rows, xs, xe, w = rows[ok], xs[ok], xe[ok], w[ok]
    k0 = np.minimum(np.floor(xs).astype(np.int64), n_buckets - 1)
    k1 = np.floor(xe).astype(np.int64)
    same = k0 == k1
    size = n_rows * n_buckets
    part = _bc(rows[same] * n_buckets + k0[same], w[same] * (xe - xs)[same], size)
    d = ~same
    part += _bc(rows[d] * n_buckets + k0[d], w[d] * (k0[d] + 1 - xs[d]), size)
    tail = d & (k1 < n_buckets)
    part += _bc(rows[tail] * n_buckets + k1[tail], w[tail] * (xe[tail] - k1[tail]), size)
    wide = n_buckets + 1
    diff = _bc(rows[d] * wide + k0[d] + 1, w[d], n_rows * wide)
    diff -= _bc(rows[d] * wide + k1[d], w[d], n_rows * wide)
    full = np.cumsum(diff.reshape(n_rows, wide)[:, :n_buckets], axis=1)
    return np.asarray(part.reshape(n_rows, n_buckets) + full, dtype=np.float64)


def _bc(idx: I64, weights: F64, size: int) -> F64:
    return np.bincount(idx, weights, minlength=size).astype(np.float64, copy=False)


def _subtract(lo: int, hi: int, cuts: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """[lo, hi) minus the union of `cuts`."""
    out: list[tuple[int, int]] = []
    cur = lo
    for a, b in sorted(cuts):
        if b <= cur or a >= hi:
            continue
        if a > cur:
            out.append((cur, a))
        cur = max(cur, b)
        if cur >= hi:
            break
    if cur < hi:
        out.append((cur, hi))
    return out


def build_ledger(frames: Frames) -> Ledger:
    """Compute the ledger of a period. Pure; all inputs are in `frames`."""
    start_us, end_us, now_us = _us(frames.start), _us(frames.end), _us(frames.now)
    origin_us, bucket_us = _us(frames.origin), frames.bucket_s * 1_000_000
    gpus = frames.gpus.collect()
    grid = _Grid(frames.gpu_samples.collect(), gpus.height, frames.n_buckets)

    def x_of(t_us: I64) -> F64:
        return np.asarray((t_us - origin_us) / bucket_us, dtype=np.float64)

    jobs = _clip_jobs(frames.jobs.collect(), start_us, end_us, now_us).with_row_index("ji")
    job_gpus = _job_gpus(jobs, gpus)
    segs = _segments(job_gpus, frames.gpu_health.collect(), now_us)

    # per segment, then per job-GPU (bincount over the jg index: no joins, no hashing)
    n_jg = job_gpus.height
    seg_jg = segs["jg"].to_numpy().astype(np.int64)
    seg_from, seg_to = segs["seg_from"].to_numpy(), segs["seg_to"].to_numpy()
    has = segs["gid"].is_not_null().to_numpy()
    gid = segs["gid"].fill_null(0).to_numpy().astype(np.int64)[has]
    u, w, mem = grid.interval_stats(gid, x_of(seg_from[has]), x_of(seg_to[has]))
    billed_h = np.bincount(seg_jg, (seg_to - seg_from) / 3.6e9, minlength=n_jg)
    u_jg = np.bincount(seg_jg[has], u, minlength=n_jg)
    w_jg = np.bincount(seg_jg[has], w, minlength=n_jg)
    mem_jg = np.full(n_jg, -1.0)
    np.maximum.at(mem_jg, seg_jg[has], mem)
    weight = job_gpus["weight"].to_numpy().astype(np.float64)
    run_h = job_gpus["run_h"].to_numpy().astype(np.float64)
    util_mean = np.divide(u_jg, w_jg, out=np.full(n_jg, np.nan), where=w_jg > 0)
    alloc = weight * billed_h
    used = alloc * np.nan_to_num(util_mean) / 100.0
    measured = weight * np.minimum(w_jg * frames.bucket_h, billed_h)
    broken = weight * np.maximum(run_h - billed_h, 0.0)
    job_gpus = job_gpus.with_columns(
        pl.Series("util_mean_pct", util_mean, nan_to_null=True),
        pl.Series("mem_peak_bytes", np.where(mem_jg >= 0, mem_jg, np.nan), nan_to_null=True),
        pl.Series("gpu_h_allocated", alloc), pl.Series("gpu_h_used", used),
        pl.Series("gpu_h_measured", measured), pl.Series("gpu_h_broken", broken),
    )
    jobs = _per_job(jobs, job_gpus, gpus, util_mean, mem_jg)
    node_model = gpus.group_by("node").agg(pl.col("model").first().alias("node_model"))
    instances = (
        frames.burst_instances.collect()
        .join(node_model, on="node", how="left", maintain_order="left")
        .with_columns(model=pl.coalesce("node_model", "gpu_model", pl.lit("(unknown)")))
        .drop("node_model")
    )
    buckets = _buckets(frames, gpus, grid, jobs, job_gpus, segs, instances, x_of)
    return Ledger(frames=frames, gpus=gpus, jobs=jobs, job_gpus=job_gpus, buckets=buckets,
                  instances=instances)


def _clip_jobs(jobs: pl.DataFrame, start_us: int, end_us: int, now_us: int) -> pl.DataFrame:
    us = pl.Int64
    started = pl.col("started_at").dt.epoch("us")
    run_from = pl.when(started.is_not_null()).then(
        pl.max_horizontal(started, pl.lit(start_us, us)))
    run_to = pl.min_horizontal(
        pl.col("ended_at").dt.epoch("us").fill_null(now_us), pl.lit(end_us, us))
    return jobs.with_columns(
        run_from=run_from, run_to=run_to,
        share=pl.when(pl.col("gpu_count") <= 0).then(0.0)
        .when(pl.col("gpu_milli") > 0).then(pl.col("gpu_milli") / 1000.0).otherwise(1.0),
    ).with_columns(
        run_h=((pl.col("run_to") - pl.col("run_from")).clip(0) / 3.6e9).fill_null(0.0),
    )


def _job_gpus(jobs: pl.DataFrame, gpus: pl.DataFrame) -> pl.DataFrame:
    """One row per job and GPU held; GPUs without known indices collapse into one row whose
    `weight` is gpu_count x share."""
    has_idx = pl.col("gpu_indices").list.len().fill_null(0) > 0
    return (
        jobs.filter((pl.col("gpu_count") > 0) & (pl.col("run_h") > 0))
        .select("ji", "id", "node", "run_from", "run_to", "run_h", "share", "gpu_count",
                pl.when(has_idx).then(pl.col("gpu_indices")).alias("gpu_index"),
                pl.when(has_idx).then(pl.lit(1)).otherwise(pl.col("gpu_count")).alias("mult"))
        .explode("gpu_index")
        .with_columns(pl.col("gpu_index").cast(pl.Int16),
                      weight=pl.col("share") * pl.col("mult"))
        .join(gpus.select("node", "gpu_index", "gid"), on=["node", "gpu_index"], how="left",
              maintain_order="left")
        .with_row_index("jg")
        .rename({"id": "job_id"})
    )


def _segments(job_gpus: pl.DataFrame, health: pl.DataFrame, now_us: int) -> pl.DataFrame:
    """Billed segments per job-GPU: the run minus broken intervals of that GPU."""
    base = job_gpus.select("jg", "gid", "node", "gpu_index",
                           pl.col("run_from").alias("seg_from"), pl.col("run_to").alias("seg_to"))
    if health.height == 0 or base.height == 0:
        return base.drop("node", "gpu_index")
    h = health.select(
        "node", pl.col("gpu_index").cast(pl.Int16),
        pl.col("broken_from").dt.epoch("us").alias("b_from"),
        pl.col("broken_until").dt.epoch("us").fill_null(now_us).alias("b_to"))
    hit = (base.join(h, on=["node", "gpu_index"], how="inner")
           .filter((pl.col("b_from") < pl.col("seg_to")) & (pl.col("b_to") > pl.col("seg_from")))
           .group_by("jg", "gid", "seg_from", "seg_to")
           .agg(pl.col("b_from"), pl.col("b_to")))
    rows: list[tuple[int, int | None, int, int]] = []
    for jg, gid, lo, hi, bf, bt in hit.iter_rows():
        for a, b in _subtract(lo, hi, list(zip(bf, bt, strict=True))):
            rows.append((jg, gid, a, b))
    split = pl.DataFrame(rows, schema={"jg": pl.UInt32, "gid": pl.UInt32,
                                       "seg_from": pl.Int64, "seg_to": pl.Int64}, orient="row")
    keep = base.drop("node", "gpu_index").join(hit.select("jg"), on="jg", how="anti")
    return pl.concat([keep, split.cast(keep.schema)])


def _per_job(jobs: pl.DataFrame, job_gpus: pl.DataFrame, gpus: pl.DataFrame,
             util_mean: F64, mem_jg: F64) -> pl.DataFrame:
    n = jobs.height
    ji = job_gpus["ji"].to_numpy().astype(np.int64)

    def total(col: str) -> F64:
        return np.bincount(ji, job_gpus[col].to_numpy().astype(np.float64),
                           minlength=n).astype(np.float64)

    measured_gpu = ~np.isnan(util_mean)
    idle = np.bincount(ji, measured_gpu & (np.nan_to_num(util_mean) < IDLE_UTIL_PCT),
                       minlength=n)
    mem = np.full(n, -1.0)
    np.maximum.at(mem, ji, mem_jg)
    first_gid = np.full(n, -1, np.int64)
    gid = job_gpus["gid"]
    known = gid.is_not_null().to_numpy()
    first_gid[ji[known][::-1]] = gid.to_numpy()[known][::-1].astype(np.int64)
    alloc, used, meas = total("gpu_h_allocated"), total("gpu_h_used"), total("gpu_h_measured")
    dim = gpus.select(pl.col("gid").cast(pl.Int64).alias("first_gid"),
                      pl.col("model").alias("gpu_dim_model"), "mem_total_bytes")
    gpu_model = pl.when(pl.col("gpu_count") <= 0).then(pl.lit("(none)")).otherwise(
        pl.coalesce("gpu_dim_model", "fleet_model", "gpu_model", pl.lit("(unknown)")))
    jobs = jobs.join(_fleet_models(jobs, gpus), on=["pool", "gpu_model"], how="left",
                     maintain_order="left")
    return (
        jobs.with_columns(
            pl.Series("gpu_h_allocated", alloc), pl.Series("gpu_h_used", used),
            pl.Series("gpu_h_measured", meas), pl.Series("gpu_h_broken", total("gpu_h_broken")),
            pl.Series("gpu_h_unmeasured", np.maximum(alloc - meas, 0.0)),
            pl.Series("util_mean_pct", np.divide(used * 100, alloc, out=np.full(n, np.nan),
                                                 where=meas > 0), nan_to_null=True),
            pl.Series("gpus_idle", idle.astype(np.int64)),
            pl.Series("gpus_measured", np.bincount(ji, measured_gpu, minlength=n)
                      .astype(np.int64)),
            pl.Series("mem_peak_bytes", np.where(mem >= 0, mem, np.nan), nan_to_null=True),
            pl.Series("first_gid", np.where(first_gid >= 0, first_gid, np.nan),
                      nan_to_null=True).cast(pl.Int64),
        )
        .join(dim, on="first_gid", how="left", maintain_order="left")
        .with_columns(model=gpu_model)
        .drop("gpu_dim_model", "fleet_model")
        .with_columns(
            cpu_core_h=pl.col("cpu_milli") / 1000.0 * pl.col("run_h"),
            mem_gb_h=pl.col("mem_bytes") / 2**30 * pl.col("run_h"),
            wait_s=(pl.col("started_at") - pl.col("submitted_at")).dt.total_microseconds() / 1e6,
            ran=pl.col("run_h") > 0,
        )
    )


def _fleet_models(jobs: pl.DataFrame, gpus: pl.DataFrame) -> pl.DataFrame:
    """Requested model names ("A100") resolved to the one fleet model of the pool whose name
    contains them ("NVIDIA A100-SXM4-80GB"), for jobs that never ran on a known GPU."""
    fleet = gpus.select("pool", "model").unique()
    rows: list[tuple[str, str, str]] = []
    for pool, want in jobs.select("pool", "gpu_model").unique().drop_nulls().iter_rows():
        hits = [m for p, m in fleet.iter_rows() if p == pool and want.lower() in m.lower()]
        if len(hits) == 1:
            rows.append((pool, want, hits[0]))
    return pl.DataFrame(rows, schema={"pool": pl.String, "gpu_model": pl.String,
                                      "fleet_model": pl.String}, orient="row")


def _buckets(frames: Frames, gpus: pl.DataFrame, grid: _Grid, jobs: pl.DataFrame,
             job_gpus: pl.DataFrame, segs: pl.DataFrame, burst: pl.DataFrame,
             x_of: Callable[[I64], F64]) -> pl.DataFrame:
    gpu_jobs = jobs.filter(pl.col("gpu_count") > 0).select("pool", "model").unique()
    groups = (
        pl.concat([gpus.select("pool", "model"), gpu_jobs,
                   burst.select("pool", "model")])
        .unique().sort("pool", "model").with_row_index("grp")
    )
    n, nb = groups.height, frames.n_buckets
    g_of_gpu = gpus.join(groups, on=["pool", "model"], how="left").sort("gid")["grp"]
    present, used = grid.group_sums(g_of_gpu.to_numpy().astype(np.int64), n)

    job_grp = jobs.select("pool", "model").join(
        groups, on=["pool", "model"], how="left", maintain_order="left")["grp"]
    seg_jg = segs["jg"].to_numpy().astype(np.int64)
    jg_ji = job_gpus["ji"].to_numpy().astype(np.int64)
    seg_grp = job_grp.fill_null(0).to_numpy().astype(np.int64)[jg_ji[seg_jg]]
    allocated = add_intervals(n, nb, seg_grp, x_of(segs["seg_from"].to_numpy()),
                              x_of(segs["seg_to"].to_numpy()),
                              job_gpus["weight"].to_numpy().astype(np.float64)[seg_jg])
    start_us, end_us, now_us = _us(frames.start), _us(frames.end), _us(frames.now)
    hb = (frames.gpu_health.collect()
          .with_columns(pl.col("gpu_index").cast(pl.Int16))
          .join(gpus.select("node", "gpu_index", "pool", "model"), on=["node", "gpu_index"])
          .join(groups, on=["pool", "model"]))
    h_from = np.maximum(hb["broken_from"].dt.epoch("us").to_numpy(), start_us)
    h_to = np.minimum(hb["broken_until"].dt.epoch("us").fill_null(now_us).to_numpy(), end_us)
    broken = add_intervals(n, nb, hb["grp"].to_numpy().astype(np.int64), x_of(h_from),
                           x_of(h_to), np.ones(hb.height))
    bb = burst.join(groups, on=["pool", "model"])
    b_from = np.maximum(bb["ready_at"].fill_null(bb["launched_at"]).dt.epoch("us").to_numpy(),
                        start_us)
    b_to = np.minimum(bb["terminated_at"].dt.epoch("us").fill_null(now_us).to_numpy(), end_us)
    burst_gpus = add_intervals(n, nb, bb["grp"].to_numpy().astype(np.int64), x_of(b_from),
                               x_of(b_to), bb["gpu_count"].to_numpy().astype(np.float64))
    ts = pl.datetime_range(frames.origin, frames.origin + (nb - 1) * timedelta(
                               seconds=frames.bucket_s),
                           f"{frames.bucket_s}s", eager=True).alias("ts")
    return pl.DataFrame({
        "pool": np.repeat(groups["pool"].to_numpy(), nb),
        "model": np.repeat(groups["model"].to_numpy(), nb),
        "ts": pl.concat([ts] * n) if n else ts.clear(),
        "gpus_present": present.reshape(-1), "gpus_broken": broken.reshape(-1),
        "gpus_allocated": allocated.reshape(-1), "gpus_used": used.reshape(-1),
        "burst_gpus": burst_gpus.reshape(-1),
    }, schema_overrides={"pool": pl.String, "model": pl.String})
