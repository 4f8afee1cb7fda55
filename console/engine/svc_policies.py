"""Policies in the engine: idle GPU jobs, GPU health, cordon/snooze handlers, and bursting
(`svc_burst`).

The pure policies (`scheduler.policies`) decide; this service feeds them from the store and the
live fleet view, executes what they decide and writes one audit row per action:

- idle (every collect interval): the running jobs' GPU samples (and their containers' CPU)
  over the window -> `evaluate_idle`; warn/clear are audit rows, a stop goes through
  `JobRunner.stop` (which audits it), dry-run actions are only rows marked `dry_run`.
- health (every collect interval): new `gpu_samples` health columns and `gpu_events` ->
  `evaluate_health`; `gpu_health` intervals, `nodes.drained_reason`, and the telemetry flags
  placement honours (`Telemetry.drained`, `Telemetry.unhealthy_gpus`).
- handlers: `policies` (what is warned, rented, cordoned), `snooze`, `cordon`, `uncordon`.

State survives a restart: idle warnings and snoozes from the audit trail, broken GPUs from
open `gpu_health` rows, drains and cordons from `nodes`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from collectors.errors import FleetdeckError, NotFoundError
from collectors.store import Store, outbox
from collectors.store.audit import utc
from collectors.store.audit_kinds import ActionKind
from collectors.store.db import insert_rows
from console.config import Config
from console.engine.access import Caller
from console.engine.api.replies import (
    Cordoned,
    IdleEntry,
    NodeReason,
    PoliciesReply,
    SnoozeEntry,
)
from console.engine.api.requests import (
    CordonRequest,
    PoliciesQuery,
    SnoozeRequest,
    UncordonRequest,
)
from console.engine.idle_inputs import (
    BlindSpot,
    latest_job_usage,
    running_gpu_jobs,
    usage_rows,
)
from console.engine.job_reads import JobFilter, find_jobs
from console.engine.protocol import ErrorCode, RequestError
from console.engine.server import Handler
from console.engine.service_base import BaseService
from console.engine.svc_burst import BurstManager
from scheduler import journal
from scheduler.journal import JobRow
from scheduler.models import FleetSnapshot
from scheduler.policies import health as hp
from scheduler.policies.audit import HEALTH_ACTOR, IDLE_ACTOR, Action, Snooze, snooze_action
from scheduler.policies.events import events_of, idle_event
from scheduler.policies.idle import (
    IdleJobState,
    IdleState,
    IdleStatus,
    IdleVerdict,
    build_usage_windows,
    evaluate_idle,
    restore_idle_state,
)
from scheduler.policies.idle_config import IdleSettings
from scheduler.runner import JobRunner, allocations, epoch, snapshot
from scheduler.states import ACTIVE, JobState

if TYPE_CHECKING:
    from console.engine.hosting import Host
    from console.engine.svc_telemetry import Telemetry

log = logging.getLogger(__name__)
NEG_INF = float("-inf")
HEALTH_LOOKBACK_S = 600.0  # a node silent longer than this restarts its health watermark


def write_actions(con: Any, actions: Iterable[Action],
                  jobs: Mapping[int, JobRow] | None = None) -> None:
    """One `actions` row per action, and the events people are told of (idle warnings and
    clears, drains), in the caller's transaction. `jobs`: the rows idle actions concern."""
    rows = list(actions)
    insert_rows(con, "actions", [a.audit_row() for a in rows])
    outbox.append(con, events_of(rows, jobs or {}))


def job_rows(store: Store, actions: Iterable[Action]) -> dict[int, JobRow]:
    """The jobs that actions on jobs concern (for their events)."""
    ids = [int(a.target) for a in actions if a.target_kind == "job" and a.target.isdigit()]
    return {r.id: r for r in journal.list_jobs(store, ids=ids)}


class PolicyService(BaseService):
    """Runs the idle and health policies, owns the burst manager, answers policy requests."""

    def __init__(self, engine: Host, telemetry: Telemetry) -> None:
        self.engine = engine
        self.telemetry = telemetry
        self.cfg = engine.config.policies
        self.interval_s = max(0.2, engine.config.collect.interval_s)
        self.idle_state = IdleState()
        self.idle_verdicts: dict[str, IdleVerdict] = {}
        self.idle_blind = BlindSpot()  # "cannot judge any job", said once
        self.snoozes: dict[str, Snooze] = {}
        self.health_state = hp.HealthState()
        # Health reads rows newer than what it saw minus a lag (batches of several nodes
        # arrive out of order), and drops rows at or before each node's newest handled one.
        self._sample_marks: dict[str, float] = {}  # node -> newest health sample handled
        self._event_marks: dict[str, float] = {}  # node -> newest GPU event handled
        self._samples_seen = self._events_seen = NEG_INF  # newest row ts read
        self._start_mark = NEG_INF  # rows up to this were handled before a restart
        self._lag_s = 3 * self.interval_s + 5.0
        self._health_lock = asyncio.Lock()
        self._started = False
        self.burst = BurstManager(engine, telemetry)
        engine.policies = self

    def handlers(self) -> Mapping[str, Handler]:
        return {"policies": self.policies, "snooze": self.snooze, "cordon": self.cordon,
                "uncordon": self.uncordon}

    def reconfigure(self, config: Config) -> None:
        """Idle, health and burst rules apply from the next pass; a changed provider list
        needs a restart (instances it started stay its own)."""
        self.cfg = config.policies
        burst = self.burst
        if burst.cfg.providers == config.policies.burst.providers:
            burst.cfg = config.policies.burst
            burst.offers = {o.name: o for o in config.policies.burst.offers}

    @property
    def runner(self) -> JobRunner:
        """The job service's runner: wiring starts that service before this one."""
        assert self.engine.runner is not None, "the job service starts before the policies"
        return self.engine.runner

    # -- what other services read ------------------------------------------------------------
    def idle_job_ids(self) -> set[int]:
        """Jobs showing an idle warning (dry-run ones included)."""
        return {int(j) for j, s in self.idle_state.jobs.items()
                if s.phase == "warned" or (s.phase == "stopped" and s.dry_run)}

    def burst_summary(self) -> dict[str, Any]:
        return self.burst.summary()

    def explain_read(self, job_id: int) -> Callable[[Store], dict[str, Any]]:
        """Extra `fleetdeck explain` lines (burst verdicts and decisions, the job's latest
        usage, the idle verdict) as one read for a reader thread: what memory holds is taken
        now, the store's part when the read runs."""
        since = self.engine.clock() - max(60.0, 3 * self.interval_s)
        burst = self.burst.explain_read(job_id)
        v = self.idle_verdicts.get(str(job_id))
        idle = v.to_json() if v is not None else None

        def read(store: Store) -> dict[str, Any]:
            out: dict[str, Any] = {"burst": burst(store),
                                   "usage": latest_job_usage(store, job_id, since)}
            if idle is not None:
                out["idle"] = idle
            return out

        return read

    # -- lifetime -----------------------------------------------------------------------------
    async def start(self) -> None:
        restored = await self.engine.db.run(_restore)
        self.idle_state = restored["idle"]
        self.snoozes = restored["snoozes"]
        self.health_state = restored["health"]
        self._start_mark = self._samples_seen = restored["samples_until"]
        self._event_marks = restored["event_marks"]
        self._events_seen = max(self._event_marks.values(), default=NEG_INF)
        self.telemetry.unhealthy_gpus.update(self.health_state.broken())
        for node, reason in restored["cordon_reasons"].items():
            if node in self.telemetry.cordoned:
                self.telemetry.cordoned[node] = reason
        await self.burst.start()
        self._started = True
        if self.engine.config.engine.schedule:
            self.engine.spawn(self._every(self.idle_tick, "idle"), "policy:idle")
            self.engine.spawn(self._every(self.health_tick, "health"), "policy:health")
            if self.engine.config.engine.collect:
                self.engine.spawn(self._every(self.burst.tick, "burst",
                                              max(self.interval_s, 0.5)), "policy:burst")

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await _maybe_await(self.burst.close())

    async def _every(self, fn: Any, what: str, period_s: float | None = None) -> None:
        period = period_s or self.interval_s
        while True:
            try:
                await fn()
            except Exception:
                log.exception("%s policy pass failed", what)
            await asyncio.sleep(period)

    # -- idle ---------------------------------------------------------------------------------
    async def idle_tick(self) -> None:
        """Judge every running GPU job: a verdict for each (shown by explain and the Job
        screen), warn/stop actions for the idle ones when the policy is on."""
        cfg = self.cfg.idle
        now = self.engine.clock()
        lookback = max([cfg.window_s, *(r.window_s for r in cfg.rules if r.window_s)]) + 1.0
        since = now - lookback

        def read(store: Store) -> tuple[list[Any], Any, Any]:
            rows = journal.list_jobs(store, states=(JobState.RUNNING,))
            jobs = running_gpu_jobs(store, rows, since)
            enabled = [j for j in jobs if cfg.settings_for(j)[0].enabled]
            gpu, cpu = usage_rows(store, enabled, since) if enabled else ([], [])
            return jobs, gpu, cpu

        jobs, gpu_rows, cpu_rows = await self.engine.tick_reads.run(read)
        settings = {j.job_id: cfg.settings_for(j)[0] for j in jobs}
        windows = build_usage_windows(jobs, gpu_rows, cpu_rows, since=since)
        result = evaluate_idle(jobs, windows, cfg, self.idle_state, now, self.snoozes)
        self.idle_verdicts = dict(result.verdicts)
        self.idle_blind.update(self.idle_verdicts)
        await self._idle_actions(result.actions, settings, dict(result.state.jobs))

    async def _idle_actions(self, actions: Sequence[Action], settings: Mapping[str, IdleSettings],
                            state: dict[str, IdleJobState]) -> None:
        pending: list[Action] = []
        failed: set[str] = set()
        for a in actions:
            if a.kind == "idle_stop" and not a.dry_run:
                await self._write(pending)
                pending = []
                if not await self._idle_stop(a, settings[a.target]):
                    failed.add(a.target)
                    prev = self.idle_state.get(a.target) or state.get(a.target)
                    if prev is not None:  # warned still: the stop is tried again next pass
                        state[a.target] = dataclasses.replace(prev, phase="warned",
                                                              stopped_at=None)
            elif a.kind == "idle_requeue" and not a.dry_run and a.target in failed:
                continue
            else:
                pending.append(a)
        await self._write(pending)
        self.idle_state = IdleState(state)

    async def _idle_stop(self, a: Action, s: IdleSettings) -> bool:
        try:
            row = await self.engine.db.run(lambda st: journal.get(st, int(a.target)))
            told = idle_event(a, row)
            await self.runner.stop(
                int(a.target), actor=IDLE_ACTOR, reason=a.reason, action=ActionKind.IDLE_STOP,
                evidence=json.loads(a.audit_row()["evidence"]), requeue=s.requeue,
                grace_s=s.stop_timeout_s, events=[told] if told is not None else [])
        except (NotFoundError, journal.TransitionError):
            return True  # ended meanwhile: nothing left to stop
        except FleetdeckError as e:
            log.warning("idle stop of job %s failed: %s", a.target, e)
            return False
        return True

    async def _write(self, actions: Sequence[Action]) -> None:
        if actions:
            rows = list(actions)

            def write(store: Store) -> None:
                jobs = job_rows(store, rows)
                with store.transaction() as con:
                    write_actions(con, rows, jobs)

            await self.engine.db.run(write)

    # -- health -------------------------------------------------------------------------------
    async def health_tick(self) -> None:
        cfg = self.cfg.health
        if not cfg.enabled:
            return
        async with self._health_lock:
            now = self.engine.clock()
            floor = now - HEALTH_LOOKBACK_S
            s_since = max(floor, self._samples_seen - self._lag_s)
            e_since = max(floor, self._events_seen - self._lag_s)
            # rows become samples on the reader thread: a fleet's interval is thousands
            marks, start = dict(self._sample_marks), self._start_mark
            samples, all_events = await self.engine.tick_reads.run(
                lambda s: _health_inputs(s, s_since, e_since, marks, start))
            events = [e for e in all_events
                      if e.ts > self._event_marks.get(e.node, NEG_INF)]
            if not samples and not events:
                return
            for x in samples:
                self._sample_marks[x.node] = max(self._sample_marks.get(x.node, NEG_INF), x.ts)
                self._samples_seen = max(self._samples_seen, x.ts)
            for e in events:
                self._event_marks[e.node] = max(self._event_marks.get(e.node, NEG_INF), e.ts)
                self._events_seen = max(self._events_seen, e.ts)
            snap = await self._snapshot(now)
            state = dataclasses.replace(self.health_state, events_until=NEG_INF)
            result = hp.evaluate_health(samples, events, snap, cfg, state, now)
            await self._apply_health(result)

    async def _snapshot(self, now: float) -> FleetSnapshot:
        """The fleet with its active jobs: the runner's live set while it is what the store
        holds (no job commit since it was read), else the store on the ticks' reader."""
        live = self.engine.runner.live if self.engine.runner is not None else None
        if live is not None and live.loaded and live.current():
            rows = live.rows(ACTIVE)
        else:
            rows = await self.engine.tick_reads.run(
                lambda s: journal.list_jobs(s, states=ACTIVE))
        return snapshot(self.telemetry.inventory(), allocations(rows), now)

    async def _apply_health(self, result: hp.HealthResult, *,
                            cordon: tuple[str, bool] | None = None) -> None:
        """Store intervals, drains, the cordon flag and audit rows in one transaction, then
        update what placement sees and requeue jobs on broken GPUs."""
        self.health_state = dataclasses.replace(result.state, events_until=NEG_INF)
        reasons = {a.target: a.reason for a in result.actions if a.kind == "drain"}
        audited = [a for a in result.actions if a.kind != "health_requeue"]

        def write(store: Store) -> None:
            with store.transaction() as con:
                insert_rows(con, "gpu_health", [i.store_row() for i in result.opened])
                for iv in result.closed:
                    con.execute("UPDATE gpu_health SET broken_until = ? WHERE node = ? AND "
                                "gpu_index = ? AND broken_until IS NULL",
                                [utc(iv.broken_until or iv.broken_from), iv.node, iv.gpu_index])
                for node in result.drain:
                    con.execute("UPDATE nodes SET drained_reason = ? WHERE name = ?",
                                [reasons.get(node, "drained"), node])
                for node in result.undrain:
                    con.execute("UPDATE nodes SET drained_reason = NULL WHERE name = ?", [node])
                if cordon is not None:
                    con.execute("UPDATE nodes SET cordoned = ? WHERE name = ?",
                                [cordon[1], cordon[0]])
                write_actions(con, audited)

        await self.engine.db.run(write)
        for node in result.drain:
            self.telemetry.drained[node] = reasons.get(node, "drained")
        for node in result.undrain:
            self.telemetry.drained.pop(node, None)
        self.telemetry.unhealthy_gpus.clear()
        self.telemetry.unhealthy_gpus.update(self.health_state.broken())
        by_job = {a.target: a for a in result.actions if a.kind == "health_requeue"}
        for job_id in result.requeue:
            a = by_job.get(job_id)
            try:
                await self.runner.stop(
                    int(job_id), actor=a.actor if a else HEALTH_ACTOR,
                    reason=a.reason if a else "GPU unhealthy", action=ActionKind.HEALTH_REQUEUE,
                    evidence=dict(a.evidence) if a else {}, requeue=True)
            except (NotFoundError, journal.TransitionError):
                pass
            except FleetdeckError as e:
                log.warning("requeue of job %s after a GPU failure failed: %s", job_id, e)

    # -- handlers -----------------------------------------------------------------------------
    def _known_node(self, node: str) -> bool:
        return (node in self.telemetry.view().nodes
                or any(n.name == node for n in self.engine.config.nodes))

    async def cordon(self, caller: Caller, req: CordonRequest) -> Cordoned:
        node = req.node
        if not self._known_node(node):
            raise RequestError(ErrorCode.NOT_FOUND, f"no node {node!r} in the fleet")
        reason = req.reason.strip() or f"cordoned by {caller.user}"
        act = hp.cordon(node, caller.user, reason, self.engine.clock())

        def write(store: Store) -> None:
            with store.transaction() as con:
                con.execute("UPDATE nodes SET cordoned = true WHERE name = ?", [node])
                write_actions(con, [act])

        async with self._health_lock:
            await self.engine.db.run(write)
            self.telemetry.cordoned[node] = reason
        return Cordoned(node=node, cordoned=True, reason=reason)

    async def uncordon(self, caller: Caller, req: UncordonRequest) -> Cordoned:
        node = req.node
        if not self._known_node(node):
            raise RequestError(ErrorCode.NOT_FOUND, f"no node {node!r} in the fleet")
        broken = [k for k in self.health_state.broken() if k[0] == node]
        if (node not in self.telemetry.cordoned and node not in self.telemetry.drained
                and not broken):
            raise RequestError(ErrorCode.REFUSED, f"node {node} is not cordoned or drained")
        reason = req.reason.strip() or f"uncordoned by {caller.user}"
        async with self._health_lock:
            now = self.engine.clock()
            snap = await self._snapshot(now)
            result = hp.uncordon(node, caller.user, reason, snap, self.cfg.health,
                                 self.health_state, now)
            await self._apply_health(result, cordon=(node, False))
            self.telemetry.cordoned.pop(node, None)
            self.telemetry.drained.pop(node, None)
        return Cordoned(node=node, cordoned=False, reason=reason,
                        recovered_gpus=sorted(i for _, i in broken))

    async def snooze(self, caller: Caller, req: SnoozeRequest) -> SnoozeEntry:
        job_id, hours = req.job, req.hours
        reason = req.reason.strip()
        if not reason:
            raise RequestError(ErrorCode.BAD_REQUEST, "a snooze needs a reason (--reason)")
        try:
            row = await self.engine.db.run(lambda s: journal.get(s, job_id))
        except NotFoundError as e:
            raise RequestError(ErrorCode.NOT_FOUND, str(e)) from None
        if row.state not in (JobState.QUEUED, *ACTIVE):
            raise RequestError(ErrorCode.REFUSED,
                               f"job {job_id} is {row.state}; nothing to snooze")
        now = self.engine.clock()
        sn = Snooze(str(job_id), caller.user, reason, now + hours * 3600.0)
        await self._write([snooze_action(sn, now)])
        self.snoozes[sn.job_id] = sn
        return _snooze_entry(sn)

    async def _jobs(self, ids: tuple[int, ...]) -> list[JobRow]:
        """Jobs by id: the runner's live ones from memory, the others from the store."""
        runner = self.engine.runner
        if runner is None:
            return await self.engine.reads.run(lambda s: journal.list_jobs(s, ids=ids))
        return await find_jobs(self.engine, runner, JobFilter(ids=ids))

    async def policies(self, caller: Caller, req: PoliciesQuery) -> PoliciesReply:
        now = self.engine.clock()
        ids = tuple(int(j) for j in self.idle_state.jobs)
        rows = {r.id: r for r in await self._jobs(ids)} if ids else {}
        idle = []
        for job_id, st in sorted(self.idle_state.jobs.items(), key=lambda kv: int(kv[0])):
            entry = idle_entry(job_id, st, rows.get(int(job_id)), now)
            if entry is not None:
                idle.append(entry)
        snoozed = [_snooze_entry(s) for s in self.snoozes.values() if s.active(now)]
        unjudged = [{"job": int(j), "status": v.status.value, "reason": v.reason}
                    for j, v in sorted(self.idle_verdicts.items(), key=lambda kv: int(kv[0]))
                    if v.status == IdleStatus.NO_DATA]
        return PoliciesReply(
            idle=idle, idle_unjudged=unjudged, idle_note=self.idle_blind.note,
            snoozed=snoozed, burst=await self.burst.instances_json(),
            cordoned=[NodeReason(node=n, reason=r)
                      for n, r in sorted(self.telemetry.cordoned.items())],
            drained=[{"node": n, "reason": r,
                      "gpus": sorted(i for (k, i) in self.health_state.broken() if k == n)}
                     for n, r in sorted(self.telemetry.drained.items())])


async def _maybe_await(res: Any) -> None:
    if asyncio.iscoroutine(res):
        await res




def idle_entry(job_id: str, st: IdleJobState, row: JobRow | None,
               now: float) -> IdleEntry | None:
    """One `policies` idle line: warned, or stop_due (stop time passed / dry-run stop)."""
    if st.phase == "idle" or row is None or (st.phase == "stopped" and not st.dry_run):
        return None
    ev = st.evidence
    stop_at = ev.get("stop_at")
    due = st.phase == "stopped" or (stop_at is not None and now >= float(stop_at))
    return IdleEntry(
        job=int(job_id), name=row.name, user=row.user, node=row.node,
        state="stop_due" if due else "warned", dry_run=st.dry_run,
        since=st.idle_since, warned_at=st.warned_at, stop_at=stop_at,
        evidence={"window_s": ev.get("window_s"),
                     "mean_util_pct": ev.get("gpu_util_mean_pct"),
                     "max_util_pct": ev.get("gpu_util_max_pct"),
                     "mem_held_bytes": ev.get("gpu_mem_held_bytes"),
                     "cpu_util_pct": ev.get("cpu_util_max_pct")})


def _snooze_entry(sn: Snooze) -> SnoozeEntry:
    return SnoozeEntry(job=int(sn.job_id), user=sn.user, reason=sn.reason,
                       until=datetime.fromtimestamp(sn.until, UTC).isoformat())


# -- store reads (on the store thread) ---------------------------------------------------------

def _health_inputs(store: Store, samples_since: float, events_since: float,
                   marks: Mapping[str, float], start_mark: float,
                   ) -> tuple[list[hp.GpuHealthSample], list[hp.GpuEvent]]:
    """GPU samples after `samples_since` that are newer than their node's mark (the newest
    handled; `start_mark` for a node without one), and GPU events after `events_since`. The
    window reaches back for late commits, so most of it was handled: the marks are joined in
    SQL and only new rows become samples (on the reader thread; epoch in SQL, no datetime
    per row)."""
    import pyarrow as pa

    con = store.con
    con.register("_fd_health_marks", pa.table({
        "node": pa.array(list(marks), pa.string()),
        "mark": pa.array(list(marks.values()), pa.float64())}))
    try:
        sample_rows = con.execute(
            "SELECT g.node, g.gpu_index, epoch(g.ts), g.uuid, g.ecc_uncorrected, "
            "g.retired_pending, g.remap_failure FROM gpu_samples g "
            "LEFT JOIN _fd_health_marks m ON m.node = g.node "
            "WHERE g.ts > ? AND epoch(g.ts) > coalesce(m.mark, ?) ORDER BY g.ts",
            [utc(samples_since), start_mark]).fetchall()
    finally:
        con.unregister("_fd_health_marks")
    event_rows = con.execute(
        "SELECT ts, node, gpu_index, uuid, kind, code, detail FROM gpu_events WHERE ts > ? "
        "ORDER BY ts", [utc(events_since)]).fetchall()
    return hp.samples_from_rows(sample_rows), hp.events_from_rows(event_rows)


def _restore(store: Store) -> dict[str, Any]:
    con = store.con
    idle = restore_idle_state(con.execute(
        "SELECT target, action, ts, evidence, dry_run FROM actions WHERE actor = ? "
        "ORDER BY id", [IDLE_ACTOR]).fetchall())
    snoozes: dict[str, Snooze] = {}
    for target, actor, reason, evidence in con.execute(
            "SELECT target, actor, reason, evidence FROM actions WHERE action = 'snooze' "
            "ORDER BY id").fetchall():
        ev = json.loads(evidence or "{}")
        if ev.get("until") is not None:
            snoozes[str(target)] = Snooze(str(target), str(actor), str(reason or ""),
                                          float(ev["until"]))
    intervals = [hp.GpuHealthInterval(str(n), int(i), u, epoch(f) or 0.0, None, str(r or ""))
                 for n, i, u, f, r in con.execute(
                     "SELECT node, gpu_index, uuid, broken_from, reason FROM gpu_health "
                     "WHERE broken_until IS NULL").fetchall()]
    drained = [str(r[0]) for r in con.execute(
        "SELECT name FROM nodes WHERE drained_reason IS NOT NULL").fetchall()]
    health = hp.restore_health_state(intervals, drained, NEG_INF)
    (samples_until,) = con.execute("SELECT max(ts) FROM gpu_samples").fetchall()[0]
    event_marks = {str(n): epoch(t) or NEG_INF for n, t in con.execute(
        "SELECT node, max(ts) FROM gpu_events GROUP BY node").fetchall()}
    cordon_reasons = {str(t): str(r or "cordoned") for t, r in con.execute(
        "SELECT target, arg_max(reason, id) FROM actions WHERE action = 'cordon' "
        "GROUP BY target").fetchall()}
    return {"idle": idle, "snoozes": snoozes, "health": health,
            "samples_until": epoch(samples_until) or NEG_INF, "event_marks": event_marks,
            "cordon_reasons": cordon_reasons}
