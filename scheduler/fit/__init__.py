"""Per-task node/GPU selection policies and the fleet state they read.

Placement (`scheduler.placement`) decides *which* task goes next; a `FitPolicy` decides *where*
it goes: one node and concrete GPU indices. Policies are pure with respect to the state:
`select` never mutates it; the caller applies the returned `Assignment`.

    state = FleetState.from_snapshot(snapshot)
    policy = make_policy("fleetdeck", workload=WorkloadMix.from_requests(history))
    a = policy.select(state, request)
    if a is not None:
        state.apply(a)

"fgd" memoizes per-node scores on the state; "fleetdeck" keeps one score table per request
shape and node state in the policy (nodes in equal states share it): keep one policy object
across placement cycles. A policy may also have `prepare(state, requests)`, which `plan` calls
once per cycle with the queue's requests in order before any select: fleetdeck scores the
snapshot's node states for them there, in a few wide numpy passes (decisions do not change).
Without `workload`, "fleetdeck" and "fgd" learn the mix from the requests they are asked to
place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from collectors import lazy

if TYPE_CHECKING:
    from scheduler.fit.fgd import FGD
    from scheduler.fit.fleetdeck import Fleetdeck
    from scheduler.fit.state import FleetState
    from scheduler.fit.workload import TaskShape, WorkloadMix
    from scheduler.models import Assignment, ResourceRequest

__all__ = [
    "FGD",
    "POLICY_NAMES",
    "FitPolicy",
    "FleetState",
    "Fleetdeck",
    "TaskShape",
    "WorkloadMix",
    "make_policy",
]
# the policies and the state load numpy on first use (`collectors.lazy`): `POLICY_NAMES`
# alone, for the config schema, stays light
if not TYPE_CHECKING:  # so mypy still checks every imported name
    __getattr__ = lazy.exports(__name__, {
        "FGD": "fgd", "Fleetdeck": "fleetdeck", "FleetState": "state",
        "TaskShape": "workload", "WorkloadMix": "workload"})


class FitPolicy(Protocol):
    name: str

    def select(self, state: FleetState, req: ResourceRequest) -> Assignment | None: ...


POLICY_NAMES: tuple[str, ...] = (
    "fleetdeck",
    "fgd",
    "best-fit",
    "gpu-packing",
    "gpu-clustering",
    "dot-product",
    "random-fit",
    "first-fit",
)


def make_policy(
    name: str = "fleetdeck", *, seed: int = 0, workload: WorkloadMix | None = None
) -> FitPolicy:
    """A policy by name (see `POLICY_NAMES`); `seed` drives random choices and tie-breaks,
    `workload` is the task mix fragmentation-aware policies optimize for."""
    from scheduler.fit import baselines
    from scheduler.fit.fgd import FGD
    from scheduler.fit.fleetdeck import Fleetdeck

    key = name.strip().lower()
    if key == "first-fit":
        return baselines.FirstFit()
    if key == "random-fit":
        return baselines.RandomFit(seed)
    if key == "fleetdeck":
        return Fleetdeck(seed, workload)
    if key == "best-fit":
        return baselines.BestFit(seed)
    if key == "dot-product":
        return baselines.DotProduct(seed)
    if key == "gpu-packing":
        return baselines.GpuPacking(seed)
    if key == "gpu-clustering":
        return baselines.GpuClustering(seed)
    if key == "fgd":
        return FGD(seed, workload)
    raise ValueError(f"unknown policy {name!r}; expected one of {', '.join(POLICY_NAMES)}")
