"""Shared harness of `bench_serve.py` and `bench_engine.py`: simulated SSH nodes in their own
process (`simnodes.py`), a store seeded with jobs, the real `fleetdeck serve` process, clients
timing engine calls, and CPU per thread of the engine from /proc.

The seeded jobs: `total` jobs, of which `queued` wait forever (16 GPUs each on 8-GPU nodes,
so every placement cycle plans them) and the rest finished (succeeded / failed / stopped)
with their `job_events`. No job runs: the simulated nodes answer every command with probe
lines, so nothing can start on them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from collectors.store import Store  # noqa: E402
from console.engine.api.methods import BY_REQUEST  # noqa: E402
from console.engine.api.requests import Request  # noqa: E402
from console.engine.client import EngineClient, RemoteError  # noqa: E402

TICK_S = os.sysconf("SC_CLK_TCK")
USERS = [f"user{i:02d}" for i in range(40)]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))]


def raise_nofile(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n)), hard))


def free_port_block(n: int) -> int:
    """A base port with n consecutive free ports on 127.0.0.1."""
    for base in range(20000, 60000 - n, 97):
        socks = []
        try:
            for i in range(n):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", base + i))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no block of {n} free ports")


@contextlib.asynccontextmanager
async def sim_nodes(work: Path, nodes: int, interval_s: float, gpus: int,
                    stats: Path | None = None, *, aligned: bool = False,
                    nice: int = 0) -> AsyncIterator[int]:
    """Start `simnodes.py` (own process); yields the first node's port. With `stats`, the
    simulator writes its own timings there (`write_s`) when it stops. `aligned`: every node
    samples at the same wall-clock moment (else each on the probe's own cadence); `nice`: the
    simulator's niceness."""
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    host_key.write_private_key(str(work / "host_key"))
    client_key.write_private_key(str(work / "client_key"))
    (work / "authorized_keys").write_bytes(client_key.export_public_key())
    base = free_port_block(nodes)
    public = host_key.export_public_key().decode().strip()
    (work / "known_hosts").write_text(
        "".join(f"[127.0.0.1]:{base + i} {public}\n" for i in range(nodes)))
    ready = work / "ready"
    sim = await asyncio.create_subprocess_exec(
        sys.executable, str(REPO / "benchmarks" / "simnodes.py"), "--nodes", str(nodes),
        "--base-port", str(base), "--interval", str(interval_s), "--gpus", str(gpus),
        "--host-key", str(work / "host_key"), "--authorized-keys",
        str(work / "authorized_keys"), "--ready", str(ready),
        *(["--stats", str(stats)] if stats is not None else []),
        *(["--aligned"] if aligned else []), *(["--nice", str(nice)] if nice else []),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        t0 = time.monotonic()
        while not ready.exists():
            if sim.returncode is not None:
                err = await sim.stderr.read() if sim.stderr else b""
                raise RuntimeError(f"simnodes exited: {err.decode()[-2000:]}")
            if time.monotonic() - t0 > 300:
                raise RuntimeError("simnodes did not start within 300 s")
            await asyncio.sleep(0.2)
        yield base
    finally:
        if sim.returncode is None:
            sim.terminate()
            try:
                async with asyncio.timeout(10):
                    await sim.wait()
            except TimeoutError:
                sim.kill()
                await sim.wait()


def write_config(work: Path, *, base_port: int, nodes: int, interval_s: float) -> Path:
    """A serve config: the simulated nodes over SSH, collection and scheduling on."""
    (work / "ssh_config").write_text("")
    lines = [
        f'[store]\npath = "{work / "store.duckdb"}"\n',
        f"[collect]\ninterval_s = {interval_s}\nconnect_timeout_s = 60.0\n"
        "max_concurrent_connects = 64\n",
        f'[ssh]\nknown_hosts = "{work / "known_hosts"}"\nconfig_file = "{work / "ssh_config"}"\n'
        "use_agent = false\n",
        f'[engine]\nsocket = "{work / "engine.sock"}"\ncollect = true\nschedule = true\n',
    ]
    for i in range(nodes):
        lines.append(
            f'[[nodes]]\nname = "sim{i:04d}"\nhost = "127.0.0.1"\nport = {base_port + i}\n'
            f'user = "bench"\nidentity_file = "{work / "client_key"}"\ndocker_socket = ""\n'
            f'pool = "p{i % 4}"\n')
    path = work / "config.toml"
    path.write_text("\n".join(lines))
    return path


def seed_jobs(store_path: Path, *, total: int, queued: int, nodes: int) -> None:
    """`total` jobs in the store (see the module docstring), ids 1..total."""
    rng = random.Random(42)
    now_us = int(time.time() * 1e6)
    done = total - queued
    ids = list(range(1, total + 1))
    users = [USERS[rng.randrange(len(USERS))] for _ in ids]
    gpus = [16 if i > done else rng.choice((1, 1, 2, 4, 8)) for i in ids]
    submitted = [now_us - (total - i) * 20_000_000 for i in ids]
    state = [("queued" if i > done else rng.choice(("succeeded", "succeeded", "failed",
                                                   "stopped"))) for i in ids]
    pairs = list(zip(state, submitted, strict=True))
    started = [None if st == "queued" else t + 30_000_000 for st, t in pairs]
    ended = [None if st == "queued" else t + 3_600_000_000 for st, t in pairs]
    node = [None if st == "queued" else f"sim{rng.randrange(nodes):04d}" for st in state]
    spec = [json.dumps({"name": f"job{i}", "command": ["python", "train.py"], "user": u,
                        "gpus": float(g), "executor": "process"})
            for i, u, g in zip(ids, users, gpus, strict=True)]
    ts = pa.timestamp("us")
    jobs = pa.table({
        "id": pa.array(ids, pa.int64()), "name": [f"job{i}" for i in ids], "user": users,
        "project": ["" for _ in ids], "team": ["" for _ in ids], "kind": ["batch" for _ in ids],
        "executor": ["process" for _ in ids], "spec": spec, "state": state,
        "reason": [None if st == "queued" else "exit 0" for st in state],
        "priority": pa.array([0 for _ in ids], pa.int32()),
        "node": node, "gpu_count": pa.array([min(g, 8) for g in gpus], pa.int32()),
        "gpu_milli": pa.array([1000 for _ in ids], pa.int32()),
        "submitted_at": pa.array(submitted, pa.int64()).cast(ts),
        "started_at": pa.array(started, pa.int64()).cast(ts),
        "ended_at": pa.array(ended, pa.int64()).cast(ts),
    })
    ev_job, ev_ts, ev_from, ev_to = [], [], [], []
    for i, st, t in zip(ids, state, submitted, strict=True):
        steps = [(None, "queued")] if st == "queued" else [
            (None, "queued"), ("queued", "starting"), ("starting", "running"), ("running", st)]
        for k, (a, b) in enumerate(steps):
            ev_job.append(i)
            ev_ts.append(t + k * 10_000_000)
            ev_from.append(a)
            ev_to.append(b)
    events = pa.table({"ts": pa.array(ev_ts, pa.int64()).cast(ts),
                       "job_id": pa.array(ev_job, pa.int64()), "from_state": ev_from,
                       "to_state": ev_to, "reason": [None] * len(ev_job),
                       "actor": ["bench"] * len(ev_job)})
    with Store.open(store_path) as store:
        with store.transaction():
            store.append("jobs", jobs)
            store.append("job_events", events)
        store.con.execute("SELECT max(nextval('job_id_seq')) FROM range(?)", [total])


@dataclass
class Serve:
    """The real `fleetdeck serve` process."""

    config: Path
    socket: Path
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    async def start(self, timeout_s: float = 600) -> None:
        self.log = self.config.with_name("serve.log")
        self.proc = subprocess.Popen(  # noqa: ASYNC220 (runs for the whole bench)
            [sys.executable, "-m", "console.cli", "--config", str(self.config), "serve"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=self.log.open("wb"))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited {self.proc.returncode}: "
                                   f"{self.log.read_text()[-2000:]}")
            with contextlib.suppress(Exception):
                c = await EngineClient.connect(self.socket)
                await c.close()
                return
            await asyncio.sleep(0.5)
        raise RuntimeError("serve did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def rss_mib(self, key: str = "VmRSS") -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def peak_rss_mib(self) -> float:
        return self.rss_mib("VmHWM")

    def loop_sched_s(self) -> tuple[float, float]:
        """The main (event loop) thread's seconds on a CPU and runnable but waiting for one,
        so far (/proc schedstat): together, how busy the loop was on a crowded machine."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/schedstat").read_text().split()
        return int(fields[0]) / 1e9, int(fields[1]) / 1e9

    def thread_cpu_s(self) -> dict[int, float]:
        """CPU seconds so far of each thread (native id) of the serve process."""
        assert self.proc is not None
        out: dict[int, float] = {}
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                fields = task.joinpath("stat").read_text().rsplit(")", 1)[1].split()
                out[int(task.name)] = (int(fields[11]) + int(fields[12])) / TICK_S
        return out


def thread_roles(pid: int, threads: list[Mapping[str, Any]]) -> dict[int, str]:
    """Native thread id -> loop | store | reads | python (other Python threads); threads
    not listed by the engine are DuckDB's own."""
    roles: dict[int, str] = {}
    for t in threads:
        name = str(t["name"])
        tid = int(t["tid"])
        if tid == pid:
            roles[tid] = "loop"
        elif name.startswith("fleetdeck-store"):
            roles[tid] = "store"
        elif name.startswith("fleetdeck-read"):
            roles[tid] = "reads"
        else:
            roles[tid] = "python"
    return roles


def cpu_by_role(before: Mapping[int, float], after: Mapping[int, float],
                roles: Mapping[int, str], pid: int, *, unknown: str) -> dict[str, float]:
    """CPU seconds between two readings, summed by thread role (not in `roles`: `unknown`,
    DuckDB's own threads when the engine named its Python threads)."""
    out: dict[str, float] = {}
    for tid, cpu in after.items():
        role = roles.get(tid, "loop" if tid == pid else unknown)
        out[role] = out.get(role, 0.0) + cpu - before.get(tid, 0.0)
    return out


@dataclass
class Latencies:
    """Client-side call latency per method, and calls that failed (by error code)."""

    by_method: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    async def time(self, client: EngineClient, method: str | Request[Any], *,
                   label: str | None = None, **params: Any) -> Any:
        """Call `method` (a name, or a typed request); its latency is kept under `label`
        (default: the method's name)."""
        key = label or (method if isinstance(method, str) else BY_REQUEST[type(method)].name)
        t0 = time.perf_counter()
        try:
            out = await (client.call(method, **params) if isinstance(method, str)
                         else client.call(method))
        except RemoteError as e:
            if e.code != "not_found":  # a random id may be missing: still an answer
                self.errors[f"{key}:{e.code}"] = self.errors.get(f"{key}:{e.code}", 0) + 1
                return None
            out = None
        self.by_method.setdefault(key, []).append(time.perf_counter() - t0)
        return out

    def lines(self) -> list[str]:
        out = []
        for method, values in sorted(self.by_method.items()):
            p50, p99 = 1000 * statistics.median(values), 1000 * pct(values, 99)
            out.append(f"  {method:<12} n={len(values):<6} p50 {p50:7.1f} ms   "
                       f"p99 {p99:7.1f} ms   max {1000 * max(values):7.1f} ms")
        for key, n in sorted(self.errors.items()):
            out.append(f"  error {key}: {n}")
        return out


async def has_method(client: EngineClient, method: str, **params: Any) -> bool:
    """Whether the engine answers `method` (an older engine lacks `job`, `ingest_stats`)."""
    try:
        await client.call(method, **params)
    except RemoteError as e:
        return e.code != "bad_request"
    return True


def engine_lines(lat: Latencies, refused: list[str], *, clients: int, period_s: float,
                 duration_s: float, job_method: bool, procs: int, deltas: bool) -> list[str]:
    out = [f"{clients} concurrent clients in {procs} processes, one call each every "
           f"{period_s:g} s for {duration_s:.0f} s; connections refused or failed: "
           f"{len(refused)}" + (f" ({', '.join(sorted(set(refused)))})" if refused else ""),
           "per method (target p99 < 50 ms; fleet: "
           + ("changes since the client's last answer, fleet_delta" if deltas
              else "the whole fleet each time") + ")"
           + ("" if job_method else "; older engine: 'job' asked as jobs ids=[N]") + ":"]
    return out + lat.lines()


def fleet_args(doc: str, *, duration_s: float, clients: int) -> argparse.ArgumentParser:
    """The flags both fleet benches share (the fleet, the store, the clients, how long)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--interval", type=float, default=5.0, help="collection interval, s")
    ap.add_argument("--jobs", type=int, default=100_000, help="jobs in the store")
    ap.add_argument("--queued", type=int, default=200, help="of which queued (never fit)")
    ap.add_argument("--clients", type=int, default=clients)
    ap.add_argument("--duration", type=float, default=duration_s, help="seconds measured")
    ap.add_argument("--up-timeout", type=float, default=900.0)
    ap.add_argument("--nice", type=int, default=0,
                    help="niceness of the simulator and the client processes (e.g. 19: they "
                    "take only the CPU the engine leaves, as on other hosts); default 0")
    ap.add_argument("--aligned", action="store_true",
                    help="every simulated node samples at the same wall-clock moment (the "
                    "worst case for the engine's loop); default: each on the probe's own "
                    "cadence from when it connected")
    return ap


def run_bench(name: str, args: argparse.Namespace,
              run: Callable[[argparse.Namespace, Path], Coroutine[Any, Any, list[str]]]) -> int:
    """Check the shared flags, run `run(args, workdir)` and print its lines (exit 2 on a bad
    flag, one line)."""
    if not (0 < args.nodes <= 5000 and 0 <= args.gpus <= 64 and 0 < args.interval <= 3600
            and 0 < args.duration <= 86400 and 0 < args.clients <= 2000
            and 0 <= args.queued < args.jobs <= 10_000_000):
        print(f"{name}: expected --nodes 1..5000, --gpus 0..64, --interval 0..3600, "
              "--duration 0..86400, --clients 1..2000, 0 <= --queued < --jobs <= 10000000",
              file=sys.stderr)
        return 2
    if not 0 <= args.nice <= 19:
        print(f"{name}: --nice: expected 0..19 (the clients' and simulator's niceness)",
              file=sys.stderr)
        return 2
    raise_nofile(4 * args.nodes + 4 * args.clients + 256)
    work = Path(tempfile.mkdtemp(prefix=f"fd{name}-"))
    try:
        lines = asyncio.run(run(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(lines))
    return 0
