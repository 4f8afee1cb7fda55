"""The probe program that runs on a node: host + GPU telemetry as one JSON line per interval.

Shipped inside the bundle (see `collectors.probe.bundle`): standard library + bundled pynvml,
Python 3.6 syntax. Nothing is written on the node and no process is started per sample
(except `nvidia-smi` in the fallback when NVML will not load).
"""
# Runs on nodes with Python >= 3.6: typing generics, os.path, no zip(strict=).
# ruff: noqa: UP006, UP035, UP045, PTH110, PTH118, PTH208, B905

import _thread
import json
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from collectors.parsers import procfs
from collectors.probe import gpus as gpu_mod
from collectors.probe.jobs import JobReader

PROBE_VERSION = "1"
Row = Dict[str, Any]


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def physical_interfaces(sys_root: str = "/sys/class/net") -> Optional[List[str]]:
    """Interfaces backed by a device (NICs, IB), or None when /sys does not tell."""
    try:
        names = os.listdir(sys_root)
    except OSError:
        return None
    return [n for n in names if os.path.exists(os.path.join(sys_root, n, "device"))]


class HostReader:
    """Reads host telemetry; keeps the previous /proc/stat for utilization deltas."""

    def __init__(self, disk_paths: Sequence[str], proc_root: str = "/proc") -> None:
        self.disk_paths = list(disk_paths)
        self.proc = proc_root
        self.prev = None  # type: Optional[Tuple[Any, List[Any]]]
        uname = os.uname()  # what socket.gethostname and platform.release read, unimported
        self.hostname = uname.nodename
        self.kernel = uname.release
        try:
            self.cpu_model = procfs.parse_cpu_model(_read(self.proc + "/cpuinfo"))
        except OSError:
            self.cpu_model = None
        self.physical = physical_interfaces()

    def prime(self) -> None:
        try:
            self.prev = procfs.parse_proc_stat(_read(self.proc + "/stat"))
        except (OSError, ValueError):
            self.prev = None

    def read(self, errors: List[str]) -> Tuple[Row, List[Row]]:
        host = {"hostname": self.hostname, "kernel": self.kernel,
                "cpu_model": self.cpu_model}  # type: Row
        try:
            host["uptime_s"] = procfs.parse_uptime(_read(self.proc + "/uptime"))
        except (OSError, ValueError, IndexError) as e:
            host["uptime_s"] = None
            errors.append(f"host uptime: {e}")
        try:
            cur = procfs.parse_proc_stat(_read(self.proc + "/stat"))
            prev = self.prev
            self.prev = cur
            host["cpu_count"] = len(cur[1]) or os.cpu_count()
            host["cpu_util_pct"] = procfs.cpu_util_pct(prev[0] if prev else None, cur[0])
            per_core = []  # type: List[Optional[float]]
            if prev is not None and len(prev[1]) == len(cur[1]):
                per_core = [procfs.cpu_util_pct(p, c) for p, c in zip(prev[1], cur[1])]
            host["per_core_util_pct"] = [v if v is not None else 0.0 for v in per_core]
        except (OSError, ValueError, IndexError) as e:
            host.update(cpu_count=os.cpu_count(), cpu_util_pct=None, per_core_util_pct=[])
            errors.append(f"host cpu: {e}")
        try:
            host["load1"], host["load5"], host["load15"] = os.getloadavg()
        except OSError as e:
            host.update(load1=None, load5=None, load15=None)
            errors.append(f"host load: {e}")
        try:
            host.update(procfs.memory_summary(procfs.parse_meminfo(
                _read(self.proc + "/meminfo"))))
        except (OSError, ValueError) as e:
            host.update(mem_total_bytes=None, mem_used_bytes=None, mem_available_bytes=None,
                        swap_total_bytes=None, swap_used_bytes=None)
            errors.append(f"host memory: {e}")
        try:
            rx, tx = procfs.net_totals(procfs.parse_net_dev(_read(self.proc + "/net/dev")),
                                       self.physical)
            host["net_rx_bytes"], host["net_tx_bytes"] = rx, tx
        except (OSError, ValueError) as e:
            host["net_rx_bytes"] = host["net_tx_bytes"] = None
            errors.append(f"host net: {e}")
        disks = []  # type: List[Row]
        for path in self.disk_paths:
            try:
                st = os.statvfs(path)
            except OSError as e:
                errors.append(f"disk {path}: {e.strerror or e}")
                continue
            disks.append({"path": path, "total_bytes": st.f_blocks * st.f_frsize,
                          "used_bytes": (st.f_blocks - st.f_bfree) * st.f_frsize})
        return host, disks


def load_pynvml(code: Any) -> Any:
    """The bundled pynvml as a module (no file on the node) from its code: a code object, or
    source to compile; None when not bundled."""
    if code is None:
        return None
    import types

    mod = types.ModuleType("pynvml")
    mod.__file__ = "<fleetdeck-probe:pynvml>"
    sys.modules["pynvml"] = mod
    if not isinstance(code, types.CodeType):
        code = compile(code, mod.__file__, "exec")
    # pynvml imports ctypes.util.find_library but calls it only on Windows; the real module
    # pulls in subprocess, shutil and tempfile (a tenth of a GPU node's start-up)
    stub = None
    if "ctypes.util" not in sys.modules:
        stub = sys.modules["ctypes.util"] = types.ModuleType("ctypes.util")
        stub.find_library = _find_library  # type: ignore[attr-defined]
    try:
        exec(code, mod.__dict__)
    finally:
        if stub is not None and sys.modules.get("ctypes.util") is stub:
            del sys.modules["ctypes.util"]
    return mod


def _find_library(name: str) -> Optional[str]:
    """ctypes.util.find_library, imported when first called."""
    from ctypes.util import find_library

    return find_library(name)


class Output:
    """Writes lines to stdout; the probe exits when the reader is gone (EPIPE)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.lock = _thread.allocate_lock()  # the threading module is not needed here

    def emit(self, obj: Row) -> None:
        try:
            line = json.dumps(obj, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as e:  # never expected; say so instead of dying
            line = json.dumps({"type": "sample", "v": 1, "seq": obj.get("seq", 0),
                               "ts": time.time(), "host": {}, "disks": [], "gpus": [],
                               "procs": [], "events": [], "gpu_source": "none",
                               "driver_version": None,
                               "errors": [f"probe: unserializable sample: {e}"]})
        with self.lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (BrokenPipeError, OSError, ValueError):
                os._exit(0)  # the channel went away: nothing left to report to


def watch_stdin() -> None:
    """Exit as soon as stdin reaches EOF (the SSH channel or local parent went away)."""

    def run() -> None:
        stream = getattr(sys.stdin, "buffer", sys.stdin)
        try:
            while stream.read(4096):
                pass
        except (OSError, ValueError):
            pass
        os._exit(0)

    _thread.start_new_thread(run, ())  # ends with the process, like a daemon thread


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: map them to None (a sensor glitch is an unknown, not a number)."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value


class Probe:
    def __init__(self, config: Row, pynvml: Any) -> None:
        self.interval_s = float(config.get("interval_s", 5.0))
        self.once = bool(config.get("once", False))
        self.host = HostReader(config.get("disk_paths") or ["/"],
                               config.get("proc_root", "/proc"))
        self.gpus = gpu_mod.GpuReader(pynvml, config.get("proc_root", "/proc"))
        self.jobs = JobReader(config.get("proc_root", "/proc"))
        self.seq = 0

    def hello(self) -> Row:
        return {"type": "hello", "v": 1, "probe_version": PROBE_VERSION, "mode": "python",
                "ts": time.time(), "python_version": sys.version.split()[0],
                "hostname": self.host.hostname, "kernel": self.host.kernel,
                "pid": os.getpid(), "interval_s": self.interval_s}

    def sample(self) -> Row:
        errors = []  # type: List[str]
        ts = time.time()
        try:
            host, disks = self.host.read(errors)
        except Exception as e:  # defensive: a sample always goes out
            host, disks = {}, []
            errors.append(f"host: {type(e).__name__}: {e}")
        try:
            g = self.gpus.read(ts)
        except Exception as e:
            g = {"gpu_source": "none", "driver_version": None, "gpus": [], "procs": [],
                 "events": [], "errors": [f"gpu: {type(e).__name__}: {e}"]}
        for row in g["gpus"]:
            for k, v in row.items():
                row[k] = _clean(v)
        try:
            jobs = self.jobs.read(ts, errors)
        except Exception as e:
            jobs = []
            errors.append(f"jobs: {type(e).__name__}: {e}")
        self.seq += 1
        return {"type": "sample", "v": 1, "seq": self.seq, "ts": ts,
                "interval_s": self.interval_s, "host": host, "disks": disks,
                "gpu_source": g["gpu_source"], "driver_version": g["driver_version"],
                "gpus": g["gpus"], "procs": g["procs"], "events": g["events"], "jobs": jobs,
                "errors": errors + g["errors"]}

    def run(self, out: Output) -> None:
        out.emit(self.hello())
        self.host.prime()
        first = min(self.interval_s, 0.25 if self.once else 1.0)
        next_t = time.monotonic() + first
        while True:
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            out.emit(self.sample())
            if self.once:
                return
            next_t += self.interval_s
            now = time.monotonic()
            if next_t <= now:  # fell behind (suspended, slow NVML): skip missed ticks
                next_t = now + self.interval_s - ((now - next_t) % self.interval_s)


def main(config: Row, pynvml_code: Optional[Callable[[], Any]] = None,
         stdin_link: bool = False) -> None:
    """Entry point used by the bundle; `pynvml_code` gives the bundled pynvml's code (or
    source), called only where libnvidia-ml opens."""
    if stdin_link:
        watch_stdin()
    out = Output()
    probe = Probe(config, None)
    if pynvml_code is not None:  # built only where libnvidia-ml opens, before sampling
        probe.gpus.pynvml_loader = lambda: load_pynvml(pynvml_code())
        probe.gpus.nvml()
    try:
        probe.run(out)
    except KeyboardInterrupt:
        pass
    out.stream.flush()
