"""Every selection policy: never over-commits, honors constraints, leaves the state alone."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.fit import POLICY_NAMES, FleetState, WorkloadMix, make_policy
from scheduler.models import (
    MILLI_PER_GPU,
    Assignment,
    FleetSnapshot,
    GpuSlot,
    NodeCapacity,
    ResourceRequest,
)

GIB = 1 << 30
MODELS = ("A100", "T4", "V100")


@st.composite
def fleets(draw: st.DrawFn) -> FleetSnapshot:
    nodes = []
    for i in range(draw(st.integers(1, 6))):
        n_gpu = draw(st.sampled_from([0, 1, 2, 4, 8]))
        model = draw(st.sampled_from(MODELS))
        gpus = tuple(
            GpuSlot(
                index=j,
                model=model,
                mem_total_bytes=(16 if model == "T4" else 80) * GIB,
                alloc_milli=draw(st.sampled_from([0, 0, 0, 250, 500, 1000])),
                healthy=draw(st.booleans()) or j > 0,
            )
            for j in range(n_gpu)
        )
        nodes.append(
            NodeCapacity(
                name=f"n{i}",
                pool=draw(st.sampled_from(["a", "b"])),
                cpu_milli=draw(st.sampled_from([8_000, 32_000, 96_000])),
                mem_bytes=draw(st.sampled_from([64, 512])) * GIB,
                gpus=gpus,
                labels={"zone": draw(st.sampled_from(["x", "y"]))},
                schedulable=draw(st.booleans()) or i == 0,
            )
        )
    return FleetSnapshot(nodes=tuple(nodes))


@st.composite
def requests(draw: st.DrawFn) -> ResourceRequest:
    kind = draw(st.sampled_from(["cpu", "share", "whole"]))
    count = 0 if kind == "cpu" else 1 if kind == "share" else draw(st.sampled_from([1, 2, 4, 8]))
    milli = draw(st.sampled_from([100, 250, 500, 750])) if kind == "share" else MILLI_PER_GPU
    return ResourceRequest(
        cpu_milli=draw(st.sampled_from([0, 1_000, 4_000, 16_000])),
        mem_bytes=draw(st.sampled_from([0, 8 * GIB, 100 * GIB])),
        gpu_count=count,
        gpu_milli=milli,
        gpu_models=draw(st.sampled_from([frozenset(), frozenset({"A100"}), frozenset(MODELS[1:])])),
        min_gpu_mem_bytes=draw(st.sampled_from([0, 0, 40 * GIB])),
        pool=draw(st.sampled_from([None, None, "a"])),
        labels=draw(st.sampled_from([{}, {}, {"zone": "x"}])),
    )


def check(snap: FleetSnapshot, state: FleetState, req: ResourceRequest, a: Assignment) -> None:
    nd = snap.node(a.node)
    assert nd is not None and nd.schedulable
    i = state.node_index(a.node)
    assert state.cpu_free[i] >= req.cpu_milli and state.mem_free[i] >= req.mem_bytes
    assert a.cpu_milli == req.cpu_milli and a.mem_bytes == req.mem_bytes
    if req.pool is not None:
        assert nd.pool == req.pool
    for k, v in req.labels.items():
        assert nd.labels.get(k) == v
    assert len(a.gpu_indices) == req.gpu_count
    assert len(set(a.gpu_indices)) == len(a.gpu_indices)
    slots = {g.index: g for g in nd.gpus}
    for idx in a.gpu_indices:
        g = slots[idx]
        assert g.healthy
        assert not req.gpu_models or g.model in req.gpu_models
        assert g.mem_total_bytes >= req.min_gpu_mem_bytes
        assert a.gpu_milli == req.gpu_milli
        assert state.gpu_free[i, list(slots).index(idx)] >= a.gpu_milli


@pytest.mark.parametrize("name", POLICY_NAMES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snap=fleets(), reqs=st.lists(requests(), min_size=1, max_size=25))
def test_policy_invariants(name: str, snap: FleetSnapshot, reqs: list[ResourceRequest]) -> None:
    state = FleetState.from_snapshot(snap)
    policy = make_policy(name, seed=7, workload=WorkloadMix.from_requests(reqs))
    for req in reqs:
        before = (state.cpu_free.copy(), state.mem_free.copy(), state.gpu_free.copy())
        a = policy.select(state, req)
        # select is pure with respect to the state
        assert np.array_equal(before[0], state.cpu_free)
        assert np.array_equal(before[1], state.mem_free)
        assert np.array_equal(before[2], state.gpu_free)
        fits = bool(state.feasible(req).any())
        assert (a is not None) == fits
        if a is None:
            continue
        check(snap, state, req, a)
        state.apply(a)  # raises on any over-commit
        assert (state.gpu_free >= 0).all() and (state.gpu_free <= MILLI_PER_GPU).all()
        assert (state.cpu_free >= 0).all() and (state.mem_free >= 0).all()


def two_nodes(alloc_b: tuple[int, ...]) -> FleetState:
    def mk(name: str, alloc: tuple[int, ...]) -> NodeCapacity:
        gpus = tuple(
            GpuSlot(j, "A100", 80 * GIB, alloc_milli=alloc[j] if j < len(alloc) else 0)
            for j in range(4)
        )
        return NodeCapacity(name, "p", 64_000, 256 * GIB, gpus)

    return FleetState.from_snapshot(FleetSnapshot(nodes=(mk("a", ()), mk("b", alloc_b))))


def test_first_fit_takes_the_first_node_and_lowest_gpus() -> None:
    s = two_nodes((1000,))
    a = make_policy("first-fit").select(s, ResourceRequest(gpu_count=2))
    assert a is not None and a.node == "a" and a.gpu_indices == (0, 1)


def test_packing_policies_prefer_the_used_node_and_tightest_gpu() -> None:
    share = ResourceRequest(cpu_milli=1000, gpu_count=1, gpu_milli=500)
    for name in ("best-fit", "gpu-packing", "dot-product", "fgd", "fleetdeck"):
        s = two_nodes((1000, 1000, 500))
        a = make_policy(name, workload=WorkloadMix.from_requests([share])).select(s, share)
        assert a is not None and (a.node, a.gpu_indices) == ("b", (2,)), name


def test_random_fit_is_reproducible_per_seed() -> None:
    req = ResourceRequest(gpu_count=1)
    picks = []
    for _ in range(2):
        s = two_nodes(())
        p = make_policy("random-fit", seed=3)
        seq = []
        for _ in range(6):
            a = p.select(s, req)
            assert a is not None
            s.apply(a)
            seq.append(a.node)
        picks.append(seq)
    assert picks[0] == picks[1]
    assert set(picks[0]) == {"a", "b"}


def test_unknown_policy_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("worst-fit")


def test_memoized_scores_follow_state_changes_and_copies() -> None:
    """The frag policies cache per-node scores on the state and rescore only changed nodes;
    the cache must equal a fresh computation after applies, releases and on copies."""
    from scheduler.fit import FGD, Fleetdeck

    req = ResourceRequest(cpu_milli=1000, gpu_count=1, gpu_milli=300)
    other = ResourceRequest(cpu_milli=2000, gpu_count=2)
    mix = WorkloadMix.from_requests([req, other])
    for cls in (FGD, Fleetdeck):
        s = two_nodes((700,))
        p = cls(0, mix)
        taken = []
        for r in (req, other, req, req, other, req):
            a = p.select(s, r)
            assert a is not None
            s.apply(a)
            taken.append(a)
            for probe in (req, other):
                cached = p._arrays(s, probe)["score"]
                fresh = cls(0, mix)._arrays(s.copy(), probe)["score"]
                assert np.array_equal(cached, fresh)
        s.release(taken[0])
        cp = s.copy()
        cp.release(taken[1])
        for probe in (req, other):
            assert np.array_equal(
                p._arrays(s, probe)["score"], cls(0, mix)._arrays(s, probe)["score"]
            )
            assert np.array_equal(
                p._arrays(cp, probe)["score"], cls(0, mix)._arrays(cp, probe)["score"]
            )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=fleets(),
    second=fleets(),
    reqs=st.lists(requests(), min_size=1, max_size=12),
)
def test_fleetdeck_scores_carry_over_to_the_next_snapshot(
    first: FleetSnapshot, second: FleetSnapshot, reqs: list[ResourceRequest]
) -> None:
    """Fleetdeck keeps its score table from one placement cycle to the next (the next
    snapshot adopts the state numbering): what it reads there equals a fresh policy's scores,
    for a snapshot of another fleet as for the same fleet after placements."""
    from scheduler.fit import Fleetdeck

    mix = WorkloadMix.from_requests(reqs)
    kept = Fleetdeck(0, mix)
    state = FleetState.from_snapshot(first)
    for req in reqs:
        a = kept.select(state, req)
        if a is not None:
            state.apply(a)
    table = kept._table
    for snap in (second, first):
        nxt = FleetState.from_snapshot(snap)
        for req in reqs:
            ours, fresh = kept._arrays(nxt, req), Fleetdeck(0, mix)._arrays(nxt.copy(), req)
            assert np.array_equal(ours["score"], fresh["score"])
            can = fresh["score"] > -np.inf  # the GPU a share takes, where it may go
            assert np.array_equal(ours["col"][can], fresh["col"][can])
            # the tie-breaks kept per state (rescaled for another fleet) read as computed
            q = kept._reqs[id(req)][1]
            kept_tie = kept._table.tie[q].take(nxt.all_state_ids())
            assert np.array_equal(kept_tie[can], fresh["tie"][can])
    assert kept._table is table  # kept, not rebuilt
