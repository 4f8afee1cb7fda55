"""Benchmark: the real `fleetdeck serve` at fleet scale.

The engine process (collector, store writer, rollups, scheduler with a queue, policies) runs
against simulated SSH nodes in their own process (`simnodes.py`, N GPUs each, each node on the
probe's cadence from when it connected; `--aligned`: all on the same tick), with a store seeded
with jobs (`fleetbench.seed_jobs`: finished ones plus a queue that every placement cycle plans).
Clients poll `status`, `fleet` and the first page of `jobs` every `--poll` seconds. After every
node is up and one interval of warm-up, it measures for `--duration` seconds and prints:

  engine CPU % of one core, by thread (loop, store writer, readers, DuckDB's threads, other
  Python threads), CPU per node sample, sweep p50/p99, store write lag p99, rollup time per
  pass, RSS (now and peak), and client read latency p50/p99 per method.

Targets (1,000 nodes x 8 GPUs at 5 s): engine under 30 % of one core, write lag p99 under one
interval, reads p99 under 50 ms, RSS under 500 MB. An engine without the `ingest_stats`
method (older code) leaves sweep / lag / rollup and the thread split out.

Usage: .venv/bin/python benchmarks/bench_serve.py [--nodes 1000] [--interval 5]
       [--duration 300] [--clients 20] [--jobs 100000] [--queued 200] [--aligned] [--nice 19]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchclients import engine_clients, has_delta
from fleetbench import (
    Latencies,
    Serve,
    cpu_by_role,
    engine_lines,
    fleet_args,
    has_method,
    run_bench,
    seed_jobs,
    sim_nodes,
    thread_roles,
    write_config,
)

from console.engine.client import EngineClient


async def wait_all_up(sock: Path, nodes: int, timeout_s: float) -> float:
    t0 = time.monotonic()
    c = await EngineClient.connect(sock, timeout=60)
    try:
        while time.monotonic() - t0 < timeout_s:
            s = await c.call("summary")
            if s["nodes_up"] >= nodes:
                return time.monotonic() - t0
            await asyncio.sleep(2)
    finally:
        await c.close()
    raise RuntimeError(f"not every node came up within {timeout_s:.0f} s")


async def poller(sock: Path, lat: Latencies, poll_s: float, stop: asyncio.Event) -> None:
    client = await EngineClient.connect(sock, timeout=30)
    try:
        await asyncio.sleep(poll_s * (hash(id(client)) % 1000) / 1000)  # spread the clients
        while not stop.is_set():
            t0 = time.monotonic()
            await lat.time(client, "status")
            await lat.time(client, "fleet")
            await lat.time(client, "jobs", limit=50)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, poll_s - (time.monotonic() - t0)))
    finally:
        await client.close()


def fmt_ms(v: Any) -> str:
    return "n/a" if v is None else f"{1000 * float(v):.0f} ms"


async def run(args: argparse.Namespace, work: Path) -> list[str]:
    out: list[str] = []
    async with sim_nodes(work, args.nodes, args.interval, args.gpus,
                         aligned=args.aligned, nice=args.nice) as base:
        config = write_config(work, base_port=base, nodes=args.nodes, interval_s=args.interval)
        seed_jobs(work / "store.duckdb", total=args.jobs, queued=args.queued, nodes=args.nodes)
        serve = Serve(config, work / "engine.sock")
        await serve.start()
        try:
            up_s = await wait_all_up(serve.socket, args.nodes, args.up_timeout)
            await asyncio.sleep(args.interval)
            probe = await EngineClient.connect(serve.socket, timeout=60)
            stats_ok = await has_method(probe, "ingest_stats")
            assert serve.proc is not None
            pid = serve.proc.pid
            threads = (await probe.call("ingest_stats"))["threads"] if stats_ok else []
            roles = thread_roles(pid, threads)
            lat = Latencies()
            stop = asyncio.Event()
            clients = [asyncio.create_task(poller(serve.socket, lat, args.poll, stop))
                       for _ in range(args.clients)]
            cpu0, wall0 = serve.thread_cpu_s(), time.monotonic()
            await asyncio.sleep(args.duration)
            cpu1, wall1 = serve.thread_cpu_s(), time.monotonic()
            stop.set()
            await asyncio.gather(*clients, return_exceptions=True)
            stats = await probe.call("ingest_stats") if stats_ok else None
            summary = await probe.call("summary")
            rss = serve.rss_mib()
            peak = serve.peak_rss_mib()
            engine_out: list[str] = []
            if args.engine_clients:  # bench_engine's load on the same engine, afterwards
                job_method = await has_method(probe, "job", job=1)
                deltas = await has_delta(probe)
                elat, refused, _ = await engine_clients(
                    serve.socket, clients=args.engine_clients, period_s=args.poll,
                    duration_s=args.engine_duration, jobs=args.jobs, job_method=job_method,
                    deltas=deltas, nice=args.nice)
                engine_out = ["then, bench_engine's load on this engine: " + line
                              if i == 0 else line
                              for i, line in enumerate(engine_lines(
                                  elat, refused, clients=args.engine_clients,
                                  period_s=args.poll, duration_s=args.engine_duration,
                                  job_method=job_method, procs=4, deltas=deltas))]
                peak = serve.peak_rss_mib()
            await probe.close()
        finally:
            serve.stop()
    wall = wall1 - wall0
    by_role = cpu_by_role(cpu0, cpu1, roles, pid,
                          unknown="duckdb" if stats_ok else "other threads")
    total = sum(by_role.values())
    samples = args.nodes * wall / args.interval
    out.append(f"bench_serve: {args.nodes} nodes x {args.gpus} GPUs every {args.interval:g} s, "
               f"{args.jobs:,} jobs in the store ({args.queued} queued), {args.clients} clients "
               f"polling status/fleet/jobs every {args.poll:g} s; measured {wall:.0f} s "
               f"(all nodes up after {up_s:.0f} s; "
               + ("all sampling at the same moment, --aligned)" if args.aligned
                  else "each sampling on the probe's cadence from when it connected)"))
    out.append(f"engine CPU          {100 * total / wall:.1f} % of one core (target < 30 %)")
    split = ", ".join(f"{k} {100 * v / wall:.1f} %" for k, v in sorted(
        by_role.items(), key=lambda kv: -kv[1]))
    out.append(f"  by thread         {split}"
               + ("" if stats_ok else "  (older engine: threads not named)"))
    out.append(f"per node sample     {1000 * total / samples:.2f} ms CPU")
    if stats is not None:
        sw, wl, age, ru = stats["sweep"], stats["write_lag"], stats["data_age"], stats["rollup"]
        out.append(f"sweep               p50 {fmt_ms(sw['p50_s'])}, p99 {fmt_ms(sw['p99_s'])} "
                   f"({sw['n']} ticks)")
        out.append(f"store write lag     p50 {fmt_ms(wl['p50_s'])}, p99 {fmt_ms(wl['p99_s'])} "
                   f"(target < {args.interval:g} s); data age at commit p99 "
                   f"{fmt_ms(age['p99_s'])}")
        out.append(f"rollup pass         p50 {fmt_ms(ru['p50_s'])}, max {fmt_ms(ru['max_s'])} "
                   f"({ru['n']} passes)")
    else:
        out.append("sweep / write lag / rollup: n/a (engine has no ingest_stats)")
    out.append(f"RSS                 {rss:.0f} MiB now, {peak:.0f} MiB peak (target < 500 MB)")
    out.append(f"nodes up at the end {summary['nodes_up']} of {args.nodes}; "
               f"queue {summary['queue_len']}")
    out.append("client reads (target p99 < 50 ms):")
    out.extend(lat.lines())
    out.extend(engine_out)
    out.append(f"(machine: {os.cpu_count()} cores, load avg {os.getloadavg()[0]:.2f}; "
               "simulator and clients run on the same machine)")
    return out


def main() -> int:
    ap = fleet_args(__doc__ or "", duration_s=300.0, clients=20)
    ap.add_argument("--poll", type=float, default=2.0, help="seconds between a client's polls")
    ap.add_argument("--engine-clients", type=int, default=0,
                    help="then run bench_engine's clients (this many) on the same engine")
    ap.add_argument("--engine-duration", type=float, default=30.0)
    args = ap.parse_args()
    if args.poll <= 0:
        print("bench_serve: --poll: expected seconds > 0", file=sys.stderr)
        return 2
    return run_bench("bench_serve", args, run)


if __name__ == "__main__":
    raise SystemExit(main())
