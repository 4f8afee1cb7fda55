"""Reports over one year of hourly rollups for 2,000 GPUs (17.5 M rows in gpu_samples_1h).

Times chargeback (by user) + usage (by pool, model and day) + forecast (monthly, per pool and
model) the way `fleetdeck report` computes them (sources -> ledger -> reports), beside the same
aggregation written as one plain DuckDB SQL query, and checks both give the same numbers.
Each measurement runs in a fresh process so its peak RSS is its own.

    .venv/bin/python benchmarks/bench_reports.py [--gpus 2000] [--days 365] [--repeat 3]
        [--db PATH]  (default: a temporary file, generated first; kept with --db)

Targets: under 2 s, and within 1.5x of the plain query.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from collectors.store.db import Store  # noqa: E402

T0 = datetime(2024, 1, 1)
GPN = 8
MODELS = (("train", "NVIDIA A100-SXM4-80GB"), ("infer", "NVIDIA H100 80GB HBM3"))


def generate(path: Path, n_gpus: int, days: int, seed: int = 7) -> dict[str, int]:
    """Single- and 8-GPU jobs back to back with random gaps (about 65% allocated); hourly
    utilization follows the job on each GPU; a few broken GPUs, burst instances and spend."""
    rng = np.random.default_rng(seed)
    hours = days * 24
    n_nodes = n_gpus // GPN
    names = np.array([f"n{i:04d}" for i in range(n_nodes)])
    pool_of = np.array([MODELS[0][0] if i < n_nodes * 0.6 else MODELS[1][0]
                        for i in range(n_nodes)])
    model_of = np.array([MODELS[0][1] if i < n_nodes * 0.6 else MODELS[1][1]
                         for i in range(n_nodes)])
    starts, ends, node_of, idx_of, width = [], [], [], [], []
    for n in range(n_nodes):
        whole = n % 4 == 0  # every fourth node runs 8-GPU jobs
        lanes = [list(range(GPN))] if whole else [[g] for g in range(GPN)]
        for lane in lanes:
            k = int(hours / 18) + 16
            gaps = rng.exponential(7.0, k)
            durs = np.clip(rng.exponential(13.0, k), 0.25, 168.0)
            st = np.cumsum(gaps) + np.concatenate([[0.0], np.cumsum(durs[:-1])])
            keep = st < hours
            for s, d in zip(st[keep], durs[keep], strict=True):
                starts.append(s)
                ends.append(s + d)
                node_of.append(n)
                idx_of.append(lane)
                width.append(len(lane))
    st_h, en_h = np.array(starts), np.array(ends)
    nj = len(st_h)
    t0_us = int((T0 - datetime(1970, 1, 1)).total_seconds() * 1e6)
    now_h = float(hours)
    ended = en_h <= now_h
    st_us = (t0_us + st_h * 3.6e9).astype(np.int64)
    en_us = (t0_us + en_h * 3.6e9).astype(np.int64)
    users = rng.integers(0, 80, nj)
    node_arr = np.array(node_of)
    jobs = pa.table({
        "id": np.arange(1, nj + 1, dtype=np.int64), "name": pa.array(["train"] * nj),
        "user": np.char.add("u", users.astype(str)),
        "project": np.char.add("p", (users // 8).astype(str)),
        "team": np.char.add("t", (users // 20).astype(str)),
        "kind": pa.array(["batch"] * nj), "executor": pa.array(["docker"] * nj),
        "spec": pa.array(["{}"] * nj),
        "state": np.where(ended, "succeeded", "running"),
        "pool": pool_of[node_arr], "node": names[node_arr],
        "gpu_indices": pa.array(idx_of, pa.list_(pa.int32())),
        "gpu_count": np.array(width, np.int32), "gpu_milli": np.full(nj, 1000, np.int32),
        "gpu_model": model_of[node_arr], "cpu_milli": np.full(nj, 8000, np.int32),
        "mem_bytes": np.full(nj, 64 * 2**30, np.int64),
        "submitted_at": pa.array(st_us - (rng.exponential(0.5, nj) * 3.6e9).astype(np.int64),
                                 pa.timestamp("us")),
        "started_at": pa.array(st_us, pa.timestamp("us")),
        "ended_at": pa.array(np.where(ended, en_us, 0), pa.timestamp("us"), mask=~ended),
    })
    # hourly utilization: the job's level on its GPUs, noise elsewhere
    util = np.zeros((n_gpus, hours), np.float32)
    job_util = rng.uniform(5, 95, nj).astype(np.float32)
    h0 = np.floor(st_h).astype(np.int64)
    h1 = np.minimum(np.ceil(en_h).astype(np.int64), hours)
    for lane_w in (1, GPN):
        sel = np.array(width) == lane_w
        lens = np.maximum(h1[sel] - h0[sel], 0)
        first_gpu = node_arr[sel] * GPN + np.array([ix[0] for ix, w in zip(idx_of, width,
                                                                           strict=True)
                                                    if w == lane_w], np.int64)
        rows = np.repeat(first_gpu, lens)
        cols = np.repeat(h0[sel], lens) + (np.arange(lens.sum())
                                           - np.repeat(np.cumsum(lens) - lens, lens))
        vals = np.repeat(job_util[sel], lens)
        for g in range(lane_w):
            util[rows + g, cols] = vals
    util = np.clip(util + rng.normal(0, 2, util.shape).astype(np.float32), 0, 100)
    store = Store.open(path)
    try:
        store.append_rows("nodes", [{"name": str(names[n]), "pool": str(pool_of[n]),
                                     "gpu_model": str(model_of[n]), "gpu_count": GPN}
                                    for n in range(n_nodes)])
        store.append("jobs", jobs)
        hour_us = t0_us + np.arange(hours, dtype=np.int64) * 3_600_000_000
        for h_lo in range(0, hours, 24 * 7):  # written in time order, a week at a time
            hs = np.arange(h_lo, min(h_lo + 24 * 7, hours))
            u = util[:, hs].T.reshape(-1)
            n = u.size
            gpu = np.tile(np.arange(n_gpus), len(hs))
            mem = (u * 2**29).astype(np.int64)
            store.append("gpu_samples_1h", pa.table({
                "ts": pa.array(np.repeat(hour_us[hs], n_gpus), pa.timestamp("us")),
                "node": names[gpu // GPN], "gpu_index": (gpu % GPN).astype(np.int16),
                "uuid": pa.nulls(n, pa.string()), "model": model_of[gpu // GPN],
                "samples": np.full(n, 720, np.int32), "util_pct_min": u, "util_pct_mean": u,
                "util_pct_max": u, "mem_used_bytes_min": mem,
                "mem_used_bytes_mean": mem.astype(np.float64), "mem_used_bytes_max": mem,
                "mem_total_bytes": np.full(n, 80 * 2**30, np.int64),
                "power_w_min": u * 4, "power_w_mean": u * 4, "power_w_max": u * 4,
                "temp_c_max": u}))
        health = []
        for i in range(20):
            broken = T0 + timedelta(hours=int(rng.integers(0, hours - 200)))
            health.append({"node": str(names[(7 * i) % n_nodes]), "gpu_index": i % GPN,
                           "broken_from": broken, "reason": "xid 79",
                           "broken_until": broken + timedelta(hours=float(rng.uniform(2, 100)))})
        store.append_rows("gpu_health", health)
        inst = []
        spend = []
        for i in range(50):
            ready = T0 + timedelta(hours=int(rng.integers(0, hours - 100)))
            end = ready + timedelta(hours=float(rng.uniform(2, 48)))
            inst.append({"instance_id": f"i-{i}", "provider": "aws", "gpu_model": "A100",
                         "gpu_count": 8, "pool": "train", "team": "t0", "project": "p0",
                         "price_per_hour": 32.0, "state": "terminated", "launched_at": ready,
                         "ready_at": ready, "terminated_at": end})
            spend.append({"ts": end, "provider": "aws", "instance_id": f"i-{i}", "team": "t0",
                          "project": "p0", "hours": (end - ready).total_seconds() / 3600,
                          "amount": (end - ready).total_seconds() / 3600 * 32.0})
        store.append_rows("burst_instances", inst)
        store.append_rows("spend", spend)
        store.con.execute("CHECKPOINT")
        counts = store.row_counts()
    finally:
        store.close()
    return {"gpu_samples_1h": counts["gpu_samples_1h"], "jobs": counts["jobs"]}


PLAIN_SQL = """
WITH j AS (
    SELECT j.id, j.user, coalesce(n.pool, j.pool, '(none)') AS pool, n.gpu_model AS model,
           j.node, CASE WHEN j.gpu_milli > 0 THEN j.gpu_milli / 1000.0 ELSE 1.0 END AS share,
           greatest(j.started_at, $s) AS s, least(coalesce(j.ended_at, $now), $e) AS e,
           unnest(j.gpu_indices)::SMALLINT AS gpu_index
    FROM jobs j LEFT JOIN nodes n ON n.name = j.node
    WHERE j.started_at < $e AND coalesce(j.ended_at, $now) > $s AND j.gpu_count > 0
), jh AS (
    SELECT *, unnest(range(date_trunc('hour', s), e, INTERVAL 1 HOUR)) AS ts FROM j
), hb AS (  -- broken intervals, one row per GPU-hour they touch
    SELECT node, gpu_index, broken_from AS b0, coalesce(broken_until, $now) AS b1,
           unnest(range(date_trunc('hour', broken_from), coalesce(broken_until, $now),
                         INTERVAL 1 HOUR)) AS ts
    FROM gpu_health
), w AS (
    SELECT jh.*, g.util_pct_mean AS u,
           epoch(least(jh.e, jh.ts + INTERVAL 1 HOUR) - greatest(jh.s, jh.ts)) / 3600.0
         - CASE WHEN hb.b0 IS NULL THEN 0  -- least/greatest skip NULLs: test explicitly
                ELSE greatest(0, epoch(least(jh.e, jh.ts + INTERVAL 1 HOUR, hb.b1)
                                       - greatest(jh.s, jh.ts, hb.b0))) / 3600.0 END AS w
    FROM jh
    LEFT JOIN hb USING (node, gpu_index, ts)
    LEFT JOIN gpu_samples_1h g USING (node, gpu_index, ts)
), per_job_gpu AS (
    SELECT user, any_value(share) AS share, sum(w) AS billed_h,
           sum(w * u) AS uw, sum(CASE WHEN u IS NOT NULL THEN w END) AS ww
    FROM w GROUP BY id, gpu_index, user
), alloc_hour AS (
    SELECT pool, model, ts, sum(share * w) AS a FROM w GROUP BY ALL
), present_hour AS (
    SELECT coalesce(n.pool, '(none)') AS pool, g.model, g.ts, count(*) AS present,
           sum(g.util_pct_mean) / 100.0 AS used
    FROM gpu_samples_1h g LEFT JOIN nodes n ON n.name = g.node
    WHERE g.ts >= $s AND g.ts < $e GROUP BY ALL
), hours AS (
    SELECT pool, model, ts FROM (SELECT DISTINCT pool, model FROM present_hour)
    CROSS JOIN (SELECT unnest(range($s, $e, INTERVAL 1 HOUR)) AS ts)
), grid AS (
    SELECT h.pool, h.model, h.ts, coalesce(p.present, 0) AS present,
           coalesce(p.used, 0) AS used, coalesce(a.a, 0) AS a
    FROM hours h LEFT JOIN present_hour p USING (pool, model, ts)
    LEFT JOIN alloc_hour a USING (pool, model, ts)
)
SELECT 'chargeback' AS part, user AS k1, NULL AS k2, NULL::DATE AS period,
       sum(share * billed_h) AS v1,
       sum(CASE WHEN ww > 0 THEN share * billed_h * uw / ww / 100 ELSE 0 END) AS v2,
       NULL::DOUBLE AS v3, NULL::DOUBLE AS v4, NULL::DOUBLE AS v5, NULL::DOUBLE AS v6
FROM per_job_gpu GROUP BY user
UNION ALL
SELECT 'usage', pool, model, date_trunc('day', ts)::DATE, avg(present), avg(a),
       quantile_cont(a, 0.95), max(a), avg(used), NULL
FROM grid GROUP BY ALL
UNION ALL
SELECT 'monthly', pool, model, date_trunc('month', ts)::DATE, avg(present), avg(a),
       quantile_cont(a, 0.95), avg(used), NULL, NULL
FROM grid GROUP BY ALL
"""


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the
    parent across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(kind: str, db: Path, start: datetime, end: datetime) -> dict[str, object]:
    """One timed run in this (fresh) process; returns timings, peak RSS and the results."""
    import duckdb

    from reports.chargeback import chargeback
    from reports.forecast import forecast, monthly_history
    from reports.ledger import build_ledger
    from reports.sources import from_store
    from reports.usage import usage

    con = duckdb.connect(str(db), read_only=True)
    rss0 = _peak_rss_mb()
    t = time.perf_counter()
    result: dict[str, object] = {}
    if kind == "fleetdeck":
        frames = from_store(con, start, end, now=end)
        t_src = time.perf_counter()
        ledger = build_ledger(frames)
        t_led = time.perf_counter()
        cb = chargeback(ledger, by="user")
        us = usage(ledger, every="day")
        fc = forecast(ledger, months=3)
        t_end = time.perf_counter()
        result["phases_s"] = {"sources": t_src - t, "ledger": t_led - t_src,
                              "reports": t_end - t_led}
        mh = monthly_history(ledger)
        result["chargeback"] = {u: [a, b] for u, a, b in
                                cb.select("user", "gpu_h_allocated", "gpu_h_used").iter_rows()}
        result["usage"] = {f"{p}|{m}|{d}": [a, b, c, e, f] for d, p, m, a, b, c, e, f in us.select(
            "period_start", "pool", "model", "gpus_present", "gpus_allocated_mean",
            "gpus_allocated_p95", "gpus_allocated_peak", "gpus_used").iter_rows()}
        result["monthly"] = {f"{p}|{m}|{d}": [a, b, c, e] for p, m, d, a, b, c, e in mh.select(
            "pool", "model", "month", "gpus_present", "gpus_allocated", "gpus_allocated_p95",
            "gpus_used").iter_rows()}
        result["forecast_rows"] = fc.plan.height
    else:
        rows = con.sql(PLAIN_SQL, params={"s": start, "e": end, "now": end}).pl()
        t_end = time.perf_counter()
        for part, k1, k2, period, v1, v2, v3, v4, v5, _ in rows.iter_rows():
            if part == "chargeback":
                result.setdefault("chargeback", {})[k1] = [v1, v2]  # type: ignore[index]
            elif part == "usage":
                result.setdefault("usage", {})[f"{k1}|{k2}|{period}"] = [  # type: ignore[index]
                    v1, v2, v3, v4, v5]
            else:
                result.setdefault("monthly", {})[f"{k1}|{k2}|{period}"] = [  # type: ignore[index]
                    v1, v2, v3, v4]
    result["seconds"] = t_end - t
    result["peak_rss_mb"] = _peak_rss_mb()
    result["base_rss_mb"] = rss0
    return result


def _compare(ours: dict[str, list[float]], sql: dict[str, list[float]]) -> tuple[int, float]:
    """(rows compared, largest relative difference). fleetdeck has rows the plain query leaves
    out (burst idle time, burst-only pools) and drops months under half covered; every row
    the plain query has in common must match."""
    common = set(ours) & set(sql)
    assert common, "no rows in common"
    missing = {k for k in sql if k not in ours and not k.startswith("(")}
    extra = {k for k in ours if k not in sql and not k.startswith("(")}
    assert all(max(abs(v) for v in ours[k][:2]) == 0 for k in extra), sorted(extra)[:5]
    assert len(missing) <= 2, sorted(missing)[:5]  # months under half covered
    worst = 0.0
    for k in common:
        for x, y in zip(ours[k], sql[k], strict=True):
            worst = max(worst, abs(x - y) / max(1.0, abs(x), abs(y)))
    return len(common), worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", type=int, default=2000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--db", type=Path)
    ap.add_argument("--measure", choices=("fleetdeck", "sql"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    start, end = T0, T0 + timedelta(days=args.days)
    if args.measure:
        print(json.dumps(measure(args.measure, args.db, start, end)))
        return
    tmp = None
    db = args.db
    if db is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-reports-")
        db = Path(tmp.name) / "bench.duckdb"
    if not db.exists():
        t = time.perf_counter()
        counts = generate(db, args.gpus, args.days)
        print(f"generated {counts['gpu_samples_1h']:,} hourly GPU rows and "
              f"{counts['jobs']:,} jobs in {time.perf_counter() - t:.1f} s -> {db}")
    runs: dict[str, list[dict[str, object]]] = {"fleetdeck": [], "sql": []}
    for _ in range(args.repeat):
        for kind in ("fleetdeck", "sql"):
            out = subprocess.run([sys.executable, __file__, "--measure", kind, "--db", str(db),
                                  "--days", str(args.days)],
                                 capture_output=True, text=True, check=True, cwd=REPO)
            runs[kind].append(json.loads(out.stdout))
    best = {k: min(v, key=lambda r: r["seconds"]) for k, v in runs.items()}  # type: ignore
    ours, sql = best["fleetdeck"], best["sql"]
    for key in ("chargeback", "usage", "monthly"):
        n, diff = _compare(ours[key], sql[key])  # type: ignore[arg-type]
        print(f"{key:>10}: {n:,} rows agree, max relative difference fleetdeck vs SQL "
              f"{diff:.1e}")
    for kind, r in best.items():
        times = ", ".join(f"{x['seconds']:.2f}" for x in runs[kind])
        print(f"{kind:>10}: best {r['seconds']:.2f} s (runs: {times}); peak RSS "
              f"{r['peak_rss_mb']:.0f} MB (after imports: {r['base_rss_mb']:.0f} MB)")
    phases = ours["phases_s"]
    print("fleetdeck phases (best run): " + ", ".join(
        f"{k} {v:.2f} s" for k, v in phases.items()))  # type: ignore[attr-defined]
    ratio = float(ours["seconds"]) / float(sql["seconds"])  # type: ignore[arg-type]
    print(f"chargeback + usage + forecast: {ours['seconds']:.2f} s "
          f"(target < 2 s: {'met' if float(ours['seconds']) < 2 else 'missed'}); "  # type: ignore
          f"{ratio:.2f}x the plain query (target <= 1.5x: "
          f"{'met' if ratio <= 1.5 else 'missed'})")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
