"""IngestBuffer against a real DuckDB store: the rows written are the rows the probe sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from collectors.ingest import IngestBuffer, IngestError, node_inventory
from collectors.models import ProbeRecord
from collectors.probe import parse_line
from collectors.sources.docker import ContainerSample, container_rows
from collectors.sources.slurm import SlurmJobSample, SlurmNodeSample, job_rows, node_rows
from collectors.store import Store

from .test_probe_parse import CID, GPU0, HOST, UUID0, UUID1, sample

T0 = 1700000000.25


def ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "fd.duckdb")
    yield s
    s.close()


def record(node: str, t: float, **over: Any) -> ProbeRecord:
    rec = parse_line(node, json.dumps(sample(ts=t, **over)))
    assert isinstance(rec, ProbeRecord)
    return rec


def rows(store: Store, sql: str, *params: Any) -> list[dict[str, Any]]:
    cur = store.con.execute(sql, list(params))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def test_records_become_one_row_per_sample_gpu_process_event_and_disk(store: Store) -> None:
    buf = IngestBuffer()
    for node in ("a", "b"):
        for k in range(2):
            buf.add(record(node, T0 + 5 * k))
    assert buf.pending() == {"node_samples": 4, "disk_samples": 4, "gpu_samples": 8,
                             "gpu_processes": 4, "gpu_events": 4}
    written = buf.flush(store)
    assert written == {"node_samples": 4, "disk_samples": 4, "gpu_samples": 8,
                       "gpu_processes": 4, "gpu_events": 4}
    assert len(buf) == 0
    g = rows(store, "SELECT * FROM gpu_samples WHERE node = 'a' AND gpu_index = 0 ORDER BY ts")
    assert [r["ts"] for r in g] == [ts(T0), ts(T0 + 5)]
    expect = {k: v for k, v in GPU0.items() if k != "index"}
    assert {k: g[0][k] for k in expect} == expect
    nulls = rows(store, "SELECT * FROM gpu_samples WHERE node = 'b' AND gpu_index = 1 LIMIT 1")[0]
    assert nulls["uuid"] == UUID1
    assert all(v is None for k, v in nulls.items() if k not in ("ts", "node", "gpu_index",
                                                                 "uuid"))
    n = rows(store, "SELECT * FROM node_samples WHERE node = 'b' ORDER BY ts LIMIT 1")[0]
    for key in ("uptime_s", "cpu_count", "cpu_util_pct", "load1", "mem_total_bytes",
                "mem_used_bytes", "swap_total_bytes", "net_rx_bytes", "net_tx_bytes"):
        assert n[key] == HOST[key], key
    assert n["per_core_util_pct"] == [10.0, 20.0, 50.0, 70.0]
    p = rows(store, "SELECT * FROM gpu_processes WHERE node = 'a' LIMIT 1")[0]
    assert (p["pid"], p["gpu_index"], p["uuid"], p["gpu_mem_used_bytes"], p["command"],
            p["container_id"], p["job_id"]) == (4242, 0, UUID0, 2**30, "python train.py",
                                                CID, 17)
    e = rows(store, "SELECT * FROM gpu_events WHERE node = 'b' LIMIT 1")[0]
    assert (e["gpu_index"], e["kind"], e["code"], e["detail"]) == (1, "xid", 79, "Xid 79")
    d = rows(store, "SELECT * FROM disk_samples WHERE node = 'a' LIMIT 1")[0]
    assert (d["path"], d["used_bytes"], d["total_bytes"]) == ("/", 400, 1000)
    assert buf.flush(store) == {}


def test_container_rows_and_hook_attribute_gpu_processes_to_jobs(store: Store) -> None:
    other = "cd" * 32
    hooked = []

    def hook(container_id: str) -> int | None:
        hooked.append(container_id)
        return 99 if container_id == other else None

    buf = IngestBuffer(job_for_container=hook)
    procs = [
        {"gpu_index": 0, "uuid": UUID0, "pid": 1, "gpu_mem_used_bytes": 5, "command": "a",
         "container_id": CID, "job_id": None},
        {"gpu_index": 0, "uuid": UUID0, "pid": 2, "gpu_mem_used_bytes": 5, "command": "b",
         "container_id": other, "job_id": None},
        {"gpu_index": 1, "uuid": UUID1, "pid": 3, "gpu_mem_used_bytes": 5, "command": "c",
         "container_id": None, "job_id": None},
        {"gpu_index": 1, "uuid": UUID1, "pid": 4, "gpu_mem_used_bytes": 5, "command": "d",
         "container_id": CID, "job_id": 7},  # its own FLEETDECK_JOB_ID wins
    ]
    buf.add(record("a", T0, procs=procs))
    # the Docker source's rows arrive after the probe's, in the same interval
    buf.add_rows("container_samples", [{
        "ts": ts(T0), "node": "a", "container_id": CID, "name": "train", "image": "busybox",
        "state": "running", "labels": {"fleetdeck.job": "42", "user": "ana"},
        "started_at": T0 - 60, "cpu_util_pct": 150.0, "mem_used_bytes": 2**30,
        "gpu_devices": ["0", "1"],
    }])
    assert buf.flush(store)["container_samples"] == 1
    got = {r["pid"]: r["job_id"] for r in rows(store, "SELECT pid, job_id FROM gpu_processes")}
    assert got == {1: 42, 2: 99, 3: None, 4: 7}
    assert hooked == [other]
    c = rows(store, "SELECT * FROM container_samples")[0]
    assert json.loads(c["labels"]) == {"fleetdeck.job": "42", "user": "ana"}
    assert c["started_at"] == ts(T0 - 60) and c["gpu_devices"] == ["0", "1"]
    assert c["job_id"] is None  # the Docker source's row is stored as it came


def test_rows_that_do_not_fit_are_reported_and_the_rest_written(store: Store) -> None:
    buf = IngestBuffer()
    buf.add(record("a", T0))
    buf.add_rows("slurm_job_samples", [{"ts": T0, "pool": "p", "slurm_id": "1", "colour": 3}])
    with pytest.raises(IngestError, match="slurm_job_samples: unknown column 'colour'") as info:
        buf.flush(store)
    assert info.value.written["gpu_samples"] == 2
    assert rows(store, "SELECT count(*) AS n FROM slurm_job_samples")[0]["n"] == 0
    assert rows(store, "SELECT count(*) AS n FROM gpu_samples")[0]["n"] == 2
    with pytest.raises(ValueError, match="unknown table"):
        buf.add_rows("gpus", [{"x": 1}])


def test_a_flush_is_one_transaction(store: Store) -> None:
    buf = IngestBuffer()
    buf.add(record("a", T0))
    buf.add_rows("container_samples", [{"ts": T0, "node": "a", "container_id": None}])
    with pytest.raises(IngestError, match=r"batch of \d+ rows not written"):
        buf.flush(store)  # NOT NULL container_id fails the whole batch
    counts = store.row_counts()
    assert counts["node_samples"] == 0 and counts["gpu_samples"] == 0
    buf.add(record("a", T0))
    assert buf.flush(store)["node_samples"] == 1  # the buffer is usable afterwards


def test_node_inventory_for_the_nodes_table() -> None:
    inv = node_inventory(record("gpu01", T0))
    assert inv == {
        "name": "gpu01", "hostname": "gpu01", "kernel": "6.1.0-18-amd64",
        "cpu_model": "AMD EPYC 7763", "cpu_count": 4, "mem_total_bytes": 256 * 2**30,
        "gpu_count": 2, "gpu_model": "NVIDIA A100-SXM4-80GB", "last_seen": ts(T0),
    }


SAMPLE_TABLES = ("node_samples", "disk_samples", "gpu_samples", "gpu_events", "gpu_processes",
                 "container_samples", "slurm_node_samples", "slurm_job_samples")


def test_every_column_of_every_sample_table_is_written(store: Store) -> None:
    """A probe record and the Docker and Slurm sources' rows, every field known: ingest leaves
    no column of any sample table empty (a column added by a migration must be filled)."""
    buf = IngestBuffer()
    buf.add(record("a", T0))
    labels = {"fleetdeck.job": "17"}
    buf.add_rows("container_samples", container_rows([ContainerSample(
        ts=T0, node="a", container_id=CID, name="fd-17", image="pytorch:24", state="running",
        labels=labels, started_at=T0 - 60, cpu_util_pct=150.0, mem_used_bytes=2**30,
        mem_limit_bytes=2**32, gpu_devices=("0",), job_id=17)]))
    buf.add_rows("slurm_node_samples", node_rows([SlurmNodeSample(
        ts=T0, pool="hpc", node="c1", state="MIXED", partitions=("gpu",), cpus=64,
        cpus_alloc=8, mem_bytes=2**38, mem_alloc_bytes=2**34, gpus=8, gpus_alloc=2,
        gres="gpu:h100:8")]))
    buf.add_rows("slurm_job_samples", job_rows([SlurmJobSample(
        ts=T0, pool="hpc", slurm_id="301", name="fleetdeck-18", user="alice", account="ml",
        partition="gpu", state="RUNNING", nodes="c1", gpus=2, cpus=8, submitted_at=T0 - 120,
        started_at=T0 - 60, job_id=18)]))
    written = buf.flush(store)
    assert set(written) == set(SAMPLE_TABLES)
    for table in SAMPLE_TABLES:
        cols = [str(r[0]) for r in store.con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            "ORDER BY ordinal_position", [table]).fetchall()]
        counted = ", ".join(f'count("{c}")' for c in cols)
        counts = store.con.execute(f'SELECT {counted} FROM "{table}"').fetchall()[0]
        empty = [c for c, n in zip(cols, counts, strict=True) if n == 0]
        assert not empty, f"{table}: ingest never writes {empty}"
