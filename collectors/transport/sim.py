"""The simulated-node transport (`transport = "sim"`): a node that exists only on this machine.

A sim node is a sandbox folder, the node's `host` (empty: `$TMPDIR/fleetdeck-sim/<name>`),
holding `node.json` (its hardware, `SimProfile`). Everything except the probe is real:

- `run`, `run_shell`, `stream`, `stream_shell` run the command on this machine inside the
  sandbox, with `HOME` set to it, so the process executor's per-job folders
  (`~/.fleetdeck/jobs/<id>-<attempt>/`) and its detached jobs are real files and processes.
- The probe launcher (`collectors.probe.launch_command`, recognised by its `fleetdeck-probe`
  argument) is answered in Python: a `hello` line, then one probe-format sample per interval
  whose host and GPU figures follow the fleetdeck jobs running in the sandbox (found through
  their job folders and `/proc/<pid>/environ`), with noise. A job's environment may shape its
  load: `SIM_UTIL_PCT` (mean GPU utilization, default 85), `SIM_MEM_FRAC` (share of its GPU
  memory held, default 0.7), `SIM_BUSY_S` (busy this long after starting, then idle with its
  memory still held: a forgotten notebook), `SIM_CPU_CORES` (busy cores, default 2 per GPU).
- No Docker: `forward_unix` fails. A file `down` in the sandbox makes the node unreachable
  (connects fail, streams drop) until it is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import os
import random
import re
import signal
import tempfile
import time
import zlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from collectors.transport.base import (
    CommandResult,
    ConnectError,
    Disconnected,
    NodeLike,
    TransportError,
    quote_argv,
)
from collectors.transport.line_stream import NodeTransport
from collectors.transport.local import LocalLineStream, LocalTransport, run_local

GIB = 1024**3
PROFILE_FILE = "node.json"
DOWN_FILE = "down"
JOBS_DIR = (".fleetdeck", "jobs")  # the process executor's default, under HOME
PROBE_MARK = "fleetdeck-probe"  # argv[0] of the shell probe inside every launch command
SIM_PROBE_VERSION = "sim-1"


@dataclass(frozen=True, slots=True)
class SimProfile:
    """A sim node's hardware, as `node.json` in its sandbox."""

    cpu_count: int = 32
    cpu_model: str = "AMD EPYC 7543 32-Core Processor"
    mem_total_bytes: int = 256 * GIB
    gpu_count: int = 0
    gpu_model: str = ""
    gpu_mem_total_bytes: int = 0
    gpu_power_limit_w: float = 0.0
    gpu_idle_power_w: float = 0.0
    gpu_sm_clock_mhz: int = 0
    driver_version: str | None = None
    kernel: str = "6.8.0-45-generic"
    disk_total_bytes: int = 2 * 1024 * GIB
    ecc_corrected_per_gpu_hour: float = 0.0  # rare corrected ECC errors
    seed: int = 0

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SimProfile:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def sandbox_of(node: NodeLike) -> Path:
    """The node's sandbox folder: its `host`, or a per-name folder under the temp dir."""
    if node.host:
        return Path(node.host).expanduser()
    return Path(tempfile.gettempdir()) / "fleetdeck-sim" / node.name


def write_profile(sandbox: Path, profile: SimProfile) -> None:
    sandbox.mkdir(parents=True, exist_ok=True)
    (sandbox / PROFILE_FILE).write_text(json.dumps(asdict(profile), indent=1))


def read_profile(sandbox: Path) -> SimProfile:
    """The sandbox's profile; a CPU-only default when it has none."""
    try:
        data = json.loads((sandbox / PROFILE_FILE).read_text())
    except FileNotFoundError:
        return SimProfile()
    except (OSError, ValueError) as e:
        raise TransportError(f"{sandbox / PROFILE_FILE}: unreadable sim profile: {e}") from None
    return SimProfile.from_mapping(data)


def set_down(sandbox: Path, down: bool) -> None:
    """Make a sim node unreachable (True) or reachable again (False)."""
    marker = sandbox / DOWN_FILE
    if down:
        marker.touch()
    else:
        marker.unlink(missing_ok=True)


# -- jobs running on a node ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SimJob:
    """A process-executor job alive in a sandbox, with the load it asks the sim to show."""

    job_id: int
    attempt: int
    pid: int
    name: str
    started_at: float
    gpu_indices: tuple[int, ...]
    gpu_milli: int
    util_pct: float
    mem_frac: float
    busy_s: float | None
    cpu_cores: float

    def busy(self, now: float) -> bool:
        return self.busy_s is None or now - self.started_at < self.busy_s


def _environ(pid: int) -> dict[str, str] | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    out = {}
    for item in raw.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            out[k.decode(errors="replace")] = v.decode(errors="replace")
    return out


def _float(env: Mapping[str, str], key: str, default: float | None) -> float | None:
    try:
        return float(env[key])
    except (KeyError, ValueError):
        return default


def _job_from(tag: str, folder: Path) -> SimJob | None:
    if (folder / "exit_code").exists():
        return None
    try:
        pid = int((folder / "pid").read_text())
        started = float((folder / "started_at").read_text() or time.time())
    except (OSError, ValueError):
        return None
    env = _environ(pid)
    if env is None:
        return None
    job_id, _, attempt = tag.partition("-")
    gpus = tuple(int(i) for i in env.get("FLEETDECK_GPU_INDICES", "").split(",") if i.isdigit())
    milli = int(_float(env, "FLEETDECK_GPU_MILLI", 1000) or 1000)
    return SimJob(
        job_id=int(job_id), attempt=int(attempt), pid=pid,
        name=env.get("FLEETDECK_JOB_NAME", tag), started_at=started, gpu_indices=gpus,
        gpu_milli=milli, util_pct=_float(env, "SIM_UTIL_PCT", 85.0) or 0.0,
        mem_frac=min(1.0, max(0.0, _float(env, "SIM_MEM_FRAC", 0.7) or 0.0)),
        busy_s=_float(env, "SIM_BUSY_S", None),
        cpu_cores=_float(env, "SIM_CPU_CORES", None) or 2.0 * max(1, len(gpus)),
    )


class JobScanner:
    """Finds the live jobs of one sandbox; a job's environment is read once per job folder."""

    def __init__(self, sandbox: Path) -> None:
        self.jobs_dir = sandbox.joinpath(*JOBS_DIR)
        self._known: dict[str, SimJob | None] = {}

    def scan(self) -> list[SimJob]:
        folders = job_folders(self.jobs_dir)
        live = []
        for folder in folders:
            key = str(folder)
            job = self._known.get(key)
            if job is None:
                job = _job_from(folder.name, folder)
                if job is None:
                    continue
                self._known[key] = job
            elif (folder / "exit_code").exists() or not _alive(job.pid):
                self._known.pop(key, None)
                continue
            live.append(job)
        for key in set(self._known) - {str(f) for f in folders}:
            del self._known[key]
        return live


def job_folders(jobs_dir: Path) -> list[Path]:
    """Job folders `<id>-<attempt>` directly in `jobs_dir` or one level down, where the engine
    keeps them per store (`<jobs_dir>/<fleet id>/<id>-<attempt>`)."""
    out: list[Path] = []
    try:
        entries = [e for e in os.scandir(jobs_dir) if e.is_dir()]
    except OSError:
        return out
    for e in entries:
        if _TAG.match(e.name):
            out.append(Path(e.path))
            continue
        with contextlib.suppress(OSError):
            out.extend(Path(s.path) for s in os.scandir(e.path)
                       if s.is_dir() and _TAG.match(s.name))
    return out


_TAG = re.compile(r"\d+-\d+\Z")


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


# -- telemetry ----------------------------------------------------------------------------------
def gpu_uuid(node: str, index: int) -> str:
    """The stable UUID a sim node reports for its GPU `index` (history generators use it too)."""
    return (f"GPU-{zlib.crc32(f'{node}/{index}'.encode()):08x}-5151-{index:04x}-0000-"
            f"{zlib.crc32(node.encode()):012x}")


class NodeModel:
    """Synthetic probe samples for one node, following its jobs; smooth, noisy, seeded."""

    def __init__(self, name: str, profile: SimProfile) -> None:
        self.name = name
        self.p = profile
        self.rng = random.Random(profile.seed or zlib.crc32(name.encode()))
        self.boot_ts = time.time() - self.rng.uniform(3, 60) * 86400
        self.ambient_c = self.rng.uniform(26.0, 34.0)
        g = profile.gpu_count
        self.temp_c = [self.ambient_c + 4.0] * g
        self.ecc = [0] * g
        self.uuids = [gpu_uuid(name, i) for i in range(g)]
        self.net = [self.rng.randrange(10**9, 10**11), self.rng.randrange(10**9, 10**11)]
        self.disk_used = int(profile.disk_total_bytes * self.rng.uniform(0.2, 0.6))
        self.last_ts: float | None = None
        self.seq = 0

    def hello(self, interval_s: float, now: float) -> dict[str, Any]:
        return {"type": "hello", "v": 1, "probe_version": SIM_PROBE_VERSION, "mode": "python",
                "ts": now, "python_version": "3.11.9", "hostname": self.name,
                "kernel": self.p.kernel, "pid": os.getpid(), "interval_s": interval_s}

    def _noise(self, scale: float) -> float:
        return self.rng.gauss(0.0, scale)

    def sample(self, jobs: Sequence[SimJob], interval_s: float, now: float) -> dict[str, Any]:
        p = self.p
        dt = interval_s if self.last_ts is None else max(0.0, now - self.last_ts)
        self.last_ts = now
        self.seq += 1
        per_gpu: list[list[tuple[SimJob, float]]] = [[] for _ in range(p.gpu_count)]
        for j in jobs:
            for i in j.gpu_indices:
                if 0 <= i < p.gpu_count:
                    per_gpu[i].append((j, j.gpu_milli / 1000.0))
        gpus, procs = [], []
        for i, held in enumerate(per_gpu):
            util = 0.0
            mem = 0
            for j, share in held:
                ramp = min(1.0, max(0.0, (now - j.started_at) / 8.0))
                if j.busy(now):
                    wave = 1.0 + 0.06 * math.sin(now / 17.0 + j.job_id) + self._noise(0.04)
                    util += j.util_pct * share * ramp * wave
                job_mem = int(p.gpu_mem_total_bytes * share * j.mem_frac * ramp) + 512 * 2**20
                mem += job_mem
                procs.append({"gpu_index": i, "uuid": self.uuids[i], "pid": j.pid,
                              "gpu_mem_used_bytes": job_mem, "command": j.name,
                              "container_id": None, "job_id": j.job_id})
            util = round(min(100.0, max(0.0, util)), 1)
            mem = min(mem, p.gpu_mem_total_bytes)
            busy = util > 0.5
            target = self.ambient_c + 6.0 + 0.42 * util
            self.temp_c[i] += (target - self.temp_c[i]) * min(1.0, dt / 20.0)
            power = (p.gpu_idle_power_w + (0.1 if mem else 0.0) * p.gpu_power_limit_w
                     + (p.gpu_power_limit_w - 1.4 * p.gpu_idle_power_w) * util / 100.0
                     + self._noise(2.0))
            rate = p.ecc_corrected_per_gpu_hour * dt / 3600.0
            if rate > 0 and self.rng.random() < rate:
                self.ecc[i] += self.rng.randint(1, 4)
            gpus.append({
                "index": i, "uuid": self.uuids[i], "model": p.gpu_model,
                "mem_total_bytes": p.gpu_mem_total_bytes, "mem_used_bytes": mem,
                "util_pct": util, "mem_util_pct": round(util * 0.55, 1),
                "temp_c": round(self.temp_c[i] + self._noise(0.3), 1),
                "power_w": round(min(p.gpu_power_limit_w, max(p.gpu_idle_power_w * 0.8, power)),
                                 1),
                "power_limit_w": p.gpu_power_limit_w,
                "sm_clock_mhz": p.gpu_sm_clock_mhz if busy else 210,
                "ecc_corrected": self.ecc[i], "ecc_uncorrected": 0, "retired_pages": 0,
                "retired_pending": False, "remap_failure": False, "mig_mode": False,
                "remap_pending": False,
            })
        host = self._host(jobs, dt, now)
        self.disk_used += int(self.rng.uniform(0, 2e6) * dt)
        return {"type": "sample", "v": 1, "seq": self.seq, "ts": now, "interval_s": interval_s,
                "host": host,
                "disks": [{"path": "/", "total_bytes": p.disk_total_bytes,
                           "used_bytes": min(self.disk_used, p.disk_total_bytes)}],
                "gpu_source": "nvml" if p.gpu_count else "none",
                "driver_version": p.driver_version if p.gpu_count else None,
                "gpus": gpus, "procs": procs, "events": [], "errors": []}

    def _host(self, jobs: Sequence[SimJob], dt: float, now: float) -> dict[str, Any]:
        p = self.p
        cores = 0.3 + sum(j.cpu_cores * (0.9 if j.busy(now) else 0.03) for j in jobs)
        cores = min(float(p.cpu_count), max(0.0, cores + self._noise(0.2)))
        util = 100.0 * cores / p.cpu_count
        per_core = [0.0] * p.cpu_count
        whole, frac = int(cores), cores - int(cores)
        for c in range(p.cpu_count):
            base = 92.0 if c < whole else (frac * 90.0 if c == whole else 0.4)
            per_core[c] = round(min(100.0, max(0.0, base + self._noise(2.0))), 1)
        mem_used = 6 * GIB + sum(int(min(64.0, 8.0 * j.cpu_cores) * GIB) for j in jobs)
        mem_used = min(mem_used, p.mem_total_bytes - GIB)
        rx_rate = 2e6 + sum(4e7 * len(j.gpu_indices) for j in jobs if j.busy(now))
        self.net[0] += int(rx_rate * dt * self.rng.uniform(0.8, 1.2))
        self.net[1] += int(rx_rate * 0.3 * dt * self.rng.uniform(0.8, 1.2))
        return {
            "hostname": self.name, "kernel": p.kernel, "cpu_model": p.cpu_model,
            "uptime_s": round(now - self.boot_ts, 1), "cpu_count": p.cpu_count,
            "cpu_util_pct": round(util, 1), "per_core_util_pct": per_core,
            "load1": round(cores, 2), "load5": round(cores * 0.95, 2),
            "load15": round(cores * 0.9, 2), "mem_total_bytes": p.mem_total_bytes,
            "mem_used_bytes": mem_used, "mem_available_bytes": p.mem_total_bytes - mem_used,
            "swap_total_bytes": 0, "swap_used_bytes": 0,
            "net_rx_bytes": self.net[0], "net_tx_bytes": self.net[1],
        }


_PROBE_ARGS = re.compile(PROBE_MARK + r"""['"]*\s+['"]*([0-9.]+)['"]*\s+['"]*(once|loop|link)\b""")
_PAYLOAD_CFG = re.compile(rb'"interval_s": ([0-9.]+), "disk_paths": .*?, "once": (true|false)')


def probe_settings(command: str, payload: bytes | None = None) -> tuple[float, bool] | None:
    """(interval_s, once) of a probe launch, or None when the command is not the probe.

    The launch command carries the shell probe's arguments (`fleetdeck-probe INTERVAL MODE
    PATH...`, `collectors.probe.shell_command`); a launch without them (the bare Python
    bootstrap) is read from its stdin payload, the bundle's own config.
    """
    if PROBE_MARK not in command:
        return None
    found = _command_settings(command)
    if found is None and payload:
        found = _payload_settings(payload)
    return found


@functools.lru_cache(maxsize=16)
def _command_settings(command: str) -> tuple[float, bool] | None:
    found = _PROBE_ARGS.findall(command)
    if not found:
        return None
    interval, mode = found[-1]
    try:
        return float(interval), mode == "once"
    except ValueError:
        return None


@functools.lru_cache(maxsize=16)
def _payload_settings(payload: bytes) -> tuple[float, bool] | None:
    head, _, body = payload.partition(b"\n")
    try:
        text = zlib.decompress(body[:int(head)]) if head.strip().isdigit() else body
    except (ValueError, zlib.error):
        return None
    m = _PAYLOAD_CFG.search(text)
    return (float(m.group(1)), m.group(2) == b"true") if m else None


class SimProbeStream:
    """`LineStream` of a simulated probe: hello, then samples on the probe's cadence."""

    def __init__(self, transport: SimTransport, interval_s: float, once: bool) -> None:
        self._t = transport
        self._interval_s = interval_s
        self._once = once
        self._closed = asyncio.Event()
        self.exit_status: int | None = None
        self.stderr_tail = b""

    async def __aenter__(self) -> SimProbeStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed.set()

    async def _sleep(self, delay_s: float) -> bool:
        """Wait `delay_s`; False when the stream was closed meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, delay_s)):
                await self._closed.wait()
        return not self._closed.is_set()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        t = self._t
        model = t.model()
        yield _line(model.hello(self._interval_s, time.time()))
        first = min(self._interval_s, 0.1)  # no CPU delta to wait for, unlike the probe
        next_t = time.monotonic() + first
        while await self._sleep(next_t - time.monotonic()):
            if t.is_down():
                t.lost()
                raise Disconnected(f"{t.where}: connection lost")
            yield _line(model.sample(t.scanner.scan(), self._interval_s, time.time()))
            if self._once:
                break
            next_t += self._interval_s
            now = time.monotonic()
            if next_t <= now:  # fell behind: skip missed ticks, as the real probe does
                next_t = now + self._interval_s - ((now - next_t) % self._interval_s)
        self.exit_status = 0


def _line(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class SimTransport(NodeTransport):
    """`Transport` of a simulated node. See the module docstring."""

    place = "sim"

    def __init__(self, node: NodeLike, profile: SimProfile | None = None) -> None:
        super().__init__(node)
        self.sandbox = sandbox_of(node)
        self._profile = profile
        self._model: NodeModel | None = None
        self._connected = False
        self._local = LocalTransport(node)
        self.scanner = JobScanner(self.sandbox)
        self._env: dict[str, str] | None = None

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def profile(self) -> SimProfile:
        if self._profile is None:
            self._profile = read_profile(self.sandbox)
        return self._profile

    def model(self) -> NodeModel:
        if self._model is None:
            self._model = NodeModel(self._node.name, self.profile)
        return self._model

    def is_down(self) -> bool:
        return (self.sandbox / DOWN_FILE).exists()

    def lost(self) -> None:
        self._connected = False

    async def connect(self) -> None:
        if self._connected:
            return
        if self.is_down():
            raise ConnectError(f"{self.where}: connection refused (node is down)")
        try:
            self.sandbox.joinpath(*JOBS_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConnectError(f"{self.where}: sandbox {self.sandbox}: {e.strerror}") from None
        _ = self.profile  # read node.json now: a bad one fails the connect
        self._connected = True

    async def close(self) -> None:
        self._connected = False

    def _environment(self) -> dict[str, str]:
        if self._env is None:
            env = dict(os.environ)
            env.update(HOME=str(self.sandbox), FLEETDECK_SIM_NODE=self._node.name)
            self._env = env
        return self._env

    def _check(self) -> None:
        if self.is_down():
            self._connected = False
            raise Disconnected(f"{self.where}: connection lost")

    async def run(self, argv: Sequence[str], *, input: bytes | None = None,
                  timeout: float) -> CommandResult:
        quote_argv(argv)
        return await self._run(list(argv), input, timeout)

    async def run_shell(self, script: str, *, input: bytes | None = None,
                        timeout: float) -> CommandResult:
        return await self._run(["sh", "-c", script], input, timeout)

    async def _run(self, argv: list[str], input: bytes | None, limit_s: float) -> CommandResult:
        await self.connect()
        self._check()
        return await run_local(argv, input, limit_s, self.where, env=self._environment(),
                               cwd=self.sandbox)

    def _sandboxed(self, argv: Sequence[str]) -> list[str]:
        return ["env", "-C", str(self.sandbox), f"HOME={self.sandbox}",
                f"FLEETDECK_SIM_NODE={self._node.name}", *argv]

    def stream(self, argv: Sequence[str], *, input: bytes | None = None,
               keep_stdin_open: bool = False) -> LocalLineStream | SimProbeStream:
        quote_argv(argv)
        self._check()
        if len(argv) == 3 and list(argv[:2]) == ["sh", "-c"]:
            probe = probe_settings(argv[2], input)
            if probe is not None:
                return SimProbeStream(self, *probe)
        return self._local.stream(self._sandboxed(argv), input=input,
                                  keep_stdin_open=keep_stdin_open)

    def stream_shell(self, command: str, *, input: bytes | None = None,
                     keep_stdin_open: bool = False) -> LocalLineStream | SimProbeStream:
        self._check()
        probe = probe_settings(command, input)
        if probe is not None:
            return SimProbeStream(self, *probe)
        return self._local.stream(self._sandboxed(["sh", "-c", command]), input=input,
                                  keep_stdin_open=keep_stdin_open)

    async def forward_unix(self, remote_path: str) -> str:
        raise TransportError(f"{self.where}: simulated nodes have no Docker socket "
                             f"({remote_path})")


def sandbox_pids(sandbox: Path) -> list[int]:
    """Process groups of the jobs started in a sandbox (job pids and their wrappers)."""
    pids: list[int] = []
    for folder in job_folders(sandbox.joinpath(*JOBS_DIR)):
        for name in ("pid", "runner_pid"):
            with contextlib.suppress(OSError, ValueError):
                pids.append(int((folder / name).read_text()))
    return pids


def stop_sandbox_jobs(sandbox: Path) -> int:
    """SIGKILL what jobs started in a sandbox still run (checked by their HOME); returns how
    many process groups were signalled."""
    home = f"HOME={sandbox}"
    count = 0
    for pid in sandbox_pids(sandbox):
        env = _environ(pid)
        if env is None or f"HOME={env.get('HOME')}" != home:
            continue  # gone, or the pid now belongs to someone else
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
            count += 1
    return count
