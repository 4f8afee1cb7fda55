"""Parsers for Linux /proc files: pure functions from text to numbers.

Shipped to nodes inside the probe bundle, so: standard library only, Python 3.6 syntax
(no `from __future__ import annotations`, `typing` generics in hints).
"""
# Runs on nodes with Python >= 3.6: typing generics, os.path, no zip(strict=).
# ruff: noqa: UP006, UP035, UP045

import re
from typing import Dict, List, Optional, Tuple

# (busy jiffies, total jiffies) for one CPU line of /proc/stat.
CpuTimes = Tuple[int, int]

_CONTAINER_RES = (
    re.compile(r"docker[-/]([0-9a-f]{64})"),  # cgroup v1 /docker/<id>, v2 docker-<id>.scope
    re.compile(r"(?:cri-containerd|crio|libpod|containerd)[-:/]([0-9a-f]{64})"),
    re.compile(r"/([0-9a-f]{64})(?:\.scope)?$"),  # a bare 64-hex leaf (kubepods, nested)
)


def parse_proc_stat(text: str) -> Tuple[Optional[CpuTimes], List[CpuTimes]]:
    """The aggregate `cpu` line and the `cpuN` lines, each as (busy, total) jiffies.

    busy excludes idle and iowait; guest time is already inside user/nice, so it is not added.
    """
    total = None  # type: Optional[CpuTimes]
    cores = []  # type: List[CpuTimes]
    for line in text.splitlines():
        if not line.startswith("cpu"):
            if cores:
                break  # the cpu lines come first and together
            continue
        parts = line.split()
        vals = [int(v) for v in parts[1:9]]  # user nice system idle iowait irq softirq steal
        while len(vals) < 8:
            vals.append(0)
        all_j = sum(vals)
        idle_j = vals[3] + vals[4]
        times = (all_j - idle_j, all_j)
        if parts[0] == "cpu":
            total = times
        else:
            cores.append(times)
    return total, cores


def cpu_util_pct(prev: Optional[CpuTimes], cur: Optional[CpuTimes]) -> Optional[float]:
    """Utilization between two readings, 0-100; None without a usable interval."""
    if prev is None or cur is None:
        return None
    d_total = cur[1] - prev[1]
    if d_total <= 0:
        return None
    d_busy = cur[0] - prev[0]
    pct = 100.0 * d_busy / d_total
    return round(min(100.0, max(0.0, pct)), 2)


def parse_meminfo(text: str) -> Dict[str, int]:
    """Every `Key: N kB` line of /proc/meminfo, in bytes (lines without a unit kept as is)."""
    out = {}  # type: Dict[str, int]
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        parts = rest.split()
        if not parts:
            continue
        try:
            value = int(parts[0])
        except ValueError:
            continue
        if len(parts) > 1 and parts[1] == "kB":
            value *= 1024
        out[key.strip()] = value
    return out


def memory_summary(meminfo: Dict[str, int]) -> Dict[str, Optional[int]]:
    """Total/used/available memory and swap in bytes; used = total - available (as `free`)."""
    total = meminfo.get("MemTotal")
    avail = meminfo.get("MemAvailable")
    if avail is None and "MemFree" in meminfo:  # kernels before 3.14
        avail = (meminfo.get("MemFree", 0) + meminfo.get("Buffers", 0)
                 + meminfo.get("Cached", 0))
    swap_total = meminfo.get("SwapTotal")
    swap_free = meminfo.get("SwapFree")
    return {
        "mem_total_bytes": total,
        "mem_used_bytes": total - avail if total is not None and avail is not None else None,
        "mem_available_bytes": avail,
        "swap_total_bytes": swap_total,
        "swap_used_bytes": (swap_total - swap_free
                            if swap_total is not None and swap_free is not None else None),
    }


def parse_uptime(text: str) -> float:
    return float(text.split()[0])


def parse_net_dev(text: str) -> Dict[str, Tuple[int, int]]:
    """Per interface (rx_bytes, tx_bytes) from /proc/net/dev."""
    out = {}  # type: Dict[str, Tuple[int, int]]
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        cols = rest.split()
        if len(cols) < 9:
            continue
        out[name.strip()] = (int(cols[0]), int(cols[8]))
    return out


def net_totals(
    per_iface: Dict[str, Tuple[int, int]], physical: Optional[List[str]] = None
) -> Tuple[int, int]:
    """Sum rx/tx over `physical` interfaces when known, else over all but loopback.

    Counting veth/bridge devices as well would count container traffic twice.
    """
    names = [n for n in per_iface if n != "lo"]
    if physical:
        chosen = [n for n in names if n in physical]
        if chosen:
            names = chosen
    rx = sum(per_iface[n][0] for n in names)
    tx = sum(per_iface[n][1] for n in names)
    return rx, tx


def parse_cpu_model(cpuinfo: str) -> Optional[str]:
    """The CPU model from /proc/cpuinfo (x86 `model name`, ARM/POWER fallbacks)."""
    found = {}  # type: Dict[str, str]
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        if key not in found and value.strip():
            found[key] = " ".join(value.split())
    for key in ("model name", "Model", "cpu model", "cpu", "Hardware", "Processor"):
        if key in found:
            return found[key]
    return None


def container_id_from_cgroup(text: str) -> Optional[str]:
    """The container id (64 hex) a process belongs to, from /proc/<pid>/cgroup.

    Handles cgroup v1 (`/docker/<id>`), v2 systemd scopes (`docker-<id>.scope`), and the
    containerd/CRI-O/podman spellings.
    """
    for line in text.splitlines():
        path = line.split(":", 2)[-1].strip()
        if not path or path == "/":
            continue
        for rx in _CONTAINER_RES:
            m = rx.search(path)
            if m:
                return m.group(1)
    return None


def job_id_from_environ(data: bytes, key: str = "FLEETDECK_JOB_ID") -> Optional[int]:
    """FLEETDECK_JOB_ID from a NUL-separated /proc/<pid>/environ, as an int."""
    prefix = key.encode() + b"="
    for item in data.split(b"\0"):
        if item.startswith(prefix):
            try:
                return int(item[len(prefix):].decode("ascii", "replace").strip())
            except ValueError:
                return None
    return None


def command_from_cmdline(data: bytes, limit: int = 256) -> Optional[str]:
    """A process's command line from /proc/<pid>/cmdline, space-joined and truncated."""
    args = [a for a in data.split(b"\0") if a]
    if not args:
        return None
    cmd = " ".join(a.decode("utf-8", "replace") for a in args)
    return " ".join(cmd[:limit].split()) or None  # one line: newlines and tabs become spaces
