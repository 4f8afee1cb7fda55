"""Baseline GPU/node selection policies over `FleetState`.

Each policy picks one node among those where the request fits now, then concrete GPUs on it.
Scores follow the definitions used by the "Beware of Fragmentation" artifact
(hkust-adsl/kubernetes-scheduler-simulator) so that fill-mode results are comparable:
ties between equally scored nodes are broken at random with the policy's seeded generator.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from scheduler.fit.state import FleetState
from scheduler.models import MILLI_PER_GPU, Assignment, ResourceRequest

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def pick_gpus_packed(state: FleetState, i: int, req: ResourceRequest) -> npt.NDArray[np.intp]:
    """GPU columns on node `i`: the tightest-fitting GPU for a share, lowest free whole GPUs."""
    cols = state.eligible_gpus(i, req)
    if req.gpu_count == 0:
        return cols[:0]
    if req.fractional:
        free = state.gpu_free[i, cols]
        return cols[[int(np.argmin(free))]]
    return cols[: req.gpu_count]


def pick_gpus_first(state: FleetState, i: int, req: ResourceRequest) -> npt.NDArray[np.intp]:
    """GPU columns on node `i`: the lowest-indexed that fit."""
    cols = state.eligible_gpus(i, req)
    if req.gpu_count == 0:
        return cols[:0]
    return cols[: 1 if req.fractional else req.gpu_count]


def argbest(scores: FloatArray, rng: np.random.Generator | None) -> int:
    """Index of the highest score; ties broken uniformly at random when `rng` is given."""
    best = scores.max()
    if rng is None:
        return int(np.argmax(scores))
    top = np.flatnonzero(scores == best)
    if top.size == 1:
        return int(top[0])
    return int(top[rng.integers(top.size)])


class FirstFit:
    """The first node (in fleet order) where the request fits; lowest GPU indices."""

    name = "first-fit"

    def select(self, state: FleetState, req: ResourceRequest) -> Assignment | None:
        mask = state.feasible(req)
        i = int(np.argmax(mask)) if mask.size else 0
        if mask.size == 0 or not mask[i]:
            return None
        return state.assignment(i, pick_gpus_first(state, i, req), req)


class RandomFit:
    """A uniformly random node among those where the request fits."""

    name = "random-fit"

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def select(self, state: FleetState, req: ResourceRequest) -> Assignment | None:
        idx = np.flatnonzero(state.feasible(req))
        if idx.size == 0:
            return None
        i = int(idx[self.rng.integers(idx.size)])
        cols = pick_gpus_first(state, i, req)
        if req.fractional:
            ok = state.eligible_gpus(i, req)
            cols = ok[[int(self.rng.integers(ok.size))]]
        return state.assignment(i, cols, req)


class _ScoredPacked:
    """A node score over the feasible nodes, best wins (ties at random), GPUs picked packed.

    Subclasses give `score`; higher is better.
    """

    name: str

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def score(self, state: FleetState, idx: IntArray, req: ResourceRequest) -> FloatArray:
        raise NotImplementedError

    def select(self, state: FleetState, req: ResourceRequest) -> Assignment | None:
        idx = np.flatnonzero(state.feasible(req))
        if idx.size == 0:
            return None
        i = int(idx[argbest(self.score(state, idx, req), self.rng)])
        return state.assignment(i, pick_gpus_packed(state, i, req), req)


class BestFit(_ScoredPacked):
    """The node left with the least free resource after placing the request.

    As in the artifact: score int(100 * (1 - 0.5 * (cpu_free - cpu_req) / max_cpu - 0.5 *
    (gpu_free - gpu_req) / max_gpu)), normalizers the largest node's CPU and GPUs, ties at
    random; a GPU share goes on the tightest GPU that fits.
    """

    name = "best-fit"

    def score(self, state: FleetState, idx: IntArray, req: ResourceRequest) -> FloatArray:
        s = state.static
        max_cpu = max(s.max_cpu_milli, 1)
        max_gpu = max(s.max_gpus * MILLI_PER_GPU, 1)
        cpu_left = (state.cpu_free[idx] - req.cpu_milli) / max_cpu
        gpu_left = (_gpu_free(state, req)[idx] - req.total_gpu_milli) / max_gpu
        score = np.floor((1.0 - 0.5 * cpu_left - 0.5 * gpu_left) * 100.0)
        return score


class DotProduct(_ScoredPacked):
    """Tetris-style alignment (artifact: merged GPU dimension, normalized by the largest node).

    Score int(100 * (1 - (cpu_free/max_cpu * cpu_req/max_cpu + gpu_free/max_gpu * gpu_req/max_gpu)
    / 2)): the node whose free vector aligns least with the request, i.e. the fullest one.
    """

    name = "dot-product"

    def score(self, state: FleetState, idx: IntArray, req: ResourceRequest) -> FloatArray:
        s = state.static
        max_cpu = float(max(s.max_cpu_milli, 1))
        max_gpu = float(max(s.max_gpus * MILLI_PER_GPU, 1))
        free_gpu = _gpu_free(state, req)[idx]
        dot = (state.cpu_free[idx] / max_cpu) * (req.cpu_milli / max_cpu) + (free_gpu / max_gpu) * (
            req.total_gpu_milli / max_gpu
        )
        score = np.floor(100.0 * (1.0 - dot / 2.0))
        return score


class GpuPacking(_ScoredPacked):
    """The artifact's GPU packing: prefer shared GPUs already in use, then free GPUs on used
    nodes, then idle nodes (fewest GPUs first)."""

    name = "gpu-packing"

    def score(self, state: FleetState, idx: IntArray, req: ResourceRequest) -> FloatArray:
        if req.gpu_count == 0:
            score = np.zeros(idx.size)
        else:
            n_gpus = state.static.n_gpus[idx]
            full = state.full_total()[idx]
            idle_node = full == n_gpus
            score = np.where(idle_node, np.maximum(33 - full, full), 0).astype(np.float64)
            if req.fractional:
                ok = state.gpu_class(req).gpu_ok[idx] & (state.gpu_free[idx] >= req.gpu_milli)
                tight = np.where(ok, state.gpu_free[idx], MILLI_PER_GPU + 1).min(axis=1)
                shared = np.maximum(100 - (tight * 100 // MILLI_PER_GPU) // 10, 50)
                used = np.where(tight >= MILLI_PER_GPU, 49, shared)
            else:
                used = np.full(idx.size, max(50 - req.gpu_count, 33))
            score = np.where(idle_node, score, used).astype(np.float64)
        return score


class GpuClustering(_ScoredPacked):
    """The artifact's GPU clustering: keep tasks of the same GPU shape together.

    Nodes already running only this shape score highest, then nodes mixing it with others, then
    idle nodes, then nodes running other shapes; within a class, fuller nodes first.
    """

    name = "gpu-clustering"

    def score(self, state: FleetState, idx: IntArray, req: ResourceRequest) -> FloatArray:
        if req.gpu_count == 0:
            score = np.zeros(idx.size)
        else:
            max_gpu = max(state.static.max_gpus * MILLI_PER_GPU, 1)
            tag = 0 if req.fractional else min(req.gpu_count, state.affinity.shape[1] - 1)
            aff = state.affinity[idx]
            kinds = np.count_nonzero(aff, axis=1)
            same = aff[:, tag] > 0
            base = 25 * (max_gpu - state.free_total()[idx]) // max_gpu
            bonus = np.where(same, np.where(kinds == 1, 75, 50), np.where(kinds == 0, 25, 0))
            score = (base + bonus).astype(np.float64)
        return score


def _gpu_free(state: FleetState, req: ResourceRequest) -> npt.NDArray[np.int64]:
    return state.gpu_class(req).sum_free if req.gpu_count > 0 else state.free_total()
