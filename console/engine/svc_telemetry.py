"""Telemetry in the engine: the fleet collector, batched ingest, node states, rollups.

Records arrive on the loop into an `IngestBuffer`; once per interval the buffer is swapped
for an empty one and the full one is written on the store thread, so at most one interval of
samples is at risk on a crash.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from collectors.events import node_state_event
from collectors.fleet import FleetCollector
from collectors.health import FleetView, NodeView
from collectors.ingest import IngestBuffer, IngestError, node_inventory
from collectors.models import ProbeRecord
from collectors.store import Store, outbox
from collectors.store.audit import utc
from collectors.store.db import StoreWriteError
from collectors.store.rollup import rollup
from collectors.transport import SshOptions, Transport
from console.config import Config
from console.engine.access import Caller
from console.engine.api.replies import FleetNode, GpuInfo, IngestStatsReply, NodeHistory
from console.engine.api.requests import IngestStatsQuery, NodeHistoryQuery
from console.engine.faults import node_faults
from console.engine.server import Handler
from console.engine.service_base import BaseService
from console.engine.telemetry_stats import IngestStats
from scheduler.models import GpuSlot, NodeCapacity

if TYPE_CHECKING:
    from console.engine.hosting import Host

log = logging.getLogger(__name__)
ROLLUP_EVERY_S = 60.0


# What a failing store may leave in memory: ~an hour of a 50-node fleet at 5 s.
MAX_HELD_RECORDS = 40_000
MAX_HELD_ROWS = 400_000  # per table, for rows sources add (containers, Slurm)


class Telemetry(BaseService):
    """Owns the collector and the ingest loop; answers fleet questions from its view."""

    def __init__(self, engine: Host) -> None:
        self.engine = engine
        cfg = engine.config
        self.buffer = IngestBuffer()
        self.cordoned: dict[str, str] = {}  # node -> reason (manual cordon)
        self.drained: dict[str, str] = {}  # node -> reason (health)
        self.unhealthy_gpus: set[tuple[str, int]] = set()
        # inventory(): node -> (record, schedulable, shape, capacity), valid for these GPUs
        self._capacities: dict[str, tuple[ProbeRecord, bool, tuple[Any, ...], NodeCapacity]] = {}
        self._unhealthy_seen: frozenset[tuple[str, int]] = frozenset()
        slurm = {p.name: p.login_node for p in cfg.pools if p.kind == "slurm" and p.login_node}
        ssh = SshOptions(known_hosts=cfg.ssh.known_hosts, config_file=cfg.ssh.config_file,
                         use_agent=cfg.ssh.use_agent, keepalive_s=cfg.ssh.keepalive_s,
                         connect_timeout_s=cfg.collect.connect_timeout_s)
        self.collector = FleetCollector(
            cfg.nodes, interval_s=cfg.collect.interval_s, ssh=ssh, slurm_pools=slurm,
            disk_paths=cfg.collect.disk_paths,
            max_concurrent_connects=cfg.collect.max_concurrent_connects,
            on_record=self._on_record, on_rows=self._on_rows, clock=engine.clock)
        self._last_states: dict[str, tuple[str, str | None]] = {}
        self._inventory: dict[str, dict[str, Any]] = {}
        self.held = False  # samples are held in memory: the store refused the last flush
        self.held_dropped = 0  # samples dropped while held (past the memory bound)
        # called after each flush with (seconds it took, age of its newest sample or None)
        self.stats = IngestStats()
        self._oldest_ts: float | None = None  # oldest sample in the buffer
        self._collecting = False

    def _on_record(self, record: ProbeRecord) -> None:
        self.buffer.add(record)
        self._inventory[record.node] = node_inventory(record)
        self.stats.arrived(record.ts, self.engine.clock())
        if self._oldest_ts is None or record.ts < self._oldest_ts:
            self._oldest_ts = record.ts

    def _on_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        self.buffer.add_rows(table, rows)

    def handlers(self) -> Mapping[str, Handler]:
        return {"node_history": self.node_history, "ingest_stats": self.ingest_stats}

    async def start(self) -> None:
        await self.engine.db.run(self._load_flags)
        if self.engine.config.engine.collect:
            await self.collector.start()
            self.engine.spawn(self._flush_loop(), "ingest")
            self._collecting = True

    async def stop(self) -> None:
        if self._collecting:
            self._collecting = False
            await self.collector.stop()
            await self.flush()

    def reconfigure(self, config: Config) -> None:
        return None  # nodes, SSH and collection settings need a restart (svc_reload.RESTART)

    async def ingest_stats(self, caller: Caller, req: IngestStatsQuery) -> IngestStatsReply:
        """How ingest keeps up (see telemetry_stats) and the engine's threads by native id."""
        return self.stats.summary()

    async def node_history(self, caller: Caller, req: NodeHistoryQuery) -> NodeHistory:
        since = utc(self.engine.clock() - req.minutes * 60)
        return await self.engine.db.run(lambda s: history(s, req.node, since))

    def _load_flags(self, store: Store) -> None:
        for name, cordoned, drained in store.con.execute(
                "SELECT name, cordoned, drained_reason FROM nodes").fetchall():
            if cordoned:
                self.cordoned[name] = "cordoned"
            if drained:
                self.drained[name] = str(drained)

    # -- ingest -----------------------------------------------------------------------------
    async def flush(self) -> None:
        full, self.buffer = self.buffer, IngestBuffer()
        oldest, self._oldest_ts = self._oldest_ts, None
        handed_at = self.engine.clock()
        written: dict[str, int] = {}
        view = self.collector.view()
        states = {name: (v.health.state, v.health.reason) for name, v in view.nodes.items()}
        changed = {k: v for k, v in states.items() if self._last_states.get(k) != v}
        inventory, self._inventory = self._inventory, {}
        seen = {name: v.last_seen for name, v in view.nodes.items() if v.last_seen}
        node_faults(self.engine.faults, view)

        def write(store: Store) -> None:
            try:
                written.update(full.flush(store))
            except IngestError as e:
                written.update(e.written)
                log.warning("ingest: %s", e)
            update_nodes(store, changed, inventory, seen, now=self.engine.clock())

        try:
            await self.engine.db.run(write)
        except StoreWriteError:
            # held in memory (bounded) until the store takes writes again
            full.absorb(self.buffer)
            self.buffer = full
            self.held_dropped += full.trim(MAX_HELD_RECORDS, MAX_HELD_ROWS)
            self._inventory = {**inventory, **self._inventory}
            held = [t for t in (oldest, self._oldest_ts) if t is not None]
            self._oldest_ts = min(held) if held else None
            self.held = True
            return
        if self.held:
            log.warning("telemetry held while the store failed is written%s",
                        f"; {self.held_dropped} oldest samples were dropped (memory bound)"
                        if self.held_dropped else " (nothing dropped)")
            self.held, self.held_dropped = False, 0
        self.stats.flushed(handed_at=handed_at, committed_at=self.engine.clock(),
                           oldest_ts=oldest, rows=sum(written.values()))
        self._last_states.update(changed)

    async def _flush_loop(self) -> None:
        interval = self.engine.config.collect.interval_s
        last_rollup = 0.0
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
            except Exception:
                log.exception("flush failed")
            now = self.engine.clock()
            if now - last_rollup >= ROLLUP_EVERY_S:
                last_rollup = now
                try:
                    self.stats.rolled_up(await self.engine.db.run(self._rollup))
                except Exception:
                    log.exception("rollup failed")

    def _rollup(self, store: Store) -> float:
        """One rollup pass; returns its duration in seconds."""
        c = self.engine.config.collect
        started = time.perf_counter()
        rollup(store, datetime.fromtimestamp(self.engine.clock(), UTC).replace(tzinfo=None),
               raw_retention_s=c.raw_retention_s, minute_retention_s=c.minute_retention_s,
               hour_retention_s=c.hour_retention_s)
        return time.perf_counter() - started

    # -- what the scheduler sees ---------------------------------------------------------------
    def view(self) -> FleetView:
        return self.collector.view()

    async def transport(self, node: str) -> Transport | None:
        """The node's connection when it is usable now."""
        try:
            t = self.collector.transport(node)
        except KeyError:
            return None
        v = self.collector.view().nodes.get(node)
        if v is None or v.health.state == "unreachable":
            return None
        if not t.connected:
            try:
                await t.connect()
            except Exception:
                return None
        return t

    def inventory(self) -> list[NodeCapacity]:
        """Capacity of every node the probe has described, without allocations. Asked
        several times a cycle (placement, health, burst, submit checks) while each node's
        record changes once an interval, and its capacity far less often: a node keeps its
        `NodeCapacity` while its record is the same object, or its shape is unchanged."""
        unhealthy = frozenset(self.unhealthy_gpus)
        if unhealthy != self._unhealthy_seen:
            self._capacities.clear()
            self._unhealthy_seen = unhealthy
        out = []
        for name, v in self.collector.view().nodes.items():
            rec = v.record
            if rec is None:
                continue
            schedulable = (v.health.state != "unreachable" and name not in self.cordoned
                           and name not in self.drained)
            hit = self._capacities.get(name)
            if hit is not None and hit[0] is rec and hit[1] == schedulable:
                out.append(hit[3])
                continue
            shape = (v.pool, tuple(v.labels.items()), rec.host.cpu_count,
                     rec.host.mem_total_bytes,
                     tuple((g.gpu_index, g.model, g.mem_total_bytes) for g in rec.gpus))
            if hit is not None and hit[1] == schedulable and hit[2] == shape:
                cap = hit[3]
            else:
                cap = capacity(v, schedulable=schedulable, unhealthy=unhealthy)
            self._capacities[name] = (rec, schedulable, shape, cap)
            out.append(cap)
        return out


def capacity(v: NodeView, *, schedulable: bool,
             unhealthy: set[tuple[str, int]] | frozenset[tuple[str, int]] = frozenset(),
             ) -> NodeCapacity:
    rec = v.record
    assert rec is not None
    gpus = tuple(GpuSlot(index=g.gpu_index, model=g.model or "unknown",
                         mem_total_bytes=g.mem_total_bytes or 0,
                         healthy=(v.name, g.gpu_index) not in unhealthy)
                 for g in rec.gpus)
    return NodeCapacity(name=v.name, pool=v.pool, cpu_milli=(rec.host.cpu_count or 1) * 1000,
                        mem_bytes=rec.host.mem_total_bytes or 0, gpus=gpus,
                        labels=dict(v.labels), schedulable=schedulable)


def update_nodes(store: Store, states: Mapping[str, tuple[str, str | None]],
                  inventory: Mapping[str, Mapping[str, Any]],
                  seen: Mapping[str, float], *, now: float) -> None:
    """Node facts and states, one UPDATE for every node of the flush (`node_updates`); a
    state change worth telling (unreachable, recovered) is an event in the same transaction,
    judged against the stored state so a restart repeats none."""
    if not (states or inventory or seen):
        return
    with store.transaction() as con:
        if states:
            stored = dict(con.execute(
                "SELECT name, state FROM nodes WHERE list_contains(?, name)",
                [list(states)]).fetchall())
            outbox.append(con, [e for name, (state, reason) in states.items()
                                if (e := node_state_event(name, stored.get(name), state,
                                                          reason, now)) is not None])
        table, columns = node_updates(states, inventory, seen)
        con.register("_fd_nodes", table)
        try:
            con.execute("UPDATE nodes SET " + ", ".join(
                f"{c} = CASE WHEN u.set_{c} THEN u.{c} ELSE nodes.{c} END" for c in columns)
                + " FROM _fd_nodes AS u WHERE nodes.name = u.name")
        finally:
            con.unregister("_fd_nodes")


_NODE_FACTS: dict[str, pa.DataType] = {
    "hostname": pa.string(), "kernel": pa.string(), "cpu_model": pa.string(),
    "cpu_count": pa.int32(), "mem_total_bytes": pa.int64(), "gpu_count": pa.int32(),
    "gpu_model": pa.string(), "driver_version": pa.string()}


def node_updates(states: Mapping[str, tuple[str, str | None]],
                 inventory: Mapping[str, Mapping[str, Any]],
                 seen: Mapping[str, float]) -> tuple[pa.Table, list[str]]:
    """One row per node of the flush: for each column some node sets, its value and a
    `set_<column>` flag (false: the node keeps its stored value); and those columns."""
    names = sorted({*states, *inventory, *seen})
    values: dict[str, tuple[pa.DataType, dict[str, Any]]] = {
        "state": (pa.string(), {n: s[0] for n, s in states.items()}),
        "state_reason": (pa.string(), {n: s[1] for n, s in states.items()}),
        "last_seen": (pa.timestamp("us"), {n: utc(ts) for n, ts in seen.items()}),
    }
    for col, tp in _NODE_FACTS.items():
        values[col] = (tp, {n: inv[col] for n, inv in inventory.items() if col in inv})
    arrays: dict[str, pa.Array] = {"name": pa.array(names, pa.string())}
    columns = []
    for col, (tp, by_name) in values.items():
        if by_name:
            columns.append(col)
            arrays[col] = pa.array([by_name.get(n) for n in names], tp)
            arrays[f"set_{col}"] = pa.array([n in by_name for n in names], pa.bool_())
    return pa.table(arrays), columns


def node_json(v: NodeView, *, cordoned: str | None, drained: str | None,
              alloc: Mapping[int, int], jobs_by_gpu: Mapping[int, Sequence[int]],
              node_jobs: Sequence[int], idle_jobs: set[int]) -> FleetNode:
    rec = v.record
    host = rec.host if rec else None
    gpus = []
    for g in (rec.gpus if rec else ()):
        jobs = list(jobs_by_gpu.get(g.gpu_index, ()))
        gpus.append(GpuInfo(
            index=g.gpu_index, uuid=g.uuid, model=g.model, util_pct=g.util_pct,
            mem_used_bytes=g.mem_used_bytes, mem_total_bytes=g.mem_total_bytes,
            temp_c=g.temp_c, power_w=g.power_w, power_limit_w=g.power_limit_w,
            ecc_uncorrected=g.ecc_uncorrected,
            healthy=not (g.retired_pending or g.remap_failure),
            alloc_milli=alloc.get(g.gpu_index, 0), jobs=jobs,
            idle=any(j in idle_jobs for j in jobs)))
    return FleetNode(
        name=v.name, pool=v.pool, labels=dict(v.labels), state=v.health.state,
        state_reason=v.health.reason, cordoned=cordoned is not None,
        drained_reason=drained,
        cpu_count=host.cpu_count if host else None,
        cpu_util_pct=host.cpu_util_pct if host else None,
        mem_used_bytes=host.mem_used_bytes if host else None,
        mem_total_bytes=host.mem_total_bytes if host else None,
        load1=host.load1 if host else None, last_seen=v.last_seen, gpus=gpus,
        jobs=list(node_jobs),
        containers=[{"id": c.container_id, "name": c.name, "image": c.image,
                     "state": c.state, "cpu_util_pct": c.cpu_util_pct,
                     "mem_used_bytes": c.mem_used_bytes, "job_id": c.job_id}
                    for c in (v.containers or ())],
        processes=[{"pid": p.pid, "gpu_index": p.gpu_index,
                    "gpu_mem_used_bytes": p.gpu_mem_used_bytes, "command": p.command,
                    "container_id": p.container_id, "job_id": p.job_id}
                   for p in (rec.processes if rec else ())])


def stored_fleet(store: Store) -> list[FleetNode]:
    """The fleet from the store alone (collection off): nodes and their latest GPU samples."""
    nodes = store.con.execute(
        "SELECT name, pool, labels, state, state_reason, cordoned, drained_reason, cpu_count, "
        "mem_total_bytes, epoch(last_seen) FROM nodes ORDER BY name").fetchall()
    gpu_rows = store.con.execute(
        "SELECT node, gpu_index, uuid, model, util_pct, mem_used_bytes, mem_total_bytes, "
        "temp_c, power_w, power_limit_w, ecc_uncorrected FROM gpu_samples "
        "QUALIFY row_number() OVER (PARTITION BY node, gpu_index ORDER BY ts DESC) = 1 "
        "ORDER BY node, gpu_index").fetchall()
    host_rows = {r[0]: r[1:] for r in store.con.execute(
        "SELECT node, cpu_util_pct, mem_used_bytes, load1 FROM node_samples "
        "QUALIFY row_number() OVER (PARTITION BY node ORDER BY ts DESC) = 1").fetchall()}
    by_node: dict[str, list[GpuInfo]] = {}
    for r in gpu_rows:
        by_node.setdefault(r[0], []).append(GpuInfo(
            index=r[1], uuid=r[2], model=r[3], util_pct=r[4], mem_used_bytes=r[5],
            mem_total_bytes=r[6], temp_c=r[7], power_w=r[8], power_limit_w=r[9],
            ecc_uncorrected=r[10], healthy=True, alloc_milli=0, jobs=[], idle=False))
    out = []
    for (name, pool, labels, state, reason, cordoned, drained, cpus, mem_total,
         last_seen) in nodes:
        cpu_util, mem_used, load1 = host_rows.get(name, (None, None, None))
        out.append(FleetNode(
            name=name, pool=pool, labels=json.loads(labels or "{}"),
            state=state or "unknown", state_reason=reason, cordoned=bool(cordoned),
            drained_reason=drained, cpu_count=cpus, cpu_util_pct=cpu_util,
            mem_used_bytes=mem_used, mem_total_bytes=mem_total, load1=load1,
            last_seen=float(last_seen) if last_seen is not None else None,
            gpus=by_node.get(name, []), jobs=[], containers=[], processes=[]))
    return out


def history(store: Store, node: str, since: datetime) -> NodeHistory:
    gpus: dict[str, list[list[Any]]] = {}
    for idx, ts, util, mem, power in store.con.execute(
            "SELECT gpu_index, epoch(ts), util_pct, mem_used_bytes, power_w FROM gpu_samples "
            "WHERE node = ? AND ts >= ? ORDER BY ts", [node, since]).fetchall():
        gpus.setdefault(str(idx), []).append([ts, util, mem, power])
    cpu = [list(r) for r in store.con.execute(
        "SELECT epoch(ts), cpu_util_pct, mem_used_bytes FROM node_samples "
        "WHERE node = ? AND ts >= ? ORDER BY ts", [node, since]).fetchall()]
    return NodeHistory(gpus=gpus, cpu=cpu)
