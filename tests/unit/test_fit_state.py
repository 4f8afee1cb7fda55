"""FleetState: allocation bookkeeping, eligibility and the queries placement relies on."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.fit import FleetState
from scheduler.models import (
    Assignment,
    FleetSnapshot,
    GpuSlot,
    NodeCapacity,
    ResourceRequest,
    RunningAllocation,
)

GIB = 1 << 30


def node(
    name: str,
    n_gpu: int = 4,
    model: str = "A100",
    *,
    cpu: int = 32_000,
    mem: int = 256 * GIB,
    pool: str = "p",
    labels: dict[str, str] | None = None,
    alloc: tuple[int, ...] = (),
    unhealthy: tuple[int, ...] = (),
    gpu_mem: int = 80 * GIB,
    schedulable: bool = True,
) -> NodeCapacity:
    gpus = tuple(
        GpuSlot(
            index=j,
            model=model,
            mem_total_bytes=gpu_mem,
            alloc_milli=alloc[j] if j < len(alloc) else 0,
            healthy=j not in unhealthy,
        )
        for j in range(n_gpu)
    )
    return NodeCapacity(
        name=name,
        pool=pool,
        cpu_milli=cpu,
        mem_bytes=mem,
        gpus=gpus,
        labels=labels or {},
        schedulable=schedulable,
    )


def state(*nodes: NodeCapacity) -> FleetState:
    return FleetState.from_snapshot(FleetSnapshot(nodes=nodes))


def test_apply_release_roundtrip_restores_free_resources() -> None:
    st = state(node("a"), node("b"))
    a = Assignment(node="b", gpu_indices=(1, 2), gpu_milli=1000, cpu_milli=4000, mem_bytes=GIB)
    st.apply(a)
    assert st.gpu_free[1].tolist() == [1000, 0, 0, 1000]
    assert st.cpu_free[1] == 28_000 and st.mem_free[1] == 255 * GIB
    st.release(a)
    assert st.gpu_free[1].tolist() == [1000] * 4
    assert st.cpu_free[1] == 32_000 and st.mem_free[1] == 256 * GIB


def test_apply_refuses_to_over_commit_a_gpu_cpu_or_memory() -> None:
    st = state(node("a", 1))
    st.apply(Assignment(node="a", gpu_indices=(0,), gpu_milli=700, cpu_milli=1000))
    with pytest.raises(ValueError, match="over-committed"):
        st.apply(Assignment(node="a", gpu_indices=(0,), gpu_milli=400, cpu_milli=1000))
    with pytest.raises(ValueError, match="CPU or memory"):
        st.apply(Assignment(node="a", cpu_milli=40_000))
    with pytest.raises(ValueError, match="unknown node"):
        st.apply(Assignment(node="zz"))
    with pytest.raises(ValueError, match="no GPU 7"):
        st.apply(Assignment(node="a", gpu_indices=(7,), gpu_milli=100))
    assert st.gpu_free[0, 0] == 300  # the failed calls changed nothing


def test_copy_is_independent() -> None:
    st = state(node("a"))
    cp = st.copy()
    cp.apply(Assignment(node="a", gpu_indices=(0,), gpu_milli=1000, cpu_milli=1000))
    assert st.gpu_free[0, 0] == 1000 and cp.gpu_free[0, 0] == 0
    assert st.cpu_free[0] == 32_000


def test_snapshot_allocation_and_health_are_respected() -> None:
    st = state(node("a", 4, alloc=(1000, 250), unhealthy=(3,)))
    assert st.gpu_free[0].tolist() == [0, 750, 1000, 0]
    whole = ResourceRequest(cpu_milli=0, gpu_count=1)
    assert st.largest_free_block(whole) == (1, "a")
    share = ResourceRequest(cpu_milli=0, gpu_count=1, gpu_milli=500)
    assert st.largest_free_block(share) == (1000, "a")
    # the unhealthy GPU counts for neither now nor ever
    assert not st.can_ever_fit(ResourceRequest(cpu_milli=0, gpu_count=4))
    assert st.can_ever_fit(ResourceRequest(cpu_milli=0, gpu_count=3))


def test_running_allocations_count_gpu_shapes_per_node() -> None:
    a = Assignment(node="a", gpu_indices=(0,), gpu_milli=500)
    snap = FleetSnapshot(
        nodes=(node("a", 2, alloc=(500,)),),
        running=(RunningAllocation("j1", "u", "p", "t", a, started_at=0.0),),
    )
    st = FleetState.from_snapshot(snap)
    assert st.affinity[0, 0] == 1  # one shared-GPU task


def test_can_ever_fit_ignores_allocation_but_honors_constraints() -> None:
    st = state(
        node("a", 8, "A100", alloc=(1000,) * 8),
        node("b", 2, "T4", pool="small", labels={"zone": "x"}, gpu_mem=16 * GIB),
    )
    assert st.can_ever_fit(ResourceRequest(gpu_count=8))
    assert not st.can_ever_fit(ResourceRequest(gpu_count=9))
    assert not st.can_ever_fit(ResourceRequest(gpu_count=8, gpu_models=frozenset({"T4"})))
    assert st.can_ever_fit(ResourceRequest(gpu_count=2, pool="small", labels={"zone": "x"}))
    assert not st.can_ever_fit(ResourceRequest(gpu_count=1, pool="small", labels={"zone": "y"}))
    assert not st.can_ever_fit(
        ResourceRequest(gpu_count=1, min_gpu_mem_bytes=40 * GIB, pool="small")
    )
    assert not st.can_ever_fit(ResourceRequest(cpu_milli=64_000))
    assert st.can_ever_fit(ResourceRequest(node="b", gpu_count=1))


def test_largest_free_block_per_request_kind() -> None:
    st = state(node("a", 4, alloc=(1000, 1000, 600)), node("b", 4, alloc=(1000, 100)))
    assert st.largest_free_block(ResourceRequest(gpu_count=2)) == (2, "b")
    assert st.largest_free_block(ResourceRequest(gpu_count=1, gpu_milli=300)) == (1000, "a")
    assert st.largest_free_block(ResourceRequest(gpu_count=1, node="a")) == (1, "a")
    full = state(node("a", 1, alloc=(1000,)))
    assert full.largest_free_block(ResourceRequest(gpu_count=1)) == (0, None)


def test_unschedulable_nodes_are_never_eligible() -> None:
    st = state(node("a", schedulable=False), node("b", 1))
    assert st.largest_free_block(ResourceRequest(gpu_count=1)) == (1, "b")
    assert not st.can_ever_fit(ResourceRequest(gpu_count=2))


def test_node_versions_track_changes() -> None:
    st = state(node("a"), node("b"))
    a = Assignment(node="b", gpu_indices=(0,), gpu_milli=1000)
    st.apply(a)
    st.release(a)
    assert st.node_version.tolist() == [0, 2]
    assert np.array_equal(st.feasible(ResourceRequest(gpu_count=4)), [True, True])


def test_state_ids_key_memory_up_to_the_cap() -> None:
    """Nodes alike but for free memory share a state id where both hold at least the cap
    (`FleetStatic.key_mem_cap`), and not below it or without a cap."""
    s = state(node("a", mem=256 * GIB), node("b", mem=512 * GIB), node("c", mem=32 * GIB))
    a, b, c = s.all_state_ids().tolist()
    assert len({a, b, c}) == 3  # exact memory by default
    s.static.set_key_mem_cap(64 * GIB)
    a, b, c = s.all_state_ids().tolist()
    assert a == b != c
    s.apply(Assignment("b", (), 0, 0, 480 * GIB))  # 32 GiB left: below the cap now
    assert s.all_state_ids().tolist()[1] == c
