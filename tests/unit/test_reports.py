"""Chargeback and usage on the hand-computed history (see test_reports_history.py)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from collectors.store.db import Store
from reports.chargeback import SUM_COLUMNS, chargeback, chargeback_lines
from reports.ledger import Ledger, build_ledger
from reports.rightsizing import rightsizing
from reports.sources import from_store
from reports.usage import usage
from tests.unit.test_reports_history import (
    END,
    NOW,
    RATE_A100,
    RATE_L4,
    RATES,
    START,
    write_history,
)


def approx(v: object) -> object:
    return pytest.approx(v, rel=1e-9, abs=1e-9)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    path = write_history(tmp_path_factory.mktemp("reports") / "s.duckdb")
    with Store.open(path, read_only=True) as store:
        frames = from_store(store.con, START, END, now=NOW)
        assert frames.bucket_s == 3600 and frames.resolution == "1h"
        return build_ledger(frames)


def _rows(frame: pl.DataFrame, key: str) -> dict[str, dict[str, object]]:
    return {str(r[key]): r for r in frame.iter_rows(named=True)}


def test_chargeback_by_user_every_number(ledger: Ledger) -> None:
    rows = _rows(chargeback(ledger, by="user", rates=RATES), "user")
    expected = {
        # user: (jobs, alloc, used, broken, cpu_core_h, mem_gb_h, gpu_cost, cpu_cost, mem_cost,
        #        burst_h, burst_cost, idle_cost)
        "alice": (2, 25.0, 11.0, 0.0, 40 + 60, 160 + 240, 10 * RATE_A100 + 15 * RATE_L4,
                  40 * 0.01 + 60 * 0.02, 400 * 0.002, 0.0, 0.0, 5 * RATE_A100 + 9 * RATE_L4),
        "bob": (1, 23.0, 10.21, 2.0, 100, 400, 23 * RATE_A100, 1.0, 0.8, 0.0, 0.0,
                12.79 * RATE_A100),
        "carol": (1, 24.0, 9.6, 0.0, 96, 384, 24 * RATE_L4, 96 * 0.02, 384 * 0.002, 0.0, 0.0,
                  14.4 * RATE_L4),
        "dave": (1, 2.0, 0.6, 0.0, 2, 0, 2 * RATE_A100, 0.02, 0.0, 0.0, 0.0, 1.4 * RATE_A100),
        "erin": (1, 0.0, 0.0, 0.0, 12, 48, 0.0, 0.12, 48 * 0.002, 0.0, 0.0, 0.0),
        "frank": (1, 6.0, 5.4, 0.0, 48, 384, 0.0, 0.0, 0.0, 6.0, 38 * 0.6, 0.6 * 4.0),
        "(burst idle)": (0, 0.0, 0.0, 0.0, 0, 0, 0.0, 0.0, 0.0, 4.0, 38 * 0.4, 0.0),
        "(unattributed)": (0, 0.0, 0.0, 0.0, 0, 0, 0.0, 0.0, 0.0, 0.0, 5.0, 0.0),
    }
    assert set(rows) == set(expected)
    for user, (jobs, alloc, used, broken, cpu_h, mem_h, gpu_cost, cpu_cost, mem_cost, burst_h,
               burst_cost, idle_cost) in expected.items():
        r = rows[user]
        assert r["jobs"] == jobs, user
        assert r["gpu_h_allocated"] == approx(alloc), user
        assert r["gpu_h_used"] == approx(used), user
        assert r["gpu_h_idle"] == approx(alloc - used), user
        assert r["gpu_h_broken"] == approx(broken), user
        assert r["gpu_h_unmeasured"] == approx(0.0), user
        assert r["cpu_core_h"] == approx(cpu_h), user
        assert r["mem_gb_h"] == approx(mem_h), user
        assert r["gpu_cost"] == approx(gpu_cost), user
        assert r["idle_cost"] == approx(idle_cost), user
        assert r["cpu_cost"] == approx(cpu_cost), user
        assert r["mem_cost"] == approx(mem_cost), user
        assert r["burst_instance_h"] == approx(burst_h), user
        assert r["burst_cost"] == approx(burst_cost), user
        total = gpu_cost + cpu_cost + mem_cost + burst_cost
        assert r["total_cost"] == approx(total), user
        if alloc:
            assert r["util_pct"] == approx(used / alloc * 100), user


def test_fractional_jobs_billed_their_share(ledger: Ledger) -> None:
    jobs = _rows(ledger.jobs.with_columns(pl.col("id").cast(pl.String)), "id")
    assert jobs["3"]["share"] == 0.5 and jobs["4"]["share"] == 0.25
    assert jobs["3"]["gpu_h_allocated"] == approx(0.5 * 48)
    assert jobs["4"]["gpu_h_allocated"] == approx(0.25 * 60)  # clipped at end
    # share x util of the shared GPU
    assert jobs["4"]["gpu_h_used"] == approx(0.25 * 60 * 0.40)


def test_broken_gpu_time_is_not_billed(ledger: Ledger) -> None:
    j2 = ledger.job_gpus.filter(pl.col("job_id") == 2).sort("gpu_index")
    assert j2["gpu_h_allocated"].to_list() == pytest.approx([12.5, 10.5])
    assert j2["gpu_h_broken"].to_list() == pytest.approx([0.0, 2.0])
    # the broken hours cost nothing: 23 billed GPU-hours, not 25
    rows = _rows(chargeback(ledger, by="user", rates=RATES), "user")
    assert rows["bob"]["gpu_cost"] == approx(23 * RATE_A100)


def test_totals_reconcile_across_keys_and_with_usage(ledger: Ledger) -> None:
    totals = {}
    for by in ("user", "project", "team", "pool", "model"):
        frame = chargeback(ledger, by=by, rates=RATES)
        totals[by] = frame.select(pl.col(list(SUM_COLUMNS)).sum()).row(0)
    for by, t in totals.items():
        assert t == pytest.approx(totals["user"], rel=1e-12), by
    pools = _rows(chargeback(ledger, by="pool", rates=RATES), "pool")
    assert pools["train"]["gpu_h_allocated"] == approx(10 + 23 + 2)
    assert pools["shared"]["gpu_h_allocated"] == approx(24 + 15)
    assert pools["burst"]["burst_cost"] == approx(38.0)
    assert pools["(burst)"]["burst_cost"] == approx(5.0)
    lines = chargeback_lines(ledger, RATES)
    u = usage(ledger, every="day")
    assert float(u["gpu_h_allocated"].sum()) == approx(
        float(lines["gpu_h_allocated"].sum()))
    assert float(u["burst_cost"].sum()) == approx(float(lines["burst_cost"].sum()))


def test_usage_by_day_every_number(ledger: Ledger) -> None:
    u = usage(ledger, every="day")
    rows = {(r["period_start"], r["pool"], r["model"]): r for r in u.iter_rows(named=True)}
    a100 = "NVIDIA A100-SXM4-80GB"
    d1, d2, d3 = date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)
    r = rows[(d1, "train", a100)]
    assert r["gpus_present"] == approx(2.0)
    assert r["gpus_allocated_mean"] == approx(12 / 24)
    assert r["gpus_allocated_p95"] == approx(1.85)
    assert r["gpus_allocated_peak"] == approx(2.0)
    assert r["gpus_used"] == approx(5.6 / 24)
    assert r["allocation_pct"] == approx(25.0)
    assert r["utilization_pct"] == approx(5.6 / 24 / 2 * 100)
    assert r["gpu_h_allocated"] == approx(12.0)
    assert (r["jobs_submitted"], r["jobs_started"]) == (2, 2)
    assert r["queue_wait_median_s"] == approx(1800.0)
    assert r["queue_wait_p95_s"] == approx(3420.0)
    r = rows[(d2, "train", a100)]
    assert r["gpus_allocated_mean"] == approx(23 / 24)
    assert r["gpus_broken"] == approx(2 / 24)
    assert r["gpus_allocated_p95"] == approx(2.0)
    assert r["gpus_used"] == approx((13 * 0.8 + 13 * 0.02) / 24)
    assert r["jobs_submitted"] == 0
    r = rows[(d3, "train", a100)]
    assert (r["gpus_present"], r["gpus_allocated_mean"], r["gpus_used"]) == (2.0, 0.0, 0.0)
    for day, mean, p95 in ((d1, 0.625, 0.75), (d2, 0.75, 0.75), (d3, 0.25, 0.25)):
        r = rows[(day, "shared", "NVIDIA L4")]
        assert r["gpus_present"] == approx(1.0)
        assert r["gpus_allocated_mean"] == approx(mean)
        assert r["gpus_allocated_p95"] == approx(p95)
        assert r["utilization_pct"] == approx(40.0)
    r = rows[(d1, "shared", "NVIDIA L4")]
    assert r["queue_wait_median_s"] == approx(1800.0)
    r = rows[(d3, "burst", a100)]
    assert r["gpus_present"] == approx(10 / 24)
    assert r["gpus_allocated_mean"] == approx(6 / 24)
    assert r["burst_gpus_mean"] == approx(10 / 24)
    assert r["burst_gpu_h"] == approx(10.0)
    assert r["burst_cost"] == approx(38.0)
    assert r["queue_wait_median_s"] == approx(0.0)
    r = rows[(d2, "(burst)", "(none)")]
    assert r["burst_cost"] == approx(5.0)
    r = rows[(d3, "train", a100)]  # the queued job: "A100" as requested, in the fleet's name
    assert (r["jobs_submitted"], r["jobs_started"]) == (1, 0)
    assert r["queue_wait_median_s"] is None
    r = rows[(d2, "train", "(none)")]  # erin's CPU job waited 30 minutes
    assert r["queue_wait_median_s"] == approx(1800.0)


def test_usage_by_week_and_month(ledger: Ledger) -> None:
    for every in ("week", "month"):
        u = usage(ledger, every=every)
        assert float(u["gpu_h_allocated"].sum()) == approx(35 + 39 + 6)
    u = usage(ledger, every="month")
    r = u.filter(pl.col("pool") == "shared").row(0, named=True)
    assert r["period_start"] == date(2024, 3, 1)
    assert r["gpus_allocated_mean"] == approx((0.625 + 0.75 + 0.25) / 3)
    assert r["gpus_allocated_peak"] == approx(0.75)


def test_rightsizing_findings(ledger: Ledger) -> None:
    r = rightsizing(ledger, rates=RATES)
    assert r["job_id"].to_list() == [2, 5]
    j2, j5 = r.row(0, named=True), r.row(1, named=True)
    assert j2["findings"] == "idle-gpus"
    assert "request 1" in j2["suggestion"]
    assert j2["gpu_h_freed"] == approx(10.5)
    assert j5["findings"] == "small-memory, smaller-model"
    assert "gpu_milli=250" in j5["suggestion"] and "NVIDIA L4" in j5["suggestion"]
    assert j5["gpu_h_freed"] == approx(2.0)
    by_user = _rows(rightsizing(ledger, rates=RATES, by="user"), "user")
    assert by_user["bob"]["gpu_h_freed"] == approx(10.5)
    assert by_user["dave"]["smaller_model"] == 1


def test_short_period_uses_minutes_from_raw_samples(tmp_path: Path) -> None:
    """No rollups yet: raw samples every 10 s are rolled up to minutes in SQL."""
    from datetime import datetime, timedelta

    t0 = datetime(2024, 5, 1, 10, 0)
    store = Store.open(tmp_path / "raw.duckdb")
    try:
        store.append_rows("nodes", [{"name": "n", "pool": "p", "gpu_model": "L4",
                                     "gpu_count": 1}])
        store.append_rows("gpu_samples", [
            {"ts": t0 + timedelta(seconds=10 * i), "node": "n", "gpu_index": 0,
             "model": "L4", "util_pct": 60.0 if 30 <= i < 210 else 0.0,
             "mem_used_bytes": 2**30, "mem_total_bytes": 24 * 2**30}
            for i in range(720)])  # 2 hours
        store.append_rows("jobs", [
            {"id": 1, "name": "j", "user": "u", "executor": "process", "spec": "{}",
             "state": "succeeded", "node": "n", "gpu_indices": [0], "gpu_count": 1,
             "gpu_milli": 1000, "submitted_at": t0, "started_at": t0 + timedelta(minutes=5),
             "ended_at": t0 + timedelta(minutes=35)}])
        frames = from_store(store.con, t0, t0 + timedelta(hours=2),
                            now=t0 + timedelta(hours=3))
    finally:
        store.close()
    assert (frames.bucket_s, frames.resolution) == (60, "1m")
    led = build_ledger(frames)
    j = led.jobs.row(0, named=True)
    assert j["gpu_h_allocated"] == approx(0.5)
    assert j["gpu_h_used"] == approx(0.5 * 0.6)
    assert j["util_mean_pct"] == approx(60.0)


def test_hourly_chart_marks_the_partial_last_hour(tmp_path: Path) -> None:
    """A report ending at 23:30 plots whole hours only: the hour still filling (23:00) is
    named in the chart's title, not drawn as a drop; ending on the hour, nothing is left out."""
    from datetime import timedelta

    from reports.model import LineChart
    from reports.pack import build_report
    from reports.usage import fleet_series, partial_period

    path = write_history(tmp_path / "s.duckdb")
    cut = END - timedelta(minutes=30)
    with Store.open(path, read_only=True) as store:
        led = build_ledger(from_store(store.con, START, cut, now=cut))
        whole = build_ledger(from_store(store.con, START, END, now=NOW))
    last = END - timedelta(hours=1)
    assert partial_period(led, every="hour") == last
    hours = fleet_series(led, every="hour")["period_start"].to_list()
    assert hours and max(hours) == last - timedelta(hours=1)
    (chart,) = build_report("usage", led, generated_at=cut).charts
    assert isinstance(chart, LineChart)
    assert "the hour from 2024-03-03 23:00 is still filling, not shown" in chart.title
    assert max(chart.series[0].x) == (last - timedelta(hours=1) - datetime(1970, 1, 1)
                                     ).total_seconds()
    assert partial_period(whole, every="hour") is None
    (chart,) = build_report("usage", whole, generated_at=END).charts
    assert isinstance(chart, LineChart) and "still filling" not in chart.title
