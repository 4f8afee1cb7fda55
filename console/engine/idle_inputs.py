"""What the idle policy reads from the store, and how the engine says it cannot judge.

- `running_gpu_jobs`: running jobs that hold GPUs as `IdleJob`s. A Slurm job's GPUs are not
  placed by fleetdeck: the probe finds its processes on a node (FLEETDECK_JOB_ID) with the
  GPUs Slurm gave it (CUDA_VISIBLE_DEVICES / SLURM_JOB_GPUS) in `job_samples`.
- `usage_rows`: GPU samples of the jobs' nodes, and each job's CPU from the probe
  (`job_samples`, every executor) and Docker's container stats (`container_samples`). CPU rows
  count only from the node the job runs on (several bed nodes share one /proc).
- `BlindSpot`: when the policy is on and cannot judge any running GPU job, one log line (and
  one again only after it could judge some), and the note the Policies screen shows.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from collectors.store import Store
from collectors.store.audit import utc
from scheduler.journal import JobRow
from scheduler.policies.idle import IdleStatus, IdleVerdict
from scheduler.policies.idle_config import IdleJob
from scheduler.runner import epoch

log = logging.getLogger(__name__)
Location = tuple[str, tuple[int, ...]]


def idle_job(r: JobRow, where: Location | None = None) -> IdleJob:
    node, gpus = where if where is not None else (r.node or "", tuple(r.gpu_indices))
    return IdleJob(job_id=str(r.id), node=node, gpu_indices=gpus,
                   started_at=epoch(r.started_at) or epoch(r.submitted_at) or 0.0,
                   user=r.user, project=r.project, pool=r.pool, kind=r.kind or "batch",
                   labels=dict(r.spec.labels), protect=r.spec.protect)


def running_gpu_jobs(store: Store, rows: Sequence[JobRow], since: float) -> list[IdleJob]:
    """Running jobs holding GPUs; Slurm jobs located from the probe's job samples."""
    placed = [r for r in rows if r.node is not None and r.gpu_indices]
    unplaced = [r for r in rows if not r.gpu_indices and r.spec.gpus > 0]
    found = job_locations(store, [r.id for r in unplaced], since) if unplaced else {}
    out = [idle_job(r) for r in placed]
    for r in unplaced:
        seen = found.get(r.id, {})
        # the node fleetdeck sent it to first (a login node that also runs it), else any
        node = r.node if r.node in seen else next(iter(sorted(seen)), None)
        out.append(idle_job(r, (node, seen[node]) if node is not None else None))
    return out


def job_locations(store: Store, job_ids: Sequence[int], since: float,
                  ) -> dict[int, dict[str, tuple[int, ...]]]:
    """job id -> node -> GPU indices its processes were given, from recent job samples."""
    rows = store.con.execute(
        "SELECT job_id, node, arg_max(gpu_indices, ts) FROM job_samples "
        "WHERE ts >= ? AND list_contains(?, job_id) AND gpu_indices IS NOT NULL "
        "GROUP BY job_id, node", [utc(since), list(job_ids)]).fetchall()
    out: dict[int, dict[str, tuple[int, ...]]] = {}
    for job_id, node, gpus in rows:
        out.setdefault(int(job_id), {})[str(node)] = tuple(int(g) for g in gpus)
    return out


def usage_rows(store: Store, jobs: Sequence[IdleJob], since: float,
               ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """GPU samples of the jobs' nodes and the jobs' CPU samples, since `since`."""
    nodes = sorted({j.node for j in jobs})
    ids = [int(j.job_id) for j in jobs]
    node_of = {int(j.job_id): j.node for j in jobs}
    gpu = store.con.execute(
        "SELECT node, gpu_index, ts, util_pct, mem_used_bytes FROM gpu_samples "
        "WHERE ts >= ? AND list_contains(?, node)", [utc(since), nodes]).fetchall()
    cpu_rows = store.con.execute(
        "SELECT job_id, node, ts, cpu_util_pct FROM job_samples "
        "WHERE ts >= ? AND list_contains(?, job_id) AND cpu_util_pct IS NOT NULL "
        "UNION ALL "
        "SELECT job_id, node, ts, cpu_util_pct FROM container_samples "
        "WHERE ts >= ? AND job_id IS NOT NULL AND list_contains(?, job_id)",
        [utc(since), ids, utc(since), ids]).fetchall()
    cpu = [(job_id, ts, pct) for job_id, node, ts, pct in cpu_rows
           if node_of.get(int(job_id)) == node]
    return gpu, cpu


def latest_job_usage(store: Store, job_id: int, since: float) -> dict[str, Any] | None:
    """The job's processes in the newest probe sample since `since` (node, procs, CPU, RSS)."""
    row = store.con.execute(
        "SELECT ts, node, procs, cpu_time_s, cpu_util_pct, rss_bytes, gpu_indices "
        "FROM job_samples WHERE ts >= ? AND job_id = ? ORDER BY ts DESC LIMIT 1",
        [utc(since), job_id]).fetchone()
    if row is None:
        return None
    keys = ("ts", "node", "procs", "cpu_time_s", "cpu_util_pct", "rss_bytes", "gpu_indices")
    return dict(zip(keys, row, strict=True))


@dataclass
class BlindSpot:
    """Says once that the idle policy cannot judge any running GPU job, and why."""

    note: str | None = None

    def update(self, verdicts: Mapping[str, IdleVerdict]) -> str | None:
        """The note for the Policies screen (None while some job can be judged)."""
        lacking = [v for v in verdicts.values() if v.status == IdleStatus.NO_DATA
                   and v.reason.startswith("not enough data")]
        judged = any(v.status in (IdleStatus.IDLE, IdleStatus.BUSY) for v in verdicts.values())
        if not lacking or judged:
            if self.note is not None:
                log.info("idle policy: can judge running GPU jobs again")
            self.note = None
            return None
        reasons = Counter(_signal_of(v) for v in lacking)
        top, _ = reasons.most_common(1)[0]
        note = (f"idle policy cannot judge any of {len(lacking)} running GPU job"
                f"{'s' if len(lacking) != 1 else ''}: {top}")
        if self.note is None:
            log.warning("%s", note)
        self.note = note
        return note


def _signal_of(v: IdleVerdict) -> str:
    missing = v.evidence.get("missing")
    return str(missing) if missing else v.reason.removeprefix("not enough data: ")
