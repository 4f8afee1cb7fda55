"""The demo fleet and its config: 48 simulated nodes, teams, quotas, rates, policies.

`write_demo(root)` lays out a demo folder: `nodes/<name>/node.json` (each node's sandbox, see
`collectors.transport.sim`), `config.toml` and the store path (created later by history and
the engine). Nothing outside `root` is touched.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors.transport.sim import GIB, SimProfile, write_profile

H100 = SimProfile(cpu_count=112, cpu_model="Intel(R) Xeon(R) Platinum 8480+",
                  mem_total_bytes=2048 * GIB, gpu_count=8, gpu_model="NVIDIA H100 80GB HBM3",
                  gpu_mem_total_bytes=80 * GIB, gpu_power_limit_w=700.0,
                  gpu_idle_power_w=70.0, gpu_sm_clock_mhz=1980, driver_version="550.90.07",
                  disk_total_bytes=30 * 1024 * GIB, ecc_corrected_per_gpu_hour=0.02)
A100 = SimProfile(cpu_count=128, cpu_model="AMD EPYC 7763 64-Core Processor",
                  mem_total_bytes=1024 * GIB, gpu_count=8, gpu_model="NVIDIA A100-SXM4-80GB",
                  gpu_mem_total_bytes=80 * GIB, gpu_power_limit_w=400.0,
                  gpu_idle_power_w=55.0, gpu_sm_clock_mhz=1410, driver_version="550.90.07",
                  disk_total_bytes=15 * 1024 * GIB, ecc_corrected_per_gpu_hour=0.02)
L40S = SimProfile(cpu_count=64, cpu_model="AMD EPYC 9354 32-Core Processor",
                  mem_total_bytes=512 * GIB, gpu_count=4, gpu_model="NVIDIA L40S",
                  gpu_mem_total_bytes=48 * GIB, gpu_power_limit_w=350.0,
                  gpu_idle_power_w=35.0, gpu_sm_clock_mhz=2520, driver_version="550.90.07",
                  disk_total_bytes=8 * 1024 * GIB)
CPU = SimProfile(cpu_count=192, cpu_model="AMD EPYC 9654 96-Core Processor",
                 mem_total_bytes=1536 * GIB, disk_total_bytes=8 * 1024 * GIB)


@dataclass(frozen=True, slots=True)
class NodeClass:
    """`count` identical nodes named `<prefix>-01`..."""

    prefix: str
    count: int
    pool: str
    profile: SimProfile
    labels: Mapping[str, str] = field(default_factory=dict)


FLEET: tuple[NodeClass, ...] = (
    NodeClass("h100", 16, "train", H100, {"gpu": "h100", "fabric": "ib"}),
    NodeClass("a100", 12, "train", A100, {"gpu": "a100", "fabric": "ib"}),
    NodeClass("l40s", 12, "interactive", L40S, {"gpu": "l40s"}),
    NodeClass("cpu", 8, "cpu", CPU, {"cpu": "epyc-genoa"}),
)
BURST_POOL = "burst"
BURST_OFFER = "cloud-h100"
BURST_PRICE_PER_HOUR = 98.32  # an 8 x H100 on-demand node


@dataclass(frozen=True, slots=True)
class DemoNode:
    name: str
    pool: str
    profile: SimProfile
    labels: Mapping[str, str]


def nodes(fleet: Sequence[NodeClass] = FLEET) -> list[DemoNode]:
    out = []
    k = 0
    for cls in fleet:
        for i in range(cls.count):
            rack = f"r{k // 8 + 1:02d}"
            labels = {**cls.labels, "rack": rack}
            name = f"{cls.prefix}-{i + 1:02d}"
            out.append(DemoNode(name, cls.pool, dataclasses.replace(cls.profile, seed=k + 1),
                                labels))
            k += 1
    return out


# (name, gpu_quota, gpu_guaranteed)
TEAMS = (("research", 200.0, 96.0), ("product", 120.0, 48.0), ("platform", 48.0, 0.0))
# (name, team, gpu_quota)
PROJECTS = (
    ("llm-pretrain", "research", 160.0), ("vision", "research", 64.0),
    ("speech", "research", 48.0), ("recsys", "product", 80.0), ("search", "product", 64.0),
    ("infra", "platform", 24.0), ("evals", "platform", 32.0),
)
# (name, team, projects, gpu_quota)
USERS = (
    ("alice", "research", ("llm-pretrain", "vision"), 96.0),
    ("bob", "research", ("llm-pretrain", "speech"), 64.0),
    ("carol", "research", ("vision",), 48.0),
    ("ivan", "research", ("speech", "llm-pretrain"), 48.0),
    ("dan", "product", ("recsys", "search"), 48.0),
    ("erin", "product", ("search",), 32.0),
    ("frank", "product", ("recsys",), 48.0),
    ("judy", "product", ("search", "recsys"), 24.0),
    ("grace", "platform", ("infra", "evals"), 24.0),
    ("heidi", "platform", ("evals",), 16.0),
)

RATES: dict[str, Any] = {
    "currency": "USD", "cpu_core_hour": 0.012, "mem_gb_hour": 0.0015,
    "gpu": {
        "H100": {"purchase_price": 32000.0, "lifetime_years": 4.0, "power_w": 900.0,
                 "kwh_price": 0.14, "hosting_per_month": 95.0, "cloud_gpu_hour": 12.29},
        "A100": {"purchase_price": 16000.0, "lifetime_years": 4.0, "power_w": 520.0,
                 "kwh_price": 0.14, "hosting_per_month": 70.0, "cloud_gpu_hour": 4.1},
        "L40S": {"gpu_hour": 0.85, "cloud_gpu_hour": 1.9},
    },
}


def config_data(root: Path, *, interval_s: float = 2.0, burst: bool = True,
                rates: bool = True) -> dict[str, Any]:
    """The demo config as TOML-shaped data (`console.config.Config`'s keys)."""
    data: dict[str, Any] = {
        "store": {"path": str(root / "store" / "demo.duckdb")},
        "collect": {"interval_s": interval_s, "disk_paths": ["/"]},
        "scheduler": {"cycle_s": 1.0},
        "pools": [
            {"name": "train", "description": "8-GPU training servers (H100, A100)"},
            {"name": "interactive", "description": "4 x L40S servers for notebooks and dev"},
            {"name": "cpu", "description": "CPU servers for data preparation"},
            {"name": BURST_POOL, "kind": "burst", "description": "cloud H100 nodes on demand"},
        ],
        "nodes": [
            {"name": n.name, "host": str(root / "nodes" / n.name), "transport": "sim",
             "pool": n.pool, "docker_socket": "", "labels": dict(n.labels)}
            for n in nodes()
        ],
        "teams": [{"name": t, "gpu_quota": q, "gpu_guaranteed": g} for t, q, g in TEAMS],
        "projects": [{"name": p, "team": t, "gpu_quota": q} for p, t, q in PROJECTS],
        "users": [{"name": u, "team": t, "projects": list(ps), "default_project": ps[0],
                   "gpu_quota": q} for u, t, ps, q in USERS],
        "policies": {
            # Short windows so forgotten notebooks get warned and stopped within minutes.
            "idle": {"enabled": True, "dry_run": False, "window_s": 30.0, "grace_s": 20.0,
                     "warn_after_s": 30.0, "stop_after_s": 30.0, "stop_timeout_s": 5.0,
                     "check_cpu": False, "min_samples": 3, "max_gap_s": 30.0},
            "burst": burst_policy(root, enabled=burst),
        },
    }
    if rates:
        data["rates"] = RATES
    return data


def burst_policy(root: Path, *, enabled: bool) -> dict[str, Any]:
    """A command provider whose scripts "rent" sim nodes (`console.demo.cloud`)."""
    cloud = [sys.executable, "-m", "console.demo.cloud", "--root", str(root)]
    return {
        "enabled": enabled, "dry_run": False, "wait_threshold_s": 45.0,
        "allocation_threshold_pct": 90.0, "min_billed_hours": 1.0,
        "idle_teardown_s": 120.0, "ready_timeout_s": 60.0, "max_nodes": 2,
        "budget": {"per_day": 2000.0, "per_month": 40000.0},
        "teams": {"research": {"per_day": 1200.0}, "product": {"per_day": 600.0}},
        "offers": [{
            "name": BURST_OFFER, "provider": "demo-cloud", "instance_type": "p5.48xlarge",
            "gpu_model": H100.gpu_model, "gpu_count": 8,
            "price_per_hour": BURST_PRICE_PER_HOUR, "max_nodes": 2, "pool": BURST_POOL,
            "cpu_milli": H100.cpu_count * 1000, "mem_bytes": H100.mem_total_bytes,
            "gpu_mem_bytes": H100.gpu_mem_total_bytes, "options": {"transport": "sim"},
        }],
        "providers": [{
            "name": "demo-cloud", "type": "command",
            "command": {
                "provision_command": [*cloud, "provision", "{request_id}", "{offer}"],
                "terminate_command": [*cloud, "terminate"],
                "state_dir": str(root / "cloud" / "state"),
            },
        }],
    }


def write_demo(root: Path, *, interval_s: float = 2.0, burst: bool = True,
               rates: bool = True) -> Path:
    """Create the node sandboxes and `config.toml` under `root`; returns the config path."""
    for n in nodes():
        write_profile(root / "nodes" / n.name, n.profile)
    (root / "store").mkdir(parents=True, exist_ok=True)
    path = root / "config.toml"
    data = config_data(root, interval_s=interval_s, burst=burst, rates=rates)
    path.write_text("# fleetdeck demo fleet (generated; every node is simulated)\n"
                    + to_toml(data))
    return path


# -- a small TOML writer (tables, arrays of tables, inline tables for labels) -------------------
def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _value(k)


def _is_table_list(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, Mapping) for x in v)


def to_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    """`data` as TOML: scalars, lists and small maps inline, nested maps as tables."""
    lines = []
    nested: list[tuple[str, Any]] = []
    for k, v in data.items():
        if (isinstance(v, Mapping) and k != "labels" and k != "options") or _is_table_list(v):
            nested.append((k, v))
        else:
            lines.append(f"{_key(k)} = {_value(v)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, v in nested:
        name = f"{prefix}.{_key(k)}" if prefix else _key(k)
        if isinstance(v, Mapping):
            out += f"\n[{name}]\n" + to_toml(v, name)
        else:
            for item in v:
                out += f"\n[[{name}]]\n" + to_toml(item, name)
    return out
