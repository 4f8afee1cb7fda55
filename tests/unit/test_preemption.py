"""Preemption in the plan: reclaim of lent guarantees, priority classes, anti-thrash, minimal
victims; scenarios first, then invariants over random fleets (hypothesis)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.fit import make_policy
from scheduler.models import Assignment, FleetSnapshot, NodeCapacity, RunningAllocation
from scheduler.placement import PlacementPlan, PreemptionRules, PreemptKind, QueuedTask, plan
from scheduler.quota import Quota, QuotaBook, usage_from_running
from tests.unit.test_placement import NOW, node, task, with_running

RULES = PreemptionRules(grace_s=30.0, min_runtime_s=300.0, max_preemptions=2)
# owners are guaranteed the whole 2-GPU node; borrowers may hold 2 GPUs and have no guarantee
BOOK = QuotaBook(teams={"owners": Quota.of_gpus(2, 2), "borrowers": Quota.of_gpus(2)})


def held(job_id: str, node_name: str, gpus: tuple[int, ...], *, team: str = "borrowers",
         ran_s: float = 3600.0, priority: int = 0, preemptible: bool = True,
         preemptions: int = 0, leaving: bool = False, user: str = "bo") -> RunningAllocation:
    a = Assignment(node_name, gpus, 1000, 1000, 0)
    return RunningAllocation(job_id, user, "", team, a, NOW - ran_s, None, priority,
                             preemptible, preemptions, leaving)


def owner_task(tid: str = "a1", gpus: float = 1, **kw: object) -> QueuedTask:
    return task(tid, gpus, user="ann", project="", team="owners", **kw)  # type: ignore[arg-type]


def cycle(running: list[RunningAllocation], queue: list[QueuedTask], *,
          book: QuotaBook | None = BOOK, rules: PreemptionRules | None = RULES,
          n_gpus: int = 2) -> PlacementPlan:
    snap = with_running([node("n1", n_gpus)], running)
    return plan(snap, queue, policy=make_policy("first-fit"), quotas=book, now=NOW,
                preemption=rules)


def victims(p: PlacementPlan) -> list[str]:
    return [x.victim_id for x in p.preemptions]


def test_owner_reclaims_one_gpu_from_borrowers() -> None:
    running = [held("b1", "n1", (0,), ran_s=4000), held("b2", "n1", (1,), ran_s=900)]
    p = cycle(running, [owner_task()])
    # least work lost: the job that ran shortest goes
    assert victims(p) == ["b2"]
    pre = p.preemptions[0]
    assert pre.kind is PreemptKind.RECLAIM and pre.beneficiary_id == "a1"
    assert "team owners is under its guarantee: 0/2 GPUs in use, asks 1" in pre.reason
    assert "team borrowers holds 2 GPUs, 0 guaranteed" in pre.reason
    assert p.pending["a1"].text.startswith("waiting: preempting job b2 on node n1 (reclaim)")
    assert p.assignments == []


def test_without_preemption_the_owner_waits() -> None:
    running = [held("b1", "n1", (0,)), held("b2", "n1", (1,))]
    p = cycle(running, [owner_task()], rules=None)
    assert p.preemptions == [] and p.pending["a1"].text.startswith("waiting: needs 1 GPU")


def test_protected_young_and_exhausted_jobs_are_never_victims() -> None:
    for running in (
        [held("b1", "n1", (0,), preemptible=False), held("b2", "n1", (1,), ran_s=10)],
        [held("b1", "n1", (0,), preemptions=2), held("b2", "n1", (1,), preemptions=5)],
    ):
        p = cycle(running, [owner_task()])
        assert p.preemptions == []
        assert p.pending["a1"].text.startswith("waiting: needs 1 GPU")


def test_a_job_within_its_own_guarantee_is_not_reclaimed() -> None:
    book = QuotaBook(teams={"owners": Quota.of_gpus(2, 1), "others": Quota.of_gpus(2, 1)})
    # others hold exactly their guarantee (1 GPU) and owners hold 1: owners are at theirs too
    running = [held("o1", "n1", (0,), team="others"), held("a0", "n1", (1,), team="owners")]
    p = cycle(running, [owner_task()], book=book)
    assert p.preemptions == []


def test_never_preempts_when_the_task_would_still_not_fit() -> None:
    # 4 GPUs asked on a 2-GPU node: never fits, nobody is touched
    running = [held("b1", "n1", (0,)), held("b2", "n1", (1,))]
    p = cycle(running, [owner_task(gpus=4)])
    assert p.preemptions == [] and p.pending["a1"].text.startswith("never fits")
    # 2 GPUs asked, one of the two holders protected: preempting one would not be enough
    running = [held("b1", "n1", (0,)), held("b2", "n1", (1,), preemptible=False)]
    p = cycle(running, [owner_task(gpus=2)])
    assert p.preemptions == []


def test_leaving_jobs_are_claimed_before_new_victims() -> None:
    running = [held("b1", "n1", (0,), leaving=True), held("b2", "n1", (1,))]
    p = cycle(running, [owner_task()])
    assert p.preemptions == []
    assert p.pending["a1"].text == ("waiting: preempting job b1 on node n1 (reclaim) (grace 30s); "
                               "starts when they leave")
    # a second owner task needs a new victim: b1 is already claimed
    p = cycle(running, [owner_task(), owner_task("a2", submitted=1.0)])
    assert victims(p) == ["b2"] and p.preemptions[0].beneficiary_id == "a2"


def test_higher_class_preempts_lower_class_only() -> None:
    running = [held("lo", "n1", (0,), priority=-100), held("mid", "n1", (1,), priority=0)]
    t = replace(task("hi", 1, team="borrowers"), class_priority=100)
    p = cycle(running, [t], book=None)
    assert victims(p) == ["lo"] and p.preemptions[0].kind is PreemptKind.PRIORITY
    same = replace(task("eq", 1), class_priority=-100)
    assert cycle(running, [same], book=None).preemptions == []


def test_reclaim_picks_lowest_priority_then_fewest_gpus() -> None:
    running = [held("big", "n1", (0, 1), ran_s=1000), held("s1", "n1", (2,), ran_s=1000),
               held("s2", "n1", (3,), ran_s=1000, priority=-5)]
    p = cycle(running, [owner_task()], n_gpus=4,
              book=QuotaBook(teams={"owners": Quota.of_gpus(4, 4)}))
    assert victims(p) == ["s2"]


def test_owners_queue_ahead_of_requeued_borrowers() -> None:
    """A requeued victim (earlier submit time) must not take back the freed GPU."""
    running = [held("b1", "n1", (0,))]
    queue = [task("b2", 1, user="bo", project="", team="borrowers", submitted=0.0),
             owner_task("a1", submitted=100.0)]
    p = cycle(running, queue)
    assert [tid for tid, _ in p.assignments] == ["a1"]


def test_held_room_is_not_given_to_others_in_the_same_cycle() -> None:
    # a 2-GPU owner job needs the free GPU 1 and b1's GPU 0; a borrower must not take GPU 1
    running = [held("b1", "n1", (0,))]
    queue = [owner_task("a1", gpus=2),
             task("b9", 1, user="bo", project="", team="borrowers", submitted=5.0)]
    p = cycle(running, queue)
    assert victims(p) == ["b1"] and p.assignments == []


def test_idle_guarantees_are_lent_with_preemption_on() -> None:
    book = QuotaBook(teams={"owners": Quota.of_gpus(2, 2), "borrowers": Quota.of_gpus(0)},
                     borrowing=True)
    t = task("b1", 1, user="bo", project="", team="borrowers")
    assert cycle([], [t], book=book, rules=None).assignments == []  # reserved for owners
    assert [x for x, _ in cycle([], [t], book=book).assignments] == ["b1"]  # lent


def test_bad_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="grace_s"):
        PreemptionRules(grace_s=float("nan"))
    with pytest.raises(ValueError, match="max_preemptions"):
        PreemptionRules(max_preemptions=-1)


# ---- invariants ---------------------------------------------------------------------------

TEAMS = ("red", "blue", "green")
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def scenes(draw: st.DrawFn) -> tuple[FleetSnapshot, list[QueuedTask], QuotaBook]:
    n_nodes = draw(st.integers(1, 3))
    nodes = [node(f"n{i}", draw(st.sampled_from([2, 4, 8]))) for i in range(n_nodes)]
    running: list[RunningAllocation] = []
    k = 0
    for nd in nodes:
        free = [g.index for g in nd.gpus]
        while free and draw(st.integers(0, 4)) > 0:
            n = min(len(free), draw(st.sampled_from([1, 1, 2, 4])))
            gpus, free = tuple(free[:n]), free[n:]
            running.append(held(
                f"r{k}", nd.name, gpus, team=draw(st.sampled_from(TEAMS)),
                user=draw(st.sampled_from(("u1", "u2", "u3"))),
                ran_s=draw(st.sampled_from([10.0, 400.0, 4000.0])),
                priority=draw(st.sampled_from([-100, 0, 100])),
                preemptible=draw(st.integers(0, 5)) > 0,
                preemptions=draw(st.integers(0, 3)), leaving=draw(st.integers(0, 9)) == 0))
            k += 1
    queue = [replace(task(f"q{i}", draw(st.sampled_from([1, 2, 4])),
                          user=draw(st.sampled_from(("u1", "u2", "u3"))), project="",
                          team=draw(st.sampled_from(TEAMS)), submitted=float(i),
                          runtime_s=draw(st.sampled_from([None, 600.0, 7200.0])),
                          cpus=draw(st.sampled_from([1, 8, 40]))),
                     class_priority=draw(st.sampled_from([-100, 0, 100])))
             for i in range(draw(st.integers(1, 6)))]
    teams = {}
    for t in TEAMS:
        limit = draw(st.sampled_from([None, 2, 4, 8]))
        g = draw(st.sampled_from([0, 1, 2, 4]))
        if limit is not None:
            g = min(g, limit)
        teams[t] = Quota.of_gpus(limit, g)
    return with_running(nodes, running), queue, QuotaBook(teams=teams)


@PROPS
@given(scenes())
def test_preemption_invariants(scene: tuple[FleetSnapshot, list[QueuedTask], QuotaBook]) -> None:
    snap, queue, book = scene
    p = plan(snap, queue, policy=make_policy("first-fit"), quotas=book, now=NOW,
             preemption=RULES)
    by_id = {r.job_id: r for r in snap.running}
    tasks = {t.id: t for t in queue}
    # what each team holds once the cycle's decisions are done: running jobs less the leaving
    # ones and the victims, plus the tasks started now and those waiting for their victims
    final = usage_from_running(r for r in snap.running if not r.leaving)
    for pre in p.preemptions:
        v = by_id[pre.victim_id]
        final[("team", v.team)] -= v.milli
    started = dict(p.assignments)
    for tid in {*started, *(x.beneficiary_id for x in p.preemptions)}:
        t = tasks[tid]
        key = ("team", t.team)
        final[key] = final.get(key, 0) + t.request.gpu_count * t.request.gpu_milli
    seen: set[str] = set()
    by_beneficiary: dict[str, list[RunningAllocation]] = {}
    for pre in p.preemptions:
        v = by_id[pre.victim_id]
        assert pre.victim_id not in seen, "a job is preempted once per cycle"
        seen.add(pre.victim_id)
        assert v.preemptible and not v.leaving
        assert NOW - v.started_at >= RULES.min_runtime_s
        assert v.preemptions < RULES.max_preemptions
        assert v.assignment.node == pre.node
        t = tasks[pre.beneficiary_id]
        if pre.kind is PreemptKind.PRIORITY:
            assert v.class_priority < t.class_priority
        # victims never drop below their own guarantee
        q = book.quota("team", v.team)
        if q is not None and q.guaranteed_milli:
            assert final[("team", v.team)] >= q.guaranteed_milli, f"{v.job_id} under guarantee"
        by_beneficiary.setdefault(pre.beneficiary_id, []).append(v)
    first = p.preemptions[0].beneficiary_id if p.preemptions and not p.assignments else None
    for tid, vs in by_beneficiary.items():
        t = tasks[tid]
        # beneficiary within quota: it passed the quota check of the cycle
        assert not p.pending[tid].text.startswith("waiting: team")
        node_name = vs[0].assignment.node
        nd = snap.node(node_name)
        assert nd is not None
        leaving = [r for r in snap.running if r.leaving and r.assignment.node == node_name]

        def fits(gone: list[RunningAllocation], nd: NodeCapacity = nd, t: QueuedTask = t,
                 leaving: list[RunningAllocation] = leaving) -> bool:
            free = {g.index: 1000 - g.alloc_milli for g in nd.gpus}
            for r in (*gone, *leaving):
                for i in r.assignment.gpu_indices:
                    free[i] += r.assignment.gpu_milli
            return sum(1 for f in free.values() if f >= 1000) >= t.request.gpu_count

        assert fits(vs), "the beneficiary fits once its victims leave"
        if tid == first and not leaving:  # nothing placed or held before it this cycle
            for v in vs:  # minimal: without any one victim it would not fit
                assert not fits([x for x in vs if x is not v])
    # quotas never exceeded by what starts now
    used = usage_from_running(snap.running)
    for tid, a in p.assignments:
        t = tasks[tid]
        q = book.quota("team", t.team)
        m = a.gpu_milli * len(a.gpu_indices)
        used[("team", t.team)] = used.get(("team", t.team), 0) + m
        if q is not None and q.limit_milli is not None:
            assert used[("team", t.team)] <= q.limit_milli


@PROPS
@given(scenes())
def test_a_job_at_its_preemption_limit_is_never_a_victim(
        scene: tuple[FleetSnapshot, list[QueuedTask], QuotaBook]) -> None:
    snap, queue, book = scene
    rules = PreemptionRules(grace_s=1.0, min_runtime_s=0.0, max_preemptions=1)
    p = plan(snap, queue, policy=make_policy("best-fit"), quotas=book, now=NOW,
             preemption=rules)
    by_id = {r.job_id: r for r in snap.running}
    assert all(by_id[x.victim_id].preemptions < 1 for x in p.preemptions)
