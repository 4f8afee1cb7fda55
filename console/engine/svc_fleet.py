"""The console's fleet questions: `fleet` (every node, live) and `summary` (header totals)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from collectors.store import Store
from console.engine.access import Caller
from console.engine.api.methods import Role
from console.engine.api.replies import (
    GPU_READINGS,
    NODE_READINGS,
    FleetDelta,
    FleetNode,
    GpuInfo,
    GpuReadings,
    NodeReadings,
    Summary,
)
from console.engine.api.requests import FleetDeltaQuery, FleetQuery, SummaryQuery
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


NodeInputs = tuple[Any, ...]  # what one node's answer is built from (`fleet_json`)


def fleet_json(telemetry: Telemetry, rows: list[JobRow], idle_jobs: set[int],
               built: dict[str, tuple[NodeInputs, FleetNode]] | None = None,
               ) -> list[FleetNode]:
    """Every node's answer. With `built` (the previous call's, updated in place) a node whose
    inputs did not change since (the same `NodeView` object, which the collector replaces on
    every change, and equal flags, allocations and jobs) keeps its answer object."""
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
    out: list[FleetNode] = []
    fresh: dict[str, tuple[NodeInputs, FleetNode]] = {}
    for name, v in sorted(view.nodes.items()):
        node_jobs = by_node.get(name, [])
        inputs = (v, telemetry.cordoned.get(name), telemetry.drained.get(name),
                  alloc.get(name, {}), by_gpu.get(name, {}), node_jobs,
                  frozenset(j for j in node_jobs if j in idle_jobs))
        old = built.get(name) if built is not None else None
        if old is not None and old[0][0] is v and old[0][1:] == inputs[1:]:
            node = old[1]
        else:
            node = node_json(v, cordoned=inputs[1], drained=inputs[2], alloc=inputs[3],
                             jobs_by_gpu=inputs[4], node_jobs=node_jobs, idle_jobs=idle_jobs)
        fresh[name] = (inputs, node)
        out.append(node)
    if built is not None:
        built.clear()
        built.update(fresh)
    return out


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
MAX_REMOVED = 4096  # names of removed nodes kept for deltas; older cursors get the whole fleet
MAX_DELTAS = 16  # delta answers kept per version (one per cursor clients hold)


# a node's record apart from its readings (and processes and containers, which no list answer
# or delta carries): any other field, present or added later, makes a change whole
_NODE_SHAPE = operator.itemgetter(*(
    i for i, f in enumerate(FleetNode.__struct_fields__)
    if f not in (*NODE_READINGS, "gpus", "processes", "containers")))
_GPU_SHAPE = operator.itemgetter(*(
    i for i, f in enumerate(GpuInfo.__struct_fields__) if f not in GPU_READINGS))


def shape(n: FleetNode) -> tuple[Any, ...]:
    """`n` without its readings: equal shapes, and a delta may carry `readings_of(n)`."""
    return (_NODE_SHAPE(msgspec.structs.astuple(n)),
            tuple(_GPU_SHAPE(msgspec.structs.astuple(g)) for g in n.gpus))


def readings_of(n: FleetNode) -> NodeReadings:
    return NodeReadings(name=n.name, **{f: getattr(n, f) for f in NODE_READINGS},
                        gpus=[GpuReadings(**{f: getattr(g, f) for f in GPU_READINGS})
                              for g in n.gpus])


@dataclass(slots=True)
class _Stamp:
    """A node's last change (`version`), last change beyond its readings (`shape_version`)."""

    version: int
    shape_version: int
    node: FleetNode
    shape: tuple[Any, ...]
    readings: NodeReadings | None = None  # of `node`, made when a delta first needs it


class FleetAnswer:
    """The live fleet's answer, built at most once per `FLEET_TTL_S`: the samples change once
    per interval, and 20 consoles polling 1,000 x 8 GPUs would otherwise each rebuild it (the
    loop's largest cost at that size). Callers treat the list as read-only.

    Each build that changes anything is a new version (one counter per engine, started at the
    engine's start time in microseconds, so a cursor from an earlier run is older than all of
    this run's); each node is stamped with the version it last changed in and the version its
    record last changed in beyond its readings, each removed node's name with the version it
    went in, so `delta(since)` answers only what changed (and, asked for `readings`, a node
    that only took a new sample as those readings)."""

    def __init__(self, start_version: int = 0) -> None:
        self._built_at = float("-inf")
        self._key: object = None
        self._nodes: list[FleetNode] = []
        self.version = self.floor = start_version  # cursors below floor: the whole fleet
        self._stamps: dict[str, _Stamp] = {}
        self._removed: dict[str, int] = {}  # name -> version it went in (oldest first)
        self._deltas: dict[tuple[int | None, bool], FleetDelta] = {}  # this version's answers
        self._light: list[FleetNode] = []  # `_nodes` without processes and containers
        self._light_of: dict[str, tuple[FleetNode, FleetNode]] = {}  # name -> (full, light)

    def get(self, now: float, key: object, build: Callable[[], list[FleetNode]], *,
            detail: bool = True) -> list[FleetNode]:
        """The cached answer unless `key` (what a caller's change touches: jobs, cordons,
        idle warnings) changed or it is older than the TTL; without `detail`, its nodes
        without processes and containers (a third of a node's bytes, most of its decoding)."""
        if key != self._key or not 0 <= now - self._built_at < FLEET_TTL_S:
            self._nodes, self._built_at, self._key = build(), now, key
            self._light = [self._lighten(n) for n in self._nodes]
            self._light_of = {n.name: self._light_of[n.name] for n in self._nodes}
            self._stamp(self._nodes)
        return self._nodes if detail else self._light

    def _lighten(self, n: FleetNode) -> FleetNode:
        """`n` without processes and containers: the same object while `n` is."""
        hit = self._light_of.get(n.name)
        if hit is None or hit[0] is not n:
            hit = (n, msgspec.structs.replace(n, processes=[], containers=[])
                   if n.processes or n.containers else n)
            self._light_of[n.name] = hit
        return hit[1]

    def _stamp(self, nodes: list[FleetNode]) -> None:
        version = self.version + 1
        changed = False
        for n in nodes:
            old = self._stamps.get(n.name)
            if old is None:
                self._stamps[n.name] = _Stamp(version, version, n, shape(n))
                self._removed.pop(n.name, None)
                changed = True
            elif old.node is not n and old.node != n:
                now_shape = shape(n)
                shape_version = old.shape_version if now_shape == old.shape else version
                self._stamps[n.name] = _Stamp(version, shape_version, n, now_shape)
                changed = True
        names = {n.name for n in nodes}
        for name in [k for k in self._stamps if k not in names]:
            del self._stamps[name]
            self._removed[name] = version
            changed = True
        while len(self._removed) > MAX_REMOVED:
            self.floor = self._removed.pop(next(iter(self._removed)))
        if changed:
            self.version = version
            self._deltas.clear()

    def delta(self, since: int | None, *, readings: bool = False) -> FleetDelta:
        """What changed after `since` (the same object for every caller with that cursor
        until the next change, so the server encodes it once); with `readings`, a node
        whose record changed only in its readings since then as `NodeReadings`."""
        key = since if since is not None and self.floor <= since <= self.version else None
        hit = self._deltas.get((key, readings))
        if hit is None:
            hit = self._delta(key, readings)
            if len(self._deltas) >= MAX_DELTAS:
                self._deltas.pop(next(iter(self._deltas)))
            self._deltas[(key, readings)] = hit
        return hit

    def _delta(self, key: int | None, readings: bool) -> FleetDelta:
        if key is None:
            return FleetDelta(cursor=self.version, full=True, nodes=self._light)
        changed = [st for st in self._stamps.values() if st.version > key]
        whole = [st for st in changed if st.shape_version > key] if readings else changed
        if readings:
            for st in changed:
                if st.shape_version <= key and st.readings is None:
                    st.readings = readings_of(st.node)
        return FleetDelta(
            cursor=self.version, full=False,
            nodes=[self._light_of[st.node.name][1] for st in whole],
            removed=[name for name, v in self._removed.items() if v > key],
            readings=[st.readings for st in changed
                      if st.shape_version <= key and st.readings is not None]
            if readings else [])


def _for_caller(caller: Caller, rows: list[JobRow],
                nodes: list[FleetNode]) -> list[FleetNode]:
    """`nodes` as the caller may see them: others' command lines stay theirs below operator
    (the same list when nothing is hidden)."""
    if caller.role >= Role.OPERATOR or not any(n.processes for n in nodes):
        return nodes
    own = {r.id for r in rows if r.user == caller.user}
    return [msgspec.structs.replace(n, processes=[
        p if p.get("job_id") in own else {**p, "command": HIDDEN}
        for p in n.processes]) if n.processes else n for n in nodes]


class FleetService(BaseService):
    """`fleet` (every node, live) and `summary` (header totals)."""

    def __init__(self, engine: Host, telemetry: Telemetry) -> None:
        self.engine = engine
        self.telemetry = telemetry
        self.answer = FleetAnswer(start_version=int(engine.clock() * 1_000_000))
        self._built: dict[str, tuple[NodeInputs, FleetNode]] = {}  # per node, last build

    def _live_nodes(self, rows: list[JobRow], *, detail: bool = True) -> list[FleetNode]:
        """The live fleet (shared, read-only: copy what a caller's answer changes)."""
        idle = self._idle_jobs()
        t = self.telemetry
        key = (tuple((r.id, r.state, r.node) for r in rows), tuple(t.cordoned.items()),
               tuple(t.drained.items()), frozenset(idle))
        return self.answer.get(self.engine.clock(), key,
                               lambda: fleet_json(t, rows, idle, self._built), detail=detail)

    def handlers(self) -> Mapping[str, Handler]:
        return {"fleet": self.fleet, "fleet_delta": self.fleet_delta, "summary": self.summary}

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
        if not self.engine.config.engine.collect:  # stored nodes carry no processes
            stored = await self.engine.reads.run(stored_fleet)
            return [n for n in stored if req.node in (None, n.name)]
        rows, _ = await self.active()
        # the shared list: the server encodes it once
        nodes = self._live_nodes(rows, detail=req.detail or req.node is not None)
        if req.node is not None:
            nodes = [n for n in nodes if n.name == req.node]
        return _for_caller(caller, rows, nodes)

    async def fleet_delta(self, caller: Caller, req: FleetDeltaQuery) -> FleetDelta:
        """`fleet`, as what changed since the caller's cursor (docs/PROTOCOL.md)."""
        if not self.engine.config.engine.collect:  # stored data: no versions, always whole
            return FleetDelta(cursor=0, full=True,
                              nodes=await self.engine.reads.run(stored_fleet))
        rows, _ = await self.active()
        self._live_nodes(rows)  # rebuilt (and stamped) when due
        delta = self.answer.delta(req.since, readings=req.readings)  # shared: encoded once
        nodes = _for_caller(caller, rows, delta.nodes)
        return delta if nodes is delta.nodes else msgspec.structs.replace(delta, nodes=nodes)

    async def summary(self, caller: Caller, req: SummaryQuery) -> Summary:
        engine = self.engine
        rows, queued = await self.active()
        nodes = (await engine.reads.run(stored_fleet) if not engine.config.engine.collect
                 else self._live_nodes(rows, detail=False))
        burst = engine.policies.burst_summary() if engine.policies else {}
        return summarize(
            nodes, rows, queued, burst_spend_today=burst.get("burst_spend_today", 0.0),
            burst_budget_today=burst.get("burst_budget_today"),
            faults=engine.faults.headlines(),  # the header says a failing store first
            notify_failed=engine.notify.failed_deliveries if engine.notify else 0)
