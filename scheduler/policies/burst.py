"""Bursting to the cloud under hard budgets: provision, refuse (with the reason), tear down,
requeue after spot interruptions.

Trigger, per waiting GPU job (oldest first): it waited at least `wait_threshold_s`, and the
on-prem GPUs it could use (schedulable non-burst nodes matching its pool, labels, GPU model,
GPU memory and GPU count) are at least `allocation_threshold_pct` allocated (no such GPU
counts as 100%). A job that fits capacity already on its way (a pending burst node of its
team and project, or free GPUs on a joined one) waits for it. Otherwise offers are tried in
config order; an offer is refused when it cannot run the job, its provider is unavailable,
it reached `max_nodes`, or `price_per_hour * min_billed_hours` plus what was spent and
committed would exceed any budget: global, the job's team or its project, per UTC day or
month. Several jobs of one team/project share a node when it has GPUs left.

Teardown: a joined burst node without a running fleetdeck job for `idle_teardown_s`, and a
node not ready after `ready_timeout_s`, are terminated. A lost node (spot interruption)
requeues the jobs that ran on it.

`BurstState` remembers which refusals and dry-run decisions were already announced, so the
audit gets one row per new decision, not one per evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from collectors.config_schema import doc
from collectors.formatting import duration_text
from collectors.store.audit_kinds import ActionKind, TargetKind
from scheduler.models import FleetSnapshot, NodeCapacity, ResourceRequest
from scheduler.policies.audit import BURST_ACTOR, Action
from scheduler.policies.spend import (
    BudgetUse,
    BurstInstance,
    InstanceLifecycle,
    Period,
    ScopeKey,
    budget_use,
)
from scheduler.providers.base import Offer
from scheduler.providers.config import ProviderConfig

_PERIODS: tuple[Period, ...] = ("daily", "monthly")


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    """Spend limits of one scope; unset means no limit at that level."""

    per_day: float | None = field(default=None, metadata=doc(
        "most money per UTC day", min=0))
    per_month: float | None = field(default=None, metadata=doc(
        "most money per UTC calendar month", min=0))


@dataclass(frozen=True, slots=True)
class BurstConfig:
    """`[policies.burst]`, with `[policies.burst.budget]`, `[policies.burst.teams.NAME]`,
    `[policies.burst.projects.NAME]`, `[[policies.burst.offers]]` (priority order) and
    `[[policies.burst.providers]]`."""

    enabled: bool = field(default=False, metadata=doc("provision burst nodes"))
    dry_run: bool = field(default=False, metadata=doc(
        "record would-be provisions/terminations, rent nothing"))
    wait_threshold_s: float = field(default=300.0, metadata=doc(
        "a job must wait this long before it can trigger a burst", min=0))
    allocation_threshold_pct: float = field(default=100.0, metadata=doc(
        "burst only when the on-prem GPUs a job could use are this allocated", min=0, max=100))
    min_billed_hours: float = field(default=1.0, metadata=doc(
        "hours a new node is assumed to cost at least; budgets reserve this much", min=0))
    idle_teardown_s: float = field(default=900.0, metadata=doc(
        "terminate a burst node after this long without a fleetdeck job", min=0))
    ready_timeout_s: float = field(default=1200.0, metadata=doc(
        "terminate a node that did not join the fleet within this long", min=1))
    max_nodes: int = field(default=8, metadata=doc("burst nodes at once, all offers", min=0))
    budget: BudgetLimits = field(default_factory=BudgetLimits, metadata=doc(
        "global limits (at least one is required when enabled)"))
    teams: dict[str, BudgetLimits] = field(default_factory=dict, metadata=doc(
        "limits per team"))
    projects: dict[str, BudgetLimits] = field(default_factory=dict, metadata=doc(
        "limits per project"))
    require_team_budget: bool = field(default=False, metadata=doc(
        "refuse jobs whose team has no entry under teams"))
    offers: tuple[Offer, ...] = field(default=(), metadata=doc(
        "what may be rented, tried in this order"))
    providers: tuple[ProviderConfig, ...] = field(default=(), metadata=doc(
        "providers offers refer to by name"))

    def __post_init__(self) -> None:
        names = [o.name for o in self.offers]
        if len(set(names)) != len(names):
            raise ValueError("offer names to be unique")
        known = {p.name for p in self.providers}
        for o in self.offers:
            if self.providers and o.provider not in known:
                raise ValueError(f"offer {o.name!r} to name a configured provider "
                                 f"(known: {', '.join(sorted(known))})")
        if self.enabled and self.budget.per_day is None and self.budget.per_month is None:
            raise ValueError("budget.per_day or budget.per_month when burst is enabled")


@dataclass(frozen=True, slots=True)
class WaitingJob:
    """A queued job as the burst policy sees it."""

    job_id: str
    request: ResourceRequest
    waiting_since: float  # submitted, or requeued, at
    team: str | None = None
    project: str | None = None
    user: str = ""
    attempt: int = 0
    burst_ok: bool = True  # the job spec may forbid running in the cloud

    @property
    def request_id(self) -> str:
        """Idempotency key of the node this job would trigger (`.N` is appended when an
        earlier node for the same key ended)."""
        return f"fd-{self.job_id}-{self.attempt}"


@dataclass(frozen=True, slots=True)
class BurstVerdict:
    """Per waiting job: status waiting | on_prem | covered | provision | refused | disabled |
    not_gpu, and the line `fleetdeck explain` shows."""

    job_id: str
    status: str
    reason: str
    evidence: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProvisionDecision:
    """Rent one node of `offer` for `job_ids`; call provider.provision(offer,
    request_id=..., tags=fleetdeck_tags(request_id, team=..., project=..., offer=...))."""

    request_id: str
    offer: Offer
    job_ids: tuple[str, ...]
    team: str | None
    project: str | None
    action: Action


@dataclass(frozen=True, slots=True)
class TerminateDecision:
    instance_id: str
    provider: str
    reason: str
    action: Action


@dataclass(frozen=True, slots=True)
class BurstState:
    """Announced decisions: key -> code (refusal reason code, or 'dry-run')."""

    announced: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BurstResult:
    provisions: tuple[ProvisionDecision, ...]  # to execute (never dry-run ones)
    terminations: tuple[TerminateDecision, ...]  # to execute
    requeues: tuple[Action, ...]  # jobs of lost nodes, to requeue
    actions: tuple[Action, ...]  # every row to audit this time, dry-run ones included
    verdicts: Mapping[str, BurstVerdict]
    state: BurstState


@dataclass(slots=True)
class _Slot:
    """Burst capacity on its way (or free on a joined node) during one evaluation."""

    key: str  # instance id or request id
    team: str | None
    project: str | None
    offer: Offer | None
    gpu_model: str
    free_gpus: int
    request_id: str = ""
    used: bool = False


def onprem_allocation_pct(nodes: Sequence[NodeCapacity], req: ResourceRequest
                          ) -> tuple[float, int]:
    """Allocated share (%) of the on-prem GPUs `req` could use, and how many those are."""
    total = 0
    alloc = 0
    for n in nodes:
        if not n.schedulable or (req.pool is not None and n.pool != req.pool):
            continue
        if req.node is not None and n.name != req.node:
            continue
        if any(n.labels.get(k) != v for k, v in req.labels.items()):
            continue
        gpus = [g for g in n.gpus if g.healthy
                and (not req.gpu_models or g.model in req.gpu_models)
                and g.mem_total_bytes >= req.min_gpu_mem_bytes]
        if len(gpus) < max(1, req.gpu_count):
            continue
        total += len(gpus)
        alloc += sum(g.alloc_milli for g in gpus)
    if total == 0:
        return 100.0, 0
    return 100.0 * alloc / (total * 1000), total


def offer_fits(offer: Offer, req: ResourceRequest) -> str | None:
    """None when a node of `offer` can run `req`, else why not."""
    if req.node is not None:
        return f"job is pinned to node {req.node}"
    if req.pool is not None and req.pool != offer.pool:
        return f"job needs pool {req.pool}, offer joins {offer.pool}"
    if req.gpu_models and offer.gpu_model not in req.gpu_models:
        return f"job needs {'/'.join(sorted(req.gpu_models))}, offer has {offer.gpu_model}"
    if req.gpu_count > offer.gpu_count:
        return f"job needs {req.gpu_count} GPUs, offer has {offer.gpu_count}"
    if req.min_gpu_mem_bytes and req.min_gpu_mem_bytes > offer.gpu_mem_bytes:
        return "offer GPU memory is below the job's minimum (or unknown)"
    if offer.cpu_milli and req.cpu_milli > offer.cpu_milli:
        return "offer has too few CPUs"
    if offer.mem_bytes and req.mem_bytes > offer.mem_bytes:
        return "offer has too little memory"
    return None


def _not_yet(job: WaitingJob, waited: float, onprem: Sequence[NodeCapacity],
             config: BurstConfig, ev: dict[str, Any]) -> tuple[BurstVerdict | None, float]:
    """The verdict for a job that does not call for a burst node (needs no GPU, has not waited
    long enough, on-prem GPUs it could use are not busy enough) or None, and the allocation %
    of the on-prem GPUs it could use (also recorded in `ev`)."""
    req = job.request
    if req.gpu_count == 0 or not job.burst_ok:
        why = "needs no GPU" if req.gpu_count == 0 else "job does not allow bursting"
        return BurstVerdict(job.job_id, "not_gpu", f"no burst: {why}", ev), 0.0
    if waited < config.wait_threshold_s:
        return BurstVerdict(
            job.job_id, "waiting", f"waiting {duration_text(waited)}; burst considered after "
            f"{duration_text(config.wait_threshold_s)}", ev), 0.0
    pct, eligible = onprem_allocation_pct(onprem, req)
    ev.update({"onprem_alloc_pct": round(pct, 2), "onprem_eligible_gpus": eligible,
               "allocation_threshold_pct": config.allocation_threshold_pct})
    if pct < config.allocation_threshold_pct:
        return BurstVerdict(
            job.job_id, "on_prem", f"no burst: on-prem GPUs it could use are {pct:.0f}% "
            f"allocated (< {config.allocation_threshold_pct:g}%)", ev), pct
    return None, pct


def _first_offer(
    job: WaitingJob, config: BurstConfig, unavailable: Mapping[str, str],
    use: Mapping[ScopeKey, BudgetUse], planned_cost: Mapping[ScopeKey, float],
    nodes_per_offer: Mapping[str, int], total_nodes: int,
) -> tuple[Offer | None, list[tuple[str, str, str, bool]]]:
    """The first offer (config order) that may be rented for `job`, and why the ones before
    it may not: (offer, code, reason, whether it fits the job)."""
    refusals: list[tuple[str, str, str, bool]] = []
    for offer in config.offers:
        code, why, fits = _refusal(offer, job, config, unavailable, use, planned_cost,
                                   nodes_per_offer, total_nodes)
        if code is None:
            return offer, refusals
        refusals.append((offer.name, code, why, fits))
    return None, refusals


def _refusal_summary(refusals: Sequence[tuple[str, str, str, bool]]) -> tuple[str, str]:
    """(code, why) of a refused burst: the first offer that fits the job but may not be
    rented, else why none fits."""
    fitting = [r for r in refusals if r[3]]
    if fitting:
        _, code, why, _ = fitting[0]
        return code, why
    if refusals:
        return "nofit", "no offer fits: " + refusals[0][2]
    return "nooffer", "no offers configured"


def evaluate_burst(
    waiting: Sequence[WaitingJob],
    snapshot: FleetSnapshot,
    instances: Sequence[BurstInstance],
    config: BurstConfig,
    state: BurstState,
    now: float,
    *,
    unavailable: Mapping[str, str] | None = None,
) -> BurstResult:
    """One evaluation. `instances`: every burst instance of the current month (ended ones
    count for budgets). `unavailable`: offer name -> reason (see
    `providers.registry.unavailable_offers`)."""
    ev = _Evaluation(snapshot, instances, config, state, now, unavailable or {})
    for job in sorted(waiting, key=lambda j: (j.waiting_since, j.job_id)):
        ev.verdicts[job.job_id] = ev.decide(job)
    return ev.result()


class _Evaluation:
    """One evaluation's running totals: nodes and money committed so far, and its actions."""

    def __init__(self, snapshot: FleetSnapshot, instances: Sequence[BurstInstance],
                 config: BurstConfig, state: BurstState, now: float,
                 unavailable: Mapping[str, str]) -> None:
        self.snapshot = snapshot
        self.instances = instances
        self.config = config
        self.state = state
        self.now = now
        self.unavailable = unavailable
        burst_nodes = {i.node for i in instances if i.node}
        burst_pools = {o.pool for o in config.offers}
        self.onprem = [n for n in snapshot.nodes
                       if n.name not in burst_nodes and n.pool not in burst_pools]
        self.active = [i for i in instances if i.active]
        self.slots = _slots(self.active, snapshot, {o.name: o for o in config.offers})
        self.use = budget_use(instances, now, min_billed_hours=config.min_billed_hours)
        self.planned_cost: dict[ScopeKey, float] = {}
        self.nodes_per_offer: dict[str, int] = {}
        for i in self.active:
            self.nodes_per_offer[i.offer] = self.nodes_per_offer.get(i.offer, 0) + 1
        self.total_nodes = len(self.active)
        self.used_rids = {i.request_id for i in instances if i.request_id}
        self.provisions: list[ProvisionDecision] = []
        self.verdicts: dict[str, BurstVerdict] = {}
        self.actions: list[Action] = []
        self.announced: dict[str, str] = {}

    def announce(self, key: str, code: str, action: Action) -> None:
        """Audit `action` unless the last evaluation already announced `code` for `key`."""
        if self.state.announced.get(key) != code:
            self.actions.append(action)
        self.announced[key] = code

    def decide(self, job: WaitingJob) -> BurstVerdict:
        """The verdict for one waiting job (oldest first), provisioning when it calls for it."""
        config = self.config
        waited = self.now - job.waiting_since
        ev: dict[str, Any] = {"waited_s": waited, "wait_threshold_s": config.wait_threshold_s}
        early, pct = _not_yet(job, waited, self.onprem, config, ev)
        if early is not None:
            return early
        slot = _take_slot(self.slots, job)
        if slot is not None:
            return BurstVerdict(job.job_id, "covered", f"waiting for burst node {slot.key}", ev)
        if not config.enabled:
            return BurstVerdict(job.job_id, "disabled", "no burst: bursting is disabled", ev)
        chosen, refusals = _first_offer(job, config, self.unavailable, self.use,
                                        self.planned_cost, self.nodes_per_offer,
                                        self.total_nodes)
        if chosen is None:
            return self.refuse(job, refusals, ev)
        return self.provision(job, chosen, refusals, ev, waited, pct)

    def refuse(self, job: WaitingJob, refusals: Sequence[tuple[str, str, str, bool]],
               ev: dict[str, Any]) -> BurstVerdict:
        code, why = _refusal_summary(refusals)
        reason = f"burst refused: {why}"
        ev["offers"] = {name: w for name, _, w, _ in refusals}
        self.announce(f"refuse:{job.job_id}", code,
                      Action(ActionKind.BURST_REFUSE, TargetKind.JOB,
                             job.job_id, reason, BURST_ACTOR, self.now, ev))
        return BurstVerdict(job.job_id, "refused", reason, ev)

    def provision(self, job: WaitingJob, chosen: Offer,
                  refusals: Sequence[tuple[str, str, str, bool]], ev: dict[str, Any],
                  waited: float, pct: float) -> BurstVerdict:
        """Rent a node of `chosen` for `job` (counted against budgets and max_nodes)."""
        config = self.config
        rid = _fresh_request_id(job, self.used_rids)
        self.used_rids.add(rid)
        cost = chosen.price_per_hour * config.min_billed_hours
        for key in _scopes(job):
            self.planned_cost[key] = self.planned_cost.get(key, 0.0) + cost
        self.nodes_per_offer[chosen.name] = self.nodes_per_offer.get(chosen.name, 0) + 1
        self.total_nodes += 1
        self.slots.append(_Slot(rid, job.team, job.project, chosen, chosen.gpu_model,
                                chosen.gpu_count - job.request.gpu_count, rid, used=True))
        ev.update({"offer": chosen.name, "provider": chosen.provider,
                   "instance_type": chosen.instance_type, "market": chosen.market,
                   "price_per_hour": chosen.price_per_hour, "team": job.team,
                   "project": job.project, "jobs": [job.job_id],
                   "skipped_offers": {name: w for name, _, w, _ in refusals}})
        reason = (f"job {job.job_id} waited {duration_text(waited)}, on-prem GPUs it could use "
                  f"{pct:.0f}% allocated: {chosen.describe()}")
        act = Action(ActionKind.BURST_PROVISION, TargetKind.INSTANCE,
                     rid, reason, BURST_ACTOR, self.now, ev,
                     dry_run=config.dry_run)
        if config.dry_run:
            self.announce(f"provision:{rid}", "dry-run", act)
        else:
            self.actions.append(act)
            self.provisions.append(ProvisionDecision(rid, chosen, (job.job_id,), job.team,
                                                     job.project, act))
        return BurstVerdict(job.job_id, "provision",
                            f"provisioning {chosen.describe()} ({rid})", ev)

    def result(self) -> BurstResult:
        """Teardowns and requeues after the provisions, and the result."""
        config = self.config
        terminations, requeues = _teardown(self.active, self.instances, self.snapshot,
                                           self.slots, config, self.now)
        for t in terminations:
            if config.dry_run:
                self.announce(f"terminate:{t.instance_id}", "dry-run", t.action)
            else:
                self.actions.append(t.action)
        self.actions.extend(requeues)
        return BurstResult(
            tuple(self.provisions), () if config.dry_run else tuple(terminations),
            tuple(requeues), tuple(self.actions), dict(self.verdicts),
            BurstState(dict(self.announced)))


def _fresh_request_id(job: WaitingJob, used: set[str]) -> str:
    """`fd-<job>-<attempt>`, or with `.N` when that request already has an (ended) instance:
    providers are idempotent by request id and would hand back the old one."""
    base = job.request_id
    if base not in used:
        return base
    n = 1
    while f"{base}.{n}" in used:
        n += 1
    return f"{base}.{n}"


def _scopes(job: WaitingJob) -> list[ScopeKey]:
    keys: list[ScopeKey] = []
    for p in _PERIODS:
        keys.append(("global", "", p))
        if job.team:
            keys.append(("team", job.team, p))
        if job.project:
            keys.append(("project", job.project, p))
    return keys


def _refusal(offer: Offer, job: WaitingJob, config: BurstConfig, unavailable: Mapping[str, str],
             use: Mapping[ScopeKey, BudgetUse], planned: Mapping[ScopeKey, float],
             per_offer: Mapping[str, int], total_nodes: int) -> tuple[str | None, str, bool]:
    """(code, reason, fits): code None means the offer may be provisioned."""
    misfit = offer_fits(offer, job.request)
    if misfit is not None:
        return f"fit:{offer.name}", f"offer {offer.name}: {misfit}", False
    if offer.name in unavailable:
        return f"unavailable:{offer.name}", f"offer {offer.name}: {unavailable[offer.name]}", True
    if total_nodes >= config.max_nodes:
        return "max", f"burst is at max_nodes {config.max_nodes}", True
    if per_offer.get(offer.name, 0) >= offer.max_nodes:
        return (f"max:{offer.name}", f"offer {offer.name} is at its max_nodes "
                f"{offer.max_nodes}", True)
    checks: list[tuple[str, str, BudgetLimits | None]] = [("global", "", config.budget)]
    if job.team is None:
        if config.require_team_budget:
            return "noteam", "job has no team and require_team_budget is set", True
    else:
        limits = config.teams.get(job.team)
        if limits is None and config.require_team_budget:
            return f"noteam:{job.team}", f"team {job.team} has no burst budget", True
        checks.append(("team", job.team, limits))
    if job.project is not None:
        checks.append(("project", job.project, config.projects.get(job.project)))
    cost = offer.price_per_hour * config.min_billed_hours
    for kind, name, limits in checks:
        if limits is None:
            continue
        for p, limit in zip(_PERIODS, (limits.per_day, limits.per_month), strict=True):
            if limit is None:
                continue
            key: ScopeKey = (kind, name, p)
            u = use.get(key, BudgetUse())
            spent = u.spent
            committed = u.committed + planned.get(key, 0.0)
            if spent + committed + cost > limit + 1e-9:
                who = "global" if kind == "global" else f"{kind} {name}"
                price = f"offer {offer.price_per_hour:.2f}/h"
                if config.min_billed_hours != 1.0:
                    price += f" x {config.min_billed_hours:g} h minimum"
                extra = f", committed {committed:.2f}" if committed > 0 else ""
                return (f"budget:{kind}:{name}:{p}",
                        f"{who} {p} budget {limit:.2f} would be exceeded "
                        f"(spent {spent:.2f}{extra}, {price})", True)
    return None, "", True


def _slots(active: Sequence[BurstInstance], snapshot: FleetSnapshot,
           offers: Mapping[str, Offer]) -> list[_Slot]:
    slots = []
    for i in active:
        if i.state == InstanceLifecycle.TERMINATING:
            continue
        offer = offers.get(i.offer)
        model = i.gpu_model or (offer.gpu_model if offer else "")
        node = snapshot.node(i.node) if i.node else None
        if node is None:
            free = i.gpu_count or (offer.gpu_count if offer else 0)
        else:
            if not node.schedulable:
                continue
            free = sum(1 for g in node.gpus if g.healthy and g.alloc_milli == 0)
        slots.append(_Slot(i.instance_id, i.team, i.project, offer, model, free, i.request_id))
    return slots


def _take_slot(slots: list[_Slot], job: WaitingJob) -> _Slot | None:
    req = job.request
    own = job.request_id
    for s in slots:  # the node this very job asked for comes first
        if s.request_id and (s.request_id == own or s.request_id.startswith(own + ".")):
            s.free_gpus -= min(s.free_gpus, req.gpu_count)
            s.used = True
            return s
    for s in slots:
        if s.team != job.team or s.project != job.project or s.free_gpus < req.gpu_count:
            continue
        if req.gpu_models and s.gpu_model not in req.gpu_models:
            continue
        if s.offer is not None and offer_fits(s.offer, req) is not None:
            continue
        s.free_gpus -= req.gpu_count
        s.used = True
        return s
    return None


def _teardown(active: Sequence[BurstInstance], instances: Sequence[BurstInstance],
              snapshot: FleetSnapshot, slots: Sequence[_Slot], config: BurstConfig,
              now: float) -> tuple[list[TerminateDecision], list[Action]]:
    awaited = {s.key for s in slots if s.used}
    busy_nodes = {r.assignment.node for r in snapshot.running}
    out: list[TerminateDecision] = []
    for i in active:
        reason = None
        ev: dict[str, Any] = {"provider": i.provider, "offer": i.offer, "node": i.node,
                              "launched_at": i.launched_at}
        joined = i.node is not None and snapshot.node(i.node) is not None
        ready = i.state == InstanceLifecycle.READY
        if i.state == InstanceLifecycle.PROVISIONING or (ready and not joined):
            if now - i.launched_at > config.ready_timeout_s:
                reason = (f"not ready {duration_text(now - i.launched_at)} after launch "
                          f"(ready_timeout_s {config.ready_timeout_s:g})")
        elif ready and i.node not in busy_nodes and i.instance_id not in awaited:
            idle_since = max(i.ready_at or i.launched_at, i.last_job_ended_at or 0.0)
            ev["idle_since"] = idle_since
            if now - idle_since >= config.idle_teardown_s:
                reason = (f"burst node {i.node} idle {duration_text(now - idle_since)} with no "
                          f"fleetdeck job (idle_teardown_s {config.idle_teardown_s:g})")
        if reason is not None:
            act = Action(ActionKind.BURST_TERMINATE, TargetKind.INSTANCE,
                         i.instance_id, reason, BURST_ACTOR, now,
                         ev, dry_run=config.dry_run)
            out.append(TerminateDecision(i.instance_id, i.provider, reason, act))
    requeues: list[Action] = []
    for i in instances:
        if i.state != InstanceLifecycle.LOST or not i.node:
            continue
        for r in snapshot.running:
            if r.assignment.node == i.node:
                requeues.append(Action(
                    ActionKind.BURST_REQUEUE, TargetKind.JOB, r.job_id,
                    f"burst node {i.node} lost ({i.provider} {i.instance_id}, "
                    f"{i.market}): requeued", BURST_ACTOR, now,
                    {"instance_id": i.instance_id, "node": i.node, "provider": i.provider}))
    return out, requeues
