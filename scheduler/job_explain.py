"""`explain` of one job, as the runner answers it: what the store holds of the job (its row,
state changes and preemptions, read in one call on a reader thread, with any reads the caller
adds) and what the runner knows (its class, fair share, placement or reserved start)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from collectors.store import Store
from collectors.transport.base import Transport
from scheduler import journal
from scheduler.executors.identity import engine_user, job_identity
from scheduler.fairshare import FairShare
from scheduler.journal import JobRow
from scheduler.placement import PlacementPlan
from scheduler.priority import ClassBook


@dataclass(frozen=True, slots=True)
class JobRecord:
    """What the store says of one job for `explain`."""

    row: JobRow
    events: list[dict[str, Any]]
    preemptions: list[dict[str, Any]]


def job_record(store: Store, job_id: int) -> JobRecord:
    """The job's row, events and preemption audit (raises `NotFoundError`): on a reader."""
    return JobRecord(journal.get(store, job_id), journal.events(store, job_id),
                     journal.preemption_audit(store, job_id))


async def explanation(record: JobRecord, *, classes: ClassBook, fair: FairShare,
                      transport: Callable[[str], Awaitable[Transport | None]],
                      last_plan: PlacementPlan | None) -> dict[str, Any]:
    """The runner's part of `explain` (plain data)."""
    row = record.row
    cls = classes.resolve(row.spec.priority_class)
    out: dict[str, Any] = {"id": row.id, "name": row.name, "state": row.state,
                           "reason": row.reason, "events": record.events,
                           "priority_class": {"name": cls.name, "priority": cls.priority,
                                              "preemptible": cls.preemptible},
                           "fair_share": round(fair.factor(row.user, row.project or ""), 4),
                           "preemptions": record.preemptions}
    if row.state in journal.HOLDING or row.state in journal.TERMINAL:
        out["placement"] = {"node": row.node, "gpu_indices": list(row.gpu_indices),
                            "gpu_milli": row.gpu_milli, "executor": row.executor}
        conn = await transport(row.node) if row.node else None
        if conn is not None:
            ident = job_identity(conn.node, engine_user())
            out["placement"]["runs_as"] = ident.job_runs_as(row.user, row.executor or "")
    elif last_plan is not None:
        key = str(row.id)
        if key in last_plan.reservations:
            out["reserved_start"] = last_plan.reservations[key]
    return out
