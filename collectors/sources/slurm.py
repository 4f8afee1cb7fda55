"""Slurm pools: nodes, partitions, GRES and jobs from the pool's login node, once per interval.

One SSH exec per interval runs `scontrol show node -o -d` and `squeue` (two controller RPCs for
the whole pool, never one per node) and the output is parsed here into `slurm_node_samples`
and `slurm_job_samples` rows. A fleetdeck job submitted through Slurm is recognised by the
comment `fleetdeck:<id>:<attempt>` and job name `fd-<id>-<attempt>` the Slurm executor sets
(also `fleetdeck.job=<id>` / `fleetdeck-<id>` from hand-written scripts).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from collectors.transport.base import Transport, TransportError

_SEP = "\x1f"  # squeue -O field suffix; cannot appear in names, comments or node lists
_JOB_FIELDS = ("JobID", "Name", "UserName", "Account", "Partition", "State", "NodeList",
               "NumNodes", "NumCPUs", "SubmitTime", "StartTime", "tres-alloc", "tres-per-node",
               "tres-per-job", "Comment")
_MARK = "@@fleetdeck"
_KEY = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/.]*)=")
_GRES_GPU = re.compile(r"gpu(?::[^:(),]+)?:(\d+)")
_JOB_TAG = re.compile(r"fleetdeck(?:\.job=|:)(\d+)")
_JOB_NAME = re.compile(r"^(?:fleetdeck-(\d+)|fd-(\d+)-\d+)$")


@dataclass(frozen=True, slots=True)
class SlurmNodeSample:
    """A Slurm node as the controller reports it: a `slurm_node_samples` row."""

    ts: float
    pool: str
    node: str
    state: str  # Slurm's state, e.g. IDLE, MIXED, ALLOCATED, DOWN+DRAIN
    partitions: tuple[str, ...]
    cpus: int | None
    cpus_alloc: int | None
    mem_bytes: int | None
    mem_alloc_bytes: int | None
    gpus: int | None
    gpus_alloc: int | None
    gres: str | None


@dataclass(frozen=True, slots=True)
class SlurmJobSample:
    """A Slurm job: a `slurm_job_samples` row. Times are epoch seconds (None: unknown)."""

    ts: float
    pool: str
    slurm_id: str
    name: str
    user: str
    account: str | None
    partition: str | None
    state: str  # PENDING, RUNNING, COMPLETED, ...
    nodes: str | None  # node list, None while pending
    gpus: int | None  # allocated if running, requested otherwise
    cpus: int | None
    submitted_at: float | None
    started_at: float | None
    job_id: int | None  # the fleetdeck job that submitted it


@dataclass(frozen=True, slots=True)
class SlurmSnapshot:
    nodes: tuple[SlurmNodeSample, ...]
    jobs: tuple[SlurmJobSample, ...]


def query_script() -> str:
    """The shell script run on the login node: both queries, each followed by its status."""
    fmt = ",".join(f"{f}:0{_SEP}" for f in _JOB_FIELDS)
    squeue = shlex.join(["squeue", "--noheader", "--all", "--states=all", f"--Format={fmt}"])
    return (
        f"echo '{_MARK} nodes'; scontrol show node --oneliner --details; echo \"{_MARK} rc $?\"; "
        f"echo '{_MARK} jobs'; {squeue}; echo \"{_MARK} rc $?\""
    )


class SlurmSource:
    """Reads one Slurm pool through its login node's transport."""

    def __init__(self, pool: str, transport: Transport, *, timeout_s: float = 30.0) -> None:
        self.pool = pool
        self.transport = transport
        self.timeout_s = timeout_s
        self._script = query_script()

    async def sample(self, ts: float) -> SlurmSnapshot:
        """Query the controller once; raises `TransportError` with one line on failure."""
        result = await self.transport.run_shell(self._script, timeout=self.timeout_s)
        sections = _sections(result.text())
        where = f"slurm pool {self.pool} (login {self.transport.node.name})"
        for name in ("nodes", "jobs"):
            if name not in sections:
                raise TransportError(f"{where}: {result.error_line()}")
            rc, _body = sections[name]
            if rc != 0:
                raise TransportError(f"{where}: {name} query failed: {result.error_line()}")
        return SlurmSnapshot(
            nodes=tuple(parse_nodes(sections["nodes"][1], self.pool, ts)),
            jobs=tuple(parse_jobs(sections["jobs"][1], self.pool, ts)),
        )


def _sections(text: str) -> dict[str, tuple[int, str]]:
    out: dict[str, tuple[int, str]] = {}
    current: str | None = None
    body: list[str] = []
    for line in text.splitlines():
        if line.startswith(_MARK + " "):
            word = line[len(_MARK) + 1:]
            if word.startswith("rc ") and current is not None:
                try:
                    rc = int(word[3:].strip())
                except ValueError:
                    rc = -1
                out[current] = (rc, "\n".join(body))
                current, body = None, []
            else:
                current, body = word.strip(), []
            continue
        if current is not None:
            body.append(line)
    return out


def parse_kv_line(line: str) -> dict[str, str]:
    """`Key=value Key=value with spaces ...` (scontrol --oneliner) into a dict."""
    keys = list(_KEY.finditer(line))
    out: dict[str, str] = {}
    for i, m in enumerate(keys):
        end = keys[i + 1].start() if i + 1 < len(keys) else len(line)
        out[m.group(1)] = line[m.end():end].strip()
    return out


def parse_nodes(text: str, pool: str, ts: float) -> list[SlurmNodeSample]:
    """`scontrol show node --oneliner` output -> node samples."""
    out: list[SlurmNodeSample] = []
    for line in text.splitlines():
        if not line.startswith("NodeName="):
            continue
        kv = parse_kv_line(line)
        gres = _none(kv.get("Gres"))
        gpus = _tres_gpus(kv.get("CfgTRES"))
        if gpus is None and gres:
            gpus = _gres_gpus(gres)
        alloc = _tres_gpus(kv.get("AllocTRES"))
        if alloc is None and kv.get("GresUsed"):
            alloc = _gres_gpus(kv["GresUsed"])
        if alloc is None and gpus is not None:
            alloc = 0
        out.append(SlurmNodeSample(
            ts=ts, pool=pool, node=kv["NodeName"],
            state=kv.get("State", "UNKNOWN"),
            partitions=tuple(p for p in (_none(kv.get("Partitions")) or "").split(",") if p),
            cpus=_int(kv.get("CPUTot")), cpus_alloc=_int(kv.get("CPUAlloc")),
            mem_bytes=_mib(kv.get("RealMemory")), mem_alloc_bytes=_mib(kv.get("AllocMem")),
            gpus=gpus, gpus_alloc=alloc, gres=gres,
        ))
    return out


def parse_jobs(text: str, pool: str, ts: float) -> list[SlurmJobSample]:
    """`squeue --Format=...` output (fields ended by the separator) -> job samples."""
    out: list[SlurmJobSample] = []
    n = len(_JOB_FIELDS)
    for line in text.splitlines():
        parts = line.split(_SEP)
        if len(parts) < n:
            continue
        f = dict(zip(_JOB_FIELDS, (p.strip() for p in parts[:n]), strict=True))
        state = f["State"]
        # tres-alloc lists gres/gpu only where accounting tracks it; else use the request.
        gpus = _tres_gpus(f["tres-alloc"])
        if gpus is None:
            gpus = _requested_gpus(f["tres-per-node"], f["tres-per-job"], _int(f["NumNodes"]))
        comment = _none(f["Comment"]) or ""
        tag = _JOB_TAG.search(comment) or _JOB_NAME.match(f["Name"])
        out.append(SlurmJobSample(
            ts=ts, pool=pool, slurm_id=f["JobID"], name=f["Name"], user=f["UserName"],
            account=_none(f["Account"]), partition=_none(f["Partition"]), state=state,
            nodes=_none(f["NodeList"]),
            gpus=gpus if gpus is not None else 0, cpus=_int(f["NumCPUs"]),
            # A pending job's StartTime is the scheduler's estimate, not a start.
            submitted_at=_time(f["SubmitTime"]),
            started_at=None if state == "PENDING" else _time(f["StartTime"]),
            job_id=int(next(g for g in tag.groups() if g)) if tag else None,
        ))
    return out


def node_rows(samples: Sequence[SlurmNodeSample]) -> list[dict[str, Any]]:
    """`slurm_node_samples` rows (ts stays epoch seconds; ingest converts)."""
    return [
        {"ts": s.ts, "pool": s.pool, "node": s.node, "state": s.state,
         "partitions": list(s.partitions), "cpus": s.cpus, "cpus_alloc": s.cpus_alloc,
         "mem_bytes": s.mem_bytes, "mem_alloc_bytes": s.mem_alloc_bytes, "gpus": s.gpus,
         "gpus_alloc": s.gpus_alloc, "gres": s.gres}
        for s in samples
    ]


def job_rows(samples: Sequence[SlurmJobSample]) -> list[dict[str, Any]]:
    """`slurm_job_samples` rows (times stay epoch seconds; ingest converts)."""
    return [
        {"ts": s.ts, "pool": s.pool, "slurm_id": s.slurm_id, "name": s.name, "user": s.user,
         "account": s.account, "partition": s.partition, "state": s.state, "nodes": s.nodes,
         "gpus": s.gpus, "cpus": s.cpus, "submitted_at": s.submitted_at,
         "started_at": s.started_at, "job_id": s.job_id}
        for s in samples
    ]


# -- field parsers ---------------------------------------------------------------------------
def _none(value: str | None) -> str | None:
    if value is None:
        return None
    v = value.strip()
    return None if v in ("", "(null)", "N/A", "n/a", "None", "none") else v


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _mib(value: str | None) -> int | None:
    n = _int(value)
    return None if n is None else n * 1024 * 1024


def _tres_gpus(tres: str | None) -> int | None:
    """`cpu=2,mem=1G,gres/gpu=2,gres/gpu:a100=2` -> 2 (the untyped total when present)."""
    tres = _none(tres)
    if not tres:
        return None
    total: int | None = None
    typed = 0
    for item in tres.split(","):
        key, _, val = item.partition("=")
        if key == "gres/gpu":
            total = _int(val)
        elif key.startswith("gres/gpu:"):
            typed += _int(val) or 0
    if total is None and typed:
        total = typed
    return total


def _gres_gpus(gres: str) -> int | None:
    """`gpu:2`, `gpu:a100:2(S:0-1)`, `gpu:a100:2,gpu:v100:1` -> total GPU count."""
    found = [int(m.group(1)) for m in _GRES_GPU.finditer(gres)]
    return sum(found) if found else None


def _requested_gpus(per_node: str, per_job: str, nodes: int | None) -> int | None:
    job = _gres_gpus(per_job.replace("gres/", "").replace("gres:", "")) if _none(per_job) else None
    if job is not None:
        return job
    if _none(per_node):
        n = _gres_gpus(per_node.replace("gres/", "").replace("gres:", ""))
        if n is not None:
            return n * (nodes or 1)
    return None


def _time(value: str) -> float | None:
    """Slurm's local `2024-05-01T12:00:00` -> epoch seconds; N/A/Unknown/None -> None."""
    v = _none(value)
    if v is None or v in ("Unknown",):
        return None
    try:
        return datetime.fromisoformat(v).timestamp()
    except ValueError:
        return None
