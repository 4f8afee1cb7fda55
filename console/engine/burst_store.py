"""The burst manager's store edge: what one pass reads, instance rows, joins. Every function
runs on the engine's store thread."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from collectors.events import Event
from collectors.store import Store, outbox
from collectors.store.audit import utc
from collectors.store.db import insert_rows
from console.config import NodeConfig
from scheduler import journal
from scheduler.jobspec import JobSpec
from scheduler.models import ResourceRequest
from scheduler.policies.audit import BURST_ACTOR
from scheduler.policies.burst import ProvisionDecision
from scheduler.policies.spend import ACTIVE_LIFECYCLE, InstanceLifecycle, period_starts
from scheduler.providers.base import Instance, Offer
from scheduler.runner import epoch
from scheduler.states import ACTIVE

ACTIVE_STATES = ACTIVE_LIFECYCLE


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A queued job as a pass reads it (the request comes from a cache keyed by attempt)."""

    id: int
    attempt: int
    user: str
    team: str | None
    project: str | None
    waiting_since: float


@dataclass(slots=True)
class BurstPass:
    """What one pass read from the store."""

    rows: list[dict[str, Any]]
    queued: list[QueuedJob]
    requests: dict[tuple[int, int], ResourceRequest]  # parsed specs the cache lacked
    active_jobs: list[journal.JobRow]  # empty when no decision needs the fleet snapshot
    last_end: dict[str, float]  # node -> latest job end




def dict_rows(store: Store, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
    cur = store.con.execute(sql, list(args))
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def instance_rows(store: Store, *, since: float) -> list[dict[str, Any]]:
    return dict_rows(store, "SELECT * FROM burst_instances WHERE state IN ('provisioning', "
                     "'ready', 'terminating') OR launched_at >= ? OR terminated_at >= ? "
                     "ORDER BY launched_at", [utc(since), utc(since)])


def instances_since(rows: Sequence[dict[str, Any]], since: float) -> list[dict[str, Any]]:
    """Of `instance_rows(since=earlier)`, those `instance_rows(since=since)` answers."""
    at = utc(since)
    return [r for r in rows if r["state"] in ACTIVE_STATES
            or (r["launched_at"] is not None and r["launched_at"] >= at)
            or (r["terminated_at"] is not None and r["terminated_at"] >= at)]


def explain_lines(store: Store, job_id: int, lines: list[str]) -> list[str]:
    """`lines` (the job's burst verdict), then the burst decisions about the job and the
    instances rented for it, oldest first, each once."""
    prefix = f"fd-{job_id}-"
    rows = store.con.execute(
        "SELECT ts, action, target, reason FROM actions WHERE actor = ? AND "
        "((target_kind = 'job' AND target = ?) OR (target_kind = 'instance' AND "
        "starts_with(target, ?))) ORDER BY id", [BURST_ACTOR, str(job_id), prefix]).fetchall()
    out = list(lines)
    for ts, action, target, reason in rows:
        line = f"{ts:%Y-%m-%d %H:%M:%S} {action} {target}: {reason}"
        if line not in out:
            out.append(line)
    return out


def read_pass(store: Store, now: float, known: set[tuple[int, int]],
               wait_threshold_s: float) -> BurstPass:
    rows = instance_rows(store, since=period_starts(now)["monthly"])
    queued = [QueuedJob(int(i), int(a or 0), str(u), t, p,
                      epoch(w) or epoch(sub) or now)
              for i, a, u, t, p, sub, w in store.con.execute(
                  "SELECT j.id, j.attempt, j.user, j.team, j.project, j.submitted_at, w.since "
                  "FROM jobs j LEFT JOIN (SELECT job_id, max(ts) AS since FROM job_events "
                  "WHERE to_state = 'queued' AND job_id IN (SELECT id FROM jobs WHERE "
                  "state = 'queued') GROUP BY job_id) w ON w.job_id = j.id "
                  "WHERE j.state = 'queued'").fetchall()]
    requests: dict[tuple[int, int], ResourceRequest] = {}
    fresh = [q.id for q in queued if (q.id, q.attempt) not in known]
    if fresh:
        for i, a, spec in store.con.execute(
                "SELECT id, attempt, spec FROM jobs WHERE list_contains(?, id)",
                [fresh]).fetchall():
            requests[(int(i), int(a or 0))] = JobSpec.from_dict(json.loads(spec)).to_request()
    # the fleet snapshot (active jobs) matters for jobs due to burst, instances to tear
    # down, and jobs left on lost nodes
    needed = any(r["state"] in ACTIVE_STATES for r in rows) or any(
        now - q.waiting_since >= wait_threshold_s for q in queued)
    lost = [str(r["node"]) for r in rows if r["state"] == InstanceLifecycle.LOST and r["node"]]
    if lost and not needed:
        needed = bool(store.con.execute(
            "SELECT count(*) FROM jobs WHERE state IN ('starting', 'running') AND "
            "list_contains(?, node)", [lost]).fetchall()[0][0])
    active = journal.list_jobs(store, states=ACTIVE) if needed else []
    nodes = [str(r["node"]) for r in rows if r["node"]]
    last_end: dict[str, float] = {}
    if nodes:
        for node, ended in store.con.execute(
                "SELECT node, max(ended_at) FROM jobs WHERE list_contains(?, node) "
                "GROUP BY node", [nodes]).fetchall():
            if ended is not None:
                last_end[str(node)] = epoch(ended) or 0.0
        joined = [str(r["node"]) for r in rows
                  if r["node"] and r["state"] == InstanceLifecycle.READY]
        if joined and any(j.node in joined and not j.burst for j in active):
            store.con.execute("UPDATE jobs SET burst = true WHERE list_contains(?, node) AND "
                              "state IN ('starting', 'running') AND NOT burst", [joined])
            journal.jobs_changed()
    return BurstPass(rows, queued, requests, active, last_end)


def accrued_until(store: Store) -> dict[str, float]:
    """Per active instance: the end of what its spend rows cover (no top-up while active)."""
    out: dict[str, float] = {}
    for iid, end in store.con.execute(
            "SELECT s.instance_id, max(epoch(s.ts) + s.hours * 3600) FROM spend s JOIN "
            "burst_instances b USING (instance_id) WHERE b.state IN ('provisioning', 'ready', "
            "'terminating') GROUP BY s.instance_id").fetchall():
        out[str(iid)] = float(end)
    return out


def instance_row(inst: Instance, d: ProvisionDecision, *, launched_at: float) -> dict[str, Any]:
    o: Offer = d.offer
    return {"instance_id": inst.instance_id, "request_id": d.request_id, "provider": o.provider,
            "offer": o.name, "instance_type": o.instance_type, "market": inst.market,
            "gpu_model": o.gpu_model, "gpu_count": o.gpu_count, "node": None, "pool": o.pool,
            "team": d.team, "project": d.project, "price_per_hour": inst.price_per_hour,
            "state": InstanceLifecycle.PROVISIONING, "launched_at": utc(launched_at),
            "ready_at": None, "terminated_at": None, "cost": 0.0}


def insert_instance(store: Store, row: dict[str, Any], *,
                    events: Sequence[Event] = ()) -> None:
    """Record a rented instance (and the events telling of it) once."""
    with store.transaction() as con:
        if con.execute("SELECT count(*) FROM burst_instances WHERE instance_id = ?",
                       [row["instance_id"]]).fetchall()[0][0]:
            return  # asked again after a restart: the provider handed back the same instance
        insert_rows(con, "burst_instances", [row])
        outbox.append(con, events)


def mark_joined(store: Store, iid: str, node: NodeConfig, now: float) -> None:
    ts = datetime.fromtimestamp(now, UTC).replace(tzinfo=None)
    with store.transaction() as con:
        con.execute("UPDATE burst_instances SET state = 'ready', node = ?, "
                    "ready_at = coalesce(ready_at, ?) WHERE instance_id = ?",
                    [node.name, ts, iid])
        con.execute(
            "INSERT INTO nodes (name, host, pool, transport, labels, state, first_seen) "
            "VALUES (?, ?, ?, ?, ?, 'unknown', ?) ON CONFLICT (name) DO UPDATE SET "
            "host = excluded.host, pool = excluded.pool, labels = excluded.labels",
            [node.name, node.host, node.pool, node.transport, json.dumps(node.labels), ts])
