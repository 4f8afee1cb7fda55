"""EASY-backfill reservation for the highest-priority blocked task.

The reservation is the earliest time `start` at which the blocked task fits, assuming every
running job (and every job placed earlier in the cycle) ends at its expected end, and the
assignment `assignment` the fit policy picks then. Jobs without a max runtime never end.

Later tasks may still be placed now ("backfill") when they cannot delay that start:

- a *short* task (now + max_runtime_s <= start) is gone by `start`; it may use anything free;
- any other task must leave the reserved resources free at `start`: on every reserved GPU j
  (and the reserved node's CPU and memory) it may take at most
  `min(free_now[j], free_at_start[j] - needed[j])`. Whatever it takes is then still free at
  `start` minus what the reservation needs, so the reserved assignment stays feasible.
  The policy's choice on the real state is kept when it `allows` that; otherwise the task is
  selected again on `long_state()`, the real state minus a phantom hold of
  `free_now[j] - (free_at_start[j] - needed[j])` on the reserved resources.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import itemgetter

from scheduler.fit import FitPolicy, FleetState
from scheduler.models import Assignment, ResourceRequest


class Reservation:
    """The reserved start and assignment; decides what may run past `start`."""

    __slots__ = (
        "_cols",
        "_free_t_cpu",
        "_free_t_gpu",
        "_free_t_mem",
        "_i",
        "_long",
        "_pending",
        "_phantoms",
        "_state",
        "assignment",
        "start",
        "task_id",
    )

    def __init__(
        self,
        task_id: str,
        start: float,
        assignment: Assignment,
        state: FleetState,
        shadow: FleetState,
    ) -> None:
        self.task_id = task_id
        self.start = start
        self.assignment = assignment
        self._state = state  # the real state; the cycle applies every placement to it
        i = state.node_index(assignment.node)
        pos = state.static.pos[i]
        self._i = i
        self._cols = {idx: pos[idx] for idx in assignment.gpu_indices}
        # Free at `start` on the reserved node, before the reservation takes its share.
        self._free_t_gpu = {idx: int(shadow.gpu_free[i, j]) for idx, j in self._cols.items()}
        self._free_t_cpu = int(shadow.cpu_free[i])
        self._free_t_mem = int(shadow.mem_free[i])
        # `long_state` is built on first use, then kept in step by replaying placements.
        self._long: FleetState | None = None
        self._pending: list[Assignment] = []
        self._phantoms: list[Assignment] = []

    def allows(self, a: Assignment) -> bool:
        """Whether `a` (which fits the real state now) leaves the reservation feasible at
        `start` while still running then."""
        if a.node != self.assignment.node:
            return True
        need = self.assignment
        for idx in a.gpu_indices:
            free_t = self._free_t_gpu.get(idx)
            if free_t is not None and a.gpu_milli > free_t - need.gpu_milli:
                return False
        return (
            a.cpu_milli <= self._free_t_cpu - need.cpu_milli
            and a.mem_bytes <= self._free_t_mem - need.mem_bytes
        )

    def placed_short(self, a: Assignment) -> None:
        """A task ending by `start` was applied to the real state."""
        if self._long is not None:
            self._pending.append(a)

    def placed_long(self, a: Assignment) -> None:
        """A task that `allows` (or chosen on `long_state`) was applied to the real state; it
        still holds its resources at `start`."""
        if self._long is not None:
            self._pending.append(a)
        if a.node != self.assignment.node:
            return
        for idx in a.gpu_indices:
            if idx in self._free_t_gpu:
                self._free_t_gpu[idx] -= a.gpu_milli
        self._free_t_cpu -= a.cpu_milli
        self._free_t_mem -= a.mem_bytes

    def long_state(self) -> FleetState:
        """The real state minus a phantom hold on what the reservation needs at `start`: any
        assignment that fits here is allowed to run past `start`."""
        long = self._long
        if long is None:
            long = self._long = self._state.copy()
            self._phantoms = self._phantoms_now()
            for p in self._phantoms:
                long.apply(p)
            return long
        if self._pending:
            node = self.assignment.node
            touched = any(a.node == node for a in self._pending)
            if touched:
                for p in self._phantoms:
                    long.release(p)
            for a in self._pending:
                long.apply(a)
            self._pending.clear()
            if touched:
                self._phantoms = self._phantoms_now()
                for p in self._phantoms:
                    long.apply(p)
        return long

    def _phantoms_now(self) -> list[Assignment]:
        """Per reserved GPU (and CPU, memory): free now beyond what may be used until `start`
        without eating into the reservation: free_now - (free_at_start - needed), if > 0."""
        a = self.assignment
        state, i = self._state, self._i
        out = []
        for idx, j in self._cols.items():
            hold = int(state.gpu_free[i, j]) - (self._free_t_gpu[idx] - a.gpu_milli)
            if hold > 0:
                out.append(Assignment(a.node, (idx,), hold))
        cpu = int(state.cpu_free[i]) - (self._free_t_cpu - a.cpu_milli)
        mem = int(state.mem_free[i]) - (self._free_t_mem - a.mem_bytes)
        if cpu > 0 or mem > 0:
            out.append(Assignment(a.node, (), 0, max(0, cpu), max(0, mem)))
        return out


def _node_fits(state: FleetState, i: int, req: ResourceRequest) -> bool:
    if state.cpu_free[i] < req.cpu_milli or state.mem_free[i] < req.mem_bytes:
        return False
    if req.gpu_count == 0:
        return True
    c = state.gpu_class(req)
    if req.fractional:
        return bool(c.max_free[i] >= req.gpu_milli)
    return bool(c.n_full[i] >= req.gpu_count)


def reserve(
    state: FleetState,
    policy: FitPolicy,
    task_id: str,
    req: ResourceRequest,
    ends: Iterable[tuple[float, Assignment]],
    now: float,
) -> Reservation | None:
    """The earliest start for `req` as allocations end at their expected end times, or None
    when it never fits that way (what it needs is held by jobs without a max runtime)."""
    static_ok = state.static_mask(req)
    index = state.static.index
    events = []
    for end, a in ends:
        i = index.get(a.node)
        if i is not None and static_ok[i]:
            events.append((max(end, now), a, i))
    events.sort(key=itemgetter(0))
    shadow = state.copy()
    k, n = 0, len(events)
    while k < n:
        t = events[k][0]
        touched = False
        while k < n and events[k][0] == t:
            _, a, i = events[k]
            k += 1
            try:
                shadow.release(a)
            except ValueError:
                continue  # inconsistent with the snapshot: keep it held (pessimistic, safe)
            touched = touched or _node_fits(shadow, i, req)
        if touched:
            chosen = policy.select(shadow, req)
            if chosen is not None:
                return Reservation(task_id, t, chosen, state, shadow)
    return None
