"""Which job state changes are events, and what they say (pure).

`journal.transition_many` calls `for_change` for every change it applies and writes the
events in the same transaction, so no state change is reported without having happened and
none is lost by a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from collectors.events import Event, EventName
from scheduler.states import JobState


class JobLike(Protocol):
    """The fields of a stored job an event needs (`journal.JobRow` has them)."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def user(self) -> str: ...
    @property
    def project(self) -> str | None: ...
    @property
    def team(self) -> str | None: ...
    @property
    def node(self) -> str | None: ...
    @property
    def attempt(self) -> int: ...
    @property
    def gpu_indices(self) -> tuple[int, ...]: ...
    @property
    def notify(self) -> tuple[str, ...]: ...


# the state a job enters -> the event it is
_NAMES: dict[str, EventName] = {
    JobState.RUNNING: EventName.JOB_STARTED,
    JobState.SUCCEEDED: EventName.JOB_SUCCEEDED,
    JobState.FAILED: EventName.JOB_FAILED,
    JobState.LOST: EventName.JOB_LOST,
}


def name_for(from_state: str, to_state: str) -> EventName | None:
    """The event a change is, if any: starts, ends other than a stop, and requeues."""
    if to_state == JobState.QUEUED:
        return EventName.JOB_REQUEUED if from_state != JobState.QUEUED else None
    return _NAMES.get(to_state)


def for_change(job: JobLike, from_state: str, to_state: str, *, reason: str, actor: str,
               now: float, fields: Mapping[str, Any]) -> Event | None:
    """The event reporting `job` going from `from_state` to `to_state`, or None."""
    name = name_for(from_state, to_state)
    if name is None:
        return None
    node = fields.get("node", job.node) or job.node
    evidence: dict[str, Any] = {"from_state": from_state, "to_state": to_state,
                                "attempt": job.attempt, "actor": actor}
    if "exit_code" in fields:
        evidence["exit_code"] = fields["exit_code"]
    gpus = fields.get("gpu_indices", job.gpu_indices)
    if gpus:
        evidence["gpu_indices"] = list(gpus)
    where = f" on {node}" if node else ""
    verb = {EventName.JOB_STARTED: "started", EventName.JOB_SUCCEEDED: "succeeded",
            EventName.JOB_FAILED: "failed", EventName.JOB_LOST: "was lost",
            EventName.JOB_REQUEUED: "was requeued"}[name]
    actions: tuple[str, ...]
    if name in (EventName.JOB_FAILED, EventName.JOB_LOST):
        actions = (f"fleetdeck logs {job.id}", f"fleetdeck explain {job.id}")
    elif name is EventName.JOB_STARTED:
        actions = (f"fleetdeck logs {job.id} -f",)
    else:
        actions = (f"fleetdeck explain {job.id}",)
    return Event(name=name, ts=now, summary=f"job {job.id} ({job.name}) {verb}{where}",
                 reason=reason, job_id=job.id, job_name=job.name, node=node, team=job.team,
                 project=job.project, owner=job.user, evidence=evidence, actions=actions,
                 opt_in=tuple(job.notify))
