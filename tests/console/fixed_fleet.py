"""A deterministic fleet written into a store before an engine opens it (console snapshots).

Four nodes (one cordoned, one degraded, one unreachable), 30 minutes of samples, jobs in every
state written through the scheduler's own journal (so events and audit rows are real), extra
audit actions and a burst instance. Everything is relative to FIXED_NOW; the engine and the app
are both given a clock pinned there.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from collectors.store import Store
from collectors.store.audit import AuditEntry, record, utc
from scheduler import journal
from scheduler.jobspec import JobSpec

FIXED_NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC).timestamp()
GIB = 2**30
HISTORY_MIN = 30

NODES: tuple[dict[str, Any], ...] = (
    {"name": "gpu-a01", "pool": "train", "labels": {"zone": "a"}, "state": "up",
     "cpu_count": 64, "mem_total_bytes": 512 * GIB, "gpus": 4, "model": "A100-80GB"},
    {"name": "gpu-a02", "pool": "train", "labels": {"zone": "a"}, "state": "up",
     "cordoned": True, "cpu_count": 64, "mem_total_bytes": 512 * GIB, "gpus": 4,
     "model": "A100-80GB"},
    {"name": "gpu-b01", "pool": "infer", "labels": {"zone": "b"}, "state": "degraded",
     "state_reason": "probe late by 12s", "cpu_count": 32, "mem_total_bytes": 256 * GIB,
     "gpus": 2, "model": "L4"},
    {"name": "cpu-c01", "pool": "cpu", "labels": {}, "state": "unreachable",
     "state_reason": "ssh: connection refused", "cpu_count": 128,
     "mem_total_bytes": 1024 * GIB, "gpus": 0, "model": None},
)


def config_text(store: Path) -> str:
    """A config naming the fixed nodes, with collection and scheduling off."""
    parts = [f'[store]\npath = "{store}"\n', "[engine]\ncollect = false\nschedule = false\n"]
    for i, n in enumerate(NODES):
        labels = ", ".join(f'{k} = "{v}"' for k, v in n["labels"].items())
        parts.append(f'[[nodes]]\nname = "{n["name"]}"\nhost = "10.9.0.{i + 1}"\n'
                     f'pool = "{n["pool"]}"\nlabels = {{ {labels} }}\n')
    parts.append('[[users]]\nname = "ann"\nteam = "vision"\nprojects = ["detector"]\n'
                 'default_project = "detector"\n')
    return "\n".join(parts)


def _util(node_i: int, gpu: int, minute: int) -> float:
    """A fixed, varied utilization pattern."""
    return float((node_i * 37 + gpu * 23 + minute * 11) % 100)


def _samples(store: Store) -> None:
    nodes, node_samples, gpu_samples = [], [], []
    for i, n in enumerate(NODES):
        reachable = n["state"] != "unreachable"
        last = FIXED_NOW - (0 if reachable else 900)
        nodes.append({
            "name": n["name"], "host": f"10.9.0.{i + 1}", "pool": n["pool"], "transport": "ssh",
            "labels": json.dumps(n["labels"]), "state": n["state"],
            "state_reason": n.get("state_reason"), "cordoned": bool(n.get("cordoned")),
            "cpu_count": n["cpu_count"], "mem_total_bytes": n["mem_total_bytes"],
            "gpu_count": n["gpus"], "gpu_model": n["model"],
            "first_seen": utc(FIXED_NOW - 86400 * 30), "last_seen": utc(last)})
        if not reachable:
            continue
        for m in range(HISTORY_MIN, -1, -1):
            ts = utc(FIXED_NOW - m * 60)
            node_samples.append({
                "ts": ts, "node": n["name"], "cpu_count": n["cpu_count"],
                "cpu_util_pct": float((i * 13 + m * 7) % 90), "load1": 4.0 + i,
                "mem_total_bytes": n["mem_total_bytes"],
                "mem_used_bytes": n["mem_total_bytes"] // (3 + i)})
            for g in range(n["gpus"]):
                gpu_samples.append({
                    "ts": ts, "node": n["name"], "gpu_index": g, "uuid": f"GPU-{i}{g}",
                    "model": n["model"], "mem_total_bytes": 80 * GIB if i < 2 else 24 * GIB,
                    "mem_used_bytes": (g + 1) * 9 * GIB if i < 2 else 3 * GIB,
                    "util_pct": _util(i, g, m), "temp_c": 40.0 + g * 3 + i,
                    "power_w": (100.0 + g * 40) if i < 2 else 30.0 + g * 9,
                    "power_limit_w": 400.0 if i < 2 else 72.0,
                    "ecc_uncorrected": 2 if (i, g) == (2, 1) else 0})
    store.append_rows("nodes", nodes)
    store.append_rows("node_samples", node_samples)
    store.append_rows("gpu_samples", gpu_samples)


def _spec(**kw: Any) -> JobSpec:
    base: dict[str, Any] = {"user": "ann", "project": "detector", "team": "vision"}
    base.update(kw)
    return JobSpec.from_mapping(base, "fixture")


def _jobs(store: Store) -> None:
    t0 = FIXED_NOW - 3 * 3600

    def run(spec: JobSpec, node: str, gpus: list[int], at: float, **kw: Any) -> int:
        (job_id,) = journal.submit(store, spec, actor=spec.user, now=at)
        journal.transition(store, job_id, "starting", reason=f"placed on {node}",
                           actor="scheduler", now=at + 5, node=node, gpu_indices=gpus,
                           pool=spec.pool)
        journal.transition(store, job_id, "running", reason="started", actor="scheduler",
                           now=at + 10, started_at=utc(at + 10), external_id=f"pid:{job_id}")
        for state, after, extra in kw.get("then", ()):
            journal.transition(store, job_id, state, reason=extra.pop("reason"),
                               actor=extra.pop("actor", "scheduler"), now=at + after, **extra)
        return job_id

    run(_spec(name="train-resnet", command="python train.py --epochs 90", gpus=2,
              executor="process", pool="train"), "gpu-a01", [0, 1], t0)
    run(_spec(name="notebook-ann", command="jupyter lab", gpus=0.25, kind="notebook",
              executor="process"), "gpu-a01", [2], t0 + 600)
    run(_spec(name="eval-sweep", command="python eval.py", gpus=1, user="bob",
              project="nlp", team="lang", executor="process"), "gpu-b01", [0], t0 + 1200,
        then=(("succeeded", 4000, {"reason": "exit 0", "exit_code": 0}),))
    run(_spec(name="bad-config", command="python train.py --lr x", gpus=1, user="bob",
              project="nlp", team="lang", executor="process"), "gpu-b01", [1], t0 + 1800,
        then=(("failed", 60, {"reason": "exit 2", "exit_code": 2}),))
    run(_spec(name="old-notebook", command="jupyter lab", gpus=1, kind="notebook",
              executor="process"), "gpu-a01", [3], t0 + 2400,
        then=(("stopped", 5400, {"reason": "idle: mean GPU util 0.4% over 1h",
                                 "actor": "policy:idle"}),))
    (queued,) = journal.submit(store, _spec(name="big-pretrain", command="python pretrain.py",
                                            gpus=4, gpu_models="A100-80GB", executor="process",
                                            pool="train", priority=5), actor="ann",
                               now=FIXED_NOW - 1500)
    journal.set_reasons(store, {queued: "waiting: needs 4 x A100-80GB, largest free block is "
                                        "1 on node gpu-a01"})
    journal.submit(store, _spec(name="cpu-etl", command="python etl.py", user="carol",
                                project="data", team="data", cpus=16, executor="process",
                                pool="cpu"), actor="carol", now=FIXED_NOW - 600)


def _actions(store: Store) -> None:
    with store.transaction() as con:
        record(con, [AuditEntry("policy:idle", "idle_warn", "job", "2",
                                "GPU idle for 45 min",
                                {"window_s": 2700, "gpu_util_mean_pct": 0.4,
                                 "gpu_util_max_pct": 3.0, "gpu_mem_held_bytes": 9 * GIB,
                                 "cpu_util_max_pct": 1.5})], now=FIXED_NOW - 300)
        record(con, [AuditEntry("ann", "cordon", "node", "gpu-a02", "swap fan")],
               now=FIXED_NOW - 200)
        record(con, [AuditEntry("policy:burst", "burst_provision", "instance", "i-0abc",
                                "queue waited 20m", {"price_per_hour": 2.5}, dry_run=True)],
               now=FIXED_NOW - 100)
    store.append_rows("burst_instances", [{
        "instance_id": "i-0abc", "provider": "command", "offer": "a10g-spot",
        "instance_type": "g5.xlarge", "market": "spot", "gpu_model": "A10G", "gpu_count": 1,
        "node": "burst-1", "pool": "burst", "team": "vision", "project": "detector",
        "price_per_hour": 1.25, "state": "ready", "launched_at": utc(FIXED_NOW - 7200),
        "ready_at": utc(FIXED_NOW - 7000), "cost": 2.5}])


def build(path: Path) -> Path:
    """Write the fixed fleet into a new store at `path`."""
    store = Store.open(path)
    try:
        _samples(store)
        _jobs(store)
        _actions(store)
    finally:
        store.close()
    return path
