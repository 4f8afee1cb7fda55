"""Idle GPU jobs: detect from several signals, then warn -> stop -> optional requeue.

A job is idle at `now` when, over `[now - window_s, now]`:
- every utilization sample of every GPU it holds is under `gpu_util_threshold_pct` (the max,
  not the mean: one busy sample makes it busy),
- it holds GPUs (an allocation) or GPU memory,
- its CPU stays under `cpu_util_threshold_pct` (max again; `check_cpu = false` skips this for
  jobs without CPU samples, e.g. Slurm), and
- the samples cover the window (at least `min_samples`, no gap over `max_gap_s`, first and last
  within `max_gap_s` of the edges). Missing data is never idleness.

Exempt: jobs within `grace_s` of their start, jobs with the protect label (or `protect`),
jobs an owner snoozed (until the snooze ends), and rules with `enabled = false`.

Per job a small state machine is carried between evaluations in `IdleState`:
`idle` (since) -> `warned` (at, evidence) -> `stopped`. Any busy window clears it
(`idle_clear` is audited when a warning was shown). The stop comes `stop_after_s` after the
warning, only if idleness held without a break since then.

Rules (`[[policies.idle.rules]]`) match on pool, project and job kind; every matching rule is
applied from least to most specific (number of matchers; ties: project > pool > kind, then
config order), so the most specific value wins and unset fields inherit.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

import numpy as np

from collectors.formatting import bytes_text, duration_text
from collectors.store.audit_kinds import ActionKind, TargetKind
from scheduler.policies.audit import (
    IDLE_ACTOR,
    Action,
    Snooze,
    to_epoch_s,
)
from scheduler.policies.idle_config import IdleConfig, IdleJob, IdleSettings

_EPS = 1e-6
# GPU memory that grows by more than this over the window is work (a loading model, a cache)
MEM_GROWTH_TOLERANCE_BYTES = 64 * 1024 * 1024


class IdleStatus(StrEnum):
    """The idle policy's verdict on one running job."""

    IDLE = "idle"
    BUSY = "busy"
    GRACE = "grace"
    PROTECTED = "protected"
    SNOOZED = "snoozed"
    DISABLED = "disabled"
    NO_DATA = "no_data"
    NO_GPU = "no_gpu"

    @property
    def label(self) -> str:
        """What a person reads: idle, busy, exempt (grace ...), not enough data, no GPU."""
        if self in (IdleStatus.GRACE, IdleStatus.PROTECTED, IdleStatus.SNOOZED,
                    IdleStatus.DISABLED):
            return f"exempt ({self.value})"
        return {IdleStatus.NO_DATA: "not enough data", IdleStatus.NO_GPU: "no GPU"}.get(
            self, self.value)


@dataclass(frozen=True, slots=True)
class GpuSeries:
    """Samples of one GPU, sorted by time; rows with unknown utilization are left out."""

    gpu_index: int
    ts: tuple[float, ...]
    util_pct: tuple[float, ...]
    mem_used_bytes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class JobUsageWindow:
    """What a job's GPUs and CPU did recently: one series per held GPU, plus job CPU."""

    job_id: str
    gpus: tuple[GpuSeries, ...]
    cpu_ts: tuple[float, ...] = ()
    cpu_util_pct: tuple[float, ...] = ()  # 100 = one core busy


@dataclass(frozen=True, slots=True)
class IdleJobState:
    """Where one job is in warn -> stop; carried between evaluations."""

    phase: Literal["idle", "warned", "stopped"]
    idle_since: float  # start of proven continuous idleness
    checked_until: float  # end of the last window evaluated
    warned_at: float | None = None
    stopped_at: float | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class IdleState:
    """Immutable map job id -> `IdleJobState`."""

    jobs: Mapping[str, IdleJobState] = field(default_factory=dict)

    def get(self, job_id: str) -> IdleJobState | None:
        return self.jobs.get(job_id)

    def warned(self) -> dict[str, IdleJobState]:
        """Jobs showing an idle warning now (the console's idle warnings)."""
        return {j: s for j, s in self.jobs.items() if s.phase == "warned"}


@dataclass(frozen=True, slots=True)
class IdleVerdict:
    """What the policy saw for one job, with the reason and evidence (window, GPU util max and
    mean, GPU memory held, CPU max, the signals used)."""

    job_id: str
    status: IdleStatus
    reason: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: `not enough data: GPU 0: 2 samples in the window, need 3`."""
        reason = self.reason.removeprefix("not enough data: ")
        return f"{self.status.label}: {reason}"

    def to_json(self) -> dict[str, Any]:
        """The verdict as the engine sends it (explain, policies)."""
        ev = self.evidence
        return {"status": self.status.value, "label": self.status.label,
                "reason": self.reason, "summary": self.summary(),
                "window_s": ev.get("window_s"), "samples": ev.get("samples"),
                "gpu_util_max_pct": ev.get("gpu_util_max_pct"),
                "gpu_util_mean_pct": ev.get("gpu_util_mean_pct"),
                "gpu_mem_held_bytes": ev.get("gpu_mem_held_bytes"),
                "gpu_mem_growth_bytes": ev.get("gpu_mem_growth_bytes"),
                "cpu_util_max_pct": ev.get("cpu_util_max_pct"),
                "signals": list(ev.get("signals") or ()), "missing": ev.get("missing"),
                "fallback": ev.get("fallback")}


@dataclass(frozen=True, slots=True)
class IdleResult:
    actions: tuple[Action, ...]
    state: IdleState
    verdicts: Mapping[str, IdleVerdict]


def verdict_numbers(v: Mapping[str, Any]) -> str:
    """The numbers behind a verdict (`IdleVerdict.to_json()`), one line; '' when none."""
    parts: list[str] = []
    if v.get("window_s"):
        parts.append(f"window {duration_text(float(v['window_s']))}")
    if v.get("gpu_util_max_pct") is not None:
        parts.append(f"GPU util max {float(v['gpu_util_max_pct']):.1f}%, mean "
                     f"{float(v.get('gpu_util_mean_pct') or 0.0):.1f}%")
    if v.get("gpu_mem_held_bytes") is not None:
        parts.append(f"{bytes_text(int(v['gpu_mem_held_bytes']), fixed=True)} GPU memory held")
    if v.get("cpu_util_max_pct") is not None:
        parts.append(f"CPU max {float(v['cpu_util_max_pct']):.1f}%")
    if v.get("signals"):
        parts.append("signals: " + ", ".join(v["signals"]))
    if v.get("fallback"):
        parts.append(f"{v.get('missing')}: judged by {v['fallback']}")
    return " · ".join(parts)


# -- feeding from the store -------------------------------------------------------------------

def build_usage_windows(
    jobs: Sequence[IdleJob],
    gpu_rows: Iterable[Sequence[Any]],
    cpu_rows: Iterable[Sequence[Any]] = (),
    *,
    since: float | None = None,
) -> dict[str, JobUsageWindow]:
    """Usage windows from store rows.

    `gpu_rows`: `(node, gpu_index, ts, util_pct, mem_used_bytes)` as `SELECT node, gpu_index,
    ts, util_pct, mem_used_bytes FROM gpu_samples WHERE ts >= ?` returns them.
    `cpu_rows`: `(job_id, ts, cpu_util_pct)`, e.g. from `container_samples`.
    Samples before a job's start (or before `since`) are left out.
    """
    wanted = {(j.node, g) for j in jobs for g in j.gpu_indices}
    by_gpu: dict[tuple[str, int], list[tuple[float, float, int]]] = {}
    for node, gpu_index, ts, util, mem in gpu_rows:
        key = (str(node), int(gpu_index))
        if key not in wanted or util is None:
            continue
        by_gpu.setdefault(key, []).append((to_epoch_s(ts), float(util), int(mem or 0)))
    by_job_cpu: dict[str, list[tuple[float, float]]] = {}
    for job_id, ts, cpu in cpu_rows:
        if cpu is not None:
            by_job_cpu.setdefault(str(job_id), []).append((to_epoch_s(ts), float(cpu)))
    out: dict[str, JobUsageWindow] = {}
    for job in jobs:
        lo = max(job.started_at, since) if since is not None else job.started_at
        series = []
        for g in job.gpu_indices:
            rows = sorted(r for r in by_gpu.get((job.node, g), ()) if r[0] >= lo)
            series.append(GpuSeries(g, tuple(r[0] for r in rows), tuple(r[1] for r in rows),
                                    tuple(r[2] for r in rows)))
        cpu = sorted(r for r in by_job_cpu.get(job.job_id, ()) if r[0] >= lo)
        out[job.job_id] = JobUsageWindow(job.job_id, tuple(series), tuple(r[0] for r in cpu),
                                         tuple(r[1] for r in cpu))
    return out


# -- detection ----------------------------------------------------------------------------------

def _coverage(ts: np.ndarray, start: float, end: float, s: IdleSettings) -> str | None:
    if ts.size < s.min_samples:
        return f"{ts.size} samples in the window, need {s.min_samples}"
    edges = np.concatenate(([start], ts, [end]))
    gap = float(np.max(np.diff(edges)))
    if gap > s.max_gap_s + _EPS:
        return f"a {duration_text(gap)} gap in the samples (max_gap_s {s.max_gap_s:g})"
    return None


def _in_window(ts: tuple[float, ...], start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(ts, dtype=np.float64)
    mask = (a >= start - _EPS) & (a <= end + _EPS)
    return a, mask


def _mem_growth(mems: Sequence[np.ndarray]) -> int:
    """Largest growth of GPU memory over the window (last sample minus first) on any GPU."""
    return max((int(m[-1] - m[0]) for m in mems if m.size), default=0)


def detect_idle(job: IdleJob, window: JobUsageWindow | None, s: IdleSettings,
                now: float) -> tuple[IdleStatus, str, dict[str, Any]]:
    """(status, reason, evidence) for one job over `[now - window_s, now]`.

    Status is idle, busy, no_data or no_gpu. Pure; exemptions are checked by the caller.
    Missing CPU samples follow `missing_signal`: `skip` is no_data, `gpu_only` judges on GPU
    utilization and GPU memory growth alone and says so in the evidence (`fallback`).
    """
    start = now - s.window_s
    ev: dict[str, Any] = {"window_s": s.window_s, "window_start": start, "window_end": now,
                          "node": job.node, "gpus": list(job.gpu_indices),
                          "gpu_util_threshold_pct": s.gpu_util_threshold_pct}
    if not job.gpu_indices:
        return IdleStatus.NO_GPU, "holds no GPU", ev
    if start < job.started_at - _EPS:
        return IdleStatus.NO_DATA, (f"running {duration_text(now - job.started_at)}, less than "
                                    f"the {duration_text(s.window_s)} window"), ev
    if window is None or not window.gpus:
        return IdleStatus.NO_DATA, "not enough data: no GPU samples", ev
    utils: list[np.ndarray] = []
    mems: list[np.ndarray] = []
    for g in window.gpus:
        ts, mask = _in_window(g.ts, start, now)
        problem = _coverage(ts[mask], start, now, s)
        if problem is not None:
            ev["missing"] = f"GPU {g.gpu_index}: {problem}"
            return IdleStatus.NO_DATA, f"not enough data: GPU {g.gpu_index}: {problem}", ev
        utils.append(np.asarray(g.util_pct, dtype=np.float64)[mask])
        mems.append(np.asarray(g.mem_used_bytes, dtype=np.float64)[mask])
    util = np.concatenate(utils)
    mem = np.concatenate(mems)
    ev.update({
        "samples": int(util.size),
        "gpu_util_mean_pct": round(float(util.mean()), 3),
        "gpu_util_max_pct": round(float(util.max()), 3),
        "gpu_mem_held_bytes": int(mem.max()),
        "gpu_mem_mean_bytes": int(mem.mean()),
        "signals": ["gpu"],
    })
    umax = float(util.max())
    if umax >= s.gpu_util_threshold_pct:
        return IdleStatus.BUSY, (f"GPU util reached {umax:.1f}% >= "
                                 f"{s.gpu_util_threshold_pct:g}% in the last "
                                 f"{duration_text(s.window_s)}"), ev
    cpu_note = ""
    if s.check_cpu:
        verdict = _judge_cpu(window, start, now, s, mems, ev)
        if verdict is not None:
            return verdict
        if ev.get("fallback") == "gpu_only":
            cpu_note = (f"; CPU not measured ({ev['missing'].removeprefix('CPU: ')}): judged "
                        "on GPU only (missing_signal = gpu_only)")
        else:
            cpu_note = (f", CPU max {ev['cpu_util_max_pct']:.1f}% < "
                        f"{s.cpu_util_threshold_pct:g}%")
    reason = (f"GPU util max {umax:.1f}% (mean {ev['gpu_util_mean_pct']:.1f}%) < "
              f"{s.gpu_util_threshold_pct:g}% over {duration_text(s.window_s)}, "
              f"{bytes_text(ev['gpu_mem_held_bytes'], fixed=True)} GPU memory held{cpu_note}")
    return IdleStatus.IDLE, reason, ev


def _judge_cpu(window: JobUsageWindow, start: float, now: float, s: IdleSettings,
               mems: Sequence[np.ndarray], ev: dict[str, Any],
               ) -> tuple[IdleStatus, str, dict[str, Any]] | None:
    """The CPU half of the verdict: busy, not enough data, or None (CPU idle, or missing and
    judged on GPU only: `ev["fallback"]` says which)."""
    ts, mask = _in_window(window.cpu_ts, start, now)
    problem = _coverage(ts[mask], start, now, s)
    if problem is not None:
        ev["missing"] = f"CPU: {problem}"
        if s.missing_signal == "skip":
            return IdleStatus.NO_DATA, (f"not enough data: CPU: {problem} "
                                        "(missing_signal = skip)"), ev
        growth = _mem_growth(mems)
        ev["fallback"] = "gpu_only"
        ev["gpu_mem_growth_bytes"] = growth
        if growth > MEM_GROWTH_TOLERANCE_BYTES:
            grew = bytes_text(growth, fixed=True)
            return IdleStatus.BUSY, (f"GPU memory grew {grew} in the last "
                                     f"{duration_text(s.window_s)} (CPU not measured: "
                                     f"{problem})"), ev
        return None
    cpu = np.asarray(window.cpu_util_pct, dtype=np.float64)[mask]
    cmax = float(cpu.max())
    ev.update({"cpu_util_mean_pct": round(float(cpu.mean()), 3),
               "cpu_util_max_pct": round(cmax, 3),
               "cpu_util_threshold_pct": s.cpu_util_threshold_pct,
               "signals": ["gpu", "cpu"]})
    if cmax >= s.cpu_util_threshold_pct:
        return IdleStatus.BUSY, (f"CPU reached {cmax:.1f}% >= {s.cpu_util_threshold_pct:g}% "
                                 f"in the last {duration_text(s.window_s)}"), ev
    return None


def _protected(job: IdleJob, label: str) -> bool:
    if job.protect:
        return True
    v = job.labels.get(label)
    return v is not None and v.strip().lower() not in ("false", "0", "no", "")


# -- the staged state machine -----------------------------------------------------------------

def evaluate_idle(
    jobs: Sequence[IdleJob],
    windows: Mapping[str, JobUsageWindow],
    config: IdleConfig,
    state: IdleState,
    now: float,
    snoozes: Mapping[str, Snooze] | None = None,
) -> IdleResult:
    """One evaluation: decisions for running `jobs` and the state to pass next time.

    `windows` must reach back at least `window_s` before `now` (see `build_usage_windows`).
    Jobs no longer running drop out of the state silently.
    """
    snoozes = snoozes or {}
    actions: list[Action] = []
    verdicts: dict[str, IdleVerdict] = {}
    new: dict[str, IdleJobState] = {}
    for job in jobs:
        s, rules = config.settings_for(job)
        prev = state.get(job.job_id)
        snooze = snoozes.get(job.job_id)
        exempt: tuple[IdleStatus, str] | None = None
        if not s.enabled:
            exempt = (IdleStatus.DISABLED, "idle policy disabled for this job")
        elif _protected(job, config.protect_label):
            exempt = (IdleStatus.PROTECTED, f"protected ({config.protect_label})")
        elif snooze is not None and snooze.active(now):
            until = datetime.fromtimestamp(snooze.until, UTC).strftime("%Y-%m-%d %H:%M UTC")
            exempt = (IdleStatus.SNOOZED,
                      f"snoozed by {snooze.user} until {until}: {snooze.reason}")
        elif now - job.started_at < s.grace_s:
            exempt = (IdleStatus.GRACE, f"started {duration_text(now - job.started_at)} ago, "
                                        f"grace {duration_text(s.grace_s)}")
        if exempt is not None:
            verdicts[job.job_id] = IdleVerdict(job.job_id, exempt[0], exempt[1],
                                               {"rules": list(rules)})
            if prev is not None and prev.phase in ("warned", "stopped"):
                actions.append(_clear(job, prev, exempt[1], {"rules": list(rules)}, now))
            continue
        status, reason, ev = detect_idle(job, windows.get(job.job_id), s, now)
        ev["rules"] = list(rules)
        verdicts[job.job_id] = IdleVerdict(job.job_id, status, reason, ev)
        if status == IdleStatus.NO_DATA:
            if prev is not None:
                new[job.job_id] = prev  # missing data neither advances nor clears
            continue
        if status != IdleStatus.IDLE:
            if prev is not None and prev.phase in ("warned", "stopped"):
                actions.append(_clear(job, prev, reason, ev, now))
            continue
        st = _advance(job, prev, s, ev, reason, now, actions)
        new[job.job_id] = st
    return IdleResult(tuple(actions), IdleState(dict(new)),
                      dict(verdicts))


def _advance(job: IdleJob, prev: IdleJobState | None, s: IdleSettings, ev: dict[str, Any],
             reason: str, now: float, actions: list[Action]) -> IdleJobState:
    window_start = now - s.window_s
    if prev is None:
        st = IdleJobState("idle", idle_since=window_start, checked_until=now, evidence=ev)
    else:
        idle_since = prev.idle_since
        warned_at = prev.warned_at
        if prev.checked_until < window_start - _EPS:
            # evaluations skipped more than a window: continuity is only proven from here
            idle_since = window_start
            if warned_at is not None and warned_at < idle_since:
                warned_at = idle_since
        st = dataclasses.replace(prev, idle_since=idle_since, warned_at=warned_at,
                                 checked_until=now, evidence=ev)
    idle_for = now - st.idle_since
    ev["idle_since"] = st.idle_since
    ev["idle_for_s"] = idle_for
    if st.phase == "idle" and idle_for + _EPS >= max(s.warn_after_s, s.window_s):
        ev_w = {**ev, "stop_after_s": s.stop_after_s, "stop_at": now + s.stop_after_s}
        actions.append(Action(
            ActionKind.IDLE_WARN, TargetKind.JOB, job.job_id,
            f"idle {duration_text(idle_for)}: {reason}; stop in {duration_text(s.stop_after_s)}",
            IDLE_ACTOR, now, ev_w, dry_run=s.dry_run))
        st = dataclasses.replace(st, phase="warned", warned_at=now, evidence=ev_w,
                                 dry_run=s.dry_run)
    if (st.phase == "warned" and st.warned_at is not None
            and now - st.warned_at + _EPS >= s.stop_after_s):
        ev_s = {**ev, "warned_at": st.warned_at, "stop_timeout_s": s.stop_timeout_s,
                "requeue": s.requeue}
        actions.append(Action(
            ActionKind.IDLE_STOP, TargetKind.JOB, job.job_id,
            f"idle {duration_text(idle_for)}, warned {duration_text(now - st.warned_at)} ago: "
            f"{reason}", IDLE_ACTOR, now, ev_s, dry_run=s.dry_run))
        if s.requeue:
            actions.append(Action(ActionKind.IDLE_REQUEUE, TargetKind.JOB, job.job_id,
                                  "requeued after idle stop (policy requeue = true)",
                                  IDLE_ACTOR, now, {"warned_at": st.warned_at},
                                  dry_run=s.dry_run))
        st = dataclasses.replace(st, phase="stopped", stopped_at=now, evidence=ev_s,
                                 dry_run=s.dry_run)
    return st


def _clear(job: IdleJob, prev: IdleJobState, why: str, ev: Mapping[str, Any],
           now: float) -> Action:
    return Action(ActionKind.IDLE_CLEAR, TargetKind.JOB,
                  job.job_id, f"idle warning cleared: {why}", IDLE_ACTOR,
                  now, {**ev, "warned_at": prev.warned_at, "phase": prev.phase},
                  dry_run=prev.dry_run)


def restore_idle_state(rows: Iterable[Sequence[Any]]) -> IdleState:
    """Rebuild the state after an engine restart from audit rows `(target, action, ts,
    evidence, dry_run)` of actor policy:idle, e.g. `SELECT target, action, ts, evidence,
    dry_run FROM actions WHERE actor = 'policy:idle' ORDER BY ts`.

    A job whose last idle action is a warning is warned again in the state (no new row); its
    stop delay restarts from the idleness proven after the restart (see the gap rule).
    """
    last: dict[str, tuple[str, float, Mapping[str, Any], bool]] = {}
    for target, action, ts, evidence, dry_run in rows:
        ev = json.loads(evidence) if isinstance(evidence, str) else dict(evidence or {})
        last[str(target)] = (str(action), to_epoch_s(ts), ev, bool(dry_run))
    jobs: dict[str, IdleJobState] = {}
    for job_id, (action, ts, ev, dry_run) in last.items():
        idle_since = float(ev.get("idle_since", ts))
        if action == "idle_warn":
            jobs[job_id] = IdleJobState("warned", idle_since, ts, warned_at=ts, evidence=ev,
                                        dry_run=dry_run)
        elif action in ("idle_stop", "idle_requeue") and dry_run:
            jobs[job_id] = IdleJobState("stopped", idle_since, ts,
                                        warned_at=ev.get("warned_at"), stopped_at=ts,
                                        evidence=ev, dry_run=True)
    return IdleState(jobs)
