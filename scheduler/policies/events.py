"""Policy actions as events people are told of (pure): idle warnings, clears and stops, and
node drains. Dry-run actions tell nobody; they are only audit rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from collectors.events import Event, EventName
from collectors.formatting import bytes_text, duration_text, timestamp_text
from scheduler.job_events import JobLike
from scheduler.policies.audit import Action
from scheduler.policies.burst import BudgetLimits
from scheduler.policies.spend import BudgetUse, ScopeKey

SNOOZE_HOURS = 2  # the snooze an idle warning suggests


def snooze_command(job_id: int | str) -> str:
    """The exact command an owner runs to keep an idle-looking job."""
    return (f'fleetdeck snooze {job_id} --hours {SNOOZE_HOURS} '
            f'--reason "still working: <why>"')


def _idle_evidence(ev: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("window_s", "gpu_util_max_pct", "gpu_util_mean_pct", "gpu_mem_held_bytes",
            "cpu_util_max_pct", "gpus", "idle_since", "stop_at", "warned_at")
    return {k: ev[k] for k in keys if ev.get(k) is not None}


def _job_fields(job: JobLike | None, job_id: int) -> dict[str, Any]:
    if job is None:
        return {"job_id": job_id}
    return {"job_id": job.id, "job_name": job.name, "node": job.node, "team": job.team,
            "project": job.project, "owner": job.user, "opt_in": tuple(job.notify)}


def idle_event(a: Action, job: JobLike | None) -> Event | None:
    """The event of an idle action (`idle_warn`, `idle_clear`, `idle_stop`), or None."""
    if a.dry_run or a.target_kind != "job":
        return None
    job_id = int(a.target)
    name = job.name if job is not None else str(job_id)
    ev = _idle_evidence(a.evidence)
    window = duration_text(float(a.evidence.get("window_s") or 0.0))
    held_bytes = float(a.evidence.get("gpu_mem_held_bytes") or 0)
    seen = (f"GPU utilization at most {float(a.evidence.get('gpu_util_max_pct') or 0):.1f}% "
            f"over {window}, {bytes_text(held_bytes, fixed=True)} "
            "GPU memory held")
    fields = _job_fields(job, job_id)
    if a.kind == "idle_warn":
        stop_at = float(a.evidence.get("stop_at") or a.ts)
        return Event(EventName.IDLE_WARNED, a.ts,
                     f"job {job_id} ({name}) is idle and will be stopped at "
                     f"{timestamp_text(stop_at, zone=True)}",
                     reason=seen, evidence=ev,
                     actions=(snooze_command(job_id), f"fleetdeck stop {job_id}"), **fields)
    if a.kind == "idle_clear":
        return Event(EventName.IDLE_CLEARED, a.ts,
                     f"job {job_id} ({name}) is no longer idle; it will not be stopped",
                     reason=a.reason, evidence=ev, **fields)
    if a.kind == "idle_stop":
        requeue = bool(a.evidence.get("requeue"))
        return Event(EventName.IDLE_STOPPED, a.ts,
                     f"job {job_id} ({name}) was stopped for being idle"
                     + (" and requeued" if requeue else ""),
                     reason=seen, evidence=ev,
                     actions=(f"fleetdeck explain {job_id}", f"fleetdeck logs {job_id}"),
                     **fields)
    return None


def node_event(a: Action) -> Event | None:
    """The event of a health `drain` action, or None."""
    if a.dry_run or a.kind != "drain":
        return None
    return Event(EventName.NODE_DRAINED, a.ts,
                 f"node {a.target} was drained: no new jobs are placed on it",
                 reason=a.reason, node=a.target, evidence=dict(a.evidence),
                 actions=(f"fleetdeck uncordon {a.target} --reason \"repaired\"",))


def events_of(actions: Iterable[Action], jobs: Mapping[int, JobLike]) -> list[Event]:
    """The events of policy actions written together (idle warn/clear, drains)."""
    out: list[Event] = []
    for a in actions:
        e = (idle_event(a, jobs.get(int(a.target))) if a.target_kind == "job"
             and a.target.isdigit() else node_event(a))
        if e is not None and e.name is not EventName.IDLE_STOPPED:  # told with the stop
            out.append(e)
    return out


def burst_started(instance_id: str, offer: str, team: str | None, project: str | None,
                  price_per_hour: float, now: float) -> Event:
    """A cloud node was rented."""
    return Event(EventName.BURST_STARTED, now,
                 f"burst node {instance_id} rented ({offer}, {price_per_hour:g}/h)",
                 reason="jobs waited for capacity on-prem could not give", team=team,
                 project=project, evidence={"instance_id": instance_id, "offer": offer,
                                            "price_per_hour": price_per_hour},
                 actions=("fleetdeck policies",))


def burst_ended(instance_id: str, state: str, reason: str, node: str | None,
                team: str | None, project: str | None, cost: float, now: float) -> Event:
    """A cloud node is gone (terminated by fleetdeck, or lost)."""
    return Event(EventName.BURST_ENDED, now, f"burst node {instance_id} {state} "
                 f"(cost {cost:.2f})", reason=reason, node=node, team=team, project=project,
                 evidence={"instance_id": instance_id, "state": state, "cost": round(cost, 4)})


BUDGET_THRESHOLDS_PCT = (80, 100)


def budget_events(use: Mapping[ScopeKey, BudgetUse],
                  limits: Mapping[tuple[str, str], BudgetLimits], currency: str, now: float,
                  announced: Iterable[str]) -> list[Event]:
    """budget.threshold for each scope and period whose spend (accrued plus committed) first
    reached 80 % or 100 % of its limit in this period. `use`: (kind, name, period) ->
    `BudgetUse`; `limits`: (kind, name) -> `BudgetLimits`; `announced`: the keys already told
    (`evidence.key`), so each threshold is told once per period."""
    seen = set(announced)
    out: list[Event] = []
    day = datetime.fromtimestamp(now, UTC)
    for (kind, name, period), u in sorted(use.items()):
        lim = limits.get((kind, name))
        if lim is None:
            continue
        limit = lim.per_day if period == "daily" else lim.per_month
        if not limit:
            continue
        pct = 100.0 * float(u.total) / float(limit)
        stamp = day.strftime("%Y-%m-%d") if period == "daily" else day.strftime("%Y-%m")
        crossed = [t for t in BUDGET_THRESHOLDS_PCT if pct >= t]
        if not crossed:
            continue
        t = crossed[-1]
        key = f"{kind}:{name}:{period}:{stamp}:{t}"
        if key in seen:
            continue
        seen.add(key)
        scope = "the fleet" if kind == "global" else f"{kind} {name}"
        when = "today" if period == "daily" else "this month"
        out.append(Event(
            EventName.BUDGET_THRESHOLD, now,
            f"{scope} used {pct:.0f}% of its {period} burst budget "
            f"({float(u.total):.2f} of {float(limit):.2f} {currency}) {when}",
            reason=("no new burst nodes until the period ends" if t >= 100
                    else "new burst nodes stop at 100%"),
            team=name if kind == "team" else None,
            project=name if kind == "project" else None,
            evidence={"key": key, "scope": kind, "name": name, "period": period,
                      "threshold_pct": t, "used": round(float(u.total), 4),
                      "limit": float(limit), "currency": currency},
            actions=("fleetdeck policies", "fleetdeck report chargeback")))
    return out
