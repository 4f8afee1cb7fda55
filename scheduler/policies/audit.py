"""Audit values: what a policy (or a person) decided, as one row of the `actions` table.

Policies return `Action`s; the engine executes them (unless `dry_run`) and writes
`action.audit_row()` into `actions`, one row per action. Evidence is JSON-able data
(numbers, strings, lists, small maps) saying why.

Action kinds (`Action.kind`: `ActionKind`, the `actions.action` column):

kind (target_kind, actor): what the engine does
- idle_warn (job, policy:idle): shows the warning (console, audit)
- idle_clear (job, policy:idle): drops the warning: the job worked again / exempt
- idle_stop (job, policy:idle): stops the job (evidence.stop_timeout_s grace)
- idle_requeue (job, policy:idle): puts the stopped job back in the queue
- snooze (job, a user): records the snooze (evidence.until, reason)
- burst_provision (instance, policy:burst): calls the provider (see `ProvisionDecision`)
- burst_refuse (job, policy:burst): nothing; `fleetdeck explain` shows the reason
- burst_terminate (instance, policy:burst): terminates the instance
- burst_requeue (job, policy:burst): requeues a job of a lost (interrupted) node
- gpu_unhealthy (gpu, policy:health): opens a `gpu_health` interval
- gpu_recovered (gpu, policy:health): closes the interval (broken_until)
- drain (node, policy:health): no new placements on the node
- undrain (node, policy:health): placements allowed again
- health_requeue (job, policy:health): requeues a job on an unhealthy GPU
- cordon / uncordon (node, a user): sets / clears `nodes.cordoned`
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from collectors.store.audit_kinds import ActionKind, TargetKind

IDLE_ACTOR = "policy:idle"
BURST_ACTOR = "policy:burst"
HEALTH_ACTOR = "policy:health"


@dataclass(frozen=True, slots=True)
class Action:
    """One decided action with who, what, why and when."""

    kind: ActionKind  # see the module table
    target_kind: TargetKind
    target: str  # job id, node name, "node:gpu_index", instance or request id
    reason: str  # one line a person reads
    actor: str  # a user name, or policy:<name>
    ts: float  # epoch seconds
    evidence: Mapping[str, Any] = field(default_factory=dict)
    dry_run: bool = False  # would-do only: the engine records it and changes nothing

    def __post_init__(self) -> None:
        # a private copy: the caller's dict may change later (typed Mapping: read-only by contract)
        object.__setattr__(self, "evidence", dict(self.evidence))

    def audit_row(self) -> dict[str, Any]:
        """The `actions` row (without id): ts as naive UTC datetime, evidence as JSON text."""
        return {
            "ts": datetime.fromtimestamp(self.ts, UTC).replace(tzinfo=None),
            "actor": self.actor,
            "action": self.kind,
            "target_kind": self.target_kind,
            "target": self.target,
            "reason": self.reason,
            "evidence": json.dumps(_jsonable(dict(self.evidence)), sort_keys=True),
            "dry_run": self.dry_run,
        }

    def describe(self) -> str:
        """One line for the console and `fleetdeck explain`."""
        prefix = "[dry run] " if self.dry_run else ""
        return f"{prefix}{self.kind} {self.target_kind} {self.target}: {self.reason}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


@dataclass(frozen=True, slots=True)
class Snooze:
    """An owner's exemption of one job from idle stopping, until `until` (epoch s)."""

    job_id: str
    user: str
    reason: str
    until: float

    def active(self, now: float) -> bool:
        return now < self.until


def snooze_action(snooze: Snooze, now: float) -> Action:
    """The audit row for a snooze request; a snooze needs a reason."""
    if not snooze.reason.strip():
        raise ValueError("a snooze needs a reason")
    return Action(ActionKind.SNOOZE, TargetKind.JOB, snooze.job_id, snooze.reason, snooze.user, now,
                  {"until": snooze.until, "duration_s": max(0.0, snooze.until - now)})


def to_epoch_s(value: float | int | datetime) -> float:
    """Epoch seconds from a float or a store TIMESTAMP (naive datetimes are UTC)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return float(value)
