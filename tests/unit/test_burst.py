"""Burst policy: trigger, offer priority, hard budgets, refusals, teardown, spot loss."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scheduler.models import (
    Assignment,
    FleetSnapshot,
    GpuSlot,
    NodeCapacity,
    ResourceRequest,
    RunningAllocation,
)
from scheduler.policies.burst import (
    BudgetLimits,
    BurstConfig,
    BurstState,
    WaitingJob,
    evaluate_burst,
    onprem_allocation_pct,
)
from scheduler.policies.spend import BurstInstance
from scheduler.providers.base import Offer
from scheduler.providers.config import CommandSettings, ProviderConfig

GIB = 1024**3
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC).timestamp()
MONTH_START = datetime(2026, 3, 1, tzinfo=UTC).timestamp()

A_SPOT = Offer("a-spot", "a", "g5.12xlarge", "A10G", 4, 5.67, market="spot", max_nodes=1)
B_SPOT = Offer("b-spot", "b", "gpu-4x", "A10G", 4, 6.10, market="spot", max_nodes=2)
A_OD = Offer("a-od", "a", "g5.12xlarge", "A10G", 4, 16.29, max_nodes=4)
H100 = Offer("h100", "b", "h100x8", "H100", 8, 32.77, max_nodes=2)


def node(name: str, gpus: int, alloc: int, *, model: str = "A10G", pool: str = "train",
         schedulable: bool = True) -> NodeCapacity:
    slots = tuple(GpuSlot(i, model, 24 * GIB, 1000 if i < alloc else 0) for i in range(gpus))
    return NodeCapacity(name, pool, 64000, 512 * GIB, slots, schedulable=schedulable)


FULL = FleetSnapshot((node("n1", 4, 4), node("n2", 4, 4)), now=NOW)


def config(**kw: object) -> BurstConfig:
    base: dict[str, object] = dict(
        enabled=True, wait_threshold_s=300.0, budget=BudgetLimits(per_day=400.0,
                                                                  per_month=5000.0),
        offers=(A_SPOT, B_SPOT, A_OD, H100))
    base.update(kw)
    return BurstConfig(**base)  # type: ignore[arg-type]


def waiting(job_id: str = "42", *, gpus: int = 1, waited: float = 600.0, team: str = "vision",
            project: str = "seg", models: frozenset[str] = frozenset(),
            attempt: int = 0) -> WaitingJob:
    return WaitingJob(job_id, ResourceRequest(gpu_count=gpus, gpu_models=models),
                      NOW - waited, team=team, project=project, attempt=attempt)


def inst(iid: str, offer: Offer, *, launched: float, state: str = "ready",
         terminated: float | None = None, team: str = "vision", project: str = "seg",
         node_name: str | None = None, request_id: str = "",
         last_job_ended: float | None = None) -> BurstInstance:
    return BurstInstance(iid, offer.provider, offer.name, offer.price_per_hour, launched,
                         state, request_id=request_id, team=team, project=project,  # type: ignore[arg-type]
                         node=node_name, gpu_model=offer.gpu_model, gpu_count=offer.gpu_count,
                         market=offer.market, ready_at=launched + 120 if node_name else None,
                         terminated_at=terminated, last_job_ended_at=last_job_ended)


def test_provisions_the_first_offer_when_onprem_is_full_and_the_job_waited() -> None:
    res = evaluate_burst([waiting()], FULL, [], config(), BurstState(), NOW)
    assert len(res.provisions) == 1
    p = res.provisions[0]
    assert p.offer == A_SPOT and p.request_id == "fd-42-0" and p.job_ids == ("42",)
    assert (p.team, p.project) == ("vision", "seg")
    assert p.action.kind == "burst_provision" and p.action.actor == "policy:burst"
    assert "waited 10m" in p.action.reason and "100% allocated" in p.action.reason
    assert p.action.evidence["onprem_alloc_pct"] == 100.0
    assert res.actions == (p.action,)
    assert res.verdicts["42"].status == "provision"


def test_no_burst_before_the_wait_threshold_or_with_free_onprem_gpus() -> None:
    res = evaluate_burst([waiting(waited=200.0)], FULL, [], config(), BurstState(), NOW)
    assert res.provisions == () and res.verdicts["42"].status == "waiting"
    half = FleetSnapshot((node("n1", 4, 4), node("n2", 4, 2)), now=NOW)
    res = evaluate_burst([waiting()], half, [], config(), BurstState(), NOW)
    assert res.provisions == () and res.verdicts["42"].status == "on_prem"
    assert "75% allocated (< 100%)" in res.verdicts["42"].reason
    res = evaluate_burst([waiting()], half, [], config(allocation_threshold_pct=75.0),
                         BurstState(), NOW)
    assert len(res.provisions) == 1


def test_onprem_allocation_counts_only_gpus_the_job_could_use() -> None:
    snap = (node("a", 4, 4), node("h", 8, 0, model="H100"), node("c", 4, 0, schedulable=False),
            node("small", 2, 0))
    a10 = ResourceRequest(gpu_count=4, gpu_models=frozenset({"A10G"}))
    # "small" has too few GPUs for 4, "c" is cordoned, "h" has the wrong model
    assert onprem_allocation_pct(snap, a10) == (100.0, 4)
    assert onprem_allocation_pct(snap, ResourceRequest(gpu_count=1)) == (
        pytest.approx(100 * 4 / 14), 14)
    assert onprem_allocation_pct(snap, ResourceRequest(gpu_count=16)) == (100.0, 0)


def test_offers_are_tried_in_priority_order() -> None:
    # a-spot is at its max_nodes: b-spot next; job needing H100 skips to the H100 offer
    busy = [inst("i-1", A_SPOT, launched=NOW - 600, team="other", project="x")]
    res = evaluate_burst([waiting()], FULL, busy, config(), BurstState(), NOW)
    assert res.provisions[0].offer == B_SPOT
    assert "a-spot" in res.provisions[0].action.evidence["skipped_offers"]
    res = evaluate_burst([waiting(models=frozenset({"H100"}))], FULL, [], config(),
                         BurstState(), NOW)
    assert res.provisions[0].offer == H100


def test_team_budget_refusal_says_why_exactly() -> None:
    vision = BudgetLimits(per_month=500.0)
    # a node that cost 480.00 earlier this month (48 h at 10.00/h)
    past = BurstInstance("i-old", "b", "old", 10.0, MONTH_START + 3600, "terminated",
                         team="vision", project="seg", terminated_at=MONTH_START + 49 * 3600)
    cfg = config(offers=(H100,), teams={"vision": vision})
    res = evaluate_burst([waiting(models=frozenset({"H100"}))], FULL, [past], cfg,
                         BurstState(), NOW)
    assert res.provisions == ()
    v = res.verdicts["42"]
    assert v.status == "refused"
    assert v.reason == ("burst refused: team vision monthly budget 500.00 would be exceeded "
                        "(spent 480.00, offer 32.77/h)")
    assert [a.kind for a in res.actions] == ["burst_refuse"]
    assert res.actions[0].target == "42" and res.actions[0].reason == v.reason
    # another team is not affected
    res = evaluate_burst([waiting(team="nlp", models=frozenset({"H100"}))], FULL, [past], cfg,
                         BurstState(), NOW)
    assert len(res.provisions) == 1


def test_refusal_is_audited_once_until_the_reason_changes() -> None:
    cfg = config(budget=BudgetLimits(per_day=1.0))
    first = evaluate_burst([waiting()], FULL, [], cfg, BurstState(), NOW)
    assert [a.kind for a in first.actions] == ["burst_refuse"]
    assert "global daily budget 1.00" in first.verdicts["42"].reason
    again = evaluate_burst([waiting()], FULL, [], cfg, first.state, NOW + 30)
    assert again.actions == () and again.verdicts["42"].status == "refused"
    cfg2 = config(budget=BudgetLimits(per_day=100.0, per_month=1.0))
    changed = evaluate_burst([waiting()], FULL, [], cfg2, again.state, NOW + 60)
    assert [a.kind for a in changed.actions] == ["burst_refuse"]
    assert "global monthly budget 1.00" in changed.actions[0].reason


def test_budget_counts_running_spend_committed_minimum_and_this_rounds_plans() -> None:
    # a running a-od node since 20 min: spent 5.43, committed 10.86 (1 h minimum)
    running = [inst("i-1", A_OD, launched=NOW - 1200, team="nlp", project="p")]
    cfg = config(offers=(A_OD,), budget=BudgetLimits(per_day=40.0))
    res = evaluate_burst([waiting("1"), waiting("2", team="t2", project="q")], FULL, running,
                         cfg, BurstState(), NOW)
    # 16.29 spent or committed + 16.29 for job 1 = 32.58; job 2 would make 48.87 > 40
    assert [p.job_ids for p in res.provisions] == [("1",)]
    assert res.verdicts["2"].reason == (
        "burst refused: global daily budget 40.00 would be exceeded "
        "(spent 5.43, committed 27.15, offer 16.29/h)")


def test_min_billed_hours_scales_the_reserved_cost() -> None:
    cfg = config(offers=(H100,), budget=BudgetLimits(per_day=60.0), min_billed_hours=2.0)
    res = evaluate_burst([waiting(models=frozenset({"H100"}))], FULL, [], cfg, BurstState(),
                         NOW)
    assert res.verdicts["42"].reason.endswith("offer 32.77/h x 2 h minimum)")


def test_jobs_of_one_team_share_a_node_and_pending_capacity_is_waited_for() -> None:
    jobs = [waiting("1", gpus=2), waiting("2", gpus=2), waiting("3", gpus=1)]
    res = evaluate_burst(jobs, FULL, [], config(), BurstState(), NOW)
    assert len(res.provisions) == 2  # 4 GPUs for jobs 1+2, a second node for job 3
    assert [res.verdicts[j].status for j in "123"] == ["provision", "covered", "provision"]
    # next round: both nodes are provisioning; nothing new is asked for
    insts = [inst("i-a", A_SPOT, launched=NOW, state="provisioning", request_id="fd-1-0"),
             inst("i-b", B_SPOT, launched=NOW, state="provisioning", request_id="fd-3-0")]
    res2 = evaluate_burst(jobs, FULL, insts, config(), res.state, NOW + 30)
    assert res2.provisions == () and res2.actions == ()
    assert {res2.verdicts[j].status for j in "123"} == {"covered"}
    # a requeued job (attempt 1) gets a new request id
    assert waiting(attempt=1).request_id == "fd-42-1"


def test_other_teams_do_not_ride_on_a_node() -> None:
    jobs = [waiting("1", gpus=1), waiting("2", gpus=1, team="nlp")]
    res = evaluate_burst(jobs, FULL, [], config(), BurstState(), NOW)
    assert [p.job_ids for p in res.provisions] == [("1",), ("2",)]
    assert [p.offer.name for p in res.provisions] == ["a-spot", "b-spot"]


def test_unavailable_provider_and_require_team_budget() -> None:
    res = evaluate_burst([waiting()], FULL, [], config(), BurstState(), NOW,
                         unavailable={"a-spot": "needs boto3", "a-od": "needs boto3"})
    assert res.provisions[0].offer == B_SPOT
    cfg = config(require_team_budget=True, teams={"nlp": BudgetLimits(per_day=10.0)})
    res = evaluate_burst([waiting()], FULL, [], cfg, BurstState(), NOW)
    assert res.verdicts["42"].reason == "burst refused: team vision has no burst budget"
    res = evaluate_burst([waiting(models=frozenset({"V100"}))], FULL, [], config(),
                         BurstState(), NOW)
    assert res.verdicts["42"].reason.startswith("burst refused: no offer fits: offer a-spot: "
                                                "job needs V100, offer has A10G")


def test_global_max_nodes() -> None:
    cfg = config(max_nodes=1)
    res = evaluate_burst([waiting("1"), waiting("2", team="x")], FULL, [], cfg, BurstState(),
                         NOW)
    assert len(res.provisions) == 1
    assert res.verdicts["2"].reason == "burst refused: burst is at max_nodes 1"


def test_dry_run_decides_but_executes_nothing_and_announces_once() -> None:
    cfg = config(dry_run=True)
    res = evaluate_burst([waiting()], FULL, [], cfg, BurstState(), NOW)
    assert res.provisions == ()
    assert [(a.kind, a.dry_run) for a in res.actions] == [("burst_provision", True)]
    again = evaluate_burst([waiting()], FULL, [], cfg, res.state, NOW + 30)
    assert again.actions == () and again.verdicts["42"].status == "provision"


def test_disabled_burst_still_tears_down() -> None:
    idle = inst("i-1", A_SPOT, launched=NOW - 7200, node_name="burst-1")
    snap = FleetSnapshot((*FULL.nodes, node("burst-1", 4, 0, pool="burst")), now=NOW)
    res = evaluate_burst([waiting()], snap, [idle], BurstConfig(offers=(A_SPOT,)), BurstState(),
                         NOW)
    assert res.verdicts["42"].status == "covered"  # the idle node has room
    res = evaluate_burst([], snap, [idle], BurstConfig(offers=(A_SPOT,)), BurstState(), NOW)
    assert [t.instance_id for t in res.terminations] == ["i-1"]


def test_teardown_after_idle_time_not_while_jobs_run() -> None:
    snap = FleetSnapshot((*FULL.nodes, node("burst-1", 4, 0, pool="burst")), now=NOW)
    recent = inst("i-1", A_SPOT, launched=NOW - 7200, node_name="burst-1",
                  last_job_ended=NOW - 600)
    res = evaluate_burst([], snap, [recent], config(), BurstState(), NOW)
    assert res.terminations == ()
    res = evaluate_burst([], snap, [recent], config(), BurstState(), NOW + 300)
    assert [t.instance_id for t in res.terminations] == ["i-1"]
    t = res.terminations[0]
    assert t.action.kind == "burst_terminate" and t.provider == "a"
    assert t.reason == ("burst node burst-1 idle 15m with no fleetdeck job "
                        "(idle_teardown_s 900)")
    running = FleetSnapshot(snap.nodes, (RunningAllocation(
        "9", "ana", "seg", "vision", Assignment("burst-1", (0,)), NOW - 9000),), now=NOW)
    assert evaluate_burst([], running, [recent], config(), BurstState(),
                          NOW + 300).terminations == ()


def test_node_that_never_becomes_ready_is_terminated() -> None:
    stuck = inst("i-1", A_SPOT, launched=NOW - 1300, state="provisioning", request_id="fd-9-0")
    res = evaluate_burst([], FULL, [stuck], config(), BurstState(), NOW)
    assert [t.instance_id for t in res.terminations] == ["i-1"]
    assert "not ready 21m40s after launch" in res.terminations[0].reason


def test_lost_spot_node_requeues_its_jobs() -> None:
    lost = inst("i-1", A_SPOT, launched=NOW - 3600, state="lost", node_name="burst-1",
                terminated=NOW - 10)
    run = tuple(RunningAllocation(j, "ana", "seg", "vision", Assignment(n, (0,)), NOW - 900)
                for j, n in (("5", "burst-1"), ("6", "burst-1"), ("7", "n1")))
    snap = FleetSnapshot(FULL.nodes, run, now=NOW)
    res = evaluate_burst([], snap, [lost], config(), BurstState(), NOW)
    assert [(a.kind, a.target) for a in res.requeues] == [("burst_requeue", "5"),
                                                           ("burst_requeue", "6")]
    assert "lost (a i-1, spot)" in res.requeues[0].reason
    assert res.terminations == ()


def test_config_validation() -> None:
    with pytest.raises(ValueError, match=r"budget\.per_day or budget\.per_month"):
        BurstConfig(enabled=True, offers=(A_SPOT,))
    with pytest.raises(ValueError, match="unique"):
        BurstConfig(offers=(A_SPOT, A_SPOT))
    prov = ProviderConfig("a", "command", command=CommandSettings(("up",), ("down",)))
    with pytest.raises(ValueError, match="configured provider"):
        BurstConfig(offers=(A_SPOT, B_SPOT), providers=(prov,))


def test_a_new_node_for_the_same_job_gets_a_new_request_id() -> None:
    # the first node for job 42 never became ready and was terminated; the job still waits
    dead = inst("i-1", A_SPOT, launched=NOW - 3000, state="terminated", terminated=NOW - 1000,
                request_id="fd-42-0")
    res = evaluate_burst([waiting()], FULL, [dead], config(), BurstState(), NOW)
    assert [p.request_id for p in res.provisions] == ["fd-42-0.1"]
    pending = inst("i-2", A_SPOT, launched=NOW, state="provisioning", request_id="fd-42-0.1",
                   team="other", project="x")
    res = evaluate_burst([waiting()], FULL, [dead, pending], config(), BurstState(), NOW + 30)
    assert res.provisions == () and res.verdicts["42"].reason == "waiting for burst node i-2"
