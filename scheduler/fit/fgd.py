"""Fragmentation Gradient Descent (FGD), as in the artifact of "Beware of Fragmentation".

Scores every feasible node by how a placement changes the node's expected fragmentation
(`scheduler.fit.fragmentation`) and memoizes the per-node scores per request shape on the
state, rescoring only the nodes changed since the last look: a placement cycle costs one
small update per task rather than a pass over the fleet.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from scheduler.fit.frag_policy import MEMO_LIMIT, FragPolicy
from scheduler.fit.fragmentation import FragModel, best_per_row, candidates
from scheduler.fit.state import FleetState, Memo
from scheduler.models import Assignment, RequestShape, ResourceRequest

FloatArray = npt.NDArray[np.float64]


def _sigmoid_score(x: FloatArray) -> FloatArray:
    """The artifact's integer score: int(100 * sigmoid(x))."""
    return np.floor(100.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0))))


class FGD(FragPolicy):
    """Fragmentation Gradient Descent as in the paper's artifact.

    Node score int(100 * sigmoid(-dF / 1000)) for the fragmentation increase dF of the best
    placement on the node (for a GPU share: the first GPU reaching the best score); among the
    nodes with the top score one is drawn at random.
    """

    name = "fgd"

    def _arrays(
        self, state: FleetState, req: ResourceRequest
    ) -> dict[str, npt.NDArray[np.generic]]:
        """Per node: "score" (-inf where `req` cannot go), "tie" and "col" (the GPU column
        for a share), refreshed for the nodes changed since the last call."""
        model = self.model_for(state, req)
        key = (self.token, RequestShape.of(req))
        memo, rows = state.stale_rows(key)
        if memo is None:
            if len(state.memo) >= MEMO_LIMIT:
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
        a["score"][rows] = -np.inf
        a["col"][rows] = -1
        c = candidates(model, state, req, rows)
        if c.rows.size == 0:
            return
        q = _sigmoid_score(-c.delta / 1000.0)
        best, arg = best_per_row(c.rows.size, c.cand_row, q)
        a["score"][c.rows] = best
        a["col"][c.rows] = c.cand_col[arg]

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
