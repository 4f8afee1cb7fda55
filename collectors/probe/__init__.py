"""The agentless probe: a program streamed to a node's `python3`, one JSON line per interval.

Contract with the transports and the fleet collector
----------------------------------------------------
Starting it (nothing is installed or written on the node):

- ``bundle(interval_s, *, disk_paths=("/",), once=False, stdin_link=False) -> bytes``:
  self-contained Python source (3.6+) with the probe, its parsers and the pynvml module of the
  installed nvidia-ml-py embedded (zlib + base64, loaded from a string; about 270 kB: each
  module as source and as this Python's bytecode, which a node with the same bytecode version
  runs without compiling). Run it as ``python3 -u -S -`` with the bundle on stdin **followed
  by EOF** (Python reads the whole script before running it). The probe exits on the first
  write after its reader went away (EPIPE), i.e. within one interval.
- Or, to stop the probe the moment the channel closes: run ``python_command()``
  (``python3 -u -S -c BOOTSTRAP``) and write ``stdin_payload(..., stdin_link=True)`` to its
  stdin, then keep stdin open: the probe exits as soon as stdin reaches EOF (a reader thread
  watches it). With ``stdin_link=False`` the payload may be followed by EOF like the plain
  bundle.
- ``launch_command(interval_s, ...) -> str``: one POSIX shell command that runs the Python probe
  when ``python3`` exists (reading ``stdin_payload(...)``) and ``SHELL_FALLBACK`` otherwise.
- ``SHELL_FALLBACK``: POSIX sh + awk for nodes without python3, same line format (no events, no
  job ids; ``nvidia-smi`` for GPUs). ``shell_command(interval_s, ...)`` quotes it with its args.
- ``collectors.local.LocalProbe`` runs the same bundle on this machine (no SSH).

Line format (UTF-8 JSON, one object per line, units in names, null = unknown):

- ``{"type": "hello", "v": 1, "probe_version", "mode": "python"|"shell", "ts", "python_version",
  "hostname", "kernel", "pid", "interval_s"}`` once at start.
- ``{"type": "sample", "v": 1, "seq", "ts" (node epoch s), "interval_s", "host": {...},
  "disks": [...], "gpu_source": "nvml"|"nvidia-smi"|"none", "driver_version", "gpus": [...],
  "procs": [...], "events": [...], "jobs": [...], "errors": [str, ...]}`` per interval, where
  host = hostname, kernel, cpu_model, uptime_s, cpu_count, cpu_util_pct, per_core_util_pct[],
  load1, load5, load15, mem_total_bytes, mem_used_bytes, mem_available_bytes,
  swap_total_bytes, swap_used_bytes, net_rx_bytes, net_tx_bytes;
  disk = path, total_bytes, used_bytes;
  gpu = index, uuid, model, mem_total_bytes, mem_used_bytes, util_pct, mem_util_pct, temp_c,
  power_w, power_limit_w, sm_clock_mhz, ecc_corrected, ecc_uncorrected, retired_pages,
  retired_pending, remap_failure, mig_mode, remap_pending;
  proc = gpu_index, uuid, pid, gpu_mem_used_bytes, command, container_id, job_id;
  event = gpu_index, uuid, kind (xid | ecc_uncorrected | retired_pending | remap_failure),
  code, detail;
  job = job_id, procs, cpu_time_s, cpu_util_pct (last interval, 100 = one core; null on the
  first sample), rss_bytes, gpu_indices (from CUDA_VISIBLE_DEVICES, NVIDIA_VISIBLE_DEVICES or
  SLURM_JOB_GPUS; null when unknown): every process whose environment has FLEETDECK_JOB_ID,
  summed per job (`collectors.probe.jobs`). The shell fallback sends no jobs.

Samples start after min(interval, 1 s) (CPU utilization needs two readings), then follow a
fixed cadence; a late tick is skipped, never bunched. ``seq`` counts samples from 1 per probe
process (a restart starts again at 1). GPU events are edges seen by this probe process: Xid
and double-bit ECC events from NVML where the device lets us register, new uncorrected ECC
counts between two samples, and retired-pages-pending / remap-failure when first seen true.

Parsing: ``parse_line(node, line, *, ts=None) -> ProbeRecord | ProbeHello`` (frozen samples from
`collectors.models`), raising ``ProbeFormatError`` (one line, names the node) on bad input.
``ts`` replaces the node's clock with the caller's (e.g. receive time) in every sample.
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import json
import marshal
import shlex
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from collectors.parsers.nvidia_smi import GPU_FIELDS
from collectors.probe.node import PROBE_VERSION
from collectors.probe.parse import ProbeFormatError, parse_line

__all__ = [
    "BOOTSTRAP", "PROBE_VERSION", "PYTHON_FLAGS", "SHELL_FALLBACK", "ProbeFormatError", "bundle",
    "launch_command", "parse_line", "python_command", "shell_command", "stdin_payload",
]

# Modules shipped to the node, in load order; packages are shipped as empty stubs.
_PACKAGES = ("collectors", "collectors.parsers", "collectors.probe")
_MODULES = ("collectors.parsers.procfs", "collectors.parsers.nvidia_smi",
            "collectors.probe.gpus", "collectors.probe.jobs", "collectors.probe.node")

# How the node's python3 runs the probe: unbuffered output, no `site` (the probe needs only the
# standard library; site's path scan and .pth files cost a tenth of its start-up).
PYTHON_FLAGS = ("-u", "-S")

# Reads a length-prefixed zlib payload from stdin and runs it; stdin stays open afterwards.
BOOTSTRAP = (
    "import sys,zlib;b=sys.stdin.buffer;n=int(b.readline());"
    "exec(compile(zlib.decompress(b.read(n)),'<fleetdeck-probe>','exec'),"
    "{'__name__':'__main__'})"
)

# Each module travels as source and as this Python's bytecode (marshal); a node whose Python
# has the same bytecode magic runs the bytecode, any other compiles the source. Compiling
# pynvml (330 kB of source) was most of the probe's start-up.
_LOADER = '''\
# fleetdeck probe bundle (generated by collectors.probe.bundle; nothing here is written to disk)
import binascii, json, marshal, sys, types, zlib

_FD_MAGIC = @MAGIC@


def _fd_code(name, blobs):
    """The code of module `name` from (source, bytecode) blobs: zlib + base64."""
    src, code = blobs
    ours = getattr(sys.modules.get("_frozen_importlib_external"), "MAGIC_NUMBER", None)
    if code and ours == _FD_MAGIC:
        try:
            return marshal.loads(zlib.decompress(binascii.a2b_base64(code)))
        except (ValueError, TypeError, EOFError, zlib.error):
            pass
    return compile(zlib.decompress(binascii.a2b_base64(src)), "<fleetdeck-probe:%s>" % name,
                   "exec")


def _fd_load(name, blobs, pkg):
    m = types.ModuleType(name)
    m.__file__ = "<fleetdeck-probe:%s>" % name
    if pkg:
        m.__path__ = []
    sys.modules[name] = m
    parent, _, leaf = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], leaf, m)
    if blobs:
        exec(_fd_code(name, blobs), m.__dict__)
    return m

'''


def _b64z(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data, 9)).decode("ascii")


def _blobs(name: str) -> tuple[str, str] | None:
    """(source, bytecode) of module `name`, zlib + base64; None when it is not installed."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    src = Path(spec.origin).read_bytes()
    code = compile(src, f"<fleetdeck-probe:{name}>", "exec", dont_inherit=True)
    return _b64z(src), _b64z(marshal.dumps(code))


@functools.cache
def _module_blobs(name: str) -> tuple[str, str]:
    blobs = _blobs(name)
    if blobs is None:
        raise RuntimeError(f"probe bundle: module {name} not found")
    return blobs


@functools.cache
def _loader_body() -> str:
    parts = [_LOADER.replace("@MAGIC@", repr(importlib.util.MAGIC_NUMBER))]
    for pkg in _PACKAGES:
        parts.append(f"_fd_load({pkg!r}, None, True)\n")
    for mod in _MODULES:
        parts.append(f"_fd_load({mod!r}, {_module_blobs(mod)!r}, False)\n")
    parts.append(f"_FD_PYNVML = {_blobs('pynvml')!r}\n")
    return "".join(parts)


def _config(interval_s: float, disk_paths: Sequence[str], once: bool) -> dict[str, object]:
    if not interval_s > 0:
        raise ValueError(f"probe interval_s must be > 0, got {interval_s!r}")
    if isinstance(disk_paths, str):
        raise TypeError("disk_paths must be a sequence of paths, not a string")
    return {"interval_s": float(interval_s), "disk_paths": list(disk_paths), "once": bool(once)}


def bundle(interval_s: float, *, disk_paths: Sequence[str] = ("/",), once: bool = False,
           stdin_link: bool = False) -> bytes:
    """The probe as Python source for `python3 -u -` (see the module docstring).

    `stdin_link=True` makes the probe exit when its stdin reaches EOF; only for a runner that
    keeps stdin open after the source (the bootstrap form, `stdin_payload`).
    """
    cfg = json.dumps(_config(interval_s, disk_paths, once))
    main = (
        f"sys.modules['collectors.probe.node'].main(json.loads({cfg!r}), "
        "(lambda: _fd_code('pynvml', _FD_PYNVML)) if _FD_PYNVML else None, "
        f"{bool(stdin_link)!r})\n"
    )
    return (_loader_body() + main).encode("utf-8")


def stdin_payload(interval_s: float, *, disk_paths: Sequence[str] = ("/",), once: bool = False,
                  stdin_link: bool = True) -> bytes:
    """What to write to the stdin of `python_command()` (length line + compressed bundle)."""
    z = zlib.compress(bundle(interval_s, disk_paths=disk_paths, once=once,
                             stdin_link=stdin_link), 6)
    return b"%d\n" % len(z) + z


def _env_prefix(env: Mapping[str, str] | None) -> str:
    if not env:
        return ""
    for k in env:
        if not k.replace("_", "a").isalnum() or k[0].isdigit():
            raise ValueError(f"probe env: bad variable name {k!r}")
    return "env " + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items()) + " "


def python_command(python: str = "python3", *, env: Mapping[str, str] | None = None) -> str:
    """Shell command line running the bootstrap that reads `stdin_payload(...)`."""
    flags = " ".join(PYTHON_FLAGS)
    return f"{_env_prefix(env)}{shlex.quote(python)} {flags} -c {shlex.quote(BOOTSTRAP)}"


def _fallback_script() -> str:
    text = Path(__file__).with_name("fallback.sh").read_text()
    query = ",".join(f for f, _ in GPU_FIELDS)
    return text.replace("@GPU_QUERY@", query).replace("@PROBE_VERSION@", PROBE_VERSION)


SHELL_FALLBACK: str = _fallback_script()


def shell_command(interval_s: float, *, disk_paths: Sequence[str] = ("/",), once: bool = False,
                  stdin_link: bool = False, env: Mapping[str, str] | None = None) -> str:
    """Shell command line running `SHELL_FALLBACK` (mode once | loop | link)."""
    cfg = _config(interval_s, disk_paths, once)
    mode = "once" if once else ("link" if stdin_link else "loop")
    args = [f"{cfg['interval_s']:g}", mode, *disk_paths]
    return (f"{_env_prefix(env)}sh -c {shlex.quote(SHELL_FALLBACK)} fleetdeck-probe "
            + " ".join(shlex.quote(a) for a in args))


def launch_command(interval_s: float, *, disk_paths: Sequence[str] = ("/",), once: bool = False,
                   stdin_link: bool = False, python: str = "python3",
                   env: Mapping[str, str] | None = None) -> str:
    """One command for any node: the Python probe if `python` runs there, else the shell one.

    Write `stdin_payload(interval_s, disk_paths=..., once=..., stdin_link=...)` to its stdin
    (the shell fallback ignores it). With `stdin_link=True` keep stdin open: closing it stops
    the probe at once; otherwise EOF after the payload is fine.
    """
    py = python_command(python)
    sh = shell_command(interval_s, disk_paths=disk_paths, once=once, stdin_link=stdin_link)
    script = (f"if command -v {shlex.quote(python)} >/dev/null 2>&1; then exec {py}; "
              f"else exec {sh}; fi")
    return f"{_env_prefix(env)}sh -c {shlex.quote(script)}"
