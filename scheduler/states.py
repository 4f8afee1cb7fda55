"""Job lifecycle states: the `jobs.state` column and the `job_events` from/to columns.

`JobState` members are `str`s equal to the stored values, so rows, wire replies and SQL keep
the same strings ("queued", "running", ...).

    queued -> starting -> running -> succeeded | failed | stopped | lost
    lost, failed, starting, running -> queued (requeue); queued -> stopped
    running -> preempted -> queued | stopped | lost
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"
    LOST = "lost"
    # still holding its resources while it gets its notice and grace, then requeued
    PREEMPTED = "preempted"


ACTIVE: tuple[JobState, ...] = (JobState.STARTING, JobState.RUNNING)
TERMINAL: tuple[JobState, ...] = (
    JobState.SUCCEEDED,
    JobState.FAILED,
    JobState.STOPPED,
    JobState.LOST,
)
HOLDING: tuple[JobState, ...] = (*ACTIVE, JobState.PREEMPTED)  # holds resources on a node
STATES: tuple[JobState, ...] = (JobState.QUEUED, *ACTIVE, JobState.PREEMPTED, *TERMINAL)

# Allowed transitions; `lost` and `failed` jobs may be requeued, nothing leaves the other
# terminal states.
NEXT: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.STARTING, JobState.STOPPED}),
    JobState.STARTING: frozenset(
        {
            JobState.RUNNING,
            JobState.FAILED,
            JobState.STOPPED,
            JobState.LOST,
            JobState.QUEUED,
            JobState.SUCCEEDED,
        }
    ),
    JobState.RUNNING: frozenset(
        {
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.STOPPED,
            JobState.LOST,
            JobState.QUEUED,
            JobState.PREEMPTED,
        }
    ),
    JobState.PREEMPTED: frozenset({JobState.QUEUED, JobState.STOPPED, JobState.LOST}),
    JobState.LOST: frozenset({JobState.QUEUED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset({JobState.QUEUED}),
    JobState.STOPPED: frozenset(),
}
