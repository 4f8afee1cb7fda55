"""Policy decisions and state changes as events (pure): idle, drains, nodes, burst, budgets."""

from __future__ import annotations

from datetime import UTC, datetime

from collectors.events import EventName, node_state_event
from scheduler.policies.audit import IDLE_ACTOR, Action
from scheduler.policies.burst import BudgetLimits
from scheduler.policies.events import budget_events, events_of, idle_event, node_event
from scheduler.policies.spend import BudgetUse

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC).timestamp()


class Job:
    id = 12
    name = "train"
    user = "alice"
    project = "vision"
    team = "cv"
    node = "n1"
    attempt = 0
    gpu_indices = (0,)
    notify = ()


def test_idle_warning_tells_the_snooze_command_stop_time_and_evidence() -> None:
    ev = {"window_s": 1800.0, "gpu_util_max_pct": 0.4, "gpu_mem_held_bytes": 20 << 30,
          "stop_at": NOW + 1800, "samples": 99}
    e = idle_event(Action("idle_warn", "job", "12", "idle", IDLE_ACTOR, NOW, ev), Job())
    assert e is not None and e.name is EventName.IDLE_WARNED
    assert e.summary == "job 12 (train) is idle and will be stopped at 2026-12-02 12:30:00 UTC"
    assert e.actions[0] == 'fleetdeck snooze 12 --hours 2 --reason "still working: <why>"'
    assert e.reason == ("GPU utilization at most 0.4% over 30m, 20.0 GiB GPU memory held")
    assert e.evidence["window_s"] == 1800.0 and "samples" not in e.evidence
    assert (e.owner, e.team, e.node) == ("alice", "cv", "n1")
    dry = Action("idle_warn", "job", "12", "idle", IDLE_ACTOR, NOW, ev, dry_run=True)
    assert idle_event(dry, Job()) is None  # dry runs tell nobody


def test_written_actions_tell_warnings_clears_and_drains_not_stops() -> None:
    acts = [Action("idle_warn", "job", "12", "x", IDLE_ACTOR, NOW, {}),
            Action("idle_clear", "job", "12", "busy again", IDLE_ACTOR, NOW, {}),
            Action("idle_stop", "job", "12", "x", IDLE_ACTOR, NOW, {}),  # told with the stop
            Action("drain", "node", "n2", "Xid 79", "policy:health", NOW, {}),
            Action("gpu_unhealthy", "gpu", "n2:0", "Xid 79", "policy:health", NOW, {})]
    assert [e.name for e in events_of(acts, {12: Job()})] == [
        EventName.IDLE_WARNED, EventName.IDLE_CLEARED, EventName.NODE_DRAINED]
    drained = node_event(acts[3])
    assert drained is not None and drained.node == "n2" and "uncordon n2" in drained.actions[0]


def test_node_states_tell_unreachable_once_and_recovery() -> None:
    assert node_state_event("n1", "up", "unreachable", "ssh: timeout", NOW).name \
        is EventName.NODE_UNREACHABLE  # type: ignore[union-attr]
    assert node_state_event("n1", "unreachable", "unreachable", "x", NOW) is None
    assert node_state_event("n1", "unreachable", "up", None, NOW).name \
        is EventName.NODE_RECOVERED  # type: ignore[union-attr]
    assert node_state_event("n1", None, "up", None, NOW) is None


def test_budget_thresholds_are_told_once_per_period() -> None:
    limits = {("global", ""): BudgetLimits(per_day=100.0), ("team", "cv"): BudgetLimits(
        per_month=1000.0)}
    use = {("global", "", "daily"): BudgetUse(70.0, 15.0),  # 85 %
           ("team", "cv", "monthly"): BudgetUse(200.0),  # 20 %
           ("project", "x", "daily"): BudgetUse(1e9)}  # no limit
    [e] = budget_events(use, limits, "EUR", NOW, announced=())
    assert e.name is EventName.BUDGET_THRESHOLD and e.evidence["threshold_pct"] == 80
    assert e.summary.startswith("the fleet used 85% of its daily burst budget (85.00 of 100.00")
    assert budget_events(use, limits, "EUR", NOW, announced=[e.evidence["key"]]) == []
    use[("global", "", "daily")] = BudgetUse(101.0)
    [full] = budget_events(use, limits, "EUR", NOW, announced=[e.evidence["key"]])
    assert full.evidence["threshold_pct"] == 100
