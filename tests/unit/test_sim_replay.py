"""Replay mode and the `fleetdeck simulate` command glue."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from collectors.errors import InputError
from scheduler.models import FleetSnapshot, GpuSlot, NodeCapacity, ResourceRequest
from scheduler.sim.command import add_arguments, parse_seeds, run
from scheduler.sim.replay import run_replay
from scheduler.sim.traces import JOB_COLUMNS, NODE_COLUMNS, TraceJob

GIB = 1 << 30


def one_gpu_fleet() -> FleetSnapshot:
    return FleetSnapshot(
        nodes=(NodeCapacity("n0", "p", 16_000, 64 * GIB, (GpuSlot(0, "A100", 80 * GIB),)),)
    )


def job(name: str, t: float, d: float | None, gpus: int = 1, milli: int = 1000) -> TraceJob:
    return TraceJob(name, ResourceRequest(cpu_milli=1000, gpu_count=gpus, gpu_milli=milli), t, d)


def test_fifo_queueing_delay_and_jct_hand_checked() -> None:
    jobs = [
        job("a", 0, 10),
        job("b", 1, 5),  # waits for a: starts at 10
        job("c", 2, 4, milli=500),  # FIFO behind b: starts at 15 with d
        job("d", 3, 2, milli=500),
        job("x", 4, None),  # no run time: skipped
        job("huge", 5, 1, gpus=2),  # larger than any node: never starts
    ]
    r = run_replay(one_gpu_fleet(), jobs, "first-fit", seed=0)
    assert (r.jobs, r.skipped, r.never_fit) == (4, 1, 1)
    assert sorted(r.queue_delay_s) == [0.0, 9.0, 12.0, 13.0]
    # a 0-10, b 10-15, c 15-19, d 15-17
    assert sorted(r.jct_s) == [10.0, 14.0, 14.0, 17.0]
    assert r.makespan_s == 19.0
    assert r.stat(r.queue_delay_s, "mean") == pytest.approx(8.5)
    assert r.stat(r.jct_s, "median") == pytest.approx(14.0)
    # one GPU fully held until 17, then c's half until 19
    assert r.mean_alloc_pct == pytest.approx((17 * 100 + 2 * 50) / 19)
    assert r.alloc_samples[0] == (0.0, 100.0) and r.alloc_samples[-1] == (19.0, 0.0)


def test_later_small_jobs_may_pass_a_blocked_head() -> None:
    jobs = [job("a", 0, 10, milli=600), job("big", 1, 5), job("small", 2, 3, milli=400)]
    r = run_replay(one_gpu_fleet(), jobs, "best-fit", seed=0)
    assert sorted(r.queue_delay_s) == [0.0, 0.0, 9.0]  # small starts at once, big at 10


def test_time_scale_compresses_arrivals() -> None:
    jobs = [job("a", 0, 10), job("b", 100, 10)]
    assert run_replay(one_gpu_fleet(), jobs, "fgd", 0).queue_delay_s == (0.0, 0.0)
    squeezed = run_replay(one_gpu_fleet(), jobs, "fgd", 0, time_scale=0.01)
    assert sorted(squeezed.queue_delay_s) == [0.0, 9.0]


def files(tmp_path: Path) -> tuple[Path, Path]:
    nodes = tmp_path / "nodes.csv"
    nodes.write_text(
        ",".join(NODE_COLUMNS) + "\n" + "".join(f"n{i},32000,131072,4,A100\n" for i in range(4))
    )
    jobs = tmp_path / "jobs.csv"
    rows = [",".join(JOB_COLUMNS)]
    for i in range(40):
        gpus = ["0.25", "0.5", "1", "2", "0"][i % 5]
        rows.append(f"j{i},{i * 10},{300 + 7 * i},{gpus},,2,{GIB},u{i % 3},p")
    jobs.write_text("\n".join(rows) + "\n")
    return nodes, jobs


def cli(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


def test_command_fill_json(tmp_path: Path) -> None:
    nodes, jobs = files(tmp_path)
    out = io.StringIO()
    args = cli("--nodes", str(nodes), "--jobs", str(jobs), "--seeds", "1-2", "--format", "json")
    assert run(args, out) == 0
    rows = json.loads(out.getvalue())
    assert [r["policy"] for r in rows] == ["fleetdeck", "fgd", "best-fit", "random-fit"]
    for r in rows:
        assert r["seeds"] == [1, 2]
        assert 0 <= r["unallocated_gpu_pct_at_100"] <= 100
        assert len(r["per_seed_unallocated_gpu_pct_at_100"]) == 2


def test_command_replay_table_adds_first_fit_baseline(tmp_path: Path) -> None:
    nodes, jobs = files(tmp_path)
    out = io.StringIO()
    args = cli(
        "--nodes", str(nodes), "--jobs", str(jobs), "--mode", "replay", "--time-scale", "0.01"
    )
    assert run(args, out) == 0
    text = out.getvalue()
    assert "replay mode: nodes.csv x jobs.csv: 40 jobs" in text
    assert "fleetdeck" in text and "first-fit" in text
    out = io.StringIO()
    args = cli("--nodes", str(nodes), "--jobs", str(jobs), "--mode", "replay", "--format", "json")
    run(args, out)
    rows = json.loads(out.getvalue())
    assert [r["policy"] for r in rows] == ["fleetdeck", "first-fit"]
    assert {"mean_queue_delay_s", "mean_jct_s", "p95_jct_s", "makespan_s"} <= set(rows[0])


def test_command_errors_are_input_errors(tmp_path: Path) -> None:
    nodes, jobs = files(tmp_path)
    with pytest.raises(InputError, match=r'--policy: expected one of .*, got "worst-fit"'):
        run(cli("--nodes", str(nodes), "--jobs", str(jobs), "--policy", "worst-fit"))
    with pytest.raises(InputError, match="expected a node list file"):
        run(cli("--jobs", str(jobs)))
    assert parse_seeds("42-44,50") == [42, 43, 44, 50]
    for bad in ("", "x", "5-3", "1,,2"):
        with pytest.raises(InputError, match="--seeds"):
            parse_seeds(bad)
