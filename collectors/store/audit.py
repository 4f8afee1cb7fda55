"""The audit trail: one `actions` row per action on a job, node, GPU, instance or config."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

from collectors.store.audit_kinds import ActionKind, TargetKind
from collectors.store.db import insert_rows


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who did what to which target, why, with what evidence."""

    actor: str  # a user name, or policy:<name>
    action: ActionKind
    target_kind: TargetKind
    target: str
    reason: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)
    dry_run: bool = False


def utc(ts: float) -> datetime:
    """Epoch seconds as the store's naive-UTC timestamp."""
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)


def record(con: duckdb.DuckDBPyConnection, entries: list[AuditEntry], *, now: float) -> None:
    """Append entries; the caller owns the transaction so the action and its row commit
    together."""
    ts = utc(now)
    insert_rows(con, "actions", [
        {"ts": ts, "actor": e.actor, "action": e.action, "target_kind": e.target_kind,
         "target": e.target, "reason": e.reason,
         "evidence": json.dumps(dict(e.evidence), default=str), "dry_run": e.dry_run}
        for e in entries])
