"""What the engine answers: one msgspec Struct per kind of reply.

Replies may grow fields (clients ignore what they do not know); `tests/unit/test_api_table.py`
and the authorization matrix decode real replies into these types. Free-form parts (a job's
spec, audit evidence, report cells) stay JSON objects.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class Reply(msgspec.Struct, kw_only=True):
    """Base of every reply type."""


class HelloReply(Reply):
    protocol: int
    engine: str
    pid: int
    readonly: bool
    user: str
    role: str


class StatusReply(Reply):
    engine: str
    pid: int
    uptime_s: float
    store: str
    socket: str
    config: str
    nodes_configured: int
    fleet_id: str
    caller: str
    role: str
    faults: list[str]  # what is failing now, e.g. "store: writes failing since ..."
    notify: dict[str, Any] | None = None  # deliveries: channels, sent, failed, in flight
    metrics: dict[str, Any] | None = None  # the /metrics endpoint, when [metrics] serves one


class DbInfo(Reply):
    path: str
    schema_version: int
    size_bytes: int
    tables: dict[str, int]


class Stopping(Reply):
    stopping: bool


class WhoAmI(Reply):
    user: str
    role: str
    gpus_in_use: float  # GPUs the caller's queued-to-running jobs hold now
    gpu_quota: float | None  # the caller's [[users]] gpu_quota; None: none set
    gpu_h_today: float  # GPU-hours allocated since 00:00 UTC
    spend_today: float  # the chargeback total since 00:00 UTC, in `currency`
    currency: str


class NodeRow(Reply):
    name: str
    host: str | None
    pool: str | None
    transport: str | None
    labels: str | None
    state: str | None
    state_reason: str | None
    cordoned: bool | None
    gpu_count: int | None
    gpu_model: str | None
    last_seen: datetime | None
    jobs_run_as: str | None = None  # "each job's owner", or the login account


class AuditRow(Reply):
    id: int
    ts: datetime
    actor: str
    action: str
    target_kind: str
    target: str
    reason: str | None
    evidence: str | None
    dry_run: bool | None


class NodeHistory(Reply):
    gpus: dict[str, list[list[Any]]]  # gpu index -> [ts, util_pct, mem_used_bytes, power_w]
    cpu: list[list[Any]]  # [ts, cpu_util_pct, mem_used_bytes]


class Percentiles(Reply):
    n: int
    p50_s: float | None
    p99_s: float | None
    max_s: float | None


class IngestStatsReply(Reply):
    sweep: Percentiles
    write_lag: Percentiles
    data_age: Percentiles
    rollup: Percentiles
    rows_written: int
    threads: list[dict[str, Any]]  # {"tid": native thread id, "name": ...}


class Submitted(Reply):
    ids: list[int]


class JobInfo(Reply):
    id: int
    name: str | None
    user: str
    project: str | None
    team: str | None
    state: str
    reason: str | None
    priority: int
    pool: str | None
    node: str | None
    gpu_indices: list[int]
    gpu_count: int
    gpu_milli: int
    gpus: float
    executor: str | None
    submitted_at: datetime | None  # ISO 8601 on the wire, UTC
    started_at: datetime | None
    ended_at: datetime | None
    exit_code: int | None
    attempt: int
    spec: dict[str, Any]  # command, env and workdir hidden from those not allowed to see them
    kind: str | None = None
    gpu_model: str | None = None
    cpu_milli: int | None = None
    mem_bytes: int | None = None
    max_runtime_s: float | None = None
    external_id: str | None = None
    array_parent: int | None = None
    array_index: int | None = None
    burst: bool = False
    preemptions: int = 0


class IdleVerdictInfo(Reply):
    """The idle policy's verdict on a running GPU job, with the numbers behind it."""

    status: str  # idle | busy | grace | protected | snoozed | disabled | no_data | no_gpu
    label: str  # idle, busy, exempt (grace), not enough data, ...
    reason: str
    summary: str  # `label: reason`, one line
    window_s: float | None = None
    samples: int | None = None
    gpu_util_max_pct: float | None = None
    gpu_util_mean_pct: float | None = None
    gpu_mem_held_bytes: int | None = None
    gpu_mem_growth_bytes: int | None = None
    cpu_util_max_pct: float | None = None
    signals: list[str] = []  # gpu, cpu: what the verdict used
    missing: str | None = None  # the signal that was missing, and why
    fallback: str | None = None  # gpu_only when a missing CPU signal was judged without it


class JobUsage(Reply):
    """A job's processes in the newest probe sample (found by FLEETDECK_JOB_ID)."""

    ts: datetime
    node: str
    procs: int | None
    cpu_time_s: float | None
    cpu_util_pct: float | None
    rss_bytes: int | None
    gpu_indices: list[int] | None


class Explanation(Reply, omit_defaults=True):
    """Keys the runner and the policies had nothing for are left out, as before."""

    id: int
    name: str | None
    state: str
    reason: str | None
    events: list[dict[str, Any]]
    placement: dict[str, Any] | None = None
    reserved_start: float | None = None
    burst: list[str] = []
    idle: IdleVerdictInfo | None = None
    usage: JobUsage | None = None
    priority_class: dict[str, Any] | None = None  # name, priority, preemptible
    fair_share: float | None = None
    preemptions: list[dict[str, Any]] = []


class Preview(Reply):
    placeable: bool
    node: str | None
    gpu_indices: list[int]
    reason: str


class Suggestion(Reply):
    gpus: float
    gpu_model: str | None
    based_on: int
    of: int


class IdleEntry(Reply):
    job: int
    name: str | None
    user: str
    node: str | None
    state: str
    dry_run: bool
    evidence: dict[str, Any]
    since: float | None = None
    warned_at: float | None = None
    stop_at: float | None = None


class SnoozeEntry(Reply):
    job: int
    user: str
    reason: str
    until: str


class NodeReason(Reply):
    node: str
    reason: str


class PoliciesReply(Reply):
    idle: list[IdleEntry]
    snoozed: list[SnoozeEntry]
    burst: list[dict[str, Any]]
    cordoned: list[NodeReason]
    drained: list[dict[str, Any]]
    idle_unjudged: list[dict[str, Any]] = []
    idle_note: str | None = None


class Cordoned(Reply):
    node: str
    cordoned: bool
    reason: str
    recovered_gpus: list[int] = []


class GpuInfo(Reply):
    index: int
    model: str | None
    util_pct: float | None
    mem_used_bytes: int | None
    mem_total_bytes: int | None
    alloc_milli: int
    jobs: list[int]
    idle: bool
    healthy: bool
    uuid: str | None = None
    temp_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    ecc_uncorrected: int | None = None


class FleetNode(Reply):
    name: str
    pool: str | None
    state: str
    state_reason: str | None
    cordoned: bool
    drained_reason: str | None
    cpu_count: int | None
    cpu_util_pct: float | None
    mem_used_bytes: int | None
    mem_total_bytes: int | None
    gpus: list[GpuInfo]
    jobs: list[int]
    # filled for `fleet` with `node` or `detail` only (the Node screen); empty in a list
    # answer and in deltas, which the Fleet screen polls. Command lines of others' jobs are
    # hidden below operator
    processes: list[dict[str, Any]]
    containers: list[dict[str, Any]]
    labels: dict[str, str] = {}
    load1: float | None = None
    last_seen: float | None = None  # epoch seconds


class GpuReadings(Reply):
    """One GPU's live readings in a `NodeReadings`: what a new sample changes."""

    util_pct: float | None = None
    mem_used_bytes: int | None = None
    temp_c: float | None = None
    power_w: float | None = None


class NodeReadings(Reply):
    """A node whose record changed only in its live readings since the cursor: these fields
    replace the copy's, and `gpus[i]` its `gpus[i]`'s (same count and order). About a quarter
    of the node's bytes: every node takes a new sample each interval, little else changes."""

    name: str
    cpu_util_pct: float | None = None
    mem_used_bytes: int | None = None
    load1: float | None = None
    last_seen: float | None = None
    gpus: list[GpuReadings] = []


NODE_READINGS = ("cpu_util_pct", "mem_used_bytes", "load1", "last_seen")  # a node's, in
GPU_READINGS = GpuReadings.__struct_fields__  # `NodeReadings`, and each GPU's


class FleetDelta(Reply):
    """What changed in the live fleet since a client's cursor (`fleet_delta`): the nodes whose
    record changed, in full, and the names of nodes gone. `full`: `nodes` is the whole fleet
    (no cursor, or one too old or from another engine run): replace, do not merge. Asked with
    `readings`, a node whose only change is a new sample is in `readings`, not `nodes`."""

    cursor: int  # pass as `since` next time
    full: bool
    nodes: list[FleetNode]
    removed: list[str] = []
    readings: list[NodeReadings] = []


class Summary(Reply):
    gpus_total: int
    gpus_allocated: float
    cpus_total: int
    nodes_up: int
    queue_len: int
    running_jobs: int
    idle_warnings: int
    burst_spend_today: float
    burst_budget_today: float | None = None
    gpu_util_pct: float | None = None
    cpus_allocated: float = 0.0
    cpu_util_pct: float | None = None
    nodes_degraded: int = 0
    nodes_unreachable: int = 0
    faults: list[str] = []  # headlines of what is failing now (the header says so first)
    notify_failed: int = 0


class ReportTable(Reply):
    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    titles: list[str] = []
    kinds: list[str] = []
    totals: list[Any] | None = None


class ReportData(Reply):
    name: str
    title: str
    period: str | None
    currency: str | None
    columns: list[str]
    rows: list[list[Any]]
    tables: list[ReportTable]
    notes: list[str]
    headline: str = ""


class ReportOutput(Reply):
    """A rendered report: text, or base64 for binary formats (xlsx, parquet)."""

    format: str
    text: str | None = None
    b64: str | None = None


class Exported(Reply):
    path: str
    bytes: int


class WhatifSide(Reply):
    fleet: str
    gpus: int
    mean_queue_delay_s: float | None = None
    p95_queue_delay_s: float | None = None
    mean_jct_s: float | None = None
    mean_alloc_pct: float | None = None
    burst_gpu_h: float | None = None
    burst_cost: float | None = None


class WhatifReply(Reply):
    days: float
    jobs: int
    what_if: str
    current: WhatifSide
    changed: WhatifSide
    observed: dict[str, Any] | None = None  # what the window really had


class Reloaded(Reply):
    applied: list[str]
    needs_restart: list[str]
    reason: str


class NotifyStatus(Reply):
    deliveries: list[dict[str, Any]]  # per channel and state
    failures: list[dict[str, Any]]
    channels: list[dict[str, Any]]
    routed_until: int
    in_flight: int


class NotifyTested(Reply):
    channel: str
    type: str
    to: str
    id: str
