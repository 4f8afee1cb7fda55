"""Per-job CPU from the probe: real processes found by FLEETDECK_JOB_ID, their GPUs from the
visible-devices variables, parsed into `JobSample`s and written to `job_samples`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.ingest import IngestBuffer
from collectors.models import JobSample, ProbeRecord
from collectors.probe import parse_line
from collectors.probe.jobs import JobReader, gpu_indices, job_of_environ, parse_pid_stat
from collectors.store import Store

from .test_probe_parse import sample

BUSY = "import time\nend = time.time() + 60\nwhile time.time() < end: pass\n"


@pytest.fixture
def job_procs() -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Job 901: a busy loop on GPU 1; job 902: two sleeping processes, Slurm-style GPUs."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FLEETDECK_", "CUDA_"))}
    procs = {
        "busy": subprocess.Popen([sys.executable, "-c", BUSY],
                                 env={**base, "FLEETDECK_JOB_ID": "901",
                                      "CUDA_VISIBLE_DEVICES": "1"}),
        "sleep1": subprocess.Popen(["sleep", "60"], env={**base, "FLEETDECK_JOB_ID": "902",
                                                         "SLURM_JOB_GPUS": "0,3"}),
        "sleep2": subprocess.Popen(["sleep", "60"], env={**base, "FLEETDECK_JOB_ID": "902"}),
    }
    yield procs
    for p in procs.values():
        p.kill()
        p.wait()


def test_jobs_are_found_by_environment_with_their_gpus_and_cpu(
        job_procs: dict[str, subprocess.Popen[bytes]]) -> None:
    reader = JobReader()
    errors: list[str] = []
    first = {r["job_id"]: r for r in reader.read(time.time(), errors)}
    assert {901, 902} <= set(first)
    assert first[901]["cpu_util_pct"] is None  # no previous reading yet
    assert first[902]["procs"] == 2
    assert first[902]["gpu_indices"] == [0, 3]
    assert first[901]["gpu_indices"] == [1]
    # wait for the busy job to have burnt measurable CPU (a state, not a duration)
    start_cpu = first[901]["cpu_time_s"]
    deadline = time.monotonic() + 30
    while True:
        time.sleep(0.3)
        now = {r["job_id"]: r for r in reader.read(time.time(), errors)}
        if now[901]["cpu_time_s"] > start_cpu + 0.2 or time.monotonic() > deadline:
            break
    assert now[901]["cpu_util_pct"] is not None and now[901]["cpu_util_pct"] > 0
    assert now[902]["cpu_util_pct"] == 0.0
    assert now[902]["rss_bytes"] > 0
    assert errors == []
    # a job whose processes end disappears
    job_procs["sleep1"].kill()
    job_procs["sleep2"].kill()
    job_procs["sleep1"].wait()
    job_procs["sleep2"].wait()
    after = {r["job_id"] for r in reader.read(time.time(), errors)}
    assert 902 not in after and 901 in after


def test_stat_and_environ_parsing() -> None:
    stat = "123 (a) b (c)) S 1 1 1 0 -1 4194560 1 0 0 0 7 5 0 0 20 0 1 0 4242 100 33 x"
    assert parse_pid_stat(stat) == (12, 4242, 33)
    env = b"PATH=/bin\0FLEETDECK_JOB_ID=17\0NVIDIA_VISIBLE_DEVICES=2,3\0"
    assert job_of_environ(env) == (17, [2, 3])
    assert job_of_environ(b"CUDA_VISIBLE_DEVICES=GPU-abc\0FLEETDECK_JOB_ID=x\0") == (None, None)
    assert gpu_indices(b"all") is None and gpu_indices(b"") is None
    assert gpu_indices(b" 0, 5") == [0, 5]


def test_job_lines_parse_and_land_in_job_samples(tmp_path: Path) -> None:
    jobs = [{"job_id": 5, "procs": 3, "cpu_time_s": 12.5, "cpu_util_pct": 87.5,
             "rss_bytes": 1 << 30, "gpu_indices": [0, 2]},
            {"job_id": 6, "procs": 1, "cpu_time_s": 0.1, "cpu_util_pct": None,
             "rss_bytes": 4096, "gpu_indices": None}]
    rec = parse_line("gpu01", json.dumps(sample(jobs=jobs)))
    assert isinstance(rec, ProbeRecord)
    assert rec.jobs == (JobSample(rec.ts, "gpu01", 5, 3, 12.5, 87.5, 1 << 30, (0, 2)),
                        JobSample(rec.ts, "gpu01", 6, 1, 0.1, None, 4096, None))
    with pytest.raises(Exception, match="gpu_indices"):
        parse_line("gpu01", json.dumps(sample(jobs=[{**jobs[0], "gpu_indices": "0"}])))
    store = Store.open(tmp_path / "s.duckdb")
    try:
        buf = IngestBuffer()
        buf.add(rec)
        assert buf.flush(store)["job_samples"] == 2
        got = store.con.execute(
            "SELECT node, job_id, procs, cpu_time_s, cpu_util_pct, rss_bytes, gpu_indices "
            "FROM job_samples ORDER BY job_id").fetchall()
        assert got == [("gpu01", 5, 3, 12.5, 87.5, 1 << 30, [0, 2]),
                       ("gpu01", 6, 1, 0.1, None, 4096, None)]
    finally:
        store.close()
