"""What-if planning: replay the store's recorded jobs on the current fleet and a changed one.

`fleetdeck simulate --what-if "+16 A100"` takes the last N days of jobs from the store, the
GPU nodes the store knows, and reports how queue wait, allocation and burst cost would change.
`read_history` is the only I/O (the store edge); `parse_change`, `apply_change` and
`compare` are pure.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np

from collectors.errors import InputError
from collectors.store import Store
from scheduler.jobspec import JobSpec
from scheduler.models import FleetSnapshot, GpuSlot, NodeCapacity
from scheduler.sim.replay import ReplaySummary, run_replay_seeds
from scheduler.sim.traces import TraceJob

_CHANGE = re.compile(r"^\s*([+-])\s*(\d+)\s*(?:x\s*)?([A-Za-z0-9][\w.\- ]*?)\s*$")
DEFAULT_GPUS_PER_NODE = 8


@dataclass(frozen=True, slots=True)
class Change:
    """Add (`count` > 0) or remove GPUs of one model."""

    count: int
    model: str

    def __str__(self) -> str:
        return f"{self.count:+d} {self.model}"


def parse_change(text: str, *, source: str = "--what-if") -> list[Change]:
    """`"+16 A100"`, `"-8 T4, +4 H100"` -> changes."""
    out = []
    for part in (p for p in text.split(",") if p.strip()):
        m = _CHANGE.match(part)
        if not m:
            raise InputError("command line", source,
                             'changes like "+16 A100" or "-8 T4, +4 H100"', got=part.strip())
        n = int(m.group(2))
        if n == 0:
            raise InputError("command line", source, "a non-zero GPU count", got=part.strip())
        out.append(Change(n if m.group(1) == "+" else -n, m.group(3).strip()))
    if not out:
        raise InputError("command line", source, 'changes like "+16 A100"', got=text)
    return out


def _resolve(model: str, fleet: Sequence[NodeCapacity]) -> str:
    """The fleet's full name for `model` (`A100` -> `NVIDIA A100-SXM4-80GB`), else as given."""
    names = sorted({g.model for n in fleet for g in n.gpus})
    exact = [m for m in names if m.lower() == model.lower()]
    if exact:
        return exact[0]
    partial = [m for m in names if model.lower() in m.lower()]
    return min(partial, key=len) if partial else model


def apply_change(fleet: Sequence[NodeCapacity], changes: Sequence[Change]) -> list[NodeCapacity]:
    """The fleet with GPUs added (as new nodes shaped like an existing node of the model, else
    8-GPU nodes) or removed (whole GPUs from the end of the node list)."""
    nodes = list(fleet)
    for ch in changes:
        model = _resolve(ch.model, nodes)
        like = next((n for n in nodes if n.gpus and n.gpus[0].model == model), None)
        if ch.count > 0:
            per = len(like.gpus) if like else DEFAULT_GPUS_PER_NODE
            mem = like.gpus[0].mem_total_bytes if like else 80 << 30
            left, k = ch.count, 0
            while left > 0:
                g = min(per, left)
                k += 1
                nodes.append(NodeCapacity(
                    name=f"whatif-{model.replace(' ', '_')}-{k}",
                    pool=like.pool if like else "whatif",
                    cpu_milli=like.cpu_milli if like else 16000 * g,
                    mem_bytes=like.mem_bytes if like else (128 << 30) * g,
                    gpus=tuple(GpuSlot(i, model, mem) for i in range(g)),
                    labels=dict(like.labels) if like else {}))
                left -= g
        else:
            left = -ch.count
            for i in range(len(nodes) - 1, -1, -1):
                n = nodes[i]
                if left == 0:
                    break
                if not n.gpus or n.gpus[0].model != model:
                    continue
                keep = max(0, len(n.gpus) - left)
                left -= len(n.gpus) - keep
                nodes[i] = replace(n, gpus=n.gpus[:keep])
            if left:
                have = sum(len(n.gpus) for n in fleet if n.gpus and n.gpus[0].model == model)
                raise InputError("command line", "--what-if",
                                 f"at most {have} GPUs of {model} to remove", got=str(ch))
    return nodes


@dataclass(frozen=True, slots=True)
class Side:
    label: str
    gpus: int
    summary: ReplaySummary
    burst_gpu_h: float
    burst_cost: float


@dataclass(frozen=True, slots=True)
class WhatIf:
    days: float
    jobs: int
    changes: tuple[Change, ...]
    base: Side
    changed: Side

    def to_json(self) -> dict[str, object]:
        def side(s: Side) -> dict[str, object]:
            return {"fleet": s.label, "gpus": s.gpus,
                    "mean_queue_delay_s": _r(s.summary.mean_queue_delay_s),
                    "p95_queue_delay_s": _r(s.summary.p95_queue_delay_s),
                    "mean_jct_s": _r(s.summary.mean_jct_s),
                    "mean_alloc_pct": _r(s.summary.mean_alloc_pct),
                    "burst_gpu_h": _r(s.burst_gpu_h), "burst_cost": _r(s.burst_cost)}

        return {"days": self.days, "jobs": self.jobs,
                "what_if": ", ".join(str(c) for c in self.changes),
                "current": side(self.base), "changed": side(self.changed)}


def _r(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 2)


def burst_estimate(jobs: Sequence[TraceJob], summary: ReplaySummary, *, wait_threshold_s: float,
                   cloud_gpu_hour: float) -> tuple[float, float]:
    """GPU-hours and money bursting would have cost: jobs that waited past the threshold run
    in the cloud instead (each run's delays are in job order; averaged over seeds)."""
    runnable = sorted((j for j in jobs if j.duration_s is not None),
                      key=lambda j: j.submit_time_s)
    hours = []
    for run in summary.runs:
        delays = np.asarray(run.queue_delay_s)
        gpu_h = 0.0
        for job, delay in zip(runnable, delays, strict=False):
            if delay > wait_threshold_s and job.duration_s:
                gpu_h += job.request.total_gpu_milli / 1000 * job.duration_s / 3600
        hours.append(gpu_h)
    gpu_h = float(np.mean(hours)) if hours else 0.0
    return gpu_h, gpu_h * cloud_gpu_hour


def compare(fleet: Sequence[NodeCapacity], jobs: Sequence[TraceJob], changes: Sequence[Change],
            *, days: float, policy: str = "fleetdeck", seeds: Sequence[int] = (42,),
            wait_threshold_s: float = 300.0, cloud_gpu_hour: float = 0.0) -> WhatIf:
    changed = apply_change(fleet, changes)
    sides = []
    for label, nodes in (("current", list(fleet)), ("changed", changed)):
        summary = run_replay_seeds(FleetSnapshot(nodes=tuple(nodes)), jobs, policy, seeds)
        gpu_h, cost = burst_estimate(jobs, summary, wait_threshold_s=wait_threshold_s,
                                     cloud_gpu_hour=cloud_gpu_hour)
        sides.append(Side(label, sum(len(n.gpus) for n in nodes), summary, gpu_h, cost))
    return WhatIf(days, len(jobs), tuple(changes), sides[0], sides[1])


def read_history(store: Store, *, now: datetime, days: float,
                 ) -> tuple[list[NodeCapacity], list[TraceJob]]:
    """The store's GPU nodes (burst pools left out) and the jobs that started in the window."""
    nodes = []
    burst = {r[0] for r in store.con.execute(
        "SELECT DISTINCT node FROM burst_instances WHERE node IS NOT NULL").fetchall()}
    mem = {(r[0], r[1]): r[2] for r in store.con.execute(
        "SELECT node, gpu_index, max(mem_total_bytes) FROM gpu_samples_1h "
        "GROUP BY ALL").fetchall()}
    for name, pool, labels, cpus, mem_total, gpus, model in store.con.execute(
            "SELECT name, pool, labels, cpu_count, mem_total_bytes, gpu_count, gpu_model "
            "FROM nodes ORDER BY name").fetchall():
        if name in burst or not gpus:
            continue
        nodes.append(NodeCapacity(
            name=name, pool=pool or "default", cpu_milli=(cpus or 1) * 1000,
            mem_bytes=mem_total or 0, labels=json.loads(labels or "{}"),
            gpus=tuple(GpuSlot(i, model or "unknown", mem.get((name, i)) or 0)
                       for i in range(gpus))))
    since = now - timedelta(days=days)
    jobs = []
    for jid, spec, submitted, started, ended, user, project in store.con.execute(
            "SELECT id, spec, epoch(submitted_at), epoch(started_at), epoch(ended_at), user, "
            "project FROM jobs WHERE submitted_at >= ? AND started_at IS NOT NULL "
            "ORDER BY submitted_at", [since]).fetchall():
        try:
            request = JobSpec.from_dict(json.loads(spec)).to_request()
        except InputError:
            continue
        end = ended if ended is not None else now.timestamp()
        jobs.append(TraceJob(name=str(jid), request=request, submit_time_s=float(submitted),
                             duration_s=max(1.0, end - started), user=user or "",
                             project=project or ""))
    return nodes, jobs


def history(store: Store, days: float, *, now: float,
            ) -> tuple[list[NodeCapacity], list[TraceJob]]:
    """The store side of a what-if (quick): the fleet and the last `days` of jobs."""
    from datetime import UTC

    return read_history(store, now=datetime.fromtimestamp(now, UTC).replace(tzinfo=None),
                        days=days)


def observed(store: Store, days: float, *, now: float) -> dict[str, object]:
    """What the window really had, beside the replay: jobs submitted, how long the ones that
    started waited, and the burst spend recorded (what the chargeback bills)."""
    end = datetime.fromtimestamp(now, UTC).replace(tzinfo=None)
    since = end - timedelta(days=days)
    jobs, started, mean_s, p95_s = store.con.execute(
        "SELECT count(*), count(started_at), avg(epoch(started_at) - epoch(submitted_at)), "
        "quantile_cont(epoch(started_at) - epoch(submitted_at), 0.95) FROM jobs "
        "WHERE submitted_at >= ?", [since]).fetchone() or (0, 0, None, None)
    (burst,) = store.con.execute("SELECT coalesce(sum(amount), 0) FROM spend WHERE ts >= ?",
                                 [since]).fetchone() or (0.0,)
    return {"jobs_submitted": int(jobs), "jobs_started": int(started),
            "mean_queue_delay_s": None if mean_s is None else round(float(mean_s), 2),
            "p95_queue_delay_s": None if p95_s is None else round(float(p95_s), 2),
            "burst_cost": round(float(burst), 2)}


def whatif(hist: tuple[list[NodeCapacity], list[TraceJob]], *, changes: Sequence[str],
           days: float, policy: str, wait_threshold_s: float,
           cloud_gpu_hour: float) -> dict[str, object]:
    """Replay history on the fleet and on the changed fleet (CPU work: run it off the loop)."""
    nodes, jobs = hist
    if not nodes:
        raise InputError("store", "nodes", "GPU nodes with known GPU counts (collect first)")
    parsed = [c for text in changes for c in parse_change(text)]
    return compare(nodes, jobs, parsed, days=days, policy=policy,
                   wait_threshold_s=wait_threshold_s, cloud_gpu_hour=cloud_gpu_hour).to_json()
