"""Fair share: decayed GPU-hours, factors against shares, queue order within a priority."""

from __future__ import annotations

import math

import pytest

from scheduler.fairshare import FairShare, UsageRecord, decayed_gpu_hours
from scheduler.fit import make_policy
from scheduler.models import FleetSnapshot
from scheduler.placement import QueuedTask, plan
from scheduler.priority import BATCH, ClassBook, PriorityClass
from scheduler.quota import Quota, QuotaBook
from tests.unit.test_placement import NOW, node, task

HOUR = 3600.0
DAY = 86400.0


def test_an_hour_of_use_one_half_life_ago_counts_half() -> None:
    # one GPU for one hour, ending one half-life ago (the hour is short against the half-life)
    rec = UsageRecord("ann", "vision", 1.0, NOW - DAY - HOUR, NOW - DAY)
    got = decayed_gpu_hours([rec], NOW, DAY)
    assert got[("user", "ann")] == pytest.approx(0.5, rel=0.02)
    assert got[("project", "vision")] == got[("user", "ann")]
    # a running job counts up to now, undecayed at its end
    running = decayed_gpu_hours([UsageRecord("bob", "", 2.0, NOW - 60, None)], NOW, DAY)
    assert running == {("user", "bob"): pytest.approx(2 * 60 / HOUR, rel=1e-3)}


def test_bad_half_life_is_refused() -> None:
    with pytest.raises(ValueError, match="half_life_s"):
        decayed_gpu_hours([], NOW, math.nan)


def test_factor_is_one_for_idle_users_and_half_at_their_share() -> None:
    usage = {("user", "ann"): 10.0, ("user", "bob"): 10.0}
    fs = FairShare(usage, None)
    assert fs.factor("ann", "") == pytest.approx(0.5)  # used exactly an equal share
    assert fs.factor("cy", "") == 1.0
    # a bigger share (guarantee) for ann: the same use weighs less
    book = QuotaBook(users={"ann": Quota.of_gpus(8, 6), "bob": Quota.of_gpus(2)})
    fs = FairShare(usage, book)
    assert fs.factor("ann", "") > fs.factor("bob", "")


def test_light_users_go_first_within_a_priority() -> None:
    fs = FairShare({("user", "heavy"): 100.0, ("user", "light"): 1.0}, None)

    def queued(tid: str, user: str, submitted: float, prio: int = 0) -> QueuedTask:
        t = task(tid, 1, user=user, submitted=submitted)
        return QueuedTask(t.id, t.request, user, t.project, t.team, 0, submitted, None, prio,
                          fs.factor(user, t.project))

    queue = [queued("h", "heavy", 0.0), queued("l", "light", 10.0),
             queued("x", "heavy", 20.0, prio=5)]
    snap = FleetSnapshot((node("n1", 2),), (), NOW)
    p = plan(snap, queue, policy=make_policy("first-fit"), now=NOW)
    # class priority first, then the light user despite a later submit
    assert [tid for tid, _ in p.assignments] == ["x", "l"]


def test_priority_classes_resolve_with_a_default() -> None:
    book = ClassBook.of([PriorityClass("interactive", 100, False), PriorityClass("batch")],
                       [False, True])
    assert book.resolve(None).name == "batch"
    assert book.resolve("interactive").preemptible is False
    assert book.resolve("gone").name == "batch"
    assert ClassBook().resolve(None) == BATCH
    with pytest.raises(ValueError, match="more than one default"):
        ClassBook.of([PriorityClass("a"), PriorityClass("b")], [True, True])
