"""Events: one typed record for everything worth telling people, with stable names.

The names (`EventName` values) are a contract: routes, webhook receivers and scripts reading
`fleetdeck events --format json` match on them. An event says what happened to which job or
node, whose it is, why (evidence) and what the reader can do (commands). Collectors, the
scheduler and the engine all emit the same type; `collectors.store.outbox` writes them in the
transaction of the change they report.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class EventName(StrEnum):
    """Stable event names (a contract: never rename one)."""

    JOB_STARTED = "job.started"
    JOB_SUCCEEDED = "job.succeeded"
    JOB_FAILED = "job.failed"
    JOB_LOST = "job.lost"
    JOB_REQUEUED = "job.requeued"
    JOB_PREEMPTED = "job.preempted"
    IDLE_WARNED = "idle.warned"
    IDLE_CLEARED = "idle.cleared"
    IDLE_STOPPED = "idle.stopped"
    BURST_STARTED = "burst.started"
    BURST_ENDED = "burst.ended"
    BUDGET_THRESHOLD = "budget.threshold"
    NODE_UNREACHABLE = "node.unreachable"
    NODE_RECOVERED = "node.recovered"
    NODE_DRAINED = "node.drained"
    TEST = "notify.test"  # `fleetdeck notify test CHANNEL`; never stored


# Opt-in events: the owner hears of these only when asked (`notify = [...]`, `--notify`).
OPT_IN: frozenset[EventName] = frozenset({EventName.JOB_SUCCEEDED, EventName.JOB_FAILED})


def new_key() -> str:
    """A fresh idempotency key (receivers drop a key they have seen)."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened. `ts` is epoch seconds; `evidence` values are JSON scalars or
    lists; `actions` are commands the reader can run (`fleetdeck snooze 12 --for 2h`)."""

    name: EventName
    ts: float
    summary: str  # one line: what happened to what
    reason: str = ""  # why, in words
    job_id: int | None = None
    job_name: str | None = None
    node: str | None = None
    team: str | None = None
    project: str | None = None
    owner: str | None = None  # the user the job (or spend) belongs to
    evidence: Mapping[str, Any] = field(default_factory=dict)
    actions: tuple[str, ...] = ()
    opt_in: tuple[str, ...] = ()  # events the job's submitter asked for (`submit --notify`)
    key: str = field(default_factory=new_key)
    seq: int = 0  # the store's event id once written (0: not stored)

    def to_json(self) -> dict[str, Any]:
        """The wire form (webhook bodies, `fleetdeck events --format json`)."""
        return {
            "id": self.key, "seq": self.seq, "name": str(self.name),
            "ts": datetime.fromtimestamp(self.ts, UTC).isoformat(timespec="seconds"),
            "summary": self.summary, "reason": self.reason, "job_id": self.job_id,
            "job_name": self.job_name, "node": self.node, "team": self.team,
            "project": self.project, "owner": self.owner, "evidence": dict(self.evidence),
            "actions": list(self.actions),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any], *, opt_in: tuple[str, ...] = ()) -> Event:
        ts = d["ts"]
        epoch = (datetime.fromisoformat(ts).replace(tzinfo=UTC).timestamp()
                 if isinstance(ts, str) else float(ts))
        return cls(
            name=EventName(d["name"]), ts=epoch, summary=str(d["summary"]),
            reason=str(d.get("reason") or ""), job_id=d.get("job_id"),
            job_name=d.get("job_name"), node=d.get("node"), team=d.get("team"),
            project=d.get("project"), owner=d.get("owner"),
            evidence=dict(d.get("evidence") or {}), actions=tuple(d.get("actions") or ()),
            opt_in=opt_in, key=str(d["id"]), seq=int(d.get("seq") or 0))


def matches(name: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """Whether an event name matches route patterns: exact names or prefixes ending in `.`
    (`"job."`), or `"*"` for all."""
    return any(p == "*" or p == name or (p.endswith(".") and name.startswith(p))
               for p in patterns)


def is_pattern(text: str) -> bool:
    """Whether `text` is a valid route pattern (a name, a known prefix, or `*`)."""
    if text == "*" or text in {str(n) for n in EventName}:
        return True
    return text.endswith(".") and any(str(n).startswith(text) for n in EventName)


def node_state_event(node: str, old: str | None, new: str, reason: str | None,
                     now: float) -> Event | None:
    """node.unreachable when a node stops answering, node.recovered when it answers again;
    `old` is the stored state (None or "unknown" before the first probe)."""
    if new == "unreachable" and old != "unreachable":
        return Event(EventName.NODE_UNREACHABLE, now, f"node {node} is unreachable",
                     reason=reason or "", node=node,
                     evidence={"from_state": old or "unknown"},
                     actions=(f"ssh {node}", "fleetdeck nodes"))
    if old == "unreachable" and new in ("up", "degraded"):
        return Event(EventName.NODE_RECOVERED, now, f"node {node} answers again ({new})",
                     reason=reason or "", node=node, evidence={"to_state": new})
    return None
