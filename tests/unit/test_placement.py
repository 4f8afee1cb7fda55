"""Placement cycle scenarios: shares, constraints, order, backfill, quotas, reasons."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from scheduler.fit import FitPolicy, make_policy
from scheduler.jobspec import JobSpec, expand_array
from scheduler.models import (
    Assignment,
    FleetSnapshot,
    GpuSlot,
    NodeCapacity,
    ResourceRequest,
    RunningAllocation,
)
from scheduler.placement import PlacementPlan, QueuedTask, WaitKind, plan
from scheduler.quota import Quota, QuotaBook

GIB = 1 << 30
NOW = 1_000_000.0
HOUR = 3600.0


def node(
    name: str,
    n_gpus: int = 8,
    model: str = "A100",
    *,
    gpu_mem_gib: int = 80,
    pool: str = "default",
    cpus: int = 64,
    mem_gib: int = 512,
    labels: dict[str, str] | None = None,
) -> NodeCapacity:
    gpus = tuple(GpuSlot(j, model, gpu_mem_gib * GIB) for j in range(n_gpus))
    return NodeCapacity(name, pool, cpus * 1000, mem_gib * GIB, gpus, labels or {})


def with_running(
    nodes: Sequence[NodeCapacity], running: Iterable[RunningAllocation]
) -> FleetSnapshot:
    """A snapshot whose nodes carry the allocation of `running`."""
    running = tuple(running)
    out = []
    for nd in nodes:
        held = [r.assignment for r in running if r.assignment.node == nd.name]
        milli = {g.index: 0 for g in nd.gpus}
        for a in held:
            for idx in a.gpu_indices:
                milli[idx] += a.gpu_milli
        out.append(
            replace(
                nd,
                gpus=tuple(replace(g, alloc_milli=milli[g.index]) for g in nd.gpus),
                cpu_alloc_milli=sum(a.cpu_milli for a in held),
                mem_alloc_bytes=sum(a.mem_bytes for a in held),
            )
        )
    return FleetSnapshot(tuple(out), running, NOW)


def running(
    job_id: str,
    node_name: str,
    gpu_indices: tuple[int, ...],
    *,
    milli: int = 1000,
    ends_in_s: float | None = None,
    project: str = "p",
    user: str = "u",
    team: str = "t",
) -> RunningAllocation:
    a = Assignment(node_name, gpu_indices, milli, 1000, 0)
    return RunningAllocation(
        job_id, user, project, team, a, NOW - 60, (None if ends_in_s is None else ends_in_s + 60)
    )


def task(
    tid: str,
    gpus: float = 1,
    *,
    models: Iterable[str] = (),
    min_gpu_mem_gib: int = 0,
    priority: int = 0,
    submitted: float = 0.0,
    runtime_s: float | None = None,
    cpus: float = 1,
    mem_gib: int = 0,
    pool: str | None = None,
    node_name: str | None = None,
    labels: dict[str, str] | None = None,
    user: str = "u",
    project: str = "p",
    team: str = "t",
) -> QueuedTask:
    count, milli = (1, round(gpus * 1000)) if 0 < gpus < 1 else (int(gpus), 1000)
    req = ResourceRequest(
        cpu_milli=round(cpus * 1000),
        mem_bytes=mem_gib * GIB,
        gpu_count=count,
        gpu_milli=milli,
        gpu_models=frozenset(models),
        min_gpu_mem_bytes=min_gpu_mem_gib * GIB,
        pool=pool,
        node=node_name,
        labels=labels or {},
    )
    return QueuedTask(tid, req, user, project, team, priority, submitted, runtime_s)


def cycle(
    snap: FleetSnapshot | Sequence[NodeCapacity],
    queue: Sequence[QueuedTask],
    *,
    policy: FitPolicy | None = None,
    quotas: QuotaBook | None = None,
    backfill: bool = True,
) -> PlacementPlan:
    if not isinstance(snap, FleetSnapshot):
        snap = FleetSnapshot(tuple(snap), (), NOW)
    return plan(
        snap,
        queue,
        policy=policy or make_policy("first-fit"),
        quotas=quotas,
        now=NOW,
        backfill=backfill,
    )


def texts(p: PlacementPlan) -> dict[str, str]:
    return {tid: why.text for tid, why in p.pending.items()}


def placed(p: PlacementPlan) -> dict[str, Assignment]:
    return dict(p.assignments)


# ---- fractional and whole GPUs ------------------------------------------------------------


def test_four_quarter_jobs_share_one_gpu_and_a_fifth_waits() -> None:
    queue = [task(f"q{i}", 0.25, submitted=i, runtime_s=HOUR) for i in range(5)]
    p = cycle([node("solo", 1)], queue)
    got = placed(p)
    assert sorted(got) == ["q0", "q1", "q2", "q3"]
    assert {(a.node, a.gpu_indices, a.gpu_milli) for a in got.values()} == {("solo", (0,), 250)}
    assert p.explain("q0") == "starts now on node solo GPU 0 (0.25 of it)"
    assert texts(p) == {
        "q4": "waiting: needs 0.25 GPU, no eligible GPU has any share free; "
        "reserved on node solo, starts in ~1h"
    }
    assert p.reservations == {"q4": NOW + HOUR}


def test_shares_fill_a_partly_used_gpu_before_waiting_with_the_largest_share() -> None:
    snap = with_running([node("n1", 1)], [running("r", "n1", (0,), milli=600)])
    p = cycle(snap, [task("a", 0.25), task("b", 0.25)])
    assert list(placed(p)) == ["a"]
    assert p.pending["b"].text.startswith(
        "waiting: needs 0.25 GPU, largest free share is 0.15 GPU on node n1; no start estimate"
    )


def test_two_gpus_get_two_distinct_indices() -> None:
    p = cycle([node("n1", 4)], [task("t", 2)])
    a = placed(p)["t"]
    assert len(set(a.gpu_indices)) == 2 and a.gpu_milli == 1000


def test_whole_gpu_never_lands_on_a_shared_gpu() -> None:
    snap = with_running([node("n1", 2)], [running("r", "n1", (0,), milli=250)])
    p = cycle(snap, [task("w1", 1), task("w2", 1)])
    assert placed(p)["w1"].gpu_indices == (1,)
    assert p.pending["w2"].text.startswith("waiting: needs 1 GPU, no eligible GPU is free")


# ---- constraints -----------------------------------------------------------------------


def test_model_and_gpu_memory_constraints() -> None:
    nodes = [node("a100", 4, "A100"), node("l40", 4, "L40S", gpu_mem_gib=48)]
    p = cycle(nodes, [task("h", 1, models=["L40S"]), task("big", 1, min_gpu_mem_gib=60)])
    assert placed(p)["h"].node == "l40"
    assert placed(p)["big"].node == "a100"


def test_pool_node_and_label_constraints() -> None:
    nodes = [
        node("a1", 2, pool="a", labels={"zone": "x"}),
        node("b1", 2, pool="b", labels={"zone": "y"}),
        node("b2", 2, pool="b", labels={"zone": "x"}),
    ]
    queue = [
        task("pool", pool="b", submitted=1),
        task("node", node_name="b2", submitted=2),
        task("label", pool="b", labels={"zone": "x"}, submitted=3),
    ]
    got = placed(cycle(nodes, queue))
    assert got["pool"].node in ("b1", "b2")
    assert got["node"].node == "b2"
    assert got["label"].node == "b2"


def test_never_fits_reasons() -> None:
    nodes = [node("gpu01", 8, "A100", pool="p1"), node("gpu02", 8, "H100")]
    queue = [
        task("sixteen", 16, models=["A100"]),
        task("ghost", 1, node_name="gpu99"),
        task("fat", 8, models=["H100"], cpus=128),
        task("pool", 1, models=["H100"], pool="p1"),
    ]
    p = cycle(nodes, queue)
    assert texts(p) == {
        "sixteen": "never fits: no node has 16 GPUs of model A100",
        "ghost": "never fits: no node named gpu99",
        "fat": "never fits: no node with 8 GPUs of model H100 has 128 CPUs",
        "pool": "never fits: no node in pool p1 has 1 GPU of model H100",
    }
    assert not p.assignments and not p.reservations


def test_capacity_reason_names_the_largest_free_block() -> None:
    snap = with_running(
        [node("gpu01", 8), node("gpu02", 8), node("gpu03", 8)],
        [
            running("r1", "gpu01", tuple(range(8))),
            running("r2", "gpu02", tuple(range(7))),
            running("r3", "gpu03", tuple(range(6))),
        ],
    )
    p = cycle(snap, [task("j", 4, models=["A100"])])
    assert p.pending["j"].text == (
        "waiting: needs 4 x A100, largest free block is 2 on node gpu03; "
        "no start estimate (what it needs is held by jobs without a max runtime)"
    )


def test_cpu_and_memory_shortage_reason() -> None:
    snap = with_running([node("n1", 4, cpus=8)], [running("r", "n1", (0,))])
    p = cycle(snap, [task("t", 2, cpus=8, mem_gib=16)])
    assert p.pending["t"].text.startswith(
        "waiting: needs 2 GPUs with 8 CPUs and 16 GiB memory, "
        "nodes with 2 free GPUs lack CPU or memory"
    )


# ---- order -----------------------------------------------------------------------------


def test_priority_beats_submission_order() -> None:
    p = cycle(
        [node("n1", 1)], [task("early", submitted=1), task("urgent", priority=5, submitted=9)]
    )
    assert list(placed(p)) == ["urgent"]
    assert "early" in p.pending


def test_fifo_within_a_priority() -> None:
    p = cycle([node("n1", 1)], [task("second", submitted=2), task("first", submitted=1)])
    assert list(placed(p)) == ["first"]


# ---- backfill --------------------------------------------------------------------------


def backfill_fleet() -> FleetSnapshot:
    """gpu01: 4 GPUs, 2 held for another 2 hours; gpu02: 1 free GPU."""
    return with_running(
        [node("gpu01", 4), node("gpu02", 1)], [running("r", "gpu01", (0, 1), ends_in_s=2 * HOUR)]
    )


def test_backfill_short_job_runs_long_job_waits_behind_the_reservation() -> None:
    queue = [
        task("head", 4, submitted=1, runtime_s=HOUR),
        task("gpu02", 1, node_name="gpu02", submitted=2),  # takes gpu02 (no reserved GPUs)
        task("short", 1, submitted=3, runtime_s=HOUR),
        task("long", 1, submitted=4, runtime_s=3 * HOUR),
        task("unbounded", 1, submitted=5),
    ]
    p = cycle(backfill_fleet(), queue)
    got = placed(p)
    assert sorted(got) == ["gpu02", "short"]
    assert got["short"].node == "gpu01"
    assert p.reservations == {"head": NOW + 2 * HOUR}
    assert p.reserved["head"].node == "gpu01"
    assert p.backfilled == {"gpu02", "short"}
    # Reasons describe the fleet after the cycle: "short" took one of gpu01's two free GPUs.
    assert p.pending["head"].text == (
        "waiting: needs 4 GPUs, largest free block is 1 on node gpu01; "
        "reserved on node gpu01, starts in ~2h"
    )
    behind = (
        "waiting: behind reservation for job head (starts in ~2h); "
        "with a max runtime under 2h it could start now"
    )
    assert p.pending["long"].text == behind
    assert p.pending["unbounded"].text == behind
    assert p.explain("short") == "starts now on node gpu01 GPU 2 (backfilled)"
    assert p.explain("long") == behind
    assert p.explain("nope") is None


def test_long_job_backfills_onto_resources_the_reservation_does_not_need() -> None:
    queue = [task("head", 4, submitted=1), task("long", 1, submitted=2, runtime_s=5 * HOUR)]
    p = cycle(backfill_fleet(), queue)
    assert placed(p)["long"].node == "gpu02"
    assert p.backfilled == {"long"}


def test_backfill_off_keeps_everyone_behind_the_blocked_head() -> None:
    queue = [task("head", 4, submitted=1), task("short", 1, submitted=2, runtime_s=60)]
    p = cycle(backfill_fleet(), queue, backfill=False)
    assert not p.assignments
    assert p.pending["short"].text == "waiting: behind job head (backfill is off)"
    assert p.pending["short"].kind is WaitKind.BEHIND
    assert p.reservations == {"head": NOW + 2 * HOUR}


def test_reservation_counts_jobs_placed_earlier_in_the_cycle() -> None:
    queue = [
        task("first", 2, submitted=1, runtime_s=3 * HOUR),  # takes the 2 free GPUs of gpu01?
        task("head", 4, submitted=2, node_name="gpu01"),
    ]
    p = cycle(backfill_fleet(), queue)
    assert placed(p)["first"].node == "gpu01"
    assert p.reservations == {"head": NOW + 3 * HOUR}


def test_backfilled_fraction_on_the_reserved_node_keeps_the_reservation() -> None:
    # gpu01: GPU 0 held for 2h, GPU 1 free. The head needs both GPUs at 2h; a long share
    # would keep GPU 1 busy past that, a short one ends in time.
    snap = with_running([node("gpu01", 2)], [running("r", "gpu01", (0,), ends_in_s=2 * HOUR)])
    queue = [
        task("head", 2, submitted=1),
        task("long", 0.5, submitted=2, runtime_s=4 * HOUR),
        task("short", 0.5, submitted=3, runtime_s=HOUR),
    ]
    p = cycle(snap, queue, policy=make_policy("best-fit"))
    assert list(placed(p)) == ["short"]
    assert p.pending["long"].text.startswith("waiting: behind reservation for job head")


# ---- quotas ----------------------------------------------------------------------------


def vision_fleet() -> FleetSnapshot:
    held = [running(f"r{i}", "gpu01", (i,), project="vision") for i in range(8)]
    return with_running([node("gpu01", 8), node("gpu02", 8)], held)


def test_over_quota_waits_with_a_reason_and_blocks_nobody() -> None:
    quotas = QuotaBook(projects={"vision": Quota.of_gpus(8)})
    queue = [
        task("v", 1, project="vision", submitted=1),
        task("o", 8, project="other", submitted=2),
    ]
    p = cycle(vision_fleet(), queue, quotas=quotas)
    assert texts(p) == {"v": "waiting: project vision over quota 8/8 GPUs"}
    assert list(placed(p)) == ["o"]
    assert not p.reservations and not p.backfilled


def test_quota_counts_placements_of_the_same_cycle() -> None:
    quotas = QuotaBook(users={"*": Quota.of_gpus(2)})
    queue = [task(f"t{i}", 1, user="ann", submitted=i) for i in range(3)]
    p = cycle([node("n1", 8)], queue, quotas=quotas)
    assert sorted(placed(p)) == ["t0", "t1"]
    assert texts(p) == {"t2": "waiting: user ann over quota 2/2 GPUs"}


def test_quota_reason_for_a_request_larger_than_what_is_left() -> None:
    quotas = QuotaBook(teams={"t": Quota.of_gpus(4)})
    p = cycle(
        [node("n1", 8)], [task("a", 1, submitted=1), task("b", 4, submitted=2)], quotas=quotas
    )
    assert p.pending["b"].text == "waiting: team t would exceed quota: 1/4 GPUs in use, asks 4"
    assert p.pending["b"].kind is WaitKind.QUOTA


def test_borrowing_uses_idle_gpus_not_guaranteed_to_others() -> None:
    queue = [task("v", 4, project="vision")]
    lend = QuotaBook(projects={"vision": Quota.of_gpus(8)}, borrowing=True)
    assert placed(cycle(vision_fleet(), queue, quotas=lend))["v"].node == "gpu02"
    # 6 of gpu02's 8 idle GPUs are guaranteed to "nlp", which uses none: only 2 may be lent.
    guarded = QuotaBook(
        projects={"vision": Quota.of_gpus(8), "nlp": Quota.of_gpus(8, 6)}, borrowing=True
    )
    p = cycle(vision_fleet(), queue, quotas=guarded)
    assert p.pending["v"].text == (
        "waiting: project vision over quota 8/8 GPUs; "
        "cannot borrow: 2 idle GPUs not guaranteed to others"
    )
    assert placed(cycle(vision_fleet(), [task("v", 2, project="vision")], quotas=guarded))


def test_per_entity_borrowing_overrides_the_book() -> None:
    quotas = QuotaBook(projects={"vision": Quota.of_gpus(8, borrowing=False)}, borrowing=True)
    p = cycle(vision_fleet(), [task("v", 1, project="vision")], quotas=quotas)
    assert p.pending["v"].text == "waiting: project vision over quota 8/8 GPUs"


# ---- from job specs ----------------------------------------------------------------------


def test_queued_tasks_from_an_array_job_spec() -> None:
    spec = JobSpec.from_mapping(
        {
            "command": ["train", "${FLEETDECK_ARRAY_INDEX}"],
            "gpus": 0.5,
            "array": 3,
            "max_runtime": "1h",
            "project": "vision",
            "priority": 2,
        },
        "job.toml",
    ).with_defaults(user="ann", team="cv")
    queue = [QueuedTask.from_task(f"7.{t.index}", t, NOW) for t in expand_array(spec)]
    assert queue[1] == QueuedTask("7.1", spec.to_request(), "ann", "vision", "cv", 2, NOW, HOUR)
    p = cycle([node("n1", 1)], queue)
    assert sorted(placed(p)) == ["7.0", "7.1"]
    assert p.pending["7.2"].text.startswith("waiting: needs 0.5 GPU")
