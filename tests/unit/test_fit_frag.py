"""Fragmentation values from the paper's definitions, on small hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.fit import FGD, Fleetdeck, FleetState, TaskShape, WorkloadMix, make_policy
from scheduler.fit.fragmentation import FragModel
from scheduler.models import FleetSnapshot, GpuSlot, NodeCapacity, ResourceRequest

GIB = 1 << 30

SHARE_300 = TaskShape(cpu_milli=2000, gpu_count=1, gpu_milli=300)
WHOLE_1 = TaskShape(cpu_milli=4000, gpu_count=1, gpu_milli=1000)
CPU_ONLY = TaskShape(cpu_milli=1000, gpu_count=0, gpu_milli=0)


def fleet(*nodes: tuple[int, tuple[int, ...]]) -> FleetState:
    """Nodes given as (cpu_milli, allocated milli per GPU)."""
    out = []
    for i, (cpu, alloc) in enumerate(nodes):
        gpus = tuple(GpuSlot(j, "A100", 80 * GIB, alloc_milli=m) for j, m in enumerate(alloc))
        out.append(NodeCapacity(f"n{i}", "p", cpu, 512 * GIB, gpus))
    return FleetState.from_snapshot(FleetSnapshot(nodes=tuple(out)))


def test_node_fragmentation_matches_hand_computation() -> None:
    # free GPU milli [1000, 500, 200, 0]; mix: 50% 0.3-GPU shares, 30% 1-GPU, 20% CPU-only
    mix = WorkloadMix((SHARE_300, WHOLE_1, CPU_ONLY), (0.5, 0.3, 0.2))
    st = fleet((10_000, (0, 500, 800, 1000)), (3_000, (0, 500, 800, 1000)))
    model = FragModel(st.static, mix)
    frag = model.node_frag(st)
    # share: fits, GPUs below 300 free hold 200 (+0); 1-GPU: fits, GPUs below 1000 hold 700;
    # CPU-only tasks use no GPU: all 1700 free milli are fragments.
    assert frag[0] == pytest.approx(0.5 * 200 + 0.3 * 700 + 0.2 * 1700)  # 650
    # with 3 cores left the 1-GPU task (4 cores) cannot run: all 1700 count for it
    assert frag[1] == pytest.approx(0.5 * 200 + 0.3 * 1700 + 0.2 * 1700)  # 950


def test_fill_fragmentation_matches_hand_computation() -> None:
    mix = WorkloadMix((SHARE_300, WHOLE_1, CPU_ONLY), (0.5, 0.3, 0.2))
    st = fleet((10_000, (0, 500, 800, 1000)))
    model = FragModel(st.static, mix)
    rows = np.arange(1)
    both = model.frag(rows, st.cpu_free, st.mem_free, st.gpu_free, fill_weight=1.0)
    # fill: shares fit 3 + 1 + 0 = 4 times (CPU allows 5): 1700 - 1200 = 500 left over;
    # 1-GPU tasks fit once: 700 left over; CPU-only: 1700.
    fill = 0.5 * 500 + 0.3 * 700 + 0.2 * 1700
    assert both[0] == pytest.approx(650 + fill)


def test_model_constraints_count_unusable_gpus_as_fragments() -> None:
    t4_only = TaskShape(cpu_milli=0, gpu_count=1, gpu_milli=500, gpu_models=frozenset({"T4"}))
    st = fleet((8_000, (0, 0)))
    frag = FragModel(st.static, WorkloadMix((t4_only,), (1.0,))).node_frag(st)
    assert frag[0] == 2000  # an A100 node is no use to a T4-only task


def test_fgd_descends_the_fragmentation_gradient() -> None:
    # node 0: two free GPUs; node 1: one GPU with 300 left, one free GPU
    mix = WorkloadMix((SHARE_300, WHOLE_1), (0.5, 0.5))
    st = fleet((32_000, (0, 0)), (32_000, (700, 0)))
    req = ResourceRequest(cpu_milli=2000, gpu_count=1, gpu_milli=300)
    fgd = FGD(0, mix)
    # dF: node 0 +350 (700 left on a GPU a 1-GPU task cannot use); node 1 GPU 0: -150 (the
    # 300-milli fragment is filled); node 1 GPU 1: +350.
    scores = fgd._arrays(st, req)["score"]
    assert scores.tolist() == [41.0, 53.0]  # int(100 * sigmoid(-dF / 1000))
    a = fgd.select(st, req)
    assert a is not None and (a.node, a.gpu_indices) == ("n1", (0,))


def test_fleetdeck_sees_gpus_that_cpu_exhaustion_would_strand() -> None:
    # Both nodes have 8 free GPUs; n0 has 20 cores, n1 96. The workload is 1-GPU tasks with
    # 10 cores each. A CPU-only task on n0 leaves room for one 1-GPU task, so FGD (one task
    # ahead) sees no difference; the fill term sees 7 stranded GPUs on n0.
    task = TaskShape(cpu_milli=10_000, gpu_count=1, gpu_milli=1000)
    mix = WorkloadMix((task,), (1.0,))
    cpu_task = ResourceRequest(cpu_milli=10_000, gpu_count=0)
    st = fleet((20_000, (0,) * 8), (96_000, (0,) * 8))
    assert FGD(0, mix)._arrays(st, cpu_task)["score"].tolist() == [50.0, 50.0]
    a = Fleetdeck(0, mix).select(st, cpu_task)
    assert a is not None and a.node == "n1" and a.gpu_indices == ()


def test_workload_mix_from_requests() -> None:
    reqs = (
        [ResourceRequest(cpu_milli=1000, gpu_count=1, gpu_milli=250)] * 6
        + [
            ResourceRequest(cpu_milli=8000, gpu_count=2),
        ]
        * 3
        + [ResourceRequest(cpu_milli=4000)]
    )
    mix = WorkloadMix.from_requests(reqs)
    assert mix.shapes[0] == TaskShape(1000, 1, 250) and mix.weights[0] == pytest.approx(0.6)
    assert mix.weights == pytest.approx((0.6, 0.3, 0.1))
    assert len(WorkloadMix.from_requests(reqs, include_cpu_only=False)) == 2
    top = WorkloadMix.from_requests(reqs, coverage=0.5)
    assert top.shapes == (TaskShape(1000, 1, 250),) and top.weights == (1.0,)
    assert len(WorkloadMix.from_requests([])) == 0


def test_fleetdeck_learns_the_mix_without_history() -> None:
    st = fleet((32_000, (0, 0, 0, 0)), (32_000, (600, 0, 0, 0)))
    p = make_policy("fleetdeck")
    req = ResourceRequest(cpu_milli=1000, gpu_count=1, gpu_milli=400)
    a = p.select(st, req)
    assert a is not None and (a.node, a.gpu_indices) == ("n1", (0,))
