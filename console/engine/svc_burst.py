"""Bursting in the engine: rent cloud nodes for waiting jobs, join them, tear them down, bill.

Each pass (`BurstManager.tick`):
1. polls the providers about active instances: one that runs and answers SSH joins the fleet
   (a node in the collector; the normal runner then places jobs there); one the cloud took
   away (spot interruption) is `lost` and leaves the fleet;
2. runs `evaluate_burst` over the queued GPU jobs the last placement cycle could not place for
   capacity (quota waits do not burst), the fleet snapshot and this month's instances;
3. executes: provisions (background tasks; a provision in flight counts as a `provisioning`
   instance so budgets hold), terminations, requeues of jobs on lost nodes; one audit row per
   decision (refusals once per reason, as the policy announces them);
4. records spend: per instance, every UTC hour and when it ends (`accrue_spend`).

Node settings for a joined instance come from its offer's `options`: `identity_file`,
`docker_socket` (default none), `docker_gpu_runtime` (true), `node_prefix` (`burst-`),
`transport` (ssh). The provider's provision output may carry `node_name`, `transport` and
`host_key` ("ssh-ed25519 AAAA..."); a host key is recorded in the configured known_hosts
before connecting, otherwise known_hosts must already trust the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh

from collectors.errors import FleetdeckError
from collectors.events import EventName
from collectors.store import Store, outbox
from collectors.store.audit import AuditEntry, utc
from collectors.store.audit_kinds import ActionKind, TargetKind
from collectors.store.db import insert_rows
from collectors.transport import TransportError, make_transport
from collectors.transport.hostkeys import add_known_host
from console.config import NodeConfig
from console.engine.burst_store import (
    ACTIVE_STATES,
    BurstPass,
    QueuedJob,
    accrued_until,
    explain_lines,
    insert_instance,
    instance_row,
    instance_rows,
    instances_since,
    mark_joined,
    read_pass,
)
from scheduler import journal
from scheduler.models import ResourceRequest
from scheduler.placement import WaitKind
from scheduler.policies.audit import BURST_ACTOR, Action, to_epoch_s
from scheduler.policies.burst import (
    BurstState,
    BurstVerdict,
    ProvisionDecision,
    TerminateDecision,
    WaitingJob,
    evaluate_burst,
)
from scheduler.policies.events import budget_events, burst_ended, burst_started
from scheduler.policies.spend import (
    BurstInstance,
    InstanceLifecycle,
    accrue_spend,
    budget_use,
    instance_cost,
    period_starts,
)
from scheduler.providers.base import (
    Instance,
    InstanceState,
    Provider,
    ProviderError,
    fleetdeck_tags,
)
from scheduler.providers.registry import build_providers, unavailable_offers
from scheduler.runner import allocations, snapshot
from scheduler.states import ACTIVE, JobState

if TYPE_CHECKING:
    from console.engine.hosting import Host
    from console.engine.svc_telemetry import Telemetry

log = logging.getLogger(__name__)
STATUS_EVERY_S = 2.0  # poll a joined instance's provider status at most this often
FAILED_OFFER_PAUSE_S = 60.0  # an offer whose provision failed is skipped this long
_NODE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(slots=True)
class _Known:
    """What the engine remembers about one instance between passes (not in the store)."""

    instance: Instance | None = None  # the provider's answer to provision
    last_status_at: float = 0.0
    last_error: str = ""
    busy: bool = False  # a join or terminate task is running


class BurstManager:
    """Drives `evaluate_burst` and the providers for one engine."""

    def __init__(self, engine: Host, telemetry: Telemetry) -> None:
        self.engine = engine
        self.telemetry = telemetry
        self.cfg = engine.config.policies.burst
        self.offers = {o.name: o for o in self.cfg.offers}
        self.providers: dict[str, Provider]
        self.providers, self.missing = build_providers(self.cfg.providers, self.cfg.offers)
        self.state = BurstState()
        self.verdicts: dict[str, BurstVerdict] = {}
        self.pending: dict[str, tuple[ProvisionDecision, float]] = {}  # request id -> (d, at)
        self.known: dict[str, _Known] = {}
        self.failed_offers: dict[str, tuple[float, str]] = {}  # offer -> (until, why)
        self.accrued: dict[str, float] = {}
        self._requests: dict[tuple[int, int], ResourceRequest] = {}  # (job, attempt) -> request
        self._hour_mark = 0.0
        self._changed = False  # an instance changed state during this pass
        # the last pass's instance rows (this month's and the active ones) and the count of
        # instance writes when that read began: current while no write came since
        self._rows: tuple[list[dict[str, Any]], int] | None = None
        self._instance_writes = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._budget_told: set[str] = set()  # budget.threshold keys told (evidence.key)
        self._summary: dict[str, Any] = {"burst_spend_today": 0.0,
                                         "burst_budget_today": self.cfg.budget.per_day}
        for name, why in self.missing.items():
            log.warning("burst provider %s unavailable: %s", name, why)

    # -- lifetime -----------------------------------------------------------------------------
    async def start(self) -> None:
        now = self.engine.clock()
        self._hour_mark = now - now % 3600.0
        self.accrued = await self.engine.db.run(accrued_until)
        self._budget_told = await self.engine.db.run(
            lambda s: outbox.evidence_keys(s, EventName.BUDGET_THRESHOLD))
        if self.engine.config.engine.schedule and self.engine.config.engine.collect:
            for d in await self.engine.db.run(lambda s: self._unfinished(s, now)):
                self._spawn(self._provision(d), f"burst-provision-{d.request_id}")

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _unfinished(self, store: Store, now: float) -> list[ProvisionDecision]:
        """Provisions decided before a restart that never got an instance row: asked again
        (providers are idempotent by request id, so nothing is rented twice)."""
        out = []
        rows = store.con.execute(
            "SELECT a.target, a.reason, a.evidence, a.ts FROM actions a WHERE "
            "a.action = 'burst_provision' AND NOT a.dry_run AND a.ts >= ? AND NOT EXISTS "
            "(SELECT 1 FROM burst_instances b WHERE b.request_id = a.target)",
            [utc(now - self.cfg.ready_timeout_s)]).fetchall()
        for rid, reason, evidence, ts in rows:
            ev = json.loads(evidence or "{}")
            offer = self.offers.get(str(ev.get("offer")))
            if offer is None or offer.provider not in self.providers:
                continue
            act = Action(ActionKind.BURST_PROVISION, TargetKind.INSTANCE,
                         str(rid), str(reason), BURST_ACTOR,
                         to_epoch_s(ts), ev)
            out.append(ProvisionDecision(str(rid), offer, tuple(ev.get("jobs") or ()),
                                         ev.get("team"), ev.get("project"), act))
        return out

    # -- what others read ---------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        return dict(self._summary)

    def explain_read(self, job_id: int) -> Callable[[Store], list[str]]:
        """The job's burst lines as a read for a reader thread: its verdict (taken now), then
        the decisions about it from the store."""
        v = self.verdicts.get(str(job_id))
        verdict = [v.reason] if v is not None else []
        return lambda s: explain_lines(s, job_id, verdict)

    async def instances_json(self) -> list[dict[str, Any]]:
        now = self.engine.clock()
        day = period_starts(now)["daily"]
        rows = self._today(day)
        if rows is None:  # no pass read them, or an instance changed since
            rows = await self.engine.reads.run(lambda s: instance_rows(s, since=day))
        out = []
        for r in rows:
            inst = BurstInstance.from_row(r, request_id=r.get("request_id") or "")
            out.append({
                "instance_id": r["instance_id"], "provider": r["provider"], "offer": r["offer"],
                "node": r["node"], "state": r["state"], "gpu_model": r["gpu_model"],
                "gpu_count": r["gpu_count"], "price_per_hour": r["price_per_hour"],
                "cost": round(instance_cost(inst, now,
                                            min_billed_hours=self.cfg.min_billed_hours), 4)
                if inst.active else r["cost"],
                "launched_at": r["launched_at"], "terminated_at": r["terminated_at"],
                "team": r["team"], "project": r["project"]})
        for rid, (d, at) in self.pending.items():
            out.append({"instance_id": None, "request_id": rid, "provider": d.offer.provider,
                        "offer": d.offer.name, "node": None, "state": "requested",
                        "gpu_model": d.offer.gpu_model, "gpu_count": d.offer.gpu_count,
                        "price_per_hour": d.offer.price_per_hour, "cost": 0.0,
                        "launched_at": utc(at), "terminated_at": None, "team": d.team,
                        "project": d.project})
        return out

    def _today(self, day: float) -> list[dict[str, Any]] | None:
        """`instance_rows(since=day)` from the last pass's rows (a month's: all of today's)
        while no instance was written since that read; None otherwise."""
        if self._rows is None or self._rows[1] != self._instance_writes:
            return None
        return instances_since(self._rows[0], day)

    async def _write_instances(self, fn: Callable[[Store], Any]) -> None:
        """A write to `burst_instances`: the last pass's rows are old once it is done."""
        try:
            await self.engine.db.run(fn)
        finally:
            self._instance_writes += 1

    # -- one pass -----------------------------------------------------------------------------
    async def tick(self) -> None:
        now = self.engine.clock()
        placeholders = self._placeholders()
        self._changed = False
        known = set(self._requests)
        wait_s = self.cfg.wait_threshold_s

        def read(s: Store) -> BurstPass:
            return read_pass(s, now, known, wait_s)

        at = self._instance_writes
        data = await self.engine.db.run(read)
        await self._poll(data.rows, now)
        if self._changed:
            at = self._instance_writes
            data = await self.engine.db.run(read)
        self._rows = (data.rows, at)
        self._requests.update(data.requests)
        keys = {(q.id, q.attempt) for q in data.queued}
        self._requests = {k: v for k, v in self._requests.items() if k in keys}
        if not self.cfg.enabled and not any(r["state"] in ACTIVE_STATES for r in data.rows):
            self.verdicts = {}
            self._summarize(data, placeholders, now)
            return
        seen = {r.get("request_id") for r in data.rows}
        instances = [BurstInstance.from_row(r, request_id=r.get("request_id") or "",
                                            last_job_ended_at=data.last_end.get(r["node"] or ""))
                     for r in data.rows]
        instances += [p for p in placeholders if p.request_id not in seen]
        waiting = self._waiting(data.queued)
        snap = snapshot(self.telemetry.inventory(), allocations(data.active_jobs), now)
        unavailable = unavailable_offers(self.cfg.offers, self.missing)
        for name, (until, why) in list(self.failed_offers.items()):
            if now >= until:
                del self.failed_offers[name]
            else:
                unavailable.setdefault(name, f"provision failed recently: {why}")
        result = evaluate_burst(waiting, snap, instances, self.cfg, self.state, now,
                                unavailable=unavailable)
        self.state = result.state
        self.verdicts = dict(result.verdicts)
        pseudo = {p.instance_id for p in placeholders}
        terminations = [t for t in result.terminations
                        if t.instance_id not in pseudo
                        and not self.known.get(t.instance_id, _Known()).busy]
        skip = {id(t.action) for t in result.terminations if t not in terminations}
        audited = [a for a in result.actions
                   if a.kind != "burst_requeue" and id(a) not in skip]
        await self._audit(audited)
        for d in result.provisions:
            self.pending[d.request_id] = (d, now)
            self._spawn(self._provision(d), f"burst-provision-{d.request_id}")
        rows_by_id = {r["instance_id"]: r for r in data.rows}
        for t in terminations:
            self.known.setdefault(t.instance_id, _Known()).busy = True
            self._spawn(self._terminate(t, rows_by_id[t.instance_id]),
                        f"burst-terminate-{t.instance_id}")
        for a in result.requeues:
            await self._requeue(a)
        await self._bill(instances, data, now)
        self._summarize(data, placeholders, now)

    def _summarize(self, data: BurstPass, placeholders: Sequence[BurstInstance],
                   now: float) -> None:
        instances = [BurstInstance.from_row(r) for r in data.rows] + list(placeholders)
        use = budget_use(instances, now, min_billed_hours=self.cfg.min_billed_hours)
        spent = use.get(("global", "", "daily"))
        self._summary = {"burst_spend_today": round(spent.spent, 4) if spent else 0.0,
                         "burst_budget_today": self.cfg.budget.per_day}
        limits = {("global", ""): self.cfg.budget,
                  **{("team", k): v for k, v in self.cfg.teams.items()},
                  **{("project", k): v for k, v in self.cfg.projects.items()}}
        told = budget_events(use, limits, self.engine.config.rates.currency, now,
                             self._budget_told)
        if told:
            self._budget_told.update(str(e.evidence["key"]) for e in told)
            self._spawn(self.engine.db.run(lambda s: outbox.emit(s, told)), "budget-events")

    def _placeholders(self) -> list[BurstInstance]:
        out = []
        for rid, (d, at) in self.pending.items():
            o = d.offer
            out.append(BurstInstance(
                instance_id=rid, provider=o.provider, offer=o.name,
                price_per_hour=o.price_per_hour, launched_at=at,
                state=InstanceLifecycle.PROVISIONING, request_id=rid, team=d.team,
                project=d.project, pool=o.pool,
                gpu_model=o.gpu_model, gpu_count=o.gpu_count, market=o.market))
        return out

    def _waiting(self, queued: Sequence[QueuedJob]) -> list[WaitingJob]:
        plan = self.engine.runner.last_plan if self.engine.runner is not None else None
        if plan is None:
            return []
        out = []
        for q in queued:
            reason = plan.pending.get(str(q.id))
            request = self._requests.get((q.id, q.attempt))
            if reason is None or reason.kind is WaitKind.QUOTA or request is None:
                continue  # placed this cycle, or waiting for quota, not capacity
            out.append(WaitingJob(job_id=str(q.id), request=request,
                                  waiting_since=q.waiting_since, team=q.team,
                                  project=q.project, user=q.user, attempt=q.attempt))
        return out

    async def _audit(self, actions: Sequence[Action]) -> None:
        if not actions:
            return
        rows = [a.audit_row() for a in actions]

        def write(store: Store) -> None:
            with store.transaction() as con:
                insert_rows(con, "actions", rows)

        await self.engine.db.run(write)

    # -- providers ----------------------------------------------------------------------------
    async def _poll(self, rows: Sequence[dict[str, Any]], now: float) -> None:
        for r in rows:
            iid = str(r["instance_id"])
            k = self.known.setdefault(iid, _Known())
            if k.busy or r["state"] not in ACTIVE_STATES:
                continue
            provider = self.providers.get(str(r["provider"]))
            if provider is None:
                continue
            # a terminate cut short (restart): finish it
            if r["state"] == InstanceLifecycle.TERMINATING:
                k.busy = True
                self._spawn(self._terminate(None, r), f"burst-terminate-{iid}")
                continue
            joined = r["node"] is not None and r["node"] in self.telemetry.collector.nodes
            if now - k.last_status_at < (STATUS_EVERY_S if joined else 0.5):
                continue
            k.last_status_at = now
            try:
                st = await provider.status(iid)
            except ProviderError as e:
                if str(e) != k.last_error:
                    log.warning("burst instance %s: %s", iid, e)
                k.last_error = str(e)
                continue
            if st.state is InstanceState.RUNNING and st.host and not joined:
                k.busy = True
                self._spawn(self._join(r, st.host, st.port, st.user),
                            f"burst-join-{iid}")
            elif st.state in (InstanceState.LOST, InstanceState.TERMINATED):
                await self._ended(r, InstanceLifecycle.LOST,
                                  st.reason or f"{st.state.value} outside fleetdeck")

    async def _provision(self, d: ProvisionDecision) -> None:
        provider = self.providers.get(d.offer.provider)
        try:
            if provider is None:
                raise ProviderError(f'provider "{d.offer.provider}" is unavailable')
            tags = fleetdeck_tags(d.request_id, team=d.team, project=d.project,
                                  offer=d.offer.name)
            inst = await provider.provision(d.offer, request_id=d.request_id, tags=tags)
        except (ProviderError, OSError) as e:
            now = self.engine.clock()
            self.failed_offers[d.offer.name] = (now + FAILED_OFFER_PAUSE_S, str(e))
            # said once, then once a minute with a count (console.engine.faults)
            self.engine.faults.fail(f"provider:{d.offer.provider}", "provisioning failing",
                                    str(e))
            await self._audit([Action(ActionKind.BURST_FAILED, TargetKind.INSTANCE,
                                      d.request_id, str(e),
                                      BURST_ACTOR, now, {"offer": d.offer.name})])
            self.pending.pop(d.request_id, None)
            return
        self.engine.faults.ok(f"provider:{d.offer.provider}")
        self.known.setdefault(inst.instance_id, _Known()).instance = inst
        row = instance_row(inst, d, launched_at=d.action.ts)
        told = burst_started(inst.instance_id, d.offer.name, d.team, d.project,
                             d.offer.price_per_hour, self.engine.clock())
        try:
            await self._write_instances(lambda s: insert_instance(s, row, events=[told]))
        finally:
            self.pending.pop(d.request_id, None)
            self._changed = True

    def _node_config(self, r: Mapping[str, Any], host: str, port: int,
                     user: str | None) -> NodeConfig:
        offer = self.offers.get(str(r["offer"]))
        opts: Mapping[str, str] = offer.options if offer else {}
        k = self.known.get(str(r["instance_id"]))
        extra = k.instance.extra if k and k.instance else {}
        name = str(r.get("node") or extra.get("node_name") or "") or _NODE_NAME.sub(
            "-", opts.get("node_prefix", "burst-") + str(r["instance_id"]))
        labels = {"fleetdeck.burst": "true", "fleetdeck.instance": str(r["instance_id"]),
                  "fleetdeck.offer": str(r["offer"] or "")}
        ident = opts.get("identity_file")
        transport = str(extra.get("transport") or opts.get("transport") or "ssh")
        return NodeConfig(name=name, host=host, port=port, user=user,
                          identity_file=Path(ident).expanduser() if ident else None,
                          transport=transport, labels=labels,  # type: ignore[arg-type]
                          pool=str(r["pool"] or (offer.pool if offer else "burst")),
                          docker_socket=opts.get("docker_socket", ""),
                          docker_gpu_runtime=opts.get("docker_gpu_runtime", "true") == "true")

    async def _join(self, r: Mapping[str, Any], host: str, port: int, user: str | None) -> None:
        iid = str(r["instance_id"])
        k = self.known.setdefault(iid, _Known())
        try:
            node = self._node_config(r, host, port, user)
            extra = k.instance.extra if k.instance else {}
            host_key = extra.get("host_key")
            if isinstance(host_key, str) and host_key.strip():
                key = asyncssh.import_public_key(host_key.strip())
                await asyncio.to_thread(add_known_host, self.engine.config.ssh.known_hosts,
                                        host, port, key, replace=True)
            probe = make_transport(node, self.telemetry.collector.ssh)
            try:
                await probe.connect()
            finally:
                await probe.close()
            if node.name not in self.telemetry.collector.nodes:
                await self.telemetry.collector.add_node(node)
            now = self.engine.clock()
            await self._write_instances(lambda s: mark_joined(s, iid, node, now))
            log.info("burst instance %s joined the fleet as %s", iid, node.name)
        except (TransportError, asyncssh.Error, FleetdeckError, ValueError, OSError) as e:
            log.info("burst instance %s not reachable yet: %s", iid, e)
        finally:
            k.busy = False
            self._changed = True

    async def _terminate(self, t: TerminateDecision | None, r: Mapping[str, Any]) -> None:
        iid = str(r["instance_id"])
        k = self.known.setdefault(iid, _Known())
        try:
            await self._write_instances(lambda s: s.con.execute(
                "UPDATE burst_instances SET state = 'terminating' WHERE instance_id = ?",
                [iid]))
            await self._leave(r)
            provider = self.providers.get(str(r["provider"]))
            if provider is None:
                raise ProviderError(f'provider "{r["provider"]}" is unavailable')
            await provider.terminate(iid)
            await self._ended(r, InstanceLifecycle.TERMINATED, t.reason if t else "terminated")
        except ProviderError as e:
            log.warning("terminating burst instance %s failed (retried): %s", iid, e)
        finally:
            k.busy = False
            self._changed = True

    async def _leave(self, r: Mapping[str, Any]) -> None:
        node = r.get("node")
        if node and node in self.telemetry.collector.nodes:
            await self.telemetry.collector.remove_node(str(node))

    async def _ended(self, r: Mapping[str, Any], state: InstanceLifecycle, reason: str) -> None:
        """The instance is gone (terminated by us, or lost): final cost and spend rows."""
        await self._leave(r)
        now = self.engine.clock()
        iid = str(r["instance_id"])
        inst = BurstInstance.from_row({**r, "state": state, "terminated_at": utc(now)},
                                      request_id=str(r.get("request_id") or ""))
        mbh = self.cfg.min_billed_hours
        cost = instance_cost(inst, now, min_billed_hours=mbh)
        start = self.accrued.get(iid, inst.launched_at)
        spend = [s.store_row() for s in accrue_spend([inst], start, now + 1e-3,
                                                     min_billed_hours=mbh)]
        lost = state == InstanceLifecycle.LOST

        def write(store: Store) -> None:
            with store.transaction() as con:
                con.execute("UPDATE burst_instances SET state = ?, terminated_at = ?, cost = ? "
                            "WHERE instance_id = ?", [state, utc(now), cost, iid])
                insert_rows(con, "spend", spend)
                outbox.append(con, [burst_ended(
                    iid, state, reason, r.get("node"), r.get("team"), r.get("project"), cost,
                    now)])
                if r.get("node"):
                    con.execute("UPDATE nodes SET state = 'unknown', state_reason = ? "
                                "WHERE name = ?", [f"burst instance {iid} {state}", r["node"]])
                if lost:
                    insert_rows(con, "actions", [Action(
                        ActionKind.BURST_LOST, TargetKind.INSTANCE, iid, reason, BURST_ACTOR, now,
                        {"node": r.get("node"), "provider": r.get("provider"),
                         "market": r.get("market")}).audit_row()])

        await self._write_instances(write)
        self.accrued[iid] = now
        self._changed = True

    async def _requeue(self, a: Action) -> None:
        """A job of a lost node: it cannot be stopped there; lost, then queued again."""
        job_id = int(a.target)
        now = self.engine.clock()
        audit = AuditEntry(a.actor, a.kind, TargetKind.JOB, a.target, a.reason, dict(a.evidence))

        def move(store: Store) -> None:
            row = journal.get(store, job_id)
            if row.state not in ACTIVE:
                return
            journal.transition(store, job_id, JobState.LOST,
                               reason=a.reason, actor=a.actor, now=now)
            journal.transition(store, job_id, JobState.QUEUED, reason=a.reason, actor=a.actor,
                               now=now, audit=audit, attempt=row.attempt + 1, node=None,
                               gpu_indices=None, external_id=None, started_at=None,
                               ended_at=None)

        with contextlib.suppress(journal.TransitionError, FleetdeckError):
            await self.engine.db.run(move)

    # -- money --------------------------------------------------------------------------------
    async def _bill(self, instances: Sequence[BurstInstance], data: BurstPass,
                    now: float) -> None:
        """Hourly spend rows for running instances; the running cost in `burst_instances`."""
        hour = now - now % 3600.0
        real = {str(r["instance_id"]) for r in data.rows}
        active = [i for i in instances if i.active and i.instance_id in real]
        if hour <= self._hour_mark or not active:
            self._hour_mark = max(self._hour_mark, hour)
            return
        self._hour_mark = hour
        mbh = self.cfg.min_billed_hours
        spend = []
        costs = []
        for inst in active:
            start = self.accrued.get(inst.instance_id, inst.launched_at)
            if start < hour:
                spend += [s.store_row() for s in accrue_spend([inst], start, hour,
                                                              min_billed_hours=mbh)]
                self.accrued[inst.instance_id] = hour
            costs.append((instance_cost(inst, now, min_billed_hours=mbh), inst.instance_id))

        def write(store: Store) -> None:
            with store.transaction() as con:
                insert_rows(con, "spend", spend)
                # only running instances: one that ended meanwhile has its final cost
                con.executemany("UPDATE burst_instances SET cost = ? WHERE instance_id = ? "
                                "AND terminated_at IS NULL", costs)

        await self._write_instances(write)
