"""Jobs in the store: submission, state transitions with events, queries.

This is the scheduler's store edge. Every function takes a `Store` and runs on the engine's
store thread. Each write is one transaction holding the change, its `job_events` rows and its
audit row, so a crash leaves either all of them or none.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from collectors.errors import NotFoundError
from collectors.events import Event
from collectors.store import Store, outbox
from collectors.store.audit import AuditEntry, record, utc
from collectors.store.audit_kinds import ActionKind, TargetKind
from collectors.store.db import insert_rows
from scheduler import job_events, stop_journal
from scheduler.executors.base import Handle
from scheduler.fairshare import UsageRecord
from scheduler.job_match import JobMatch
from scheduler.jobspec import JobSpec, expand_array
from scheduler.states import ACTIVE as ACTIVE
from scheduler.states import HOLDING as HOLDING
from scheduler.states import NEXT, STATES, TERMINAL, JobState

# The lifecycle lives in scheduler/states.py; these names stay here for callers.
PREEMPTED = JobState.PREEMPTED

_COLUMNS = ("id", "name", "user", "project", "team", "kind", "executor", "spec", "state",
            "reason", "priority", "pool", "node", "gpu_indices", "gpu_count", "gpu_milli",
            "gpu_model", "cpu_milli", "mem_bytes", "max_runtime_s", "submitted_at",
            "started_at", "ended_at", "exit_code", "external_id", "attempt", "array_parent",
            "array_index", "burst", "preemptions")


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
    state: JobState
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
    preemptions: int = 0

    @property
    def tries_used(self) -> int:
        """Attempts that count against `retries`: requeues after a preemption do not."""
        return self.attempt - self.preemptions

    @property
    def notify(self) -> tuple[str, ...]:
        """Events the submitter opted in to (`submit --notify`)."""
        return self.spec.notify

    def to_json(self, *, reveal_secrets: bool = False) -> dict[str, Any]:
        """The row for clients; secret env values masked unless `reveal_secrets` (the job's
        owner or an admin asks)."""
        out = {c: getattr(self, c) for c in _COLUMNS if c != "spec"}
        out["gpu_indices"] = list(self.gpu_indices)
        out["gpus"] = self.spec.gpus
        out["spec"] = (self.spec if reveal_secrets else self.spec.redacted()).to_dict()
        return out


@lru_cache(maxsize=65536)
def _spec(text: str) -> JobSpec:
    """A stored spec, parsed once: specs never change and every cycle reads the queue."""
    return JobSpec.from_dict(json.loads(text))


def _row(values: Sequence[Any]) -> JobRow:
    d = dict(zip(_COLUMNS, values, strict=True))
    d["spec"] = _spec(d["spec"])
    d["gpu_indices"] = tuple(d["gpu_indices"] or ())
    d["gpu_count"] = d["gpu_count"] or 0
    d["gpu_milli"] = d["gpu_milli"] or 0
    d["priority"] = d["priority"] or 0
    d["attempt"] = d["attempt"] or 0
    d["burst"] = bool(d["burst"])
    d["preemptions"] = d["preemptions"] or 0
    d["state"] = JobState(d["state"])
    return JobRow(**d)


_jobs_writes = 0  # commits to the jobs table in this process (`jobs_writes`)


def jobs_writes() -> int:
    """A number that grows with every commit that changed the jobs table in this process:
    an answer read while it held its value is still the answer (the engine's read cache)."""
    return _jobs_writes


def jobs_changed() -> None:
    """Say that the jobs table changed (after the commit): for writers outside this module."""
    global _jobs_writes
    _jobs_writes += 1


@contextlib.contextmanager
def _writing(store: Store) -> Iterator[Any]:
    """A transaction that changes jobs; `jobs_writes()` grows once it has committed."""
    try:
        with store.transaction() as con:
            yield con
    finally:
        jobs_changed()  # also after a failed commit: a cached answer is only ever redone


def submit(store: Store, spec: JobSpec, *, actor: str, now: float) -> list[int]:
    """Queue a job (an array makes one row per task) with events and one audit row."""
    tasks = expand_array(spec)
    ts = utc(now)
    with _writing(store) as con:
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
                "state": JobState.QUEUED, "reason": "waiting for the next placement cycle",
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
            {"ts": ts, "job_id": i, "from_state": None, "to_state": JobState.QUEUED,
             "reason": "submitted", "actor": actor} for i in ids])
        target = str(ids[0]) if len(ids) == 1 else f"{ids[0]}-{ids[-1]}"
        record(con, [AuditEntry(actor, ActionKind.SUBMIT, TargetKind.JOB, target,
                                f"{spec.name}: {len(ids)} task(s)",
                                {"gpus": spec.gpus, "executor": spec.executor})], now=now)
    return ids


@dataclass(frozen=True, slots=True)
class Change:
    """One state change for `transition_many`: `fields` are job columns to set with it."""

    job_id: int
    to_state: JobState
    reason: str
    actor: str
    expect: tuple[JobState, ...] | None = None  # states it may come from (None: any allowed)
    audit: AuditEntry | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[Event, ...] = ()  # told with it (idle.stopped, job.preempted), if applied


def transition(store: Store, job_id: int, to_state: JobState, *, reason: str, actor: str,
               now: float, expect: Iterable[JobState] | None = None,
               audit: AuditEntry | None = None, events: Sequence[Event] = (),
               **fields: Any) -> JobRow:
    """Move a job to `to_state`, setting `fields` (columns), with an event row and optionally
    an audit row, in one transaction. `expect` restricts the states it may come from.
    `events` are written to the outbox with it, after the change's own event (if any)."""
    change = Change(job_id, to_state, reason, actor,
                    tuple(expect) if expect is not None else None, audit, fields,
                    tuple(events))
    [result] = transition_many(store, [change], now=now)
    if isinstance(result, Exception):
        raise result
    return result


def transition_many(store: Store, changes: Sequence[Change], *,
                    now: float) -> list[JobRow | NotFoundError | TransitionError]:
    """Apply `changes` in order in one transaction (one commit however many): per change its
    row, or the error that left that one job unchanged. Column updates and events are written
    in batches; a job may change twice in one call (lost, then queued). Starts, ends other
    than stops, and requeues go to the outbox as events (`scheduler.job_events`)."""
    for c in changes:
        if c.to_state not in STATES:
            raise ValueError(f"unknown state {c.to_state}")
        bad = set(c.fields) - set(_COLUMNS)
        if bad:
            raise ValueError(f"unknown job columns {sorted(bad)}")
    if not changes:
        return []
    ts = utc(now)
    ids = sorted({c.job_id for c in changes})
    out: list[JobRow | NotFoundError | TransitionError] = []
    with _writing(store) as con:
        before = {r.id: r for r in (_row(v) for v in con.execute(
            f"SELECT {_select()} FROM jobs WHERE id IN (SELECT unnest(?::BIGINT[]))",
            [ids]).fetchall())}
        state: dict[int, JobState] = {i: r.state for i, r in before.items()}
        final: dict[int, dict[str, Any]] = {}  # job id -> columns to set (last change wins)
        event_rows: list[dict[str, Any]] = []
        told: list[Event] = []
        audits: list[AuditEntry] = []
        results: list[int | NotFoundError | TransitionError] = []
        for c in changes:
            current = state.get(c.job_id)
            if current is None:
                results.append(NotFoundError(f"no job {c.job_id}"))
                continue
            if c.to_state not in NEXT[current] or (c.expect is not None
                                                    and current not in c.expect):
                results.append(TransitionError(
                    f"job {c.job_id} is {current}; cannot become {c.to_state}"))
                continue
            sets = final.setdefault(c.job_id, {})
            sets.update({"state": c.to_state, "reason": c.reason, **c.fields})
            if c.to_state in TERMINAL and "ended_at" not in c.fields:
                sets["ended_at"] = ts
            state[c.job_id] = c.to_state
            event_rows.append({"ts": ts, "job_id": c.job_id, "from_state": current,
                               "to_state": c.to_state, "reason": c.reason, "actor": c.actor})
            ev = job_events.for_change(before[c.job_id], current, c.to_state, reason=c.reason,
                                       actor=c.actor, now=now, fields=c.fields)
            told.extend([ev, *c.events] if ev is not None else c.events)
            if c.audit is not None:
                audits.append(c.audit)
            results.append(c.job_id)
        _update(con, final)
        # a stop ends with its job (stopped, or requeued): its intent goes in the same commit
        stop_journal.clear(con, [i for i, sets in final.items()
                                 if sets["state"] in TERMINAL or sets["state"] == JobState.QUEUED])
        insert_rows(con, "job_events", event_rows)
        outbox.append(con, told)
        if audits:
            record(con, audits, now=now)
        changed = sorted(final)
        rows = {r.id: r for r in (_row(v) for v in con.execute(
            f"SELECT {_select()} FROM jobs WHERE id IN (SELECT unnest(?::BIGINT[]))",
            [changed]).fetchall())} if changed else {}
    for r in results:
        out.append(rows[r] if isinstance(r, int) else r)
    return out


# Arrow types of the job columns transitions set (so all-NULL columns keep their type).
_ARROW_TYPES: dict[str, Any] = {}


def _arrow_type(column: str) -> Any:
    import pyarrow as pa

    if not _ARROW_TYPES:
        text = ("name", "user", "project", "team", "kind", "executor", "state", "reason",
                "pool", "node", "gpu_model", "external_id", "spec")
        _ARROW_TYPES.update({c: pa.string() for c in text})
        _ARROW_TYPES.update({c: pa.int32() for c in ("priority", "gpu_count", "gpu_milli",
                                                     "cpu_milli", "exit_code", "attempt",
                                                     "array_index", "preemptions")})
        _ARROW_TYPES.update({c: pa.int64() for c in ("id", "mem_bytes", "array_parent")})
        _ARROW_TYPES.update({c: pa.timestamp("us") for c in ("submitted_at", "started_at",
                                                             "ended_at")})
        _ARROW_TYPES["gpu_indices"] = pa.list_(pa.int32())
        _ARROW_TYPES["max_runtime_s"] = pa.float64()
        _ARROW_TYPES["burst"] = pa.bool_()
    return _ARROW_TYPES[column]


def _update(con: Any, sets_by_id: Mapping[int, Mapping[str, Any]]) -> None:
    """UPDATE jobs from one Arrow batch per distinct set of columns (not row by row)."""
    import pyarrow as pa

    groups: dict[tuple[str, ...], list[int]] = {}
    for job_id, sets in sets_by_id.items():
        groups.setdefault(tuple(sorted(sets)), []).append(job_id)
    for cols, job_ids in groups.items():
        table = pa.table(
            {"id": pa.array(job_ids, pa.int64()),
             **{c: pa.array([sets_by_id[i][c] for i in job_ids], _arrow_type(c))
                for c in cols}})
        con.register("_fd_job_updates", table)
        try:
            assign = ", ".join(f'"{c}" = u."{c}"' for c in cols)
            con.execute(f"UPDATE jobs SET {assign} FROM _fd_job_updates u WHERE jobs.id = u.id")
        finally:
            con.unregister("_fd_job_updates")


def handle_of(row: JobRow) -> Handle | None:
    """Where the job's current attempt runs, once its executor has started it."""
    if row.node is None or row.external_id is None:
        return None
    return Handle(kind=row.executor, node=row.node,  # type: ignore[arg-type]
                  external_id=row.external_id, job_id=row.id, attempt=row.attempt)


def _select() -> str:
    return ", ".join(f'"{c}"' for c in _COLUMNS)


def get(store: Store, job_id: int) -> JobRow:
    rows = store.con.execute(f"SELECT {_select()} FROM jobs WHERE id = ?", [job_id]).fetchall()
    if not rows:
        raise NotFoundError(f"no job {job_id}")
    return _row(rows[0])


def list_jobs(store: Store, *, states: Sequence[JobState] = (), user: str | None = None,
              limit: int | None = None, newest_first: bool = False, offset: int = 0,
              ids: Sequence[int] | None = None, match: JobMatch | None = None) -> list[JobRow]:
    """Jobs matching every filter given, by id (newest first if asked); `limit`/`offset`
    page through them. `ids` looks jobs up by primary key (the store's index); `match` is
    a text match (scheduler/job_match.py)."""
    sql = f"SELECT {_select()} FROM jobs"
    where: list[str] = []
    args: list[Any] = []
    if ids is not None:
        if not ids:
            return []
        where.append(f"id IN ({', '.join('?' for _ in ids)})")
        args.extend(int(i) for i in ids)
    if states:
        where.append(f"state IN ({', '.join('?' for _ in states)})")
        args.extend(states)
    if user:
        where.append("user = ?")
        args.append(user)
    if match is not None:
        match_where, match_args = match.sql()
        where.extend(match_where)
        args.extend(match_args)
    page = (f" LIMIT {int(limit)}" if limit else "") + (f" OFFSET {int(offset)}" if offset else "")
    if newest_first and limit and ids is None:
        return _newest_page(store, sql, where, args, page, int(limit))
    if where:
        sql += " WHERE " + " AND ".join(where)
    if ids is not None:  # a few rows by key: sorted and paged here (a SQL sort costs more)
        found = sorted((_row(r) for r in store.con.execute(sql, args).fetchall()),
                       key=lambda r: r.id, reverse=newest_first)
        return found[offset:offset + limit] if limit else found[offset:]
    sql += (" ORDER BY id DESC" if newest_first else " ORDER BY id") + page
    return [_row(r) for r in store.con.execute(sql, args).fetchall()]


def _newest_page(store: Store, sql: str, where: list[str], args: list[Any], page: str,
                 limit: int) -> list[JobRow]:
    """A newest-first page, searched in widening windows of the newest ids: ids grow with
    submission, so `id > floor` skips every older row group by its min/max, where a plain
    ORDER BY id DESC LIMIT sorts every row of the table (12 ms against 2 ms at 100,000
    jobs). A window that holds a full page holds the page: no older id can come first."""
    top = store.con.execute("SELECT max(id) FROM jobs").fetchall()[0][0]
    if top is None:
        return []
    window = 256
    while True:
        floor = int(top) - window
        bounded = [*where, "id > ?"] if floor > 0 else where
        query = sql + (" WHERE " + " AND ".join(bounded) if bounded else "")
        rows = store.con.execute(query + " ORDER BY id DESC" + page,
                                 [*args, floor] if floor > 0 else args).fetchall()
        if len(rows) >= limit or floor <= 0:
            return [_row(r) for r in rows]
        window *= 16


def events(store: Store, job_id: int) -> list[dict[str, Any]]:
    cur = store.con.execute(  # sorted here: a SQL sort costs more than the few rows
        "SELECT ts, from_state, to_state, reason, actor, rowid FROM job_events "
        "WHERE job_id = ?", [job_id])
    cols = [d[0] for d in cur.description][:-1]
    rows = sorted(cur.fetchall(), key=lambda r: (r[0], r[-1]))
    return [dict(zip(cols, r[:-1], strict=True)) for r in rows]


def preemption_audit(store: Store, job_id: int) -> list[dict[str, Any]]:
    """Preemptions this job suffered or caused (audit rows): ts, victim, beneficiary, reason."""
    cur = store.con.execute(
        "SELECT ts, target AS victim, json_extract_string(evidence, '$.beneficiary') "
        "AS beneficiary, reason FROM actions WHERE action = 'preempt' AND target_kind = 'job' "
        "AND (target = ? OR json_extract_string(evidence, '$.beneficiary') = ?) "
        "ORDER BY ts", [str(job_id), str(job_id)])
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def gpu_usage(store: Store, since: datetime) -> list[UsageRecord]:
    """GPU holds of jobs that held GPUs after `since` (end None: still holding), for fair
    share."""
    rows = store.con.execute(
        "SELECT user, coalesce(project, ''), coalesce(gpu_milli, 0) * "
        "coalesce(len(gpu_indices), 0) / 1000.0, started_at, "
        "CASE WHEN state IN ('starting', 'running', 'preempted') THEN NULL ELSE ended_at END "
        "FROM jobs WHERE started_at IS NOT NULL AND gpu_indices IS NOT NULL "
        "AND (ended_at IS NULL OR ended_at >= ?)", [since]).fetchall()
    return [UsageRecord(u, p, g, _epoch(st), None if en is None else _epoch(en))
            for u, p, g, st, en in rows]


def _epoch(ts: datetime) -> float:
    return ts.replace(tzinfo=UTC).timestamp()


def set_reasons(store: Store, reasons: Mapping[int, str]) -> None:
    """Store pending reasons of queued jobs (one batch; no events: a reason is not a state)."""
    if not reasons:
        return
    with _writing(store) as con:
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
