"""Placement invariants over random fleets, running jobs, queues and quotas."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.fit import FleetState, make_policy
from scheduler.models import (
    MILLI_PER_GPU,
    FleetSnapshot,
    GpuSlot,
    NodeCapacity,
    ResourceRequest,
    RunningAllocation,
)
from scheduler.placement import PlacementPlan, QueuedTask, WaitKind, plan
from scheduler.quota import LEVELS, Level, Quota, QuotaBook, Usage, usage_from_running
from tests.unit.test_placement import NOW, with_running

GIB = 1 << 30
USERS = ("ann", "bob", "cy")
PROJECTS = ("vision", "nlp")
TEAMS = ("red", "blue")
POLICIES = ("first-fit", "best-fit", "random-fit")
PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def nodes(draw: st.DrawFn) -> list[NodeCapacity]:
    out = []
    for i in range(draw(st.integers(1, 5))):
        model = draw(st.sampled_from(["A100", "H100", "L40S"]))
        mem = {"A100": 40, "H100": 80, "L40S": 48}[model] * GIB
        gpus = tuple(
            GpuSlot(j, model, mem, healthy=draw(st.integers(0, 9)) > 0)
            for j in range(draw(st.sampled_from([0, 1, 2, 4, 8])))
        )
        out.append(
            NodeCapacity(
                name=f"n{i}",
                pool=draw(st.sampled_from(["a", "b"])),
                cpu_milli=draw(st.sampled_from([4, 16, 64])) * 1000,
                mem_bytes=draw(st.sampled_from([32, 256])) * GIB,
                gpus=gpus,
                labels={"zone": draw(st.sampled_from(["x", "y"]))},
                schedulable=draw(st.integers(0, 9)) > 0,
            )
        )
    return out


@st.composite
def requests(draw: st.DrawFn, n_nodes: int) -> ResourceRequest:
    kind = draw(st.sampled_from(["cpu", "share", "whole", "whole"]))
    count = 0 if kind == "cpu" else 1 if kind == "share" else draw(st.sampled_from([1, 2, 4]))
    milli = draw(st.sampled_from([250, 500, 750])) if kind == "share" else MILLI_PER_GPU
    gpu = count > 0
    return ResourceRequest(
        cpu_milli=draw(st.sampled_from([500, 2000, 8000])),
        mem_bytes=draw(st.sampled_from([0, 8, 64])) * GIB,
        gpu_count=count,
        gpu_milli=milli,
        gpu_models=frozenset(draw(st.sets(st.sampled_from(["A100", "H100"]), max_size=1)))
        if gpu
        else frozenset(),
        min_gpu_mem_bytes=draw(st.sampled_from([0, 0, 48 * GIB])) if gpu else 0,
        pool=draw(st.sampled_from([None, None, "a", "b"])),
        node=draw(st.sampled_from([None] * 6 + [f"n{i}" for i in range(n_nodes)] + ["n9"])),
        labels=draw(st.sampled_from([{}, {}, {"zone": "x"}])),
    )


runtimes = st.sampled_from([None, 60.0, 600.0, 3600.0, 7200.0, 36000.0])


@dataclass
class Case:
    snap: FleetSnapshot
    queue: list[QueuedTask]
    policy: str
    seed: int


@st.composite
def cases(draw: st.DrawFn) -> Case:
    fleet = draw(nodes())
    # Running jobs: placed on the fleet with a real policy so the snapshot is consistent.
    state = FleetState.from_snapshot(FleetSnapshot(tuple(fleet), (), NOW))
    first_fit = make_policy("first-fit")
    running: list[RunningAllocation] = []
    for k in range(draw(st.integers(0, 12))):
        req = draw(requests(len(fleet)))
        a = first_fit.select(state, req)
        if a is None:
            continue
        state.apply(a)
        started = NOW - draw(st.sampled_from([0.0, 600.0, 7200.0]))
        running.append(
            RunningAllocation(
                f"r{k}",
                draw(st.sampled_from(USERS)),
                draw(st.sampled_from(PROJECTS)),
                draw(st.sampled_from(TEAMS)),
                a,
                started,
                draw(runtimes),
            )
        )
    queue = [
        QueuedTask(
            id=f"t{i}",
            request=draw(requests(len(fleet))),
            user=draw(st.sampled_from(USERS)),
            project=draw(st.sampled_from(PROJECTS)),
            team=draw(st.sampled_from(TEAMS)),
            priority=draw(st.integers(0, 2)),
            submitted_at=float(draw(st.integers(0, 5))),
            max_runtime_s=draw(runtimes),
        )
        for i in range(draw(st.integers(0, 25)))
    ]
    policy = draw(st.sampled_from(POLICIES))
    return Case(with_running(fleet, running), queue, policy, draw(st.integers(0, 1000)))


@st.composite
def busy_cases(draw: st.DrawFn) -> Case:
    """Few unconstrained nodes, mostly held by jobs that end: reservations and backfill."""
    fleet = [
        NodeCapacity(
            f"n{i}",
            "a",
            64_000,
            512 * GIB,
            tuple(GpuSlot(j, "A100", 80 * GIB) for j in range(draw(st.sampled_from([2, 4, 8])))),
        )
        for i in range(draw(st.integers(1, 3)))
    ]
    state = FleetState.from_snapshot(FleetSnapshot(tuple(fleet), (), NOW))
    random_fit = make_policy("random-fit", seed=draw(st.integers(0, 1000)))
    shapes = st.sampled_from([(1, 250), (1, 500), (1, 1000), (2, 1000), (4, 1000)])
    busy_runtimes = st.sampled_from([None, 600.0, 3600.0, 7200.0, 14400.0])
    running = []
    for k in range(draw(st.integers(0, 16))):
        count, milli = draw(shapes)
        a = random_fit.select(state, ResourceRequest(1000, 0, count, milli))
        if a is not None:
            state.apply(a)
            running.append(
                RunningAllocation(f"r{k}", "ann", "vision", "red", a, NOW - 60, draw(busy_runtimes))
            )
    queue = []
    for i in range(draw(st.integers(1, 25))):
        count, milli = draw(shapes)
        queue.append(
            QueuedTask(
                f"t{i}",
                ResourceRequest(1000, 0, count, milli),
                priority=draw(st.integers(0, 1)),
                submitted_at=float(i),
                max_runtime_s=draw(busy_runtimes),
            )
        )
    policy = draw(st.sampled_from(POLICIES))
    return Case(with_running(fleet, running), queue, policy, draw(st.integers(0, 1000)))


@st.composite
def books(draw: st.DrawFn, borrowing: bool | None = None) -> QuotaBook:
    def table(names: tuple[str, ...]) -> dict[str, Quota]:
        out = {}
        for name in names:
            if draw(st.booleans()):
                limit = draw(st.sampled_from([0, 500, 1000, 2000, 4000]))
                out[name] = Quota(limit, draw(st.sampled_from([0, limit // 2, limit])))
        return out

    lend = draw(st.booleans()) if borrowing is None else borrowing
    return QuotaBook(table(USERS), table(PROJECTS), table(TEAMS), lend)


def entities(t: QueuedTask) -> list[tuple[Level, str]]:
    return list(zip(LEVELS, (t.user, t.project, t.team), strict=True))


def exceeds(book: QuotaBook, used: Usage, t: QueuedTask, milli: int) -> bool:
    """Whether `milli` more for `t`'s entities goes over any of their limits."""
    for level, name in entities(t):
        q = book.quota(level, name)
        limit = None if q is None else q.limit_milli
        if limit is not None and used.get((level, name), 0) + milli > limit:
            return True
    return False


def run(case: Case, quotas: QuotaBook | None = None, backfill: bool = True) -> PlacementPlan:
    policy = make_policy(case.policy, seed=case.seed)
    return plan(case.snap, case.queue, policy=policy, quotas=quotas, now=NOW, backfill=backfill)


def check_fits(snap: FleetSnapshot, queue: list[QueuedTask], p: PlacementPlan) -> None:
    """Nothing over-committed (running included); every constraint honored."""
    by_id = {t.id: t for t in queue}
    by_node = {nd.name: nd for nd in snap.nodes}
    gpu_used = {(nd.name, g.index): g.alloc_milli for nd in snap.nodes for g in nd.gpus}
    cpu_used = {nd.name: nd.cpu_alloc_milli for nd in snap.nodes}
    mem_used = {nd.name: nd.mem_alloc_bytes for nd in snap.nodes}
    for tid, a in p.assignments:
        req = by_id[tid].request
        nd = by_node[a.node]
        assert nd.schedulable
        assert req.pool in (None, nd.pool) and req.node in (None, nd.name)
        assert all(nd.labels.get(k) == v for k, v in req.labels.items())
        assert len(a.gpu_indices) == len(set(a.gpu_indices)) == req.gpu_count
        assert (a.cpu_milli, a.mem_bytes) == (req.cpu_milli, req.mem_bytes)
        slots = {g.index: g for g in nd.gpus}
        for idx in a.gpu_indices:
            g = slots[idx]
            assert g.healthy
            assert not req.gpu_models or g.model in req.gpu_models
            assert g.mem_total_bytes >= req.min_gpu_mem_bytes
            assert a.gpu_milli == req.gpu_milli
            gpu_used[(a.node, idx)] += a.gpu_milli
        cpu_used[a.node] += a.cpu_milli
        mem_used[a.node] += a.mem_bytes
    assert all(m <= MILLI_PER_GPU for m in gpu_used.values())
    assert all(cpu_used[nd.name] <= nd.cpu_milli for nd in snap.nodes)
    assert all(mem_used[nd.name] <= nd.mem_bytes for nd in snap.nodes)


@PROPS
@given(cases() | busy_cases(), st.booleans())
def test_no_overcommit_and_constraints_honored(case: Case, backfill: bool) -> None:
    p = run(case, backfill=backfill)
    check_fits(case.snap, case.queue, p)
    ids = [t.id for t in case.queue]
    placed = [tid for tid, _ in p.assignments]
    assert sorted(placed + list(p.pending)) == sorted(ids)
    assert all(r.text.startswith(("waiting: ", "never fits: ")) for r in p.pending.values())
    assert set(p.reservations) == set(p.reserved) <= set(p.pending)
    assert len(p.reservations) <= 1


@PROPS
@given(cases() | busy_cases())
def test_backfill_never_delays_the_reservation(case: Case) -> None:
    p = run(case)
    strict = run(case, backfill=False)
    check_fits(case.snap, case.queue, strict)
    if strict.reservations:  # the first blocked task's reservation: backfill keeps it exactly
        assert p.reservations == strict.reservations
        assert p.reserved == strict.reserved
    for head, start in p.reservations.items():
        # The fleet at `start`: everything placed now, minus what has ended by then.
        at_start = FleetState.from_snapshot(case.snap)
        runtime = {t.id: t.max_runtime_s for t in case.queue}
        for _, a in p.assignments:
            at_start.apply(a)
        for r in case.snap.running:
            if r.expected_end is not None and max(r.expected_end, NOW) <= start:
                at_start.release(r.assignment)
        for tid, a in p.assignments:
            rt = runtime[tid]
            if rt is not None and NOW + rt <= start:
                at_start.release(a)
        at_start.apply(p.reserved[head])  # raises if anything placed now took its resources
        assert start >= NOW


@PROPS
@given(cases(), books(borrowing=False))
def test_quotas_never_exceeded_without_borrowing(case: Case, book: QuotaBook) -> None:
    p = run(case, quotas=book)
    check_fits(case.snap, case.queue, p)
    before = usage_from_running(case.snap.running)
    by_id = {t.id: t for t in case.queue}
    after = dict(before)
    for tid, a in p.assignments:
        for ent in entities(by_id[tid]):
            after[ent] = after.get(ent, 0) + a.gpu_milli * len(a.gpu_indices)
    for level in LEVELS:
        for (lvl, name), milli in after.items():
            q = book.quota(level, name) if lvl == level else None
            if q is not None and q.limit_milli is not None and milli > before.get((lvl, name), 0):
                assert milli <= q.limit_milli
    for tid, why in p.pending.items():  # quota reasons are true (usage only grows)
        if why.kind is WaitKind.QUOTA:
            t = by_id[tid]
            assert exceeds(book, after, t, t.request.gpu_count * t.request.gpu_milli)


@PROPS
@given(cases(), books(borrowing=True))
def test_borrowing_leaves_unused_guarantees_alone(case: Case, book: QuotaBook) -> None:
    """Replaying the plan in order: a task that goes over a limit fits in the idle capacity
    left after every other entity's unused guarantee."""
    p = run(case, quotas=book)
    check_fits(case.snap, case.queue, p)
    used = usage_from_running(case.snap.running)
    idle = sum(g.free_milli for nd in case.snap.nodes if nd.schedulable for g in nd.gpus)
    guarantees = {(lvl, name): g for lvl, name, g in book.guarantees()}
    by_id = {t.id: t for t in case.queue}
    for tid, a in p.assignments:
        t = by_id[tid]
        milli = a.gpu_milli * len(a.gpu_indices)
        mine = entities(t)
        over = exceeds(book, used, t, milli)
        if over and milli:
            others = sum(max(0, g - used.get(k, 0)) for k, g in guarantees.items() if k not in mine)
            assert milli <= idle - others
        for k in mine:
            used[k] = used.get(k, 0) + milli
        idle -= milli
