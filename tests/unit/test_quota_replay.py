"""Quota replay: lent guarantees are reclaimed after the grace; reserved ones sit idle."""

from __future__ import annotations

import io
import math

from collectors.formatting import duration_short
from scheduler.models import FleetSnapshot, ResourceRequest
from scheduler.placement import PreemptionRules
from scheduler.quota import Quota, QuotaBook
from scheduler.sim.command import print_quota_replay, quota_json
from scheduler.sim.quota_replay import QuotaScenario, WaitCause, run_quota_replay
from scheduler.sim.traces import TraceJob
from tests.unit.test_placement import node

GPU = ResourceRequest(cpu_milli=1000, gpu_count=1)
# borrowers fill both GPUs for an hour from t=0; the owner comes at t=1000 for 100 s
JOBS = [TraceJob("b1", GPU, 0.0, 3600.0), TraceJob("b2", GPU, 0.0, 3600.0),
        TraceJob("a1", GPU, 1000.0, 100.0)]
TEAMS = ["borrowers", "borrowers", "owners"]
SNAP = FleetSnapshot((node("n1", 2),))
RULES = PreemptionRules(grace_s=60.0, min_runtime_s=300.0, max_preemptions=3)


def test_lend_and_reclaim_waits_one_grace_and_one_cycle() -> None:
    book = QuotaBook(teams={"owners": Quota.of_gpus(None, 2), "borrowers": Quota.of_gpus(None)})
    r = run_quota_replay(SNAP, JOBS, TEAMS, QuotaScenario("lend", book, RULES), cycle_s=10.0)
    owners = next(t for t in r.teams if t.team == "owners")
    borrowers = next(t for t in r.teams if t.team == "borrowers")
    assert owners.guaranteed_jobs == 1
    assert owners.guaranteed_wait_p95_s == 60.0  # the grace; arrival was on a cycle boundary
    assert (borrowers.preemptions, r.preemptions) == (1, 1)
    # the victim had run 1000 s + the 60 s grace on one GPU
    assert math.isclose(borrowers.lost_gpu_hours, 1060 / 3600)
    assert r.started == 3 and r.never_started == 0


def test_reserved_guarantees_leave_gpus_idle() -> None:
    book = QuotaBook(teams={"owners": Quota.of_gpus(2, 2), "borrowers": Quota.of_gpus(0)},
                     borrowing=True)
    r = run_quota_replay(SNAP, JOBS, TEAMS, QuotaScenario("reserved", book), cycle_s=10.0)
    owners = next(t for t in r.teams if t.team == "owners")
    borrowers = next(t for t in r.teams if t.team == "borrowers")
    assert owners.guaranteed_wait_p95_s == 0.0 and r.preemptions == 0
    assert borrowers.gpu_hours == 0.0  # nothing may be borrowed: all is guaranteed to owners
    free = run_quota_replay(SNAP, JOBS, TEAMS, QuotaScenario("none", None), cycle_s=10.0)
    assert free.alloc_pct > r.alloc_pct


def test_a_slow_reclaim_is_told_by_cause() -> None:
    """The owner comes at t=100, before the borrowers' minimum runtime (300 s): it waits for
    that, then for the grace; the breakdown says so."""
    book = QuotaBook(teams={"owners": Quota.of_gpus(None, 2), "borrowers": Quota.of_gpus(None)})
    jobs = [*JOBS[:2], TraceJob("a1", GPU, 100.0, 100.0)]
    r = run_quota_replay(SNAP, jobs, TEAMS, QuotaScenario("lend", book, RULES), cycle_s=10.0)
    owners = next(t for t in r.teams if t.team == "owners")
    assert owners.guaranteed_wait_p95_s == 200.0 + 60.0  # until t=300, then the grace
    assert r.slow_guaranteed == 1
    assert r.slow_wait_s == {WaitCause.YOUNG: 200.0, WaitCause.GRACE: 60.0}
    out = io.StringIO()
    print_quota_replay(r, out)
    lines = out.getvalue().splitlines()
    assert "1 jobs within their guarantee waited over the grace plus one cycle; their wait " \
        "went to:" in lines
    assert f"   76.9 %  {duration_short(200.0)} per job  {WaitCause.YOUNG}" in lines
    assert quota_json(r)["slow_wait_s"] == {str(WaitCause.YOUNG): 200.0,
                                            str(WaitCause.GRACE): 60.0}
