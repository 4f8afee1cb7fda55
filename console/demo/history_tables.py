"""Writes the generated history (`console.demo.history`) into a store as Arrow batches.

Six months before the current hour: `nodes`, `jobs` (+ `job_events`, `actions`),
`gpu_health`, `burst_instances`, `spend` (the "small" tables, `History.small`), and the hourly
rollups `gpu_samples_1h` / `node_samples_1h` (about 1.4 million rows, `rollup_tables`). Live
collection takes over from the current hour on, so rollup watermarks are left alone. Job ids
start at 1 and `job_id_seq` is moved past them.

Steps, so the demo can show a live fleet before the history is in: `plan(now)` packs the jobs
(fast); `reserve(store, h)` writes what must precede the engine (the inventory, and job and
audit ids taken by the history); `small_tables(h)` + `write_small` and `rollup_tables(h)` +
`write_rollups` the rest, later, on the engine's store thread. `write_history(store, now)`
does it all at once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

import console.demo.fleet as fleet
from collectors.store import Store
from collectors.transport.sim import gpu_uuid
from console.demo.history import SAMPLES_PER_HOUR, GpuHours, Packed, gpu_hours, node_cpu_hours
from console.demo.history import pack as pack_jobs
from console.demo.history_extra import Bursts, broken_gpus, bursts, dt
from console.demo.history_jobs import dict_array, job_tables, ts_array
from scheduler import journal


@dataclass(frozen=True, slots=True)
class HistoryStats:
    jobs: int
    gpu_rows: int
    node_rows: int
    burst_instances: int
    generate_s: float
    write_s: float


@dataclass(frozen=True, slots=True)
class History:
    """A generated history, not yet written: the packed jobs and the incidents."""

    hours: int
    start_hour: int
    nodes: list[fleet.DemoNode]
    jobs: Packed  # on-prem jobs (node: index into `nodes`)
    burst: Bursts
    seed: int
    health: list[dict[str, Any]]
    actions: list[dict[str, Any]]  # audit rows of the incidents (health)

    @property
    def job_count(self) -> int:
        return len(self.jobs) + len(self.burst.jobs)

    @property
    def action_bound(self) -> int:
        """At most this many audit rows: a submit per job, at most two more per job (idle warn
        and stop, or a user's stop), and the incidents'."""
        return 3 * self.job_count + len(self.actions) + len(self.burst.actions)


def plan(now: float, *, days: int = 182, seed: int = 7) -> History:
    """Pack the jobs and draw the incidents (fast: no tables yet)."""
    rng = np.random.default_rng(seed)
    hours = days * 24
    start_hour = int(now // 3600) - hours
    onprem = fleet.nodes()
    jobs = pack_jobs(onprem, hours, start_hour, rng)
    jobs, health, actions = broken_gpus(onprem, jobs, hours, start_hour, rng)
    burst = bursts(hours, start_hour, rng)
    return History(hours, start_hour, onprem, jobs, burst, seed, health, actions)


def reserve(store: Store, h: History) -> None:
    """What must be in the store before an engine opens it: the inventory (the engine upserts
    it) and the job and audit ids the history will use (1..), so live ones come after."""
    with store.transaction():
        store.append_rows("nodes", _node_rows(h.nodes, h.start_hour))
        store.con.execute("SELECT max(nextval('job_id_seq')) FROM range(?)", [h.job_count])
        store.con.execute("SELECT max(nextval('action_id_seq')) FROM range(?)",
                          [h.action_bound])


def small_tables(h: History) -> dict[str, pa.Table]:
    """Jobs, events, audit (explicit ids, in time order), health, burst instances, spend."""
    rng = np.random.default_rng(h.seed + 2)
    all_jobs = _concat(h.jobs, _shift(h.burst.jobs, len(h.nodes)))
    by_job = job_tables(h.nodes + h.burst.nodes, all_jobs, h.burst.teams, h.hours,
                        h.start_hour, rng)
    schema = by_job["actions"].schema
    other = pa.Table.from_pylist(h.actions + h.burst.actions, schema=schema)
    actions = pa.concat_tables([by_job["actions"], other]).sort_by("ts")
    assert actions.num_rows <= h.action_bound
    by_job["actions"] = actions.add_column(
        0, "id", pa.array(np.arange(1, actions.num_rows + 1, dtype=np.int64)))
    return {**by_job, "gpu_health": pa.Table.from_pylist(h.health),
            "burst_instances": pa.Table.from_pylist(h.burst.rows),
            "spend": pa.Table.from_pylist(h.burst.spend)}


def write_small(store: Store, tables: dict[str, pa.Table]) -> None:
    """The small tables, in one transaction (after `reserve`)."""
    write_rollups(store, tables)
    journal.jobs_changed()  # the history's jobs: the engine's cached job pages are old


def rollup_tables(h: History) -> dict[str, pa.Table]:
    """`gpu_samples_1h` and `node_samples_1h` integrated from the jobs."""
    rng = np.random.default_rng(h.seed + 1)
    gpu = gpu_hours(h.nodes, h.jobs, h.hours, rng)
    cpu_util, mem_used = node_cpu_hours(h.nodes, h.jobs, h.hours, rng)
    b = h.burst
    bgpu = gpu_hours(b.nodes, b.jobs, h.hours, rng)
    bcpu, bmem = node_cpu_hours(b.nodes, b.jobs, h.hours, rng)
    hour = np.arange(h.hours)[:, None]
    alive = np.concatenate([(hour + 1 > r) & (hour < t) for r, t in b.alive], axis=1)
    return {
        "gpu_samples_1h": pa.concat_tables([
            _gpu_table(h.nodes, gpu, None, h.start_hour, rng),
            _gpu_table(b.nodes, bgpu, alive[:, bgpu.node], h.start_hour, rng)]),
        "node_samples_1h": pa.concat_tables([
            _node_table(h.nodes, cpu_util, mem_used, None, h.start_hour, rng),
            _node_table(b.nodes, bcpu, bmem, alive, h.start_hour, rng)]),
    }


def write_rollups(store: Store, tables: dict[str, pa.Table]) -> None:
    """`tables` appended in one transaction."""
    with store.transaction():
        for table, frame in tables.items():
            store.append(table, frame)


def write_history(store: Store, now: float, *, days: int = 182, seed: int = 7) -> HistoryStats:
    """Generate and write the whole history (see the module docstring)."""
    t0 = time.perf_counter()
    h = plan(now, days=days, seed=seed)
    small = small_tables(h)
    tables = rollup_tables(h)
    t1 = time.perf_counter()
    reserve(store, h)
    write_small(store, small)
    write_rollups(store, tables)
    t2 = time.perf_counter()
    return HistoryStats(jobs=h.job_count, gpu_rows=tables["gpu_samples_1h"].num_rows,
                        node_rows=tables["node_samples_1h"].num_rows,
                        burst_instances=len(h.burst.rows), generate_s=t1 - t0,
                        write_s=t2 - t1)


def _shift(jobs: Packed, by: int) -> Packed:
    return Packed(*(getattr(jobs, f) + by if f == "node" else getattr(jobs, f)
                    for f in jobs.__slots__))


def _concat(a: Packed, b: Packed) -> Packed:
    return Packed(*(np.concatenate([getattr(a, f), getattr(b, f)]) for f in a.__slots__))


def _gpu_table(nodes: Sequence[fleet.DemoNode], gpu: GpuHours, keep: np.ndarray | None,
               start_hour: int, rng: np.random.Generator) -> pa.Table:
    """Rows hour by hour (then GPU); `keep` (hours, gpus) drops GPU-hours that did not exist."""
    hours, n = gpu.busy.shape
    hour = np.repeat(np.arange(hours), n)
    row = np.tile(np.arange(n), hours)

    def col(a: np.ndarray) -> np.ndarray:
        flat = a.ravel()
        return flat if keep is None else flat[keep.ravel()]

    if keep is not None:
        hour, row = col(hour.reshape(hours, n)), col(row.reshape(hours, n))
    names = [x.name for x in nodes]
    uuids = [gpu_uuid(names[i], int(g)) for i, g in zip(gpu.node, gpu.index, strict=True)]
    models = sorted({x.profile.gpu_model for x in nodes if x.profile.gpu_count})
    per_gpu = {
        "model": np.array([models.index(nodes[i].profile.gpu_model) for i in gpu.node]),
        "limit": np.array([nodes[i].profile.gpu_power_limit_w for i in gpu.node], np.float32),
        "idle": np.array([nodes[i].profile.gpu_idle_power_w for i in gpu.node], np.float32),
        "mem": np.array([nodes[i].profile.gpu_mem_total_bytes for i in gpu.node], np.int64),
    }
    limit, idle = per_gpu["limit"][row], per_gpu["idle"][row]
    u_min, u_mean, u_max, held = col(gpu.util_min), col(gpu.util_mean), col(gpu.util_max), \
        col(gpu.busy)
    slope = (limit - np.float32(1.4) * idle) / np.float32(100.0)
    base = idle + np.float32(0.1) * limit * held
    p_mean = np.minimum(limit, base + slope * u_mean)
    p_min = np.minimum(np.where(held >= 0.999, base + slope * u_min, idle), p_mean)
    p_max = np.minimum(limit, np.maximum(p_mean, idle + np.float32(0.1) * limit * (held > 0)
                                         + slope * u_max))
    temp = (np.float32(38.0) + np.float32(0.45) * u_max
            + rng.random(len(row), dtype=np.float32) * np.float32(3.0))
    return pa.table({
        "ts": ts_array(start_hour, hour.astype(np.float64)),
        "node": dict_array(gpu.node[row], names),
        "gpu_index": pa.array(gpu.index[row].astype(np.int16)),
        "uuid": dict_array(row, uuids),
        "model": dict_array(per_gpu["model"][row], models),
        "samples": pa.array(np.full(len(row), SAMPLES_PER_HOUR, dtype=np.int32)),
        "util_pct_min": pa.array(u_min),
        "util_pct_mean": pa.array(u_mean),
        "util_pct_max": pa.array(u_max),
        "mem_used_bytes_min": pa.array(col(gpu.mem_min).astype(np.int64)),
        "mem_used_bytes_mean": pa.array(col(gpu.mem_mean).astype(np.float64)),
        "mem_used_bytes_max": pa.array(col(gpu.mem_max).astype(np.int64)),
        "mem_total_bytes": pa.array(per_gpu["mem"][row]),
        "power_w_min": pa.array(p_min),
        "power_w_mean": pa.array(p_mean),
        "power_w_max": pa.array(p_max),
        "temp_c_max": pa.array(temp),
    })


def _node_table(nodes: Sequence[fleet.DemoNode], cpu_util: np.ndarray, mem_used: np.ndarray,
                keep: np.ndarray | None, start_hour: int, rng: np.random.Generator) -> pa.Table:
    hours, n = cpu_util.shape
    hour = np.repeat(np.arange(hours), n)
    row = np.tile(np.arange(n), hours)
    util, mem = cpu_util.ravel(), mem_used.ravel()
    if keep is not None:
        k = keep.ravel()
        hour, row, util, mem = hour[k], row[k], util[k], mem[k]
    total = np.array([x.profile.mem_total_bytes for x in nodes], dtype=np.int64)[row]
    hi = np.minimum(100.0, util * rng.uniform(1.05, 1.6, len(row)) + 3.0)
    return pa.table({
        "ts": ts_array(start_hour, hour.astype(np.float64)),
        "node": dict_array(row, [x.name for x in nodes]),
        "samples": pa.array(np.full(len(row), SAMPLES_PER_HOUR, dtype=np.int32)),
        "cpu_util_pct_min": pa.array((util * rng.uniform(0.2, 0.9, len(row))).astype(
            np.float32)),
        "cpu_util_pct_mean": pa.array(util.astype(np.float32)),
        "cpu_util_pct_max": pa.array(hi.astype(np.float32)),
        "mem_used_bytes_min": pa.array((mem * 0.9).astype(np.int64)),
        "mem_used_bytes_mean": pa.array(mem),
        "mem_used_bytes_max": pa.array(np.minimum(total, mem * 1.08).astype(np.int64)),
        "mem_total_bytes": pa.array(total),
    })


def _node_rows(nodes: Sequence[fleet.DemoNode], start_hour: int) -> list[dict[str, Any]]:
    first = dt(start_hour, -24.0 * 90)
    return [{
        "name": n.name, "host": n.name, "pool": n.pool, "transport": "sim",
        "labels": _labels(n), "state": "unknown", "hostname": n.name,
        "kernel": n.profile.kernel, "cpu_model": n.profile.cpu_model,
        "cpu_count": n.profile.cpu_count, "mem_total_bytes": n.profile.mem_total_bytes,
        "gpu_count": n.profile.gpu_count, "gpu_model": n.profile.gpu_model or None,
        "driver_version": n.profile.driver_version, "first_seen": first,
    } for n in nodes]


def _labels(n: fleet.DemoNode) -> str:
    return json.dumps(dict(n.labels))
