"""Six months of generated history for the demo store, consistent by construction.

Jobs are packed onto each node's GPUs (CPU nodes: slots of cores) in time: every job takes
the GPUs that free up first, starts after an idle gap sized to a target allocation that grows
over the months (with quieter nights for notebooks and quieter weekends), and runs for a
duration drawn per kind. So no GPU ever holds more than one job's share at a time and a
node never runs more than it has. The hourly rollups (`gpu_samples_1h`, `node_samples_1h`)
are then integrated from those jobs: allocation, utilization and memory per GPU-hour are the
time-weighted sums of the jobs on that GPU, with min <= mean <= max. Everything is numpy,
vectorized across nodes; tables go to the store as Arrow batches (`history_tables`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from console.demo.fleet import DemoNode

SAMPLES_PER_HOUR = 720  # what a 5 s collection interval rolls up to


@dataclass(frozen=True, slots=True)
class Kind:
    """A family of jobs: sizes (GPUs, or slots on CPU nodes), duration, load."""

    name: str
    job_kind: str  # JobSpec kind: batch | notebook
    sizes: tuple[int, ...]
    size_p: tuple[float, ...]
    dur_median_h: float
    dur_sigma: float
    dur_max_h: float
    util: tuple[float, float]  # GPU (or slot CPU) utilization at full share, range
    mem: tuple[float, float]  # share of GPU memory held, range
    cpus_per_unit: float  # CPUs requested per GPU (per slot on CPU nodes)
    milli: tuple[int, ...] = (1000,)  # GPU share choices (notebooks)
    milli_p: tuple[float, ...] = (1.0,)


KINDS: tuple[Kind, ...] = (
    Kind("train", "batch", (8, 4, 2, 1), (0.4, 0.3, 0.2, 0.1), 12.0, 0.8, 120.0,
         (0.72, 0.97), (0.6, 0.95), 8.0),
    Kind("sweep", "batch", (1, 2, 4), (0.6, 0.3, 0.1), 3.0, 0.6, 24.0, (0.45, 0.9),
         (0.3, 0.7), 6.0),
    Kind("dev", "batch", (1, 2), (0.7, 0.3), 2.5, 0.7, 12.0, (0.08, 0.55), (0.15, 0.6), 4.0),
    Kind("notebook", "notebook", (1,), (1.0,), 7.0, 0.6, 48.0, (0.03, 0.4), (0.15, 0.55), 4.0,
         (250, 500, 1000), (0.4, 0.35, 0.25)),
    Kind("etl", "batch", (1, 2), (0.7, 0.3), 6.0, 0.6, 48.0, (0.5, 0.95), (0.0, 0.0), 96.0),
)
KIND_INDEX = {k.name: i for i, k in enumerate(KINDS)}
# Pool -> (kind mix, allocation target at the start and the end of the history).
POOLS: dict[str, tuple[tuple[tuple[str, float], ...], tuple[float, float]]] = {
    "train": ((("train", 0.55), ("sweep", 0.3), ("dev", 0.15)), (0.62, 0.97)),
    "interactive": ((("notebook", 0.6), ("dev", 0.25), ("sweep", 0.15)), (0.5, 0.9)),
    "cpu": ((("etl", 1.0),), (0.45, 0.75)),
}
CPU_SLOTS = 2  # a CPU node is packed as this many equal slots of cores


@dataclass(frozen=True, slots=True)
class Packed:
    """Every generated job, one entry per job (times in hours from the history start)."""

    node: np.ndarray  # index into the fleet's node list
    kind: np.ndarray  # index into KINDS
    size: np.ndarray  # GPUs (GPU nodes) or slots (CPU nodes)
    milli: np.ndarray  # per GPU share
    mask: np.ndarray  # bit g set: GPU (slot) g of the node is held
    start_h: np.ndarray
    end_h: np.ndarray
    util: np.ndarray  # 0..1 at full share
    mem: np.ndarray  # 0..1 of a GPU's memory at full share

    def __len__(self) -> int:
        return len(self.node)

    def take(self, keep: np.ndarray) -> Packed:
        return Packed(*(getattr(self, f)[keep] for f in self.__slots__))


def slots_of(node: DemoNode) -> int:
    return node.profile.gpu_count or CPU_SLOTS


def target(pool: str, t_h: np.ndarray, hours: int, start_hour: int) -> np.ndarray:
    """Allocation the packing aims for at hour `t_h`: a trend, weekends, notebook nights."""
    lo, hi = POOLS[pool][1]
    frac = np.clip(t_h / hours, 0.0, 1.0)
    a = lo + (hi - lo) * frac
    abs_h = start_hour + np.floor(t_h).astype(np.int64)
    weekday = (abs_h // 24 + 3) % 7  # 1970-01-01 was a Thursday
    a = np.where(weekday >= 5, a * 0.7, a)
    if pool == "interactive":
        hod = abs_h % 24
        a = a * (0.55 + 0.45 * np.clip(np.sin((hod - 7.0) / 12.0 * math.pi), 0.0, 1.0))
    return np.clip(a, 0.05, 0.97)


def _cumulative(rows: Sequence[Sequence[float]]) -> np.ndarray:
    """Rows of probabilities as padded cumulative sums (for vectorized categorical draws)."""
    width = max(len(r) for r in rows)
    out = np.ones((len(rows), width))
    for i, r in enumerate(rows):
        out[i, :len(r)] = np.cumsum(r)
    out[:, -1] = 1.0 + 1e-9
    return out


def _draw(rng: np.random.Generator, cum: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Per element, the index of a categorical draw from `cum[row]`."""
    u = rng.random(len(row))
    return (u[:, None] >= cum[row]).sum(axis=1)


def pack(nodes: Sequence[DemoNode], hours: int, start_hour: int,
         rng: np.random.Generator) -> Packed:
    """Pack jobs onto all nodes at once: each round gives every node with capacity left one
    more job (see the module docstring)."""
    n = len(nodes)
    slots = np.array([slots_of(x) for x in nodes])
    width = int(slots.max())
    col = np.arange(width)
    pools = sorted({x.pool for x in nodes})
    pool_of = np.array([pools.index(x.pool) for x in nodes])
    kind_cum = _cumulative([[w for _, w in POOLS[p][0]] for p in pools])
    kind_ids = np.zeros(kind_cum.shape, dtype=np.int64)
    for i, p in enumerate(pools):
        ids = [KIND_INDEX[k] for k, _ in POOLS[p][0]]
        kind_ids[i, :len(ids)] = ids
    size_cum = _cumulative([k.size_p for k in KINDS])
    size_val = np.array([list(k.sizes) + [k.sizes[-1]] * (size_cum.shape[1] - len(k.sizes))
                         for k in KINDS])
    milli_cum = _cumulative([k.milli_p for k in KINDS])
    milli_val = np.array([list(k.milli) + [k.milli[-1]] * (milli_cum.shape[1] - len(k.milli))
                          for k in KINDS])
    med = np.log(np.array([k.dur_median_h for k in KINDS]))
    sig = np.array([k.dur_sigma for k in KINDS])
    cap = np.array([k.dur_max_h for k in KINDS])
    mean_dur = np.exp(med + sig**2 / 2)
    # Allocation targets per pool and hour, looked up by the hour a job could start.
    horizon = np.arange(-48, hours + 1, dtype=np.float64)
    targets = np.stack([target(p, horizon, hours, start_hour) for p in pools])
    # Jobs already running when the history starts free their GPUs during the first day.
    free = rng.uniform(-4.0, 24.0, size=(n, width))
    free[col[None, :] >= slots[:, None]] = np.inf
    out: list[tuple[np.ndarray, ...]] = []
    active = np.arange(n)
    while len(active):
        f = free[active]
        pa_ = pool_of[active]
        kind = kind_ids[pa_, _draw(rng, kind_cum, pa_)]
        size = np.minimum(size_val[kind, _draw(rng, size_cum, kind)], (f < hours).sum(axis=1))
        milli = milli_val[kind, _draw(rng, milli_cum, kind)]
        order = np.argsort(f, axis=1, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.broadcast_to(col, order.shape), axis=1)
        chosen = rank < size[:, None]
        ready = np.maximum(np.where(chosen, f, -np.inf).max(axis=1), -48.0)
        dur = np.minimum(rng.lognormal(med[kind], sig[kind]), cap[kind])
        a = targets[pa_, np.minimum(ready.astype(np.int64) + 48, hours + 48)]
        start = ready + rng.exponential(mean_dur[kind] * (1.0 - a) / a)
        end = start + dur
        late = start >= hours
        ok = ~late
        bits = (chosen.astype(np.int64) << col).sum(axis=1)
        out.append((active[ok], kind[ok], size[ok], milli[ok], bits[ok], start[ok], end[ok]))
        free[active] = np.where(chosen, np.where(late, np.inf, end)[:, None], f)
        active = active[free[active].min(axis=1) < hours]
    cols = [np.concatenate(c) for c in zip(*out, strict=True)]
    node, kind, size, milli, mask, start, end = cols
    n_jobs = len(kind)
    lo = np.array([k.util[0] for k in KINDS])[kind]
    hi = np.array([k.util[1] for k in KINDS])[kind]
    util = rng.uniform(lo, hi)
    # One in eight training runs asks for more GPUs than it keeps busy (rightsizing finds it).
    over = (kind == KIND_INDEX["train"]) & (rng.random(n_jobs) < 0.125)
    util = np.where(over, rng.uniform(0.12, 0.35, n_jobs), util)
    mlo = np.array([k.mem[0] for k in KINDS])[kind]
    mhi = np.array([k.mem[1] for k in KINDS])[kind]
    mem = rng.uniform(mlo, mhi)
    return Packed(node, kind, size, milli, mask, start, end, util, mem)


def hourly(row: np.ndarray, s_h: np.ndarray, e_h: np.ndarray, weights: Sequence[np.ndarray],
           n_rows: int, hours: int) -> list[np.ndarray]:
    """Per (hour, row): sum of weight x the time (in hours) each interval [s, e) covers it.

    Returns one (hours, n_rows) array per weight (hour-major, as the tables are written).
    Whole hours go through a difference array, the partial first and last hours through
    `bincount`.
    """
    s = np.clip(s_h, 0.0, hours)
    e = np.clip(e_h, 0.0, hours)
    keep = e > s
    row, s, e = row[keep], s[keep], e[keep]
    hs = np.minimum(np.floor(s).astype(np.int64), hours - 1)
    he = np.floor(e).astype(np.int64)
    same = hs == he
    first = np.where(same, e - s, hs + 1 - s)
    last_sel = ~same & (he < hours)
    full = ~same & (he > hs + 1)
    size = n_rows * hours
    at_first = hs * n_rows + row
    at_last = he[last_sel] * n_rows + row[last_sel]
    last = (e - he)[last_sel]
    up = (hs[full] + 1) * n_rows + row[full]
    down = he[full] * n_rows + row[full]
    outs = []
    for w in weights:
        w = w[keep]
        d = np.bincount(up, weights=w[full], minlength=size + n_rows)
        d -= np.bincount(down, weights=w[full], minlength=size + n_rows)
        acc = np.cumsum(d.reshape(hours + 1, n_rows), axis=0)[:hours]
        acc += np.bincount(at_first, weights=w * first, minlength=size).reshape(hours, n_rows)
        acc += np.bincount(at_last, weights=w[last_sel] * last,
                           minlength=size).reshape(hours, n_rows)
        outs.append(acc)
    return outs


@dataclass(frozen=True, slots=True)
class GpuHours:
    """Per hour and GPU (shape (hours, gpus), float32): the rollup columns."""

    node: np.ndarray  # per GPU: node index
    index: np.ndarray  # per GPU: GPU index on the node
    busy: np.ndarray  # fraction of the hour some job held the GPU
    util_min: np.ndarray
    util_mean: np.ndarray
    util_max: np.ndarray
    mem_min: np.ndarray
    mem_mean: np.ndarray
    mem_max: np.ndarray


@dataclass(frozen=True, slots=True)
class GpuJobs:
    """Jobs spread to one entry per (job, GPU): the GPU's row, times, share and load."""

    row: np.ndarray
    start_h: np.ndarray
    end_h: np.ndarray
    share: np.ndarray
    util: np.ndarray
    mem: np.ndarray


def gpu_rows(nodes: Sequence[DemoNode]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(node index per GPU row, GPU index per row, first row of each node)."""
    counts = [x.profile.gpu_count for x in nodes]
    gpu_node = np.repeat(np.arange(len(nodes)), counts)
    gpu_idx = np.concatenate([np.arange(c) for c in counts]) if sum(counts) else np.zeros(0)
    offset = np.zeros(len(nodes), dtype=np.int64)
    offset[1:] = np.cumsum(counts)[:-1]
    return gpu_node, gpu_idx.astype(np.int64), offset


def per_gpu(nodes: Sequence[DemoNode], jobs: Packed) -> GpuJobs:
    _, _, offset = gpu_rows(nodes)
    on_gpu = np.array([x.profile.gpu_count > 0 for x in nodes])[jobs.node]
    width = max(x.profile.gpu_count for x in nodes)
    bits = ((jobs.mask[:, None] >> np.arange(width)[None, :]) & 1).astype(bool)
    bits &= on_gpu[:, None]
    j, g = np.nonzero(bits)
    return GpuJobs(offset[jobs.node[j]] + g, jobs.start_h[j], jobs.end_h[j],
                   jobs.milli[j] / 1000.0, jobs.util[j], jobs.mem[j])


def gpu_hours(nodes: Sequence[DemoNode], jobs: Packed, hours: int,
              rng: np.random.Generator) -> GpuHours:
    gpu_node, gpu_idx, _ = gpu_rows(nodes)
    pj = per_gpu(nodes, jobs)
    n = len(gpu_node)
    busy64, u_acc, m_acc = hourly(pj.row, pj.start_h, pj.end_h,
                                  [np.ones_like(pj.share), pj.share * pj.util,
                                   pj.share * pj.mem], n, hours)
    f32 = np.float32
    busy = np.minimum(busy64, 1.0).astype(f32)
    noise = rng.random(busy.shape, dtype=f32)
    util_mean = np.minimum(u_acc.astype(f32) * (f32(95.0) + f32(10.0) * noise), f32(100.0))
    held = busy > 1e-6
    inv = f32(1.0) / np.maximum(busy, f32(1e-6))
    util_max = np.where(held, np.minimum(util_mean * inv * (f32(1.04) + f32(0.3) * noise)
                                         + f32(2.0), f32(100.0)), f32(0.0))
    np.maximum(util_max, util_mean, out=util_max)
    whole = busy >= 0.999
    util_min = np.where(whole, util_mean * (f32(0.3) + f32(0.5) * noise[::-1]), f32(0.0))
    mem_total = np.array([nodes[i].profile.gpu_mem_total_bytes for i in gpu_node], dtype=f32)
    mem_mean = np.minimum(m_acc.astype(f32), f32(1.0)) * mem_total
    mem_max = np.where(held, np.minimum(mem_total, mem_mean * inv * f32(1.03)), f32(0.0))
    np.maximum(mem_max, mem_mean, out=mem_max)
    mem_min = np.where(whole, mem_mean * f32(0.85), f32(0.0))
    return GpuHours(gpu_node, gpu_idx, busy, util_min, util_mean, util_max,
                    mem_min, mem_mean, mem_max)


def node_cpu_hours(nodes: Sequence[DemoNode], jobs: Packed, hours: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per hour and node (shape (hours, nodes)): CPU utilization (%) and memory used, means."""
    n = len(nodes)
    cores = np.array([x.profile.cpu_count for x in nodes], dtype=np.float64)
    mem_total = np.array([x.profile.mem_total_bytes for x in nodes], dtype=np.float64)
    cpus = np.array([k.cpus_per_unit for k in KINDS])[jobs.kind] * jobs.size
    slot_cores = np.array([x.profile.cpu_count / CPU_SLOTS if not x.profile.gpu_count
                           else 0.0 for x in nodes])[jobs.node]
    cpus = np.where(slot_cores > 0, slot_cores * jobs.size, cpus)
    load = np.where(slot_cores > 0, jobs.util, 0.35 + 0.6 * jobs.util)
    used_cores, used_mem_gib = hourly(jobs.node, jobs.start_h, jobs.end_h,
                                      [cpus * load, np.minimum(cpus * 6.0, 768.0)], n, hours)
    util = np.clip(100.0 * (used_cores / cores) * rng.normal(1.0, 0.06, (hours, n)) + 1.5,
                   0.3, 100.0)
    mem = np.minimum(mem_total * 0.95, 6.0 * 2**30 + used_mem_gib * 2**30)
    return util, mem
