"""Baseline GPU/node selection policies over `FleetState`.

Each policy picks one node among those where the request fits now, then concrete GPUs on it.
Scores follow the definitions used by the "Beware of Fragmentation" artifact
(hkust-adsl/kubernetes-scheduler-simulator) so that fill-mode results are comparable:
ties between equally scored nodes are broken at random with the policy's seeded generator.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from scheduler.fit_state import FleetState
from scheduler.models import MILLI_PER_GPU, Assignment, ResourceRequest

FloatArray = npt.NDArray[np.float64]


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
        return state.assignment(i, pick_gpus_first(state, i, req), req)


class BestFit:
    """The node left with the least free resource after placing the request.

    Score (lower is better): 0.5 * (cpu_free - cpu_req) / max_cpu + 0.5 * (gpu_free -
    gpu_req) / max_gpu_milli, with free GPU milli summed over the node's eligible GPUs.
    """

    name = "best-fit"

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def select(self, state: FleetState, req: ResourceRequest) -> Assignment | None:
        idx = np.flatnonzero(state.feasible(req))
        if idx.size == 0:
            return None
        s = state.static
        max_cpu = max(s.max_cpu_milli, 1)
        max_gpu = max(s.max_gpus * MILLI_PER_GPU, 1)
        cpu_left = (state.cpu_free[idx] - req.cpu_milli) / max_cpu
        if req.gpu_count > 0:
            gpu_left = (state.gpu_class(req).sum_free[idx] - req.total_gpu_milli) / max_gpu
        else:
            gpu_left = state.gpu_free[idx].sum(axis=1) / max_gpu
        score = np.floor((1.0 - 0.5 * cpu_left - 0.5 * gpu_left) * 100.0)
        i = int(idx[argbest(score, self.rng)])
        return state.assignment(i, pick_gpus_packed(state, i, req), req)
