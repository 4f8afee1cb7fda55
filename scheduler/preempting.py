"""Acting on the plan's preemptions: notice, graceful stop, requeue; crash safe.

A preemption is first committed: the victim goes `running` -> `preempted` in one transaction
with its audit row (victim, beneficiary, reason) and its `job.preempted` event. Only then is
it stopped: the executor creates `$FLEETDECK_PREEMPT_FILE` and sends SIGTERM (`docker stop
-t`, `scancel --signal=TERM`), and kills after `grace_s`. Once it has ended it goes
`preempted` -> `queued` with the next attempt (`FLEETDECK_ATTEMPT`, `FLEETDECK_RESUME=1`),
its submit time kept and `preemptions` counted (so the requeue is no retry).

After a crash (even `kill -9` in the middle of a stop) the job is still `preempted`: the next
cycle stops it again (a stop of a job that already ended returns at once) and requeues it.
Nothing is lost, and the next attempt never starts before the previous one has ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol, TypeVar

from collectors.errors import FleetdeckError, NotFoundError
from collectors.events import Event, EventName
from collectors.store import Store
from collectors.store.audit import AuditEntry
from collectors.store.audit_kinds import ActionKind, TargetKind
from collectors.transport.base import Transport, TransportError
from scheduler import journal
from scheduler.executors.base import Executor, ExecutorError
from scheduler.journal import JobRow
from scheduler.placement import Preemption, PreemptionRules
from scheduler.states import JobState

log = logging.getLogger(__name__)
T = TypeVar("T")

Commit = Callable[[journal.Change], Awaitable[JobRow]]


class StoreRunner(Protocol):
    """Runs a function on the engine's store thread."""

    async def run(self, fn: Callable[[Store], T]) -> T: ...


def preempt_change(row: JobRow, p: Preemption, rules: PreemptionRules,
                   now: float) -> journal.Change:
    """`running` -> `preempted` with its audit row and `job.preempted` event."""
    reason = f"preempted for job {p.beneficiary_id}: {p.reason}"
    evidence = {"beneficiary": p.beneficiary_id, "kind": str(p.kind), "node": p.node,
                "grace_s": rules.grace_s, "attempt": row.attempt,
                "preemptions": row.preemptions + 1}
    event = Event(
        name=EventName.JOB_PREEMPTED, ts=now,
        summary=f"job {row.id} ({row.name}) preempted on {p.node} for job {p.beneficiary_id}",
        reason=reason, job_id=row.id, job_name=row.name, node=row.node, team=row.team,
        project=row.project, owner=row.user, evidence=evidence,
        actions=(f"fleetdeck explain {row.id}",), opt_in=tuple(row.notify))
    audit = AuditEntry("scheduler", ActionKind.PREEMPT, TargetKind.JOB, str(row.id), reason,
                       evidence)
    return journal.Change(row.id, journal.PREEMPTED, reason, "scheduler", (JobState.RUNNING,),
                          audit,
                          {}, (event,))


class Preempter:
    """Stops preempted jobs with notice and requeues them, one background task per job."""

    def __init__(self, *, executors: Mapping[str, Executor],
                 transport: Callable[[str], Awaitable[Transport | None]],
                 commit: Commit, clock: Callable[[], float], retry_s: float = 5.0) -> None:
        self.executors = executors
        self.transport = transport
        self.commit = commit
        self.clock = clock
        self.retry_s = retry_s
        self.busy: set[int] = set()  # jobs whose stop is in flight
        self._next_try: dict[int, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def act(self, preemptions: Sequence[Preemption], active: Sequence[JobRow],
                  rules: PreemptionRules, db: StoreRunner) -> None:
        """Commit the plan's preemptions (one transaction), then stop and requeue each."""
        now = self.clock()
        by_id = {r.id: r for r in active}
        changes = [preempt_change(by_id[int(p.victim_id)], p, rules, now)
                   for p in preemptions if int(p.victim_id) in by_id]
        done = await db.run(lambda s: journal.transition_many(s, changes, now=now))
        for row in done:
            if isinstance(row, JobRow):
                self.spawn(row, rules.grace_s)

    def resume(self, rows: Sequence[JobRow], rules: PreemptionRules | None) -> None:
        """Stop and requeue every `preempted` job not in hand (after a restart, or a failed
        try whose retry time has come)."""
        now = self.clock()
        grace = rules.grace_s if rules is not None else 0.0
        for row in rows:
            if (row.state == journal.PREEMPTED and row.id not in self.busy
                    and self._next_try.get(row.id, 0.0) <= now):
                self.spawn(row, grace)

    def spawn(self, row: JobRow, grace_s: float) -> None:
        self.busy.add(row.id)
        task = asyncio.create_task(self._stop_and_requeue(row, grace_s),
                                   name=f"preempt-{row.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _stop_and_requeue(self, row: JobRow, grace_s: float) -> None:
        try:
            handle = journal.handle_of(row)
            if handle is not None:
                transport = await self.transport(handle.node)
                if transport is None:
                    raise TransportError(f"node {handle.node} is unreachable")
                await self.executors[row.executor].stop(handle, transport, grace_s=grace_s,
                                                        notice=True)
            await self.commit(journal.Change(
                row.id, JobState.QUEUED, f"requeued after preemption: {row.reason}", "scheduler",
                (journal.PREEMPTED,), None,
                {"attempt": row.attempt + 1, "preemptions": row.preemptions + 1,
                 "node": None, "gpu_indices": None, "external_id": None, "started_at": None,
                 "ended_at": None, "exit_code": None}))
            self._next_try.pop(row.id, None)
        except (ExecutorError, TransportError, FleetdeckError) as e:
            # still `preempted`: tried again after retry_s (resume)
            self._next_try[row.id] = self.clock() + self.retry_s
            log.warning("preempting job %s: %s; retrying", row.id, e)
        except (journal.TransitionError, NotFoundError):
            self._next_try.pop(row.id, None)  # stopped by someone meanwhile
        finally:
            self.busy.discard(row.id)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

