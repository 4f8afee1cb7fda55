"""A Slurm pool as one node of the plan: its capacity from the controller's view, fleetdeck's
Slurm jobs on it by GPU count, and a reclaim that picks a Slurm job as the victim."""

from __future__ import annotations

from collectors.sources.slurm import SlurmJobSample, SlurmNodeSample
from scheduler.fit import make_policy
from scheduler.models import MILLI_PER_GPU, Assignment, RunningAllocation
from scheduler.placement import PreemptKind, plan
from scheduler.runner import snapshot
from scheduler.slurm_pool import node_name, on_pools, pool_capacity
from tests.unit.test_placement import NOW
from tests.unit.test_preemption import BOOK, RULES, owner_task


def slurm_node(name: str, gpus: int, *, state: str = "IDLE",
               gres: str | None = None) -> SlurmNodeSample:
    return SlurmNodeSample(ts=NOW, pool="hpc", node=name, state=state, partitions=("gpu",),
                           cpus=16, cpus_alloc=0, mem_bytes=2**36, mem_alloc_bytes=0,
                           gpus=gpus, gpus_alloc=0, gres=gres or f"gpu:{gpus}")


def slurm_job(slurm_id: str, gpus: int, *, job_id: int | None = None,
              state: str = "RUNNING") -> SlurmJobSample:
    return SlurmJobSample(ts=NOW, pool="hpc", slurm_id=slurm_id, name="x", user="u",
                          account=None, partition="gpu", state=state, nodes="c1", gpus=gpus,
                          cpus=2, submitted_at=NOW - 60, started_at=NOW - 30, job_id=job_id)


def on_login(job_id: str, team: str = "borrowers") -> RunningAllocation:
    """A fleetdeck Slurm job as `allocations` sees it: on the login node, no GPU indices."""
    return RunningAllocation(job_id, "bo", "", team, Assignment("login", (), 0, 1000, 0),
                             NOW - 3600.0)


def test_capacity_sums_usable_nodes_and_takes_foreign_jobs() -> None:
    nodes = [slurm_node("c1", 4, gres="gpu:h100:4(S:0)"), slurm_node("c2", 4, gres="gpu:h100:4"),
             slurm_node("c3", 8, state="DOWN+DRAIN")]
    jobs = [slurm_job("1", 3), slurm_job("2", 2, job_id=7),  # ours: counted from the journal
            slurm_job("3", 1, state="PENDING")]
    cap = pool_capacity("hpc", nodes, jobs)
    assert cap is not None
    assert (cap.name, cap.pool, len(cap.gpus)) == (node_name("hpc"), "hpc", 8)
    assert {g.model for g in cap.gpus} == {"h100"}
    assert [g.alloc_milli for g in cap.gpus] == [MILLI_PER_GPU] * 3 + [0] * 5
    assert (cap.cpu_milli, cap.cpu_alloc_milli) == (32_000, 2_000)
    assert pool_capacity("hpc", [slurm_node("c3", 8, state="DRAINED")], []) is None
    # a partition the node is not in
    assert pool_capacity("hpc", nodes[:1], [], partition="debug") is None


def test_fleetdeck_slurm_jobs_hold_gpus_after_the_taken_ones() -> None:
    cap = pool_capacity("hpc", [slurm_node("c1", 4)], [slurm_job("1", 1)])
    assert cap is not None
    allocs = on_pools([on_login("1"), on_login("2"), on_login("3")],
                      {"1": ("hpc", 2), "3": ("other", 1)}, {"hpc": cap})
    assert allocs[0].assignment.node == node_name("hpc")
    assert (allocs[0].assignment.gpu_indices, allocs[0].milli) == ((1, 2), 2 * MILLI_PER_GPU)
    assert allocs[1].assignment.node == "login" and allocs[2].assignment.node == "login"


def test_a_guaranteed_job_reclaims_a_gpu_from_slurm_jobs_over_their_guarantee() -> None:
    cap = pool_capacity("hpc", [slurm_node("c1", 2)], [])
    assert cap is not None
    allocs = on_pools([on_login("11"), on_login("12")],
                      {"11": ("hpc", 1), "12": ("hpc", 1)}, {"hpc": cap})
    task = owner_task()
    snap = snapshot([cap], allocs, NOW)
    result = plan(snap, [task], policy=make_policy("first-fit"), quotas=BOOK, now=NOW,
                  preemption=RULES)
    assert result.assignments == []
    [p] = result.preemptions
    assert (p.beneficiary_id, p.node, p.kind) == ("a1", node_name("hpc"), PreemptKind.RECLAIM)
    assert p.victim_id in {"11", "12"}
    # with a free GPU in the pool the job simply starts there
    result = plan(snapshot([cap], allocs[:1], NOW), [task], policy=make_policy("first-fit"),
                  quotas=BOOK, now=NOW, preemption=RULES)
    assert [(tid, a.node) for tid, a in result.assignments] == [("a1", node_name("hpc"))]
    assert result.preemptions == []
