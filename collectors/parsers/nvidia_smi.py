"""Parsers for `nvidia-smi --query-* --format=csv,noheader,nounits` output.

The probe falls back to these when NVML cannot be loaded. Shipped to nodes inside the probe
bundle: standard library only, Python 3.6 syntax.
"""
# Runs on nodes with Python >= 3.6: typing generics, os.path, no zip(strict=).
# ruff: noqa: UP006, UP035, UP045

from typing import Any, Dict, List, Optional

# Query fields, in order, and the probe field each one fills. Every field listed here exists in
# nvidia-smi since driver 450; an unknown field would make nvidia-smi reject the whole query.
GPU_FIELDS = (
    ("index", "index"),
    ("uuid", "uuid"),
    ("name", "model"),
    ("memory.total", "mem_total_bytes"),  # MiB
    ("memory.used", "mem_used_bytes"),  # MiB
    ("utilization.gpu", "util_pct"),
    ("utilization.memory", "mem_util_pct"),
    ("temperature.gpu", "temp_c"),
    ("power.draw", "power_w"),
    ("power.limit", "power_limit_w"),
    ("clocks.sm", "sm_clock_mhz"),
    ("ecc.errors.corrected.volatile.total", "ecc_corrected"),
    ("ecc.errors.uncorrected.volatile.total", "ecc_uncorrected"),
    ("retired_pages.sbe", "_retired_sbe"),
    ("retired_pages.dbe", "_retired_dbe"),
    ("retired_pages.pending", "retired_pending"),
    ("mig.mode.current", "mig_mode"),
)
APP_FIELDS = ("gpu_uuid", "pid", "used_memory")

QUERY_GPU_ARGS = [
    "--query-gpu=" + ",".join(f for f, _ in GPU_FIELDS),
    "--format=csv,noheader,nounits",
]
QUERY_APPS_ARGS = [
    "--query-compute-apps=" + ",".join(APP_FIELDS),
    "--format=csv,noheader,nounits",
]

_MIB = 1024 * 1024
_INT_FIELDS = ("index", "sm_clock_mhz", "ecc_corrected", "ecc_uncorrected")
_FLOAT_FIELDS = ("util_pct", "mem_util_pct", "temp_c", "power_w", "power_limit_w")
_BOOL_FIELDS = ("retired_pending", "mig_mode")


def _missing(value: str) -> bool:
    v = value.strip().strip("[]").lower()
    return v in ("", "n/a", "not supported", "unknown error", "insufficient permissions",
                 "not available", "gpu is lost", "unknown")


def _num(value: str) -> Optional[float]:
    if _missing(value):
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None


def _bool(value: str) -> Optional[bool]:
    if _missing(value):
        return None
    v = value.strip().lower()
    if v in ("yes", "enabled", "1", "true"):
        return True
    if v in ("no", "disabled", "0", "false"):
        return False
    return None


def _split(line: str) -> List[str]:
    # GPU names never contain a comma; values are separated by ", ".
    return [p.strip() for p in line.split(",")]


def parse_query_gpu(text: str) -> List[Dict[str, Any]]:
    """One dict per GPU line, probe field names, None for `[N/A]` / `[Not Supported]`."""
    gpus = []  # type: List[Dict[str, Any]]
    for line in text.splitlines():
        if not line.strip():
            continue
        cols = _split(line)
        if len(cols) != len(GPU_FIELDS):
            raise ValueError(f"nvidia-smi: expected {len(GPU_FIELDS)} fields, got {len(cols)} "
                             f"in {line[:120]!r}")
        raw = {name: cols[i] for i, (_, name) in enumerate(GPU_FIELDS)}
        gpu = {}  # type: Dict[str, Any]
        for key in _INT_FIELDS:
            n = _num(raw[key])
            gpu[key] = int(n) if n is not None else None
        for key in _FLOAT_FIELDS:
            gpu[key] = _num(raw[key])
        for key in _BOOL_FIELDS:
            gpu[key] = _bool(raw[key])
        for key in ("mem_total_bytes", "mem_used_bytes"):
            n = _num(raw[key])
            gpu[key] = int(n * _MIB) if n is not None else None
        gpu["uuid"] = None if _missing(raw["uuid"]) else raw["uuid"]
        gpu["model"] = None if _missing(raw["model"]) else raw["model"]
        sbe, dbe = _num(raw["_retired_sbe"]), _num(raw["_retired_dbe"])
        gpu["retired_pages"] = (None if sbe is None and dbe is None
                                else int((sbe or 0) + (dbe or 0)))
        gpu["remap_failure"] = None  # not queryable through --query-gpu on every driver
        gpu["remap_pending"] = None
        if gpu["index"] is None:
            raise ValueError(f"nvidia-smi: GPU line without an index: {line[:120]!r}")
        gpus.append(gpu)
    return gpus


def parse_query_apps(text: str) -> List[Dict[str, Any]]:
    """One dict per compute process: uuid, pid, gpu_mem_used_bytes."""
    procs = []  # type: List[Dict[str, Any]]
    for line in text.splitlines():
        if not line.strip() or line.lower().startswith("no running"):
            continue
        cols = _split(line)
        if len(cols) != len(APP_FIELDS):
            raise ValueError(f"nvidia-smi: expected {len(APP_FIELDS)} app fields, got {len(cols)} "
                             f"in {line[:120]!r}")
        pid = _num(cols[1])
        if pid is None:
            continue
        mem = _num(cols[2])
        procs.append({
            "uuid": None if _missing(cols[0]) else cols[0],
            "pid": int(pid),
            "gpu_mem_used_bytes": int(mem * _MIB) if mem is not None else None,
        })
    return procs
