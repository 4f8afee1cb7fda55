"""Scheduler value types shared by placement, policies, the simulator and executors.

A `FleetSnapshot` is what placement sees: immutable node capacity and what is already
allocated. A `ResourceRequest` is what one job (or array task) asks for. Fractional GPUs are
accounted in milli-GPU: a whole GPU is 1000, a quarter GPU is 250.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

MILLI_PER_GPU = 1000


@dataclass(frozen=True, slots=True)
class GpuSlot:
    """One physical GPU as placement sees it."""

    index: int
    model: str
    mem_total_bytes: int
    alloc_milli: int = 0  # milli-GPU already held by running jobs
    healthy: bool = True

    @property
    def free_milli(self) -> int:
        return MILLI_PER_GPU - self.alloc_milli if self.healthy else 0


@dataclass(frozen=True, slots=True)
class NodeCapacity:
    """One node's capacity and current allocation."""

    name: str
    pool: str
    cpu_milli: int
    mem_bytes: int
    gpus: tuple[GpuSlot, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    cpu_alloc_milli: int = 0
    mem_alloc_bytes: int = 0
    schedulable: bool = True  # False when unreachable, cordoned or drained

    @property
    def cpu_free_milli(self) -> int:
        return self.cpu_milli - self.cpu_alloc_milli

    @property
    def mem_free_bytes(self) -> int:
        return self.mem_bytes - self.mem_alloc_bytes


@dataclass(frozen=True, slots=True)
class ResourceRequest:
    """What one task needs.

    `gpu_count` whole GPUs, or when `gpu_count == 1` and `gpu_milli < 1000` a share of one
    GPU. `gpu_models` empty means any model.
    """

    cpu_milli: int = 1000
    mem_bytes: int = 0
    gpu_count: int = 0
    gpu_milli: int = MILLI_PER_GPU  # per GPU; < 1000 only with gpu_count == 1
    gpu_models: frozenset[str] = frozenset()
    min_gpu_mem_bytes: int = 0
    pool: str | None = None
    node: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def total_gpu_milli(self) -> int:
        return self.gpu_count * self.gpu_milli

    @property
    def fractional(self) -> bool:
        return self.gpu_count == 1 and self.gpu_milli < MILLI_PER_GPU


@dataclass(frozen=True, slots=True)
class RequestShape:
    """Hashable identity of a `ResourceRequest` (which holds an unhashable label dict): requests
    with equal shapes are placed alike. `gpu_milli` is 0 without GPUs; `demand` drops where
    the task may go (pool, node, labels) and keeps what it takes."""

    cpu_milli: int
    mem_bytes: int
    gpu_count: int
    gpu_milli: int
    gpu_models: frozenset[str]
    min_gpu_mem_bytes: int
    pool: str | None = None
    node: str | None = None
    labels: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, req: ResourceRequest) -> RequestShape:
        labels = tuple(sorted(req.labels.items())) if req.labels else ()
        return cls(*_demand(req), req.pool, req.node, labels)

    @classmethod
    def demand_of(cls, req: ResourceRequest) -> RequestShape:
        """What decides a node's score for `req` given the node's state (no pool, node or
        labels: a node mask handles those)."""
        return cls(*_demand(req))


def _demand(req: ResourceRequest) -> tuple[int, int, int, int, frozenset[str], int]:
    """The fields of a `RequestShape` that say what a task takes."""
    return (req.cpu_milli, req.mem_bytes, req.gpu_count, req.gpu_milli if req.gpu_count else 0,
            req.gpu_models, req.min_gpu_mem_bytes)


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where one task goes: a node and, per chosen GPU index, the milli-GPU it takes."""

    node: str
    gpu_indices: tuple[int, ...] = ()
    gpu_milli: int = 0  # per chosen GPU
    cpu_milli: int = 0
    mem_bytes: int = 0


@dataclass(frozen=True, slots=True)
class RunningAllocation:
    """A running job's hold on the fleet, for quotas and backfill reservations."""

    job_id: str
    user: str
    project: str
    team: str
    assignment: Assignment
    started_at: float
    max_runtime_s: float | None = None  # None: unbounded, blocks reservations forever
    class_priority: int = 0  # of its priority class (scheduler.priority)
    preemptible: bool = True  # its class allows preemption
    preemptions: int = 0  # times this job was preempted so far
    leaving: bool = False  # being preempted now: its resources free up after the grace

    @property
    def milli(self) -> int:
        """GPU held, in milli-GPU."""
        return self.assignment.gpu_milli * len(self.assignment.gpu_indices)

    @property
    def expected_end(self) -> float | None:
        if self.max_runtime_s is None:
            return None
        return self.started_at + self.max_runtime_s


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    """Immutable view of the fleet at `now`: nodes with allocation applied, and who holds it."""

    nodes: tuple[NodeCapacity, ...]
    running: tuple[RunningAllocation, ...] = ()
    now: float = 0.0

    def node(self, name: str) -> NodeCapacity | None:
        for n in self.nodes:
            if n.name == name:
                return n
        return None
