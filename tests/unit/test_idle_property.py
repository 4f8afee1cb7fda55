"""Property: whatever the utilization trace, a stop only follows a fully idle stretch.

With evaluations every 30 s, an `idle_stop` at time T implies every GPU and CPU sample in
`[T - stop_after_s - window_s, T]` was under its threshold, and a warning came at least
`stop_after_s` before it.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.policies.idle import IdleState, build_usage_windows, evaluate_idle
from scheduler.policies.idle_config import IdleConfig, IdleJob

WINDOW_S = 600.0
STOP_AFTER_S = 600.0
GPU_T = 5.0
CPU_T = 20.0
END_S = 2 * 3600.0

segment = st.tuples(st.floats(10, 2400), st.sampled_from([0.0, 1.0, 4.9, 5.0, 30.0, 100.0]),
                    st.sampled_from([1.0, 19.9, 20.0, 80.0]))


def run_checked(segments: list[tuple[float, float, float]], dry_run: bool) -> list[float]:
    """Drive the policy over the cycled segments; check the property at every stop."""
    config = IdleConfig(enabled=True, window_s=WINDOW_S, stop_after_s=STOP_AFTER_S,
                        grace_s=300.0, gpu_util_threshold_pct=GPU_T,
                        cpu_util_threshold_pct=CPU_T, max_gap_s=30.0, dry_run=dry_run)
    job = IdleJob("1", "n", (0,), started_at=0.0)
    gpu: list[tuple[str, int, float, float, int]] = []
    cpu: list[tuple[str, float, float]] = []
    t = 0.0
    seg_end = 0.0
    levels = itertools.cycle(segments)
    dur, g, c = next(levels)
    seg_end = dur
    while t <= END_S:
        while t >= seg_end:
            dur, g, c = next(levels)
            seg_end += dur
        gpu.append(("n", 0, t, g, 1 << 30))
        cpu.append(("1", t, c))
        t += 10.0
    state = IdleState()
    warns: list[float] = []
    stops: list[float] = []
    now = 30.0
    i_lo = 0
    while now <= END_S:
        while gpu[i_lo][2] < now - WINDOW_S - 60:
            i_lo += 1
        hi = int(now // 10) + 1
        w = build_usage_windows([job], gpu[i_lo:hi], cpu[i_lo:hi])
        res = evaluate_idle([job], w, config, state, now)
        state = res.state
        for a in res.actions:
            assert a.dry_run is dry_run
            if a.kind == "idle_warn":
                warns.append(a.ts)
            if a.kind == "idle_stop":
                lo = now - STOP_AFTER_S - WINDOW_S
                assert all(u < GPU_T for _, _, ts, u, _ in gpu if lo <= ts <= now)
                assert all(x < CPU_T for _, ts, x in cpu if lo <= ts <= now)
                assert warns and warns[-1] <= now - STOP_AFTER_S
                stops.append(now)
        now += 30.0
    return stops


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(segment, min_size=1, max_size=12), st.booleans())
def test_stop_implies_idle_stretch(segments: list[tuple[float, float, float]],
                                   dry_run: bool) -> None:
    run_checked(segments, dry_run)


def test_the_harness_sees_stops() -> None:
    # 40 min of work, then idle: warned at 40+10 min, stopped 10 min later
    stops = run_checked([(2400.0, 100.0, 1.0), (10**6, 0.0, 1.0)], False)
    assert stops == [2400.0 + WINDOW_S + STOP_AFTER_S]
