"""Placement: which queued task starts next, where, and why the others wait.

- `plan` (pure): snapshot and queue in, a `PlacementPlan` out (priorities, quotas, EASY backfill).
- `reservations`: the earliest start a blocked task is promised, which backfill must not delay.
- `preemption`: which running jobs to preempt (reclaim a guarantee, higher class)
- `reasons`: why a task waits (`WaitReason`: a `WaitKind` and one line a person reads).
"""

from scheduler.placement.plan import PlacementPlan, QueuedTask, plan
from scheduler.placement.preemption import Preemption, PreemptionRules, PreemptKind
from scheduler.placement.reasons import WaitKind, WaitReason

__all__ = [
    "PlacementPlan",
    "PreemptKind",
    "Preemption",
    "PreemptionRules",
    "QueuedTask",
    "WaitKind",
    "WaitReason",
    "plan",
]
