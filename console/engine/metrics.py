"""Prometheus metrics from the engine's live state, with the official client library.

`MetricsState` is an immutable snapshot the engine loop publishes (the fleet view is already
immutable; job rows and spend come from one store read). `FleetMetrics.collect` turns a
snapshot into metric families on the exposition thread, never on the loop. Names are a
contract (docs/notify.md, docs/grafana/fleetdeck.json), in base units: ratios 0-1, bytes,
watts, degrees Celsius, seconds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collectors.health import FleetView

# Every exported name (the Grafana dashboard test checks its queries against these).
NODE_UP = "fleetdeck_node_up"
GPU_UTIL = "fleetdeck_gpu_utilization_ratio"
GPU_MEM_USED = "fleetdeck_gpu_memory_used_bytes"
GPU_MEM_TOTAL = "fleetdeck_gpu_memory_total_bytes"
GPU_POWER = "fleetdeck_gpu_power_watts"
GPU_TEMP = "fleetdeck_gpu_temperature_celsius"
GPU_ALLOCATED = "fleetdeck_gpu_allocated_ratio"
GPU_UNHEALTHY = "fleetdeck_gpu_unhealthy"
JOBS = "fleetdeck_jobs"
JOB_GPU_UTIL = "fleetdeck_job_gpu_utilization_ratio"
QUEUE_WAIT = "fleetdeck_queue_wait_seconds"
BURST_SPEND = "fleetdeck_burst_spend_total"
SWEEP = "fleetdeck_collect_sweep_seconds"
WRITE_LAG = "fleetdeck_store_write_lag_seconds"
# Series names a scrape shows (histograms add _bucket, _sum, _count).
EXPORTED: tuple[str, ...] = (
    NODE_UP, GPU_UTIL, GPU_MEM_USED, GPU_MEM_TOTAL, GPU_POWER, GPU_TEMP, GPU_ALLOCATED,
    GPU_UNHEALTHY, JOBS, JOB_GPU_UTIL, *(f"{h}_{s}" for h in (QUEUE_WAIT, SWEEP)
                                         for s in ("bucket", "sum", "count")),
    BURST_SPEND, WRITE_LAG)

_UP_STATES = ("up", "degraded")


@dataclass(frozen=True, slots=True)
class RunningJob:
    """A job holding GPUs, as metrics need it."""

    job_id: int
    user: str
    project: str
    node: str
    gpu_indices: tuple[int, ...]
    gpu_milli: int  # per GPU held


@dataclass(frozen=True, slots=True)
class MetricsState:
    """What one scrape shows; published whole by the engine loop."""

    view: FleetView | None = None
    running: tuple[RunningJob, ...] = ()
    job_counts: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (state, pool)
    spend: Mapping[tuple[str, str], float] = field(default_factory=dict)  # (currency, team)
    unhealthy: frozenset[tuple[str, int]] = frozenset()
    version: int = 0


def _g(name: str, doc: str, labels: Sequence[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


class FleetMetrics(Collector):
    """A custom collector: families built from the latest `MetricsState`."""

    def __init__(self) -> None:
        self.state = MetricsState()

    def collect(self) -> Iterator[Metric]:
        s = self.state  # one read: the loop swaps the reference, never mutates it
        up = _g(NODE_UP, "1 when the node answers its probe (up or degraded), else 0",
                ("node", "pool"))
        gpu = ("node", "gpu", "model")
        util = _g(GPU_UTIL, "GPU utilization, 0-1", gpu)
        used = _g(GPU_MEM_USED, "GPU memory in use", gpu)
        total = _g(GPU_MEM_TOTAL, "GPU memory", gpu)
        power = _g(GPU_POWER, "GPU power draw", gpu)
        temp = _g(GPU_TEMP, "GPU temperature", gpu)
        alloc = _g(GPU_ALLOCATED, "share of the GPU fleetdeck jobs hold, 0-1", ("node", "gpu"))
        bad = _g(GPU_UNHEALTHY, "1 when the health policy marked the GPU broken",
                 ("node", "gpu"))
        held: dict[tuple[str, int], int] = {}
        for j in s.running:
            for i in j.gpu_indices:
                held[(j.node, i)] = held.get((j.node, i), 0) + j.gpu_milli
        gpu_util: dict[tuple[str, int], float] = {}
        nodes = s.view.nodes.values() if s.view is not None else ()
        for v in nodes:
            up.add_metric([v.name, v.pool], 1.0 if v.health.state in _UP_STATES else 0.0)
            if v.record is None:
                continue
            for g in v.record.gpus:
                idx = str(g.gpu_index)
                labels = [v.name, idx, g.model or "unknown"]
                if g.util_pct is not None:
                    gpu_util[(v.name, g.gpu_index)] = g.util_pct / 100.0
                    util.add_metric(labels, g.util_pct / 100.0)
                if g.mem_used_bytes is not None:
                    used.add_metric(labels, float(g.mem_used_bytes))
                if g.mem_total_bytes is not None:
                    total.add_metric(labels, float(g.mem_total_bytes))
                if g.power_w is not None:
                    power.add_metric(labels, g.power_w)
                if g.temp_c is not None:
                    temp.add_metric(labels, g.temp_c)
                key = (v.name, g.gpu_index)
                alloc.add_metric([v.name, idx], min(1.0, held.get(key, 0) / 1000.0))
                bad.add_metric([v.name, idx], 1.0 if key in s.unhealthy else 0.0)
        jobs = _g(JOBS, "fleetdeck jobs per state and pool", ("state", "pool"))
        for (state, pool), n in sorted(s.job_counts.items()):
            jobs.add_metric([state, pool], float(n))
        job_util = _g(JOB_GPU_UTIL, "mean utilization of the GPUs a running job holds, 0-1",
                      ("job", "user", "project"))
        for j in s.running:
            seen = [gpu_util[(j.node, i)] for i in j.gpu_indices if (j.node, i) in gpu_util]
            if seen:
                job_util.add_metric([str(j.job_id), j.user, j.project], sum(seen) / len(seen))
        spend = CounterMetricFamily(BURST_SPEND.removesuffix("_total"),
                                    "money spent on burst (cloud) nodes", labels=["currency",
                                                                                  "team"])
        for (currency, team), amount in sorted(s.spend.items()):
            spend.add_metric([currency, team], amount)
        yield from (up, util, used, total, power, temp, alloc, bad, jobs, job_util, spend)


@dataclass(slots=True)
class EngineMetrics:
    """The registry the endpoint serves: the fleet collector and the engine's own timings."""

    registry: CollectorRegistry
    fleet: FleetMetrics
    queue_wait: Histogram
    sweep: Histogram
    write_lag: Gauge


def engine_metrics() -> EngineMetrics:
    registry = CollectorRegistry(auto_describe=False)
    fleet = FleetMetrics()
    registry.register(fleet)
    queue_wait = Histogram(
        QUEUE_WAIT, "time from submit to start of jobs started since the engine started",
        buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86400),
        registry=registry)
    sweep = Histogram(
        SWEEP, "time from a probe tick until every node's sample of it arrived",
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=registry)
    lag = Gauge(WRITE_LAG, "time from handing an interval's samples to the store until "
                "they were committed (the last write)",
                registry=registry)
    return EngineMetrics(registry, fleet, queue_wait, sweep, lag)
