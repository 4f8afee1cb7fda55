"""Wires the core packages' services into an engine: each adds handlers and loops."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from collectors.store import Store
from console.engine.server import Caller

if TYPE_CHECKING:
    from console.engine.host import Engine


async def attach_all(engine: Engine) -> None:
    from console.engine import (
        svc_fleet,
        svc_jobs,
        svc_metrics,
        svc_notify,
        svc_policies,
        svc_reload,
        svc_reports,
        svc_telemetry,
    )

    await attach_inventory(engine)
    await attach_audit(engine)
    await svc_notify.attach(engine)
    telemetry = await svc_telemetry.attach(engine)
    await svc_metrics.attach(engine, telemetry)
    await svc_jobs.attach(engine, telemetry)
    await svc_policies.attach(engine, telemetry)
    svc_fleet.attach(engine, telemetry)
    svc_reports.attach(engine)
    svc_reload.attach(engine)


async def attach_inventory(engine: Engine) -> None:
    """Record configured nodes in the store so history and reports know them."""
    nodes = engine.config.nodes
    now = datetime.fromtimestamp(engine.clock(), UTC).replace(tzinfo=None)

    def upsert(store: Store) -> None:
        rows = [
            {"name": n.name, "host": n.host or n.name, "pool": n.pool, "transport": n.transport,
             "labels": json.dumps(n.labels), "first_seen": now}
            for n in nodes
        ]
        with store.transaction() as con:
            for r in rows:
                con.execute(
                    "INSERT INTO nodes (name, host, pool, transport, labels, state, first_seen) "
                    "VALUES (?, ?, ?, ?, ?, 'unknown', ?) ON CONFLICT (name) DO UPDATE SET "
                    "host = excluded.host, pool = excluded.pool, "
                    "transport = excluded.transport, labels = excluded.labels",
                    [r["name"], r["host"], r["pool"], r["transport"], r["labels"],
                     r["first_seen"]],
                )

    await engine.db.run(upsert)

    async def nodes_handler(caller: Caller, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        return await engine.db.run(list_nodes)

    engine.handlers["nodes"] = nodes_handler


def list_nodes(store: Store) -> list[dict[str, Any]]:
    cur = store.con.execute(
        "SELECT name, host, pool, transport, labels, state, state_reason, cordoned, "
        "gpu_count, gpu_model, last_seen FROM nodes ORDER BY name")
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


async def attach_audit(engine: Engine) -> None:
    async def audit_handler(caller: Caller, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        since = params.get("since")
        limit = int(params.get("limit", 1000))
        return await engine.db.run(lambda s: list_actions(s, since=since, limit=limit))

    engine.handlers["audit"] = audit_handler


def list_actions(store: Store, *, since: str | None = None, limit: int = 1000,
                 ) -> list[dict[str, Any]]:
    sql = ("SELECT id, ts, actor, action, target_kind, target, reason, evidence, dry_run "
           "FROM actions")
    args: list[Any] = []
    if since:
        sql += " WHERE ts >= ?"
        args.append(since)
    sql += " ORDER BY id DESC LIMIT ?"
    args.append(limit)
    cur = store.con.execute(sql, args)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
