"""A small generated history with hand-computed answers, written into a real DuckDB store.

Period 2024-03-01 00:00 -> 2024-03-04 00:00 UTC (72 h, hourly rollups), now = period end.

Nodes: a1 (pool train, 2 x A100 80 GiB), s1 (pool shared, 1 x L4 24 GiB), b1 (pool burst,
1 x A100, a cloud instance alive 2024-03-03 00:00-10:00).

Jobs (GPU-hours allocated / used, by hand):
  J1 alice p1 t1  a1[0] whole      03-01 00:00-10:00   10 h, util 50  -> 10 / 5
  J2 bob   p2 t1  a1[0,1] whole    03-02 00:00-12:30   12.5 h each; a1[1] broken 06:00-08:00
                                   util a1[0] 80, a1[1] 2           -> 23 / 10 + 0.21 = 10.21
  J3 carol p1 t2  s1[0] 500 milli  03-01 00:00-03-03 00:00 (48 h), util 40 -> 24 / 9.6
  J4 alice p1 t1  s1[0] 250 milli  03-01 12:00-running (60 h in period) -> 15 / 6
  J5 dave  p3 t2  a1[1] whole      02-29 20:00-03-01 02:00 (2 h in period), util 30 -> 2 / 0.6
  J6 erin  p3 t2  CPU only on a1   03-03 00:00-06:00, 2 cores, 8 GiB
  J7 bob   p2 t1  queued since 03-03 10:00 (never started)
  J8 frank p4 t3  b1[0] burst      03-03 02:00-08:00 (6 h), util 90 -> 6 / 5.4
Spend: i-1 38.00 for 10 h (price list says 4.00/h: the recorded 38 is what counts);
       5.00 with no instance for team t1 / project p1.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from collectors.store.db import Store
from reports.rates import GpuRate, PoolRates, Rates

START = datetime(2024, 3, 1)
END = datetime(2024, 3, 4)
NOW = END
GIB = 2**30
RATE_A100 = 15000 / (4 * 365.25 * 24) + 0.400 * 0.15 + 50 / (365.25 * 24 / 12)
RATE_L4 = 0.5
RATES = Rates(
    currency="EUR", cpu_core_hour=0.01, mem_gb_hour=0.002,
    gpu={"A100": GpuRate(purchase_price=15000, lifetime_years=4, power_w=400, kwh_price=0.15,
                         hosting_per_month=50, cloud_gpu_hour=3.0),
         "L4": GpuRate(gpu_hour=RATE_L4)},
    pools={"shared": PoolRates(cpu_core_hour=0.02)},
)


def h(day: int, hour: float = 0) -> datetime:
    return datetime(2024, 3, 1) + timedelta(days=day - 1, hours=hour)


def hourly(node: str, gpu: int, model: str, mem_gib: int, hours: range, util: Any,
           mem_used_gib: float = 10.0) -> list[dict[str, Any]]:
    rows = []
    for k in hours:
        ts = START + timedelta(hours=k)
        u = float(util(k)) if callable(util) else float(util)
        rows.append({"ts": ts, "node": node, "gpu_index": gpu, "uuid": f"GPU-{node}-{gpu}",
                     "model": model, "samples": 720, "util_pct_min": u, "util_pct_mean": u,
                     "util_pct_max": u, "mem_used_bytes_min": int(mem_used_gib * GIB),
                     "mem_used_bytes_mean": mem_used_gib * GIB,
                     "mem_used_bytes_max": int(mem_used_gib * GIB),
                     "mem_total_bytes": mem_gib * GIB, "power_w_min": 100.0,
                     "power_w_mean": 100.0, "power_w_max": 100.0, "temp_c_max": 50.0})
    return rows


def job(id_: int, user: str, project: str, team: str, node: str | None, gpus: list[int] | None,
        submitted: datetime, started: datetime | None, ended: datetime | None, *,
        gpu_milli: int = 1000, cpu_milli: int = 1000, mem_gib: float = 0, pool: str | None = None,
        gpu_model: str | None = None, burst: bool = False, gpu_count: int | None = None
        ) -> dict[str, Any]:
    state = "queued" if started is None else "running" if ended is None else "succeeded"
    return {"id": id_, "name": f"job{id_}", "user": user, "project": project, "team": team,
            "kind": "batch", "executor": "docker", "spec": "{}", "state": state, "pool": pool,
            "node": node, "gpu_indices": gpus,
            "gpu_count": len(gpus) if gpu_count is None and gpus else (gpu_count or 0),
            "gpu_milli": gpu_milli, "gpu_model": gpu_model, "cpu_milli": cpu_milli,
            "mem_bytes": int(mem_gib * GIB), "submitted_at": submitted, "started_at": started,
            "ended_at": ended, "burst": burst}


def write_history(path: Path) -> Path:
    store = Store.open(path)
    try:
        store.append_rows("nodes", [
            {"name": "a1", "pool": "train", "gpu_model": "A100", "gpu_count": 2},
            {"name": "s1", "pool": "shared", "gpu_model": "L4", "gpu_count": 1},
            {"name": "b1", "pool": "burst", "gpu_model": "A100", "gpu_count": 1},
        ])
        span = range(0, 72)

        def a1_0(k: int) -> float:
            return 50 if k < 10 else 80 if 24 <= k <= 36 else 0

        def a1_1(k: int) -> float:
            return 30 if k < 2 else 2 if 24 <= k <= 36 else 0

        rows = (hourly("a1", 0, "NVIDIA A100-SXM4-80GB", 80, span, a1_0, 60.0)
                + hourly("a1", 1, "NVIDIA A100-SXM4-80GB", 80, span, a1_1, 12.0)
                + hourly("s1", 0, "NVIDIA L4", 24, span, 40, 3.0)
                + hourly("b1", 0, "NVIDIA A100-SXM4-80GB", 80, range(48, 58),
                         lambda k: 90 if 50 <= k < 56 else 0, 70.0))
        store.append("gpu_samples_1h", pa.Table.from_pylist(rows))
        store.append_rows("jobs", [
            job(1, "alice", "p1", "t1", "a1", [0], h(1), h(1), h(1, 10), cpu_milli=4000,
                mem_gib=16),
            job(2, "bob", "p2", "t1", "a1", [0, 1], h(1, 23), h(2), h(2, 12.5),
                cpu_milli=8000, mem_gib=32),
            job(3, "carol", "p1", "t2", "s1", [0], h(1), h(1), h(3), gpu_milli=500,
                cpu_milli=2000, mem_gib=8),
            job(4, "alice", "p1", "t1", "s1", [0], h(1, 11), h(1, 12), None, gpu_milli=250,
                cpu_milli=1000, mem_gib=4),
            job(5, "dave", "p3", "t2", "a1", [1], h(0, 20), h(0, 20), h(1, 2),
                cpu_milli=1000),
            job(6, "erin", "p3", "t2", "a1", None, h(2, 23.5), h(3), h(3, 6), cpu_milli=2000,
                mem_gib=8),
            job(7, "bob", "p2", "t1", None, None, h(3, 10), None, None, gpu_count=1,
                gpu_model="A100", pool="train"),
            job(8, "frank", "p4", "t3", "b1", [0], h(3, 2), h(3, 2), h(3, 8), burst=True,
                cpu_milli=8000, mem_gib=64),
        ])
        store.append_rows("gpu_health", [
            {"node": "a1", "gpu_index": 1, "uuid": "GPU-a1-1", "broken_from": h(2, 6),
             "broken_until": h(2, 8), "reason": "xid 79"},
        ])
        store.append_rows("burst_instances", [
            {"instance_id": "i-1", "provider": "aws", "offer": "p4d", "instance_type": "p4d",
             "market": "on-demand", "gpu_model": "A100", "gpu_count": 1, "node": "b1",
             "pool": "burst", "team": "t3", "project": "p4", "price_per_hour": 4.0,
             "state": "terminated", "launched_at": h(2, 23.8), "ready_at": h(3),
             "terminated_at": h(3, 10), "cost": 41.0},
        ])
        store.append_rows("spend", [
            {"ts": h(3, 10), "provider": "aws", "instance_id": "i-1", "team": "t3",
             "project": "p4", "hours": 10.0, "amount": 38.0},
            {"ts": h(2, 12), "provider": "aws", "instance_id": None, "team": "t1",
             "project": "p1", "hours": None, "amount": 5.0},
        ])
    finally:
        store.close()
    return path


def monthly_history(path: Path, allocated: list[int], *, gpus: int = 10,
                    first: datetime = datetime(2024, 1, 1)) -> tuple[Path, datetime]:
    """`gpus` A100s in pool `p`, hourly samples; month i has allocated[i] whole-month jobs.
    Returns the store path and the end of the last month."""
    store = Store.open(path)
    try:
        store.append_rows("nodes", [{"name": "f1", "pool": "p", "gpu_model": "A100",
                                     "gpu_count": gpus}])
        months = [first]
        for _ in allocated:
            m = months[-1]
            months.append(datetime(m.year + m.month // 12, m.month % 12 + 1, 1))
        rows: list[dict[str, Any]] = []
        jobs: list[dict[str, Any]] = []
        for i, n_alloc in enumerate(allocated):
            lo, hi = months[i], months[i + 1]
            hours = int((hi - lo).total_seconds() // 3600)
            off = int((lo - START).total_seconds() // 3600)
            for g in range(gpus):
                util = 60.0 if g < n_alloc else 0.0
                for r in hourly("f1", g, "NVIDIA A100-SXM4-80GB", 80, range(hours), util, 20.0):
                    r["ts"] = r["ts"] + timedelta(hours=off)
                    rows.append(r)
            for g in range(n_alloc):
                jobs.append(job(len(jobs) + 1, f"u{g}", "p", "t", "f1", [g], lo, lo, hi))
        store.append("gpu_samples_1h", pa.Table.from_pylist(rows))
        store.append_rows("jobs", jobs)
    finally:
        store.close()
    return path, months[-1]


def test_history_is_written(tmp_path: Path) -> None:
    path = write_history(tmp_path / "s.duckdb")
    with Store.open(path, read_only=True) as store:
        counts = store.row_counts()
    assert counts["gpu_samples_1h"] == 3 * 72 + 10
    assert counts["jobs"] == 8
    assert counts["spend"] == 2
