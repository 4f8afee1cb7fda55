"""What-if planning: parsing changes, changing a fleet, and the replayed difference."""

from __future__ import annotations

import pytest

from collectors.errors import InputError
from scheduler.models import GpuSlot, NodeCapacity, ResourceRequest
from scheduler.sim.traces import TraceJob
from scheduler.sim.whatif import Change, apply_change, compare, parse_change

A100 = "NVIDIA A100-SXM4-80GB"


def gpu_node(name: str, n: int, model: str = A100) -> NodeCapacity:
    return NodeCapacity(name=name, pool="train", cpu_milli=64000, mem_bytes=512 << 30,
                        gpus=tuple(GpuSlot(i, model, 80 << 30) for i in range(n)))


def test_parse_change() -> None:
    assert parse_change("+16 A100") == [Change(16, "A100")]
    assert parse_change("-8 T4, +4 H100") == [Change(-8, "T4"), Change(4, "H100")]
    for bad in ("16 A100", "+0 A100", "+x A100", ""):
        with pytest.raises(InputError, match="--what-if"):
            parse_change(bad)


def test_apply_change_adds_nodes_like_existing_ones_and_removes_gpus() -> None:
    fleet = [gpu_node("a", 8), gpu_node("t", 4, "Tesla T4")]
    grown = apply_change(fleet, [Change(16, "A100")])
    added = grown[2:]
    assert [len(n.gpus) for n in added] == [8, 8]
    assert {g.model for n in added for g in n.gpus} == {A100}  # resolved to the fleet's name
    shrunk = apply_change(fleet, [Change(-3, "T4")])
    assert [len(n.gpus) for n in shrunk] == [8, 1]
    with pytest.raises(InputError, match="at most 4 GPUs of Tesla T4"):
        apply_change(fleet, [Change(-5, "T4")])


def test_more_gpus_shorten_queue_waits_and_burst() -> None:
    # 1 node x 2 GPUs; four 2-GPU jobs of an hour arrive together: three wait.
    jobs = [TraceJob(name=str(i), request=ResourceRequest(gpu_count=2, cpu_milli=1000),
                     submit_time_s=0.0, duration_s=3600.0) for i in range(4)]
    result = compare([gpu_node("a", 2)], jobs, [Change(6, "A100")], days=1.0,
                     policy="best-fit", wait_threshold_s=60.0, cloud_gpu_hour=2.0)
    base, changed = result.base, result.changed
    assert base.gpus == 2 and changed.gpus == 8
    # waits of 0, 1, 2, 3 hours -> mean 1.5 h; with 8 GPUs nobody waits
    assert base.summary.mean_queue_delay_s == pytest.approx(5400.0)
    assert changed.summary.mean_queue_delay_s == pytest.approx(0.0)
    # three jobs waited past the threshold: 3 x 2 GPU-hours would have burst
    assert base.burst_gpu_h == pytest.approx(6.0) and base.burst_cost == pytest.approx(12.0)
    assert changed.burst_cost == 0.0
    out = result.to_json()
    assert out["what_if"] == "+6 A100" and out["jobs"] == 4
