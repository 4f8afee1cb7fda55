"""The /metrics contract: every name in base units from a snapshot of the engine's state, and
a Grafana dashboard whose every query names exported metrics."""

from __future__ import annotations

import json
import re
from types import MappingProxyType

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from collectors.health import FleetView, NodeHealth, NodeView
from collectors.models import GpuSample
from console.engine.metrics import EXPORTED, MetricsState, RunningJob, engine_metrics
from tests.helpers import REPO

DASHBOARD = REPO / "docs" / "grafana" / "fleetdeck.json"
_NAME = re.compile(r"\bfleetdeck_[a-z_]+\b")


def gpu(node: str, i: int, util: float) -> GpuSample:
    return GpuSample(ts=1.0, node=node, gpu_index=i, uuid=None, model="A100",
                     mem_total_bytes=80 << 30, mem_used_bytes=20 << 30, util_pct=util,
                     mem_util_pct=None, temp_c=41.0, power_w=250.0, power_limit_w=400.0,
                     sm_clock_mhz=None, ecc_corrected=None, ecc_uncorrected=None,
                     retired_pages=None, retired_pending=None, remap_failure=None,
                     mig_mode=None)


class _Record:
    def __init__(self, gpus: tuple[GpuSample, ...]) -> None:
        self.gpus = gpus


def node(name: str, state: str, utils: list[float]) -> NodeView:
    rec = _Record(tuple(gpu(name, i, u) for i, u in enumerate(utils)))
    return NodeView(name=name, pool="a", transport="ssh", labels={},
                    health=NodeHealth(state=state),  # type: ignore[arg-type]
                    record=rec)  # type: ignore[arg-type]


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text.decode()) for s in f.samples}


def test_snapshot_becomes_every_metric_in_base_units() -> None:
    m = engine_metrics()
    view = FleetView(ts=1.0, interval_s=1.0, nodes=MappingProxyType({
        "n1": node("n1", "up", [50.0, 0.0]), "n2": node("n2", "unreachable", [])}))
    m.fleet.state = MetricsState(
        view=view, running=(RunningJob(7, "alice", "vision", "n1", (0, 1), 500),),
        job_counts={("running", "a"): 1, ("queued", ""): 3}, spend={("USD", "vision"): 12.5},
        unhealthy=frozenset({("n1", 1)}), version=1)
    m.queue_wait.observe(30.0)
    m.sweep.observe(0.02)
    m.write_lag.set(1.5)
    text = generate_latest(m.registry)
    got = samples(text)
    assert got[("fleetdeck_node_up", (("node", "n1"), ("pool", "a")))] == 1.0
    assert got[("fleetdeck_node_up", (("node", "n2"), ("pool", "a")))] == 0.0
    key = (("gpu", "0"), ("model", "A100"), ("node", "n1"))
    assert got[("fleetdeck_gpu_utilization_ratio", key)] == 0.5
    assert got[("fleetdeck_gpu_memory_used_bytes", key)] == float(20 << 30)
    assert got[("fleetdeck_gpu_power_watts", key)] == 250.0
    assert got[("fleetdeck_gpu_temperature_celsius", key)] == 41.0
    assert got[("fleetdeck_gpu_allocated_ratio", (("gpu", "1"), ("node", "n1")))] == 0.5
    assert got[("fleetdeck_gpu_unhealthy", (("gpu", "1"), ("node", "n1")))] == 1.0
    assert got[("fleetdeck_jobs", (("pool", ""), ("state", "queued")))] == 3.0
    assert got[("fleetdeck_job_gpu_utilization_ratio",
                (("job", "7"), ("project", "vision"), ("user", "alice")))] == 0.25
    assert got[("fleetdeck_burst_spend_total", (("currency", "USD"), ("team", "vision")))] == 12.5
    assert got[("fleetdeck_queue_wait_seconds_count", ())] == 1.0
    assert got[("fleetdeck_store_write_lag_seconds", ())] == 1.5
    # the client library adds *_created to histograms
    assert {name for name, _ in got if not name.endswith("_created")} == set(EXPORTED)


def test_every_dashboard_query_names_exported_metrics() -> None:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in doc["templating"]["list"] if v["type"] == "query"]
    assert exprs
    used: set[str] = set()
    for e in exprs:
        names = set(_NAME.findall(e))
        assert names, f"query names no fleetdeck metric: {e}"
        assert names <= set(EXPORTED), f"{e}: not exported: {sorted(names - set(EXPORTED))}"
        used |= names
    # fleet, GPUs, jobs, queue and spend are all on the dashboard
    for name in ("fleetdeck_node_up", "fleetdeck_gpu_utilization_ratio", "fleetdeck_jobs",
                 "fleetdeck_queue_wait_seconds_bucket", "fleetdeck_burst_spend_total"):
        assert name in used, name


def test_forked_render_is_the_library_text() -> None:
    from console.engine.svc_metrics import render_forked

    m = engine_metrics()
    m.fleet.state = MetricsState(job_counts={("queued", "a"): 2}, version=1)
    m.sweep.observe(0.5)
    assert render_forked(m) == generate_latest(m.registry)
