"""GPU health: ECC / retirement / remap / Xid mark GPUs broken, drain nodes, recover."""

from __future__ import annotations

from datetime import UTC, datetime

from scheduler.fit import FleetState, make_policy
from scheduler.models import (
    Assignment,
    FleetSnapshot,
    GpuSlot,
    NodeCapacity,
    ResourceRequest,
    RunningAllocation,
)
from scheduler.policies.health import (
    GpuEvent,
    GpuHealthSample,
    HealthConfig,
    HealthState,
    apply_health,
    cordon,
    evaluate_health,
    events_from_rows,
    restore_health_state,
    samples_from_rows,
    uncordon,
)

GIB = 1024**3
T0 = 1_780_000_000.0


def gpu_node(name: str, n: int = 4) -> NodeCapacity:
    return NodeCapacity(name, "train", 64000, 256 * GIB,
                        tuple(GpuSlot(i, "A100", 80 * GIB) for i in range(n)))


def running(job_id: str, node: str, gpus: tuple[int, ...]) -> RunningAllocation:
    return RunningAllocation(job_id, "ana", "seg", "vision", Assignment(node, gpus), T0 - 600)


SNAP = FleetSnapshot((gpu_node("n1"), gpu_node("n2")),
                     (running("10", "n1", (0, 1)), running("11", "n1", (2,)),
                      running("12", "n2", (0,))), now=T0)


def sample(gpu: int, ts: float, ecc: int | None = 0, pending: bool | None = False,
           fail: bool | None = False, node: str = "n1") -> GpuHealthSample:
    return GpuHealthSample(node, gpu, ts, f"GPU-{node}-{gpu}", ecc, pending, fail)


def baseline(config: HealthConfig | None = None) -> HealthState:
    samples = [sample(g, T0, ecc=5, node=n) for n in ("n1", "n2") for g in range(4)]
    res = evaluate_health(samples, [], SNAP, config or HealthConfig(), HealthState(), T0)
    assert res.actions == ()  # errors counted before fleetdeck watched are not "new"
    return res.state


def test_new_double_bit_ecc_marks_gpu_and_drains_node() -> None:
    st = baseline()
    res = evaluate_health([sample(1, T0 + 10, ecc=5), sample(1, T0 + 20, ecc=7)], [], SNAP,
                          HealthConfig(), st, T0 + 30)
    assert [(a.kind, a.target) for a in res.actions] == [("gpu_unhealthy", "n1:1"),
                                                         ("drain", "n1")]
    mark, drain = res.actions
    assert mark.reason == "GPU 1 on n1: 2 new uncorrected (double-bit) ECC errors"
    assert mark.evidence["ecc_uncorrected_new"] == 2 and mark.evidence["broken_from"] == T0 + 20
    assert drain.actor == "policy:health" and drain.evidence["on_unhealthy"] == "finish"
    assert res.drain == ("n1",) and res.requeue == ()  # jobs finish by default
    (iv,) = res.opened
    assert (iv.node, iv.gpu_index, iv.uuid, iv.broken_from, iv.broken_until) == (
        "n1", 1, "GPU-n1-1", T0 + 20, None)
    assert iv.store_row()["broken_from"] == datetime.fromtimestamp(T0 + 20, UTC).replace(
        tzinfo=None)
    # still broken next time: nothing new is decided
    again = evaluate_health([sample(1, T0 + 40, ecc=9)], [], SNAP, HealthConfig(), res.state,
                            T0 + 50)
    assert again.actions == () and set(again.state.broken()) == {("n1", 1)}


def test_drained_node_gets_no_new_placements() -> None:
    st = evaluate_health([sample(1, T0 + 10, ecc=6)], [], SNAP, HealthConfig(), baseline(),
                         T0 + 10).state
    seen = apply_health(SNAP, st)
    n1 = seen.node("n1")
    assert n1 is not None and not n1.schedulable and not n1.gpus[1].healthy
    assert n1.gpus[0].healthy
    state = FleetState.from_snapshot(seen)
    policy = make_policy("first-fit")
    for _ in range(4):  # n2's four GPUs, then nothing: n1 is drained
        a = policy.select(state, ResourceRequest(cpu_milli=0, gpu_count=1))
        assert a is not None and a.node == "n2"
        state.apply(a)
    assert policy.select(state, ResourceRequest(cpu_milli=0, gpu_count=1)) is None
    # cordon by hand works the same way
    cordoned = apply_health(SNAP, HealthState(), cordoned=["n2"])
    assert [n.schedulable for n in cordoned.nodes] == [True, False]


def test_requeue_policy_requeues_only_jobs_on_the_broken_gpu() -> None:
    cfg = HealthConfig(on_unhealthy="requeue")
    res = evaluate_health([sample(1, T0 + 10, ecc=6)], [], SNAP, cfg, baseline(cfg), T0 + 10)
    assert res.requeue == ("10",)
    rq = [a for a in res.actions if a.kind == "health_requeue"]
    assert [a.target for a in rq] == ["10"] and "GPU [1] on n1 unhealthy" in rq[0].reason


def test_pending_retirement_and_remap_failure() -> None:
    first_seen = evaluate_health([sample(2, T0, pending=True, node="n2")], [], SNAP,
                                 HealthConfig(), HealthState(), T0)
    assert [a.kind for a in first_seen.actions] == ["gpu_unhealthy", "drain"]
    assert "page retirement / row remap pending" in first_seen.actions[0].reason
    res = evaluate_health([sample(3, T0 + 5, fail=True)], [], SNAP, HealthConfig(), baseline(),
                          T0 + 5)
    assert res.actions[0].reason == "GPU 3 on n1: row remap failure"
    off = HealthConfig(remap_failure=False, retired_pending=False)
    quiet = evaluate_health([sample(3, T0 + 5, fail=True, pending=True)], [], SNAP, off,
                            baseline(off), T0 + 5)
    assert quiet.actions == ()


def test_critical_xid_events_and_ignored_ones() -> None:
    st = baseline()
    events = [GpuEvent(T0 + 1, "n1", "xid", 0, 13, "Graphics Engine Exception"),
              GpuEvent(T0 + 2, "n1", "xid", 2, 79, "GPU has fallen off the bus")]
    res = evaluate_health([], events, SNAP, HealthConfig(), st, T0 + 5)
    assert [(a.kind, a.target) for a in res.actions] == [("gpu_unhealthy", "n1:2"),
                                                         ("drain", "n1")]
    assert res.actions[0].reason == "GPU 2 on n1: critical Xid 79 (GPU has fallen off the bus)"
    assert res.state.events_until == T0 + 2
    # the same events again (re-read from the store) are not handled twice
    assert evaluate_health([], events, SNAP, HealthConfig(), res.state, T0 + 6).actions == ()


def test_node_level_event_marks_every_gpu() -> None:
    ev = GpuEvent(T0 + 1, "n2", "ecc_uncorrected", None, None, "")
    res = evaluate_health([], [ev], SNAP, HealthConfig(), baseline(), T0 + 2)
    assert sorted(a.target for a in res.actions if a.kind == "gpu_unhealthy") == [
        "n2:0", "n2:1", "n2:2", "n2:3"]
    assert res.drain == ("n2",)


def test_counter_reset_recovers_and_undrains_when_no_broken_gpu_is_left() -> None:
    st = evaluate_health([sample(0, T0 + 10, ecc=6), sample(1, T0 + 10, ecc=6)], [], SNAP,
                         HealthConfig(), baseline(), T0 + 10).state
    # GPU 0 reset (counter back to 0): recovered, but GPU 1 still broken: node stays drained
    res = evaluate_health([sample(0, T0 + 100, ecc=0)], [], SNAP, HealthConfig(), st, T0 + 100)
    assert [(a.kind, a.target) for a in res.actions] == [("gpu_recovered", "n1:0")]
    (closed,) = res.closed
    assert (closed.broken_from, closed.broken_until) == (T0 + 10, T0 + 100)
    assert res.state.drained == frozenset({"n1"})
    res2 = evaluate_health([sample(1, T0 + 200, ecc=0)], [], SNAP, HealthConfig(), res.state,
                           T0 + 200)
    assert [(a.kind, a.target) for a in res2.actions] == [("gpu_recovered", "n1:1"),
                                                          ("undrain", "n1")]
    assert res2.undrain == ("n1",) and res2.state.drained == frozenset()
    # a reset while retirement is still pending does not recover
    st3 = evaluate_health([sample(0, T0 + 10, ecc=6)], [], SNAP, HealthConfig(), baseline(),
                          T0 + 10).state
    res3 = evaluate_health([sample(0, T0 + 50, ecc=0, pending=True)], [], SNAP, HealthConfig(),
                           st3, T0 + 50)
    assert not res3.closed and ("n1", 0) in res3.state.broken()


def test_admin_uncordon_closes_intervals_and_cordon_is_an_action() -> None:
    st = evaluate_health([sample(3, T0 + 10, fail=True)], [], SNAP, HealthConfig(), baseline(),
                         T0 + 10).state
    res = uncordon("n1", "root", "GPU 3 replaced", SNAP, HealthConfig(), st, T0 + 900)
    assert [(a.kind, a.actor) for a in res.actions] == [("uncordon", "root"),
                                                        ("gpu_recovered", "root"),
                                                        ("undrain", "root")]
    assert res.closed[0].broken_until == T0 + 900 and res.state.broken() == {}
    # the flag is still set on the next sample: not new evidence, the admin's word holds
    after = evaluate_health([sample(3, T0 + 910, fail=True)], [], SNAP, HealthConfig(),
                            res.state, T0 + 910)
    assert after.actions == ()
    c = cordon("n2", "root", "maintenance", T0)
    assert (c.kind, c.target_kind, c.target, c.actor, c.reason) == (
        "cordon", "node", "n2", "root", "maintenance")


def test_disabled_does_nothing() -> None:
    cfg = HealthConfig(enabled=False)
    res = evaluate_health([sample(0, T0, pending=True)], [], SNAP, cfg, HealthState(), T0)
    assert res.actions == () and res.state == HealthState()


def test_rows_from_the_store() -> None:
    dt = datetime.fromtimestamp(T0, UTC).replace(tzinfo=None)
    s = samples_from_rows([("n1", 2, dt, "GPU-x", 3, False, None)])
    assert s == [GpuHealthSample("n1", 2, T0, "GPU-x", 3, False, None)]
    e = events_from_rows([(dt, "n1", None, None, "xid", 79, None)])
    assert e == [GpuEvent(T0, "n1", "xid", None, 79, "", None)]


def test_state_restored_after_a_restart_keeps_drains_and_ignores_old_events() -> None:
    old = GpuEvent(T0 - 50, "n1", "xid", 1, 79, "")
    iv = evaluate_health([], [old], SNAP, HealthConfig(), HealthState(), T0 - 40).opened[0]
    st = restore_health_state([iv], ["n1"], events_until=T0 - 50)
    assert set(st.broken()) == {("n1", 1)} and st.drained == frozenset({"n1"})
    # the old event is re-read from the store: nothing new; a counter reset later recovers
    res = evaluate_health([sample(1, T0, ecc=4)], [old], SNAP, HealthConfig(), st, T0)
    assert res.actions == ()
    res = evaluate_health([sample(1, T0 + 60, ecc=0)], [old], SNAP, HealthConfig(), res.state,
                          T0 + 60)
    assert [a.kind for a in res.actions] == ["gpu_recovered", "undrain"]
    assert res.closed[0].broken_from == T0 - 50
