"""Which running jobs to preempt so that a queued task can start (pure, part of the plan).

A task that does not fit may preempt for one of two reasons (`PreemptKind`):

- reclaim: one of its entities (user, project, team) is under its guarantee and stays within
  it with the task; GPUs lent to others are taken back;
- priority: its class outranks the victim's class (the task is within its quotas).

A running job is never a victim when it is protected (its class is not preemptible, it ran
less than `min_runtime_s`, or it was preempted `max_preemptions` times already), when taking it
away would drop one of its own guaranteed entities below its guarantee, and, for a priority
preemption, unless its class is lower than the task's.

Victims come from one node (a task runs on one node): on each node the task may use,
candidates are taken in victim order (lowest class priority, then shortest runtime so far, then
fewest GPUs) until the task fits there; then every victim the task can do without is given
back, so nothing more is preempted than needed. Nodes are tried cheapest first candidate
first; among the first `NODES_COMPARED` where the task would fit, the smallest loss wins:
(highest victim priority, GPU-seconds of work lost, GPUs, victims). No node: nobody is
preempted. At most `MAX_SEARCHES_PER_CYCLE` tasks search per cycle.

Jobs already leaving (preempted in an earlier cycle, inside their grace) are free room for the
task that claims them first, at no cost. The free room on the chosen node that the task will
need is held for the rest of the cycle (`Claim.hold`, applied by the plan), so nothing else
takes it meanwhile.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from collectors.formatting import duration_rounded
from scheduler.fit import FleetState
from scheduler.models import MILLI_PER_GPU, Assignment, ResourceRequest, RunningAllocation
from scheduler.quota import Level, QuotaLedger, Usage, gpus_text

# Beneficiaries searched per cycle at most: a full fleet with a deep queue stays fast, and the
# rest try again next cycle (by then the first ones' victims are leaving).
MAX_SEARCHES_PER_CYCLE = 32
# Nodes where the task would fit whose losses are compared (nodes are tried cheapest
# candidate first): a full fleet's every node is not read for one task.
NODES_COMPARED = 8


class PreemptKind(StrEnum):
    RECLAIM = "reclaim"
    PRIORITY = "priority"


@dataclass(frozen=True, slots=True)
class PreemptionRules:
    """`[scheduler]` preemption settings; passing rules to `plan` turns preemption on."""

    grace_s: float = 60.0
    min_runtime_s: float = 300.0
    max_preemptions: int = 3

    def __post_init__(self) -> None:
        for name in ("grace_s", "min_runtime_s"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v}")
        if self.max_preemptions < 0:
            raise ValueError(f"max_preemptions must be >= 0, got {self.max_preemptions}")


@dataclass(frozen=True, slots=True)
class Preemption:
    """One decision: stop `victim_id` (then requeue it) so that `beneficiary_id` can start."""

    victim_id: str
    beneficiary_id: str
    node: str
    kind: PreemptKind
    reason: str  # one line with the numbers, for the audit row and `explain`


@dataclass(frozen=True, slots=True)
class Claim:
    """What a task gets from a search: new victims, leaving jobs it claims, held free room."""

    node: str
    kind: PreemptKind
    victims: tuple[RunningAllocation, ...]
    leaving: tuple[RunningAllocation, ...]
    hold: Assignment | None


def protection(r: RunningAllocation, rules: PreemptionRules, now: float) -> str | None:
    """Why `r` may not be preempted at all, or None."""
    if not r.preemptible:
        return "its priority class is not preemptible"
    if r.preemptions >= rules.max_preemptions:
        return f"preempted {r.preemptions} times already (limit {rules.max_preemptions})"
    ran = now - r.started_at
    if ran < rules.min_runtime_s:
        least = duration_rounded(rules.min_runtime_s)
        return f"ran {duration_rounded(ran)}, under the {least} minimum"
    return None


def _entities(r: RunningAllocation) -> tuple[tuple[Level, str], ...]:
    return (("user", r.user), ("project", r.project), ("team", r.team))


class VictimSearch:
    """Candidates per node for one cycle; `find` picks the victims for one task."""

    __slots__ = ("_below", "_cands", "_failed", "_held_gpus", "_leaving", "_ledger", "_lowest",
                 "_nodes", "_now", "_state", "removed", "searches", "taken")

    def __init__(
        self,
        state: FleetState,
        running: Iterable[RunningAllocation],
        rules: PreemptionRules,
        now: float,
        ledger: QuotaLedger | None,
    ) -> None:
        self._state = state
        self._now = now
        self._ledger = ledger
        self._cands: dict[int, list[RunningAllocation]] = {}
        self._leaving: dict[int, list[RunningAllocation]] = {}
        self._failed: set[tuple[object, ...]] = set()
        self._below: dict[tuple[int, int], int] = {}  # (node, class priority) -> GPUs
        self.removed: Usage = {}  # GPU on its way out: leaving jobs and this cycle's victims
        self.taken: set[str] = set()  # job ids claimed or chosen this cycle
        self.searches = 0
        static = state.static
        for r in running:
            i = static.index.get(r.assignment.node)
            if i is None or not static.schedulable[i]:
                continue
            if r.leaving:
                self._leaving.setdefault(i, []).append(r)
                self._remove(r)
            elif protection(r, rules, now) is None:
                self._cands.setdefault(i, []).append(r)
        for lst in self._cands.values():
            lst.sort(key=self.victim_key)
        # nodes with leaving jobs first, then by their cheapest candidate
        self._nodes = sorted(set(self._cands) | set(self._leaving), key=lambda i: (
            i not in self._leaving, self.victim_key(self._cands[i][0]) if i in self._cands
            else (0, 0.0, 0)))
        self._held_gpus = {i: len({g for r in (*self._cands.get(i, ()), *self._leaving.get(i, ()))
                                   for g in r.assignment.gpu_indices}) for i in self._nodes}
        self._lowest = min((lst[0].class_priority for lst in self._cands.values()),
                           default=None)

    def _gpus_below(self, i: int, class_priority: int) -> int:
        """GPUs on node `i` held by leaving jobs or candidates of a lower class (memoized)."""
        key = (i, class_priority)
        n = self._below.get(key)
        if n is None:
            n = self._below[key] = len({
                g for r in (*self._leaving.get(i, ()), *self._cands.get(i, ()))
                if r.leaving or r.class_priority < class_priority
                for g in r.assignment.gpu_indices})
        return n

    @property
    def exhausted(self) -> bool:
        """Whether this cycle's searches are used up (`find` answers None from now on)."""
        return self.searches >= MAX_SEARCHES_PER_CYCLE

    def victim_key(self, r: RunningAllocation) -> tuple[int, float, int]:
        """Lowest priority first, then least work lost (shortest runtime), then fewest GPUs."""
        return (r.class_priority, self._now - r.started_at, r.milli)

    def _remove(self, r: RunningAllocation, removed: Usage | None = None) -> None:
        into = self.removed if removed is None else removed
        for level, name in _entities(r):
            if name:
                into[(level, name)] = into.get((level, name), 0) + r.milli

    def kind_for(self, user: str, project: str, team: str, milli: int,
                 class_priority: int) -> PreemptKind | None:
        """Whether a task may preempt at all: reclaim first, else priority."""
        if self._ledger is not None and milli > 0 and self._ledger.under_guarantee(
                user, project, team, milli) is not None:
            return PreemptKind.RECLAIM
        if self._lowest is not None and self._lowest < class_priority:
            return PreemptKind.PRIORITY
        return None

    def _keeps_guarantee(self, r: RunningAllocation, removed: Usage) -> bool:
        """`removed`: this cycle's removals plus the victims chosen so far on this node."""
        if self._ledger is None:
            return True
        return self._ledger.guarantee_kept(r.user, r.project, r.team, r.milli, removed) is None

    def find(self, req: ResourceRequest, kind: PreemptKind, class_priority: int,
             shape: object) -> Claim | None:
        """The cheapest set of victims on one node that lets `req` fit there, or None."""
        key = (shape, kind, class_priority if kind is PreemptKind.PRIORITY else None)
        if key in self._failed or self.searches >= MAX_SEARCHES_PER_CYCLE:
            return None
        self.searches += 1
        state = self._state
        mask = state.static_mask(req)
        # a node whose free GPUs plus all its candidates' GPUs are too few is skipped unread
        free = state.gpu_class(req).n_full if req.gpu_count and not req.fractional else None
        best: tuple[tuple[float, float, int, int], Claim, int] | None = None
        found = 0
        for i in self._nodes:
            if not mask[i]:
                continue
            if free is not None and free[i] + self._held_gpus[i] < req.gpu_count:
                continue
            if (free is not None and kind is PreemptKind.PRIORITY
                    and free[i] + self._gpus_below(i, class_priority) < req.gpu_count):
                continue  # too few GPUs held by jobs it outranks (or leaving ones)
            claim = self._on_node(i, req, kind, class_priority)
            if claim is None:
                continue
            cost = self._cost(claim)
            if best is None or cost < best[0]:
                best = (cost, claim, i)
            found += 1
            if found >= NODES_COMPARED:
                break
        if best is None:
            self._failed.add(key)
            return None
        _, claim, i = best
        # the room to hold, for the chosen node only (leaving jobs came first in its pool)
        claim = replace(claim, hold=self._hold(i, req, (*claim.leaving, *claim.victims)))
        for r in (*claim.victims, *claim.leaving):
            self.taken.add(r.job_id)
        for r in claim.victims:
            self._remove(r)
        return claim  # the caller applies claim.hold

    def _cost(self, claim: Claim) -> tuple[float, float, int, int]:
        v = claim.victims
        if not v:
            return (-math.inf, 0.0, 0, 0)
        lost = sum(r.milli * max(0.0, self._now - r.started_at) for r in v) / MILLI_PER_GPU
        return (max(r.class_priority for r in v), lost, sum(r.milli for r in v), len(v))

    def _on_node(self, i: int, req: ResourceRequest, kind: PreemptKind,
                 class_priority: int) -> Claim | None:
        leaving = [r for r in self._leaving.get(i, ()) if r.job_id not in self.taken]
        pool = leaving + [
            r for r in self._cands.get(i, ())
            if r.job_id not in self.taken
            and (kind is PreemptKind.RECLAIM or r.class_priority < class_priority)]
        chosen: list[RunningAllocation] = []
        removed: Usage = dict(self.removed)
        fits = False
        state = self._state
        row = state.gpu_free[i].tolist()  # free on the node with `chosen` gone
        cpu = int(state.cpu_free[i])
        mem = int(state.mem_free[i])
        pos = state.static.pos[i]
        ok = state.gpu_class(req).gpu_ok[i].tolist()
        for r in pool:
            if not r.leaving and not self._keeps_guarantee(r, removed):
                continue
            chosen.append(r)
            if not r.leaving:
                self._remove(r, removed)
            cpu, mem = _give_back(r.assignment, pos, row, cpu, mem)
            if _fits_free(req, ok, row, cpu, mem):
                fits = True
                break
        if not fits:
            return None
        # give back every victim the task can do without (latest added, most costly, first)
        for r in reversed(list(chosen)):
            rest = [c for c in chosen if c is not r]
            if self._fits(i, req, rest):
                chosen = rest
        return Claim(self._state.static.names[i], kind,
                     tuple(r for r in chosen if not r.leaving),
                     tuple(r for r in chosen if r.leaving), None)  # hold: see `find`

    def _freed(self, i: int, freed: Sequence[RunningAllocation]) -> tuple[list[int], int, int]:
        state = self._state
        row = state.gpu_free[i].tolist()
        cpu = int(state.cpu_free[i])
        mem = int(state.mem_free[i])
        pos = state.static.pos[i]
        for r in freed:
            cpu, mem = _give_back(r.assignment, pos, row, cpu, mem)
        return row, cpu, mem

    def _gpu_cols(self, i: int, req: ResourceRequest, row: list[int]) -> list[int]:
        """GPU columns of node `i` that could take the task's share, given free `row`."""
        ok = self._state.gpu_class(req).gpu_ok[i].tolist()
        need = req.gpu_milli if req.fractional else MILLI_PER_GPU
        return [j for j, good in enumerate(ok) if good and row[j] >= need]

    def _fits(self, i: int, req: ResourceRequest, freed: Sequence[RunningAllocation]) -> bool:
        row, cpu, mem = self._freed(i, freed)
        if cpu < req.cpu_milli or mem < req.mem_bytes:
            return False
        if req.gpu_count == 0:
            return True
        return len(self._gpu_cols(i, req, row)) >= req.gpu_count

    def _hold(self, i: int, req: ResourceRequest,
              freed: Sequence[RunningAllocation]) -> Assignment | None:
        """The part of the task's future assignment that is free now (held this cycle)."""
        state = self._state
        now_row = state.gpu_free[i].tolist()
        row, _, _ = self._freed(i, freed)
        need = req.gpu_milli if req.fractional else MILLI_PER_GPU
        cols: list[int] = []
        if req.gpu_count:
            usable = self._gpu_cols(i, req, row)
            # columns only the victims free come first: the rest of the node stays usable
            usable.sort(key=lambda j: now_row[j] >= need)
            cols = [j for j in usable[: req.gpu_count] if now_row[j] >= need]
        cpu = min(req.cpu_milli, int(state.cpu_free[i]))
        mem = min(req.mem_bytes, int(state.mem_free[i]))
        if not cols and cpu <= 0 and mem <= 0:
            return None
        gpu = bool(cols)
        return Assignment(
            node=state.static.names[i],
            gpu_indices=state.gpu_indices(i, cols) if gpu else (),
            gpu_milli=need if gpu else 0, cpu_milli=max(0, cpu), mem_bytes=max(0, mem))


def _give_back(a: Assignment, pos: dict[int, int], row: list[int], cpu: int,
               mem: int) -> tuple[int, int]:
    """Add what `a` holds to a node's free GPU `row` (in place), CPU and memory."""
    for idx in a.gpu_indices:
        j = pos.get(idx)
        if j is not None:
            row[j] = min(MILLI_PER_GPU, row[j] + a.gpu_milli)
    return cpu + a.cpu_milli, mem + a.mem_bytes


def _fits_free(req: ResourceRequest, ok: list[bool], row: list[int], cpu: int,
               mem: int) -> bool:
    """Whether `req` fits a node with free GPU `row`, CPU and memory (`ok`: its GPUs the
    request may use), as `VictimSearch._fits` decides."""
    if cpu < req.cpu_milli or mem < req.mem_bytes:
        return False
    if req.gpu_count == 0:
        return True
    need = req.gpu_milli if req.fractional else MILLI_PER_GPU
    return sum(1 for good, v in zip(ok, row, strict=True) if good and v >= need) >= req.gpu_count


def reclaim_why(ledger: QuotaLedger, user: str, project: str, team: str, milli: int) -> str:
    """"team a is under its guarantee: 0/2 GPUs in use, asks 1"."""
    g = ledger.under_guarantee(user, project, team, milli)
    if g is None:
        return "no entity under its guarantee"
    level, name, used, guaranteed = g
    return (f"{level} {name} is under its guarantee: {gpus_text(used)}/{gpus_text(guaranteed)} "
            f"GPUs in use, asks {gpus_text(milli)}")


def victim_text(r: RunningAllocation, ledger: QuotaLedger | None, now: float) -> str:
    """"job 12 (team b holds 2 GPUs, 0 guaranteed; priority 0; ran 6m; 1 GPU)"."""
    parts = []
    if ledger is not None:
        for level, name in reversed(_entities(r)):  # team first: guarantees live there most
            if not name:
                continue
            used = ledger.used_milli(level, name)
            g = ledger.guaranteed_milli(level, name)
            if used > g:
                parts.append(f"{level} {name} holds {gpus_text(used)} GPUs, "
                             f"{gpus_text(g)} guaranteed")
                break
    parts.append(f"priority {r.class_priority}")
    parts.append(f"ran {duration_rounded(now - r.started_at)}")
    parts.append(f"{gpus_text(r.milli)} GPU")
    return f"job {r.job_id} ({'; '.join(parts)})"
