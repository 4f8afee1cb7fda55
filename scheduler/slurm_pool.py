"""A Slurm pool as one node of the plan, so that Slurm jobs count for quotas and can be
preempted (only with preemption on; otherwise Slurm jobs go straight to Slurm).

Slurm places its own jobs on its own nodes, and fleetdeck cannot choose which GPUs a job gets
(`--gres=gpu:N` asks for a count). What fleetdeck can know is how many GPUs the pool has and
who holds them: the pool's controller reports its nodes' GRES and its jobs (collectors'
`SlurmPoolView`). So the pool is modelled as one node, `slurm:<pool>`, whose GPUs are the sum
of its usable Slurm nodes' GPUs; GPUs held by Slurm jobs fleetdeck did not submit are taken;
fleetdeck's own Slurm jobs hold GPUs of it by count (numbered in job order: which Slurm GPU
is which is Slurm's business). The plan then places Slurm jobs on it (the job is then
submitted to Slurm), and a job under its guarantee may preempt Slurm jobs over theirs, exactly
as on any node.

Limit: a pool of several Slurm nodes is summed into one, so a multi-GPU job that fits the sum
may still pend in Slurm behind fragmentation, and a reclaim may free GPUs on a different Slurm
node than the one the job needs. Jobs that another fleetdeck engine submitted to the same
cluster are not seen as taken (fleetdeck's jobs are counted from the journal). With one Slurm
node per pool, used by one engine, the model is exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from collectors.health import SlurmPoolView
from collectors.sources.slurm import SlurmJobSample, SlurmNodeSample
from scheduler.journal import JobRow
from scheduler.models import MILLI_PER_GPU, Assignment, GpuSlot, NodeCapacity, RunningAllocation
from scheduler.placement import QueuedTask

PREFIX = "slurm:"
# Slurm node states (any `+`-joined part) whose resources cannot be given to a new job
_UNUSABLE = frozenset({"DOWN", "DRAIN", "DRAINED", "DRAINING", "FAIL", "FAILING",
                       "NOT_RESPONDING", "POWERED_DOWN", "POWERING_DOWN", "FUTURE", "UNKNOWN"})


def node_name(pool: str) -> str:
    """The plan's name for a Slurm pool: `slurm:<pool>`."""
    return PREFIX + pool


def usable(n: SlurmNodeSample, partition: str | None) -> bool:
    parts = {p.rstrip("*~#!%$@^-") for p in n.state.upper().split("+")}
    return not parts & _UNUSABLE and (partition is None or partition in n.partitions)


def pool_capacity(pool: str, nodes: Sequence[SlurmNodeSample], jobs: Sequence[SlurmJobSample],
                  *, partition: str | None = None) -> NodeCapacity | None:
    """The pool as one node (None when it has no usable node); GPUs and CPUs of running Slurm
    jobs that fleetdeck did not submit are taken."""
    up = [n for n in nodes if usable(n, partition)]
    if not up:
        return None
    gpus = sum(n.gpus or 0 for n in up)
    # Fleetdeck's own jobs count through the journal, not this view: an attempt being stopped
    # or one that just ended may still show here for an interval and must not count twice.
    # A foreign job's node list may be compressed ("gpu[01-04]"): every one is counted.
    foreign = [j for j in jobs if j.state == "RUNNING" and j.job_id is None]
    taken = min(gpus, sum(j.gpus or 0 for j in foreign))
    models = {_gres_model(n.gres) for n in up if n.gpus}
    model = models.pop() if len(models) == 1 else "unknown"
    slots = tuple(GpuSlot(index=i, model=model, mem_total_bytes=0,
                          alloc_milli=MILLI_PER_GPU if i < taken else 0) for i in range(gpus))
    return NodeCapacity(
        name=node_name(pool), pool=pool, gpus=slots,
        cpu_milli=sum(n.cpus or 0 for n in up) * 1000,
        mem_bytes=sum(n.mem_bytes or 0 for n in up),
        cpu_alloc_milli=sum(j.cpus or 0 for j in foreign) * 1000)


def _gres_model(gres: str | None) -> str:
    """"gpu:a100:4(S:0)" -> "a100"; a count-only "gpu:4" -> "unknown"."""
    for item in (gres or "").split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] == "gpu" and len(parts) == 3:
            return parts[1]
    return "unknown"


def on_pools(allocs: Sequence[RunningAllocation], held: Mapping[str, tuple[str, int]],
             pools: Mapping[str, NodeCapacity]) -> list[RunningAllocation]:
    """Fleetdeck's Slurm jobs (`held`: job id -> (pool, GPU count)) moved onto their pool's
    node, each holding its GPU count there (the next indices after the taken ones, in order)."""
    used = {pool: sum(1 for g in cap.gpus if g.alloc_milli) for pool, cap in pools.items()}
    out = []
    for r in allocs:
        pool, count = held.get(r.job_id, ("", 0))
        cap = pools.get(pool)
        if cap is None:
            out.append(r)
            continue
        first = used[pool]
        used[pool] = first + count
        out.append(replace(r, assignment=Assignment(
            node=cap.name, gpu_indices=tuple(range(first, first + count)),
            gpu_milli=MILLI_PER_GPU if count else 0, cpu_milli=r.assignment.cpu_milli,
            mem_bytes=r.assignment.mem_bytes)))
    return out


def capacities(views: Mapping[str, SlurmPoolView],
               partitions: Mapping[str, str | None]) -> dict[str, NodeCapacity]:
    """Each Slurm pool read without error, as one node (pool name -> node)."""
    out = {}
    for pool, v in views.items():
        if v.ts is None or v.error is not None:
            continue
        cap = pool_capacity(pool, v.nodes, v.jobs, partition=partitions.get(pool))
        if cap is not None:
            out[pool] = cap
    return out


def held_by_slurm(holding: Sequence[JobRow]) -> dict[str, tuple[str, int]]:
    """Job id -> (pool, GPU count) of fleetdeck's Slurm jobs holding resources."""
    return {str(r.id): (r.pool or "", r.gpu_count) for r in holding if r.executor == "slurm"}


def started(queue: Sequence[QueuedTask], assignments: Sequence[tuple[str, Assignment]],
            now: float) -> list[RunningAllocation]:
    """A plan's starts as running jobs (for a second plan in the same cycle to count them)."""
    by_id = {t.id: t for t in queue}
    return [RunningAllocation(tid, t.user, t.project, t.team, a, now, t.max_runtime_s,
                              t.class_priority, preemptible=False)
            for tid, a in assignments if (t := by_id[tid]) is not None]
