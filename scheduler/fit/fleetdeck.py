"""fleetdeck's default selection policy: fragmentation descent with a fill-ahead term.

Scores by (request shape, node state id) are kept in the policy (`ScoreTable`): nodes in
equal states (`FleetState.state_ids`) score equally, a select gathers its shape's row over the
fleet's state ids, and a state not seen before is scored in one numpy pass
(`state_scores.score_states`) for the shapes asked for lately, not once per shape. `prepare`
(called by `plan` with the cycle's queue) scores the snapshot's states for the queue's first
shapes up front, in a few wide passes. States are keyed with free memory capped at the most
a scored shape asks (`_fit_key_mem`): scores read memory only through that, and nodes that
differ in memory alone are one state. The table outlives a placement cycle: the next cycle's
snapshot of the same fleet adopts its state numbering, so states scored in earlier cycles cost
a lookup.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from scheduler.fit.frag_policy import MEMO_LIMIT, FragPolicy
from scheduler.fit.fragmentation import FragModel
from scheduler.fit.state import FleetState, FleetStatic
from scheduler.fit.state_scores import ShapeSet, score_states
from scheduler.fit.workload import WorkloadMix
from scheduler.models import Assignment, RequestShape, ResourceRequest

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
_G = TypeVar("_G", bound=np.generic)
_RECENT = 200  # a new node state is scored for the shapes queried in this many latest selects
_BATCH_SHAPES = 32  # at most this many of them
_FEW_STATES = 8  # new states scored for those shapes at most (else for the asking shape only)
_PREPARE_SCAN = 1024  # queued requests `prepare` reads at most
_PREPARE_CELLS = 2048  # table cells per numpy pass of `prepare` (bounds its arrays)
# table cells (state ids x request shapes) kept at most: 20 bytes each, and the table lives
# as long as the policy (an engine's whole run)
_SCORE_LIMIT = 600_000


class Fleetdeck(FragPolicy):
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

    def __init__(self, seed: int = 0, workload: WorkloadMix | None = None) -> None:
        super().__init__(seed, workload)
        self._table: ScoreTable | None = None
        # id(request) -> (request, its row in the table, nodes outside its node mask or None):
        # placement asks with the same request objects over and over
        self._reqs: dict[int, tuple[ResourceRequest, int, BoolArray | None]] = {}

    def model_changed(self) -> None:
        self._reqs = {}  # node masks are per fleet snapshot

    def _table_for(self, static: FleetStatic, mix: WorkloadMix) -> ScoreTable:
        """The score table for `static`: the one kept from an earlier snapshot of the fleet
        when the workload mix is unchanged (the new snapshot adopts its state numbering: a
        placement cycle starts with the states seen before already scored), else a new one."""
        self._reqs = {}
        old = self._table
        if old is not None and old.mix == mix:
            prev = old.shapes.static
            if prev is static or static.adopt_numbering(prev):
                if prev is not static:
                    old.shapes.rebind(static)
                    old.retie(_tie_scale(static))
                old.mix = mix
                return old
        table = self._table = ScoreTable(static, mix)
        return table

    def _scores(
        self, state: FleetState, req: ResourceRequest
    ) -> tuple[FloatArray, float, ScoreTable, int, npt.NDArray[np.int64]]:
        """Per node the score of `req` (-inf where it cannot go), the best score, the table,
        the shape's row in it and each node's state id."""
        model = self.model_for(state, req)
        table = self._table
        if table is None or table.mix is not model.mix or table.shapes.static is not state.static:
            table = self._table_for(state.static, model.mix)
        info = self._reqs.get(id(req))
        if info is None or info[0] is not req:
            if len(self._reqs) >= MEMO_LIMIT:
                self._reqs.clear()
            mask = state.static.node_mask(req)
            q = table.shapes.add(RequestShape.demand_of(req), req)
            _fit_key_mem(state.static, model, table)
            info = self._reqs[id(req)] = (req, q, None if mask.all() else ~mask)
        _, q, off = info
        sid = _sync(state, table)
        table.touch(q)
        score = table.score[q].take(sid)
        if off is not None:
            score[off] = -np.inf
        best = float(score.max()) if score.size else -np.inf
        if best == np.inf:
            # states not scored yet (+inf): score each once (on one node in it) for `req` and
            # the shapes asked for lately, in one numpy pass
            miss = (score == np.inf).nonzero()[0]
            if miss.size == 1:  # usually: the node placed on last
                new_ids, reps = sid[miss], miss
            else:
                new_ids, first = np.unique(sid[miss], return_index=True)
                reps = miss[first]
            qs = table.shapes_to_score(q, new_ids)
            self._score_states(model, state, table, qs, reps, new_ids)
            score = table.score[q].take(sid)
            if off is not None:
                score[off] = -np.inf
            best = float(score.max())
        return score, best, table, q, sid

    def prepare(self, state: FleetState, requests: Iterable[ResourceRequest]) -> None:
        """Score the node states of `state` for the shapes of `requests` (a cycle's queue, in
        order; the first `_BATCH_SHAPES` distinct request objects among the first
        `_PREPARE_SCAN`) in a few wide numpy passes, before selects ask one shape at a time:
        a shape's first select would score every state of the snapshot for it alone. Only
        with a given workload mix (a learned one changes while the first requests are
        observed)."""
        if self._fixed_mix is None:
            return
        seen: dict[int, ResourceRequest] = {}  # queues share request objects per shape
        for r in itertools.islice(requests, _PREPARE_SCAN):
            seen.setdefault(id(r), r)
            if len(seen) >= _BATCH_SHAPES:
                break
        reqs = list(seen.values())
        if not reqs:
            return
        model = self.model_for(state, reqs[0])
        table = self._table
        if table is None or table.mix is not model.mix or table.shapes.static is not state.static:
            table = self._table_for(state.static, model.mix)
        qs = np.unique([table.shapes.add(RequestShape.demand_of(r), r) for r in reqs])
        _fit_key_mem(state.static, model, table)
        sid = _sync(state, table)
        ids, reps = np.unique(sid[state.static.schedulable], return_index=True)
        reps = np.flatnonzero(state.static.schedulable)[reps]
        lack = table.score[qs[:, None], ids[None, :]] == np.inf
        keep = lack.any(axis=0)
        ids, reps = ids[keep], reps[keep]
        qs = qs[lack.any(axis=1)]
        step = max(1, _PREPARE_CELLS // max(qs.size, 1))
        for k in range(0, ids.size, step):
            self._score_states(model, state, table, qs, reps[k : k + step], ids[k : k + step])

    def _share_col(
        self, state: FleetState, req: ResourceRequest, table: ScoreTable, q: int, i: int, sid: int
    ) -> int:
        c = table.col.item(q, sid)
        if c >= 0 and state.static.uniform[i]:
            # the key sorts a uniform node's free shares: take the first eligible GPU holding
            # the free milli the scored node's chosen GPU held
            held = table.val.item(q, sid)
            row = state.gpu_free[i].tolist()
            c = next((j for j in state.gpu_class(req).cols[i] if row[j] == held), 0)
        return c

    def _arrays(
        self, state: FleetState, req: ResourceRequest
    ) -> dict[str, npt.NDArray[np.generic]]:
        score, _, table, q, sid = self._scores(state, req)
        col = np.array(
            [self._share_col(state, req, table, q, i, int(sid[i])) for i in range(sid.size)],
            dtype=np.intp,
        )
        return {"score": score, "tie": _tie(state, req, np.arange(sid.size)), "col": col}

    def select(self, state: FleetState, req: ResourceRequest) -> Assignment | None:
        score, best, table, q, sid = self._scores(state, req)
        if best == -np.inf:
            return None
        top = (score == best).nonzero()[0]
        if top.size > 1:
            tie = table.tie[q].take(sid[top])  # as `_tie`, kept per state
            top = top[tie == tie.max()]
        i = int(top[0] if top.size == 1 else top[self.rng.integers(top.size)])
        if req.gpu_count == 0:
            cols: list[int] = []
        elif req.fractional:
            cols = [self._share_col(state, req, table, q, i, int(sid[i]))]
        else:
            cols = state.free_gpu_cols(i, req)[: req.gpu_count]
        return state.assignment_cols(i, cols, req)

    def _score_states(
        self,
        model: FragModel,
        state: FleetState,
        table: ScoreTable,
        qs: npt.NDArray[np.intp],
        reps: npt.NDArray[np.intp],
        ids: npt.NDArray[np.int64],
    ) -> None:
        """Score shapes `qs` on the node states `ids` (held by nodes `reps`) into `table`."""
        best, col, held = score_states(model, state, table.shapes, qs, reps, self.fill_weight)
        shape = (qs.size, reps.size)
        at = (qs[:, None], ids[None, :])
        table.score[at] = best.reshape(shape)
        table.col[at] = col.reshape(shape)
        table.val[at] = held.reshape(shape)
        # `_tie` of each shape on each state, the same arithmetic element by element
        shapes, (cpu_scale, gpu_scale) = table.shapes, table.tie_scale
        cpu_left = (state.cpu_free[reps] - shapes.cpu_milli[qs][:, None]) / cpu_scale
        total = shapes.gpu_count[qs] * shapes.gpu_milli[qs]
        gpu_left = (state.gpu_sum[reps] - total[:, None]) / gpu_scale
        table.tie[at] = -(cpu_left + gpu_left)
        table.state_cpu[ids] = state.cpu_free[reps]
        table.state_gpu[ids] = state.gpu_sum[reps]


class ScoreTable:
    """Fleetdeck's scores by request shape (rows, `shapes` indices) and node state id
    (columns, `FleetState.state_ids`): nodes in equal states score equally, so a node that
    reaches a state seen before costs a lookup, and a new state is scored for all shapes in
    one numpy pass. Kept across snapshots of one fleet (`FleetStatic.adopt_numbering`)."""

    __slots__ = ("clock", "col", "last", "mix", "n_ids", "score", "shapes", "state_cpu",
                 "state_gpu", "tie", "tie_scale", "val")

    def __init__(self, static: FleetStatic, mix: WorkloadMix) -> None:
        self.shapes = ShapeSet(static)
        self.mix = mix  # scores hold for this workload mix
        self.score = np.zeros((0, 0))  # +inf: not scored yet
        self.col = np.zeros((0, 0), dtype=np.int16)  # chosen GPU column (shares), -1 none
        self.val = np.zeros((0, 0), dtype=np.int16)  # free milli of the chosen GPU (shares)
        self.tie = np.zeros((0, 0))  # the tie-break (`_tie`) where scored
        self.tie_scale = _tie_scale(static)  # its divisors
        # per state id: free CPU and GPU milli (what `tie` reads of a state)
        self.state_cpu = np.zeros(0, dtype=np.int64)
        self.state_gpu = np.zeros(0, dtype=np.int64)
        self.clock = 0  # queries so far
        self.last = np.zeros(0, dtype=np.int64)  # per shape: clock of its latest query
        self.n_ids = 0  # state ids in use when last checked against the size bound

    def touch(self, q: int) -> None:
        self.clock += 1
        if q >= self.last.size:
            self.last = np.concatenate(
                [
                    self.last,
                    np.zeros(max(q + 1, 2 * self.last.size) - self.last.size, dtype=np.int64),
                ]
            )
        self.last[q] = self.clock

    def shapes_to_score(self, q: int, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
        """Shapes to score on new states `ids`: `q`, and, when the states are few (the nodes
        placed on lately), the shapes queried lately that lack any of them (they will likely
        ask for these states soon). Many states are a shape's first look at a snapshot: the
        other shapes have scored nearly all of them already."""
        if ids.size > _FEW_STATES:
            return np.full(1, q, dtype=np.intp)
        n = min(len(self.shapes), self.last.size)  # shapes past `last` were never asked for
        recent = self.last[:n] > self.clock - _RECENT
        recent &= (self.score[:n][:, ids] == np.inf).any(axis=1)
        recent[q] = True
        qs = np.flatnonzero(recent)
        if qs.size > _BATCH_SHAPES:  # many shapes: the most recently asked for
            qs = qs[np.argpartition(-self.last[qs], _BATCH_SHAPES - 1)[:_BATCH_SHAPES]]
        return qs

    def retie(self, scale: tuple[int, int]) -> None:
        """Recompute every tie-break for another fleet's divisors (`_tie_scale`)."""
        if scale == self.tie_scale:
            return
        self.tie_scale = cpu_scale, gpu_scale = scale
        rows, cols = self.tie.shape
        s = self.shapes
        n = min(rows, len(s))
        total = s.gpu_count[:n] * s.gpu_milli[:n]
        cpu_left = (self.state_cpu[None, :cols] - s.cpu_milli[:n, None]) / cpu_scale
        gpu_left = (self.state_gpu[None, :cols] - total[:, None]) / gpu_scale
        self.tie[:n] = -(cpu_left + gpu_left)

    def clear(self) -> None:
        """Forget all scores (the shapes stay)."""
        self.score = np.zeros((0, 0))
        self.col = np.zeros((0, 0), dtype=np.int16)
        self.val = np.zeros((0, 0), dtype=np.int16)
        self.tie = np.zeros((0, 0))
        self.state_cpu = np.zeros(0, dtype=np.int64)
        self.state_gpu = np.zeros(0, dtype=np.int64)

    def reserve(self, n_shapes: int, n_ids: int) -> None:
        rows, cols = self.score.shape
        if n_shapes <= rows and n_ids <= cols:
            return
        self._grow(n_shapes, n_ids)

    def _grow(self, n_shapes: int, n_ids: int) -> None:
        rows, cols = self.score.shape
        new_rows = max(n_shapes, 2 * rows, 8) if n_shapes > rows else rows
        new_cols = max(n_ids, 2 * cols, 1024) if n_ids > cols else cols
        shape = (new_rows, new_cols)

        def grown(old: npt.NDArray[_G], fill: float) -> npt.NDArray[_G]:
            out: npt.NDArray[_G] = np.full(shape, fill, dtype=old.dtype)
            out[:rows, :cols] = old[:rows, :cols]
            return out

        self.score = grown(self.score, np.inf)
        self.col = grown(self.col, -1)
        self.val = grown(self.val, -1)
        self.tie = grown(self.tie, 0.0)
        for name in ("state_cpu", "state_gpu"):
            old: npt.NDArray[np.int64] = getattr(self, name)
            new = np.zeros(new_cols, dtype=np.int64)
            new[: old.size] = old[:new_cols]
            setattr(self, name, new)


def _fit_key_mem(static: FleetStatic, model: FragModel, table: ScoreTable) -> None:
    """Key node memory no finer than the scores read it: a state's scores read free memory
    only as "at least what the shape asks" (unless the workload mix carries memory), so free
    memory above the most any shape in the table asks is all one (`set_key_mem_cap`). The
    cap only grows (numbering afresh and forgetting the scores each time)."""
    cur = static.key_mem_cap
    if model.s_use_mem:
        want = None
    else:
        want = int(table.shapes.mem_bytes.max(initial=0))
        if cur is not None and want <= cur:
            return
    if want != cur:
        static.set_key_mem_cap(want)
        table.clear()


def _sync(state: FleetState, table: ScoreTable) -> npt.NDArray[np.int64]:
    """Each node's state id, with `table` bounded and grown to hold every id."""
    sid = state.all_state_ids()
    n_ids = len(state.static.state_ids)
    if n_ids != table.n_ids:  # new states: bound the table, make room
        if len(table.shapes) * n_ids > _SCORE_LIMIT and n_ids > 2 * state.n_nodes:
            # too many states to keep scores for (long runs): number them afresh
            state.static.reset_state_ids()
            table.clear()
            sid = state.all_state_ids()
            n_ids = len(state.static.state_ids)
        table.n_ids = n_ids
    table.reserve(len(table.shapes), n_ids)
    return sid


def _tie_scale(static: FleetStatic) -> tuple[int, int]:
    """The divisors of `_tie` on this fleet: the most CPU and GPU milli of one node."""
    return max(static.max_cpu_milli, 1), max(static.max_gpus * 1000, 1)


def _tie(state: FleetState, req: ResourceRequest, rows: npt.NDArray[np.intp]) -> FloatArray:
    """Fleetdeck's tie-break: higher for less free capacity left after placing `req`."""
    cpu_scale, gpu_scale = _tie_scale(state.static)
    cpu_left = (state.cpu_free[rows] - req.cpu_milli) / cpu_scale
    gpu_left = (state.gpu_sum[rows] - req.total_gpu_milli) / gpu_scale
    tie: FloatArray = -(cpu_left + gpu_left)
    return tie
