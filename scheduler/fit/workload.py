"""The workload mix a fleet receives: request shapes with their weights.

Fragmentation-aware policies measure how much free GPU capacity is unusable *for the tasks
this fleet actually gets*. `WorkloadMix.from_requests` learns that mix from past requests
(the store's job history, or a trace), keeping the GPU-relevant shape of each request.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from scheduler.models import MILLI_PER_GPU, ResourceRequest


@dataclass(frozen=True, slots=True)
class TaskShape:
    """The part of a request that decides where it can fit on one node."""

    cpu_milli: int
    gpu_count: int
    gpu_milli: int  # per GPU, 0 when gpu_count == 0
    gpu_models: frozenset[str] = frozenset()
    mem_bytes: int = 0

    @property
    def fractional(self) -> bool:
        return self.gpu_count == 1 and 0 < self.gpu_milli < MILLI_PER_GPU

    @property
    def total_gpu_milli(self) -> int:
        return self.gpu_count * self.gpu_milli

    @classmethod
    def of(cls, req: ResourceRequest, *, with_mem: bool = False) -> TaskShape:
        return cls(
            cpu_milli=req.cpu_milli,
            gpu_count=req.gpu_count,
            gpu_milli=req.gpu_milli if req.gpu_count > 0 else 0,
            gpu_models=req.gpu_models,
            mem_bytes=req.mem_bytes if with_mem else 0,
        )


@dataclass(frozen=True, slots=True)
class WorkloadMix:
    """A distribution over task shapes; weights sum to 1."""

    shapes: tuple[TaskShape, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.shapes) != len(self.weights):
            raise ValueError("shapes and weights differ in length")
        if any(w < 0 for w in self.weights):
            raise ValueError("negative weight")

    def __len__(self) -> int:
        return len(self.shapes)

    @classmethod
    def from_requests(
        cls,
        requests: Iterable[ResourceRequest],
        *,
        include_cpu_only: bool = True,
        with_mem: bool = False,
        coverage: float = 1.0,
    ) -> WorkloadMix:
        """Shape frequencies of `requests`.

        CPU-only requests are left out unless `include_cpu_only` (they never fragment GPUs but
        compete for CPU). With `coverage` < 1 only the most popular shapes that together
        account for that share of requests are kept, then renormalized.
        """
        counts: Counter[TaskShape] = Counter()
        for r in requests:
            if r.gpu_count == 0 and not include_cpu_only:
                continue
            counts[TaskShape.of(r, with_mem=with_mem)] += 1
        return cls.from_counts(counts, coverage=coverage)

    @classmethod
    def from_counts(cls, counts: Counter[TaskShape], *, coverage: float = 1.0) -> WorkloadMix:
        total = sum(counts.values())
        if total <= 0:
            return cls((), ())
        ranked = sorted(
            counts.items(),
            key=lambda kv: (-kv[1], kv[0].cpu_milli, kv[0].gpu_milli, kv[0].gpu_count),
        )
        kept: list[tuple[TaskShape, int]] = []
        cum = 0
        for shape, n in ranked:
            if kept and cum >= coverage * total:
                break
            kept.append((shape, n))
            cum += n
        return cls(tuple(s for s, _ in kept), tuple(n / cum for _, n in kept))
