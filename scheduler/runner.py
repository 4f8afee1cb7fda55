"""The scheduler's acting loop: place queued jobs, start them, watch them, reconcile.

Placement itself is pure (`scheduler.placement.plan`); this module is the edge that acts on
its decisions. Crash safety: a job is marked `starting` (committed) before its executor is
called, and executors' `start` is idempotent per (job id, attempt), so after a crash or
`kill -9` a `starting` job is started again and the executor adopts what the first call
started: nothing runs twice, nothing queued is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from collectors.errors import FleetdeckError, NotFoundError
from collectors.events import Event
from collectors.health import SlurmPoolView
from collectors.store import Store
from collectors.store.audit import AuditEntry
from collectors.store.audit_kinds import ActionKind
from collectors.transport.base import Transport, TransportError
from scheduler import journal, slurm_pool, stop_journal
from scheduler.executors.base import Executor, ExecutorError, Handle, Launch, RunState, Status
from scheduler.fairshare import FairShare, decayed_gpu_hours
from scheduler.fit import FitPolicy
from scheduler.group_commit import GroupCommit
from scheduler.job_explain import explanation, job_record
from scheduler.jobspec import ARRAY_COUNT_ENV, ARRAY_INDEX_ENV, JobSpec
from scheduler.journal import JobRow, handle_of
from scheduler.live import LiveJobs
from scheduler.models import (
    Assignment,
    FleetSnapshot,
    GpuSlot,
    NodeCapacity,
    RunningAllocation,
)
from scheduler.placement import PlacementPlan, QueuedTask, plan
from scheduler.placement.preemption import PreemptionRules
from scheduler.placement.reasons import WaitKind
from scheduler.preempting import Preempter, StoreRunner
from scheduler.priority import ClassBook
from scheduler.quota import QuotaBook
from scheduler.states import JobState
from scheduler.stopping import Stopper

log = logging.getLogger(__name__)
T = TypeVar("T")
FAIR_SHARE_REFRESH_S = 60.0
STATUS_BATCH = 64  # jobs per status call: one node's poll stays well within its timeout


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    backfill: bool = True
    stop_grace_s: float = 10.0
    node_concurrency: int = 8  # executor calls in flight per node (sshd MaxSessions is 10)
    start_retry_s: float = 5.0  # a start whose outcome is unknown is retried after this
    start_give_up_s: float = 600.0  # ... until the node has been out of reach this long
    slurm_pools: Mapping[str, str] = field(default_factory=dict)  # pool -> login node
    slurm_partitions: Mapping[str, str | None] = field(default_factory=dict)
    preemption: PreemptionRules | None = None  # None: preemption off
    classes: ClassBook = field(default_factory=ClassBook)
    fair_share_half_life_s: float = 7 * 86400.0


def epoch(ts: datetime | None) -> float | None:
    return None if ts is None else ts.replace(tzinfo=UTC).timestamp()


def choose_executor(spec: JobSpec, pool: str | None, slurm_pools: Mapping[str, str]) -> str:
    """`auto` resolves to slurm for Slurm pools, docker with an image, else process."""
    if spec.executor != "auto":
        return spec.executor
    if pool is not None and pool in slurm_pools:
        return "slurm"
    return "docker" if spec.image else "process"


def allocations(rows: Sequence[JobRow],
                classes: ClassBook | None = None) -> list[RunningAllocation]:
    """What jobs holding resources (running, starting, preempted) hold, with their class;
    only running jobs may become victims, preempted ones are leaving."""
    book = classes or ClassBook()
    out = []
    for r in rows:
        if r.node is None or r.state not in journal.HOLDING:
            continue
        a = Assignment(node=r.node, gpu_indices=r.gpu_indices, gpu_milli=r.gpu_milli,
                       cpu_milli=r.cpu_milli or 0, mem_bytes=r.mem_bytes or 0)
        cls = book.resolve(r.spec.priority_class)
        out.append(RunningAllocation(
            job_id=str(r.id), user=r.user, project=r.project or "", team=r.team or "",
            assignment=a, started_at=epoch(r.started_at) or epoch(r.submitted_at) or 0.0,
            max_runtime_s=r.max_runtime_s, class_priority=cls.priority,
            preemptible=cls.preemptible and not r.spec.protect and r.state == JobState.RUNNING,
            preemptions=r.preemptions, leaving=r.state == journal.PREEMPTED))
    return out


def snapshot(inventory: Sequence[NodeCapacity], running: Sequence[RunningAllocation],
             now: float) -> FleetSnapshot:
    """Capacity with what running jobs hold applied."""
    by_node: dict[str, list[RunningAllocation]] = {}
    for r in running:
        by_node.setdefault(r.assignment.node, []).append(r)
    known = {n.name for n in inventory}
    # Jobs on nodes without telemetry (unreachable, not sampled yet) still count for quotas
    # and reservations: such a node appears unschedulable, holding exactly what they hold.
    inventory = [*inventory, *(_held_only(name, held) for name, held in by_node.items()
                               if name not in known)]
    nodes = []
    for n in inventory:
        held = by_node.get(n.name, [])
        if not held and all(g.alloc_milli <= 1000 for g in n.gpus):
            nodes.append(n)  # nothing to apply: most of a fleet, 9 copies a node saved
            continue
        gpu_alloc: dict[int, int] = {}
        for r in held:
            for i in r.assignment.gpu_indices:
                gpu_alloc[i] = gpu_alloc.get(i, 0) + r.assignment.gpu_milli
        gpus = tuple(replace(g, alloc_milli=min(1000, g.alloc_milli + gpu_alloc.get(g.index, 0)))
                     for g in n.gpus)
        nodes.append(replace(
            n, gpus=gpus,
            cpu_alloc_milli=n.cpu_alloc_milli + sum(r.assignment.cpu_milli for r in held),
            mem_alloc_bytes=n.mem_alloc_bytes + sum(r.assignment.mem_bytes for r in held)))
    return FleetSnapshot(nodes=tuple(nodes), running=tuple(running), now=now)


def _held_only(name: str, held: Sequence[RunningAllocation]) -> NodeCapacity:
    indices = sorted({i for r in held for i in r.assignment.gpu_indices})
    return NodeCapacity(
        name=name, pool="", schedulable=False,
        cpu_milli=sum(r.assignment.cpu_milli for r in held),
        mem_bytes=sum(r.assignment.mem_bytes for r in held),
        gpus=tuple(GpuSlot(index=i, model="unknown", mem_total_bytes=0) for i in indices))


def launch_of(row: JobRow, *, partition: str | None = None) -> Launch:
    spec = row.spec
    env = dict(spec.env)
    if row.array_index is not None:
        env[ARRAY_INDEX_ENV] = str(row.array_index)
        env[ARRAY_COUNT_ENV] = str(spec.array)
    gpu_count = row.gpu_count
    return Launch(
        job_id=row.id, attempt=row.attempt, name=row.name, user=row.user,
        project=row.project or "", argv=spec.command, shell=spec.shell, image=spec.image,
        env=env, secret_env=spec.secret_env, workdir=spec.workdir, gpu_indices=row.gpu_indices,
        gpu_count=gpu_count if not row.gpu_indices else None,
        gpu_milli=row.gpu_milli or 1000, cpu_milli=row.cpu_milli or 0,
        mem_bytes=row.mem_bytes or 0, max_runtime_s=spec.max_runtime_s, partition=partition,
        resume=row.preemptions > 0)


class JobRunner:
    """Places and runs jobs; every effect is journaled before or as it happens."""

    def __init__(
        self,
        *,
        db: StoreRunner,
        executors: Mapping[str, Executor],
        transport: Callable[[str], Awaitable[Transport | None]],
        inventory: Callable[[], Sequence[NodeCapacity]],
        policy: FitPolicy,
        quotas: QuotaBook | None,
        settings: RunnerSettings,
        clock: Callable[[], float],
        reads: StoreRunner | None = None,
        slurm: Callable[[], Mapping[str, SlurmPoolView]] | None = None,
    ) -> None:
        self.db = db
        self.reads = reads or db  # answers questions (explain) apart from the writer
        self.live = LiveJobs()  # queued and active jobs, for reads that need no store
        self.executors = executors
        self.transport = transport
        self.inventory = inventory
        self.slurm = slurm  # the Slurm pools as their controllers report them
        self.policy = policy
        self.quotas = quotas
        self.settings = settings
        self.clock = clock
        self.last_plan: PlacementPlan | None = None
        self._launching: set[int] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._cycle_lock = asyncio.Lock()
        self._commit = GroupCommit(db, clock, self.live)
        self._slots: dict[str, asyncio.Semaphore] = {}
        # `starting` jobs whose start could not reach the node: (first failure, next try)
        self._unsure: dict[int, tuple[float, float]] = {}
        self.stops = Stopper(db=db, executors=executors, transport=transport, clock=clock,
                             grace_s=settings.stop_grace_s, live=self.live,
                             launching=self._launching, slot=self._slot, tasks=self._tasks,
                             on_done=lambda job_id: self._unsure.pop(job_id, None))
        self.preempter = Preempter(executors=executors, transport=transport,
                                   commit=self._commit, clock=clock,
                                   retry_s=settings.start_retry_s)
        self._fair: tuple[float, FairShare] | None = None  # (computed at, factors)

    def _slot(self, node: str) -> asyncio.Semaphore:
        """Bounds executor calls per node: one SSH connection carries them all."""
        sem = self._slots.get(node)
        if sem is None:
            sem = self._slots[node] = asyncio.Semaphore(self.settings.node_concurrency)
        return sem

    async def _tx(self, job_id: int, to_state: JobState, *, reason: str, actor: str,
                  expect: Sequence[JobState] | None = None, audit: AuditEntry | None = None,
                  **fields: Any) -> JobRow:
        return await self._commit(journal.Change(
            job_id, to_state, reason, actor, tuple(expect) if expect is not None else None,
            audit, fields))

    # -- requests -----------------------------------------------------------------------
    async def submit(self, spec: JobSpec, *, actor: str) -> list[int]:
        def write(store: Store) -> list[JobRow]:
            ids = journal.submit(store, spec, actor=actor, now=self.clock())
            return journal.list_jobs(store, ids=ids)

        rows = await self.db.run(write)
        self.live.apply(rows)
        return [r.id for r in rows]

    async def stop(self, job_id: int, *, actor: str, reason: str,
                   action: ActionKind = ActionKind.STOP, evidence: Mapping[str, Any] | None = None,
                   requeue: bool = False, grace_s: float | None = None,
                   events: Sequence[Event] = ()) -> JobRow:
        """Stop a job (graceful, then forced after `grace_s`, default the runner's), audited;
        `requeue` puts it back in the queue. `events` are told with the change."""
        return await self.stops.stop(job_id, actor=actor, reason=reason, action=action,
                                     evidence=evidence, requeue=requeue, grace_s=grace_s,
                                     events=events)

    async def logs(self, job_id: int, *, tail_lines: int | None,
                   follow: bool) -> AsyncIterator[bytes]:
        row = await self.db.run(lambda s: journal.get(s, job_id))
        handle = handle_of(row)
        if handle is None:
            raise NotFoundError(f"job {job_id} has no output yet (it is {row.state})")
        transport = await self.transport(handle.node)
        if transport is None:
            raise FleetdeckError(f"job {job_id}: node {handle.node} is unreachable")
        async for chunk in self.executors[row.executor].logs(
                handle, transport, tail_lines=tail_lines, follow=follow):
            yield chunk

    async def explain(self, job_id: int, also: Callable[[Store], T]) -> tuple[dict[str, Any], T]:
        """The job's `explain` (plain data; raises `NotFoundError`) and `also(store)`, the
        caller's own reads of it, asked in the same reader call: one thread hop."""
        record, extra = await self.reads.run(lambda s: (job_record(s, job_id), also(s)))
        return await explanation(record, classes=self.settings.classes,
                                 fair=await self._fair_share(), transport=self.transport,
                                 last_plan=self.last_plan), extra

    # -- the loop -----------------------------------------------------------------------
    async def cycle(self) -> PlacementPlan:
        """One placement cycle: plan, mark `starting`, launch in the background."""
        async with self._cycle_lock:
            now = self.clock()
            if not self.live.current():  # read again only once a commit changed jobs
                at = journal.jobs_writes()  # before the read: a commit during it makes it old
                self.live.replace(await self.db.run(lambda s: journal.list_jobs(
                    s, states=(JobState.QUEUED, *journal.HOLDING))), at)
            rows = self.live.rows()
            active = [r for r in rows if r.state in journal.ACTIVE]
            rules = self.settings.preemption
            self.preempter.resume(rows, rules)  # after a restart: finish what was begun
            queued = [r for r in rows if r.state == JobState.QUEUED and r.id not in self._launching]
            for r in active:  # after a restart or an unreachable node: start is idempotent
                if (r.state == JobState.STARTING and r.id not in self._launching
                        and self._unsure.get(r.id, (0.0, 0.0))[1] <= now):
                    self._spawn_launch(r)
            holding = [r for r in rows if r.state in journal.HOLDING]
            allocs = allocations(holding, self.settings.classes)
            # with preemption on, a Slurm pool whose controller was read is a node of the plan
            pools = {} if rules is None or self.slurm is None else slurm_pool.capacities(
                self.slurm(), self.settings.slurm_partitions)
            if pools:
                allocs = slurm_pool.on_pools(allocs, slurm_pool.held_by_slurm(holding), pools)
            slurm = [r for r in queued if self._slurm_pool(r) not in (None, *pools)]
            pooled = [r for r in queued if self._slurm_pool(r) in pools]
            placeable = [r for r in queued if self._slurm_pool(r) is None]
            snap = snapshot(self.inventory(), allocs, now)
            fair = await self._fair_share()
            queue = [self._task(r, fair) for r in placeable]
            result = await asyncio.to_thread(
                plan, snap, queue, policy=self.policy, quotas=self.quotas, now=now,
                backfill=self.settings.backfill, preemption=rules)
            self.last_plan = result
            by_id = {r.id: r for r in placeable}
            changes = [self._placement(by_id[int(task_id)], a, snap)
                       for task_id, a in result.assignments]
            if pooled:  # second plan: the pools' nodes, counting this cycle's starts
                squeue = [self._task(r, fair) for r in pooled]
                ssnap = snapshot(list(pools.values()), [*allocs, *slurm_pool.started(
                    queue, result.assignments, now)], now)
                sres = await asyncio.to_thread(
                    plan, ssnap, squeue, policy=self.policy, quotas=self.quotas, now=now,
                    backfill=self.settings.backfill, preemption=rules)
                for task_id, _ in sres.assignments:
                    job = next(r for r in pooled if r.id == int(task_id))
                    pool = self._slurm_pool(job)
                    assert pool is not None
                    changes.append(self._placement(
                        job, Assignment(node=self.settings.slurm_pools[pool]), snap, pool=pool))
                # what the pool's node can never take (a model, a label) is left to Slurm
                slurm += [r for r in pooled if (w := sres.pending.get(str(r.id))) is not None
                          and w.kind is WaitKind.NEVER_FITS]
                placeable += [r for r in pooled if r not in slurm]
                result = replace(result, pending={**result.pending, **sres.pending},
                                 preemptions=[*result.preemptions, *sres.preemptions])
            for r in slurm:
                pool = self._slurm_pool(r)
                assert pool is not None
                changes.append(self._placement(
                    r, Assignment(node=self.settings.slurm_pools[pool]), snap, pool=pool))
            # one commit for the whole cycle; a job stopped meanwhile is simply skipped
            if changes:
                placed = await self.db.run(
                    lambda s: journal.transition_many(s, changes, now=self.clock()))
                self.live.apply(placed)
                for row in placed:
                    if isinstance(row, JobRow):
                        self._spawn_launch(row, fresh=True)
            if result.preemptions and rules is not None:
                await self.preempter.act(result.preemptions, active, rules, self.db)
            # only reasons that changed since the stored ones (most cycles: none)
            texts = {tid: why.text for tid, why in result.pending.items()}
            reasons = {r.id: texts[str(r.id)] for r in placeable
                       if str(r.id) in texts and r.reason != texts[str(r.id)]}
            if reasons:
                await self.db.run(lambda s: journal.set_reasons(s, reasons))
                self.live.apply(replace(r, reason=reasons[r.id]) for r in placeable
                                if r.id in reasons and self.live.get(r.id) is r)
            return result

    def _task(self, r: JobRow, fair: FairShare) -> QueuedTask:
        return QueuedTask(id=str(r.id), request=r.spec.to_request(), user=r.user,
                          project=r.project or "", team=r.team or "", priority=r.priority,
                          submitted_at=epoch(r.submitted_at) or 0.0,
                          max_runtime_s=r.max_runtime_s,
                          class_priority=self.settings.classes.resolve(
                              r.spec.priority_class).priority,
                          fair_share=fair.factor(r.user, r.project or ""))

    async def _fair_share(self) -> FairShare:
        """Fair-share factors from the store's decayed GPU use (recomputed each minute)."""
        now = self.clock()
        if self._fair is not None and now - self._fair[0] < FAIR_SHARE_REFRESH_S:
            return self._fair[1]
        half = self.settings.fair_share_half_life_s
        rows = await self.db.run(lambda s: journal.gpu_usage(s, journal.utc(now - 8 * half)))
        fair = FairShare(decayed_gpu_hours(rows, now, half), self.quotas)
        self._fair = (now, fair)
        return fair

    def _slurm_pool(self, row: JobRow) -> str | None:
        if row.spec.executor == "slurm":
            return row.pool if row.pool in self.settings.slurm_pools else next(
                iter(self.settings.slurm_pools), None)
        return row.pool if row.pool in self.settings.slurm_pools else None

    def _placement(self, row: JobRow, a: Assignment, snap: FleetSnapshot, *,
                   pool: str | None = None) -> journal.Change:
        node = snap.node(a.node)
        model = None
        if node is not None and a.gpu_indices:
            model = next((g.model for g in node.gpus if g.index == a.gpu_indices[0]), None)
        executor = choose_executor(row.spec, pool or (node.pool if node else None),
                                   self.settings.slurm_pools)
        where = f"{a.node}" + (f" GPUs {','.join(map(str, a.gpu_indices))}"
                               if a.gpu_indices else "")
        return journal.Change(
            row.id, JobState.STARTING, f"placed on {where}", "scheduler", (JobState.QUEUED,), None,
            {"node": a.node, "gpu_indices": list(a.gpu_indices), "gpu_model": model,
             "executor": executor, "pool": pool or (node.pool if node else row.pool)})

    def _spawn_launch(self, row: JobRow, *, fresh: bool = False) -> None:
        """Start (or adopt) the job in the background. `fresh`: placed by this engine just
        now, so nothing of this attempt can be on the node yet."""
        self._launching.add(row.id)
        task = asyncio.create_task(self._launch(row, fresh=fresh), name=f"launch-{row.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _launch(self, row: JobRow, *, fresh: bool = False) -> None:
        handle: Handle | None = None
        transport: Transport | None = None
        try:
            assert row.node is not None
            transport = await self.transport(row.node)
            if transport is None and fresh:
                # nothing was sent to the node: back to the queue, same attempt
                await self._tx(row.id, JobState.QUEUED,
                               reason=f"node {row.node} was unreachable at "
                               "start; requeued", actor="scheduler", expect=(JobState.STARTING,),
                               node=None, gpu_indices=None, gpu_model=None)
                return
            if transport is None:
                raise TransportError(f"node {row.node} is unreachable")
            pool = row.pool or ""
            launch = launch_of(row, partition=self.settings.slurm_partitions.get(pool))
            async with self._slot(row.node):
                handle = await self.executors[row.executor].start(launch, transport)
            self._unsure.pop(row.id, None)
            await self._tx(row.id, JobState.RUNNING, reason=f"started on {row.node}",
                           actor="scheduler", expect=(JobState.STARTING,),
                           external_id=handle.external_id,
                           started_at=journal.utc(self.clock()))
        except (ExecutorError, ValueError) as e:
            self._unsure.pop(row.id, None)
            await self._failed_start(row, str(e))
        except TransportError as e:
            await self._unsure_start(row, str(e))
        except journal.TransitionError:
            # stopped (or lost) while starting: what the start began must not run on
            if handle is not None and transport is not None:
                with contextlib.suppress(ExecutorError, TransportError):
                    await self.executors[row.executor].stop(
                        handle, transport, grace_s=self.settings.stop_grace_s)
        except NotFoundError:
            pass
        finally:
            self._launching.discard(row.id)

    async def _unsure_start(self, row: JobRow, why: str) -> None:
        """The node could not be reached (or did not answer) while starting: the job may or
        may not run there, so it stays `starting` and the start (idempotent) is tried again
        later; after `start_give_up_s` it is lost (and requeued when its spec allows)."""
        now = self.clock()
        first = self._unsure.get(row.id, (now, now))[0]
        if now - first >= self.settings.start_give_up_s:
            self._unsure.pop(row.id, None)
            await self.mark_lost(row, f"could not start on {row.node} for "
                                      f"{now - first:.0f}s: {why}")
            return
        self._unsure[row.id] = (first, now + self.settings.start_retry_s)
        log.warning("job %s: start on %s unconfirmed, retrying: %s", row.id, row.node, why)

    async def _failed_start(self, row: JobRow, why: str) -> None:
        retry = row.tries_used < row.spec.retries
        to = JobState.QUEUED if retry else JobState.FAILED
        reason = f"start failed on {row.node}: {why}" + (" (retrying)" if retry else "")
        extra: dict[str, Any] = ({"attempt": row.attempt + 1, "node": None,
                                  "gpu_indices": None} if retry else {})
        with contextlib.suppress(journal.TransitionError, NotFoundError):
            await self._tx(row.id, to, reason=reason, actor="scheduler", **extra)

    async def poll(self) -> None:
        """Ask executors about running jobs (from memory once a cycle loaded them), one call
        per node and executor (`STATUS_BATCH` jobs at most); record ends with exit codes."""
        rows = self.live.rows((JobState.RUNNING,)) if self.live.loaded else await self.db.run(
            lambda s: journal.list_jobs(s, states=(JobState.RUNNING,)))
        by_node: dict[tuple[str, str], list[tuple[JobRow, Handle]]] = {}
        for row in rows:
            handle = handle_of(row)
            if handle is None or row.id in self._launching or row.id in self.stops.stopping:
                continue
            by_node.setdefault((handle.node, row.executor or ""), []).append((row, handle))
        await asyncio.gather(*(
            self._poll_node(node, kind, jobs[i:i + STATUS_BATCH])
            for (node, kind), jobs in by_node.items()
            for i in range(0, len(jobs), STATUS_BATCH)))

    async def _poll_node(self, node: str, kind: str,
                         jobs: Sequence[tuple[JobRow, Handle]]) -> None:
        transport = await self.transport(node)
        if transport is None:
            return  # unreachable: health decides when it is lost
        try:
            async with self._slot(node):
                statuses = await self.executors[kind].status_many([h for _, h in jobs], transport)
        except (ExecutorError, TransportError) as e:
            log.warning("status of jobs %s on %s: %s", [r.id for r, _ in jobs], node, e)
            return
        # a stop that began meanwhile records the end itself
        await asyncio.gather(*(self._settle(row, status)
                               for (row, _), status in zip(jobs, statuses, strict=True)
                               if row.id not in self.stops.stopping))

    async def _settle(self, row: JobRow, status: Status) -> None:
        now = self.clock()
        intent = self.stops.intents.get(row.id)
        if intent is not None and intent.attempt == row.attempt:
            # a journaled stop: its end is `stopped` with its reason, never the kill's code
            if status.finished:
                with contextlib.suppress(journal.TransitionError, NotFoundError):
                    await self.stops.end(row, intent)
            else:
                self.stops.resume(row, intent)
            return
        if status.state == RunState.EXITED:
            ok = status.exit_code == 0
            to = JobState.SUCCEEDED if ok else JobState.FAILED
            reason = f"exited with code {status.exit_code}" + (
                f" ({status.detail})" if status.detail else "")
            ended = journal.utc(status.ended_at) if status.ended_at else journal.utc(now)
            times: dict[str, Any] = {"ended_at": ended}
            if row.started_at is not None and row.started_at > ended:
                # stamped when start() returned, after a short job had already ended by the
                # node's clock: take the node's start, so the record runs forward (and bills)
                node_start = status.started_at if status.started_at is not None else now
                times["started_at"] = min(journal.utc(node_start), ended)
            with contextlib.suppress(journal.TransitionError, NotFoundError):
                await self._tx(row.id, to, reason=reason, actor="scheduler",
                               exit_code=status.exit_code, **times)
        elif status.state == RunState.MISSING:
            await self.mark_lost(row, f"node {row.node} has no trace of it")
        elif status.deadline_at is not None and now > status.deadline_at:
            with contextlib.suppress(FleetdeckError, journal.TransitionError):
                await self.stop(row.id, actor="scheduler", action=ActionKind.TIMEOUT,
                                reason=f"max runtime {row.max_runtime_s:.0f}s reached")

    async def mark_lost(self, row: JobRow, why: str) -> None:
        retry = row.tries_used < row.spec.retries
        with contextlib.suppress(journal.TransitionError, NotFoundError):
            await self._tx(row.id, JobState.LOST, reason=why, actor="scheduler")
            if retry:
                await self._tx(row.id, JobState.QUEUED, reason=f"requeued after loss: {why}",
                               actor="scheduler", attempt=row.attempt + 1, node=None,
                               gpu_indices=None, external_id=None, started_at=None,
                               ended_at=None)

    async def reconcile(self, nodes: Sequence[str]) -> dict[str, int]:
        """After a restart: adopt what runs, finish what ended, restart `starting` jobs
        idempotently. Nodes that cannot be reached are left for later (the poll and the
        placement cycle pick them up)."""
        counts = {"adopted": 0, "finished": 0, "restarted": 0, "lost": 0, "stopping": 0}
        rows = await self.db.run(lambda s: journal.list_jobs(s, states=journal.ACTIVE))
        self.stops.intents.update(await self.db.run(stop_journal.pending))
        known = set(nodes)

        async def one(row: JobRow) -> None:
            intent = self.stops.intents.get(row.id)
            if intent is not None and intent.attempt == row.attempt:
                self.stops.resume(row, intent)  # a stop the last engine did not finish
                counts["stopping"] += 1
                return
            if row.node is None:
                return
            if row.node not in known and row.node not in self.settings.slurm_pools.values():
                await self.mark_lost(row, f"node {row.node} is gone from the fleet")
                counts["lost"] += 1
                return
            if row.state == JobState.STARTING:
                if row.id not in self._launching:
                    self._spawn_launch(row)  # start is idempotent: adopts if it already runs
                    counts["restarted"] += 1
                return
            handle = handle_of(row)
            transport = await self.transport(row.node)
            if handle is None or transport is None:
                return
            try:
                async with self._slot(row.node):
                    status = await self.executors[row.executor].status(handle, transport)
            except (ExecutorError, TransportError):
                return
            if status.finished:
                counts["finished" if status.state == RunState.EXITED else "lost"] += 1
            else:
                counts["adopted"] += 1
            await self._settle(row, status)

        await asyncio.gather(*(one(r) for r in rows))
        return counts

    async def close(self) -> None:
        await self.preempter.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

