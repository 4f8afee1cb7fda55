"""Simulated fleet nodes for `bench_collect.py`: real SSH servers (asyncssh) in their own process.

Node i listens on 127.0.0.1:(base_port + i) and accepts the bench's client key. Any exec
request is treated as the probe launcher: the server reads (and discards) the probe payload on
stdin, writes a probe `hello` line, then one probe-format `sample` line per interval with `ts` =
the tick time, so the collector can measure each line's latency from its tick. Samples carry
`--gpus` GPUs each. By default each session keeps the real probe's cadence
(`collectors/probe/node.py`): its first sample min(interval, 1 s) after the session starts, then
one per interval from there, so the fleet's lines spread over the interval as the nodes
connected. `--aligned` instead ticks every session on the same wall-clock multiples of the
interval: the whole fleet's lines at one moment, the worst case for the collector's loop.

Usage: python benchmarks/simnodes.py --nodes N --base-port P --interval S --host-key FILE
       --authorized-keys FILE --ready FILE [--stats FILE] [--aligned]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import resource
import signal
import time
from pathlib import Path
from typing import Any

import asyncssh

GIB = 1024**3


def sample_template(node: int, gpus: int, rng: random.Random) -> str:
    """A probe `sample` line with `%(seq)d` and `%(ts).3f` left to fill in."""
    cores = 64
    body: dict[str, Any] = {
        "type": "sample", "v": 1, "seq": "SEQ", "ts": "TS", "interval_s": 0,
        "host": {
            "hostname": f"sim{node:04d}", "kernel": "6.1.0-sim", "cpu_model": "AMD EPYC 7763",
            "uptime_s": 86400.0 + node, "cpu_count": cores,
            "cpu_util_pct": round(rng.uniform(5, 95), 1),
            "per_core_util_pct": [round(rng.uniform(0, 100), 1) for _ in range(cores)],
            "load1": 12.5, "load5": 11.0, "load15": 10.2,
            "mem_total_bytes": 1024 * GIB, "mem_used_bytes": rng.randrange(100, 900) * GIB,
            "mem_available_bytes": 300 * GIB, "swap_total_bytes": 0, "swap_used_bytes": 0,
            "net_rx_bytes": rng.randrange(10**12), "net_tx_bytes": rng.randrange(10**12),
        },
        "disks": [{"path": "/", "total_bytes": 2 * 1024 * GIB, "used_bytes": 700 * GIB}],
        "gpu_source": "nvml" if gpus else "none", "driver_version": "550.54.15" if gpus else None,
        "gpus": [
            {"index": g, "uuid": f"GPU-{node:08x}-{g:04x}-0000-0000-000000000000",
             "model": "NVIDIA H100 80GB HBM3", "mem_total_bytes": 80 * GIB,
             "mem_used_bytes": rng.randrange(0, 80) * GIB,
             "util_pct": float(rng.randrange(0, 101)), "mem_util_pct": float(rng.randrange(0, 101)),
             "temp_c": 55.0, "power_w": round(rng.uniform(80, 700), 1), "power_limit_w": 700.0,
             "sm_clock_mhz": 1980, "ecc_corrected": 0, "ecc_uncorrected": 0, "retired_pages": 0,
             "retired_pending": False, "remap_failure": False, "mig_mode": False,
             "remap_pending": False}
            for g in range(gpus)
        ],
        "procs": [
            {"gpu_index": g, "uuid": f"GPU-{node:08x}-{g:04x}-0000-0000-000000000000",
             "pid": 10000 + g, "gpu_mem_used_bytes": 20 * GIB, "command": "python train.py",
             "container_id": None, "job_id": None}
            for g in range(gpus)
        ],
        "events": [], "errors": [],
    }
    text = json.dumps(body, separators=(",", ":"))
    return (text.replace("%", "%%").replace('"SEQ"', "%(seq)d").replace('"TS"', "%(ts).3f")
            + "\n")


class Fleet:
    """Writes every live session's next line on its tick: all at the same wall-clock moment
    (`aligned`), or each on its own cadence from its start, as the real probe does."""

    def __init__(self, interval_s: float, gpus: int, *, aligned: bool = False) -> None:
        self.interval_s = interval_s
        self.gpus = gpus
        self.aligned = aligned
        self.sessions: dict[int, tuple[asyncssh.SSHServerProcess[bytes], str]] = {}
        self.seq: dict[int, int] = {}
        self.write_s: list[float] = []  # per tick: tick -> last line handed to SSH
        self._rng = random.Random(42)
        self._cadences: set[asyncio.Task[None]] = set()

    def add(self, node: int, process: asyncssh.SSHServerProcess[bytes]) -> None:
        template = sample_template(node, self.gpus, self._rng).replace(
            '"interval_s":0', f'"interval_s":{self.interval_s:g}')
        self.sessions[node] = (process, template)
        if not self.aligned:
            task = asyncio.get_running_loop().create_task(self._cadence(node, process))
            self._cadences.add(task)
            task.add_done_callback(self._cadences.discard)

    def _write(self, node: int, tick: float) -> None:
        entry = self.sessions.get(node)
        if entry is None:
            return
        process, template = entry
        seq = self.seq.get(node, 0) + 1
        self.seq[node] = seq
        try:
            process.stdout.write((template % {"seq": seq, "ts": tick}).encode())
        except (OSError, asyncssh.Error):
            self.sessions.pop(node, None)

    async def _cadence(self, node: int, process: asyncssh.SSHServerProcess[bytes]) -> None:
        """The probe's timing: first sample after min(interval, 1 s), then a fixed cadence; a
        late tick is skipped, never bunched."""
        tick = time.time() + min(self.interval_s, 1.0)
        while self.sessions.get(node, (None,))[0] is process:
            await asyncio.sleep(max(0.0, tick - time.time()))
            self._write(node, tick)
            self.write_s.append(time.time() - tick)
            tick += self.interval_s
            now = time.time()
            if tick <= now:
                tick = now + self.interval_s - ((now - tick) % self.interval_s)

    async def run(self) -> None:
        if not self.aligned:
            return
        while True:
            now = time.time()
            tick = (math.floor(now / self.interval_s) + 1) * self.interval_s
            await asyncio.sleep(tick - now)
            for node in list(self.sessions):
                self._write(node, tick)
            if self.sessions:
                self.write_s.append(time.time() - tick)

    def close(self) -> None:
        for task in list(self._cadences):
            task.cancel()


def hello_line(node: int, interval_s: float) -> bytes:
    return (json.dumps({
        "type": "hello", "v": 1, "probe_version": "sim", "mode": "python", "ts": time.time(),
        "python_version": "3.11.2", "hostname": f"sim{node:04d}", "kernel": "6.1.0-sim",
        "pid": 100000 + node, "interval_s": interval_s,
    }, separators=(",", ":")) + "\n").encode()


async def serve(args: argparse.Namespace) -> None:
    fleet = Fleet(args.interval, args.gpus, aligned=args.aligned)

    def make_handler(node: int) -> Any:
        async def handle(process: asyncssh.SSHServerProcess[bytes]) -> None:
            process.stdout.write(hello_line(node, args.interval))
            fleet.add(node, process)
            try:
                while await process.stdin.read(65536):
                    pass  # the probe payload; EOF means the collector closed the channel
            except (OSError, asyncssh.Error):
                pass
            fleet.sessions.pop(node, None)
            process.exit(0)

        return handle

    host_key = asyncssh.read_private_key(args.host_key)
    authorized = asyncssh.read_authorized_keys(args.authorized_keys)
    servers = []
    for i in range(args.nodes):
        servers.append(await asyncssh.listen(
            "127.0.0.1", args.base_port + i, server_host_keys=[host_key],
            authorized_client_keys=authorized, process_factory=make_handler(i),
            encoding=None, keepalive_interval=0, login_timeout=60,
        ))
    _mark_ready(args.ready)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    ticker = loop.create_task(fleet.run())
    await stop.wait()
    ticker.cancel()
    fleet.close()
    for s in servers:
        s.close()
    if args.stats:
        _write_stats(args.stats, fleet.write_s)


def _write_stats(path: str, write_s: list[float]) -> None:
    Path(path).write_text(json.dumps({"write_s": write_s}))


def _mark_ready(path: str) -> None:
    Path(path).write_text(str(os.getpid()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--base-port", type=int, required=True)
    p.add_argument("--interval", type=float, default=5.0)
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--host-key", required=True)
    p.add_argument("--authorized-keys", required=True)
    p.add_argument("--ready", required=True)
    p.add_argument("--stats", help="write per-tick write times (JSON) here on exit")
    p.add_argument("--nice", type=int, default=0, help="run at this niceness")
    p.add_argument("--aligned", action="store_true",
                   help="every node samples at the same wall-clock moment (worst case)")
    args = p.parse_args()
    if args.nice:
        os.nice(args.nice)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.nodes + 256)), hard))
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
