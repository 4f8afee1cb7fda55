"""Benchmark: engine reads under many concurrent clients, on a store with many jobs.

The real `fleetdeck serve` (collection and scheduling running) against simulated SSH nodes in
their own process (`simnodes.py`), its store seeded with `--jobs` jobs (`fleetbench`). Then
`--clients` clients connect at once (connections refused or failing are counted) and each
calls, every `--period` seconds, the next of `status`, `fleet`, `jobs` (first page of 50),
`job` (a random id), `explain` (a random id) and `policies`, for `--duration` seconds. It
prints p50/p99 per method as the clients saw them. Target (#16): p99 under 50 ms for each.

An engine without the `job` method (older code) is asked `jobs` with `ids=[N]`, as the
console did then; its lines say `job*`.

Usage: .venv/bin/python benchmarks/bench_engine.py [--nodes 1000] [--jobs 100000]
       [--clients 200] [--period 2] [--duration 60]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from fleetbench import (
    Serve,
    engine_clients,
    engine_lines,
    fleet_args,
    has_method,
    run_bench,
    seed_jobs,
    sim_nodes,
    write_config,
)

from console.engine.client import EngineClient


async def run(args: argparse.Namespace, work: Path) -> list[str]:
    async with sim_nodes(work, args.nodes, args.interval, args.gpus) as base:
        config = write_config(work, base_port=base, nodes=args.nodes, interval_s=args.interval)
        seed_jobs(work / "store.duckdb", total=args.jobs, queued=args.queued, nodes=args.nodes)
        serve = Serve(config, work / "engine.sock")
        await serve.start()
        try:
            probe = await EngineClient.connect(serve.socket, timeout=60)
            t0 = time.monotonic()
            while (await probe.call("summary"))["nodes_up"] < args.nodes:
                if time.monotonic() - t0 > args.up_timeout:
                    raise RuntimeError("not every node came up")
                await asyncio.sleep(2)
            up_s = time.monotonic() - t0
            job_method = await has_method(probe, "job", job=1)
            await probe.close()
            lat, refused = await engine_clients(
                serve.socket, clients=args.clients, period_s=args.period,
                duration_s=args.duration, jobs=args.jobs, job_method=job_method)
            rss = serve.rss_mib()
        finally:
            serve.stop()
    out = [f"bench_engine: {args.nodes} nodes x {args.gpus} GPUs collected every "
           f"{args.interval:g} s, {args.jobs:,} jobs in the store ({args.queued} queued, "
           f"scheduling on); all nodes up after {up_s:.0f} s"]
    out.extend(engine_lines(lat, refused, clients=args.clients, period_s=args.period,
                            duration_s=args.duration, job_method=job_method))
    out.append(f"engine RSS {rss:.0f} MiB; machine: {os.cpu_count()} cores, load avg "
               f"{os.getloadavg()[0]:.2f} (simulator and clients on the same machine)")
    return out


def main() -> int:
    ap = fleet_args(__doc__ or "", duration_s=60.0, clients=200)
    ap.add_argument("--period", type=float, default=2.0, help="seconds between a client's calls")
    args = ap.parse_args()
    if args.period <= 0:
        print("bench_engine: --period: expected seconds > 0", file=sys.stderr)
        return 2
    return run_bench("bench_engine", args, run)


if __name__ == "__main__":
    raise SystemExit(main())
