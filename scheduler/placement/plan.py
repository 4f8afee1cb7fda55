"""One placement cycle: which queued tasks start now, where, and why the others wait.

`plan` is pure: a fleet snapshot, the queue, a fit policy, quotas, preemption rules and the
clock in; a `PlacementPlan` out. Order is class priority (high first), then (with preemption
on) tasks within their guarantee before the rest, then the job's own priority, then fair share
(high factor first), then submission time (FIFO), then id.

- A task that cannot fit even on an empty fleet is skipped: "never fits: ...".
- A task over its quota is skipped (it blocks nobody): "waiting: project vision over quota ...".
- The first task that does not fit now gets a reservation (EASY backfill): the earliest time
  its resources free up, from running allocations' expected ends and this cycle's placements.
  Later tasks may start now only if they cannot delay that start (see `reservations`).
  With `backfill=False` every later task waits behind it instead.

- With preemption on (`preemption` rules given), a task that does not fit may preempt running
  jobs (`preemption`): the plan lists them in `preemptions` and the task waits for them to
  leave ("waiting: preempting job 12 on node gpu01 ..."); it does not start in this cycle.
  Idle guarantees are lent (the quota ledger sets nothing aside for them).

Reasons describe the fleet as this cycle leaves it ("largest free block is 2 on node gpu03").
A blocked task whose resources are held by jobs without a max runtime gets no reservation
("no start estimate"); the next blocked task may then get it.

Speed: a request shape that failed once is not tried again this cycle (nothing is released
during a cycle, so it would fail again); quota checks are O(1); reasons for waiting tasks are
written once per shape at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from collectors.formatting import duration_rounded, eta_text
from scheduler.fit import FitPolicy, FleetState
from scheduler.models import Assignment, FleetSnapshot, RequestShape, ResourceRequest
from scheduler.placement.preemption import (
    Claim,
    Preemption,
    PreemptionRules,
    PreemptKind,
    VictimSearch,
    reclaim_why,
    victim_text,
)
from scheduler.placement.reasons import (
    WAITING_PREFIX,
    WaitKind,
    WaitReason,
    capacity_reason,
    never_reason,
)
from scheduler.placement.reservations import Reservation, reserve
from scheduler.quota import QuotaBook, QuotaLedger

if TYPE_CHECKING:
    from scheduler.jobspec import TaskSpec

__all__ = ["PlacementPlan", "QueuedTask", "plan"]


@dataclass(frozen=True, slots=True)
class QueuedTask:
    """One task waiting to start (a job, or one task of an array job)."""

    id: str
    request: ResourceRequest
    user: str = ""
    project: str = ""
    team: str = ""
    priority: int = 0
    submitted_at: float = 0.0
    max_runtime_s: float | None = None
    class_priority: int = 0  # of its priority class (scheduler.priority)
    fair_share: float = 1.0  # scheduler.fairshare factor, in (0, 1]

    @classmethod
    def from_task(cls, task_id: str, task: TaskSpec, submitted_at: float) -> QueuedTask:
        spec = task.spec
        return cls(
            id=task_id,
            request=spec.to_request(),
            user=spec.user,
            project=spec.project,
            team=spec.team,
            priority=spec.priority,
            submitted_at=submitted_at,
            max_runtime_s=spec.max_runtime_s,
        )


@dataclass(frozen=True, slots=True)
class PlacementPlan:
    """The outcome of one cycle.

    `assignments` in placement order; `pending` why each task that waits does (its kind and
    one line);
    `reservations` the reserved start (epoch seconds) of the blocked head task, with its
    planned assignment in `reserved`; `backfilled` the tasks placed ahead of a task that waits
    for capacity; `preemptions` the running jobs to stop (with notice) and requeue so that
    waiting tasks can start.
    """

    assignments: list[tuple[str, Assignment]] = field(default_factory=list)
    pending: dict[str, WaitReason] = field(default_factory=dict)
    reservations: dict[str, float] = field(default_factory=dict)
    reserved: dict[str, Assignment] = field(default_factory=dict)
    backfilled: frozenset[str] = frozenset()
    preemptions: list[Preemption] = field(default_factory=list)

    def explain(self, task_id: str) -> str | None:
        """One line on what this cycle decided for `task_id` (None if it was not queued)."""
        why = self.pending.get(task_id)
        if why is not None:
            return why.text
        for tid, a in self.assignments:
            if tid == task_id:
                gpus = ", ".join(str(i) for i in a.gpu_indices)
                where = f"node {a.node}" + (f" GPU {gpus}" if gpus else "")
                if a.gpu_milli and a.gpu_milli < 1000:
                    where += f" ({a.gpu_milli / 1000:g} of it)"
                extra = " (backfilled)" if tid in self.backfilled else ""
                return f"starts now on {where}{extra}"
        return None


def _order_key(t: QueuedTask) -> tuple[int, int, float, float, str]:
    return (-t.class_priority, -t.priority, -t.fair_share, t.submitted_at, t.id)


def queue_order(queue: Sequence[QueuedTask], ledger: QuotaLedger | None,
                guarantees_first: bool) -> list[QueuedTask]:
    """The order tasks are considered in (see the module docstring)."""
    if not guarantees_first or ledger is None:
        return sorted(queue, key=_order_key)

    users, projects, teams = ledger.guarantee_rooms()  # the ledger does not change meanwhile

    def key(t: QueuedTask) -> tuple[int, bool, int, float, float, str]:
        milli = t.request.gpu_count * t.request.gpu_milli
        room = max(users.get(t.user, -1), projects.get(t.project, -1), teams.get(t.team, -1))
        beyond = milli <= 0 or milli > room  # as ledger.under_guarantee(...) is None
        return (-t.class_priority, beyond, -t.priority, -t.fair_share, t.submitted_at, t.id)

    return sorted(queue, key=key)


def plan(
    snapshot: FleetSnapshot,
    queue: Sequence[QueuedTask],
    *,
    policy: FitPolicy,
    quotas: QuotaBook | None = None,
    now: float,
    backfill: bool = True,
    preemption: PreemptionRules | None = None,
) -> PlacementPlan:
    """Decide which of `queue` start now and where; see the module docstring."""
    cycle = _Cycle(snapshot, policy, quotas, now, preemption)
    order = queue_order(queue, cycle.ledger, cycle.search is not None)
    prepare = getattr(policy, "prepare", None)
    if prepare is not None:  # optional: e.g. fleetdeck scores the snapshot's node states
        prepare(cycle.state, (t.request for t in order))
    for t in order:
        cycle.consider(t, backfill)
    return cycle.outcome()


class _Cycle:
    """The fleet as this cycle has placed it so far, and what it decided for each task."""

    def __init__(self, snapshot: FleetSnapshot, policy: FitPolicy, quotas: QuotaBook | None,
                 now: float, rules: PreemptionRules | None) -> None:
        self.snapshot = snapshot
        self.policy = policy
        self.now = now
        self.rules = rules
        self.state = state = FleetState.from_snapshot(snapshot)
        self.ledger: QuotaLedger | None = None
        if quotas is not None and not quotas.empty:
            idle = int(state.gpu_free[state.static.schedulable].sum())
            self.ledger = QuotaLedger(quotas, snapshot.running, idle, lend=rules is not None)
        self.search = (None if rules is None
                       else VictimSearch(state, snapshot.running, rules, now, self.ledger))
        self.assignments: list[tuple[str, Assignment]] = []
        self.backfilled: list[str] = []
        self.preemptions: list[Preemption] = []
        # Pending, by kind: resolved into reasons in `outcome`.
        self.never: dict[str, ResourceRequest] = {}
        self.waiting: dict[str, ResourceRequest] = {}  # capacity
        self.quota_why: dict[str, str] = {}
        self.behind: dict[str, QueuedTask] = {}  # fits now, but would delay the reservation
        self.stopped: list[str] = []  # backfill off: everything after the blocked head
        self.unestimated: list[str] = []  # blocked, no start estimate
        self.preempting: dict[str, WaitReason] = {}  # waits for the jobs it preempts
        # Per request shape: nothing is released during a cycle, so a failure stands.
        self.shapes: dict[int, int] = {}  # id(request) -> its shape's number
        self.shape_ids: dict[RequestShape, int] = {}
        self.never_fits: set[int] = set()  # shapes that fit nowhere even on an empty fleet
        self.fail_now: set[int] = set()
        self.fail_long: set[int] = set()  # also with the reservation's nodes held
        self.ends: list[tuple[float, Assignment]] = []  # expected ends of this cycle's placements
        self.res: Reservation | None = None
        self.head: str | None = None  # first task blocked for capacity

    def consider(self, t: QueuedTask, backfill: bool) -> None:
        """Place `t` now, or record why it waits."""
        req = t.request
        k = self.shapes.get(id(req))
        if k is None:
            k = self.shape_of(req)
        if k in self.never_fits:
            self.never[t.id] = req
            return
        if self.head is not None and not backfill:
            self.stopped.append(t.id)
            return
        milli = req.gpu_count * req.gpu_milli
        ledger = self.ledger
        if ledger is not None:
            why = ledger.check(t.user, t.project, t.team, milli)
            if why is not None:
                self.quota_why[t.id] = why
                return
        if k in self.fail_now:
            if not self.try_preempt(t, k, milli):
                self.waiting[t.id] = req
            return
        res = self.res
        a = self.place_free(t, k, milli) if res is None else self.backfill(t, k, milli, res)
        if a is not None:
            self.placed(t, a, milli)

    def shape_of(self, req: ResourceRequest) -> int:
        """The number of `req`'s shape in this cycle (requests of equal shapes share it)."""
        k = self.shapes.get(id(req))
        if k is None:
            shape = RequestShape.of(req)
            k = self.shape_ids.get(shape)
            if k is None:
                k = self.shape_ids[shape] = len(self.shape_ids)
                if not self.state.can_ever_fit(req):
                    self.never_fits.add(k)
            self.shapes[id(req)] = k
        return k

    def place_free(self, t: QueuedTask, k: int, milli: int) -> Assignment | None:
        """No reservation yet: place `t` where the policy picks, or block it."""
        a = self.policy.select(self.state, t.request)
        if a is None:
            self.fail_now.add(k)
            if not self.try_preempt(t, k, milli):
                self.block(t)
            return None
        self.state.apply(a)
        return a

    def block(self, t: QueuedTask) -> None:
        """`t` waits for capacity; the first such task that gets an estimate is reserved."""
        self.waiting[t.id] = t.request
        if self.head is None:
            self.head = t.id
        self.res = _try_reserve(self.state, self.policy, t, self.snapshot, self.ends, self.now)
        if self.res is None:
            self.unestimated.append(t.id)

    def backfill(self, t: QueuedTask, k: int, milli: int,
                 res: Reservation) -> Assignment | None:
        """Place `t` ahead of the reservation only where it cannot delay it."""
        short = t.max_runtime_s is not None and self.now + t.max_runtime_s <= res.start
        if not short and k in self.fail_long:
            self.behind[t.id] = t
            return None
        a = self.policy.select(self.state, t.request)
        if a is None:
            self.fail_now.add(k)
            if not self.try_preempt(t, k, milli):
                self.waiting[t.id] = t.request
            return None
        if short:
            self.state.apply(a)
            res.placed_short(a)
            return a
        if not res.allows(a):
            a = self.policy.select(res.long_state(), t.request)
            if a is None:
                self.fail_long.add(k)
                self.behind[t.id] = t
                return None
        self.state.apply(a)
        res.placed_long(a)
        return a

    def placed(self, t: QueuedTask, a: Assignment, milli: int) -> None:
        self.assignments.append((t.id, a))
        if self.head is not None:
            self.backfilled.append(t.id)
        if self.ledger is not None:
            self.ledger.charge(t.user, t.project, t.team, milli)
        if t.max_runtime_s is not None and self.res is None:
            self.ends.append((self.now + t.max_runtime_s, a))

    def try_preempt(self, t: QueuedTask, k: int, milli: int) -> bool:
        """Whether preemption makes room for `t` (recorded in `preemptions`)."""
        search, ledger = self.search, self.ledger
        if search is None or search.exhausted:
            return False
        kind = search.kind_for(t.user, t.project, t.team, milli, t.class_priority)
        if kind is None:
            return False
        claim = search.find(t.request, kind, t.class_priority, k)
        if claim is None:
            return False
        if claim.hold is not None:
            self.state.apply(claim.hold)
            res = self.res
            if res is not None:  # keep the reservation's view of the state in step
                (res.placed_long if res.allows(claim.hold) else res.placed_short)(claim.hold)
        why = _claim_reason(claim, t, ledger, milli, self.now)
        self.preempting[t.id] = _waiting_for(claim, self.rules)
        self.preemptions.extend(
            Preemption(v.job_id, t.id, claim.node, kind,
                       why + "; victim " + victim_text(v, ledger, self.now))
            for v in claim.victims
        )
        if ledger is not None:
            ledger.charge(t.user, t.project, t.team, milli)
        return True

    def outcome(self) -> PlacementPlan:
        """The plan, with one reason per waiting task."""
        pending = _reasons(self.state, self.shape_of, self.never, self.waiting, self.quota_why)
        reservations: dict[str, float] = {}
        reserved: dict[str, Assignment] = {}
        res, now = self.res, self.now
        if res is not None:
            reservations[res.task_id] = res.start
            reserved[res.task_id] = res.assignment
            eta = eta_text(res.start - now)
            pending[res.task_id] = pending[res.task_id].noted(
                f"reserved on node {res.assignment.node}, starts {eta}"
            )
            behind: dict[float | None, WaitReason] = {}  # by max runtime
            for tid, task in self.behind.items():
                why = behind.get(task.max_runtime_s)
                if why is None:
                    why = behind[task.max_runtime_s] = _behind_reason(res, task, now)
                pending[tid] = why
        for tid in self.unestimated:
            pending[tid] = pending[tid].noted(
                "no start estimate (what it needs is held by jobs without a max runtime)"
            )
        for tid in self.stopped:
            pending[tid] = WaitReason(
                WaitKind.BEHIND, f"{WAITING_PREFIX}behind job {self.head} (backfill is off)"
            )
        pending.update(self.preempting)
        return PlacementPlan(self.assignments, pending, reservations, reserved,
                             frozenset(self.backfilled), self.preemptions)


def _claim_reason(claim: Claim, t: QueuedTask, ledger: QuotaLedger | None, milli: int,
                  now: float) -> str:
    """Why the task may preempt: "reclaim for job 7: team a is under its guarantee ..."."""
    if claim.kind is PreemptKind.RECLAIM and ledger is not None:
        return f"reclaim for job {t.id}: " + reclaim_why(ledger, t.user, t.project, t.team, milli)
    return f"priority: job {t.id} (priority {t.class_priority}) outranks lower classes"


def _waiting_for(claim: Claim, rules: PreemptionRules | None) -> WaitReason:
    ids = [r.job_id for r in (*claim.victims, *claim.leaving)]
    jobs = ("job " if len(ids) == 1 else "jobs ") + ", ".join(ids)
    grace = f" (grace {duration_rounded(rules.grace_s)})" if rules is not None else ""
    return WaitReason(
        WaitKind.PREEMPTING,
        f"{WAITING_PREFIX}preempting {jobs} on node {claim.node} ({claim.kind}){grace}; "
        "starts when they leave",
    )


def _try_reserve(
    state: FleetState,
    policy: FitPolicy,
    t: QueuedTask,
    snapshot: FleetSnapshot,
    ends: list[tuple[float, Assignment]],
    now: float,
) -> Reservation | None:
    events = list(ends)
    for r in snapshot.running:
        end = r.expected_end
        if end is not None:
            events.append((end, r.assignment))
    return reserve(state, policy, t.id, t.request, events, now)


def _reasons(
    state: FleetState,
    shape_of: Callable[[ResourceRequest], int],
    never: dict[str, ResourceRequest],
    waiting: dict[str, ResourceRequest],
    quota_why: dict[str, str],
) -> dict[str, WaitReason]:
    pending: dict[str, WaitReason] = {}
    memo: dict[int, WaitReason] = {}
    for tid, req in never.items():
        k = shape_of(req)
        why = memo.get(k)
        if why is None:
            why = memo[k] = WaitReason(WaitKind.NEVER_FITS, never_reason(state, req))
        pending[tid] = why
    memo.clear()
    for tid, req in waiting.items():
        k = shape_of(req)
        why = memo.get(k)
        if why is None:
            why = memo[k] = WaitReason(WaitKind.CAPACITY,
                                       WAITING_PREFIX + capacity_reason(state, req))
        pending[tid] = why
    texts: dict[str, WaitReason] = {}
    for tid, text in quota_why.items():
        why = texts.get(text)
        if why is None:
            why = texts[text] = WaitReason(WaitKind.QUOTA, WAITING_PREFIX + text)
        pending[tid] = why
    return pending


def _behind_reason(res: Reservation, task: QueuedTask, now: float) -> WaitReason:
    left = res.start - now
    text = f"{WAITING_PREFIX}behind reservation for job {res.task_id} (starts {eta_text(left)})"
    if left >= 60 and (task.max_runtime_s is None or task.max_runtime_s > left):
        text += f"; with a max runtime under {duration_rounded(left)} it could start now"
    return WaitReason(WaitKind.BEHIND, text)
