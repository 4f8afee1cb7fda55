"""Fragmentation-aware selection: the paper's FGD and fleetdeck's default.

Both score every feasible node by how a placement changes the node's expected fragmentation
(`scheduler.fit_frag`). Per request shape the per-node scores are memoized on the state and
only the nodes changed since the last look are rescored, so a placement cycle costs one small
update per task rather than a pass over the fleet.
"""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import numpy.typing as npt

from scheduler.fit_frag import FragModel, best_per_row, candidates
from scheduler.fit_state import FleetState, Memo, _Static
from scheduler.fit_workload import TaskShape, WorkloadMix
from scheduler.models import Assignment, ResourceRequest

FloatArray = npt.NDArray[np.float64]
_tokens = itertools.count(1)
_MEMO_LIMIT = 2048
_SCORE_LIMIT = 1 << 20


def _fit_key(req: ResourceRequest) -> tuple[object, ...]:
    """What decides a node's score for a request, given the node's state."""
    return (
        req.cpu_milli,
        req.mem_bytes,
        req.gpu_count,
        req.gpu_milli if req.gpu_count else 0,
        req.gpu_models,
        req.min_gpu_mem_bytes,
    )


def _shape_key(req: ResourceRequest) -> tuple[object, ...]:
    return (
        req.cpu_milli,
        req.mem_bytes,
        req.gpu_count,
        req.gpu_milli if req.gpu_count else 0,
        req.gpu_models,
        req.min_gpu_mem_bytes,
        req.pool,
        req.node,
        tuple(sorted(req.labels.items())),
    )


class _FragPolicy:
    """Shared machinery: workload model, memoized per-node scores, seeded tie-breaks."""

    name: str = ""
    score_cache = True  # reuse scores across nodes in equal states (see FleetState.node_key)

    def __init__(self, seed: int = 0, workload: WorkloadMix | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self._fixed_mix = workload
        self._seen: Counter[TaskShape] = Counter()
        self._seen_n = 0
        self._next_rebuild = 1
        self._model: FragModel | None = None
        self._token = next(_tokens)
        # (request shape, node key) -> (score, tie, GPU column): nodes in equal states score
        # equally, so a node that reaches a state seen before costs one lookup.
        self._scores: dict[tuple[object, ...], tuple[float, float, int]] = {}

    # ---- workload ------------------------------------------------------------------------

    def _model_for(self, state: FleetState, req: ResourceRequest) -> FragModel:
        static = state.static
        if self._fixed_mix is None:
            self._observe(req)
        model = self._model
        if model is None or model.static is not static:
            model = self._model = FragModel(static, self._current_mix())
            self._token = next(_tokens)
            self._scores = {}
        return model

    def _observe(self, req: ResourceRequest) -> None:
        """Without a given mix, learn it from the requests seen (rebuilt after 1, 4, 16, 128,
        1024, ... requests: each rebuild drops the cached scores)."""
        self._seen[TaskShape.of(req)] += 1
        self._seen_n += 1
        if self._seen_n >= self._next_rebuild:
            self._next_rebuild *= 4 if self._next_rebuild < 16 else 8
            self._model = None

    def _current_mix(self) -> WorkloadMix:
        if self._fixed_mix is not None:
            return self._fixed_mix
        return WorkloadMix.from_counts(self._seen)

    # ---- scoring -------------------------------------------------------------------------

    def _refresh(
        self,
        model: FragModel,
        state: FleetState,
        req: ResourceRequest,
        rows: npt.NDArray[np.intp],
        arrays: dict[str, npt.NDArray[np.generic]],
    ) -> None:
        raise NotImplementedError

    def _arrays(
        self, state: FleetState, req: ResourceRequest
    ) -> dict[str, npt.NDArray[np.generic]]:
        model = self._model_for(state, req)
        key = (self._token, _shape_key(req))
        memo, rows = state.stale_rows(key)
        if memo is None:
            if len(state.memo) >= _MEMO_LIMIT:
                state.memo.clear()
            n = state.n_nodes
            memo = Memo(
                state.node_version.copy(),
                {
                    "score": np.full(n, -np.inf),
                    "tie": np.zeros(n),
                    "col": np.full(n, -1, dtype=np.intp),
                },
            )
            state.memo[key] = memo
        if rows.size:
            self._rescore(model, state, req, rows, memo.arrays)
            memo.seen[rows] = state.node_version[rows]
        return memo.arrays

    def _rescore(
        self,
        model: FragModel,
        state: FleetState,
        req: ResourceRequest,
        rows: npt.NDArray[np.intp],
        a: dict[str, npt.NDArray[np.generic]],
    ) -> None:
        score, tie, col = a["score"], a["tie"], a["col"]
        if not self.score_cache:
            score[rows] = -np.inf
            col[rows] = -1
            self._refresh(model, state, req, rows, a)
            return
        mask = state.static.node_mask(req)
        cache = self._scores
        share = req.gpu_count > 0 and req.fractional
        ok_cols = state.gpu_class(req).gpu_ok if share else None
        if len(cache) > _SCORE_LIMIT:
            cache.clear()
        sk = _fit_key(req)
        pending: list[int] = []
        for i in rows.tolist():
            if not mask[i]:
                score[i] = -np.inf
                continue
            hit = cache.get((sk, state.node_key(i)))
            if hit is None:
                pending.append(i)
                continue
            score[i], tie[i], col[i] = hit
            if ok_cols is not None and hit[2] >= 0:
                # the cache holds the chosen GPU's free milli; find that GPU on this node
                row = state.gpu_free[i]
                col[i] = int(np.flatnonzero((row == hit[2]) & ok_cols[i])[0])
        if pending:
            pr = np.array(pending, dtype=np.intp)
            score[pr] = -np.inf
            col[pr] = -1
            self._refresh(model, state, req, pr, a)
            for i in pending:
                c = int(col[i])
                v = int(state.gpu_free[i, c]) if share and c >= 0 else -1
                cache[(sk, state.node_key(i))] = (float(score[i]), float(tie[i]), v)

    def select(self, state: FleetState, req: ResourceRequest) -> Assignment | None:
        a = self._arrays(state, req)
        score = a["score"]
        if score.size == 0:
            return None
        best = score.max()
        if best == -np.inf:
            return None
        top = np.flatnonzero(score == best)
        if top.size > 1:
            tie = a["tie"][top]
            top = top[tie == tie.max()]
        i = int(top[0] if top.size == 1 else top[self.rng.integers(top.size)])
        if req.gpu_count == 0:
            return state.assignment(i, [], req)
        if req.fractional:
            return state.assignment(i, [int(a["col"][i])], req)
        return state.assignment(i, state.eligible_gpus(i, req)[: req.gpu_count], req)

    @staticmethod
    def static_of(state: FleetState) -> _Static:
        return state.static


def _sigmoid_score(x: FloatArray) -> FloatArray:
    """The artifact's integer score: int(100 * sigmoid(x))."""
    return np.floor(100.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0))))


class FGD(_FragPolicy):
    """Fragmentation Gradient Descent as in the paper's artifact.

    Node score int(100 * sigmoid(-dF / 1000)) for the fragmentation increase dF of the best
    placement on the node (for a GPU share: the first GPU reaching the best score); among the
    nodes with the top score one is drawn at random.
    """

    name = "fgd"
    # the artifact breaks ties between GPUs by index, which equal-state reuse would not keep
    score_cache = False

    def _refresh(
        self,
        model: FragModel,
        state: FleetState,
        req: ResourceRequest,
        rows: npt.NDArray[np.intp],
        arrays: dict[str, npt.NDArray[np.generic]],
    ) -> None:
        c = candidates(model, state, req, rows)
        if c.rows.size == 0:
            return
        q = _sigmoid_score(-c.delta / 1000.0)
        best, arg = best_per_row(c.rows.size, c.cand_row, q)
        arrays["score"][c.rows] = best
        arrays["col"][c.rows] = c.cand_col[arg]


class Fleetdeck(_FragPolicy):
    """fleetdeck's default: fragmentation descent with a fill-ahead term.

    FGD's measure looks one task ahead: a node counts as unfragmented for shape m as long as
    one more m fits. fleetdeck adds, per shape, the GPU milli that would stay free if the node
    were filled with copies of m, bounded by GPU slots, CPU and memory; this sees GPUs that
    will be stranded by CPU or memory running out and the leftovers that shares leave behind.
    The node (and GPU) with the smallest increase of F_fgd + F_fill over the workload mix wins,
    compared exactly; ties go to the node with the least free capacity left (best fit).
    """

    name = "fleetdeck"
    fill_weight = 1.0

    def _refresh(
        self,
        model: FragModel,
        state: FleetState,
        req: ResourceRequest,
        rows: npt.NDArray[np.intp],
        arrays: dict[str, npt.NDArray[np.generic]],
    ) -> None:
        c = candidates(model, state, req, rows, self.fill_weight)
        if c.rows.size == 0:
            return
        best, arg = best_per_row(c.rows.size, c.cand_row, np.round(-c.delta, 6))
        arrays["score"][c.rows] = best
        arrays["col"][c.rows] = c.cand_col[arg]
        s = state.static
        cpu_left = (state.cpu_free[c.rows] - req.cpu_milli) / max(s.max_cpu_milli, 1)
        gpu_left = (state.gpu_free[c.rows].sum(axis=1) - req.total_gpu_milli) / max(
            s.max_gpus * 1000, 1
        )
        arrays["tie"][c.rows] = -(cpu_left + gpu_left)
