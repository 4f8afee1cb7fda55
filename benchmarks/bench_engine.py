"""Benchmark: engine reads under many concurrent clients, on a store with many jobs.

The real `fleetdeck serve` (collection and scheduling running) against simulated SSH nodes in
their own process (`simnodes.py`; each node samples on the probe's cadence from when it
connected, or with `--aligned` all at the same moment, the worst case), its store seeded with
`--jobs` jobs (`fleetbench`). Then `--clients` clients, spread over `--procs` processes so that
no client process is the bottleneck (`benchclients.py`), connect at once (connections refused or
failing are counted) and each calls, every `--period` seconds, the next of `status`, `fleet`
(what changed since its last answer, `fleet_delta`, where the engine has it; `--no-deltas`: the
whole fleet), `jobs` (first page of 50), `job` (a random id), `explain` (a random id) and
`policies`, for `--duration` seconds (`--fleet-clients N`: N of them instead ask only `fleet`
every `--period`, as a console on the Fleet screen does; lines `fleet-screen`). It prints
p50/p99 per method as the clients saw them, connections refused, the engine's CPU by thread
while the clients ran and its loop thread's time on a CPU and waiting for one, the client
processes' and the simulator's CPU, and how many nodes a fleet answer carried on average. Target
(#16): p99 under 50 ms for each; (#12) 0 refused.

An engine without the `job` method (older code) is asked `jobs` with `ids=[N]`, as the
console did then; its lines say `job*`.

Usage: .venv/bin/python benchmarks/bench_engine.py [--nodes 1000] [--jobs 100000]
       [--clients 200] [--procs 40] [--period 2] [--duration 60] [--fleet-clients 0]
       [--no-deltas] [--aligned] [--nice 19]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from benchclients import engine_clients, has_delta
from fleetbench import (
    TICK_S,
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


async def run(args: argparse.Namespace, work: Path) -> list[str]:
    async with sim_nodes(work, args.nodes, args.interval, args.gpus,
                         aligned=args.aligned, nice=args.nice) as base:
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
            deltas = args.deltas and await has_delta(probe)
            stats_ok = await has_method(probe, "ingest_stats")
            assert serve.proc is not None
            roles = thread_roles(serve.proc.pid, (await probe.call("ingest_stats"))["threads"]
                                 if stats_ok else [])
            marks: list[tuple[dict[int, float], float, dict[str, float]]] = []
            sched: list[tuple[float, float]] = []

            def mark() -> None:
                marks.append((serve.thread_cpu_s(), time.monotonic(), children_cpu_s()))
                sched.append(serve.loop_sched_s())

            lat, refused, totals = await engine_clients(
                serve.socket, clients=args.clients, period_s=args.period,
                duration_s=args.duration, jobs=args.jobs, job_method=job_method,
                deltas=deltas, procs=args.procs, fleet_clients=args.fleet_clients,
                nice=args.nice, on_start=mark)
            mark()  # the clients' processes are done: a few seconds past the calls' end
            rss = serve.rss_mib()
            await probe.close()
        finally:
            serve.stop()
    out = [f"bench_engine: {args.nodes} nodes x {args.gpus} GPUs collected every "
           f"{args.interval:g} s, {args.jobs:,} jobs in the store ({args.queued} queued, "
           f"scheduling on); all nodes up after {up_s:.0f} s; nodes sample "
           + ("all at the same moment (--aligned)" if args.aligned
              else "on the probe's cadence from when they connected")
           + (f"; simulator and clients at nice {args.nice}" if args.nice else "")]
    out.extend(engine_lines(lat, refused, clients=args.clients, period_s=args.period,
                            duration_s=args.duration, job_method=job_method,
                            procs=min(args.procs, args.clients), deltas=deltas))
    (cpu0, wall0, kids0), (cpu1, wall1, kids1) = marks[0], marks[-1]
    wall = wall1 - wall0
    by_role = cpu_by_role(cpu0, cpu1, roles, serve.proc.pid,
                          unknown="duckdb" if stats_ok else "other threads")
    out.append(f"engine CPU while the clients ran: {100 * sum(by_role.values()) / wall:.0f} % "
               "of one core; " + ", ".join(f"{k} {100 * v / wall:.0f} %" for k, v in sorted(
                   by_role.items(), key=lambda kv: -kv[1]))
               + " (loop: the event loop thread)")
    (run0, wait0), (run1, wait1) = sched[0], sched[-1]
    out.append(f"engine loop thread: on a CPU {100 * (run1 - run0) / wall:.0f} % of the time, "
               f"runnable but waiting for a CPU {100 * (wait1 - wait0) / wall:.0f} %")
    fleet_nodes, fleet_answers = totals.get("fleet_nodes", 0.0), totals.get("fleet_answers", 0.0)
    kids1["client processes"] = kids0.get("client processes", 0.0) + totals.get(
        "client_cpu_s", 0.0)
    out.append("meanwhile, of one core: " + ", ".join(
        f"{k} {100 * (kids1.get(k, 0.0) - kids0.get(k, 0.0)) / wall:.0f} %"
        for k in sorted(kids1) if k != "engine")
        + f"; fleet answers carried {fleet_nodes / max(1.0, fleet_answers):.0f} nodes on "
        f"average ({fleet_answers:.0f} answers)")
    out.append(f"engine RSS {rss:.0f} MiB; machine: {os.cpu_count()} cores, load avg "
               f"{os.getloadavg()[0]:.2f} (simulator and clients on the same machine)")
    return out


def children_cpu_s() -> dict[str, float]:
    """CPU seconds so far of this bench's child processes, by kind: the simulator, the client
    processes (still running ones only), the engine (serve)."""
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            kind = ("simulator" if b"simnodes.py" in cmd else "client processes"
                    if b"multiprocessing" in cmd else "engine" if b"serve" in cmd else "other")
            out[kind] = out.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / TICK_S
    return out


def main() -> int:
    ap = fleet_args(__doc__ or "", duration_s=60.0, clients=200)
    ap.add_argument("--period", type=float, default=2.0, help="seconds between a client's calls")
    ap.add_argument("--procs", type=int, default=40,
                    help="client processes (a console is a process of its own: with 50 clients "
                    "to a process, their shared loop decoding fleet answers is what p99 measures)")
    ap.add_argument("--fleet-clients", type=int, default=0,
                    help="of the clients, this many ask only fleet every --period, as a "
                    "console on the Fleet screen (their lines say fleet-screen)")
    ap.add_argument("--deltas", action=argparse.BooleanOptionalAction, default=True,
                    help="fleet clients ask fleet_delta where the engine has it")
    args = ap.parse_args()
    if args.period <= 0:
        print("bench_engine: --period: expected seconds > 0", file=sys.stderr)
        return 2
    if not 0 <= args.fleet_clients <= args.clients:
        print("bench_engine: --fleet-clients: expected 0..--clients", file=sys.stderr)
        return 2
    if not 1 <= args.procs <= 256:
        print("bench_engine: --procs: expected 1..256 client processes", file=sys.stderr)
        return 2
    return run_bench("bench_engine", args, run)


if __name__ == "__main__":
    raise SystemExit(main())
