"""Replay mode: jobs arrive at their submit time and run for their duration, in simulated time.

An event-driven simulation: arrivals and completions are processed in time order (completions
first at equal times). While nobody waits, an arriving job goes straight to the selection
policy. Once jobs wait, every batch of events that frees resources runs the real placement
cycle, `scheduler.placement.plan`, on a snapshot of the simulated fleet: FIFO by submit time
with EASY backfill, each job's trace run time standing in for its max runtime (so reservations
are exact). Events that free nothing run the cycle only if a newcomer fits now. Jobs without
a known duration are skipped and counted; jobs larger than any node are counted and never
started.

Queueing delay = start - submit; JCT (job completion time) = end - submit.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from scheduler.fit import FitPolicy, FleetState, WorkloadMix, make_policy
from scheduler.models import Assignment, FleetSnapshot, GpuSlot, NodeCapacity, RunningAllocation
from scheduler.placement import QueuedTask, plan
from scheduler.sim.traces import TraceJob

ALLOC_SAMPLES = 24


@dataclass(frozen=True, slots=True)
class ReplayRun:
    """One policy replaying one job list."""

    policy: str
    seed: int
    jobs: int
    skipped: int  # no known duration
    never_fit: int  # larger than any node: never started
    queue_delay_s: tuple[float, ...] = field(repr=False)
    jct_s: tuple[float, ...] = field(repr=False)
    makespan_s: float
    alloc_samples: tuple[tuple[float, float], ...]  # (time from first submit, GPU alloc %)
    mean_alloc_pct: float  # time-weighted over the makespan
    elapsed_s: float

    def stat(self, values: tuple[float, ...], kind: str) -> float:
        if not values:
            return float("nan")
        arr = np.asarray(values)
        if kind == "mean":
            return float(arr.mean())
        if kind == "median":
            return float(np.median(arr))
        return float(np.percentile(arr, 95))


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    """One policy over several seeds (seeds only matter for randomized tie-breaks)."""

    policy: str
    seeds: tuple[int, ...]
    runs: tuple[ReplayRun, ...] = field(repr=False)

    def _avg(self, which: str, kind: str) -> float:
        return float(
            np.mean(
                [r.stat(r.queue_delay_s if which == "delay" else r.jct_s, kind) for r in self.runs]
            )
        )

    @property
    def mean_queue_delay_s(self) -> float:
        return self._avg("delay", "mean")

    @property
    def median_queue_delay_s(self) -> float:
        return self._avg("delay", "median")

    @property
    def p95_queue_delay_s(self) -> float:
        return self._avg("delay", "p95")

    @property
    def mean_jct_s(self) -> float:
        return self._avg("jct", "mean")

    @property
    def median_jct_s(self) -> float:
        return self._avg("jct", "median")

    @property
    def p95_jct_s(self) -> float:
        return self._avg("jct", "p95")

    @property
    def makespan_s(self) -> float:
        return float(np.mean([r.makespan_s for r in self.runs]))

    @property
    def mean_alloc_pct(self) -> float:
        return float(np.mean([r.mean_alloc_pct for r in self.runs]))

    @property
    def seconds_per_seed(self) -> float:
        return float(np.mean([r.elapsed_s for r in self.runs]))


def run_replay(
    snapshot: FleetSnapshot,
    jobs: Sequence[TraceJob],
    policy: str,
    seed: int,
    *,
    mix: WorkloadMix | None = None,
    time_scale: float = 1.0,
) -> ReplayRun:
    """Replay `jobs` on an initially empty `snapshot` fleet with one selection policy.

    `time_scale` multiplies submit times (0.01 packs the arrivals 100 times closer, to load a
    fleet the trace alone leaves idle); run times are kept."""
    state = FleetState.from_snapshot(snapshot)
    capacity = max(state.gpu_capacity_milli, 1)
    pol = make_policy(policy, seed=seed, workload=mix)
    runnable = [j for j in jobs if j.duration_s is not None]
    skipped = len(jobs) - len(runnable)
    never = [j for j in runnable if not state.can_ever_fit(j.request)]
    runnable = [j for j in runnable if state.can_ever_fit(j.request)]
    runnable.sort(key=lambda j: j.submit_time_s)  # stable: file order breaks ties
    submit = [j.submit_time_s * time_scale for j in runnable]
    t0 = time.perf_counter()
    fleet = _ReplayFleet(state, runnable, submit)
    tasks = [
        QueuedTask(
            id=str(k),
            request=j.request,
            user=j.user,
            project=j.project,
            submitted_at=submit[k],
            max_runtime_s=j.duration_s,
        )
        for k, j in enumerate(runnable)
    ]
    first = submit[0] if submit else 0.0
    trace_t, trace_alloc = fleet.run(pol, tasks, SimSnapshots(snapshot, state), first, capacity)
    elapsed = time.perf_counter() - t0
    return _replay_run(pol.name, seed, runnable, submit, fleet.start, skipped, len(never),
                       trace_t, trace_alloc, elapsed)


class _ReplayFleet:
    """The simulated fleet during a replay: running jobs, their holds as placement sees them,
    GPU milli in use, start times, and the event heap (time, kind, index) with kind 0 a
    completion and 1 an arrival."""

    def __init__(self, state: FleetState, runnable: Sequence[TraceJob],
                 submit: Sequence[float]) -> None:
        self.state = state
        self.runnable = runnable
        self.events: list[tuple[float, int, int]] = [(t, 1, k) for k, t in enumerate(submit)]
        heapq.heapify(self.events)
        self.running: dict[int, Assignment] = {}
        self.holds: dict[int, RunningAllocation] = {}
        self.start = np.full(len(runnable), np.nan)
        self.used_milli = 0

    def run(self, pol: FitPolicy, tasks: Sequence[QueuedTask], snap: SimSnapshots, first: float,
            capacity_milli: int) -> tuple[list[float], list[float]]:
        """Every event in time order; the allocation % after each instant (and at `first`)."""
        waiting: list[int] = []  # FIFO by submit time
        trace_t: list[float] = [first]
        trace_alloc: list[float] = [0.0]
        while self.events:
            now = self.events[0][0]
            arrived, released = self.due(now)
            if not waiting:
                waiting = self.start_arrivals(pol, arrived, now)
            else:
                waiting.extend(arrived)
                # Without a release only a newcomer that fits now could start (by backfill).
                if released or any(self.state.feasible(self.runnable[k].request).any()
                                   for k in arrived):
                    waiting = self.start_planned(pol, waiting, tasks, snap, now)
            trace_t.append(now)
            trace_alloc.append(self.used_milli * 100.0 / capacity_milli)
        return trace_t, trace_alloc

    def due(self, now: float) -> tuple[list[int], bool]:
        """The events at `now`: completions release their GPUs; the arrivals, and whether
        anything was released."""
        arrived: list[int] = []
        released = False
        while self.events and self.events[0][0] == now:
            _, kind, k = heapq.heappop(self.events)
            if kind == 0:
                self.finish(k)
                released = True
            else:
                arrived.append(k)
        return arrived, released

    def start_arrivals(self, pol: FitPolicy, arrived: list[int], now: float) -> list[int]:
        """Nobody waits: arrivals go straight to the policy, in order, until one does not fit;
        it and those after it wait."""
        for n, k in enumerate(arrived):
            picked = pol.select(self.state, self.runnable[k].request)
            if picked is None:
                return arrived[n:]
            self.launch(k, picked, now)
        return []

    def start_planned(self, pol: FitPolicy, waiting: list[int], tasks: Sequence[QueuedTask],
                      snap: SimSnapshots, now: float) -> list[int]:
        """One placement cycle over the waiting jobs; those still waiting."""
        result = plan(snap.build(self.holds), [tasks[k] for k in waiting], policy=pol, now=now)
        started = set()
        for task_id, a in result.assignments:
            k = int(task_id)
            self.launch(k, a, now)
            started.add(k)
        return [k for k in waiting if k not in started]

    def launch(self, k: int, a: Assignment, now: float) -> None:
        self.state.apply(a)
        self.running[k] = a
        job = self.runnable[k]
        self.holds[k] = RunningAllocation(str(k), job.user, job.project, "", a, now,
                                          job.duration_s)
        self.used_milli += a.gpu_milli * len(a.gpu_indices)
        self.start[k] = now
        heapq.heappush(self.events, (now + float(job.duration_s or 0.0), 0, k))

    def finish(self, k: int) -> None:
        done = self.running.pop(k)
        del self.holds[k]
        self.state.release(done)
        self.used_milli -= done.gpu_milli * len(done.gpu_indices)


def _replay_run(policy: str, seed: int, runnable: Sequence[TraceJob], submit: Sequence[float],
                start: npt.NDArray[np.float64], skipped: int, never_fit: int,
                trace_t: list[float], trace_alloc: list[float], elapsed: float) -> ReplayRun:
    """Queue delays, completion times, makespan and allocation over time of a replay."""
    first = submit[0] if submit else 0.0
    subs = np.array(submit)
    durs = np.array([float(j.duration_s or 0.0) for j in runnable])
    ok = ~np.isnan(start)
    delay = start[ok] - subs[ok]
    jct = delay + durs[ok]
    end = float((start[ok] + durs[ok]).max()) if ok.any() else first
    return ReplayRun(
        policy=policy,
        seed=seed,
        jobs=len(runnable),
        skipped=skipped,
        never_fit=never_fit,
        queue_delay_s=tuple(float(x) for x in delay),
        jct_s=tuple(float(x) for x in jct),
        makespan_s=end - first,
        alloc_samples=_samples(trace_t, trace_alloc, first, end),
        mean_alloc_pct=_time_weighted(trace_t, trace_alloc, end),
        elapsed_s=elapsed,
    )


class SimSnapshots:
    """FleetSnapshots of the simulated fleet for `plan`; unchanged nodes are reused."""

    def __init__(self, base: FleetSnapshot, state: FleetState) -> None:
        self.base = base.nodes
        self.state = state
        self.nodes: list[NodeCapacity] = list(base.nodes)
        self.seen = state.node_version.copy()

    def build(self, running: dict[int, RunningAllocation]) -> FleetSnapshot:
        st = self.state
        for i in np.flatnonzero(st.node_version != self.seen).tolist():
            nd = self.base[i]
            free = st.gpu_free[i].tolist()
            gpus = tuple(
                replace(g, alloc_milli=1000 - free[j]) if g.healthy else g
                for j, g in enumerate(nd.gpus)
            )
            self.nodes[i] = _with(nd, gpus, st, i)
            self.seen[i] = st.node_version[i]
        allocs = tuple(running.values())
        return FleetSnapshot(nodes=tuple(self.nodes), running=allocs)


def _with(nd: NodeCapacity, gpus: tuple[GpuSlot, ...], st: FleetState, i: int) -> NodeCapacity:
    return replace(
        nd,
        gpus=gpus,
        cpu_alloc_milli=nd.cpu_milli - int(st.cpu_free[i]),
        mem_alloc_bytes=nd.mem_bytes - int(st.mem_free[i]),
    )


def _samples(
    ts: list[float], alloc: list[float], first: float, end: float
) -> tuple[tuple[float, float], ...]:
    if end <= first:
        return ((0.0, alloc[-1] if alloc else 0.0),)
    t = np.asarray(ts)
    a = np.asarray(alloc)
    grid = np.linspace(first, end, ALLOC_SAMPLES + 1)
    idx = np.searchsorted(t, grid, side="right") - 1
    return tuple((float(g - first), float(a[max(i, 0)])) for g, i in zip(grid, idx, strict=True))


def _time_weighted(ts: list[float], alloc: list[float], end: float) -> float:
    t = np.asarray([*ts, end])
    a = np.asarray(alloc)
    dt = np.diff(t)
    total = dt.sum()
    return float((a * dt).sum() / total) if total > 0 else 0.0


def run_replay_seeds(
    snapshot: FleetSnapshot,
    jobs: Sequence[TraceJob],
    policy: str,
    seeds: Sequence[int],
    *,
    mix: WorkloadMix | None = None,
    time_scale: float = 1.0,
) -> ReplaySummary:
    mix = mix if mix is not None else WorkloadMix.from_requests(j.request for j in jobs)
    runs = tuple(
        run_replay(snapshot, jobs, policy, s, mix=mix, time_scale=time_scale) for s in seeds
    )
    return ReplaySummary(runs[0].policy if runs else policy, tuple(seeds), runs)
