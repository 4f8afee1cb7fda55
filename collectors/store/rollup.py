"""Rollups and retention: raw samples -> 1-minute -> 1-hour, keeping min / mean / max.

`rollup(con, now, raw_retention_s=..., minute_retention_s=...)` runs three steps, each one
transaction, each safe to repeat and to interrupt:

1. Complete minutes of `gpu_samples` / `node_samples` (minute end + `settle_s` <= now) are
   aggregated into `*_1m`; the watermark `meta.rollup_1m_watermark` (first minute not rolled
   up) moves in the same transaction, so a minute is never inserted twice. Samples arriving
   later for a minute already rolled up stay in the raw table only.
2. Hours whose 60 minutes are all behind the 1m watermark are aggregated from `*_1m` into
   `*_1h` (`meta.rollup_1h_watermark`). Means are sample-weighted
   (sum(mean x samples) / sum(samples)), min of mins, max of maxes.
3. Raw rows older than `raw_retention_s` are deleted, but never rows not yet rolled up; `*_1m`
   rows older than `minute_retention_s` likewise once in `*_1h`; `*_1h` rows only when
   `hour_retention_s` is set. `gpu_events` (rare, needed by health reports) are kept for
   `minute_retention_s`.

Each pass is bounded: the 1m step covers at most `max_minutes` minutes past its watermark
and the 1h step at most `MAX_HOURS_PER_PASS` hours (the anti-joins look only inside that
window), so after downtime the backlog is worked off over several passes instead of one long
transaction that holds up the store's writer.

Call it outside any open transaction on the connection (the engine's writer).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

WM_1M = "rollup_1m_watermark"
WM_1H = "rollup_1h_watermark"
MAX_MINUTES_PER_PASS = 180
MAX_HOURS_PER_PASS = 48

# Raw tables without rollups, deleted after raw retention.
_RAW_ONLY = ("disk_samples", "gpu_processes", "container_samples", "slurm_node_samples",
             "slurm_job_samples")

_GPU_1M = """
INSERT INTO gpu_samples_1m
SELECT date_trunc('minute', s.ts) AS m, s.node, s.gpu_index,
       arg_max(s.uuid, s.ts), arg_max(s.model, s.ts), count(*),
       min(s.util_pct), avg(s.util_pct), max(s.util_pct),
       min(s.mem_used_bytes), avg(s.mem_used_bytes), max(s.mem_used_bytes),
       max(s.mem_total_bytes),
       min(s.power_w), avg(s.power_w), max(s.power_w),
       max(s.temp_c)
FROM gpu_samples s
WHERE s.ts >= $lo AND s.ts < $hi
  AND NOT EXISTS (SELECT 1 FROM gpu_samples_1m r
                  WHERE r.ts >= $lo AND r.ts < $hi
                    AND r.ts = date_trunc('minute', s.ts) AND r.node = s.node
                    AND r.gpu_index = s.gpu_index)
GROUP BY m, s.node, s.gpu_index
"""

_NODE_1M = """
INSERT INTO node_samples_1m
SELECT date_trunc('minute', s.ts) AS m, s.node, count(*),
       min(s.cpu_util_pct), avg(s.cpu_util_pct), max(s.cpu_util_pct),
       min(s.mem_used_bytes), avg(s.mem_used_bytes), max(s.mem_used_bytes),
       max(s.mem_total_bytes)
FROM node_samples s
WHERE s.ts >= $lo AND s.ts < $hi
  AND NOT EXISTS (SELECT 1 FROM node_samples_1m r
                  WHERE r.ts >= $lo AND r.ts < $hi
                    AND r.ts = date_trunc('minute', s.ts) AND r.node = s.node)
GROUP BY m, s.node
"""


def _wmean(col: str) -> str:
    """Sample-weighted mean over the minutes that have a value."""
    return (f"sum({col} * s.samples) / "
            f"nullif(sum(CASE WHEN {col} IS NOT NULL THEN s.samples END), 0)")


_GPU_1H = f"""
INSERT INTO gpu_samples_1h
SELECT date_trunc('hour', s.ts) AS h, s.node, s.gpu_index,
       arg_max(s.uuid, s.ts), arg_max(s.model, s.ts), sum(s.samples),
       min(s.util_pct_min), {_wmean("s.util_pct_mean")}, max(s.util_pct_max),
       min(s.mem_used_bytes_min), {_wmean("s.mem_used_bytes_mean")}, max(s.mem_used_bytes_max),
       max(s.mem_total_bytes),
       min(s.power_w_min), {_wmean("s.power_w_mean")}, max(s.power_w_max),
       max(s.temp_c_max)
FROM gpu_samples_1m s
WHERE s.ts >= $lo AND s.ts < $hi
  AND NOT EXISTS (SELECT 1 FROM gpu_samples_1h r
                  WHERE r.ts >= $lo AND r.ts < $hi
                    AND r.ts = date_trunc('hour', s.ts) AND r.node = s.node
                    AND r.gpu_index = s.gpu_index)
GROUP BY h, s.node, s.gpu_index
"""

_NODE_1H = f"""
INSERT INTO node_samples_1h
SELECT date_trunc('hour', s.ts) AS h, s.node, sum(s.samples),
       min(s.cpu_util_pct_min), {_wmean("s.cpu_util_pct_mean")}, max(s.cpu_util_pct_max),
       min(s.mem_used_bytes_min), {_wmean("s.mem_used_bytes_mean")},
       max(s.mem_used_bytes_max), max(s.mem_total_bytes)
FROM node_samples_1m s
WHERE s.ts >= $lo AND s.ts < $hi
  AND NOT EXISTS (SELECT 1 FROM node_samples_1h r
                  WHERE r.ts >= $lo AND r.ts < $hi
                    AND r.ts = date_trunc('hour', s.ts) AND r.node = s.node)
GROUP BY h, s.node
"""


def _naive_utc(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo is not None else t


def _floor(t: datetime, unit: str) -> datetime:
    t = t.replace(second=0, microsecond=0)
    return t.replace(minute=0) if unit == "hour" else t


def _get_wm(con: duckdb.DuckDBPyConnection, key: str) -> datetime | None:
    row = con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    return datetime.fromisoformat(str(row[0])) if row else None


def _set_wm(con: duckdb.DuckDBPyConnection, key: str, value: datetime) -> None:
    con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value.isoformat()])


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: Any) -> int:
    row = con.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


def _min_ts(con: duckdb.DuckDBPyConnection, tables: tuple[str, ...]) -> datetime | None:
    sql = " UNION ALL ".join(f'SELECT min(ts) AS t FROM "{t}"' for t in tables)
    row = con.execute(f"SELECT min(t) FROM ({sql})").fetchone()
    return row[0] if row and row[0] is not None else None


class _Tx:
    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        self.con.execute("BEGIN TRANSACTION")
        return self.con

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.con.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def _step(con: duckdb.DuckDBPyConnection, key: str, target: datetime, unit: str,
          sources: tuple[str, ...], inserts: tuple[tuple[str, str], ...],
          out: dict[str, int], most: timedelta) -> datetime | None:
    with _Tx(con):
        stored = _get_wm(con, key)
        wm = stored
        if wm is None:
            first = _min_ts(con, sources)
            if first is None:
                return None  # nothing stored yet: no watermark, late data is still welcome
            wm = _floor(first, unit)
        if target <= wm:
            if stored is None:
                _set_wm(con, key, wm)
            return wm
        target = min(target, wm + most)
        params = {"lo": wm, "hi": target}
        for table, sql in inserts:
            out[table] = out.get(table, 0) + _count(con, sql, params)
        _set_wm(con, key, target)
        return target


def rollup(
    store_con: Any,
    now: datetime,
    *,
    raw_retention_s: float,
    minute_retention_s: float,
    hour_retention_s: float | None = None,
    settle_s: float = 15.0,
    max_minutes: int = MAX_MINUTES_PER_PASS,
) -> dict[str, int]:
    """Roll up complete minutes and hours, then apply retention (see the module docstring).

    `store_con` is the DuckDB connection (or a `Store`); `now` UTC (naive = UTC). Returns rows
    inserted per rollup table and rows deleted per table (`deleted:<table>`).
    """
    con: duckdb.DuckDBPyConnection = getattr(store_con, "con", store_con)
    now = _naive_utc(now)
    out: dict[str, int] = {}
    target_1m = _floor(now - timedelta(seconds=settle_s), "minute")
    wm_1m = _step(con, WM_1M, target_1m, "minute", ("gpu_samples", "node_samples"),
                  (("gpu_samples_1m", _GPU_1M), ("node_samples_1m", _NODE_1M)), out,
                  timedelta(minutes=max_minutes))
    wm_1h = None
    if wm_1m is not None:
        wm_1h = _step(con, WM_1H, _floor(wm_1m, "hour"), "hour",
                      ("gpu_samples_1m", "node_samples_1m"),
                      (("gpu_samples_1h", _GPU_1H), ("node_samples_1h", _NODE_1H)), out,
                      timedelta(hours=MAX_HOURS_PER_PASS))
    raw_cut = now - timedelta(seconds=raw_retention_s)
    minute_cut = now - timedelta(seconds=minute_retention_s)
    deletes: list[tuple[str, datetime]] = [(t, raw_cut) for t in _RAW_ONLY]
    deletes.append(("gpu_events", minute_cut))
    if wm_1m is not None:
        deletes += [(t, min(raw_cut, wm_1m)) for t in ("gpu_samples", "node_samples")]
    if wm_1h is not None:
        deletes += [(t, min(minute_cut, wm_1h)) for t in ("gpu_samples_1m", "node_samples_1m")]
    if hour_retention_s is not None:
        hour_cut = now - timedelta(seconds=hour_retention_s)
        deletes += [(t, hour_cut) for t in ("gpu_samples_1h", "node_samples_1h")]
    with _Tx(con):
        for table, cut in deletes:
            n = _count(con, f'DELETE FROM "{table}" WHERE ts < ?', [cut])
            if n:
                out[f"deleted:{table}"] = n
    return out
