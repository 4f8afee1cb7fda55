"""The console's fleet questions: `fleet` (every node, live) and `summary` (header totals)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import msgspec

from collectors.store import Store
from console.engine.access import Caller
from console.engine.api.methods import Role
from console.engine.api.replies import FleetNode, Summary
from console.engine.api.requests import FleetQuery, SummaryQuery
from console.engine.server import Handler
from console.engine.service_base import BaseService
from console.engine.svc_jobs import HIDDEN
from console.engine.svc_telemetry import node_json, stored_fleet
from scheduler import journal
from scheduler.journal import JobRow
from scheduler.states import ACTIVE, JobState

if TYPE_CHECKING:
    from console.engine.hosting import Host
    from console.engine.svc_telemetry import Telemetry


def _active(store: Store) -> tuple[list[JobRow], int]:
    rows = journal.list_jobs(store, states=ACTIVE)
    queued = int(store.con.execute(
        "SELECT count(*) FROM jobs WHERE state = 'queued'").fetchall()[0][0])
    return rows, queued


def fleet_json(telemetry: Telemetry, rows: list[JobRow],
               idle_jobs: set[int]) -> list[FleetNode]:
    alloc: dict[str, dict[int, int]] = {}
    by_gpu: dict[str, dict[int, list[int]]] = {}
    by_node: dict[str, list[int]] = {}
    for r in rows:
        if r.node is None:
            continue
        by_node.setdefault(r.node, []).append(r.id)
        for i in r.gpu_indices:
            alloc.setdefault(r.node, {})[i] = alloc.get(r.node, {}).get(i, 0) + r.gpu_milli
            by_gpu.setdefault(r.node, {}).setdefault(i, []).append(r.id)
    view = telemetry.view()
    return [node_json(v, cordoned=telemetry.cordoned.get(name),
                      drained=telemetry.drained.get(name), alloc=alloc.get(name, {}),
                      jobs_by_gpu=by_gpu.get(name, {}), node_jobs=by_node.get(name, []),
                      idle_jobs=idle_jobs)
            for name, v in sorted(view.nodes.items())]


def summarize(nodes: list[FleetNode], rows: list[JobRow], queued: int, *,
              burst_spend_today: float = 0.0, burst_budget_today: float | None = None,
              faults: list[str] | None = None, notify_failed: int = 0) -> Summary:
    gpus = [g for n in nodes for g in n.gpus]
    utils = [g.util_pct for g in gpus if g.util_pct is not None]
    cpu_total = sum(n.cpu_count or 0 for n in nodes)
    cpu_used = sum((n.cpu_util_pct or 0) * (n.cpu_count or 0) / 100 for n in nodes)
    states = [n.state for n in nodes]
    return Summary(
        gpus_total=len(gpus),
        gpus_allocated=round(sum(r.gpu_count * r.gpu_milli for r in rows) / 1000, 3),
        gpu_util_pct=round(sum(utils) / len(utils), 1) if utils else None,
        cpus_total=cpu_total,
        cpus_allocated=round(sum((r.cpu_milli or 0) for r in rows) / 1000, 3),
        cpu_util_pct=round(100 * cpu_used / cpu_total, 1) if cpu_total else None,
        nodes_up=states.count("up"),
        nodes_degraded=states.count("degraded"),
        nodes_unreachable=states.count("unreachable"),
        queue_len=queued,
        running_jobs=sum(1 for r in rows if r.state == JobState.RUNNING),
        idle_warnings=sum(1 for g in gpus if g.idle),
        burst_spend_today=burst_spend_today, burst_budget_today=burst_budget_today,
        faults=faults or [], notify_failed=notify_failed)


FLEET_TTL_S = 1.0


class FleetAnswer:
    """The live fleet's answer, built at most once per `FLEET_TTL_S`: the samples change once
    per interval, and 20 consoles polling 1,000 x 8 GPUs would otherwise each rebuild it (the
    loop's largest cost at that size). Callers treat the list as read-only."""

    def __init__(self) -> None:
        self._built_at = float("-inf")
        self._key: object = None
        self._nodes: list[FleetNode] = []

    def get(self, now: float, key: object,
            build: Callable[[], list[FleetNode]]) -> list[FleetNode]:
        """The cached answer unless `key` (what a caller's change touches: jobs, cordons,
        idle warnings) changed or it is older than the TTL."""
        if key != self._key or not 0 <= now - self._built_at < FLEET_TTL_S:
            self._nodes, self._built_at, self._key = build(), now, key
        return self._nodes


class FleetService(BaseService):
    """`fleet` (every node, live) and `summary` (header totals)."""

    def __init__(self, engine: Host, telemetry: Telemetry) -> None:
        self.engine = engine
        self.telemetry = telemetry
        self.answer = FleetAnswer()

    def _live_nodes(self, rows: list[JobRow]) -> list[FleetNode]:
        """The live fleet (shared, read-only: copy what a caller's answer changes)."""
        idle = self._idle_jobs()
        t = self.telemetry
        key = (tuple((r.id, r.state, r.node) for r in rows), tuple(t.cordoned.items()),
               tuple(t.drained.items()), frozenset(idle))
        return self.answer.get(self.engine.clock(), key, lambda: fleet_json(t, rows, idle))

    def handlers(self) -> Mapping[str, Handler]:
        return {"fleet": self.fleet, "summary": self.summary}

    def _idle_jobs(self) -> set[int]:
        policies = self.engine.policies
        return set(policies.idle_job_ids()) if policies else set()

    async def active(self) -> tuple[list[JobRow], int]:
        """Active jobs and the queue length: from the runner's live set once it is loaded
        (the scheduler runs), else from the store on a reader thread."""
        engine = self.engine
        live = engine.runner.live if engine.runner is not None else None
        if live is not None and live.loaded:
            return live.rows(journal.ACTIVE), live.count(JobState.QUEUED)
        return await engine.reads.run(_active)

    async def fleet(self, caller: Caller, req: FleetQuery) -> list[FleetNode]:
        if not self.engine.config.engine.collect:
            stored = await self.engine.reads.run(stored_fleet)
            return [n for n in stored if req.node in (None, n.name)]
        rows, _ = await self.active()
        nodes = self._live_nodes(rows)  # the shared list: the server encodes it once
        if req.node is not None:
            nodes = [n for n in nodes if n.name == req.node]
        if caller.role < Role.OPERATOR and any(n.processes for n in nodes):
            # others' command lines stay theirs
            own = {r.id for r in rows if r.user == caller.user}
            nodes = [msgspec.structs.replace(n, processes=[
                p if p.get("job_id") in own else {**p, "command": HIDDEN}
                for p in n.processes]) if n.processes else n for n in nodes]
        return nodes

    async def summary(self, caller: Caller, req: SummaryQuery) -> Summary:
        engine = self.engine
        rows, queued = await self.active()
        nodes = (await engine.reads.run(stored_fleet) if not engine.config.engine.collect
                 else self._live_nodes(rows))
        burst = engine.policies.burst_summary() if engine.policies else {}
        return summarize(
            nodes, rows, queued, burst_spend_today=burst.get("burst_spend_today", 0.0),
            burst_budget_today=burst.get("burst_budget_today"),
            faults=engine.faults.headlines(),  # the header says a failing store first
            notify_failed=engine.notify.failed_deliveries if engine.notify else 0)
