"""Jobs in the store: submission, state transitions with events, queries.

This is the scheduler's store edge. Every function takes a `Store` and runs on the engine's
store thread. Each write is one transaction holding the change, its `job_events` rows and its
audit row, so a crash leaves either all of them or none.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from collectors.errors import NotFoundError
from collectors.store import Store
from collectors.store.audit import AuditEntry, record, utc
from collectors.store.db import insert_rows
from scheduler.jobspec import JobSpec, expand_array

ACTIVE = ("starting", "running")
TERMINAL = ("succeeded", "failed", "stopped", "lost")
STATES = ("queued", *ACTIVE, *TERMINAL)

# Allowed transitions; `lost` jobs may be requeued, nothing leaves the other terminal states.
_NEXT: dict[str, frozenset[str]] = {
    "queued": frozenset({"starting", "stopped"}),
    "starting": frozenset({"running", "failed", "stopped", "lost", "queued", "succeeded"}),
    "running": frozenset({"succeeded", "failed", "stopped", "lost", "queued"}),
    "lost": frozenset({"queued"}),
    "succeeded": frozenset(),
    "failed": frozenset({"queued"}),
    "stopped": frozenset(),
}

_COLUMNS = ("id", "name", "user", "project", "team", "kind", "executor", "spec", "state",
            "reason", "priority", "pool", "node", "gpu_indices", "gpu_count", "gpu_milli",
            "gpu_model", "cpu_milli", "mem_bytes", "max_runtime_s", "submitted_at",
            "started_at", "ended_at", "exit_code", "external_id", "attempt", "array_parent",
            "array_index", "burst")


class TransitionError(Exception):
    """A state change the lifecycle does not allow (e.g. stopping a finished job)."""


@dataclass(frozen=True, slots=True)
class JobRow:
    """One job (or array task) as stored."""

    id: int
    name: str
    user: str
    project: str | None
    team: str | None
    kind: str | None
    executor: str
    spec: JobSpec
    state: str
    reason: str | None
    priority: int
    pool: str | None
    node: str | None
    gpu_indices: tuple[int, ...]
    gpu_count: int
    gpu_milli: int
    gpu_model: str | None
    cpu_milli: int | None
    mem_bytes: int | None
    max_runtime_s: float | None
    submitted_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    exit_code: int | None
    external_id: str | None
    attempt: int
    array_parent: int | None
    array_index: int | None
    burst: bool

    def to_json(self) -> dict[str, Any]:
        out = {c: getattr(self, c) for c in _COLUMNS if c != "spec"}
        out["gpu_indices"] = list(self.gpu_indices)
        out["gpus"] = self.spec.gpus
        out["spec"] = self.spec.to_dict()
        return out


def _row(values: Sequence[Any]) -> JobRow:
    d = dict(zip(_COLUMNS, values, strict=True))
    d["spec"] = JobSpec.from_dict(json.loads(d["spec"]))
    d["gpu_indices"] = tuple(d["gpu_indices"] or ())
    d["gpu_count"] = d["gpu_count"] or 0
    d["gpu_milli"] = d["gpu_milli"] or 0
    d["priority"] = d["priority"] or 0
    d["attempt"] = d["attempt"] or 0
    d["burst"] = bool(d["burst"])
    return JobRow(**d)


def submit(store: Store, spec: JobSpec, *, actor: str, now: float) -> list[int]:
    """Queue a job (an array makes one row per task) with events and one audit row."""
    tasks = expand_array(spec)
    ts = utc(now)
    with store.transaction() as con:
        first = int(con.execute("SELECT nextval('job_id_seq')").fetchall()[0][0])
        ids = [first]
        if len(tasks) > 1:
            ids += [int(r[0]) for r in con.execute(
                "SELECT nextval('job_id_seq') FROM range(?)", [len(tasks) - 1]).fetchall()]
        request = spec.to_request()
        rows = []
        for job_id, task in zip(ids, tasks, strict=True):
            # the array env (FLEETDECK_ARRAY_*) is derived from array_index at launch
            task_spec = replace(spec, command=task.command)
            rows.append({
                "id": job_id, "name": task.name, "user": spec.user,
                "project": spec.project or None, "team": spec.team or None, "kind": spec.kind,
                "executor": spec.executor, "spec": json.dumps(task_spec.to_dict()),
                "state": "queued", "reason": "waiting for the next placement cycle",
                "priority": spec.priority, "pool": spec.pool,
                "gpu_count": request.gpu_count, "gpu_milli": request.gpu_milli
                if request.gpu_count else 0,
                "cpu_milli": request.cpu_milli, "mem_bytes": request.mem_bytes,
                "max_runtime_s": spec.max_runtime_s, "submitted_at": ts, "attempt": 0,
                "array_parent": ids[0] if len(tasks) > 1 else None,
                "array_index": task.index if len(tasks) > 1 else None,
            })
        insert_rows(con, "jobs", rows)
        insert_rows(con, "job_events", [
            {"ts": ts, "job_id": i, "from_state": None, "to_state": "queued",
             "reason": "submitted", "actor": actor} for i in ids])
        target = str(ids[0]) if len(ids) == 1 else f"{ids[0]}-{ids[-1]}"
        record(con, [AuditEntry(actor, "submit", "job", target,
                                f"{spec.name}: {len(ids)} task(s)",
                                {"gpus": spec.gpus, "executor": spec.executor})], now=now)
    return ids


def transition(store: Store, job_id: int, to_state: str, *, reason: str, actor: str,
               now: float, expect: Iterable[str] | None = None,
               audit: AuditEntry | None = None, **fields: Any) -> JobRow:
    """Move a job to `to_state`, setting `fields` (columns), with an event row and optionally
    an audit row, in one transaction. `expect` restricts the states it may come from."""
    if to_state not in STATES:
        raise ValueError(f"unknown state {to_state}")
    bad = set(fields) - set(_COLUMNS)
    if bad:
        raise ValueError(f"unknown job columns {sorted(bad)}")
    ts = utc(now)
    with store.transaction() as con:
        rows = con.execute("SELECT state FROM jobs WHERE id = ?", [job_id]).fetchall()
        if not rows:
            raise NotFoundError(f"no job {job_id}")
        current = str(rows[0][0])
        allowed = set(expect) if expect is not None else None
        if to_state not in _NEXT[current] or (allowed is not None and current not in allowed):
            raise TransitionError(f"job {job_id} is {current}; cannot become {to_state}")
        sets = {"state": to_state, "reason": reason, **fields}
        if to_state in TERMINAL and "ended_at" not in fields:
            sets["ended_at"] = ts
        cols = ", ".join(f'"{k}" = ?' for k in sets)
        con.execute(f"UPDATE jobs SET {cols} WHERE id = ?", [*sets.values(), job_id])
        insert_rows(con, "job_events", [{"ts": ts, "job_id": job_id, "from_state": current,
                                         "to_state": to_state, "reason": reason,
                                         "actor": actor}])
        if audit is not None:
            record(con, [audit], now=now)
        values = con.execute(f"SELECT {_select()} FROM jobs WHERE id = ?", [job_id]).fetchall()
    return _row(values[0])


def _select() -> str:
    return ", ".join(f'"{c}"' for c in _COLUMNS)


def get(store: Store, job_id: int) -> JobRow:
    rows = store.con.execute(f"SELECT {_select()} FROM jobs WHERE id = ?", [job_id]).fetchall()
    if not rows:
        raise NotFoundError(f"no job {job_id}")
    return _row(rows[0])


def list_jobs(store: Store, *, states: Sequence[str] = (), user: str | None = None,
              limit: int | None = None, newest_first: bool = False) -> list[JobRow]:
    sql = f"SELECT {_select()} FROM jobs"
    where: list[str] = []
    args: list[Any] = []
    if states:
        where.append(f"state IN ({', '.join('?' for _ in states)})")
        args.extend(states)
    if user:
        where.append("user = ?")
        args.append(user)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC" if newest_first else " ORDER BY id"
    if limit:
        sql += f" LIMIT {int(limit)}"
    return [_row(r) for r in store.con.execute(sql, args).fetchall()]


def events(store: Store, job_id: int) -> list[dict[str, Any]]:
    cur = store.con.execute(
        "SELECT ts, from_state, to_state, reason, actor FROM job_events WHERE job_id = ? "
        "ORDER BY ts, rowid", [job_id])
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def set_reasons(store: Store, reasons: Mapping[int, str]) -> None:
    """Store pending reasons of queued jobs (one batch; no events: a reason is not a state)."""
    if not reasons:
        return
    with store.transaction() as con:
        con.register("_fd_reasons", _reason_frame(reasons))
        try:
            con.execute("UPDATE jobs SET reason = r.reason FROM _fd_reasons r "
                        "WHERE jobs.id = r.id AND jobs.state = 'queued' "
                        "AND jobs.reason IS DISTINCT FROM r.reason")
        finally:
            con.unregister("_fd_reasons")


def _reason_frame(reasons: Mapping[int, str]) -> Any:
    import pyarrow as pa

    return pa.table({"id": pa.array(list(reasons), pa.int64()),
                     "reason": pa.array(list(reasons.values()), pa.string())})
