"""Rollups over a real DuckDB store: exact min/mean/max, idempotent, crash-safe, retention."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from collectors.ingest import IngestBuffer
from collectors.store import Store
from collectors.store.rollup import WM_1H, WM_1M, rollup

DAY = 86400.0
H9 = datetime(2024, 5, 1, 9, 0, 0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "fd.duckdb")
    yield s
    s.close()


def put(store: Store, samples: list[tuple[datetime, float | None, float | None]],
        node: str = "a") -> None:
    """(ts, gpu util %, node cpu %) triples as raw gpu_samples (GPU 0) and node_samples."""
    buf = IngestBuffer()
    buf.add_rows("gpu_samples", [
        {"ts": t, "node": node, "gpu_index": 0, "uuid": "GPU-0", "model": "A100",
         "util_pct": u, "mem_used_bytes": None if u is None else int(u) * 1000,
         "mem_total_bytes": 100_000, "power_w": None if u is None else 100 + u,
         "temp_c": 40 + (u or 0) / 10}
        for t, u, _ in samples
    ])
    buf.add_rows("node_samples", [
        {"ts": t, "node": node, "cpu_util_pct": c, "mem_used_bytes": 10, "mem_total_bytes": 20}
        for t, _, c in samples
    ])
    buf.flush(store)


def q(store: Store, sql: str) -> list[tuple[Any, ...]]:
    return store.con.execute(sql).fetchall()


def run(store: Store, now: datetime, raw: float = DAY, minute: float = 30 * DAY) -> dict[str, int]:
    return rollup(store.con, now, raw_retention_s=raw, minute_retention_s=minute, settle_s=15)


def test_complete_minutes_roll_up_once(store: Store) -> None:
    m = H9
    assert run(store, m + timedelta(minutes=1, seconds=14)) == {}  # nothing stored yet
    put(store, [(m, 10, 1), (m + timedelta(seconds=20), 20, 2), (m + timedelta(seconds=40), 60, 3),
                (m + timedelta(minutes=1, seconds=5), None, None),
                (m + timedelta(minutes=1, seconds=30), 100, 50),
                (m + timedelta(minutes=2, seconds=5), 7, 7)])
    # 09:02:20: minute 09:01 ended 20 s ago (settled: > 15 s), minute 09:02 is not complete
    out = run(store, m + timedelta(minutes=2, seconds=20))
    assert out == {"gpu_samples_1m": 2, "node_samples_1m": 2}
    g = q(store, "SELECT ts, samples, util_pct_min, util_pct_mean, util_pct_max, "
                 "mem_used_bytes_min, mem_used_bytes_mean, mem_used_bytes_max, power_w_max, "
                 "temp_c_max, uuid, model, mem_total_bytes FROM gpu_samples_1m ORDER BY ts")
    assert g[0] == (m, 3, 10.0, 30.0, 60.0, 10_000, 30_000.0, 60_000, 160.0, 46.0, "GPU-0",
                    "A100", 100_000)
    # a sample with unknown util counts as a sample, but not in min/mean/max
    assert g[1][:5] == (m + timedelta(minutes=1), 2, 100.0, 100.0, 100.0)
    n = q(store, "SELECT samples, cpu_util_pct_min, cpu_util_pct_mean, cpu_util_pct_max "
                 "FROM node_samples_1m ORDER BY ts")
    assert n == [(3, 1.0, 2.0, 3.0), (2, 50.0, 50.0, 50.0)]
    assert q(store, f"SELECT value FROM meta WHERE key = '{WM_1M}'") == \
        [((m + timedelta(minutes=2)).isoformat(),)]

    # again, and with a late sample for a minute already rolled up: nothing doubles
    assert run(store, m + timedelta(minutes=2, seconds=20)) == {}
    put(store, [(m + timedelta(seconds=50), 99, 99)])
    assert run(store, m + timedelta(minutes=2, seconds=20)) == {}
    assert q(store, "SELECT count(*), sum(samples) FROM gpu_samples_1m") == [(2, 5)]

    # the next minute completes
    assert run(store, m + timedelta(minutes=3, seconds=20)) == \
        {"gpu_samples_1m": 1, "node_samples_1m": 1}
    assert q(store, "SELECT count(*) FROM gpu_samples_1m WHERE ts = "
                    "TIMESTAMP '2024-05-01 09:02:00'") == [(1,)]


def test_hours_keep_min_max_and_sample_weighted_mean(store: Store) -> None:
    put(store, [(H9, 0, 0), (H9 + timedelta(seconds=30), 100, 100),
                (H9 + timedelta(minutes=30), 40, 40),
                (H9 + timedelta(hours=1, minutes=59), 10, 10),
                (H9 + timedelta(hours=2, seconds=10), 5, 5)])
    out = run(store, H9 + timedelta(hours=2, seconds=30))
    assert out["gpu_samples_1h"] == 2 and out["node_samples_1h"] == 2
    h = q(store, "SELECT ts, samples, util_pct_min, util_pct_mean, util_pct_max, "
                 "power_w_min, power_w_max, temp_c_max FROM gpu_samples_1h ORDER BY ts")
    # minute means 50 (2 samples) and 40 (1 sample): weighted (100 + 40) / 3, not (50 + 40) / 2
    assert h[0][:2] == (H9, 3)
    assert h[0][2] == 0.0 and h[0][4] == 100.0
    assert h[0][3] == pytest.approx(140 / 3, rel=1e-6)
    assert h[0][5:] == (100.0, 200.0, 50.0)
    assert h[1][:5] == (H9 + timedelta(hours=1), 1, 10.0, 10.0, 10.0)
    n = q(store, "SELECT samples, cpu_util_pct_mean FROM node_samples_1h ORDER BY ts")
    assert n[0][0] == 3 and n[0][1] == pytest.approx(140 / 3, rel=1e-6)
    assert q(store, f"SELECT value FROM meta WHERE key = '{WM_1H}'") == \
        [((H9 + timedelta(hours=2)).isoformat(),)]
    assert run(store, H9 + timedelta(hours=2, seconds=30)) == {}


def test_retention_never_deletes_what_is_not_rolled_up(store: Store) -> None:
    put(store, [(H9, 10, 10), (H9 + timedelta(minutes=5), 20, 20),
                (H9 + timedelta(minutes=59, seconds=50), 30, 30)])
    buf = IngestBuffer()
    buf.add_rows("disk_samples", [{"ts": H9, "node": "a", "path": "/", "used_bytes": 1,
                                   "total_bytes": 2}])
    buf.add_rows("gpu_events", [{"ts": H9, "node": "a", "gpu_index": 0, "kind": "xid",
                                 "code": 79}])
    buf.flush(store)
    # raw retention 0 at 09:59:59: minutes up to 09:59 are rolled up and their raw rows go;
    # 09:59:50 is in a minute not settled yet and stays
    out = run(store, H9 + timedelta(minutes=59, seconds=59), raw=0, minute=0)
    assert out["deleted:gpu_samples"] == 2 and out["deleted:node_samples"] == 2
    assert out["deleted:disk_samples"] == 1
    assert q(store, "SELECT ts FROM gpu_samples") == [(H9 + timedelta(minutes=59, seconds=50),)]
    assert q(store, "SELECT count(*) FROM gpu_samples_1m") == [(2,)]  # hour 09 not complete
    assert q(store, "SELECT count(*) FROM gpu_events") == [(0,)]
    # an hour later everything is in *_1h; minute rows go once covered by it
    out = run(store, H9 + timedelta(hours=1, minutes=1), raw=0, minute=0)
    assert out["gpu_samples_1h"] == 1
    assert q(store, "SELECT count(*) FROM gpu_samples") == [(0,)]
    assert q(store, "SELECT count(*) FROM gpu_samples_1m") == [(0,)]
    assert q(store, "SELECT samples, util_pct_min, util_pct_mean, util_pct_max "
                    "FROM gpu_samples_1h") == [(3, 10.0, 20.0, 30.0)]


def test_a_failed_step_rolls_back_and_the_next_run_completes(store: Store) -> None:
    put(store, [(H9, 10, 10), (H9 + timedelta(minutes=61), 20, 20)])
    store.con.execute("ALTER TABLE node_samples_1h RENAME TO node_samples_1h_away")
    with pytest.raises(Exception, match="node_samples_1h"):
        run(store, H9 + timedelta(hours=1, minutes=2, seconds=30), raw=0)
    # the 1m step committed; the 1h step (gpu insert included) and retention did not
    assert q(store, "SELECT count(*) FROM gpu_samples_1m") == [(2,)]
    assert q(store, "SELECT count(*) FROM gpu_samples_1h") == [(0,)]
    assert q(store, f"SELECT count(*) FROM meta WHERE key = '{WM_1H}'") == [(0,)]
    assert q(store, "SELECT count(*) FROM gpu_samples") == [(2,)]
    store.con.execute("ALTER TABLE node_samples_1h_away RENAME TO node_samples_1h")
    out = run(store, H9 + timedelta(hours=1, minutes=2, seconds=30), raw=0)
    assert out["gpu_samples_1h"] == 1 and out["node_samples_1h"] == 1
    assert "gpu_samples_1m" not in out
    assert q(store, "SELECT count(*) FROM gpu_samples_1m") == [(2,)]
    assert q(store, "SELECT count(*) FROM gpu_samples") == [(0,)]


def test_empty_store_and_aware_now(store: Store) -> None:
    from datetime import UTC

    assert run(store, datetime(2024, 5, 1, 12, tzinfo=UTC)) == {}
    assert q(store, "SELECT count(*) FROM meta WHERE key LIKE 'rollup%'") == [(0,)]
    put(store, [(H9, 10, 10)])
    out = run(store, datetime(2024, 5, 1, 11, 0, 30, tzinfo=UTC))  # = 11:00:30 UTC
    assert out["gpu_samples_1m"] == 1 and out["gpu_samples_1h"] == 1


def test_a_backlog_is_rolled_up_in_bounded_passes(store: Store) -> None:
    """After downtime each pass covers at most `max_minutes`; repeated passes catch up with
    the same rows a single unbounded pass would have written."""
    put(store, [(H9 + timedelta(minutes=m), float(m % 100), 50.0) for m in range(0, 300, 7)])
    now = H9 + timedelta(hours=5, minutes=1)
    passes = []
    while True:
        rollup(store.con, now, raw_retention_s=DAY, minute_retention_s=30 * DAY, max_minutes=60)
        wm = q(store, f"SELECT value FROM meta WHERE key = '{WM_1M}'")[0][0]
        if passes and passes[-1] == wm:
            break
        passes.append(wm)
    assert passes == [(H9 + timedelta(hours=h)).isoformat() for h in range(1, 6)]
    assert q(store, "SELECT count(*), sum(samples) FROM gpu_samples_1m") == [(43, 43)]
    assert q(store, "SELECT count(*) FROM gpu_samples_1h") == [(5,)]
