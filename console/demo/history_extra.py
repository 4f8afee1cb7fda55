"""Incidents of the generated history: rented burst nodes and GPUs that broke for a while.

`bursts` makes about two cloud nodes a month (more in the busier recent months) with their
`burst_instances`, `spend`, audit rows and the 8-GPU training jobs they ran (node indices
into the returned burst node list). `broken_gpus` takes two GPUs out for a day or two: jobs
that would have used them are dropped, and `gpu_health` plus audit rows say why.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import console.demo.fleet as fleet
from collectors.transport.sim import gpu_uuid
from console.demo.history import KIND_INDEX, Packed
from scheduler.policies.spend import InstanceLifecycle

US = 1_000_000


@dataclass(frozen=True, slots=True)
class Bursts:
    nodes: list[fleet.DemoNode]
    rows: list[dict[str, Any]]  # burst_instances
    spend: list[dict[str, Any]]
    alive: list[tuple[float, float]]  # per burst node: ready, terminated (hours)
    jobs: Packed
    teams: np.ndarray  # per burst job: team index
    actions: list[dict[str, Any]]


def bursts(hours: int, start_hour: int, rng: np.random.Generator) -> Bursts:
    """About two rented nodes a month, each running one or two 8-GPU training jobs."""
    count = 12
    # more in the busier recent months, none in the last three days (today's budget is free)
    launch = np.sort(hours - 72 - rng.uniform(0.0, 1.0, count) ** 0.7 * (hours - 120))
    nodes, rows, spend, alive, actions = [], [], [], [], []
    jn, js, je = [], [], []
    team_of: list[int] = []
    for i, t0 in enumerate(launch):
        iid = f"i-{rng.integers(16**12):012x}"
        name = f"burst-{iid[2:8]}"
        ready = float(t0 + 4.0 / 60)
        life = float(min(rng.uniform(3.0, 16.0), hours - 1 - ready))
        term = ready + life
        team = int(rng.integers(0, 2))
        nodes.append(fleet.DemoNode(name, fleet.BURST_POOL, fleet.H100, {"gpu": "h100"}))
        alive.append((ready, term))
        hours_billed = term - float(t0)
        cost = round(hours_billed * fleet.BURST_PRICE_PER_HOUR, 2)
        project = ("llm-pretrain", "recsys")[team]
        rid = f"fd-burst-{i}"
        rows.append({
            "instance_id": iid, "provider": "demo-cloud", "offer": fleet.BURST_OFFER,
            "instance_type": "p5.48xlarge", "market": "on-demand",
            "gpu_model": fleet.H100.gpu_model, "gpu_count": 8, "node": name,
            "pool": fleet.BURST_POOL, "team": fleet.TEAMS[team][0], "project": project,
            "price_per_hour": fleet.BURST_PRICE_PER_HOUR, "state": InstanceLifecycle.TERMINATED,
            "launched_at": dt(start_hour, float(t0)), "ready_at": dt(start_hour, ready),
            "terminated_at": dt(start_hour, term), "cost": cost, "request_id": rid})
        day0 = int((start_hour + t0) // 24)
        day1 = int((start_hour + term) // 24)
        for day in range(day0, day1 + 1):
            lo = max(float(t0), day * 24.0 - start_hour)
            hi = min(term, (day + 1) * 24.0 - start_hour)
            if hi > lo:
                spend.append({"ts": dt(start_hour, hi), "provider": "demo-cloud",
                              "instance_id": iid, "team": fleet.TEAMS[team][0],
                              "project": project, "hours": round(hi - lo, 4),
                              "amount": round((hi - lo) * fleet.BURST_PRICE_PER_HOUR, 2)})
        actions.append(action(start_hour, float(t0), "policy:burst", "burst_provision",
                               "instance", rid, f"jobs waited over 15 min with on-prem H100s "
                               f"full; provisioning {fleet.BURST_OFFER} (p5.48xlarge on-demand,"
                               f" 8xH100, {fleet.BURST_PRICE_PER_HOUR:.2f}/h)",
                               {"offer": fleet.BURST_OFFER, "instance_id": iid}))
        actions.append(action(start_hour, term, "policy:burst", "burst_terminate",
                               "instance", iid, "no fleetdeck job for 15m",
                               {"node": name, "cost": cost}))
        t = ready + 0.1
        for _ in range(int(rng.integers(1, 3))):
            end = min(term - 0.25, t + rng.uniform(2.0, 10.0))
            if end <= t:
                break
            jn.append(i)
            js.append(t)
            je.append(end)
            team_of.append(team)
            t = end + 0.05
    k = len(jn)
    jobs = Packed(node=np.array(jn, dtype=np.int64),
                  kind=np.full(k, KIND_INDEX["train"]), size=np.full(k, 8),
                  milli=np.full(k, 1000), mask=np.full(k, 255), start_h=np.array(js),
                  end_h=np.array(je), util=rng.uniform(0.8, 0.97, k),
                  mem=rng.uniform(0.7, 0.95, k))
    return Bursts(nodes, rows, spend, alive, jobs, np.array(team_of, dtype=np.int64), actions)


def dt(start_hour: int, h: float) -> Any:
    return np.datetime64(round((start_hour + h) * 3600.0 * US), "us").item()


def action(start_hour: int, h: float, actor: str, action: str, kind: str, target: str,
            reason: str, evidence: dict[str, Any]) -> dict[str, Any]:
    return {"ts": dt(start_hour, h), "actor": actor, "action": action, "target_kind": kind,
            "target": target, "reason": reason, "evidence": json.dumps(evidence),
            "dry_run": False}


def broken_gpus(nodes: Sequence[fleet.DemoNode], jobs: Packed, hours: int, start_hour: int,
            rng: np.random.Generator) -> tuple[Packed, list[dict[str, Any]],
                                               list[dict[str, Any]]]:
    """Two GPUs that broke for a while: their jobs never ran there (dropped)."""
    gpu_nodes = [i for i, n in enumerate(nodes) if n.profile.gpu_count]
    health, actions = [], []
    keep = np.ones(len(jobs), dtype=bool)
    why = ("Xid 79: GPU has fallen off the bus", "uncorrectable ECC error (2 new)")
    for k in range(2):
        ni = int(rng.choice(gpu_nodes))
        node = nodes[ni]
        g = int(rng.integers(node.profile.gpu_count))
        lo = float(rng.uniform(hours * 0.2, hours * 0.85))
        hi = lo + float(rng.uniform(20.0, 60.0))
        hit = ((jobs.node == ni) & (((jobs.mask >> g) & 1) == 1)
               & (jobs.start_h < hi) & (jobs.end_h > lo))
        keep &= ~hit
        health.append({"node": node.name, "gpu_index": g, "uuid": gpu_uuid(node.name, g),
                       "broken_from": dt(start_hour, lo), "broken_until": dt(start_hour, hi),
                       "reason": why[k]})
        target = f"{node.name}/{g}"
        actions += [
            action(start_hour, lo, "policy:health", "gpu_unhealthy", "gpu", target, why[k], {}),
            action(start_hour, lo, "policy:health", "drain", "node", node.name,
                    f"GPU {g} unhealthy: {why[k]}", {}),
            action(start_hour, hi, "policy:health", "gpu_recovered", "gpu", target,
                    "GPU reset; counters clear", {}),
            action(start_hour, hi, "policy:health", "undrain", "node", node.name,
                    "all GPUs healthy again", {}),
        ]
    return jobs.take(keep), health, actions
