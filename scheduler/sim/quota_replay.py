"""Quota replay: teams' jobs in simulated time under quotas, priority classes and preemption.

The real placement cycle (`scheduler.placement.plan`) runs on a simulated fleet, as in
`replay`, with each job's team and the scenario's quotas and preemption rules. Time moves in
cycles of `cycle_s`: an arrival or an end is seen at the next cycle, and while jobs wait a
cycle also runs when a running job passes the minimum runtime (it may become a victim). A
preempted job leaves `grace_s` after the cycle that chose it, is requeued (its submit time
kept) and starts over from the beginning: the GPU-hours it had run are counted as lost (an
upper bound: a job that checkpoints on its notice loses less).

Per team: jobs, the queue wait (p50, p95) of jobs that arrived within their team's guarantee
(the team's GPUs in use, plus those of its earlier jobs still waiting within it, plus the
job's fit in it), GPU-hours and the share of the fleet's GPU
capacity allocated over the arrival window (first to last submit), preemptions suffered and
GPU-hours lost to them. For jobs within their guarantee that waited longer than the grace plus
one cycle, where that wait went (`WaitCause`, summed seconds): each cycle's wait reason, a
capacity wait split by whether any job could have been preempted at all.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np

from scheduler.fit import FleetState, WorkloadMix, make_policy
from scheduler.models import Assignment, FleetSnapshot, RunningAllocation
from scheduler.placement import PreemptionRules, QueuedTask, plan
from scheduler.placement.preemption import protection
from scheduler.placement.reasons import WaitKind, WaitReason
from scheduler.priority import ClassBook
from scheduler.quota import QuotaBook, QuotaLedger
from scheduler.sim.replay import SimSnapshots
from scheduler.sim.traces import TraceJob

_END, _LEAVE, _ARRIVE, _TICK = 0, 1, 2, 3  # event kinds, in this order at equal times


class WaitCause(StrEnum):
    """Where a within-guarantee job's wait went, cycle by cycle."""

    FIRST_CYCLE = "until the first cycle"
    GRACE = "victims in their grace"
    YOUNG = ("no job preemptible (over-guarantee jobs all younger than the minimum runtime, "
             "protected or preempted the most times)")
    NO_ROOM = ("no victims chosen (none on one node makes it fit: GPUs, CPU, memory; or the "
               "cycle's victim searches were spent)")
    QUOTA = "over a quota"
    BEHIND = "behind a reservation"


@dataclass(frozen=True, slots=True)
class QuotaScenario:
    """What one replay runs under."""

    name: str
    quotas: QuotaBook | None
    preemption: PreemptionRules | None = None
    classes: ClassBook = field(default_factory=ClassBook)


@dataclass(frozen=True, slots=True)
class TeamFigures:
    team: str
    jobs: int
    guaranteed_jobs: int  # arrived within the team's guarantee
    guaranteed_wait_p50_s: float
    guaranteed_wait_p95_s: float
    wait_p95_s: float  # all the team's started jobs
    gpu_hours: float  # allocated over the arrival window
    alloc_pct: float  # of the fleet's GPU capacity, over the arrival window
    preemptions: int
    lost_gpu_hours: float


@dataclass(frozen=True, slots=True)
class QuotaReplayResult:
    scenario: str
    teams: tuple[TeamFigures, ...]
    alloc_pct: float  # whole fleet, over the arrival window
    gpu_hours: float
    started: int
    never_started: int
    preemptions: int
    lost_gpu_hours: float
    elapsed_s: float
    slow_guaranteed: int = 0  # within-guarantee jobs that waited over grace + one cycle
    slow_wait_s: dict[WaitCause, float] = field(default_factory=dict)  # their wait, by cause


class _Sim:
    """The simulated fleet, queue and per-team books of one replay."""

    def __init__(self, snapshot: FleetSnapshot, jobs: Sequence[TraceJob], teams: Sequence[str],
                 scenario: QuotaScenario, policy: str, seed: int, time_scale: float,
                 cycle_s: float) -> None:
        self.state = FleetState.from_snapshot(snapshot)
        self.capacity = max(self.state.gpu_capacity_milli, 1)
        mix = WorkloadMix.from_requests(j.request for j in jobs)
        self.pol = make_policy(policy, seed=seed, workload=mix)
        self.sc = scenario
        self.cycle_s = cycle_s
        keep = [k for k, j in enumerate(jobs)
                if j.duration_s is not None and self.state.can_ever_fit(j.request)]
        self.jobs = [jobs[k] for k in keep]
        self.teams = [teams[k] for k in keep]
        self.never = len(jobs) - len(keep)
        self.submit = [self._tick(j.submit_time_s * time_scale) for j in self.jobs]
        cls = scenario.classes.default
        self.cls = cls
        self.tasks = [QueuedTask(id=str(k), request=j.request, user=j.user, project=j.project,
                                 team=self.teams[k], submitted_at=self.submit[k],
                                 max_runtime_s=j.duration_s, class_priority=cls.priority)
                      for k, j in enumerate(self.jobs)]
        self.milli = [j.request.gpu_count * j.request.gpu_milli for j in self.jobs]
        self.snaps = SimSnapshots(snapshot, self.state)
        self.events: list[tuple[float, int, int, int]] = [
            (t, _ARRIVE, k, 0) for k, t in enumerate(self.submit)]
        heapq.heapify(self.events)
        self.running: dict[int, tuple[Assignment, float, int]] = {}  # k -> (a, start, attempt)
        self.holds: dict[int, RunningAllocation] = {}
        self.attempt = [0] * len(self.jobs)
        self.preempted = [0] * len(self.jobs)
        self.first_start = np.full(len(self.jobs), np.nan)
        self.guaranteed = np.zeros(len(self.jobs), dtype=bool)
        self.waiting: list[int] = []
        self.team_used: dict[str, int] = {}
        self.owed: dict[str, int] = {}  # milli of waiting jobs counted within the guarantee
        self.lost_milli_s: dict[str, float] = {}
        self.preemptions: dict[str, int] = {}
        self.causes: dict[int, list[tuple[float, WaitCause]]] = {}  # within-guarantee waits
        # allocation over time: (time, milli in use per team) at every change
        self.trace: list[tuple[float, dict[str, int]]] = []

    def _tick(self, t: float) -> float:
        return math.ceil(t / self.cycle_s - 1e-9) * self.cycle_s

    def _guarantee(self, team: str) -> int:
        q = self.sc.quotas.quota("team", team) if self.sc.quotas is not None else None
        return q.guaranteed_milli if q is not None else 0

    def _launch(self, k: int, a: Assignment, now: float) -> None:
        self.state.apply(a)
        self.running[k] = (a, now, self.attempt[k])
        self.holds[k] = RunningAllocation(
            str(k), self.jobs[k].user, self.jobs[k].project, self.teams[k], a, now,
            self.jobs[k].duration_s, self.cls.priority, self.cls.preemptible, self.preempted[k])
        m = a.gpu_milli * len(a.gpu_indices)
        self.team_used[self.teams[k]] = self.team_used.get(self.teams[k], 0) + m
        if math.isnan(self.first_start[k]):
            self.first_start[k] = now
            if self.guaranteed[k]:
                self.owed[self.teams[k]] -= self.milli[k]
        end = self._tick(now + float(self.jobs[k].duration_s or 0.0))
        heapq.heappush(self.events, (end, _END, k, self.attempt[k]))

    def _release(self, k: int) -> tuple[Assignment, float]:
        a, start, _ = self.running.pop(k)
        del self.holds[k]
        self.state.release(a)
        self.team_used[self.teams[k]] -= a.gpu_milli * len(a.gpu_indices)
        return a, start

    def _fast_start(self, k: int, now: float) -> bool:
        """Nobody waits: the arrival goes straight to the policy if its quotas allow."""
        if self.sc.quotas is not None:
            idle = int(self.state.gpu_free[self.state.static.schedulable].sum())
            ledger = QuotaLedger(self.sc.quotas, self.holds.values(), idle,
                                 lend=self.sc.preemption is not None)
            t = self.tasks[k]
            if ledger.check(t.user, t.project, t.team, self.milli[k]) is not None:
                return False
        a = self.pol.select(self.state, self.jobs[k].request)
        if a is None:
            return False
        self._launch(k, a, now)
        return True

    def _cycle(self, now: float) -> None:
        queue = [self.tasks[k] for k in self.waiting]
        result = plan(self.snaps.build(self.holds), queue, policy=self.pol,
                      quotas=self.sc.quotas, now=now, preemption=self.sc.preemption)
        started = set()
        for task_id, a in result.assignments:
            self._launch(int(task_id), a, now)
            started.add(int(task_id))
        self.waiting = [k for k in self.waiting if k not in started]
        rules = self.sc.preemption
        self._note_causes(result.pending, now)
        for p in result.preemptions:
            v = int(p.victim_id)
            self.holds[v] = replace(self.holds[v], leaving=True)
            assert rules is not None
            heapq.heappush(self.events, (self._tick(now + rules.grace_s), _LEAVE, v,
                                         self.attempt[v]))

    def _wake_when_victims_age(self, now: float) -> None:
        """The engine cycles on while jobs wait: the next cycle that can decide differently
        with nothing arriving or ending is the one where a running job passes the minimum
        runtime (and may become a victim)."""
        rules = self.sc.preemption
        if rules is None or not self.waiting:
            return
        ages = [h.started_at + rules.min_runtime_s for h in self.holds.values()
                if not h.leaving and h.started_at + rules.min_runtime_s > now]
        if ages:
            heapq.heappush(self.events, (self._tick(min(ages)), _TICK, -1, 0))

    def _note_causes(self, pending: Mapping[str, WaitReason], now: float) -> None:
        rules = self.sc.preemption
        if rules is None:
            return
        any_victim = any(
            not h.leaving and protection(h, rules, now) is None
            and self.team_used.get(h.team, 0) > self._guarantee(h.team)
            for h in self.holds.values())
        for tid, why in pending.items():
            k = int(tid)
            if not self.guaranteed[k]:
                continue
            cause = {WaitKind.PREEMPTING: WaitCause.GRACE, WaitKind.QUOTA: WaitCause.QUOTA,
                     WaitKind.BEHIND: WaitCause.BEHIND}.get(
                why.kind, WaitCause.NO_ROOM if any_victim else WaitCause.YOUNG)
            self.causes.setdefault(k, []).append((now, cause))

    def slow_waits(self, bound_s: float) -> tuple[int, dict[WaitCause, float]]:
        """Within-guarantee jobs that waited over `bound_s`, and their wait by cause."""
        out: dict[WaitCause, float] = {}
        slow = 0
        for k, seen in self.causes.items():
            start = float(self.first_start[k])
            if math.isnan(start) or start - self.submit[k] <= bound_s:
                continue
            slow += 1
            marks = [(self.submit[k], WaitCause.FIRST_CYCLE), *(m for m in seen if m[0] < start),
                     (start, WaitCause.GRACE)]
            for (t0, cause), (t1, _) in itertools.pairwise(marks):
                if t1 > t0:
                    out[cause] = out.get(cause, 0.0) + (t1 - t0)
        return slow, out

    def run(self) -> None:
        while self.events:
            now = self.events[0][0]
            changed = False
            arrived = []
            while self.events and self.events[0][0] == now:
                _, kind, k, attempt = heapq.heappop(self.events)
                if kind == _TICK:
                    changed = True
                    continue
                if kind == _ARRIVE:
                    team = self.teams[k]
                    g = self._guarantee(team)
                    ahead = self.team_used.get(team, 0) + self.owed.get(team, 0)
                    self.guaranteed[k] = g > 0 and ahead + self.milli[k] <= g
                    if self.guaranteed[k]:
                        self.owed[team] = self.owed.get(team, 0) + self.milli[k]
                    arrived.append(k)
                    continue
                if k not in self.running or self.running[k][2] != attempt:
                    continue  # ended before its preemption took effect, or stale
                a, start = self._release(k)
                changed = True
                if kind == _LEAVE:
                    team = self.teams[k]
                    self.lost_milli_s[team] = self.lost_milli_s.get(team, 0.0) + (
                        a.gpu_milli * len(a.gpu_indices) * (now - start))
                    self.preemptions[team] = self.preemptions.get(team, 0) + 1
                    self.preempted[k] += 1
                    self.attempt[k] += 1
                    self.waiting.append(k)
            if not self.waiting:
                for n, k in enumerate(arrived):
                    if not self._fast_start(k, now):
                        self.waiting.extend(arrived[n:])
                        changed = True
                        break
            else:
                self.waiting.extend(arrived)
                changed = changed or bool(arrived)
            if changed and self.waiting:
                self._cycle(now)
                self._wake_when_victims_age(now)
            self.trace.append((now, dict(self.team_used)))

    def result(self, name: str, elapsed_s: float) -> QuotaReplayResult:
        lo = min(self.submit, default=0.0)
        hi = max(self.submit, default=0.0)
        teams = sorted(set(self.teams))
        milli_s = {t: 0.0 for t in teams}
        for (t0, used), (t1, _) in zip(self.trace, self.trace[1:], strict=False):
            a, b = max(t0, lo), min(t1, hi)
            if b > a:
                for team, m in used.items():
                    milli_s[team] = milli_s.get(team, 0.0) + m * (b - a)
        window = max(hi - lo, 1e-9)
        out = []
        for team in teams:
            ks = [k for k, t in enumerate(self.teams) if t == team]
            waits = np.array([self.first_start[k] - self.submit[k] for k in ks
                              if not math.isnan(self.first_start[k])])
            gw = np.array([self.first_start[k] - self.submit[k] for k in ks
                           if self.guaranteed[k] and not math.isnan(self.first_start[k])])
            out.append(TeamFigures(
                team=team, jobs=len(ks), guaranteed_jobs=int(self.guaranteed[ks].sum()),
                guaranteed_wait_p50_s=_pct(gw, 50), guaranteed_wait_p95_s=_pct(gw, 95),
                wait_p95_s=_pct(waits, 95), gpu_hours=milli_s[team] / 1000 / 3600,
                alloc_pct=milli_s[team] * 100 / (self.capacity * window),
                preemptions=self.preemptions.get(team, 0),
                lost_gpu_hours=self.lost_milli_s.get(team, 0.0) / 1000 / 3600))
        total = sum(milli_s.values())
        rules = self.sc.preemption
        slow, slow_s = self.slow_waits(rules.grace_s + self.cycle_s) if rules else (0, {})
        return QuotaReplayResult(
            scenario=name, teams=tuple(out), alloc_pct=total * 100 / (self.capacity * window),
            gpu_hours=total / 1000 / 3600, started=int((~np.isnan(self.first_start)).sum()),
            never_started=self.never + int(np.isnan(self.first_start).sum()),
            preemptions=sum(self.preemptions.values()),
            lost_gpu_hours=sum(self.lost_milli_s.values()) / 1000 / 3600, elapsed_s=elapsed_s,
            slow_guaranteed=slow, slow_wait_s=slow_s)


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else float("nan")


def run_quota_replay(snapshot: FleetSnapshot, jobs: Sequence[TraceJob], teams: Sequence[str],
                     scenario: QuotaScenario, *, policy: str = "best-fit", seed: int = 42,
                     time_scale: float = 1.0, cycle_s: float = 10.0) -> QuotaReplayResult:
    """Replay `jobs` (the team of each in `teams`) on an empty `snapshot` fleet."""
    if len(teams) != len(jobs):
        raise ValueError("one team per job")
    if not cycle_s > 0 or not time_scale > 0:
        raise ValueError("cycle_s and time_scale must be > 0")
    t0 = time.perf_counter()
    sim = _Sim(snapshot, jobs, teams, scenario, policy, seed, time_scale, cycle_s)
    sim.run()
    return sim.result(scenario.name, time.perf_counter() - t0)
