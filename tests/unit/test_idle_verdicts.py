"""Every idle verdict a person can see, and the rule for a missing CPU signal."""

from __future__ import annotations

import pytest

from scheduler.policies.audit import Snooze
from scheduler.policies.idle import (
    MEM_GROWTH_TOLERANCE_BYTES,
    GpuSeries,
    IdleState,
    IdleStatus,
    JobUsageWindow,
    evaluate_idle,
)
from scheduler.policies.idle_config import IdleConfig, IdleJob, IdleRule

GIB = 1024**3
NOW = 10_000.0
WINDOW_S = 300.0


def cfg(**kw: object) -> IdleConfig:
    base: dict[str, object] = dict(enabled=True, window_s=WINDOW_S, grace_s=60.0,
                                   stop_after_s=600.0, gpu_util_threshold_pct=5.0,
                                   cpu_util_threshold_pct=20.0, max_gap_s=30.0, min_samples=3)
    base.update(kw)
    return IdleConfig(**base)  # type: ignore[arg-type]


def job(**kw: object) -> IdleJob:
    base: dict[str, object] = dict(job_id="7", node="n1", gpu_indices=(0,), started_at=0.0,
                                   project="vision")
    base.update(kw)
    return IdleJob(**base)  # type: ignore[arg-type]


def window(util: float = 1.0, *, mem_start: int = 8 * GIB, mem_end: int = 8 * GIB,
           cpu: float | None = 2.0, step: float = 10.0) -> JobUsageWindow:
    ts = [NOW - WINDOW_S + k * step for k in range(int(WINDOW_S / step) + 1)]
    n = len(ts)
    mem = [mem_start + (mem_end - mem_start) * k // (n - 1) for k in range(n)]
    gpu = GpuSeries(0, tuple(ts), tuple(util for _ in ts), tuple(mem))
    if cpu is None:
        return JobUsageWindow("7", (gpu,))
    return JobUsageWindow("7", (gpu,), tuple(ts), tuple(cpu for _ in ts))


def verdict(config: IdleConfig, w: JobUsageWindow | None, j: IdleJob | None = None,
            snoozes: dict[str, Snooze] | None = None) -> tuple[IdleStatus, str, dict[str, object]]:
    j = j or job()
    res = evaluate_idle([j], {} if w is None else {j.job_id: w}, config, IdleState(), NOW,
                        snoozes)
    v = res.verdicts[j.job_id]
    return v.status, v.summary(), v.to_json()


def test_idle_with_both_signals_names_every_number() -> None:
    status, text, data = verdict(cfg(), window(util=1.0, cpu=2.0))
    assert status is IdleStatus.IDLE
    assert text.startswith("idle: GPU util max 1.0% (mean 1.0%) < 5% over 5m")
    assert "8.0 GiB GPU memory held" in text and "CPU max 2.0% < 20%" in text
    assert data["signals"] == ["gpu", "cpu"] and data["fallback"] is None
    assert (data["window_s"], data["gpu_util_max_pct"], data["gpu_util_mean_pct"],
            data["gpu_mem_held_bytes"], data["cpu_util_max_pct"]) == (
        WINDOW_S, 1.0, 1.0, 8 * GIB, 2.0)


def test_busy_by_gpu_and_busy_by_cpu() -> None:
    status, text, _ = verdict(cfg(), window(util=40.0))
    assert status is IdleStatus.BUSY and "GPU util reached 40.0% >= 5%" in text
    status, text, data = verdict(cfg(), window(util=1.0, cpu=95.0))
    assert status is IdleStatus.BUSY and "CPU reached 95.0% >= 20%" in text
    assert data["cpu_util_max_pct"] == 95.0


def test_missing_cpu_falls_back_to_gpu_only_by_default_and_says_so() -> None:
    status, text, data = verdict(cfg(), window(util=1.0, cpu=None))
    assert status is IdleStatus.IDLE
    assert "CPU not measured (0 samples in the window, need 3): judged on GPU only" in text
    assert data["signals"] == ["gpu"] and data["fallback"] == "gpu_only"
    assert data["missing"] == "CPU: 0 samples in the window, need 3"
    assert data["gpu_mem_growth_bytes"] == 0


def test_gpu_only_fallback_counts_gpu_memory_growth_as_work() -> None:
    grow = window(util=1.0, cpu=None, mem_start=2 * GIB, mem_end=6 * GIB)
    status, text, data = verdict(cfg(), grow)
    assert status is IdleStatus.BUSY
    assert text.startswith("busy: GPU memory grew 4.0 GiB in the last 5m (CPU not measured")
    assert data["gpu_mem_growth_bytes"] == 4 * GIB
    small = window(util=1.0, cpu=None, mem_start=2 * GIB,
                   mem_end=2 * GIB + MEM_GROWTH_TOLERANCE_BYTES // 2)
    assert verdict(cfg(), small)[0] is IdleStatus.IDLE
    shrink = window(util=1.0, cpu=None, mem_start=6 * GIB, mem_end=2 * GIB)
    assert verdict(cfg(), shrink)[0] is IdleStatus.IDLE


def test_skip_leaves_a_job_without_cpu_unjudged() -> None:
    status, text, data = verdict(cfg(missing_signal="skip"), window(util=1.0, cpu=None))
    assert status is IdleStatus.NO_DATA
    assert text == ("not enough data: CPU: 0 samples in the window, need 3 "
                    "(missing_signal = skip)")
    assert data["label"] == "not enough data"
    # a rule can choose per project
    rules = (IdleRule(project="vision", missing_signal="skip"),)
    assert verdict(cfg(rules=rules), window(cpu=None))[0] is IdleStatus.NO_DATA
    assert verdict(cfg(rules=rules), window(cpu=None), job(project="nlp"))[0] \
        is IdleStatus.IDLE


def test_check_cpu_false_judges_gpu_only_without_a_fallback_note() -> None:
    status, text, data = verdict(cfg(check_cpu=False), window(util=1.0, cpu=None))
    assert status is IdleStatus.IDLE and "CPU" not in text
    assert data["signals"] == ["gpu"] and data["fallback"] is None


@pytest.mark.parametrize(("status", "label"), [
    (IdleStatus.GRACE, "exempt (grace)"), (IdleStatus.PROTECTED, "exempt (protected)"),
    (IdleStatus.SNOOZED, "exempt (snoozed)"), (IdleStatus.DISABLED, "exempt (disabled)"),
])
def test_exempt_verdicts(status: IdleStatus, label: str) -> None:
    j = job()
    config = cfg()
    snoozes: dict[str, Snooze] = {}
    if status is IdleStatus.GRACE:
        j = job(started_at=NOW - 10.0)
    elif status is IdleStatus.PROTECTED:
        j = job(protect=True)
    elif status is IdleStatus.SNOOZED:
        snoozes = {"7": Snooze("7", "ana", "demo tomorrow", NOW + 3600.0)}
    else:
        config = cfg(enabled=False)
    got, text, data = verdict(config, window(), j, snoozes)
    assert got is status and text.startswith(label + ": ")
    assert data["label"] == label


def test_not_enough_data_verdicts_say_why() -> None:
    status, text, _ = verdict(cfg(), None)
    assert (status, text) == (IdleStatus.NO_DATA, "not enough data: no GPU samples")
    status, text, _ = verdict(cfg(min_samples=100), window())
    assert status is IdleStatus.NO_DATA
    assert text == "not enough data: GPU 0: 31 samples in the window, need 100"
    status, text, _ = verdict(cfg(), window(), job(started_at=NOW - 120.0, ))
    assert status is IdleStatus.NO_DATA and "less than the 5m window" in text
    status, text, _ = verdict(cfg(), window(), job(gpu_indices=()))
    assert (status, text) == (IdleStatus.NO_GPU, "no GPU: holds no GPU")
