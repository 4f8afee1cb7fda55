"""Placement cycle speed: 1,000 nodes x 8 GPUs, 10,000 queued tasks.

Mixed requests: whole 1/2/4/8 GPUs and fractional 0.25/0.5, half pinned to a GPU model, most
with a max runtime (so backfill and reservations are exercised), project quotas. Two fleets:
empty, and about half full with running jobs. Prints per policy: cycle time (wall min/median,
and process CPU time, which a busy shared machine inflates less), tasks/s and placements/s from
the CPU time, placed/pending, and the share of wall time spent in `policy.select`, cold and
warm (a cold select also scores the node states it meets first). Each cycle starts with a new
policy ("cold"); "warm" is the CPU median of cycles run by one policy kept across them (after
a first one), as the engine keeps its policy from cycle to cycle.

With `--preemption` the cycle also searches for victims: teams get guarantees (half the fleet
between them, lent when idle), running jobs get classes (priority -100 or 0, some younger than
the minimum runtime) and one queued task in ten a higher class (100).

    .venv/bin/python benchmarks/bench_placement.py [--repeat 5] [--policy fleetdeck first-fit]
        [--preemption]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Iterable
from dataclasses import replace

from scheduler.fit import FitPolicy, FleetState, WorkloadMix, make_policy
from scheduler.models import (
    Assignment,
    FleetSnapshot,
    GpuSlot,
    NodeCapacity,
    ResourceRequest,
    RunningAllocation,
)
from scheduler.placement import PreemptionRules, QueuedTask, plan
from scheduler.quota import Quota, QuotaBook

GIB = 1 << 30
MODELS = (
    ("A100", 80 * GIB, 0.4),
    ("H100", 80 * GIB, 0.3),
    ("L40S", 48 * GIB, 0.2),
    ("V100", 32 * GIB, 0.1),
)
SHAPES = (
    (250, 1, 0.15),
    (500, 1, 0.15),
    (1000, 1, 0.30),
    (1000, 2, 0.15),
    (1000, 4, 0.15),
    (1000, 8, 0.10),
)  # (gpu_milli, gpu_count, weight)
NOW = 1_000_000.0


def build_nodes(n_nodes: int, rng: random.Random) -> list[NodeCapacity]:
    names = [m for m, _, _ in MODELS]
    weights = [w for _, _, w in MODELS]
    mem = {m: b for m, b, _ in MODELS}
    nodes = []
    for i in range(n_nodes):
        model = rng.choices(names, weights)[0]
        gpus = tuple(GpuSlot(j, model, mem[model]) for j in range(8))
        nodes.append(
            NodeCapacity(f"gpu{i:04d}", "onprem", 128_000, 1024 * GIB, gpus, {"rack": f"r{i % 20}"})
        )
    return nodes


def make_requests(rng: random.Random) -> list[ResourceRequest]:
    """The distinct request shapes tasks draw from (tasks of one shape share the object)."""
    out = []
    for milli, count, _ in SHAPES:
        for model in (None, "A100", "H100", "L40S"):
            cpu = max(1000, 8000 * count * milli // 1000)
            out.append(
                ResourceRequest(
                    cpu_milli=cpu,
                    mem_bytes=32 * GIB * count,
                    gpu_count=count,
                    gpu_milli=milli,
                    gpu_models=frozenset([model]) if model else frozenset(),
                )
            )
    return out


def pick_request(reqs: list[ResourceRequest], rng: random.Random) -> ResourceRequest:
    shape = rng.choices(range(len(SHAPES)), [w for _, _, w in SHAPES])[0]
    model = 0 if rng.random() < 0.5 else rng.randrange(1, 4)
    return reqs[shape * 4 + model]


def build_queue(n: int, reqs: list[ResourceRequest], rng: random.Random,
                classes: bool = False) -> list[QueuedTask]:
    queue = []
    for i in range(n):
        runtime = rng.choice((600.0, 1800.0, 3600.0, 4 * 3600.0, 24 * 3600.0, None))
        queue.append(
            QueuedTask(
                id=str(i),
                request=pick_request(reqs, rng),
                user=f"u{rng.randrange(50)}",
                project=f"p{rng.randrange(20)}",
                team=f"t{rng.randrange(5)}",
                priority=10 if rng.random() < 0.05 else 0,
                submitted_at=NOW - n + i,
                max_runtime_s=runtime,
                class_priority=100 if classes and rng.random() < 0.1 else 0,
            )
        )
    return queue


def preload(
    nodes: list[NodeCapacity], reqs: list[ResourceRequest], fill: float, rng: random.Random,
    classes: bool = False,
) -> FleetSnapshot:
    """A snapshot with about `fill` of the GPUs held by running jobs (first-fit placed)."""
    snap = FleetSnapshot(tuple(nodes), (), NOW)
    if fill <= 0:
        return snap
    state = FleetState.from_snapshot(snap)
    policy = make_policy("random-fit", seed=1)
    target = fill * 8 * len(nodes)
    taken = 0.0
    running: list[RunningAllocation] = []
    while taken < target:
        req = pick_request(reqs, rng)
        a = policy.select(state, req)
        if a is None:
            continue
        state.apply(a)
        taken += req.gpu_count * req.gpu_milli / 1000
        started = NOW - rng.uniform(0, 3600)
        runtime = rng.choice((3600.0, 4 * 3600.0, 24 * 3600.0, None))
        running.append(
            RunningAllocation(
                str(len(running)),
                f"u{rng.randrange(50)}",
                f"p{rng.randrange(20)}",
                f"t{rng.randrange(5)}",
                a,
                started,
                runtime,
                class_priority=rng.choice((-100, 0)) if classes else 0,
            )
        )
    return FleetSnapshot(tuple(_with_alloc(nodes, running)), tuple(running), NOW)


def _with_alloc(nodes: list[NodeCapacity], running: list[RunningAllocation]) -> list[NodeCapacity]:
    by_node: dict[str, list[Assignment]] = {}
    for r in running:
        by_node.setdefault(r.assignment.node, []).append(r.assignment)
    out = []
    for nd in nodes:
        held = by_node.get(nd.name, [])
        milli = {g.index: 0 for g in nd.gpus}
        for a in held:
            for idx in a.gpu_indices:
                milli[idx] += a.gpu_milli
        gpus = tuple(replace(g, alloc_milli=milli[g.index]) for g in nd.gpus)
        out.append(
            replace(
                nd,
                gpus=gpus,
                cpu_alloc_milli=sum(a.cpu_milli for a in held),
                mem_alloc_bytes=sum(a.mem_bytes for a in held),
            )
        )
    return out


class TimedPolicy:
    """Wraps a policy to measure the wall time spent selecting (reading a CPU clock costs a
    system call, about 1 us, twice per select)."""

    def __init__(self, inner: FitPolicy) -> None:
        self.inner = inner
        self.name = inner.name
        self.spent_s = 0.0
        self.calls = 0

    def prepare(self, state: FleetState, requests: Iterable[ResourceRequest]) -> None:
        """Forwarded as `plan` calls it (fleetdeck scores the snapshot's states up front);
        counted as selection."""
        prepare = getattr(self.inner, "prepare", None)
        if prepare is None:
            return
        t0 = time.perf_counter()
        try:
            prepare(state, requests)
        finally:
            self.spent_s += time.perf_counter() - t0

    def select(self, state: FleetState, req: ResourceRequest) -> Assignment | None:
        t0 = time.perf_counter()
        try:
            return self.inner.select(state, req)
        finally:
            self.spent_s += time.perf_counter() - t0
            self.calls += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--policy", nargs="+", default=["fleetdeck", "best-fit", "first-fit"])
    ap.add_argument("--preemption", action="store_true",
                    help="guarantees, classes and preemption on (victim search in the cycle)")
    args = ap.parse_args()
    rules = PreemptionRules(grace_s=60.0, min_runtime_s=300.0) if args.preemption else None

    rng = random.Random(7)
    nodes = build_nodes(args.nodes, rng)
    reqs = make_requests(rng)
    queue = build_queue(args.tasks, reqs, rng, classes=args.preemption)
    teams = {f"t{i}": Quota.of_gpus(None, args.nodes * 8 / 10) for i in range(5)}
    quotas = QuotaBook(projects={"*": Quota.of_gpus(400)}, borrowing=True,
                       teams=teams if args.preemption else {})
    workload = WorkloadMix.from_requests(t.request for t in queue)
    print(f"fleet: {args.nodes} nodes x 8 GPUs; queue: {args.tasks} tasks; repeat {args.repeat}"
          + ("; preemption on" if rules else ""))
    for fill in (0.0, 0.5):
        snap = preload(nodes, reqs, fill, random.Random(11), classes=args.preemption)
        print(f"\n-- fleet {fill:.0%} full ({len(snap.running)} running jobs)")
        for name in args.policy:
            walls, cpus, select_cold, select_warm = [], [], [], []
            calls = 0
            result = None
            for r in range(args.repeat):
                policy = TimedPolicy(make_policy(name, seed=r, workload=workload))
                c0, t0 = time.process_time(), time.perf_counter()
                result = plan(snap, queue, policy=policy, quotas=quotas, now=NOW,
                              preemption=rules)
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
                select_cold.append(policy.spent_s / walls[-1])
                calls = policy.calls
            assert result is not None
            cpu = statistics.median(cpus)
            kept = TimedPolicy(make_policy(name, seed=0, workload=workload))
            warm = []
            for _ in range(args.repeat + 1):
                kept.spent_s = 0.0
                c0, t0 = time.process_time(), time.perf_counter()
                plan(snap, queue, policy=kept, quotas=quotas, now=NOW, preemption=rules)
                warm.append(time.process_time() - c0)
                select_warm.append(kept.spent_s / (time.perf_counter() - t0))
            placed = len(result.assignments)
            print(
                f"{name:>10}: cycle wall min {min(walls) * 1e3:6.0f} ms, "
                f"median {statistics.median(walls) * 1e3:6.0f} ms, CPU median {cpu * 1e3:6.0f} ms"
                f" (warm {statistics.median(warm[1:]) * 1e3:4.0f} ms)"
                f" | {len(queue) / cpu:7,.0f} tasks/s, {placed / cpu:7,.0f} placements/s (CPU)"
                f" | placed {placed}, pending {len(result.pending)}, "
                f"backfilled {len(result.backfilled)}, reservations {len(result.reservations)}"
                + (f", preemptions {len(result.preemptions)}" if rules else "")
                + f" | select {statistics.median(select_cold):4.0%} of cycle,"
                f" warm {statistics.median(select_warm[1:]):4.0%} ({calls} calls)"
            )


if __name__ == "__main__":
    main()
