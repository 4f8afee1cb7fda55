"""Fleetdeck's scores of node states for several request shapes, in one numpy pass.

A score is the best (highest) fragmentation decrease, rounded to 1e-6, over every way to
place the shape on the node state: whole GPUs take the lowest-indexed fully free eligible GPUs
(one candidate per state), a share may go on any eligible GPU with room (one candidate per
GPU; on a node whose GPUs are all alike, one per distinct free milli, which leaves the node in
the same state). The pass is a fixed pipeline of numpy calls whose cost is mostly per call, so
it is written with as few calls as the arithmetic allows. Each candidate's expected
fragmentation is `FragModel.frag` with all shape groups side by side: per shape an integer
fragment, weighed in one matrix product.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from scheduler.fit.fragmentation import FragModel
from scheduler.fit.state import FleetState, FleetStatic
from scheduler.models import MILLI_PER_GPU, RequestShape, ResourceRequest

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
IdxArray = npt.NDArray[np.intp]


class ShapeSet:
    """Request shapes scored together: per shape its demands and GPU class, as arrays, so
    one numpy pass places every shape on a few node states at once (see `score_states`)."""

    def __init__(self, static: FleetStatic) -> None:
        self.static = static
        self.index: dict[RequestShape, int] = {}
        self.cpu_milli = np.zeros(0, dtype=np.int64)
        self.mem_bytes = np.zeros(0, dtype=np.int64)
        self.gpu_count = np.zeros(0, dtype=np.int64)
        self.gpu_milli = np.zeros(0, dtype=np.int64)  # per GPU; 0 without GPUs
        self.fractional = np.zeros(0, dtype=np.bool_)
        self.cls = np.zeros(0, dtype=np.intp)  # index into class_ok
        self._class_keys: dict[tuple[frozenset[str], int], int] = {}
        self.class_ok = np.zeros((0, *static.gpu_exists.shape), dtype=np.bool_)
        g = static.gpu_exists.shape[1]
        self.earlier = np.tri(g, k=-1, dtype=np.bool_)  # [c, c']: column c' < c

    def __len__(self) -> int:
        return len(self.index)

    def rebind(self, static: FleetStatic) -> None:
        """Move to another snapshot of the fleet (same shapes and numbering, its GPU masks)."""
        self.static = static
        oks = [static.gpu_ok(ck) for ck in self._class_keys]
        self.class_ok = np.stack(oks) if oks else np.zeros((0, *static.gpu_exists.shape), bool)
        g = static.gpu_exists.shape[1]
        if self.earlier.shape[0] != g:
            self.earlier = np.tri(g, k=-1, dtype=np.bool_)

    def add(self, key: RequestShape, req: ResourceRequest) -> int:
        """Index of the shape `key` (of `req`), added if new."""
        q = self.index.get(key)
        if q is not None:
            return q
        ck = (req.gpu_models, req.min_gpu_mem_bytes)
        c = self._class_keys.get(ck)
        if c is None:
            c = self._class_keys[ck] = len(self._class_keys)
            ok = self.static.gpu_ok(ck)
            self.class_ok = np.concatenate([self.class_ok, ok[None]])
        q = self.index[key] = len(self.index)
        gpu = req.gpu_count > 0
        self.cpu_milli = np.append(self.cpu_milli, req.cpu_milli)
        self.mem_bytes = np.append(self.mem_bytes, req.mem_bytes)
        self.gpu_count = np.append(self.gpu_count, req.gpu_count)
        self.gpu_milli = np.append(self.gpu_milli, req.gpu_milli if gpu else 0)
        self.fractional = np.append(self.fractional, gpu and req.fractional)
        self.cls = np.append(self.cls, c)
        return q


def score_states(
    model: FragModel,
    state: FleetState,
    shapes: ShapeSet,
    qs: IdxArray,
    rows: IdxArray,
    fill_weight: float = 0.0,
) -> tuple[FloatArray, IdxArray, IntArray]:
    """Per (shape k of `qs`, node r of `rows`), numbered k * len(rows) + r: the score (-inf
    where the shape does not fit; placement constraints aside: the caller masks nodes), the
    GPU column of the best share candidate (the first reaching the score; -1 for whole GPUs
    or none) and the free milli that GPU held (-1 without one)."""
    n = rows.size
    free0 = state.gpu_free[rows]  # (R, G)
    cpu0 = state.cpu_free[rows]
    mem0 = state.mem_free[rows]
    s_cpu = shapes.cpu_milli[qs]
    s_mem = shapes.mem_bytes[qs]
    s_cnt = shapes.gpu_count[qs]
    s_milli = shapes.gpu_milli[qs]
    ok = shapes.class_ok[shapes.cls[qs][:, None], rows]  # (Q, R, G)
    fits = (cpu0 >= s_cpu[:, None]) & (mem0 >= s_mem[:, None])  # (Q, R)
    frac = shapes.fractional[qs]
    # shares: one candidate per eligible GPU with room
    room = ok & (free0 >= s_milli[:, None, None])
    room &= (fits & frac[:, None])[:, :, None]
    if room.shape[2] > 1:
        # a share on a GPU holding the free milli of an earlier candidate GPU of an all-alike
        # node leaves the node in the same state: only the first is scored (the first of equal
        # scores wins anyway)
        same = free0[:, :, None] == free0[:, None, :]  # (R, G, G')
        same &= shapes.earlier
        same &= state.static.uniform_arr[rows][:, None, None]
        room &= ~np.matmul(same, room[:, :, :, None])[:, :, :, 0]
    fq, fr, fc = room.nonzero()
    free_f = free0[fr]
    free_f[np.arange(fq.size), fc] -= s_milli[fq]
    # whole GPUs (or none): one candidate per node, the lowest-indexed fully free GPUs
    full = ok & (free0 >= MILLI_PER_GPU)
    whole = fits & ~frac[:, None]
    whole &= full.sum(axis=2) >= s_cnt[:, None]
    wq, wr = whole.nonzero()
    fw = full[wq, wr]  # (W, G)
    free_w = np.where(fw & (fw.cumsum(axis=1) <= s_cnt[wq][:, None]), 0, free0[wr])
    cq = np.concatenate((fq, wq))
    cr = np.concatenate((fr, wr))
    src = np.concatenate((np.arange(n), cr))  # each column's node row
    cpu = cpu0[src]
    cpu[n:] -= s_cpu[cq]
    mem = mem0[src]
    mem[n:] -= s_mem[cq]
    f = frag_columns(model, rows[src], cpu, mem, np.concatenate((free0, free_f, free_w)),
                     fill_weight)
    vals = (f[cr] - f[n:]).round(6)  # the fragmentation decrease
    pair = cq * n + cr
    # per pair the best value and its first candidate (candidates of a pair are contiguous)
    order = np.lexsort((-vals, pair))  # stable: equal values keep candidate order
    po = pair[order]
    first = np.empty(po.size, dtype=np.bool_)
    first[:1] = True
    np.not_equal(po[1:], po[:-1], out=first[1:])
    pick = order[first]
    m = qs.size * n
    best = np.empty(m)
    best.fill(-np.inf)
    col = np.empty(m, dtype=np.intp)
    col.fill(-1)
    held = np.empty(m, dtype=np.int64)
    held.fill(-1)
    at = pair[pick]
    best[at] = vals[pick]
    share = pick[pick < fq.size]
    col[pair[share]] = fc[share]
    held[pair[share]] = free0[fr[share], fc[share]]
    return best, col, held


def frag_columns(
    model: FragModel,
    rows: IdxArray,
    cpu: IntArray,
    mem: IntArray,
    free: IntArray,
    fill_weight: float,
) -> FloatArray:
    """`FragModel.frag` of node states (`rows`, free `cpu`, `mem` and GPU milli `free`) with
    all groups in one pass; equal to it up to floating point summation order."""
    tot = free.sum(axis=1)
    out: FloatArray = (model.w_no_gpu * (1.0 + fill_weight)) * tot
    if not model.groups:
        return out
    fe = np.where(model.ok_all[:, rows], free, -1)  # (K, C, G); -1: GPU not eligible
    fz = np.maximum(fe, 0)
    elig = np.einsum("kcg->kc", fz)
    feu = fe[model.u_group]  # (U, C, G)
    cmp = feu >= model.u_milli3
    ge = np.einsum("ucg->uc", cmp.view(np.int8))
    small = elig[model.u_group] - np.einsum("ucg->uc", np.where(cmp, feu, 0))  # (U, C)
    uidx = model.s_uidx
    fits = ge[uidx] >= model.s_cnt_col
    fits &= cpu >= model.s_cpu_col
    if model.s_use_mem:
        fits &= mem >= model.s_mem_col
    f = np.where(fits, small[uidx] + (tot - elig)[model.s_group], tot)  # (S, C)
    if fill_weight:
        # whole copies per GPU: float division of integers <= 1000 floors exactly
        slots = np.einsum("ucg->uc", np.floor(fz[model.u_group] / model.u_milli_f))
        copies = np.minimum(slots.astype(np.int64)[uidx] // model.s_cnt_col,
                            cpu // model.s_cpu1)
        if model.s_use_mem:
            copies = np.minimum(copies, mem // model.s_mem1)
        out += model.s_weight @ (f + fill_weight * (tot - copies * model.s_used))
    else:
        out += model.s_weight @ f.astype(np.float64)
    return out
