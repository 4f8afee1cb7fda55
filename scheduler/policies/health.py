"""GPU health: mark broken GPUs, drain their nodes, flag the broken time for chargeback.

A GPU becomes unhealthy on (each switchable in `[policies.health]`):
- new double-bit (uncorrected) ECC errors: the volatile counter grew by at least
  `ecc_uncorrected_min_new` since the previous sample,
- pending page retirement / row remap (`retired_pending` turning true, or true when first
  seen), a row-remap failure (`remap_failure`),
- a critical event: an Xid in `critical_xids`, or an `ecc_uncorrected` / `retired_pending` /
  `remap_failure` event from the probe.

Then: a `gpu_unhealthy` action and a `gpu_health` interval opening at the sample's time
(chargeback skips it), the node is drained (no new placements) and, with
`on_unhealthy = "requeue"`, the jobs on the broken GPUs are requeued (else they finish).
Recovery: with `recover_on_reset`, counters going back down (driver reload / GPU reset) with no
pending retirement or remap failure closes the interval; `uncordon` by an admin closes every
open interval of the node. A node drained by health is undrained when no broken GPU is left.
Admin `cordon` / `uncordon` are audited actions too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from collectors.config_schema import doc
from collectors.store.audit_kinds import ActionKind, TargetKind
from scheduler.models import FleetSnapshot, NodeCapacity
from scheduler.policies.audit import HEALTH_ACTOR, Action, to_epoch_s

GpuKey = tuple[str, int]  # (node, gpu_index)


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """`[policies.health]`."""

    enabled: bool = field(default=True, metadata=doc("mark unhealthy GPUs and drain nodes"))
    on_unhealthy: Literal["finish", "requeue"] = field(default="finish", metadata=doc(
        "jobs on a broken GPU: let them finish, or requeue them"))
    ecc_uncorrected: bool = field(default=True, metadata=doc(
        "new double-bit ECC errors make a GPU unhealthy"))
    ecc_uncorrected_min_new: int = field(default=1, metadata=doc(
        "new uncorrected ECC errors between two samples that count", min=1))
    retired_pending: bool = field(default=True, metadata=doc(
        "pending page retirement / row remap makes a GPU unhealthy"))
    remap_failure: bool = field(default=True, metadata=doc(
        "a row-remap failure makes a GPU unhealthy"))
    critical_xids: tuple[int, ...] = field(
        default=(48, 63, 64, 74, 79, 92, 94, 95, 119, 120, 140),
        metadata=doc("Xid codes that make a GPU unhealthy"))
    recover_on_reset: bool = field(default=True, metadata=doc(
        "GPU healthy again when its error counters reset with nothing pending"))


@dataclass(frozen=True, slots=True)
class GpuHealthSample:
    """The health columns of one `gpu_samples` row."""

    node: str
    gpu_index: int
    ts: float
    uuid: str | None = None
    ecc_uncorrected: int | None = None
    retired_pending: bool | None = None
    remap_failure: bool | None = None


@dataclass(frozen=True, slots=True)
class GpuEvent:
    """One `gpu_events` row. `gpu_index` None: the whole node."""

    ts: float
    node: str
    kind: str  # xid | ecc_uncorrected | retired_pending | remap_failure
    gpu_index: int | None = None
    code: int | None = None
    detail: str = ""
    uuid: str | None = None


@dataclass(frozen=True, slots=True)
class GpuHealthRecord:
    """What the policy remembers about one GPU."""

    node: str
    gpu_index: int
    uuid: str | None = None
    last_ts: float = 0.0
    ecc_uncorrected: int | None = None
    retired_pending: bool = False
    remap_failure: bool = False
    broken_from: float | None = None
    reason: str | None = None

    @property
    def broken(self) -> bool:
        return self.broken_from is not None


@dataclass(frozen=True, slots=True)
class HealthState:
    gpus: Mapping[GpuKey, GpuHealthRecord] = field(
        default_factory=dict)
    drained: frozenset[str] = frozenset()  # nodes drained by this policy
    events_until: float = float("-inf")  # events at or before this were handled

    def broken(self) -> dict[GpuKey, GpuHealthRecord]:
        return {k: r for k, r in self.gpus.items() if r.broken}


@dataclass(frozen=True, slots=True)
class GpuHealthInterval:
    """A `gpu_health` row to insert (broken_until None) or to close."""

    node: str
    gpu_index: int
    uuid: str | None
    broken_from: float
    broken_until: float | None
    reason: str

    def store_row(self) -> dict[str, Any]:
        def dt(v: float | None) -> datetime | None:
            return None if v is None else datetime.fromtimestamp(v, UTC).replace(tzinfo=None)

        return {"node": self.node, "gpu_index": self.gpu_index, "uuid": self.uuid,
                "broken_from": dt(self.broken_from), "broken_until": dt(self.broken_until),
                "reason": self.reason}


@dataclass(frozen=True, slots=True)
class HealthResult:
    actions: tuple[Action, ...]  # every row to audit, in order
    state: HealthState
    opened: tuple[GpuHealthInterval, ...] = ()  # insert into gpu_health
    closed: tuple[GpuHealthInterval, ...] = ()  # set broken_until (match node, gpu, from)
    drain: tuple[str, ...] = ()
    undrain: tuple[str, ...] = ()
    requeue: tuple[str, ...] = ()  # job ids


class _Run:
    """Accumulates one evaluation's changes."""

    def __init__(self, state: HealthState, now: float) -> None:
        self.gpus: dict[GpuKey, GpuHealthRecord] = dict(state.gpus)
        self.drained = set(state.drained)
        self.now = now
        self.actions: list[Action] = []
        self.opened: list[GpuHealthInterval] = []
        self.closed: list[GpuHealthInterval] = []

    def mark(self, key: GpuKey, ts: float, reason: str, evidence: dict[str, Any],
             uuid: str | None = None) -> None:
        rec = self.gpus.get(key) or GpuHealthRecord(key[0], key[1], uuid, ts)
        if rec.broken:
            return
        rec = dataclasses.replace(rec, broken_from=ts, reason=reason, uuid=rec.uuid or uuid)
        self.gpus[key] = rec
        self.opened.append(GpuHealthInterval(key[0], key[1], rec.uuid, ts, None, reason))
        self.actions.append(Action(ActionKind.GPU_UNHEALTHY, TargetKind.GPU,
                                   f"{key[0]}:{key[1]}", reason,
                                   HEALTH_ACTOR, self.now, {**evidence, "broken_from": ts}))

    def recover(self, key: GpuKey, ts: float, reason: str, actor: str = HEALTH_ACTOR) -> None:
        rec = self.gpus.get(key)
        if rec is None or rec.broken_from is None:
            return
        self.closed.append(GpuHealthInterval(key[0], key[1], rec.uuid, rec.broken_from, ts,
                                             rec.reason or ""))
        self.actions.append(Action(ActionKind.GPU_RECOVERED, TargetKind.GPU,
                                   f"{key[0]}:{key[1]}", reason, actor,
                                   self.now, {"broken_from": rec.broken_from,
                                              "broken_until": ts, "was": rec.reason}))
        self.gpus[key] = dataclasses.replace(rec, broken_from=None, reason=None)


def evaluate_health(
    samples: Iterable[GpuHealthSample],
    events: Iterable[GpuEvent],
    snapshot: FleetSnapshot,
    config: HealthConfig,
    state: HealthState,
    now: float,
) -> HealthResult:
    """Handle new samples and events (events after `state.events_until` only)."""
    run = _Run(state, now)
    if not config.enabled:
        return HealthResult((), state)
    for s in sorted(samples, key=lambda x: (x.ts, x.node, x.gpu_index)):
        _sample(run, s, config)
    last_event = state.events_until
    for e in sorted(events, key=lambda x: x.ts):
        if e.ts <= state.events_until:
            continue
        last_event = max(last_event, e.ts)
        why = _event_reason(e, config)
        if why is None:
            continue
        keys: list[GpuKey]
        if e.gpu_index is not None:
            keys = [(e.node, e.gpu_index)]
        else:
            node = snapshot.node(e.node)
            keys = [(e.node, g.index) for g in node.gpus] if node else []
            keys += [k for k in run.gpus if k[0] == e.node and k not in keys]
        ev = {"event": e.kind, "code": e.code, "detail": e.detail, "event_ts": e.ts}
        for k in keys:
            run.mark(k, e.ts, why, ev, e.uuid)
    return _finish(run, snapshot, config, HealthState(events_until=last_event))


def _sample(run: _Run, s: GpuHealthSample, config: HealthConfig) -> None:
    key = (s.node, s.gpu_index)
    prev = run.gpus.get(key)
    pending = bool(s.retired_pending)
    failed = bool(s.remap_failure)
    ev: dict[str, Any] = {"ecc_uncorrected": s.ecc_uncorrected, "retired_pending": pending,
                          "remap_failure": failed, "sample_ts": s.ts}
    reasons: list[str] = []
    reset = False
    if prev is not None and s.ecc_uncorrected is not None and prev.ecc_uncorrected is not None:
        delta = s.ecc_uncorrected - prev.ecc_uncorrected
        ev["ecc_uncorrected_new"] = max(delta, 0)
        ev["ecc_uncorrected_before"] = prev.ecc_uncorrected
        if delta < 0:
            reset = True
        elif config.ecc_uncorrected and delta >= config.ecc_uncorrected_min_new:
            reasons.append(f"{delta} new uncorrected (double-bit) ECC error"
                           f"{'s' if delta != 1 else ''}")
    if config.retired_pending and pending and (prev is None or not prev.retired_pending):
        reasons.append("page retirement / row remap pending")
    if config.remap_failure and failed and (prev is None or not prev.remap_failure):
        reasons.append("row remap failure")
    rec = prev or GpuHealthRecord(s.node, s.gpu_index, s.uuid, s.ts)
    run.gpus[key] = dataclasses.replace(
        rec, last_ts=s.ts, uuid=s.uuid or rec.uuid,
        ecc_uncorrected=(s.ecc_uncorrected if s.ecc_uncorrected is not None
                         else rec.ecc_uncorrected),
        retired_pending=pending if s.retired_pending is not None else rec.retired_pending,
        remap_failure=failed if s.remap_failure is not None else rec.remap_failure)
    if reasons:
        run.mark(key, s.ts, f"GPU {s.gpu_index} on {s.node}: " + "; ".join(reasons), ev, s.uuid)
    elif reset and config.recover_on_reset and not pending and not failed:
        run.recover(key, s.ts, f"GPU {s.gpu_index} on {s.node}: error counters reset "
                               "(GPU reset or driver reload), nothing pending")


def _event_reason(e: GpuEvent, config: HealthConfig) -> str | None:
    where = f"GPU {e.gpu_index} on {e.node}" if e.gpu_index is not None else f"node {e.node}"
    detail = f" ({e.detail})" if e.detail else ""
    if e.kind == "xid":
        if e.code is not None and e.code in config.critical_xids:
            return f"{where}: critical Xid {e.code}{detail}"
        return None
    if e.kind == "ecc_uncorrected" and config.ecc_uncorrected:
        return f"{where}: uncorrected ECC error event{detail}"
    if e.kind == "retired_pending" and config.retired_pending:
        return f"{where}: page retirement pending event{detail}"
    if e.kind == "remap_failure" and config.remap_failure:
        return f"{where}: row remap failure event{detail}"
    return None


def _finish(run: _Run, snapshot: FleetSnapshot, config: HealthConfig,
            carry: HealthState, *, actor: str = HEALTH_ACTOR) -> HealthResult:
    broken_by_node: dict[str, list[GpuHealthRecord]] = {}
    for rec in run.gpus.values():
        if rec.broken:
            broken_by_node.setdefault(rec.node, []).append(rec)
    drain: list[str] = []
    undrain: list[str] = []
    requeue: list[str] = []
    newly = {(i.node, i.gpu_index) for i in run.opened}
    for node, recs in sorted(broken_by_node.items()):
        fresh = [r for r in recs if (r.node, r.gpu_index) in newly]
        if node not in run.drained:
            run.drained.add(node)
            drain.append(node)
            run.actions.append(Action(
                ActionKind.DRAIN, TargetKind.NODE, node,
                f"drained: {recs[0].reason}" + (f" (+{len(recs) - 1} more GPUs)"
                                                 if len(recs) > 1 else ""),
                actor, run.now, {"gpus": sorted(r.gpu_index for r in recs),
                                 "on_unhealthy": config.on_unhealthy}))
        if config.on_unhealthy == "requeue" and fresh:
            bad = {r.gpu_index for r in fresh}
            for r in snapshot.running:
                a = r.assignment
                if a.node == node and (not a.gpu_indices or bad & set(a.gpu_indices)):
                    if r.job_id in requeue:
                        continue
                    requeue.append(r.job_id)
                    run.actions.append(Action(
                        ActionKind.HEALTH_REQUEUE, TargetKind.JOB, r.job_id,
                        f"requeued: GPU {sorted(bad & set(a.gpu_indices))} on {node} unhealthy",
                        actor, run.now, {"node": node, "gpus": list(a.gpu_indices)}))
    for node in sorted(run.drained):
        if node not in broken_by_node:
            run.drained.discard(node)
            undrain.append(node)
            run.actions.append(Action(ActionKind.UNDRAIN, TargetKind.NODE,
                                      node, "no unhealthy GPU left",
                                      actor, run.now, {}))
    state = HealthState(dict(run.gpus), frozenset(run.drained), carry.events_until)
    return HealthResult(tuple(run.actions), state, tuple(run.opened), tuple(run.closed),
                        tuple(drain), tuple(undrain), tuple(requeue))


def cordon(node: str, user: str, reason: str, now: float) -> Action:
    """An admin's cordon: no new placements on `node` until uncordoned."""
    return Action(ActionKind.CORDON, TargetKind.NODE,
                  node, reason or "cordoned by hand", user, now, {})


def uncordon(node: str, user: str, reason: str, snapshot: FleetSnapshot, config: HealthConfig,
             state: HealthState, now: float) -> HealthResult:
    """An admin's uncordon: also declares the node's GPUs healthy (closes their intervals) and
    lifts a health drain. The `uncordon` action comes first."""
    run = _Run(state, now)
    run.actions.append(Action(ActionKind.UNCORDON, TargetKind.NODE,
                              node, reason or "uncordoned by hand", user,
                              now, {}))
    for key in sorted(k for k, r in run.gpus.items() if k[0] == node and r.broken):
        run.recover(key, now, f"GPU {key[1]} on {node} declared healthy by {user}", user)
    return _finish(run, snapshot, config, state, actor=user)


def apply_health(snapshot: FleetSnapshot, state: HealthState,
                 cordoned: Iterable[str] = ()) -> FleetSnapshot:
    """The snapshot placement should see: broken GPUs unhealthy, drained or cordoned nodes
    unschedulable."""
    broken = {k for k, r in state.gpus.items() if r.broken}
    blocked = set(state.drained) | set(cordoned)
    nodes: list[NodeCapacity] = []
    for n in snapshot.nodes:
        gpus = tuple(dataclasses.replace(g, healthy=False) if (n.name, g.index) in broken else g
                     for g in n.gpus)
        sched = n.schedulable and n.name not in blocked
        if gpus != n.gpus or sched != n.schedulable:
            n = dataclasses.replace(n, gpus=gpus, schedulable=sched)
        nodes.append(n)
    return dataclasses.replace(snapshot, nodes=tuple(nodes))


def samples_from_rows(rows: Iterable[Sequence[Any]]) -> list[GpuHealthSample]:
    """From `SELECT node, gpu_index, ts, uuid, ecc_uncorrected, retired_pending,
    remap_failure FROM gpu_samples WHERE ts > ?` rows."""
    return [GpuHealthSample(str(node), int(idx), to_epoch_s(ts), uuid,
                            None if ecc is None else int(ecc), pend, fail)
            for node, idx, ts, uuid, ecc, pend, fail in rows]


def events_from_rows(rows: Iterable[Sequence[Any]]) -> list[GpuEvent]:
    """From `SELECT ts, node, gpu_index, uuid, kind, code, detail FROM gpu_events WHERE ts > ?`."""
    return [GpuEvent(to_epoch_s(ts), str(node), str(kind), None if idx is None else int(idx),
                     None if code is None else int(code), detail or "", uuid)
            for ts, node, idx, uuid, kind, code, detail in rows]


def restore_health_state(open_intervals: Iterable[GpuHealthInterval], drained: Iterable[str],
                         events_until: float) -> HealthState:
    """Rebuild the state after an engine restart: open `gpu_health` rows (broken_until NULL),
    the nodes whose `drained_reason` is set, and the time up to which `gpu_events` were
    handled (e.g. the latest event at restart), so old events are not acted on again.
    Error counters restart from the next sample."""
    gpus: dict[GpuKey, GpuHealthRecord] = {}
    for iv in open_intervals:
        gpus[(iv.node, iv.gpu_index)] = GpuHealthRecord(
            iv.node, iv.gpu_index, iv.uuid, iv.broken_from, broken_from=iv.broken_from,
            reason=iv.reason)
    return HealthState(gpus, frozenset(drained), events_until)
