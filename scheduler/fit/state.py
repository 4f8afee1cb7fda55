"""Numpy-backed fleet state for per-job node/GPU selection.

`FleetState` holds what placement policies look at for every task: per node free CPU and
memory, and per GPU free milli-GPU, as dense arrays (nodes x max GPUs per node). Static facts
(pools, labels, GPU models and memory, health) are shared between copies; only the free
counters are copied. Per request "GPU classes" (allowed models and minimum GPU memory) cache a
static eligible-GPU mask plus per node aggregates (fully free GPUs, largest free share, free
total) that `apply`/`release` keep current by recomputing just the touched node's row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from scheduler.models import MILLI_PER_GPU, Assignment, FleetSnapshot, ResourceRequest

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

ClassKey = tuple[frozenset[str], int]
NodeKey = tuple[str | None, str | None, tuple[tuple[str, str], ...]]
Layout = tuple[tuple[str, int], ...]  # (model, memory bytes) per GPU column


@dataclass(slots=True)
class GpuClass:
    """GPUs a request shape may use, with per node aggregates kept current."""

    gpu_ok: BoolArray  # (N, G) static: exists, healthy, model and memory allowed
    n_full: IntArray  # (N,) eligible GPUs with all 1000 milli free
    max_free: IntArray  # (N,) largest free milli on one eligible GPU
    sum_free: IntArray  # (N,) free milli over eligible GPUs
    n_gpus: IntArray  # (N,) static: eligible GPUs
    # static: per node the columns of its eligible GPUs (see FleetStatic.class_cols)
    cols: list[list[int]] = field(default_factory=list)

    def copy(self) -> GpuClass:
        return GpuClass(
            self.gpu_ok,
            self.n_full.copy(),
            self.max_free.copy(),
            self.sum_free.copy(),
            self.n_gpus,
            self.cols,
        )


class Memo:
    """A policy's per-node cache on a state: values valid for the node versions in `seen`."""

    __slots__ = ("arrays", "seen")

    def __init__(self, seen: IntArray, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.seen = seen
        self.arrays = arrays

    def copy(self) -> Memo:
        return Memo(self.seen.copy(), {k: v.copy() for k, v in self.arrays.items()})


class FleetStatic:
    """Facts that never change with allocation; shared by all copies of a state."""

    def __init__(self, snap: FleetSnapshot) -> None:
        nodes = snap.nodes
        n = len(nodes)
        g = max((len(nd.gpus) for nd in nodes), default=0)
        self.names = [nd.name for nd in nodes]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.pools = [nd.pool for nd in nodes]
        self.labels: list[Mapping[str, str]] = [nd.labels for nd in nodes]
        self.schedulable = np.array([nd.schedulable for nd in nodes], dtype=np.bool_)
        self.cpu_cap = np.array([nd.cpu_milli for nd in nodes], dtype=np.int64)
        self.mem_cap = np.array([nd.mem_bytes for nd in nodes], dtype=np.int64)
        model_ids: dict[str, int] = {}
        self.gpu_model = np.full((n, g), -1, dtype=np.int64)
        self.gpu_mem = np.zeros((n, g), dtype=np.int64)
        self.gpu_exists = np.zeros((n, g), dtype=np.bool_)
        self.gpu_healthy = np.zeros((n, g), dtype=np.bool_)
        self.gpu_index = np.full((n, g), -1, dtype=np.int64)
        # per node: GPU index -> column
        self.pos: list[dict[int, int]] = [
            {slot.index: j for j, slot in enumerate(nd.gpus)} for nd in nodes
        ]
        slots = [slot for nd in nodes for slot in nd.gpus]
        at = slot_cells([len(nd.gpus) for nd in nodes])
        self.gpu_model[at] = [model_ids.setdefault(x.model, len(model_ids)) for x in slots]
        self.model_names: list[str] = list(model_ids)
        self.gpu_mem[at] = [x.mem_total_bytes for x in slots]
        self.gpu_exists[at] = True
        self.gpu_healthy[at] = [x.healthy for x in slots]
        self.gpu_index[at] = [x.index for x in slots]
        self.model_ids = model_ids
        self.index_lists: list[list[int]] = self.gpu_index.tolist()  # per node: column -> index
        # Nodes with the same GPU layout (model and memory per column) share a signature;
        # on a node whose GPUs are all alike, which column holds which free share is moot.
        sigs: dict[Layout, int] = {}
        layouts = [tuple((g.model, g.mem_total_bytes) for g in nd.gpus) for nd in nodes]
        self.sig = np.array([sigs.setdefault(t, len(sigs)) for t in layouts], dtype=np.int64)
        self.layouts = sigs  # layout -> its signature
        self.uniform = [len(set(t)) <= 1 for t in layouts]
        self.uniform_arr = np.array(self.uniform, dtype=np.bool_)
        self.n_gpus = self.gpu_exists.sum(axis=1).astype(np.int64)
        self.gpu_cap_total_milli = int(self.gpu_exists.sum()) * MILLI_PER_GPU
        self.max_cpu_milli = int(self.cpu_cap.max()) if n else 0
        self.max_gpus = int(self.n_gpus.max()) if n else 0
        self.node_masks: dict[NodeKey, BoolArray] = {}
        self.class_gpu_ok: dict[ClassKey, BoolArray] = {}
        self._class_cols: dict[ClassKey, list[list[int]]] = {}
        self._col_lists: dict[int, list[int]] = {}  # column bit mask -> its columns
        # node_key -> small integer id, shared by all copies of states over this fleet
        self.state_ids: dict[tuple[int, ...], int] = {}
        self.state_epoch = 0  # bumped when the numbering starts over
        # node keys hold free memory up to this (None: exact); see `set_key_mem_cap`
        self.key_mem_cap: int | None = None

    def reset_state_ids(self) -> None:
        """Start the state numbering over (states renumber their nodes on next use)."""
        self.state_ids = {}
        self.state_epoch += 1

    def set_key_mem_cap(self, cap: int | None) -> None:
        """Key nodes' free memory as min(free, `cap`) (None: exactly), numbering afresh: nodes
        that differ only in memory above `cap` then share a state, which is sound for a
        numbering user whose every request asks at most `cap` and whose scores read memory
        only through that (fleetdeck's, unless its workload mix carries memory)."""
        if cap != self.key_mem_cap:
            self.key_mem_cap = cap
            self.reset_state_ids()

    def adopt_numbering(self, prev: FleetStatic) -> bool:
        """Number GPU layouts and node states as `prev` (an earlier snapshot of the fleet)
        does, so that what a policy keeps by state id stays valid here: equal ids, equal
        layout and free resources. Only before any state id is taken on this fleet (False
        otherwise); the two fleets then share the numbering from here on."""
        if self.state_ids or prev is self:
            return False
        layouts = dict(prev.layouts)
        mine = sorted(self.layouts, key=self.layouts.__getitem__)
        remap = np.array([layouts.setdefault(t, len(layouts)) for t in mine], dtype=np.int64)
        self.sig = remap[self.sig] if remap.size else self.sig
        self.layouts = layouts
        self.state_ids = prev.state_ids
        self.key_mem_cap = prev.key_mem_cap
        self.state_epoch += 1  # states re-key their nodes (keys hold the signature)
        return True

    def class_cols(self, key: ClassKey) -> list[list[int]]:
        """Per node the columns of the GPUs of class `key`, as lists shared by all equal lists
        (over nodes and classes): treat as read-only."""
        out = self._class_cols.get(key)
        if out is None:
            ok = self.gpu_ok(key)
            bits = (ok.astype(np.int64) << np.arange(ok.shape[1], dtype=np.int64)).sum(axis=1)
            known = self._col_lists
            for b in set(bits.tolist()) - known.keys():
                known[b] = [j for j in range(ok.shape[1]) if b >> j & 1]
            out = self._class_cols[key] = [known[b] for b in bits.tolist()]
        return out

    def node_mask(self, req: ResourceRequest) -> BoolArray:
        key: NodeKey = (req.pool, req.node, tuple(sorted(req.labels.items())))
        mask = self.node_masks.get(key)
        if mask is None:
            mask = self.schedulable.copy()
            for i in range(len(self.names)):
                if mask[i]:
                    mask[i] = self._matches(i, req)
            mask.setflags(write=False)
            self.node_masks[key] = mask
        return mask

    def _matches(self, i: int, req: ResourceRequest) -> bool:
        if req.pool is not None and self.pools[i] != req.pool:
            return False
        if req.node is not None and self.names[i] != req.node:
            return False
        return all(self.labels[i].get(k) == v for k, v in req.labels.items())

    def gpu_ok(self, key: ClassKey) -> BoolArray:
        ok = self.class_gpu_ok.get(key)
        if ok is None:
            models, min_mem = key
            ok = self.gpu_exists & self.gpu_healthy
            if models:
                ids = [self.model_ids[m] for m in models if m in self.model_ids]
                ok = ok & np.isin(self.gpu_model, np.array(ids, dtype=np.int64))
            if min_mem > 0:
                ok = ok & (self.gpu_mem >= min_mem)
            ok.setflags(write=False)
            self.class_gpu_ok[key] = ok
        return ok


_ANY_GPU = ResourceRequest(cpu_milli=0, gpu_count=1)


def slot_cells(counts: list[int]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """(rows, columns) of every GPU slot, node by node, for nodes with `counts` GPUs."""
    c = np.array(counts, dtype=np.intp)
    rows = np.repeat(np.arange(c.size, dtype=np.intp), c)
    starts = np.repeat(np.cumsum(c) - c, c)
    return rows, np.arange(rows.size, dtype=np.intp) - starts


class FleetState:
    """Free resources of a fleet, fast to query per task and cheap to copy."""

    __slots__ = (
        "_classes",
        "_dirty",
        "_epoch",
        "_keys",
        "_s",
        "_sid",
        "affinity",
        "cpu_free",
        "gpu_free",
        "gpu_sum",
        "mem_free",
        "memo",
        "node_names",
        "node_version",
    )

    def __init__(
        self,
        static: FleetStatic,
        cpu_free: IntArray,
        mem_free: IntArray,
        gpu_free: IntArray,
        affinity: IntArray,
        node_version: IntArray,
    ) -> None:
        self._s = static
        self.node_names: list[str] = static.names
        self.cpu_free = cpu_free
        self.mem_free = mem_free
        self.gpu_free = gpu_free  # (N, G) milli free; 0 for absent or unhealthy GPUs
        self.gpu_sum = gpu_free.sum(axis=1)  # (N,) milli free over the node's GPUs
        # (N, max GPUs + 1) tasks per node by GPU shape: column 0 shared GPUs, k whole k GPUs.
        self.affinity = affinity
        # Bumped whenever a node's free resources change; policies' memo entries compare it to
        # recompute only the nodes that changed since they last looked.
        self.node_version = node_version
        self.memo: dict[object, Memo] = {}
        self._classes: dict[ClassKey, GpuClass] = {}
        self._keys: list[tuple[int, ...] | None] = [None] * len(static.names)
        self._sid = np.full(len(static.names), -1, dtype=np.int64)  # -1: not interned yet
        self._dirty: list[int] = list(range(len(static.names)))  # nodes whose _sid is -1
        self._epoch = static.state_epoch  # ids in _sid are from this numbering

    @classmethod
    def from_snapshot(cls, snap: FleetSnapshot) -> FleetState:
        s = FleetStatic(snap)
        cpu_free = np.array([nd.cpu_free_milli for nd in snap.nodes], dtype=np.int64)
        mem_free = np.array([nd.mem_free_bytes for nd in snap.nodes], dtype=np.int64)
        gpu_free = np.zeros_like(s.gpu_model)
        gpu_free[slot_cells([len(nd.gpus) for nd in snap.nodes])] = [
            max(0, slot.free_milli) for nd in snap.nodes for slot in nd.gpus
        ]
        affinity = np.zeros((len(s.names), s.max_gpus + 1), dtype=np.int64)
        state = cls(s, cpu_free, mem_free, gpu_free, affinity, np.zeros(len(s.names), np.int64))
        index = s.index
        aff = state.affinity
        top = aff.shape[1] - 1
        for ra in snap.running:
            a = ra.assignment
            n = len(a.gpu_indices)
            if n and a.gpu_milli > 0:
                aff[index[a.node], 0 if a.gpu_milli < MILLI_PER_GPU else min(n, top)] += 1
        return state

    def copy(self) -> FleetState:
        out = FleetState(
            self._s,
            self.cpu_free.copy(),
            self.mem_free.copy(),
            self.gpu_free.copy(),
            self.affinity.copy(),
            self.node_version.copy(),
        )
        out._classes = {k: c.copy() for k, c in self._classes.items()}
        out.memo = {k: m.copy() for k, m in self.memo.items()}
        out._keys = list(self._keys)
        out._sid = self._sid.copy()
        out._epoch = self._epoch
        out._dirty = list(self._dirty)
        return out

    # ---- static facts -------------------------------------------------------------------

    @property
    def static(self) -> FleetStatic:
        return self._s

    @property
    def n_nodes(self) -> int:
        return len(self._s.names)

    @property
    def gpu_capacity_milli(self) -> int:
        """Milli-GPU of all GPUs (healthy or not)."""
        return self._s.gpu_cap_total_milli

    def node_index(self, name: str) -> int:
        return self._s.index[name]

    def gpu_indices(self, node: int, positions: npt.ArrayLike) -> tuple[int, ...]:
        """Map array columns of `node` to the GPUs' own indices."""
        return tuple(int(x) for x in self._s.gpu_index[node, np.asarray(positions)])

    # ---- allocation ---------------------------------------------------------------------

    def apply(self, a: Assignment) -> None:
        """Take the resources of `a`; raises ValueError instead of over-committing."""
        self._change(a, -1)

    def release(self, a: Assignment) -> None:
        """Give back the resources of `a` (taken earlier with `apply`)."""
        self._change(a, +1)

    def _change(self, a: Assignment, sign: int) -> None:
        s = self._s
        i = s.index.get(a.node)
        if i is None:
            raise ValueError(f"unknown node {a.node!r}")
        pos = s.pos[i]
        cols = [pos.get(idx, -1) for idx in a.gpu_indices]
        if -1 in cols:
            raise ValueError(f"node {a.node!r} has no GPU {a.gpu_indices[cols.index(-1)]}")
        if len(cols) > 1 and len(set(cols)) != len(cols):
            raise ValueError(f"duplicate GPU index in {a.gpu_indices}")
        cpu = self.cpu_free.item(i) + sign * a.cpu_milli
        mem = self.mem_free.item(i) + sign * a.mem_bytes
        if sign < 0 and (cpu < 0 or mem < 0):
            raise ValueError(f"node {a.node!r}: not enough CPU or memory free for {a}")
        row: list[int] = []
        if cols:
            row = self.gpu_free[i].tolist()
            d = sign * a.gpu_milli
            for j in cols:
                v = row[j] + d
                if v < 0:
                    raise ValueError(f"node {a.node!r} GPU {s.gpu_index[i, j]}: over-committed")
                if v > MILLI_PER_GPU:
                    raise ValueError(f"node {a.node!r} GPU {s.gpu_index[i, j]}: released too much")
                row[j] = v
        self.cpu_free[i] = cpu
        self.mem_free[i] = mem
        self.node_version[i] += 1
        self._keys[i] = None
        if self._sid.item(i) >= 0:  # else it is in _dirty already
            self._sid[i] = -1
            self._dirty.append(i)
        if cols:
            if a.gpu_milli > 0:
                self._count_affinity(i, a, -sign)
            self.gpu_free[i] = row
            self.gpu_sum[i] = sum(row)
            self._refresh_row(i, row)

    def _count_affinity(self, i: int, a: Assignment, delta: int) -> None:
        n = len(a.gpu_indices)
        if n == 0 or a.gpu_milli <= 0:
            return
        col = 0 if a.gpu_milli < MILLI_PER_GPU else min(n, self.affinity.shape[1] - 1)
        self.affinity[i, col] = max(0, int(self.affinity[i, col]) + delta)

    def _refresh_row(self, i: int, row: list[int]) -> None:
        last: list[int] | None = None
        n_full = max_free = sum_free = 0
        for c in self._classes.values():
            cols = c.cols[i]
            if not cols:
                continue  # no eligible GPU here: the aggregates stay 0
            if cols is not last:  # classes often share one column list (see class_cols)
                vals = [row[j] for j in cols]
                n_full = vals.count(MILLI_PER_GPU)
                max_free = max(vals)
                sum_free = sum(vals)
                last = cols
            c.n_full[i] = n_full
            c.max_free[i] = max_free
            c.sum_free[i] = sum_free

    # ---- queries ------------------------------------------------------------------------

    def gpu_class(self, req: ResourceRequest) -> GpuClass:
        key: ClassKey = (req.gpu_models, req.min_gpu_mem_bytes)
        c = self._classes.get(key)
        if c is None:
            ok = self._s.gpu_ok(key)
            free = np.where(ok, self.gpu_free, 0)
            c = GpuClass(
                gpu_ok=ok,
                n_full=np.count_nonzero(free == MILLI_PER_GPU, axis=1).astype(np.int64),
                max_free=free.max(axis=1, initial=0).astype(np.int64),
                sum_free=free.sum(axis=1).astype(np.int64),
                n_gpus=ok.sum(axis=1).astype(np.int64),
                cols=self._s.class_cols(key),
            )
            self._classes[key] = c
        return c

    def static_mask(self, req: ResourceRequest) -> BoolArray:
        """Nodes `req` could use on an empty fleet: placement constraints and GPU capacity."""
        mask = self._s.node_mask(req)
        if req.gpu_count > 0:
            c = self.gpu_class(req)
            mask = mask & (c.n_gpus >= req.gpu_count)
        mask = mask & (self._s.cpu_cap >= req.cpu_milli) & (self._s.mem_cap >= req.mem_bytes)
        return mask

    def feasible(self, req: ResourceRequest) -> BoolArray:
        """Nodes where `req` fits now."""
        mask = self._s.node_mask(req) & (self.cpu_free >= req.cpu_milli)
        if req.mem_bytes > 0:
            mask &= self.mem_free >= req.mem_bytes
        if req.gpu_count > 0:
            c = self.gpu_class(req)
            if req.fractional:
                mask &= c.max_free >= req.gpu_milli
            else:
                mask &= c.n_full >= req.gpu_count
        return mask

    def can_ever_fit(self, req: ResourceRequest) -> bool:
        return bool(self.static_mask(req).any())

    def largest_free_block(self, req: ResourceRequest) -> tuple[int, str | None]:
        """Most GPUs (milli for fractional requests) free on one node eligible for `req`."""
        mask = self._s.node_mask(req)
        if req.gpu_count == 0:
            return 0, None
        c = self.gpu_class(req)
        vals = c.max_free if req.fractional else c.n_full
        vals = np.where(mask, vals, -1)
        if vals.size == 0:
            return 0, None
        i = int(np.argmax(vals))
        if vals[i] <= 0:
            return 0, None
        return int(vals[i]), self._s.names[i]

    def free_total(self) -> IntArray:
        """(N,) free milli-GPU per node over all healthy GPUs."""
        return self.gpu_class(_ANY_GPU).sum_free

    def full_total(self) -> IntArray:
        """(N,) fully free healthy GPUs per node."""
        return self.gpu_class(_ANY_GPU).n_full

    def node_key(self, i: int) -> tuple[int, ...]:
        """Hashable free state of node `i`: layout signature, CPU and memory free (at most
        `FleetStatic.key_mem_cap`), free milli per GPU column (sorted when the node's GPUs are
        all alike). Nodes with equal keys score equally for any request (asking at most the
        memory cap)."""
        k = self._keys[i]
        if k is None:
            free = self.gpu_free[i].tolist()
            if self._s.uniform[i]:
                free.sort()
            mem = self.mem_free.item(i)
            cap = self._s.key_mem_cap
            if cap is not None and mem > cap:
                mem = cap
            k = self._keys[i] = (self._s.sig.item(i), self.cpu_free.item(i), mem, *free)
        return k

    def all_state_ids(self) -> IntArray:
        """(N,) id of each node's `node_key` among the keys seen on this fleet (since the last
        `FleetStatic.reset_state_ids`): nodes, in any copy of the state, with equal ids are in
        equal states. A read-only view, valid until the next change."""
        if self._epoch != self._s.state_epoch:
            self._epoch = self._s.state_epoch
            self._sid[:] = -1
            self._keys = [None] * self.n_nodes
            self._dirty = list(range(self.n_nodes))
        if self._dirty:
            ids = self._s.state_ids
            sid = self._sid
            for i in self._dirty:
                if sid[i] < 0:
                    k = self.node_key(i)
                    v = ids.get(k)
                    if v is None:
                        v = ids[k] = len(ids)
                    sid[i] = v
            self._dirty = []
        return self._sid

    def stale_rows(self, key: object) -> tuple[Memo | None, npt.NDArray[np.intp]]:
        """The memo entry under `key` and the nodes changed since it was last refreshed."""
        m = self.memo.get(key)
        if m is None:
            return None, np.arange(self.n_nodes)
        return m, np.flatnonzero(m.seen != self.node_version)

    def eligible_gpus(self, i: int, req: ResourceRequest) -> npt.NDArray[np.intp]:
        """Columns of node `i`'s GPUs that could take one GPU's share of `req` now."""
        c = self.gpu_class(req)
        need = req.gpu_milli if req.fractional else MILLI_PER_GPU
        return np.flatnonzero(c.gpu_ok[i] & (self.gpu_free[i] >= need))

    def free_gpu_cols(self, i: int, req: ResourceRequest) -> list[int]:
        """`eligible_gpus` of a whole-GPU request as a list (fast for one node)."""
        cols = self.gpu_class(req).cols[i]
        row = self.gpu_free[i].tolist()
        return [j for j in cols if row[j] >= MILLI_PER_GPU]

    def assignment_cols(self, i: int, cols: list[int], req: ResourceRequest) -> Assignment:
        """`assignment` for GPU columns given as a list."""
        gpu = req.gpu_count > 0
        index = self._s.index_lists[i] if gpu else []
        return Assignment(
            node=self._s.names[i],
            gpu_indices=tuple([index[j] for j in cols]) if gpu else (),
            gpu_milli=req.gpu_milli if gpu else 0,
            cpu_milli=req.cpu_milli,
            mem_bytes=req.mem_bytes,
        )

    def assignment(self, i: int, cols: Any, req: ResourceRequest) -> Assignment:
        gpu_milli = req.gpu_milli if req.gpu_count > 0 else 0
        return Assignment(
            node=self._s.names[i],
            gpu_indices=self.gpu_indices(i, cols) if req.gpu_count > 0 else (),
            gpu_milli=gpu_milli,
            cpu_milli=req.cpu_milli,
            mem_bytes=req.mem_bytes,
        )
