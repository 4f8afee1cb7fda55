"""The only I/O of reports: the store's tables for one period, as Polars lazy frames.

Period filters, column projection and the roll-up of finer samples to the report's bucket run in
DuckDB; results cross over as Arrow (`.pl()`). GPU telemetry comes as a star: `gpus` (one row
per GPU, its `gid` the row number) and `gpu_samples` (gid, bucket index, utilization, peak
memory), so the 17-million-row fact table carries no strings.

Resolution: periods longer than two days use 1-hour buckets (`gpu_samples_1h`, then
`gpu_samples_1m` and raw `gpu_samples` for the hours not rolled up yet); shorter periods use
1-minute buckets (`gpu_samples_1m`, then raw), or hours when no finer data exists.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import polars as pl

SHORT_PERIOD = timedelta(days=2)
# (table, native bucket seconds, SELECT list rolled up to the report bucket)
_TIERS: tuple[tuple[str, int, str], ...] = (
    ("gpu_samples_1h", 3600,
     "avg(util_pct_mean) AS util_pct, max(mem_used_bytes_max) AS mem_used_bytes_max, "
     "max(mem_total_bytes) AS mem_total_bytes"),
    ("gpu_samples_1m", 60,
     "avg(util_pct_mean) AS util_pct, max(mem_used_bytes_max) AS mem_used_bytes_max, "
     "max(mem_total_bytes) AS mem_total_bytes"),
    ("gpu_samples", 1,
     "avg(util_pct) AS util_pct, max(mem_used_bytes) AS mem_used_bytes_max, "
     "max(mem_total_bytes) AS mem_total_bytes"),
)
_NONE = "(none)"
_counter = itertools.count()


def to_naive_utc(t: datetime | float) -> datetime:
    """Store timestamps are naive UTC; accept epoch seconds or aware/naive datetimes."""
    if isinstance(t, int | float):
        return datetime.fromtimestamp(float(t), UTC).replace(tzinfo=None)
    if t.tzinfo is not None:
        return t.astimezone(UTC).replace(tzinfo=None)
    return t


@dataclass(frozen=True, slots=True)
class Frames:
    """Everything a report reads, for the period [start, end) (end already capped at `now`).

    Bucket `b` of `gpu_samples` covers [origin + b * bucket_s, origin + (b + 1) * bucket_s).
    """

    start: datetime
    end: datetime
    now: datetime
    origin: datetime
    bucket_s: int
    n_buckets: int
    resolution: str
    gpus: pl.LazyFrame
    """gid u32, node, gpu_index i16, model, mem_total_bytes i64, pool."""
    gpu_samples: pl.LazyFrame
    """gid u32, bucket i32, util_pct f32, mem_used_bytes_max f32."""
    jobs: pl.LazyFrame
    """Jobs that ran in the period or were submitted in it; `pool` from the node's pool."""
    nodes: pl.LazyFrame
    """name, pool, gpu_model, gpu_count."""
    gpu_health: pl.LazyFrame
    """node, gpu_index, broken_from, broken_until (NULL: still broken), reason."""
    burst_instances: pl.LazyFrame
    """Instances alive in the period; `pool` falls back to the joined node's pool."""
    spend: pl.LazyFrame
    """Spend rows with ts in the period."""

    @property
    def bucket_h(self) -> float:
        return self.bucket_s / 3600.0


def from_store(
    con: duckdb.DuckDBPyConnection,
    start: datetime | float,
    end: datetime | float,
    *,
    now: datetime | float,
    bucket_s: int | None = None,
) -> Frames:
    """Read the period [start, end) from a store connection (read-only is enough)."""
    start_dt, now_dt = to_naive_utc(start), to_naive_utc(now)
    end_dt = min(to_naive_utc(end), now_dt)
    if end_dt <= start_dt:
        end_dt = start_dt
    cur = con.cursor()
    try:
        if bucket_s is None:
            bucket_s = 60 if end_dt - start_dt <= SHORT_PERIOD else 3600
        parts = _sample_parts(cur, start_dt, end_dt, bucket_s)
        if not parts and bucket_s < 3600:
            bucket_s = 3600
            parts = _sample_parts(cur, start_dt, end_dt, bucket_s)
        origin = _floor(start_dt, bucket_s)
        n_buckets = max(1, -(-int((end_dt - origin).total_seconds()) // bucket_s))
        gpus, samples = _gpu_frames(cur, parts, origin, bucket_s)
        resolution = "1h" if bucket_s == 3600 else "1m" if bucket_s == 60 else f"{bucket_s}s"
        p: dict[str, Any] = {"s": start_dt, "e": end_dt, "now": now_dt}
        nodes = _q(cur, "SELECT name, coalesce(pool, '(none)') AS pool, gpu_model, gpu_count "
                        "FROM nodes", {})
        jobs = _q(cur, """
            SELECT j.id, j.name, j.user, coalesce(j.project, '(none)') AS project,
                   coalesce(j.team, '(none)') AS team, j.kind, j.state,
                   coalesce(n.pool, j.pool, '(none)') AS pool, j.node, j.gpu_indices,
                   coalesce(j.gpu_count, 0) AS gpu_count, coalesce(j.gpu_milli, 0) AS gpu_milli,
                   coalesce(j.gpu_model, n.gpu_model) AS gpu_model,
                   coalesce(j.cpu_milli, 0) AS cpu_milli, coalesce(j.mem_bytes, 0) AS mem_bytes,
                   j.submitted_at, j.started_at, j.ended_at, coalesce(j.burst, false) AS burst
            FROM jobs j LEFT JOIN nodes n ON n.name = j.node
            WHERE (j.started_at < $e AND coalesce(j.ended_at, $now) > $s)
               OR (j.submitted_at >= $s AND j.submitted_at < $e)""", p)
        health = _q(cur, """
            SELECT node, gpu_index, broken_from, broken_until, reason FROM gpu_health
            WHERE broken_from < $e AND coalesce(broken_until, $now) > $s""", p)
        burst = _q(cur, """
            SELECT b.instance_id, b.provider, b.offer, b.instance_type, b.market, b.gpu_model,
                   coalesce(b.gpu_count, 0) AS gpu_count, b.node,
                   coalesce(b.pool, n.pool, '(burst)') AS pool,
                   coalesce(b.team, '(none)') AS team, coalesce(b.project, '(none)') AS project,
                   b.price_per_hour, b.state, b.launched_at, b.ready_at, b.terminated_at, b.cost
            FROM burst_instances b LEFT JOIN nodes n ON n.name = b.node
            WHERE coalesce(b.ready_at, b.launched_at) < $e
              AND coalesce(b.terminated_at, $now) > $s""", p)
        spend = _q(cur, """
            SELECT ts, provider, instance_id, coalesce(team, '(none)') AS team,
                   coalesce(project, '(none)') AS project, hours, amount
            FROM spend WHERE ts >= $s AND ts < $e""", p)
    finally:
        cur.close()
    return Frames(
        start=start_dt, end=end_dt, now=now_dt, origin=origin, bucket_s=bucket_s,
        n_buckets=n_buckets, resolution=resolution, gpus=gpus, gpu_samples=samples, jobs=jobs,
        nodes=nodes, gpu_health=health, burst_instances=burst, spend=spend,
    )


def _q(cur: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> pl.LazyFrame:
    used = {k: v for k, v in params.items() if f"${k}" in sql}
    rel = cur.sql(sql, params=used) if used else cur.sql(sql)
    return rel.pl().lazy()


def _floor(t: datetime, bucket_s: int) -> datetime:
    epoch = datetime(1970, 1, 1)
    secs = int((t - epoch).total_seconds())
    return epoch + timedelta(seconds=secs - secs % bucket_s)


def _sample_parts(
    cur: duckdb.DuckDBPyConnection, start: datetime, end: datetime, bucket_s: int
) -> list[str]:
    """SQL SELECTs (one per tier) that together cover [start, end) without overlap."""
    parts: list[str] = []
    cut = start
    for table, native_s, aggs in _TIERS:
        if native_s > bucket_s or cut >= end:
            continue
        rows = cur.execute(
            f"SELECT max(ts) FROM {table} WHERE ts >= ? AND ts < ?", [cut, end]
        ).fetchall()
        last = rows[0][0] if rows else None
        if last is None:
            continue
        lo, hi = cut, end
        cut = max(cut, last + timedelta(seconds=native_s))
        b = f"time_bucket(INTERVAL '{bucket_s} seconds', ts)"
        where = f"ts >= TIMESTAMP '{_iso(lo)}' AND ts < TIMESTAMP '{_iso(min(hi, cut))}'"
        if native_s == bucket_s:
            parts.append(
                f"SELECT ts, node, gpu_index, model, util_pct_mean AS util_pct, "
                f"mem_used_bytes_max, mem_total_bytes FROM {table} WHERE {where}"
            )
        else:
            parts.append(
                f"SELECT {b} AS ts, node, gpu_index, any_value(model) AS model, {aggs} "
                f"FROM {table} WHERE {where} GROUP BY ALL"
            )
    return parts


def _iso(t: datetime) -> str:
    return t.isoformat(sep=" ")


def _gpu_frames(
    cur: duckdb.DuckDBPyConnection, parts: list[str], origin: datetime, bucket_s: int
) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    gpu_schema = {"gid": pl.UInt32, "node": pl.String, "gpu_index": pl.Int16,
                  "model": pl.String, "mem_total_bytes": pl.Int64, "pool": pl.String}
    sample_schema = {"gid": pl.UInt32, "bucket": pl.Int32, "util_pct": pl.Float32,
                     "mem_used_bytes_max": pl.Float32}
    if not parts:
        return pl.LazyFrame(schema=gpu_schema), pl.LazyFrame(schema=sample_schema)
    src = " UNION ALL ".join(parts)
    # any_value: a GPU slot keeps its model (a mid-period swap reports one of the two)
    # any_value: a GPU slot keeps its model (a mid-period swap reports one of the two).
    # gid follows pool and model, so each pool/model group is a run of gids.
    gpus_sql = f"""
        WITH g AS (
            SELECT node, gpu_index, any_value(model) AS model,
                   max(mem_total_bytes)::BIGINT AS mem_total_bytes
            FROM ({src}) GROUP BY node, gpu_index
        ), jp AS (
            SELECT node, mode(pool) AS pool FROM jobs
            WHERE node IS NOT NULL AND pool IS NOT NULL GROUP BY node
        ), d AS (
            SELECT g.node, g.gpu_index::SMALLINT AS gpu_index,
                   coalesce(g.model, n.gpu_model, '(unknown)') AS model, g.mem_total_bytes,
                   coalesce(n.pool, jp.pool, '{_NONE}') AS pool
            FROM g LEFT JOIN nodes n ON n.name = g.node LEFT JOIN jp ON jp.node = g.node
        )
        SELECT (row_number() OVER (ORDER BY pool, model, node, gpu_index) - 1)::UINTEGER
                   AS gid, node, gpu_index, model, mem_total_bytes, pool
        FROM d ORDER BY gid"""
    gpus = cur.sql(gpus_sql).pl().cast(gpu_schema)
    name = f"_fd_report_gpus_{next(_counter)}"
    cur.register(name, gpus.select("gid", "node", "gpu_index").to_arrow())
    origin_us = int((origin - datetime(1970, 1, 1)).total_seconds()) * 1_000_000
    try:
        samples = cur.sql(f"""
            SELECT d.gid, ((epoch_us(s.ts) - {origin_us}) // {bucket_s * 1_000_000})::INTEGER
                       AS bucket,
                   s.util_pct::FLOAT AS util_pct, s.mem_used_bytes_max::FLOAT
                       AS mem_used_bytes_max
            FROM ({src}) s JOIN {name} d ON d.node = s.node AND d.gpu_index = s.gpu_index
            """).pl()
    finally:
        cur.unregister(name)
    return gpus.lazy(), samples.cast(sample_schema).lazy()
