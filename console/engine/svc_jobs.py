"""Jobs in the engine: the runner loop and the submit/jobs/stop/logs/explain handlers."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from collectors.errors import FleetdeckError, InputError, NotFoundError
from collectors.store import Store
from collectors.store.db import StoreWriteError
from collectors.transport.base import Transport
from console.config import Config
from console.engine.access import Caller
from console.engine.api.methods import Role
from console.engine.api.replies import Explanation, JobInfo, Preview, Submitted, Suggestion
from console.engine.api.requests import (
    ExplainRequest,
    JobQuery,
    JobsQuery,
    LogsRequest,
    PreviewRequest,
    StopRequest,
    SubmitRequest,
    SuggestQuery,
)
from console.engine.job_reads import JobFilter, StorePages, find_jobs
from console.engine.protocol import ErrorCode, RequestError
from console.engine.server import Handler, StreamHandler
from console.engine.service_base import BaseService
from scheduler import journal
from scheduler.executors import DockerExecutor, ProcessExecutor, SlurmExecutor
from scheduler.executors.base import Executor
from scheduler.fit import make_policy
from scheduler.fit.workload import WorkloadMix
from scheduler.job_match import parse_match
from scheduler.jobspec import JobSpec
from scheduler.journal import JobRow
from scheduler.placement import PlacementPlan, PreemptionRules, QueuedTask, WaitKind, plan
from scheduler.priority import ClassBook, PriorityClass
from scheduler.quota import Quota, QuotaBook
from scheduler.runner import JobRunner, RunnerSettings, allocations, choose_executor, snapshot

if TYPE_CHECKING:
    from console.engine.hosting import Host
    from console.engine.svc_telemetry import Telemetry

log = logging.getLogger(__name__)


def quota_book(config: Config) -> QuotaBook | None:
    users = {u.name: Quota.of_gpus(u.gpu_quota) for u in config.users if u.gpu_quota is not None}
    projects = {p.name: Quota.of_gpus(p.gpu_quota, p.gpu_guaranteed)
                for p in config.projects if p.gpu_quota is not None or p.gpu_guaranteed}
    teams = {t.name: Quota.of_gpus(t.gpu_quota, t.gpu_guaranteed)
             for t in config.teams if t.gpu_quota is not None or t.gpu_guaranteed}
    book = QuotaBook(users=users, projects=projects, teams=teams,
                     borrowing=config.scheduler.borrowing)
    return None if book.empty else book


def preemption_rules(config: Config) -> PreemptionRules | None:
    """`[scheduler]` preemption settings, or None when preemption is off."""
    sc = config.scheduler
    if not sc.preemption:
        return None
    return PreemptionRules(grace_s=sc.preempt_grace_s,
                           min_runtime_s=sc.min_runtime_before_preempt_s,
                           max_preemptions=sc.max_preemptions_per_job)


def class_book(config: Config) -> ClassBook:
    """`[[scheduler.priority_classes]]` (validated with the config: unique names, one default)."""
    pcs = config.scheduler.priority_classes
    return ClassBook.of([PriorityClass(c.name, c.priority, c.preemptible) for c in pcs],
                        [c.default for c in pcs])


def runner_settings(config: Config) -> RunnerSettings:
    slurm_pools = {p.name: p.login_node for p in config.pools
                   if p.kind == "slurm" and p.login_node}
    sc = config.scheduler
    return RunnerSettings(backfill=sc.backfill, slurm_pools=slurm_pools,
                          slurm_partitions={p.name: p.partition for p in config.pools},
                          preemption=preemption_rules(config), classes=class_book(config),
                          fair_share_half_life_s=sc.fair_share_half_life_s)


def workload_mix(store: Store, *, days: float = 30.0, limit: int = 50_000) -> WorkloadMix | None:
    """The request mix of the store's recent jobs: what fragmentation-aware placement keeps
    room for. None with no history (the policy then learns from what it is asked)."""
    rows = store.con.execute(
        "SELECT spec FROM jobs WHERE submitted_at >= now()::TIMESTAMP - to_days(?) "
        "ORDER BY id DESC LIMIT ?", [int(days), limit]).fetchall()
    requests = []
    for (spec,) in rows:
        try:
            requests.append(JobSpec.from_dict(json.loads(spec)).to_request())
        except InputError:
            continue
    return WorkloadMix.from_requests(requests) if requests else None


def suggest(store: Store, user: str, *, recent: int = 50) -> Suggestion | None:
    """The GPU amount and model the user's recent GPU jobs most often ran with (finished
    ones first), for the submit form; None without such history."""
    rows = store.con.execute(
        "SELECT gpu_count * gpu_milli / 1000.0 AS gpus, gpu_model FROM jobs "
        "WHERE user = ? AND gpu_count > 0 AND state IN ('succeeded', 'running', 'stopped') "
        "ORDER BY id DESC LIMIT ?", [user, recent]).fetchall()
    if not rows:
        return None
    counts: dict[tuple[float, str | None], int] = {}
    for gpus, model in rows:
        key = (float(gpus), model)
        counts[key] = counts.get(key, 0) + 1
    (gpus, model), n = max(counts.items(), key=lambda kv: kv[1])
    return Suggestion(gpus=gpus, gpu_model=model, based_on=n, of=len(rows))


def membership(config: Config, user: str) -> tuple[str | None, str | None]:
    """The user's default project and team from the config."""
    for u in config.users:
        if u.name == user:
            project = u.default_project or (u.projects[0] if u.projects else None)
            team = u.team
            if team is None and project is not None:
                team = next((p.team for p in config.projects if p.name == project), None)
            return project, team
    return None, None


class Executors:
    """One executor object per kind and Docker GPU mode, shared by all nodes."""

    def __init__(self, config: Config, fleet: str) -> None:
        # Job ids restart at 1 in every store: names and directories on nodes carry the
        # store's fleet id so two stores driving one node never adopt each other's jobs.
        self.gpu_runtime = {n.name: n.docker_gpu_runtime for n in config.nodes}
        self.process = ProcessExecutor(jobs_dir=f"~/.fleetdeck/jobs/{fleet}")
        self.slurm = SlurmExecutor(jobs_dir=f"~/.fleetdeck/slurm/{fleet}")
        self.docker = {True: DockerExecutor(gpu_runtime=True, fleet=fleet),
                       False: DockerExecutor(gpu_runtime=False, fleet=fleet)}

    def by_kind(self) -> Mapping[str, Executor]:
        return _Dispatch(self)

    def close(self) -> None:
        for d in self.docker.values():
            d.close()


class _Dispatch(Mapping[str, Executor]):
    """`executors["docker"]` picks the Docker executor by the node being acted on, lazily."""

    def __init__(self, ex: Executors) -> None:
        self.ex = ex

    def __getitem__(self, kind: str) -> Executor:
        if kind == "process":
            return self.ex.process
        if kind == "slurm":
            return self.ex.slurm
        if kind == "docker":
            return _NodeDocker(self.ex)  # type: ignore[return-value]
        raise KeyError(kind)

    def __iter__(self) -> Any:
        return iter(("docker", "process", "slurm"))

    def __len__(self) -> int:
        return 3


class _NodeDocker:
    """Routes each call to the Docker executor matching the node's GPU runtime setting."""

    kind = "docker"

    def __init__(self, ex: Executors) -> None:
        self.ex = ex

    def _for(self, transport: Transport) -> DockerExecutor:
        return self.ex.docker[self.ex.gpu_runtime.get(transport.node.name, True)]

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kw: Any) -> Any:
            transport = next(a for a in (*args, *kw.values()) if hasattr(a, "node")
                             and hasattr(a, "run"))
            return getattr(self._for(transport), name)(*args, **kw)
        return call


HIDDEN = "(hidden)"


def sees_secrets(caller: Caller, owner: str) -> bool:
    """A job's secret env is shown to its owner and to admins."""
    return caller.user == owner or caller.role >= Role.ADMIN


def redacted(row: JobRow, caller: Caller) -> JobInfo:
    """A job for `caller`; another user's command line, env and workdir hidden below
    operator, secret env values to all but the owner and admins."""
    spec = (row.spec if sees_secrets(caller, row.user) else row.spec.redacted()).to_dict()
    if row.user != caller.user and caller.role < Role.OPERATOR:
        spec["command"] = [HIDDEN] if spec.get("command") else []
        spec["env"] = {k: HIDDEN for k in spec.get("env") or {}}
        spec["workdir"] = HIDDEN if spec.get("workdir") else None
    return JobInfo(
        id=row.id, name=row.name, user=row.user, project=row.project, team=row.team,
        state=row.state, reason=row.reason, priority=row.priority, pool=row.pool,
        node=row.node, gpu_indices=list(row.gpu_indices), gpu_count=row.gpu_count,
        gpu_milli=row.gpu_milli, gpus=row.spec.gpus, executor=row.executor,
        submitted_at=row.submitted_at, started_at=row.started_at, ended_at=row.ended_at,
        exit_code=row.exit_code, attempt=row.attempt, spec=spec, kind=row.kind,
        gpu_model=row.gpu_model, cpu_milli=row.cpu_milli, mem_bytes=row.mem_bytes,
        max_runtime_s=row.max_runtime_s, external_id=row.external_id,
        array_parent=row.array_parent, array_index=row.array_index, burst=row.burst,
        preemptions=row.preemptions)


class JobService(BaseService):
    """The job runner's loops and the submit/jobs/stop/logs/explain/preview/suggest methods."""

    def __init__(self, engine: Host, telemetry: Telemetry) -> None:
        self.engine = engine
        self.telemetry = telemetry
        cfg = engine.config
        self.executors = Executors(cfg, engine.fleet_id)
        self.slurm_pools = {p.name: p.login_node for p in cfg.pools
                            if p.kind == "slurm" and p.login_node}
        self.cycle_s = cfg.scheduler.cycle_s
        self.kick = asyncio.Event()
        self.workload: WorkloadMix | None = None
        self.pages = StorePages()  # the store's job pages, until a job changes
        self.runner = JobRunner(
            db=engine.db, executors=self.executors.by_kind(), transport=telemetry.transport,
            inventory=telemetry.inventory, policy=make_policy(cfg.scheduler.policy),
            quotas=quota_book(cfg),
            settings=runner_settings(cfg), clock=engine.clock, reads=engine.reads,
            slurm=lambda: telemetry.view().slurm)
        engine.runner = self.runner

    def handlers(self) -> Mapping[str, Handler]:
        return {"submit": self.submit, "jobs": self.jobs, "job": self.job, "stop": self.stop_job,
                "explain": self.explain, "preview": self.preview, "suggest": self.suggest}

    def streams(self) -> Mapping[str, StreamHandler]:
        return {"logs": self.logs}

    async def start(self) -> None:
        engine, cfg = self.engine, self.engine.config
        self.workload = await engine.db.run(workload_mix)
        self.runner.policy = make_policy(cfg.scheduler.policy, workload=self.workload)
        if cfg.engine.schedule:
            burst_nodes = await engine.db.run(lambda s: [str(r[0]) for r in s.con.execute(
                "SELECT node FROM burst_instances WHERE node IS NOT NULL AND state IN "
                "('provisioning', 'ready', 'terminating')").fetchall()])  # rejoin on restart
            counts = await self.runner.reconcile([n.name for n in cfg.nodes] + burst_nodes)
            if any(counts.values()):
                log.info("reconciled jobs: %s", counts)
            engine.spawn(self._loop(), "scheduler")
            engine.spawn(_poll_loop(self.runner, min(cfg.collect.interval_s, 2.0)), "job-poll")

    async def stop(self) -> None:
        await _maybe_await(self.runner.close())
        self.executors.close()

    def reconfigure(self, config: Config) -> None:
        """Placement policy, quotas and borrowing, backfill and the cycle apply at once;
        users' default project and team are read from the config at each submit."""
        if self.engine.config.scheduler.policy != config.scheduler.policy:
            self.runner.policy = make_policy(config.scheduler.policy, workload=self.workload)
        self.runner.quotas = quota_book(config)
        self.runner.settings = dataclasses.replace(
            runner_settings(config), slurm_pools=self.runner.settings.slurm_pools,
            slurm_partitions=self.runner.settings.slurm_partitions)  # pools need a restart
        self.cycle_s = config.scheduler.cycle_s
        self.kick.set()  # the next cycle runs with the new settings now

    async def _loop(self) -> None:
        while True:
            try:
                await self.runner.cycle()
            except Exception:
                log.exception("scheduler cycle failed")
            self.kick.clear()
            try:
                await asyncio.wait_for(self.kick.wait(), self.cycle_s)
            except TimeoutError:
                pass

    # -- handlers -----------------------------------------------------------------------------
    def check_targets(self, spec: JobSpec) -> None:
        """A job naming a node or pool the fleet does not have would wait forever."""
        cfg = self.engine.config
        nodes = {n.name for n in cfg.nodes} | set(self.telemetry.view().nodes)
        if spec.node is not None and spec.node not in nodes:
            raise InputError("submitted spec", "node",
                             f"a node of the fleet ({_listed(nodes)})", got=spec.node)
        pools = {p.name for p in cfg.pools} | {n.pool for n in cfg.nodes}
        if spec.pool is not None and spec.pool not in pools:
            raise InputError("submitted spec", "pool",
                             f"a pool of the fleet ({_listed(pools)})", got=spec.pool)
        if spec.executor == "slurm" and not self.slurm_pools:
            raise InputError("submitted spec", "executor",
                             'a Slurm pool in the config ([[pools]] kind = "slurm") for '
                             'executor "slurm"', got=spec.executor)

    def spec_for(self, caller: Caller, raw: Mapping[str, Any]) -> JobSpec:
        """The spec with the caller (or, for an admin, the named user) and their defaults;
        the server already refused naming another user below admin."""
        try:
            spec = JobSpec.from_dict(raw, source="submitted spec")
            self.check_targets(spec)
        except InputError as e:
            raise RequestError(ErrorCode.BAD_REQUEST, str(e)) from None
        classes = self.runner.settings.classes
        if spec.priority_class is not None and classes.get(spec.priority_class) is None:
            raise RequestError(ErrorCode.BAD_REQUEST, str(InputError(
                "submitted spec", "class",
                f"a priority class of the config ({', '.join(classes.names)})",
                got=spec.priority_class)))
        project, team = membership(self.engine.config, spec.user or caller.user)
        return spec.with_defaults(user=caller.user, project=project, team=team)

    async def submit(self, caller: Caller, req: SubmitRequest) -> Submitted:
        spec = self.spec_for(caller, req.spec)
        never = await self.never_fits(spec)
        if never is not None:  # bad input: it would wait forever (exit 2 in the CLI)
            raise RequestError(ErrorCode.BAD_REQUEST, f"job refused: {never}")
        try:
            ids = await self.runner.submit(spec, actor=caller.user)
        except StoreWriteError as e:  # said once in the log and in `status`
            raise RequestError(ErrorCode.STORE_FAILING, f"{e}; nothing was queued") from None
        self.kick.set()
        return Submitted(ids=ids)

    async def jobs(self, caller: Caller, req: JobsQuery) -> list[JobInfo]:
        """Jobs, newest first: by states, user, ids (by key), a text match, a page (`limit`,
        `offset`). Queued and holding jobs answer from memory; the rest from the store on a
        reader thread, never behind writes."""
        try:
            match = parse_match(req.match) if req.match else None
        except ValueError as e:
            raise RequestError(ErrorCode.BAD_REQUEST, f"match: {e}") from None
        query = JobFilter(states=tuple(req.states), user=req.user,
                         ids=tuple(req.ids) if req.ids is not None else None,
                         limit=req.limit or None, offset=req.offset, match=match)
        rows = await find_jobs(self.engine, self.runner, query, self.pages)
        return [redacted(r, caller) for r in rows]

    async def job(self, caller: Caller, req: JobQuery) -> JobInfo:
        """One job by id, from memory when queued or holding, else by the store's key."""
        rows = await find_jobs(self.engine, self.runner, JobFilter(ids=(req.job,)))
        if not rows:
            raise RequestError(ErrorCode.NOT_FOUND, f"no job {req.job}")
        return redacted(rows[0], caller)

    async def stop_job(self, caller: Caller, req: StopRequest) -> JobInfo:
        reason = req.reason or f"stopped by {caller.user}"
        try:
            row = await self.runner.stop(req.job, actor=caller.user, reason=reason)
        except NotFoundError as e:
            raise RequestError(ErrorCode.NOT_FOUND, str(e)) from None
        except journal.TransitionError as e:
            raise RequestError(ErrorCode.REFUSED, str(e)) from None
        return redacted(row, caller)

    async def logs(self, caller: Caller, req: LogsRequest) -> AsyncIterator[str]:
        try:
            async for chunk in self.runner.logs(req.job, tail_lines=req.tail,
                                                follow=req.follow):
                yield chunk.decode(errors="replace")
        except NotFoundError as e:
            raise RequestError(ErrorCode.NOT_FOUND, str(e)) from None
        except FleetdeckError as e:
            raise RequestError(ErrorCode.FAILED, str(e)) from None

    async def explain(self, caller: Caller, req: ExplainRequest) -> Explanation:
        policies = self.engine.policies  # burst verdicts and decisions, the idle verdict
        also = policies.explain_read(req.job) if policies is not None else _no_extra
        try:  # the runner's reads and the policies' in one reader call
            out, extra = await self.runner.explain(req.job, also)
        except NotFoundError as e:
            raise RequestError(ErrorCode.NOT_FOUND, str(e)) from None
        out.update(extra)
        return msgspec.convert(out, Explanation)  # the runner (core) answers plain data

    async def place_now(self, spec: JobSpec, *, empty_fleet: bool = False) -> PlacementPlan:
        """Where `spec` would go now (a plan of it alone on the current fleet); with
        `empty_fleet`, on every known node up and free (can it ever fit?)."""
        engine, runner = self.engine, self.runner
        inventory = self.telemetry.inventory()
        if empty_fleet:
            inventory = [dataclasses.replace(n, schedulable=True) for n in inventory]
            rows = []
        else:
            rows = await find_jobs(engine, runner, JobFilter(states=journal.ACTIVE))
        snap = snapshot(inventory, allocations(rows), engine.clock())
        task = QueuedTask(id="preview", request=spec.to_request(), user=spec.user,
                          project=spec.project, team=spec.team, priority=spec.priority,
                          submitted_at=engine.clock(), max_runtime_s=spec.max_runtime_s)
        return await asyncio.to_thread(plan, snap, [task], policy=runner.policy,
                                       quotas=runner.quotas, now=engine.clock())

    async def never_fits(self, spec: JobSpec) -> str | None:
        """Why `spec` can never fit the fleet, every known node up and free ("never fits: no
        node has 8 GPUs"), or None. None too before any node is known, where burst pools
        could add nodes, and for Slurm jobs (Slurm places them, not fleetdeck)."""
        if not self.telemetry.inventory() or any(
                p.kind == "burst" for p in self.engine.config.pools):
            return None
        slurm_pools = self.runner.settings.slurm_pools
        if choose_executor(spec, spec.pool, slurm_pools) == "slurm":
            return None
        result = await self.place_now(spec, empty_fleet=True)
        why = result.pending.get("preview")
        if result.assignments or why is None or why.kind is not WaitKind.NEVER_FITS:
            return None
        return why.text

    async def preview(self, caller: Caller, req: PreviewRequest) -> Preview:
        spec = self.spec_for(caller, req.spec)
        result = await self.place_now(spec)
        if result.assignments:
            a = result.assignments[0][1]
            return Preview(placeable=True, node=a.node, gpu_indices=list(a.gpu_indices),
                           reason=f"would start now on {a.node}")
        why = result.pending.get("preview")
        if why is not None and why.kind is WaitKind.NEVER_FITS:
            # the current fleet has no node for it; "never" only if no known node, up and
            # free, could take it (nodes not collected yet or down come back)
            never = await self.never_fits(spec)
            return Preview(placeable=False, node=None, gpu_indices=[], reason=never or
                           "no node that could take it is up now")
        return Preview(placeable=False, node=None, gpu_indices=[],
                       reason=result.explain("preview") or "would wait")

    async def suggest(self, caller: Caller, req: SuggestQuery) -> Suggestion | None:
        user = req.user or caller.user
        return await self.engine.db.run(lambda s: suggest(s, user))


def _no_extra(store: Store) -> dict[str, Any]:
    """No policy service: `explain` has nothing to add."""
    return {}


async def _maybe_await(res: Any) -> None:
    if asyncio.iscoroutine(res):
        await res


def _listed(names: set[str], most: int = 8) -> str:
    shown = sorted(names)
    return ", ".join(shown[:most]) + (f", ... {len(shown) - most} more"
                                      if len(shown) > most else "")


async def _poll_loop(runner: JobRunner, poll_s: float) -> None:
    """Job status from the nodes, apart from placement so a slow node never holds it up."""
    while True:
        started = runner.clock()
        try:
            await runner.poll()
        except Exception:
            log.exception("job poll failed")
        await asyncio.sleep(max(0.0, poll_s - (runner.clock() - started)))
