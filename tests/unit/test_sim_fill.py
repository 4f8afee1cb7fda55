"""Fill mode: the ATC'23 protocol on small fleets, and a reduced run on the real trace."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from scheduler.models import FleetSnapshot, GpuSlot, NodeCapacity, ResourceRequest
from scheduler.sim.fill import discrete_curve, run_fill, tuned_requests
from scheduler.sim.traces import TraceJob, load_alibaba_nodes, load_jobs

GIB = 1 << 30
TRACES = Path(__file__).resolve().parents[2].parent / "shared" / "traces"


def job(name: str, gpus: int = 1, milli: int = 1000, cpu: int = 1000) -> TraceJob:
    return TraceJob(name, ResourceRequest(cpu_milli=cpu, gpu_count=gpus, gpu_milli=milli), 0.0, 1.0)


def fleet(n_nodes: int, n_gpus: int) -> FleetSnapshot:
    return FleetSnapshot(
        nodes=tuple(
            NodeCapacity(
                f"n{i}",
                "p",
                64_000,
                256 * GIB,
                tuple(GpuSlot(j, "A100", 80 * GIB) for j in range(n_gpus)),
            )
            for i in range(n_nodes)
        )
    )


def test_one_gpu_two_shares_hand_checked() -> None:
    jobs = [job("a", milli=600), job("b", milli=600)]
    run = run_fill(fleet(1, 1), jobs, "best-fit", seed=1, ratio=1.2)
    # 1200 milli requested = 120% of one GPU: the list is already at target, nothing added
    assert run.jobs == 2 and run.placed == 1
    assert run.arrived_pct.tolist() == [60.0, 120.0]
    assert run.alloc_pct.tolist() == [60.0, 60.0]
    # bins without a job of their own borrow from their neighbours; 100 is too far from both
    assert {b: run.curve[b] for b in (59, 60, 61, 119, 120)} == dict.fromkeys(
        (59, 60, 61, 119, 120), 60.0
    )
    assert 100 not in run.curve and max(run.curve) == 120


def test_tuning_resamples_up_to_the_ratio_or_trims_down() -> None:
    jobs = [job(f"j{i}", gpus=g) for i, g in enumerate([1, 2, 1, 4, 1])]  # 9 GPUs requested
    up = tuned_requests(jobs, capacity_milli=10_000, seed=3, ratio=1.3)
    total = sum(r.total_gpu_milli for r in up)
    assert 9_000 < total <= 13_000 and len(up) > len(jobs)
    assert sorted(r.gpu_count for r in up[:5]) == [1, 1, 1, 2, 4]  # originals first, shuffled
    down = tuned_requests(jobs, capacity_milli=4_000, seed=3, ratio=1.3)
    assert sum(r.total_gpu_milli for r in down) <= 5_200
    assert tuned_requests(jobs, 10_000, seed=3) == tuned_requests(jobs, 10_000, seed=3)
    assert tuned_requests(jobs, 10_000, seed=3) != tuned_requests(jobs, 10_000, seed=4)


def test_discrete_curve_averages_each_integer_bin() -> None:
    arrived = np.array([0.4, 0.6, 1.4, 3.0])
    alloc = np.array([0.4, 0.5, 1.0, 2.0])
    # bin 2 is empty (1.4 rounds to 1): it takes the mean of bins 1-3
    assert discrete_curve(arrived, alloc) == {0: 0.4, 1: 0.75, 2: 1.17, 3: 2.0}


def test_small_fill_run_is_deterministic_and_consistent() -> None:
    jobs = [job(f"s{i}", milli=m) for i, m in enumerate([250, 500, 750, 300])] + [
        job("w1"),
        job("w2", gpus=2),
        job("w4", gpus=4, cpu=16_000),
        job("cpu", gpus=0, milli=1000, cpu=8_000),
    ]
    for policy in ("random-fit", "best-fit", "fgd", "fleetdeck"):
        a = run_fill(fleet(6, 4), jobs, policy, seed=5)
        b = run_fill(fleet(6, 4), jobs, policy, seed=5)
        assert a.curve == b.curve and a.placed == b.placed
        assert np.all(np.diff(a.arrived_pct) >= 0) and np.all(np.diff(a.alloc_pct) >= 0)
        assert np.all(a.alloc_pct <= a.arrived_pct + 1e-9)
        assert a.arrived_pct[-1] <= 130.0 + 1e-9
        assert a.unallocated_pct_at_100 == pytest.approx(100 - a.curve[100])
        assert 0 <= a.frag_rate_pct <= 100


def traces_or_skip() -> Path:
    if (TRACES / "openb_pod_list_default.csv").is_file():
        return TRACES
    if os.environ.get("CI") == "true":
        pytest.fail(f"trace files missing under {TRACES}")
    pytest.skip(f"trace files not found under {TRACES}")


def test_real_trace_baselines_match_the_published_figures() -> None:
    t = traces_or_skip()
    snap = FleetSnapshot(nodes=tuple(load_alibaba_nodes(t / "openb_node_list_gpu_node.csv")))
    jobs = load_jobs(t / "openb_pod_list_default.csv")
    assert len(jobs) == 8152 and sum(len(n.gpus) for n in snap.nodes) == 6212
    # one seed of the paper's 10; the published means are random 13.70, best-fit 7.14
    assert abs(run_fill(snap, jobs, "random-fit", 42).unallocated_pct_at_100 - 13.70) < 1.0
    assert abs(run_fill(snap, jobs, "best-fit", 42).unallocated_pct_at_100 - 7.14) < 1.0


def test_real_trace_reduced_fleet_fleetdeck_beats_fgd_beats_best_fit() -> None:
    t = traces_or_skip()
    nodes = load_alibaba_nodes(t / "openb_node_list_gpu_node.csv")
    snap = FleetSnapshot(nodes=tuple(nodes[::4]))  # a quarter of the fleet: ~2,700 jobs
    jobs = load_jobs(t / "openb_pod_list_default.csv")
    u = {
        p: run_fill(snap, jobs, p, 42).unallocated_pct_at_100
        for p in ("best-fit", "fgd", "fleetdeck")
    }
    assert u["fleetdeck"] < u["fgd"] < u["best-fit"]
