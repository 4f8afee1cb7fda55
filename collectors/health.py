"""What the fleet looks like now: per-node health, the immutable `FleetView` snapshot, the
reconnect backoff and the text/JSON rendering `fleetdeck collect --once` prints.

Pure code: no I/O, the clock and the random source are passed in.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from types import MappingProxyType
from typing import Any, Literal

from collectors.formatting import bytes_short
from collectors.models import ProbeHello, ProbeRecord
from collectors.sources.docker import ContainerSample
from collectors.sources.slurm import SlurmJobSample, SlurmNodeSample

NodeState = Literal["unknown", "up", "degraded", "unreachable"]
STATES: tuple[NodeState, ...] = ("up", "degraded", "unreachable", "unknown")


@dataclass(frozen=True, slots=True)
class NodeHealth:
    """A node's state with the reason (empty when simply up) and when it last changed."""

    state: NodeState = "unknown"
    reason: str = ""
    since: float = 0.0


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node in a `FleetView`: health, the latest probe record and containers."""

    name: str
    pool: str
    transport: str
    labels: Mapping[str, str]
    health: NodeHealth
    hello: ProbeHello | None = None
    record: ProbeRecord | None = None
    last_seen: float | None = None  # local time the last probe line arrived
    probe_mode: str | None = None  # python | shell
    probe_restarts: int = 0
    connects: int = 0
    containers: tuple[ContainerSample, ...] | None = None  # None: never read
    containers_ts: float | None = None
    docker_error: str | None = None


@dataclass(frozen=True, slots=True)
class SlurmPoolView:
    """A Slurm pool as its controller reported it at `ts` (None: not read yet)."""

    pool: str
    login_node: str
    ts: float | None = None
    nodes: tuple[SlurmNodeSample, ...] = ()
    jobs: tuple[SlurmJobSample, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class FleetView:
    """An immutable snapshot of the fleet; the collector publishes a new one on every change."""

    ts: float
    interval_s: float
    nodes: Mapping[str, NodeView] = field(default_factory=lambda: MappingProxyType({}))
    slurm: Mapping[str, SlurmPoolView] = field(default_factory=lambda: MappingProxyType({}))
    version: int = 0

    def counts(self) -> dict[NodeState, int]:
        """How many nodes are in each state."""
        out: dict[NodeState, int] = dict.fromkeys(STATES, 0)
        for node in self.nodes.values():
            out[node.health.state] += 1
        return out

    def records(self) -> list[ProbeRecord]:
        return [n.record for n in self.nodes.values() if n.record is not None]


def freeze(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays: `base_s * factor**attempt`, capped at `max_s`, with full jitter
    over [1 - jitter, 1] of that so a fleet that dropped at once does not reconnect at once.
    """

    base_s: float = 1.0
    factor: float = 2.0
    max_s: float = 60.0
    jitter: float = 0.5

    def delay_s(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        raw = min(self.max_s, self.base_s * self.factor ** min(attempt, 32))
        return raw * (1.0 - self.jitter * rand())


def stale_reason(last_seen: float | None, now: float, interval_s: float,
                 *, grace_intervals: float = 2.5) -> str | None:
    """Why an up node should count as degraded because its samples stopped, or None."""
    if last_seen is None:
        return None
    age = now - last_seen
    if age > grace_intervals * interval_s:
        return f"no sample for {age:.0f} s (interval {interval_s:g} s)"
    return None


# -- rendering -------------------------------------------------------------------------------
def to_jsonable(value: Any) -> Any:
    """Dataclasses, mappings and tuples as plain JSON values."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN
        return None
    return value


def format_view(view: FleetView, fmt: Literal["table", "json"] = "table") -> str:
    """The fleet as `fleetdeck collect --once` prints it."""
    if fmt == "json":
        return json.dumps(to_jsonable(view), indent=2, sort_keys=False)
    header = ("NODE", "STATE", "POOL", "CPU%", "MEM USED/TOTAL", "GPUS", "GPU%", "GPU MEM",
              "CTRS", "REASON")
    rows: list[tuple[str, ...]] = [header]
    for name in sorted(view.nodes):
        node = view.nodes[name]
        rec = node.record
        host = rec.host if rec else None
        gpus = rec.gpus if rec else ()
        util = [g.util_pct for g in gpus if g.util_pct is not None]
        gmem_used = sum(g.mem_used_bytes or 0 for g in gpus)
        gmem_total = sum(g.mem_total_bytes or 0 for g in gpus)
        running = (sum(1 for c in node.containers if c.state == "running")
                   if node.containers is not None else None)
        reason = node.health.reason or node.docker_error or ""
        if rec and rec.errors and not reason:
            reason = "; ".join(rec.errors)
        rows.append((
            name,
            node.health.state,
            node.pool,
            _num(host.cpu_util_pct if host else None),
            f"{bytes_short(host.mem_used_bytes if host else None)}/"
            f"{bytes_short(host.mem_total_bytes if host else None)}",
            str(len(gpus)) if rec else "-",
            _num(sum(util) / len(util) if util else None),
            f"{bytes_short(gmem_used)}/{bytes_short(gmem_total)}" if gpus else "-",
            "-" if running is None else str(running),
            reason[:80],
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    counts = view.counts()
    lines.append("")
    lines.append(", ".join(f"{counts[s]} {s}" for s in STATES if counts[s]) or "no nodes")
    for pool in sorted(view.slurm):
        sv = view.slurm[pool]
        if sv.error:
            lines.append(f"slurm pool {pool} (login {sv.login_node}): {sv.error}")
            continue
        gpus_total = sum(n.gpus or 0 for n in sv.nodes)
        gpus_alloc = sum(n.gpus_alloc or 0 for n in sv.nodes)
        active = sum(1 for j in sv.jobs if j.state in ("RUNNING", "PENDING", "CONFIGURING"))
        lines.append(
            f"slurm pool {pool}: {len(sv.nodes)} nodes, GPUs {gpus_alloc}/{gpus_total} "
            f"allocated, {active} jobs running or pending"
        )
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
