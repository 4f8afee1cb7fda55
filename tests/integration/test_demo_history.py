"""The demo's generated history, written into a real DuckDB store and read back with SQL and
the real reports: capacity is never exceeded, rollups are ordered and follow the jobs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.store import Store
from console.demo import fleet
from console.demo.history_tables import HistoryStats, write_history
from console.typed import build
from reports.command import build_reports
from reports.rates import Rates
from scheduler.jobspec import JobSpec

DAYS = 21
NOW = 1_780_000_000.0  # a fixed clock: the history is reproducible


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, HistoryStats]]:
    path = Path(tmp_path_factory.mktemp("demo-history")) / "store.duckdb"
    with Store.open(path) as s:
        stats = write_history(s, NOW, days=DAYS, seed=11)
        yield s, stats


def one(store: Store, sql: str, *args: object) -> object:
    rows = store.con.execute(sql, list(args)).fetchall()
    return rows[0][0]


def test_every_gpu_has_one_row_per_hour(store: tuple[Store, HistoryStats]) -> None:
    s, stats = store
    gpus = sum(n.profile.gpu_count for n in fleet.nodes())
    onprem = one(s, "SELECT count(*) FROM gpu_samples_1h WHERE node NOT LIKE 'burst-%'")
    assert onprem == gpus * DAYS * 24
    assert one(s, "SELECT count(*) FROM (SELECT node, gpu_index, ts, count(*) c "
                  "FROM gpu_samples_1h GROUP BY ALL HAVING c > 1)") == 0
    assert one(s, "SELECT count(DISTINCT node) FROM node_samples_1h "
                  "WHERE node NOT LIKE 'burst-%'") == len(fleet.nodes())
    last = one(s, "SELECT max(ts) FROM gpu_samples_1h")
    assert last.timestamp() < NOW  # type: ignore[attr-defined]  # history stops before now
    assert stats.jobs == one(s, "SELECT count(*) FROM jobs")


def test_rollups_min_mean_max_are_ordered(store: tuple[Store, HistoryStats]) -> None:
    s, _ = store
    bad = one(s, """
        SELECT count(*) FROM gpu_samples_1h WHERE NOT (
            0 <= util_pct_min AND util_pct_min <= util_pct_mean + 1e-3
            AND util_pct_mean <= util_pct_max + 1e-3 AND util_pct_max <= 100
            AND 0 <= mem_used_bytes_min AND mem_used_bytes_min <= mem_used_bytes_mean + 1
            AND mem_used_bytes_mean <= mem_used_bytes_max + 1
            AND mem_used_bytes_max <= mem_total_bytes
            AND power_w_min <= power_w_mean + 1e-2 AND power_w_mean <= power_w_max + 1e-2
            AND samples > 0)""")
    assert bad == 0
    bad_nodes = one(s, """
        SELECT count(*) FROM node_samples_1h WHERE NOT (
            cpu_util_pct_min <= cpu_util_pct_mean + 1e-3
            AND cpu_util_pct_mean <= cpu_util_pct_max + 1e-3 AND cpu_util_pct_max <= 100
            AND mem_used_bytes_min <= mem_used_bytes_mean + 1
            AND mem_used_bytes_mean <= mem_used_bytes_max + 1
            AND mem_used_bytes_max <= mem_total_bytes)""")
    assert bad_nodes == 0


def test_jobs_never_exceed_a_gpu_or_a_node(store: tuple[Store, HistoryStats]) -> None:
    s, _ = store
    # one job at a time per GPU, each holding at most the whole GPU
    overlaps = one(s, """
        WITH held AS (SELECT node, unnest(gpu_indices) AS g, gpu_milli, started_at, ended_at
                      FROM jobs)
        SELECT count(*) FROM (
            SELECT gpu_milli, started_at,
                   lag(ended_at) OVER (PARTITION BY node, g ORDER BY started_at) AS prev_end
            FROM held) WHERE started_at < prev_end OR gpu_milli > 1000""")
    assert overlaps == 0
    caps = {n.name: n.profile for n in fleet.nodes()}
    rows = s.con.execute("""
        SELECT a.node, a.id, sum(b.cpu_milli), sum(b.gpu_count * b.gpu_milli)
        FROM jobs a JOIN jobs b ON a.node = b.node
         AND b.started_at <= a.started_at AND b.ended_at > a.started_at
        WHERE a.node NOT LIKE 'burst-%' GROUP BY ALL""").fetchall()
    assert rows
    for node, _job, cpu_milli, gpu_milli in rows:
        assert cpu_milli <= caps[node].cpu_count * 1000, node
        assert gpu_milli <= caps[node].gpu_count * 1000, node
    assert one(s, "SELECT count(*) FROM jobs WHERE len(gpu_indices) <> gpu_count") == 0
    assert one(s, "SELECT count(*) FROM jobs WHERE NOT (submitted_at <= started_at "
                  "AND started_at < ended_at)") == 0


def test_rollups_follow_the_jobs(store: tuple[Store, HistoryStats]) -> None:
    s, _ = store
    # a GPU-hour showing work or memory had a job on that GPU during that hour ...
    phantom = one(s, """
        SELECT count(*) FROM gpu_samples_1h r
        WHERE (r.util_pct_max > 0 OR r.mem_used_bytes_max > 0) AND NOT EXISTS (
            SELECT 1 FROM (SELECT node, unnest(gpu_indices) AS g, started_at, ended_at
                           FROM jobs) j
            WHERE j.node = r.node AND j.g = r.gpu_index
              AND j.started_at < r.ts + INTERVAL 1 HOUR AND j.ended_at > r.ts)""")
    assert phantom == 0
    # ... and a GPU held for a whole hour by a job shows memory in use
    held_empty = one(s, """
        SELECT count(*) FROM gpu_samples_1h r JOIN (
            SELECT node, unnest(gpu_indices) AS g, started_at, ended_at FROM jobs) j
          ON j.node = r.node AND j.g = r.gpu_index
         AND j.started_at <= r.ts AND j.ended_at >= r.ts + INTERVAL 1 HOUR
        WHERE r.mem_used_bytes_min = 0 AND r.node NOT LIKE 'burst-%'""")
    assert held_empty == 0
    busy = one(s, "SELECT avg(util_pct_mean) FROM gpu_samples_1h")
    assert 10.0 < float(busy) < 90.0  # type: ignore[arg-type]


def test_jobs_have_valid_specs_events_and_audit(store: tuple[Store, HistoryStats]) -> None:
    s, _ = store
    for (raw,) in s.con.execute("SELECT spec FROM jobs USING SAMPLE 200 ROWS").fetchall():
        spec = JobSpec.from_dict(json.loads(raw))
        assert spec.user and spec.project and spec.executor == "process"
    n = one(s, "SELECT count(*) FROM jobs")
    assert one(s, "SELECT count(*) FROM job_events") == 4 * n  # type: ignore[operator]
    assert one(s, "SELECT count(*) FROM actions WHERE action = 'submit'") == n
    out_of_order = one(s, "SELECT count(*) FROM (SELECT ts, lag(ts) OVER (ORDER BY id) AS p "
                          "FROM actions) WHERE ts < p")
    assert out_of_order == 0  # audit ids follow time, as live ones do
    stopped = one(s, "SELECT count(*) FROM jobs WHERE state = 'stopped' "
                     "AND reason LIKE 'idle%'")
    assert stopped == one(s, "SELECT count(*) FROM actions WHERE action = 'idle_stop'")
    assert one(s, "SELECT count(*) FROM actions WHERE action LIKE 'burst_%'") > 0  # type: ignore[operator]
    # live submissions and actions get fresh ids
    assert one(s, "SELECT nextval('job_id_seq')") > one(s, "SELECT max(id) FROM jobs")  # type: ignore[operator]
    assert one(s, "SELECT nextval('action_id_seq')") > one(s, "SELECT max(id) FROM actions")  # type: ignore[operator]


def test_burst_spend_matches_instances(store: tuple[Store, HistoryStats]) -> None:
    s, stats = store
    assert stats.burst_instances == one(s, "SELECT count(*) FROM burst_instances")
    spent = one(s, "SELECT sum(amount) FROM spend")
    cost = one(s, "SELECT sum(cost) FROM burst_instances")
    assert abs(float(spent) - float(cost)) < 1.0  # type: ignore[arg-type]
    on_burst = one(s, "SELECT count(*) FROM jobs j JOIN burst_instances b ON b.node = j.node "
                      "WHERE j.burst AND j.started_at >= b.ready_at "
                      "AND j.ended_at <= b.terminated_at")
    assert on_burst == one(s, "SELECT count(*) FROM jobs WHERE burst")


def test_reports_on_the_history_are_not_empty(store: tuple[Store, HistoryStats]) -> None:
    s, _ = store
    rates = build(Rates, fleet.RATES, source="demo rates")
    reports = build_reports("all", s.con, rates=rates, now=NOW,
                            start=NOW - 14 * 86400.0, end=NOW)
    by_name = {r.name: r for r in reports}
    assert set(by_name) == {"usage", "forecast", "chargeback", "rightsizing"}
    charge = by_name["chargeback"].tables[0].frame
    assert charge.height >= len(fleet.USERS) - 1
    assert float(charge["gpu_cost"].sum()) > 0
    assert by_name["usage"].tables[0].frame.height > 0
    assert by_name["rightsizing"].tables[0].frame.height > 0
    assert by_name["forecast"].tables[0].frame.height > 0
