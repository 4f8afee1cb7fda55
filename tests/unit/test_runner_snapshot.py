"""The runner's fleet snapshot: allocations applied, jobs on unsampled nodes still counted."""

from __future__ import annotations

from scheduler.fit import make_policy
from scheduler.models import Assignment, GpuSlot, NodeCapacity, ResourceRequest, RunningAllocation
from scheduler.placement import QueuedTask, plan
from scheduler.runner import snapshot


def node(name: str, gpus: int) -> NodeCapacity:
    return NodeCapacity(name=name, pool="p", cpu_milli=8000, mem_bytes=64 << 30,
                        gpus=tuple(GpuSlot(i, "A100", 80 << 30) for i in range(gpus)))


def running(job: str, node: str, gpus: tuple[int, ...], milli: int = 1000) -> RunningAllocation:
    return RunningAllocation(job_id=job, user="u", project="p", team="t", started_at=0.0,
                             assignment=Assignment(node=node, gpu_indices=gpus, gpu_milli=milli,
                                                   cpu_milli=1000, mem_bytes=1 << 30))


def test_allocations_are_applied() -> None:
    snap = snapshot([node("a", 2)], [running("1", "a", (0,), 250), running("2", "a", (0,), 250)],
                    now=10.0)
    a = snap.node("a")
    assert a is not None
    assert [g.alloc_milli for g in a.gpus] == [500, 0]
    assert a.cpu_alloc_milli == 2000 and a.mem_alloc_bytes == 2 << 30


def test_jobs_on_nodes_without_telemetry_still_hold_capacity() -> None:
    snap = snapshot([node("a", 1)], [running("1", "gone", (0, 1))], now=0.0)
    ghost = snap.node("gone")
    assert ghost is not None and not ghost.schedulable
    assert [g.alloc_milli for g in ghost.gpus] == [1000, 1000]
    # placement works on it and never uses the ghost node
    result = plan(snap, [QueuedTask(id="q", request=ResourceRequest(gpu_count=1))],
                  policy=make_policy("best-fit"), now=0.0)
    assert [(t, a.node) for t, a in result.assignments] == [("q", "a")]
