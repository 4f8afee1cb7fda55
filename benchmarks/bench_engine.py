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
import contextlib
import os
import random
import sys
import time
from pathlib import Path

from fleetbench import (
    Latencies,
    Serve,
    fleet_args,
    has_method,
    run_bench,
    seed_jobs,
    sim_nodes,
    write_config,
)

from console.engine.client import EngineClient

METHODS = ("status", "fleet", "jobs", "job", "explain", "policies")


async def client_loop(sock: Path, lat: Latencies, args: argparse.Namespace, job_method: bool,
                      stop: asyncio.Event, refused: list[str], seed: int) -> None:
    rng = random.Random(seed)
    try:
        client = await EngineClient.connect(sock, timeout=30)
    except Exception as e:  # counted, not fatal: that is what is measured
        refused.append(type(e).__name__)
        return
    try:
        k = rng.randrange(len(METHODS))
        await asyncio.sleep(rng.uniform(0, args.period))
        while not stop.is_set():
            t0 = time.monotonic()
            method = METHODS[k % len(METHODS)]
            k += 1
            job = rng.randint(1, args.jobs)
            if method == "jobs":
                await lat.time(client, "jobs", limit=50)
            elif method == "job":
                if job_method:
                    await lat.time(client, "job", job=job)
                else:
                    await lat.time(client, "jobs", label="job*", ids=[job], limit=50)
            elif method == "explain":
                await lat.time(client, "explain", job=job)
            else:
                await lat.time(client, method)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(),
                                       max(0.0, args.period - (time.monotonic() - t0)))
    finally:
        await client.close()


async def run(args: argparse.Namespace, work: Path) -> list[str]:
    async with sim_nodes(work, args.nodes, args.interval, args.gpus) as base:
        config = write_config(work, base_port=base, nodes=args.nodes, interval_s=args.interval)
        seed_jobs(work / "store.duckdb", total=args.jobs, queued=args.queued, nodes=args.nodes)
        serve = Serve(config, work / "engine.sock")
        await serve.start()
        try:
            probe = await EngineClient.connect(serve.socket)
            t0 = time.monotonic()
            while (await probe.call("summary"))["nodes_up"] < args.nodes:
                if time.monotonic() - t0 > args.up_timeout:
                    raise RuntimeError("not every node came up")
                await asyncio.sleep(2)
            up_s = time.monotonic() - t0
            job_method = await has_method(probe, "job", job=1)
            await probe.close()
            lat = Latencies()
            stop = asyncio.Event()
            refused: list[str] = []
            tasks = [asyncio.create_task(client_loop(serve.socket, lat, args, job_method, stop,
                                                     refused, seed=i))
                     for i in range(args.clients)]
            await asyncio.sleep(args.duration)
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            rss = serve.rss_mib()
        finally:
            serve.stop()
    out = [f"bench_engine: {args.clients} concurrent clients, one call each every "
           f"{args.period:g} s for {args.duration:.0f} s; {args.nodes} nodes x {args.gpus} GPUs "
           f"collected every {args.interval:g} s, {args.jobs:,} jobs in the store "
           f"({args.queued} queued, scheduling on); all nodes up after {up_s:.0f} s",
           f"connections refused or failed: {len(refused)}"
           + (f" ({', '.join(sorted(set(refused)))})" if refused else ""),
           "per method (target p99 < 50 ms)"
           + ("" if job_method else "; older engine: 'job' asked as jobs ids=[N]") + ":"]
    out.extend(lat.lines())
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
