"""Idle policy: a job doing real work is never stopped; idle jobs are warned, then stopped."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from scheduler.policies.audit import Action, Snooze, snooze_action
from scheduler.policies.idle import (
    IdleState,
    build_usage_windows,
    evaluate_idle,
    restore_idle_state,
)
from scheduler.policies.idle_config import IdleConfig, IdleJob, IdleRule

GIB = 1024**3
STEP_S = 10.0  # sample interval
EVAL_S = 30.0  # evaluation interval

Util = Callable[[float], float]


def cfg(**kw: object) -> IdleConfig:
    base: dict[str, object] = dict(enabled=True, window_s=1800.0, grace_s=600.0,
                                   stop_after_s=1800.0, gpu_util_threshold_pct=5.0,
                                   cpu_util_threshold_pct=20.0, max_gap_s=60.0)
    base.update(kw)
    return IdleConfig(**base)  # type: ignore[arg-type]


def job(**kw: object) -> IdleJob:
    base: dict[str, object] = dict(job_id="7", node="n1", gpu_indices=(0, 1), started_at=0.0,
                                   user="ana", project="vision", pool="train", kind="batch")
    base.update(kw)
    return IdleJob(**base)  # type: ignore[arg-type]


@dataclass
class Trace:
    gpu: list[tuple[str, int, float, float | None, int]]  # sorted by time
    cpu: list[tuple[str, float, float]]

    def __post_init__(self) -> None:
        self.gpu_ts = [r[2] for r in self.gpu]
        self.cpu_ts = [r[1] for r in self.cpu]


def trace(util: Util, t_end: float, *, gpus: Sequence[int] = (0, 1), cpu: Util = lambda t: 2.0,
          mem_bytes: int = 20 * GIB, gap: tuple[float, float] | None = None,
          per_gpu: Callable[[int, float], float] | None = None) -> Trace:
    g: list[tuple[str, int, float, float | None, int]] = []
    c: list[tuple[str, float, float]] = []
    t = 0.0
    while t <= t_end:
        if gap is None or not gap[0] <= t < gap[1]:
            for i in gpus:
                u = per_gpu(i, t) if per_gpu else util(t)
                g.append(("n1", i, t, u, mem_bytes))
            c.append(("7", t, cpu(t)))
        t += STEP_S
    return Trace(g, c)


@dataclass
class Run:
    actions: list[Action]
    state: IdleState
    statuses: list[tuple[float, str]]


def drive(tr: Trace, config: IdleConfig, t_end: float, *, j: IdleJob | None = None,
          t0: float = EVAL_S, snoozes: dict[str, Snooze] | None = None,
          state: IdleState | None = None, every: float = EVAL_S) -> Run:
    """Evaluate every `every` seconds from t0 to t_end, feeding only samples seen by then."""
    j = j or job()
    st = state or IdleState()
    acts: list[Action] = []
    statuses: list[tuple[float, str]] = []
    now = t0
    while now <= t_end:
        lo = now - 2 * config.window_s
        gpu_rows = tr.gpu[bisect_left(tr.gpu_ts, lo):bisect_right(tr.gpu_ts, now)]
        cpu_rows = tr.cpu[bisect_left(tr.cpu_ts, lo):bisect_right(tr.cpu_ts, now)]
        windows = build_usage_windows([j], gpu_rows, cpu_rows, since=lo)
        res = evaluate_idle([j], windows, config, st, now, snoozes)
        acts.extend(res.actions)
        statuses.append((now, res.verdicts[j.job_id].status))
        st = res.state
        now += every
    return Run(acts, st, statuses)


def kinds(run: Run) -> list[tuple[str, float]]:
    return [(a.kind, a.ts) for a in run.actions]


def test_busy_job_is_never_touched() -> None:
    run = drive(trace(lambda t: 80.0, 4 * 3600), cfg(), 4 * 3600)
    assert run.actions == []
    assert {s for _, s in run.statuses if _ >= 1800} == {"busy"}


def test_idle_job_is_warned_then_stopped_once_with_evidence() -> None:
    run = drive(trace(lambda t: 1.0 if int(t) % 60 else 3.0, 3 * 3600), cfg(), 3 * 3600)
    assert kinds(run) == [("idle_warn", 1800.0), ("idle_stop", 3600.0)]
    warn, stop = run.actions
    assert warn.actor == "policy:idle" and warn.target == "7" and not warn.dry_run
    ev = warn.evidence
    assert ev["window_s"] == 1800.0
    assert ev["gpu_util_max_pct"] == 3.0
    assert 1.0 < ev["gpu_util_mean_pct"] < 1.5
    assert ev["gpu_mem_held_bytes"] == 20 * GIB
    assert ev["cpu_util_max_pct"] == 2.0
    assert ev["gpus"] == [0, 1]
    assert "stop in 30m" in warn.reason and "20.0 GiB" in warn.reason
    assert stop.evidence["warned_at"] == 1800.0
    assert stop.evidence["stop_timeout_s"] == 30.0 and stop.evidence["requeue"] is False
    assert run.state.get("7") is not None and run.state.jobs["7"].phase == "stopped"
    row = stop.audit_row()
    assert row["action"] == "idle_stop" and row["target_kind"] == "job"
    assert row["ts"] == datetime(1970, 1, 1, 1, 0)
    assert '"gpu_util_max_pct": 3.0' in row["evidence"]


def test_requeue_adds_a_requeue_action_after_the_stop() -> None:
    run = drive(trace(lambda t: 0.0, 2 * 3600), cfg(requeue=True), 2 * 3600)
    assert [k for k, _ in kinds(run)] == ["idle_warn", "idle_stop", "idle_requeue"]


def test_idle_then_busy_again_clears_the_warning_and_is_not_stopped() -> None:
    def util(t: float) -> float:
        return 90.0 if 2500 <= t < 2510 else 0.0

    run = drive(trace(util, 3 * 3600), cfg(), 3 * 3600)
    ks = kinds(run)
    assert ks[0] == ("idle_warn", 1800.0)
    assert ks[1] == ("idle_clear", 2520.0)  # first evaluation after the busy sample
    assert "GPU util reached 90.0%" in run.actions[1].reason
    # a new warning needs a whole idle window after the busy sample, and a stop its delay
    assert ks[2] == ("idle_warn", 2520.0 + 1800.0)
    assert ks[3] == ("idle_stop", 2520.0 + 3600.0)
    assert all(k != "idle_stop" or t > 2510 + 1800 + 1800 for k, t in ks)


def test_flapping_around_the_threshold_is_busy() -> None:
    # 3% / 7% alternating around a 5% threshold: the max breaks idleness every window
    run = drive(trace(lambda t: 3.0 if int(t // STEP_S) % 2 else 7.0, 4 * 3600), cfg(), 4 * 3600)
    assert run.actions == []


def test_spikes_rarer_than_the_window_warn_but_never_stop() -> None:
    # a short burst of work every 45 min: idle windows (30 min) happen, but the stop delay
    # (30 min) never passes without work in between
    def util(t: float) -> float:
        return 60.0 if t % 2700 < 20 else 0.5

    run = drive(trace(util, 6 * 3600), cfg(), 6 * 3600)
    ks = [k for k, _ in kinds(run)]
    assert "idle_warn" in ks and "idle_clear" in ks
    assert "idle_stop" not in ks


def test_one_busy_gpu_keeps_a_multi_gpu_job_busy() -> None:
    tr = trace(lambda t: 0.0, 3 * 3600, per_gpu=lambda i, t: 50.0 if i == 1 else 0.0)
    assert drive(tr, cfg(), 3 * 3600).actions == []


def test_busy_cpu_keeps_the_job_busy_unless_cpu_is_not_checked() -> None:
    tr = trace(lambda t: 0.0, 3 * 3600, cpu=lambda t: 150.0)  # data preprocessing on CPU
    assert drive(tr, cfg(), 3 * 3600).actions == []
    run = drive(tr, cfg(check_cpu=False), 3 * 3600)
    assert [k for k, _ in kinds(run)] == ["idle_warn", "idle_stop"]


def test_grace_period_after_start() -> None:
    tr = trace(lambda t: 0.0, 3600)
    run = drive(tr, cfg(window_s=300.0, grace_s=1200.0, stop_after_s=0.0), 3600)
    assert {s for t, s in run.statuses if t < 1200} == {"grace"}
    assert kinds(run)[0] == ("idle_warn", 1200.0)


def test_missing_data_never_stops_a_job() -> None:
    # idle, warned at 1800; then the collector loses the node for 20 min around the stop time
    tr = trace(lambda t: 0.0, 3 * 3600, gap=(3000.0, 4200.0))
    run = drive(tr, cfg(), 3 * 3600)
    ks = kinds(run)
    assert ks[0] == ("idle_warn", 1800.0)
    assert ("no_data" in {s for t, s in run.statuses if 3000 < t < 4200 + 60})
    stop_t = next(t for k, t in ks if k == "idle_stop")
    assert stop_t >= 4200.0 + 60.0  # only after data covers the window again
    # no samples at all: never idle
    empty = drive(Trace([], []), cfg(), 3 * 3600)
    assert empty.actions == [] and {s for _, s in empty.statuses} <= {"grace", "no_data"}


def test_skipped_evaluations_restart_the_stop_delay_from_proven_idleness() -> None:
    tr = trace(lambda t: 0.0, 5 * 3600)
    config = cfg(stop_after_s=3600.0)
    first = drive(tr, config, 1800.0, t0=1800.0)
    assert kinds(first) == [("idle_warn", 1800.0)]
    # the engine was down from 1800 to 5000: idleness is only proven from 5000 - window, so
    # the stop delay counts from there (6800), not from the warning (5400)
    later = drive(tr, config, 6780.0, t0=5000.0, state=first.state)
    assert later.actions == []
    st = later.state.jobs["7"]
    assert st.phase == "warned" and st.warned_at == 3200.0
    done = drive(tr, config, 6800.0, t0=6800.0, state=later.state)
    assert kinds(done) == [("idle_stop", 6800.0)]
    assert done.actions[0].evidence["warned_at"] == 3200.0


def test_protect_label_and_flag_exempt() -> None:
    tr = trace(lambda t: 0.0, 3 * 3600)
    for j in (job(labels={"fleetdeck.protect": "true"}), job(protect=True)):
        run = drive(tr, cfg(), 3 * 3600, j=j)
        assert run.actions == []
        assert {s for _, s in run.statuses} == {"protected"}
    off = drive(tr, cfg(), 3 * 3600, j=job(labels={"fleetdeck.protect": "false"}))
    assert [k for k, _ in kinds(off)] == ["idle_warn", "idle_stop"]


def test_snooze_exempts_until_it_ends_and_clears_a_warning() -> None:
    tr = trace(lambda t: 0.0, 4 * 3600)
    warned = drive(tr, cfg(), 1800.0)
    assert kinds(warned) == [("idle_warn", 1800.0)]
    sn = Snooze("7", "ana", "training restarts after the data copy", until=2 * 3600.0)
    run = drive(tr, cfg(), 4 * 3600, t0=1830.0, state=warned.state, snoozes={"7": sn})
    ks = kinds(run)
    assert ks[0] == ("idle_clear", 1830.0)
    assert "snoozed by ana" in run.actions[0].reason
    assert {s for t, s in run.statuses if t < 7200} == {"snoozed"}
    # after the snooze: warned again at once (idle for a whole window), stopped after the delay
    assert ks[1] == ("idle_warn", 7200.0)
    assert ks[2] == ("idle_stop", 7200.0 + 1800.0)
    act = snooze_action(sn, 1830.0)
    assert act.kind == "snooze" and act.actor == "ana" and act.evidence["until"] == 7200.0
    with pytest.raises(ValueError):
        snooze_action(Snooze("7", "ana", "  ", 1.0), 0.0)


def test_dry_run_marks_would_do_actions_and_announces_each_once() -> None:
    run = drive(trace(lambda t: 0.0, 4 * 3600), cfg(dry_run=True, requeue=True), 4 * 3600)
    assert [k for k, _ in kinds(run)] == ["idle_warn", "idle_stop", "idle_requeue"]
    assert all(a.dry_run for a in run.actions)
    assert all(a.audit_row()["dry_run"] for a in run.actions)
    assert run.actions[1].describe().startswith("[dry run] idle_stop job 7")


def test_job_without_gpu_is_not_judged() -> None:
    tr = trace(lambda t: 0.0, 3600, gpus=())
    run = drive(tr, cfg(), 3600, j=job(gpu_indices=()))
    assert run.actions == [] and {s for t, s in run.statuses if t >= 600} == {"no_gpu"}


def test_disabled_policy_does_nothing() -> None:
    run = drive(trace(lambda t: 0.0, 3 * 3600), cfg(enabled=False), 3 * 3600)
    assert run.actions == [] and {s for _, s in run.statuses} == {"disabled"}


def test_finished_jobs_leave_the_state() -> None:
    tr = trace(lambda t: 0.0, 3600)
    run = drive(tr, cfg(), 1800.0, t0=1800.0)
    assert "7" in run.state.warned()
    res = evaluate_idle([], {}, cfg(), run.state, 1830.0)
    assert res.actions == () and dict(res.state.jobs) == {}


def test_rules_most_specific_wins_and_unset_fields_inherit() -> None:
    config = cfg(rules=(
        IdleRule(kind="notebook", window_s=3600.0, stop_after_s=600.0),
        IdleRule(pool="train", window_s=900.0),
        IdleRule(pool="train", kind="notebook", window_s=1200.0),
        IdleRule(project="vision", requeue=True),
        IdleRule(pool="train", project="vision", kind="service", enabled=False, name="svc"),
    ))
    s, rules = config.settings_for(job(kind="notebook"))
    # pool+kind (2 matchers) beats pool or kind alone; project rule adds requeue
    assert s.window_s == 1200.0 and s.stop_after_s == 600.0 and s.requeue is True
    assert rules == ("kind=notebook", "pool=train", "project=vision",
                     "pool=train,kind=notebook")
    s, _ = config.settings_for(job(kind="batch", pool="other", project=None))
    assert s.window_s == 1800.0 and s.requeue is False
    s, rules = config.settings_for(job(kind="service"))
    assert s.enabled is False and rules[-1] == "svc"
    # project outranks pool at equal specificity; later config order wins ties otherwise
    tie = cfg(rules=(IdleRule(project="vision", window_s=100.0),
                     IdleRule(pool="train", window_s=200.0)))
    assert tie.settings_for(job())[0].window_s == 100.0


def test_rule_windows_apply_per_job() -> None:
    tr = trace(lambda t: 0.0, 3 * 3600)
    config = cfg(rules=(IdleRule(kind="notebook", window_s=3600.0),))
    nb = drive(tr, config, 3 * 3600, j=job(kind="notebook"))
    assert kinds(nb)[0] == ("idle_warn", 3600.0)
    batch = drive(tr, config, 3 * 3600)
    assert kinds(batch)[0] == ("idle_warn", 1800.0)


def test_build_usage_windows_from_store_rows() -> None:
    """Rows as DuckDB returns them: naive UTC datetimes, NULL utilization, other GPUs."""
    base = datetime(2026, 1, 5, 12, 0, tzinfo=UTC).timestamp()

    def dt(s: float) -> datetime:
        return datetime.fromtimestamp(base + s, UTC).replace(tzinfo=None)

    rows = [("n1", 0, dt(20), 1.0, GIB), ("n1", 0, dt(10), None, GIB), ("n1", 0, dt(0), 2.0, GIB),
            ("n1", 3, dt(0), 99.0, GIB), ("n2", 0, dt(0), 99.0, GIB), ("n1", 0, dt(-60), 5.0, 0)]
    j = job(gpu_indices=(0,), started_at=base)
    w = build_usage_windows([j], rows, [(7, dt(5), 3.0), (8, dt(5), 90.0)])["7"]
    assert len(w.gpus) == 1 and w.gpus[0].gpu_index == 0
    assert w.gpus[0].ts == (base, base + 20)  # sorted; NULL and pre-start rows dropped
    assert w.gpus[0].util_pct == (2.0, 1.0)
    assert w.cpu_ts == (base + 5,) and w.cpu_util_pct == (3.0,)


def test_state_restored_from_the_audit_trail_after_a_restart() -> None:
    tr = trace(lambda t: 0.0, 4 * 3600)
    warned = drive(tr, cfg(), 1800.0, t0=1800.0)
    rows = [(a.target, a.kind, a.audit_row()["ts"], a.audit_row()["evidence"], a.dry_run)
            for a in warned.actions]
    restored = restore_idle_state(rows)
    assert restored.jobs["7"].phase == "warned" and restored.jobs["7"].warned_at == 1800.0
    # the engine is back 10 minutes later: no second warning; its first window (600-2400)
    # still reaches back past the warning, so idleness is proven and the stop comes on time
    run = drive(tr, cfg(), 3 * 3600, t0=2400.0, state=restored)
    assert kinds(run) == [("idle_stop", 3600.0)]
    cleared = restore_idle_state([*rows, ("7", "idle_clear", 1900.0, "{}", False)])
    assert dict(cleared.jobs) == {}
