"""Frozen telemetry samples: what one probe line says about one node at one instant.

Times are epoch seconds (`ts: float`, UTC). Units are in field names. `None` means the node
could not tell (a GPU field the driver does not support, a file that could not be read); it is
stored as NULL, never as 0.

Field names match the store's columns (`collectors.store.schema`) so ingest maps them 1:1.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NodeSample:
    """Host telemetry: one row of `node_samples` plus the static facts of the `nodes` table."""

    ts: float
    node: str
    hostname: str | None
    kernel: str | None
    uptime_s: float | None
    cpu_model: str | None
    cpu_count: int | None
    cpu_util_pct: float | None
    per_core_util_pct: tuple[float, ...]
    load1: float | None
    load5: float | None
    load15: float | None
    mem_total_bytes: int | None
    mem_used_bytes: int | None
    mem_available_bytes: int | None
    swap_total_bytes: int | None
    swap_used_bytes: int | None
    net_rx_bytes: int | None  # counters since boot, physical interfaces
    net_tx_bytes: int | None


@dataclass(frozen=True, slots=True)
class DiskSample:
    """Use of one configured path's filesystem (`os.statvfs`, as `df` counts it)."""

    ts: float
    node: str
    path: str
    used_bytes: int | None
    total_bytes: int | None


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One GPU at one instant; `None` where the driver does not support the query."""

    ts: float
    node: str
    gpu_index: int
    uuid: str | None
    model: str | None
    mem_total_bytes: int | None
    mem_used_bytes: int | None
    util_pct: float | None
    mem_util_pct: float | None
    temp_c: float | None
    power_w: float | None
    power_limit_w: float | None
    sm_clock_mhz: int | None
    ecc_corrected: int | None  # volatile counts since driver load
    ecc_uncorrected: int | None
    retired_pages: int | None
    retired_pending: bool | None
    remap_failure: bool | None
    mig_mode: bool | None
    remap_pending: bool | None = None  # rows waiting to be remapped (NVML isPending)


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A host process holding GPU memory, attributed to a container and job when known."""

    ts: float
    node: str
    gpu_index: int | None
    uuid: str | None
    pid: int
    gpu_mem_used_bytes: int | None
    command: str | None
    container_id: str | None  # full 64-hex id from the process's cgroup
    job_id: int | None  # from FLEETDECK_JOB_ID in its environment, or mapped from the container


@dataclass(frozen=True, slots=True)
class JobSample:
    """One fleetdeck job's processes on a node in one interval (found by FLEETDECK_JOB_ID)."""

    ts: float
    node: str
    job_id: int
    procs: int
    cpu_time_s: float | None  # CPU seconds of the processes alive now
    cpu_util_pct: float | None  # over the last interval, 100 = one core; None on the first
    rss_bytes: int | None
    gpu_indices: tuple[int, ...] | None  # from CUDA_VISIBLE_DEVICES / SLURM_JOB_GPUS


@dataclass(frozen=True, slots=True)
class GpuEvent:
    """A critical GPU event seen by the probe.

    kind: `xid` (NVML Xid critical error, `code` = Xid number), `ecc_uncorrected` (new
    uncorrected ECC errors, `code` = how many), `retired_pending` (pages waiting for
    retirement), `remap_failure` (row remapping failed).
    """

    ts: float
    node: str
    gpu_index: int | None
    uuid: str | None
    kind: str
    code: int | None
    detail: str | None


@dataclass(frozen=True, slots=True)
class ProbeHello:
    """The first line a probe writes: who is answering, before any sample."""

    node: str
    ts: float
    probe_version: str
    mode: str  # python | shell
    python_version: str | None
    hostname: str | None
    kernel: str | None
    pid: int | None
    interval_s: float | None


@dataclass(frozen=True, slots=True)
class ProbeRecord:
    """Everything one probe sample line carries.

    gpu_source: `nvml`, `nvidia-smi`, or `none` (no GPU or no way to read them). `errors` are
    one-line notes on what could not be read this interval (e.g. `nvml: Driver Not Loaded`);
    a record with errors is still valid, its unreadable fields are `None`.
    """

    node: str
    ts: float
    seq: int
    gpu_source: str
    driver_version: str | None
    host: NodeSample
    gpus: tuple[GpuSample, ...]
    processes: tuple[GpuProcess, ...]
    events: tuple[GpuEvent, ...]
    disks: tuple[DiskSample, ...]
    errors: tuple[str, ...]
    jobs: tuple[JobSample, ...] = ()


ProbeMessage = ProbeHello | ProbeRecord
