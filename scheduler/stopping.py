"""Stopping jobs through the stop journal (`scheduler/stop_journal.py`).

`Stopper.stop` journals the intent (who, why, when, grace) before the executor acts, then
ends the job `stopped` (or `queued` for a requeue) with the intent's reason and one audit row.
`resume` carries out a journaled stop again after a restart (or once its node is back);
`end` records the end of a stop whose job already exited (never `failed 137`).
The runner owns one `Stopper` and shares its launch bookkeeping with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from collectors.errors import FleetdeckError
from collectors.events import Event
from collectors.store.audit import AuditEntry
from collectors.store.audit_kinds import ActionKind, TargetKind
from collectors.transport.base import Transport, TransportError
from scheduler import journal, stop_journal
from scheduler.executors.base import Executor, ExecutorError, Handle
from scheduler.journal import JobRow, handle_of
from scheduler.live import LiveJobs
from scheduler.preempting import StoreRunner
from scheduler.states import JobState
from scheduler.stop_journal import StopIntent

log = logging.getLogger(__name__)


class Stopper:
    """Stops active jobs; `stopping` holds the ones in progress (the poll leaves them alone),
    `intents` the journaled stops not yet finished."""

    def __init__(self, *, db: StoreRunner, executors: Mapping[str, Executor],
                 transport: Callable[[str], Awaitable[Transport | None]],
                 clock: Callable[[], float], grace_s: float, live: LiveJobs,
                 launching: set[int], slot: Callable[[str], AbstractAsyncContextManager[Any]],
                 tasks: set[asyncio.Task[Any]], on_done: Callable[[int], object]) -> None:
        self.db = db
        self.executors = executors
        self.transport = transport
        self.clock = clock
        self.grace_s = grace_s
        self.live = live
        self.launching = launching  # the runner's jobs being started
        self.slot = slot  # the runner's per-node bound on executor calls
        self.tasks = tasks  # the runner's background tasks (cancelled on close)
        self.on_done = on_done  # a stop finished or failed: the runner forgets unsure starts
        self.stopping: set[int] = set()
        self.intents: dict[int, StopIntent] = {}

    async def stop(self, job_id: int, *, actor: str, reason: str, action: ActionKind,
                   evidence: Mapping[str, Any] | None, requeue: bool,
                   grace_s: float | None, events: Sequence[Event]) -> JobRow:
        """`JobRunner.stop`: a queued job ends at once; an active one is journaled, stopped by
        its executor, and ended with the intent's reason and audit."""
        row = await self.db.run(lambda s: journal.get(s, job_id))
        audit = AuditEntry(actor, action, TargetKind.JOB, str(job_id), reason, evidence or {})
        now = self.clock()
        if row.state == JobState.QUEUED:
            ended = await self.db.run(lambda s: journal.transition(
                s, job_id, JobState.STOPPED, reason=reason, actor=actor, now=now, audit=audit,
                events=events))
            self.live.apply([ended])
            return ended
        if row.state not in journal.HOLDING:
            raise journal.TransitionError(f"job {job_id} is {row.state}; nothing to stop")
        intent = StopIntent(job_id, row.attempt, actor, action, reason,
                            self.grace_s if grace_s is None else grace_s,
                            now, requeue, dict(evidence or {}))
        # journaled before the executor acts: a restart finishes what this began
        await self.db.run(lambda s: stop_journal.record(s, intent))
        self.intents[job_id] = intent
        return await self.carry_out(row, intent, events)

    async def carry_out(self, row: JobRow, intent: StopIntent,
                        events: Sequence[Event] = ()) -> JobRow:
        """Stop an active job as `intent` says and record its end with the intent's audit."""
        job_id = row.id
        handle = handle_of(row)
        self.stopping.add(job_id)
        try:
            if handle is None and row.state == JobState.STARTING and row.id not in self.launching:
                # an unconfirmed start (engine restart, node out of reach): it may run there
                handle = await self._find_started(row)
            if handle is not None:
                transport = await self.transport(handle.node)
                if transport is None:
                    raise FleetdeckError(f"job {job_id}: node {handle.node} is unreachable; "
                                         "cannot stop it now")
                await self.executors[row.executor].stop(handle, transport, grace_s=intent.grace_s)
            return await self.end(row, intent, events)
        finally:
            self.stopping.discard(job_id)
            self.on_done(job_id)

    async def end(self, row: JobRow, intent: StopIntent,
                  events: Sequence[Event] = ()) -> JobRow:
        """Record a stop's end: `stopped` (or `queued` for a requeue) with its audit row; the
        same commit deletes the intent."""
        fields: dict[str, Any] = {"attempt": row.attempt + 1, "node": None, "gpu_indices": None,
                                  "external_id": None, "started_at": None} if intent.requeue else {}
        ended = await self.db.run(lambda s: journal.transition(
            s, row.id, JobState.QUEUED if intent.requeue else JobState.STOPPED,
            reason=intent.reason, actor=intent.actor, now=self.clock(), audit=intent.audit(),
            events=events, **fields))
        self.intents.pop(row.id, None)
        self.live.apply([ended])
        return ended

    def resume(self, row: JobRow, intent: StopIntent) -> None:
        """Carry out a journaled stop again (after a restart, or once its node is back)."""
        async def run() -> None:
            try:
                await self.carry_out(row, intent)
            except (FleetdeckError, ExecutorError, TransportError,
                    journal.TransitionError) as e:
                log.warning("stop of job %s not finished yet: %s", row.id, e)

        if row.id not in self.stopping:
            self.stopping.add(row.id)  # until the task runs: poll leaves it alone
            task = asyncio.create_task(run())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _find_started(self, row: JobRow) -> Handle | None:
        """This attempt of a `starting` job on its node, if an earlier start made it."""
        if row.node is None:
            return None
        transport = await self.transport(row.node)
        if transport is None:
            raise FleetdeckError(f"job {row.id}: node {row.node} is unreachable; "
                                 "cannot stop it now")
        async with self.slot(row.node):
            found = await self.executors[row.executor].discover(transport)
        return next((d.handle for d in found
                     if (d.job_id, d.attempt) == (row.id, row.attempt)), None)
