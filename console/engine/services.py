"""The inventory service (`nodes`, `audit`) and the store reads the CLI shares with it.

Kept light: the CLI imports `list_nodes` and `list_actions` from here; the engine's wiring of
every service is `console.engine.wiring`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from collectors.store import Store
from console.engine.access import Caller
from console.engine.api.replies import AuditRow, NodeRow
from console.engine.api.requests import AuditQuery, NodesQuery
from console.engine.server import Handler
from console.engine.service_base import BaseService
from scheduler.executors.identity import engine_user, job_identity

if TYPE_CHECKING:
    from console.engine.hosting import Host


class InventoryService(BaseService):
    """Configured nodes recorded in the store; the `nodes` and `audit` questions."""

    def __init__(self, engine: Host) -> None:
        self.engine = engine

    def handlers(self) -> Mapping[str, Handler]:
        return {"nodes": self.nodes, "audit": self.audit}

    async def start(self) -> None:
        nodes = self.engine.config.nodes
        now = datetime.fromtimestamp(self.engine.clock(), UTC).replace(tzinfo=None)

        def upsert(store: Store) -> None:
            with store.transaction() as con:
                for n in nodes:
                    con.execute(
                        "INSERT INTO nodes (name, host, pool, transport, labels, state, "
                        "first_seen) VALUES (?, ?, ?, ?, ?, 'unknown', ?) ON CONFLICT (name) "
                        "DO UPDATE SET host = excluded.host, pool = excluded.pool, "
                        "transport = excluded.transport, labels = excluded.labels",
                        [n.name, n.host or n.name, n.pool, n.transport, json.dumps(n.labels),
                         now])

        await self.engine.db.run(upsert)

    async def nodes(self, caller: Caller, req: NodesQuery) -> list[NodeRow]:
        rows = await self.engine.db.run(list_nodes)
        login = engine_user()
        run_as = {n.name: job_identity(n, login).describe() for n in self.engine.config.nodes}
        return [NodeRow(**r, jobs_run_as=run_as.get(r["name"])) for r in rows]

    async def audit(self, caller: Caller, req: AuditQuery) -> list[AuditRow]:
        rows = await self.engine.db.run(
            lambda s: list_actions(s, since=req.since, limit=req.limit))
        return [AuditRow(**r) for r in rows]


def list_nodes(store: Store) -> list[dict[str, Any]]:
    cur = store.con.execute(
        "SELECT name, host, pool, transport, labels, state, state_reason, cordoned, "
        "gpu_count, gpu_model, last_seen FROM nodes ORDER BY name")
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


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
