"""Burst instance cost: pure accrual from launch/termination times and prices.

Billing model: an instance costs `price_per_hour` for every second from `launched_at` to
`terminated_at` (or to the end of the period while it runs), and at least `min_billed_hours`
in total; the top-up to that minimum is charged in the period where the instance ended.
Budget periods are UTC days and UTC calendar months.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from scheduler.policies.audit import to_epoch_s


class InstanceLifecycle(StrEnum):
    """A burst instance in fleetdeck's store (`burst_instances.state`)."""

    PROVISIONING = "provisioning"
    READY = "ready"  # the provider says it runs; it joins the fleet
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    LOST = "lost"  # gone without fleetdeck ending it (spot interruption)


ACTIVE_LIFECYCLE = (InstanceLifecycle.PROVISIONING, InstanceLifecycle.READY,
                    InstanceLifecycle.TERMINATING)
ENDED = (InstanceLifecycle.TERMINATED, InstanceLifecycle.LOST)
Period = Literal["daily", "monthly"]


@dataclass(frozen=True, slots=True)
class BurstInstance:
    """A rented node as the burst policy sees it (a `burst_instances` row plus job facts)."""

    instance_id: str
    provider: str
    offer: str
    price_per_hour: float
    launched_at: float
    state: InstanceLifecycle
    request_id: str = ""
    team: str | None = None
    project: str | None = None
    node: str | None = None  # fleet node name once it joined
    pool: str | None = None
    gpu_model: str = ""
    gpu_count: int = 0
    market: str = "on-demand"
    ready_at: float | None = None
    terminated_at: float | None = None
    last_job_ended_at: float | None = None  # latest end of a fleetdeck job on its node

    @property
    def active(self) -> bool:
        return self.state not in ENDED

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, request_id: str = "",
                 last_job_ended_at: float | None = None) -> BurstInstance:
        """From a `burst_instances` row as a dict (TIMESTAMP columns as datetimes)."""

        def ts(key: str) -> float | None:
            v = row.get(key)
            return None if v is None else to_epoch_s(v)

        return cls(
            instance_id=str(row["instance_id"]), provider=str(row["provider"]),
            offer=str(row.get("offer") or ""), price_per_hour=float(row["price_per_hour"] or 0),
            launched_at=ts("launched_at") or 0.0, state=row["state"], request_id=request_id,
            team=row.get("team"), project=row.get("project"), node=row.get("node"),
            pool=row.get("pool"), gpu_model=str(row.get("gpu_model") or ""),
            gpu_count=int(row.get("gpu_count") or 0), market=str(row.get("market") or
                                                                 "on-demand"),
            ready_at=ts("ready_at"), terminated_at=ts("terminated_at"),
            last_job_ended_at=last_job_ended_at,
        )


@dataclass(frozen=True, slots=True)
class SpendRow:
    """One `spend` row: what an instance cost within one period."""

    ts: float  # start of the billed interval within the period
    provider: str
    instance_id: str
    team: str | None
    project: str | None
    hours: float
    amount: float

    def store_row(self) -> dict[str, Any]:
        return {"ts": datetime.fromtimestamp(self.ts, UTC).replace(tzinfo=None),
                "provider": self.provider, "instance_id": self.instance_id, "team": self.team,
                "project": self.project, "hours": self.hours, "amount": self.amount}


def _end(inst: BurstInstance, now: float) -> float:
    if inst.active:
        return now
    return inst.terminated_at if inst.terminated_at is not None else inst.launched_at


def billed_hours(inst: BurstInstance, start: float, end: float, *,
                 min_billed_hours: float = 0.0) -> float:
    """Hours of `inst` billed within `[start, end)`, with the minimum top-up where it ended."""
    stop = _end(inst, end)
    hours = max(0.0, min(stop, end) - max(inst.launched_at, start)) / 3600.0
    if not inst.active and start <= stop < end:
        total = max(0.0, stop - inst.launched_at) / 3600.0
        hours += max(0.0, min_billed_hours - total)
    return hours


def instance_cost(inst: BurstInstance, now: float, *, min_billed_hours: float = 0.0) -> float:
    """Cost so far (for `burst_instances.cost`): accrued, plus the top-up once ended."""
    # 1 ms past the end: at epoch magnitudes (~1.8e9 s) a float step is ~0.2 us, so a
    # smaller epsilon can vanish and drop the minimum-billing top-up
    return billed_hours(inst, inst.launched_at, max(now, _end(inst, now)) + 1e-3,
                        min_billed_hours=min_billed_hours) * inst.price_per_hour


def accrue_spend(instances: Iterable[BurstInstance], start: float, end: float, *,
                 min_billed_hours: float = 0.0) -> tuple[SpendRow, ...]:
    """Spend rows for `[start, end)`: one per instance that cost something in it.

    Accruing consecutive periods (e.g. every hour) never double counts: an instance running
    over a boundary is split, and its minimum top-up lands once, in the period it ended.
    """
    rows = []
    for inst in instances:
        h = billed_hours(inst, start, end, min_billed_hours=min_billed_hours)
        if h <= 0:
            continue
        rows.append(SpendRow(max(start, inst.launched_at), inst.provider, inst.instance_id,
                             inst.team, inst.project, h, h * inst.price_per_hour))
    return tuple(rows)


def period_starts(now: float) -> dict[Period, float]:
    """Start of the UTC day and UTC month containing `now`."""
    d = datetime.fromtimestamp(now, UTC)
    day = d.replace(hour=0, minute=0, second=0, microsecond=0)
    return {"daily": day.timestamp(), "monthly": day.replace(day=1).timestamp()}


@dataclass(frozen=True, slots=True)
class BudgetUse:
    """Money used in one scope and period: accrued so far, and committed by running
    instances that have not reached their minimum billed time yet."""

    spent: float = 0.0
    committed: float = 0.0

    @property
    def total(self) -> float:
        return self.spent + self.committed


ScopeKey = tuple[str, str, Period]  # ("global", "", p) | ("team", name, p) | ("project", name, p)


def budget_use(instances: Sequence[BurstInstance], now: float, *,
               min_billed_hours: float) -> dict[ScopeKey, BudgetUse]:
    """Use per scope (global, each team, each project) and period (daily, monthly)."""
    starts = period_starts(now)
    acc: dict[ScopeKey, list[float]] = {}
    for inst in instances:
        scopes = [("global", "")]
        if inst.team:
            scopes.append(("team", inst.team))
        if inst.project:
            scopes.append(("project", inst.project))
        committed = 0.0
        if inst.active:
            left_s = inst.launched_at + min_billed_hours * 3600.0 - now
            committed = max(0.0, left_s) / 3600.0 * inst.price_per_hour
        for period, start in starts.items():
            # inclusive end: an instance ended exactly now still counts its top-up
            spent = billed_hours(inst, start, now + 1e-6,
                                 min_billed_hours=min_billed_hours) * inst.price_per_hour
            for kind, name in scopes:
                cell = acc.setdefault((kind, name, period), [0.0, 0.0])
                cell[0] += spent
                cell[1] += committed
    return {k: BudgetUse(v[0], v[1]) for k, v in acc.items()}
