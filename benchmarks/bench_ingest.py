"""Benchmark: fleetdeck's ingest against a raw Arrow `INSERT ... SELECT` of the same rows, and
the cost of one rollup pass.

Records are the simulated nodes' probe lines (`benchmarks/simnodes.py`: 8 GPUs, 8 GPU
processes, one disk per node) parsed by the real probe parser. Per interval it times, in one
run and into two fresh stores of the same schema:

  ingest  `IngestBuffer.add_many(records)` + `flush(store)` (what the engine does per interval)
  raw     `INSERT INTO t BY NAME SELECT * FROM arrow` of the same rows, already Arrow tables
          built outside the timing (the floor: DuckDB's own append)

then prints rows/s of both side by side and their ratio (target: ingest within 2x of raw),
and the time of each rollup pass (`collectors.store.rollup`) as the raw tables grow: a pass
touches only the new window, so its time stays flat while the tables grow.

Usage: .venv/bin/python benchmarks/bench_ingest.py [--nodes 1000] [--gpus 8] [--intervals 24]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from simnodes import sample_template  # noqa: E402

from collectors.ingest import IngestBuffer  # noqa: E402
from collectors.models import ProbeRecord  # noqa: E402
from collectors.probe.parse import parse_line  # noqa: E402
from collectors.store import Store  # noqa: E402
from collectors.store.rollup import rollup  # noqa: E402

INTERVAL_S = 5.0
T0 = 1_790_000_000.0  # a fixed minute boundary: rollup windows line up run to run


def records(templates: list[str], seq: int, ts: float) -> list[ProbeRecord]:
    out = []
    for i, t in enumerate(templates):
        rec = parse_line(f"sim{i:04d}", t % {"seq": seq, "ts": ts})
        assert isinstance(rec, ProbeRecord)
        out.append(rec)
    return out


def raw_tables(recs: list[ProbeRecord]) -> dict[str, pa.Table]:
    """The same rows as Arrow tables, built the slow obvious way (not timed)."""
    def us(ts: float) -> int:
        return round(ts * 1_000_000)

    def table(rows: list[dict[str, object]], ts_cols: tuple[str, ...] = ("ts",)) -> pa.Table:
        t = pa.Table.from_pylist(rows)
        for c in ts_cols:
            i = t.schema.get_field_index(c)
            t = t.set_column(i, c, t.column(c).cast(pa.timestamp("us")))
        return t

    def fields(obj: object) -> dict[str, object]:
        return {f: getattr(obj, f) for f in obj.__slots__}  # type: ignore[attr-defined]

    out = {}
    gpu_rows = []
    for r in recs:
        for g in r.gpus:
            row = fields(g)
            row["ts"] = us(g.ts)
            gpu_rows.append(row)
    out["gpu_samples"] = table(gpu_rows)
    node_rows = []
    for r in recs:
        row = fields(r.host)
        row["ts"] = us(r.ts)
        row["per_core_util_pct"] = pa.scalar(list(r.host.per_core_util_pct),
                                             pa.list_(pa.float32())).as_py()
        node_rows.append(row)
    out["node_samples"] = table(node_rows)
    out["disk_samples"] = table([dict(fields(d), ts=us(d.ts)) for r in recs for d in r.disks])
    out["gpu_processes"] = table([dict(fields(p), ts=us(p.ts))
                                  for r in recs for p in r.processes])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--intervals", type=int, default=24,
                    help="intervals written (5 s each; 12 = one minute)")
    args = ap.parse_args()
    if not (0 < args.nodes <= 100_000 and 0 <= args.gpus <= 64 and 0 < args.intervals <= 10_000):
        print("bench_ingest: --nodes 1..100000, --gpus 0..64, --intervals 1..10000",
              file=sys.stderr)
        return 2
    rng = random.Random(42)
    templates = [sample_template(i, args.gpus, rng) for i in range(args.nodes)]
    with tempfile.TemporaryDirectory(prefix="fd-bench-ingest-") as tmp:
        ingest_store = Store.open(Path(tmp) / "ingest.duckdb")
        raw_store = Store.open(Path(tmp) / "raw.duckdb")
        buf = IngestBuffer()
        ingest_s: list[float] = []
        ingest_cpu_s: list[float] = []
        raw_s: list[float] = []
        raw_cpu_s: list[float] = []
        rollup_s: list[tuple[int, float, int]] = []
        rows_per_interval = 0
        store_cols: dict[str, set[str]] = {}
        for table, col in raw_store.con.execute(
                "SELECT table_name, column_name FROM information_schema.columns").fetchall():
            store_cols.setdefault(str(table), set()).add(str(col))
        for k in range(args.intervals):
            ts = T0 + k * INTERVAL_S
            recs = records(templates, k + 1, ts)
            tables = {name: t.select([c for c in t.column_names if c in store_cols[name]])
                      for name, t in raw_tables(recs).items()}
            rows_per_interval = sum(t.num_rows for t in tables.values())
            w0, c0 = time.perf_counter(), time.process_time()
            buf.add_many(recs)
            written = buf.flush(ingest_store)
            ingest_s.append(time.perf_counter() - w0)
            ingest_cpu_s.append(time.process_time() - c0)
            assert sum(written.values()) == rows_per_interval, (written, rows_per_interval)
            w0, c0 = time.perf_counter(), time.process_time()
            with raw_store.transaction() as con:
                for name, t in tables.items():
                    con.register("_raw", t)
                    con.execute(f'INSERT INTO "{name}" BY NAME SELECT * FROM _raw')
                    con.unregister("_raw")
            raw_s.append(time.perf_counter() - w0)
            raw_cpu_s.append(time.process_time() - c0)
            if (k + 1) % 12 == 0:  # a minute is complete: one rollup pass, as the engine does
                now = datetime.fromtimestamp(ts + INTERVAL_S + 16, UTC)
                w0 = time.perf_counter()
                out = rollup(ingest_store, now, raw_retention_s=7 * 86400,
                             minute_retention_s=90 * 86400)
                rows_total = int(ingest_store.con.execute(
                    "SELECT count(*) FROM gpu_samples").fetchall()[0][0])
                rollup_s.append((rows_total, time.perf_counter() - w0,
                                 out.get("gpu_samples_1m", 0)))
        ingest_store.close()
        raw_store.close()
    mi, mr = statistics.median(ingest_s), statistics.median(raw_s)
    print(f"bench_ingest: {args.nodes} nodes x {args.gpus} GPUs, {args.intervals} intervals, "
          f"{rows_per_interval} rows per interval (all tables)")
    ci, cr = statistics.median(ingest_cpu_s), statistics.median(raw_cpu_s)
    print(f"{'':8}{'median wall s':>16}{'rows/s':>12}{'median CPU s':>16}{'rows/CPU-s':>14}")
    for name, w, c in (("ingest", mi, ci), ("raw", mr, cr)):
        print(f"{name:8}{w:16.4f}{rows_per_interval / w:12,.0f}{c:16.4f}"
              f"{rows_per_interval / c:14,.0f}")
    print(f"ingest / raw: {mi / mr:.2f}x wall, {ci / cr:.2f}x CPU (target <= 2x; CPU counts "
          "DuckDB's threads too)")
    for rows_total, secs, added in rollup_s:
        print(f"rollup pass: {secs * 1000:7.1f} ms  ({added} gpu minute rows added; "
              f"gpu_samples holds {rows_total:,} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
