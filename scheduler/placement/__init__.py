"""Placement: which queued task starts next, where, and why the others wait.

- `plan` (pure): snapshot and queue in, a `PlacementPlan` out (priorities, quotas, EASY backfill).
- `reservations`: the earliest start a blocked task is promised, which backfill must not delay.
- `reasons`: the one-line texts saying why a task waits.
"""

from scheduler.placement.plan import PlacementPlan, QueuedTask, plan

__all__ = ["PlacementPlan", "QueuedTask", "plan"]
