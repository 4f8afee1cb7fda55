"""Why a task waits: `WaitReason` (a `WaitKind` and one line a person reads), and the
human-readable pieces of that line: request descriptions, sizes, times."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from collectors.formatting import bytes_text
from scheduler.fit import FleetState
from scheduler.models import ResourceRequest
from scheduler.quota import gpus_text

WAITING_PREFIX = "waiting: "  # starts every reason but `never fits` (the console drops it)


class WaitKind(StrEnum):
    """What a task waits for."""

    NEVER_FITS = "never_fits"  # not even on an empty fleet
    CAPACITY = "capacity"  # free resources (it may hold the backfill reservation)
    QUOTA = "quota"  # its user, project or team is over quota
    BEHIND = "behind"  # fits now, but would delay the reserved task (or backfill is off)
    PREEMPTING = "preempting"  # running jobs are being preempted for it; starts when they leave


@dataclass(frozen=True, slots=True)
class WaitReason:
    """Why a queued task did not start this cycle: `kind` for programs, `text` for people."""

    kind: WaitKind
    text: str

    def __str__(self) -> str:
        return self.text

    def noted(self, note: str) -> WaitReason:
        """The same reason with "; `note`" appended to its text."""
        return WaitReason(self.kind, f"{self.text}; {note}")


def cpus_text(cpu_milli: int) -> str:
    n = cpu_milli / 1000
    return f"{n:g} CPU" + ("" if n == 1 else "s")


def _models(req: ResourceRequest) -> str:
    return " or ".join(sorted(req.gpu_models))


def gpu_text(req: ResourceRequest) -> str:
    """The GPU part of a request: "4 x A100", "4 GPUs", "0.25 GPU", "1 x H100 (>= 80 GiB)"."""
    models = "/".join(sorted(req.gpu_models))
    amount = gpus_text(req.gpu_milli) if req.fractional else str(req.gpu_count)
    if models:
        text = f"{amount} x {models}"
    elif req.fractional:
        text = f"{amount} GPU"
    else:
        text = f"{amount} GPU" + ("" if req.gpu_count == 1 else "s")
    if req.min_gpu_mem_bytes:
        text += f" (>= {bytes_text(req.min_gpu_mem_bytes)})"
    return text


def where_text(req: ResourceRequest) -> str:
    """Placement constraints as a suffix: " in pool train on node gpu03 with labels zone=a"."""
    parts = []
    if req.pool is not None:
        parts.append(f" in pool {req.pool}")
    if req.node is not None:
        parts.append(f" on node {req.node}")
    if req.labels:
        parts.append(" with labels " + ",".join(f"{k}={v}" for k, v in sorted(req.labels.items())))
    return "".join(parts)


def host_text(req: ResourceRequest) -> str:
    """CPU and memory part: "8 CPUs and 64 GiB memory" (memory left out when not asked)."""
    text = cpus_text(req.cpu_milli)
    if req.mem_bytes:
        text += f" and {bytes_text(req.mem_bytes)} memory"
    return text


def capacity_reason(state: FleetState, req: ResourceRequest) -> str:
    """Why `req` does not fit now (it can fit on an empty fleet)."""
    where = where_text(req)
    if req.gpu_count == 0:
        return f"needs {host_text(req)}{where}, no eligible node has that free"
    need = gpu_text(req)
    block, node = state.largest_free_block(req)
    if req.fractional:
        if block >= req.gpu_milli:
            return (
                f"needs {need} with {host_text(req)}{where}, "
                "GPUs with that share free lack CPU or memory"
            )
        if node is None:
            return f"needs {need}{where}, no eligible GPU has any share free"
        return f"needs {need}{where}, largest free share is {gpus_text(block)} GPU on node {node}"
    if block >= req.gpu_count:
        return (
            f"needs {need} with {host_text(req)}{where}, "
            f"nodes with {req.gpu_count} free GPUs lack CPU or memory"
        )
    if node is None:
        return f"needs {need}{where}, no eligible GPU is free"
    return f"needs {need}{where}, largest free block is {block} on node {node}"


def never_reason(state: FleetState, req: ResourceRequest) -> str:
    """Why `req` cannot fit even on an empty fleet."""
    where = where_text(req)
    if not state.static.node_mask(req).any():
        if req.node is not None and req.node not in state.static.index:
            return f"never fits: no node named {req.node}"
        return f"never fits: no schedulable node{where}"
    if req.gpu_count > 0:
        gpu_only = replace(req, cpu_milli=0, mem_bytes=0)
        n = req.gpu_count
        gpus = "a GPU" if req.fractional else f"{n} GPU" + ("" if n == 1 else "s")
        if req.gpu_models:
            gpus += f" of model {_models(req)}"
        if req.min_gpu_mem_bytes:
            gpus += f" with >= {bytes_text(req.min_gpu_mem_bytes)} memory"
        if not state.can_ever_fit(gpu_only):
            return f"never fits: no node{where} has {gpus}"
        return f"never fits: no node{where} with {gpus} has {host_text(req)}"
    return f"never fits: no node{where} has {host_text(req)}"
