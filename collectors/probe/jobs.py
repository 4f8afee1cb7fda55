"""Per-job CPU on a node: the process tree of every fleetdeck job, found by FLEETDECK_JOB_ID.

Runs inside the probe (Python 3.6 syntax, standard library only). Each interval it lists
/proc, reads each process's `stat` (CPU ticks, start time, rss) and, once per process, its
`environ` for FLEETDECK_JOB_ID and the GPUs the job was given (CUDA_VISIBLE_DEVICES,
NVIDIA_VISIBLE_DEVICES, SLURM_JOB_GPUS). This covers every executor: process jobs (their
process group), Docker containers (host pids) and Slurm job steps, with nothing on the node.

A job's CPU utilization is the sum over its processes of the ticks spent since the previous
interval (a process born in between counts all of its ticks), so processes that exit do not
make the total go backwards. The first interval after the probe starts has no utilization.
"""
# Runs on nodes with Python >= 3.6.
# ruff: noqa: UP006, UP035, UP045, PTH208

import os
from typing import Any, Dict, List, Optional, Tuple

Row = Dict[str, Any]
_GPU_KEYS = (b"CUDA_VISIBLE_DEVICES=", b"NVIDIA_VISIBLE_DEVICES=", b"SLURM_JOB_GPUS=")
_JOB_KEY = b"FLEETDECK_JOB_ID="
# (pid, start ticks) -> (job id or None, gpu indices): environ is read once per process
ProcKey = Tuple[int, int]


def parse_pid_stat(text: Any) -> Tuple[int, int, int]:
    """(utime + stime ticks, start time ticks, rss pages) from /proc/<pid>/stat (str or
    bytes)."""
    close = ")" if isinstance(text, str) else b")"
    rest = text[text.rindex(close) + 2:].split()  # the command may hold spaces and ')'
    # rest[0] is field 3 (state): utime = field 14, stime = 15, starttime = 22, rss = 24
    return int(rest[11]) + int(rest[12]), int(rest[19]), int(rest[21])


def gpu_indices(value: bytes) -> Optional[List[int]]:
    """'0,2' -> [0, 2]; UUIDs, 'all', 'none' or empty -> None (not an index list)."""
    out = []  # type: List[int]
    for part in value.decode("ascii", "replace").split(","):
        part = part.strip()
        if not part.isdigit():
            return None
        out.append(int(part))
    return out or None


def _env_value(data: bytes, key: bytes) -> Optional[bytes]:
    """The value of the last `key` (b"NAME=") in a NUL-separated environment, or None."""
    i = data.rfind(b"\0" + key)
    if i >= 0:
        start = i + 1 + len(key)
    elif data.startswith(key):
        start = len(key)
    else:
        return None
    end = data.find(b"\0", start)
    return data[start:] if end < 0 else data[start:end]


def job_of_environ(data: bytes) -> Tuple[Optional[int], Optional[List[int]]]:
    """(FLEETDECK_JOB_ID, GPU indices from the first visible-devices variable set)."""
    job = None  # type: Optional[int]
    value = _env_value(data, _JOB_KEY)
    if value is not None:
        try:
            job = int(value.strip())
        except ValueError:
            job = None
    gpus = None
    for key in _GPU_KEYS:
        value = _env_value(data, key)
        if value is not None:
            gpus = gpu_indices(value)
            if gpus:
                break
    return job, gpus


def read_bytes(path: str) -> bytes:
    """A whole (small, /proc) file, without the io module's buffered and text layers: the
    first sample reads two files of every process on the node."""
    fd = os.open(path, os.O_RDONLY)
    try:
        parts = []  # type: List[bytes]
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(parts)
            parts.append(chunk)
    finally:
        os.close(fd)


class JobReader:
    """CPU time, utilization, memory and process count per fleetdeck job on this node."""

    def __init__(self, proc_root: str = "/proc") -> None:
        self.proc = proc_root
        self.tick_hz = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
        self.page_bytes = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self.known = {}  # type: Dict[ProcKey, Tuple[Optional[int], Optional[List[int]]]]
        self.prev_ticks = {}  # type: Dict[ProcKey, int]
        self.prev_ts = None  # type: Optional[float]
        self.own_pid = os.getpid()

    def _job_of(self, key: ProcKey) -> Tuple[Optional[int], Optional[List[int]]]:
        hit = self.known.get(key)
        if hit is None:
            try:
                data = read_bytes(f"{self.proc}/{key[0]}/environ")
                # most processes are no job's: skip parsing their environment
                hit = job_of_environ(data) if _JOB_KEY in data else (None, None)
            except OSError:  # gone, or another user's process when not root
                hit = (None, None)
            self.known[key] = hit
        return hit

    def read(self, ts: float, errors: List[str]) -> List[Row]:
        try:
            pids = [int(p) for p in os.listdir(self.proc) if p.isdigit()]
        except OSError as e:
            errors.append(f"jobs: {e.strerror or e}")
            return []
        jobs = {}  # type: Dict[int, Row]
        ticks_now = {}  # type: Dict[ProcKey, int]
        first = self.prev_ts is None
        for pid in pids:
            if pid == self.own_pid:
                continue
            try:
                ticks, start, rss_pages = parse_pid_stat(read_bytes(f"{self.proc}/{pid}/stat"))
            except (OSError, ValueError, IndexError):
                continue
            key = (pid, start)
            job, gpus = self._job_of(key)
            if job is None:
                continue
            ticks_now[key] = ticks
            row = jobs.get(job)
            if row is None:
                row = jobs[job] = {"job_id": job, "procs": 0, "cpu_ticks": 0, "delta": 0,
                                   "rss_bytes": 0, "gpu_indices": gpus}
            row["procs"] += 1
            row["cpu_ticks"] += ticks
            row["delta"] += ticks - self.prev_ticks.get(key, 0)
            row["rss_bytes"] += rss_pages * self.page_bytes
            if row["gpu_indices"] is None and gpus:
                row["gpu_indices"] = gpus
        elapsed = None if first else ts - (self.prev_ts or ts)
        self.prev_ts = ts
        self.prev_ticks = ticks_now
        # forget processes that are gone (pids are reused: the start time tells them apart)
        alive = set(pids)
        self.known = {k: v for k, v in self.known.items() if k[0] in alive}
        out = []  # type: List[Row]
        for job, row in sorted(jobs.items()):
            util = None  # type: Optional[float]
            if elapsed is not None and elapsed > 0:
                util = round(100.0 * row["delta"] / self.tick_hz / elapsed, 2)
            out.append({"job_id": job, "procs": row["procs"],
                        "cpu_time_s": round(row["cpu_ticks"] / self.tick_hz, 2),
                        "cpu_util_pct": util, "rss_bytes": row["rss_bytes"],
                        "gpu_indices": row["gpu_indices"]})
        return out
