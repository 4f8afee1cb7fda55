"""Benchmark: fleetdeck's fleet collector against many simulated SSH nodes.

The nodes (`benchmarks/simnodes.py`) run in a separate process and speak real SSH; every node
streams one probe-format line per interval, all aligned to the same wall-clock tick. This
process runs the real `FleetCollector` (one asyncssh connection per node, probe lines parsed
into frozen samples, the `IngestBuffer` flushed into a DuckDB store once per interval in a
worker thread, as the engine does) and prints:

  nodes, interval, sweep latency p50/p99 (tick -> every node's line received and parsed),
  collector CPU % of one core, rows ingested per second, peak RSS.

Only this process is measured (getrusage / /proc/self), after every node is up.
Target: 1,000 nodes at a 5 s interval, p99 sweep latency under 1 s, under 30 % of one core.

Usage: .venv/bin/python benchmarks/bench_collect.py [--nodes 1000] [--interval 5] [--sweeps 12]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fleetbench import pct, sim_nodes  # noqa: E402

from collectors.fleet import FleetCollector  # noqa: E402
from collectors.health import Backoff  # noqa: E402
from collectors.ingest import IngestBuffer  # noqa: E402
from collectors.models import ProbeRecord  # noqa: E402
from collectors.store import Store  # noqa: E402
from collectors.transport import NodeTarget, SshOptions  # noqa: E402


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Sweeps:
    """Arrival of each tick's lines: tick ts -> (count, latest arrival - tick)."""

    def __init__(self, nodes: int) -> None:
        self.nodes = nodes
        self.count: dict[float, int] = defaultdict(int)
        self.rows: dict[float, int] = defaultdict(int)
        self.latest: dict[float, float] = defaultdict(float)
        self.buffer = IngestBuffer()

    def on_record(self, rec: ProbeRecord) -> None:
        now = time.time()
        tick = round(rec.ts, 3)
        self.count[tick] += 1
        self.rows[tick] += (1 + len(rec.disks) + len(rec.gpus) + len(rec.processes)
                            + len(rec.events))
        self.latest[tick] = max(self.latest[tick], now - tick)
        self.buffer.add(rec)

    def complete(self, since: float, until: float) -> list[float]:
        return [self.latest[t] for t, c in self.count.items()
                if since <= t <= until and c == self.nodes]

    def rows_in(self, since: float, until: float) -> int:
        return sum(n for t, n in self.rows.items() if since <= t <= until)

    def ticks(self, since: float, until: float) -> int:
        return sum(1 for t in self.count if since <= t <= until)


async def run(args: argparse.Namespace, work: Path) -> dict[str, float]:
    async with sim_nodes(work, args.nodes, args.interval, args.gpus, aligned=True,
                         stats=work / "sim.json") as base:
        result = await measure(args, work, base)
    write_s = json.loads((work / "sim.json").read_text())["write_s"] if (
        work / "sim.json").exists() else []
    tail = write_s[-args.sweeps:]
    result["sim_write_p50_s"] = statistics.median(tail) if tail else float("nan")
    result["sim_write_p99_s"] = pct(tail, 99) if tail else float("nan")
    return result


async def measure(args: argparse.Namespace, work: Path, base: int) -> dict[str, float]:
    nodes = [NodeTarget(name=f"sim{i:04d}", host="127.0.0.1", port=base + i, user="bench",
                        identity_file=work / "client_key", docker_socket="")
             for i in range(args.nodes)]
    sweeps = Sweeps(args.nodes)
    store = Store.open(work / "bench.duckdb")
    rows_written = 0
    flush_s: list[float] = []

    async def flusher() -> None:
        nonlocal rows_written
        while True:  # mid-interval, away from the tick's burst of lines
            now = time.time()
            nxt = (int(now / args.interval) + 1) * args.interval + args.interval / 2
            await asyncio.sleep(nxt - now)
            buf, sweeps.buffer = sweeps.buffer, IngestBuffer()
            t = time.perf_counter()
            written = await asyncio.to_thread(buf.flush, store)
            flush_s.append(time.perf_counter() - t)
            rows_written += sum(written.values())

    cpu0, wall0 = cpu_s(), time.monotonic()
    fc = FleetCollector(nodes, interval_s=args.interval, known_hosts=work / "known_hosts",
                        on_record=sweeps.on_record, docker=False,
                        ssh=SshOptions(use_agent=False, connect_timeout_s=60),
                        backoff=Backoff(base_s=1.0, max_s=10.0))
    async with fc:
        flush_task = asyncio.get_running_loop().create_task(flusher())
        await fc.wait_for(lambda v: v.counts()["up"] == args.nodes, timeout_s=600)
        connect_s, connect_cpu = time.monotonic() - wall0, cpu_s() - cpu0
        # One full tick after everyone is up, then measure whole intervals.
        now = time.time()
        start_tick = (int(now / args.interval) + 2) * args.interval
        await asyncio.sleep(start_tick - now - args.interval / 4)
        rows0, cpu1, wall1 = rows_written, cpu_s(), time.monotonic()
        end_tick = start_tick + (args.sweeps - 1) * args.interval
        await asyncio.sleep(end_tick + 0.75 * args.interval - time.time())
        rows1, cpu2, wall2 = rows_written, cpu_s(), time.monotonic()
        counts = fc.view().counts()
        flush_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flush_task
    store.close()
    lat = sweeps.complete(start_tick - 0.001, end_tick + 0.001)
    return {
        "nodes": args.nodes, "interval_s": args.interval, "gpus_per_node": args.gpus,
        "connect_s": connect_s, "connect_cpu_s": connect_cpu,
        "sweeps": sweeps.ticks(start_tick - 0.001, end_tick + 0.001),
        "complete_sweeps": len(lat),
        "p50_s": statistics.median(lat) if lat else float("nan"),
        "p99_s": pct(lat, 99) if lat else float("nan"),
        "max_s": max(lat) if lat else float("nan"),
        "cpu_pct": 100 * (cpu2 - cpu1) / (wall2 - wall1),
        "rows_per_s": sweeps.rows_in(start_tick - 0.001, end_tick + 0.001)
        / (args.sweeps * args.interval),
        "rows_flushed_per_s": (rows1 - rows0) / (wall2 - wall1),
        "flush_p50_s": statistics.median(flush_s) if flush_s else float("nan"),
        "peak_rss_mib": peak_rss_mib(),
        "up_at_end": counts["up"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description="fleet collector benchmark against simulated nodes")
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--interval", type=float, default=5.0)
    p.add_argument("--sweeps", type=int, default=12, help="intervals measured after warm-up")
    p.add_argument("--gpus", type=int, default=8, help="GPUs per simulated node")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.nodes + 256)), hard))
    work = Path(tempfile.mkdtemp(prefix="fdbench-"))
    try:
        r = asyncio.run(run(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"nodes                 {r['nodes']} ({r['gpus_per_node']} GPUs each)")
    print(f"interval              {r['interval_s']:g} s")
    print(f"connect (all up)      {r['connect_s']:.1f} s, {r['connect_cpu_s']:.1f} CPU-s")
    print(f"sweeps measured       {r['sweeps']} ({r['complete_sweeps']} with every node)")
    print(f"sweep latency p50     {r['p50_s'] * 1000:.0f} ms")
    print(f"sweep latency p99     {r['p99_s'] * 1000:.0f} ms (max {r['max_s'] * 1000:.0f} ms)")
    print(f"  of which simulator  {r['sim_write_p50_s'] * 1000:.0f} ms p50, "
          f"{r['sim_write_p99_s'] * 1000:.0f} ms p99 (tick -> its last line handed to SSH)")
    print(f"collector CPU         {r['cpu_pct']:.1f} % of one core")
    print(f"rows ingested         {r['rows_per_s']:.0f} rows/s into DuckDB "
          f"(flushed {r['rows_flushed_per_s']:.0f} rows/s in the window; one flush per "
          f"interval, p50 {r['flush_p50_s'] * 1000:.0f} ms)")
    print(f"peak RSS              {r['peak_rss_mib']:.0f} MiB")
    print(f"nodes up at the end   {r['up_at_end']}")
    print(f"(machine: {os.cpu_count()} cores, load avg {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
