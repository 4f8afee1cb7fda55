"""The stop journal: a stop's intent (who, why, when, grace) is written before the executor acts.

Every stop of an active job (a user's `stop`, a timeout, an idle stop, a preemption) goes
through `JobRunner.stop`, which records a `StopIntent` here first. The job's final transition
(`stopped`, or `queued` for a requeue) deletes the intent in the same transaction
(`journal.transition_many` calls `clear`). An intent still present after a restart is a stop
the engine did not finish: the runner carries it out again and ends the job `stopped` with the
intent's reason and its one audit row, never `failed` with the kill's exit code.

Store edge: functions take a `Store` (or a connection inside a transaction) and run on the
engine's store thread.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

from collectors.store import Store
from collectors.store.audit import AuditEntry, utc
from collectors.store.audit_kinds import ActionKind, TargetKind


@dataclass(frozen=True, slots=True)
class StopIntent:
    """A stop asked for and not yet finished."""

    job_id: int
    attempt: int
    actor: str
    action: ActionKind  # the audit action: stop | timeout | idle_stop | preempt ...
    reason: str
    grace_s: float
    requested_at_s: float
    requeue: bool = False
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def audit(self) -> AuditEntry:
        """The one audit row the stop writes when it ends."""
        return AuditEntry(self.actor, self.action, TargetKind.JOB, str(self.job_id), self.reason,
                          self.evidence)


def record(store: Store, intent: StopIntent) -> None:
    """Journal `intent` (replacing an older one for the same job), committed on return."""
    store.con.execute(
        "INSERT OR REPLACE INTO stop_intents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [intent.job_id, intent.attempt, intent.actor, intent.action, intent.reason,
         json.dumps(dict(intent.evidence), default=str), intent.grace_s, intent.requeue,
         utc(intent.requested_at_s)])


def pending(store: Store) -> dict[int, StopIntent]:
    """Every unfinished stop, by job id."""
    rows = store.con.execute(
        "SELECT job_id, attempt, actor, action, reason, evidence, grace_s, requeue, "
        "requested_at FROM stop_intents").fetchall()
    return {int(r[0]): _intent(r) for r in rows}


def clear(con: duckdb.DuckDBPyConnection, job_ids: Iterable[int]) -> None:
    """Forget the intents of jobs whose stop ended (inside the ending transaction)."""
    ids = sorted(set(job_ids))
    if ids:
        con.execute("DELETE FROM stop_intents WHERE job_id IN (SELECT unnest(?::BIGINT[]))",
                    [ids])


def _intent(r: tuple[Any, ...]) -> StopIntent:
    requested: datetime = r[8]  # naive UTC, as every store timestamp
    return StopIntent(
        job_id=int(r[0]), attempt=int(r[1]), actor=str(r[2]), action=ActionKind(r[3]),
        reason=str(r[4]), evidence=json.loads(r[5]) if r[5] else {}, grace_s=float(r[6]),
        requeue=bool(r[7]), requested_at_s=requested.replace(tzinfo=UTC).timestamp())
