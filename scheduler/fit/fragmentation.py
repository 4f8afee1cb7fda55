"""Fragmentation measure of "Beware of Fragmentation" (Weng et al., USENIX ATC 2023).

For a node n and a task shape m, the fragment F_n(m) is the free GPU capacity (milli) of n that
m cannot use:

- m needs no GPU, or n cannot host m at all (too little CPU/memory, too few GPUs with enough
  free capacity, no GPU of an allowed model): all free GPU milli of n;
- otherwise: the free milli of the GPUs whose free capacity is below m's per-GPU demand (plus
  free GPUs of models m may not use).

Over a workload mix M (shape m with probability p_m) the node's expected fragmentation is
F_n(M) = sum_m p_m F_n(m). FGD places a task where the increase of F_n(M) is smallest.
`FragModel.frag` evaluates F(M) for many hypothetical node states at once with numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scheduler.fit.state import FleetState, FleetStatic
from scheduler.fit.workload import WorkloadMix
from scheduler.models import ResourceRequest

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class _Group:
    """GPU-requesting shapes that may use the same GPUs."""

    ok: BoolArray  # (N, G) GPUs these shapes may use
    milli: IntArray  # (U,) distinct per-GPU demands
    cpu_milli: IntArray  # (S,)
    mem_bytes: IntArray  # (S,)
    gpu_count: IntArray  # (S,)
    uidx: npt.NDArray[np.intp]  # (S,) index into milli
    weight: FloatArray  # (S,)
    use_mem: bool
    node_any: BoolArray  # (N,) the node has a GPU these shapes may use
    node_all: BoolArray  # (N,) every GPU of the node is one these shapes may use


class FragModel:
    """Expected fragmentation F(M) of node states for one workload mix on one fleet."""

    def __init__(self, static: FleetStatic, mix: WorkloadMix) -> None:
        self.static = static
        self.mix = mix
        self.w_no_gpu = 0.0
        by_class: dict[tuple[frozenset[str], int], list[int]] = {}
        for i, shape in enumerate(mix.shapes):
            if shape.gpu_count == 0 or shape.gpu_milli <= 0:
                self.w_no_gpu += mix.weights[i]
            else:
                by_class.setdefault((shape.gpu_models, 0), []).append(i)
        groups: list[_Group] = []
        for key, idx in by_class.items():
            shapes = [mix.shapes[i] for i in idx]
            milli_all = np.array([s.gpu_milli for s in shapes], dtype=np.int64)
            # sorted distinct demands (np.unique costs milliseconds on first use)
            milli = np.array(sorted(set(milli_all.tolist())), dtype=np.int64)
            ok = static.gpu_ok(key)
            groups.append(
                _Group(
                    ok=ok,
                    milli=milli,
                    cpu_milli=np.array([s.cpu_milli for s in shapes], dtype=np.int64),
                    mem_bytes=np.array([s.mem_bytes for s in shapes], dtype=np.int64),
                    gpu_count=np.array([s.gpu_count for s in shapes], dtype=np.int64),
                    uidx=np.searchsorted(milli, milli_all),
                    weight=np.array([mix.weights[i] for i in idx], dtype=np.float64),
                    use_mem=any(s.mem_bytes > 0 for s in shapes),
                    node_any=np.asarray(ok.any(axis=1), dtype=np.bool_),
                    node_all=(ok == (static.gpu_exists & static.gpu_healthy)).all(axis=1),
                )
            )
        self.groups = tuple(groups)
        self._stack()

    def _stack(self) -> None:
        """All groups side by side, for `state_scores.frag_columns`: shapes and (group,
        demand) pairs."""
        gs = self.groups
        self.ok_all = np.stack([g.ok for g in gs]) if gs else np.zeros((0, 0, 0), np.bool_)
        u_group: list[int] = []
        u_milli: list[int] = []
        uidx: list[int] = []
        s_group: list[int] = []
        for k, g in enumerate(gs):
            uidx.extend((g.uidx + len(u_milli)).tolist())
            u_group.extend([k] * g.milli.size)
            u_milli.extend(g.milli.tolist())
            s_group.extend([k] * g.weight.size)
        self.u_group = np.array(u_group, dtype=np.intp)
        self.u_milli = np.array(u_milli, dtype=np.int64)
        self.s_uidx = np.array(uidx, dtype=np.intp)
        self.s_group = np.array(s_group, dtype=np.intp)
        self.s_cpu = np.concatenate([g.cpu_milli for g in gs]) if gs else np.zeros(0, np.int64)
        self.s_mem = np.concatenate([g.mem_bytes for g in gs]) if gs else np.zeros(0, np.int64)
        self.s_cnt = np.concatenate([g.gpu_count for g in gs]) if gs else np.zeros(0, np.int64)
        self.s_use_mem = any(g.use_mem for g in gs)
        self.s_weight = np.concatenate([g.weight for g in gs]) if gs else np.zeros(0)
        self.s_cpu1 = np.maximum(self.s_cpu, 1)[:, None]
        self.s_mem1 = np.maximum(self.s_mem, 1)[:, None]
        self.s_used = (self.u_milli[self.s_uidx] * self.s_cnt)[:, None]  # milli per copy
        self.u_milli_f = self.u_milli.astype(np.float64)[:, None, None]
        self.u_milli3 = self.u_milli[:, None, None]
        self.s_cpu_col = self.s_cpu[:, None]
        self.s_mem_col = self.s_mem[:, None]
        self.s_cnt_col = self.s_cnt[:, None]

    def frag(
        self,
        rows: npt.NDArray[np.intp],
        cpu: IntArray,
        mem: IntArray,
        free: IntArray,
        fill_weight: float = 0.0,
    ) -> FloatArray:
        """F(M) for node states: `rows` (C,) node indices, `cpu`/`mem` (C,) free, `free`
        (C, G) free milli per GPU. With `fill_weight` > 0 the fill fragmentation (see
        `fill_frag`) is added with that weight."""
        tot = free.sum(axis=1).astype(np.float64)
        out = (self.w_no_gpu * (1.0 + fill_weight)) * tot
        for g in self.groups:
            usable = g.node_any[rows]
            if not usable.all():
                # nodes without a GPU these shapes may use: all their free GPU is fragment
                out += np.where(usable, 0.0, g.weight.sum() * (1.0 + fill_weight) * tot)
                if not usable.any():
                    continue
                sub = np.flatnonzero(usable)
                out[sub] += self._group(g, rows[sub], cpu[sub], mem[sub], free[sub], fill_weight)
            else:
                out += self._group(g, rows, cpu, mem, free, fill_weight)
        return out

    def _group(
        self,
        g: _Group,
        rows: npt.NDArray[np.intp],
        cpu: IntArray,
        mem: IntArray,
        free: IntArray,
        fill_weight: float,
    ) -> FloatArray:
        tot = free.sum(axis=1).astype(np.float64)
        if g.node_all[rows].all():
            fe = free
            elig = tot
            inel: FloatArray | float = 0.0
        else:
            ok = g.ok[rows]
            fe = np.where(ok, free, -1)
            elig = np.where(ok, free, 0).sum(axis=1).astype(np.float64)
            inel = tot - elig
        cmp = fe[None, :, :] >= g.milli[:, None, None]  # (U, C, G)
        ge = cmp.sum(axis=2)
        small = elig[None, :] - np.where(cmp, fe[None, :, :], 0).sum(axis=2)
        fits = ge[g.uidx] >= g.gpu_count[:, None]
        cpu_ok = cpu[None, :] >= g.cpu_milli[:, None]
        if g.use_mem:
            cpu_ok &= mem[None, :] >= g.mem_bytes[:, None]
        f = np.where(fits & cpu_ok, small[g.uidx] + inel, tot[None, :])
        if fill_weight:
            f = f + fill_weight * self._fill(g, cpu, mem, np.maximum(fe, 0), tot)
        result: FloatArray = g.weight @ f
        return result

    @staticmethod
    def _fill(g: _Group, cpu: IntArray, mem: IntArray, fe: IntArray, tot: FloatArray) -> FloatArray:
        """(S, C) free GPU milli left over if the node were filled with copies of each shape:
        copies are bounded by GPU slots, CPU and memory."""
        slots = (fe[None, :, :] // g.milli[:, None, None]).sum(axis=2)  # (U, C)
        copies = slots[g.uidx] // g.gpu_count[:, None]
        copies = np.minimum(copies, cpu[None, :] // np.maximum(g.cpu_milli, 1)[:, None])
        if g.use_mem:
            copies = np.minimum(copies, mem[None, :] // np.maximum(g.mem_bytes, 1)[:, None])
        used = copies * (g.milli[g.uidx] * g.gpu_count)[:, None]
        return tot[None, :] - used

    def node_frag(self, state: FleetState) -> FloatArray:
        """F(M) of every node in its current state."""
        rows = np.arange(state.n_nodes)
        return self.frag(rows, state.cpu_free, state.mem_free, state.gpu_free)


@dataclass(frozen=True, slots=True)
class Candidates:
    """Hypothetical placements of one request on feasible nodes, with the frag change."""

    rows: npt.NDArray[np.intp]  # (R,) feasible nodes
    cand_row: npt.NDArray[np.intp]  # (C,) position in rows of each candidate
    cand_col: npt.NDArray[np.intp]  # (C,) GPU column for shared requests, -1 otherwise
    delta: FloatArray  # (C,) F(M) after minus before: the fragmentation increase
    free_after: IntArray  # (C, G)
    cpu_after: IntArray  # (C,)


def feasible_rows(
    state: FleetState, req: ResourceRequest, rows: npt.NDArray[np.intp]
) -> npt.NDArray[np.intp]:
    """The subset of `rows` where `req` fits now."""
    s = state.static
    ok = s.node_mask(req)[rows] & (state.cpu_free[rows] >= req.cpu_milli)
    if req.mem_bytes > 0:
        ok &= state.mem_free[rows] >= req.mem_bytes
    if req.gpu_count > 0:
        c = state.gpu_class(req)
        if req.fractional:
            ok &= c.max_free[rows] >= req.gpu_milli
        else:
            ok &= c.n_full[rows] >= req.gpu_count
    return rows[ok]


def candidates(
    model: FragModel,
    state: FleetState,
    req: ResourceRequest,
    rows: npt.NDArray[np.intp],
    fill_weight: float = 0.0,
) -> Candidates:
    """Every way to place `req` on the feasible nodes among `rows`.

    Whole-GPU requests take the lowest-indexed fully free eligible GPUs (one candidate per
    node); a GPU share may go on any eligible GPU with room (one candidate per GPU).
    """
    rf = feasible_rows(state, req, rows)
    cpu0 = state.cpu_free[rf]
    mem0 = state.mem_free[rf]
    free0 = state.gpu_free[rf]
    if req.gpu_count > 0 and req.fractional:
        ok = state.gpu_class(req).gpu_ok[rf] & (free0 >= req.gpu_milli)
        cr, cc = np.nonzero(ok)
        free1 = free0[cr]
        free1[np.arange(cr.size), cc] -= req.gpu_milli
    else:
        cr = np.arange(rf.size)
        cc = np.full(rf.size, -1, dtype=np.intp)
        free1 = free0.copy()
        if req.gpu_count > 0:
            full = state.gpu_class(req).gpu_ok[rf] & (free0 >= 1000)
            take = full & (np.cumsum(full, axis=1) <= req.gpu_count)
            free1[take] = 0
    cpu1 = cpu0[cr] - req.cpu_milli
    n = rf.size
    both = model.frag(
        np.concatenate([rf, rf[cr]]),
        np.concatenate([cpu0, cpu1]),
        np.concatenate([mem0, mem0[cr] - req.mem_bytes]),
        np.concatenate([free0, free1]),
        fill_weight,
    )
    return Candidates(rf, cr, cc, both[n:] - both[:n][cr], free1, cpu1)


def best_per_row(
    n_rows: int, cand_row: npt.NDArray[np.intp], values: FloatArray
) -> tuple[FloatArray, npt.NDArray[np.intp]]:
    """Per row the highest candidate value and the first candidate reaching it."""
    order = np.lexsort((np.arange(values.size), -values, cand_row))
    first = np.ones(order.size, dtype=np.bool_)
    first[1:] = cand_row[order[1:]] != cand_row[order[:-1]]
    pick = order[first]
    best = np.full(n_rows, -np.inf)
    arg = np.full(n_rows, -1, dtype=np.intp)
    best[cand_row[pick]] = values[pick]
    arg[cand_row[pick]] = pick
    return best, arg
