"""Many engine clients spread over several processes, for `bench_engine.py` and `bench_serve.py`.

One Python process cannot decode what 200 clients receive (a fleet answer at 1,000 x 8 GPUs is
megabytes of JSON): its own queue would be measured instead of the engine. So the clients are
split over `procs` processes (spawned); each connects its clients, waits at a start barrier
shared with the parent, calls for `duration_s` and sends its raw latencies back; the parent
merges them. Each client calls, every `period_s`, the next of `METHODS` (typed requests, as
the console sends them): a random job id for `job` and `explain`, the first page of 50 for
`jobs`, and for `fleet` only what changed since its last answer (`fleet_delta`) where the
engine has that method, else the whole fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetbench import Latencies

from console.engine.api import requests as rq
from console.engine.client import EngineClient, RemoteError
from console.engine.gc_tuning import tune_gc
from console.fleet_mirror import FleetMirror

METHODS = ("status", "fleet", "jobs", "job", "explain", "policies")
_COUNTS: dict[str, float] = {}  # this process's: fleet answers and the nodes they carried


@dataclass(frozen=True)
class Plan:
    """What every client of a run does."""

    sock: Path
    period_s: float
    duration_s: float
    jobs: int
    job_method: bool
    deltas: bool
    fleet_clients: int = 0  # the first this many ask only `fleet`, as a Fleet screen does
    nice: int = 0  # the client processes' niceness (>0: they yield the CPU to the engine)


async def _call(client: EngineClient, lat: Latencies, plan: Plan, method: str,
                rng: random.Random, mirror: FleetMirror, fleet_label: str = "fleet") -> None:
    job = rng.randint(1, plan.jobs)
    if method == "status":
        await lat.time(client, rq.StatusQuery())
    elif method == "fleet" and plan.deltas:
        delta = await lat.time(client, mirror.query(),
                               label=fleet_label)
        if delta is not None:
            mirror.apply(delta)
            _count(len(delta.nodes))
    elif method == "fleet":
        nodes = await lat.time(client, rq.FleetQuery(), label=fleet_label)
        _count(len(nodes or ()))
    elif method == "jobs":
        await lat.time(client, rq.JobsQuery(limit=50))
    elif method == "job" and plan.job_method:
        await lat.time(client, rq.JobQuery(job=job))
    elif method == "job":  # an older engine: the console asked jobs ids=[N]
        await lat.time(client, rq.JobsQuery(ids=[job], limit=50), label="job*")
    elif method == "explain":
        await lat.time(client, rq.ExplainRequest(job=job))
    else:
        await lat.time(client, rq.PoliciesQuery())


def _count(nodes: int) -> None:
    _COUNTS["fleet_answers"] = _COUNTS.get("fleet_answers", 0) + 1
    _COUNTS["fleet_nodes"] = _COUNTS.get("fleet_nodes", 0) + nodes


async def _client(client: EngineClient, lat: Latencies, plan: Plan, stop: asyncio.Event,
                  seed: int) -> None:
    rng = random.Random(seed)
    mirror = FleetMirror()
    k = rng.randrange(len(METHODS))
    screen = seed < plan.fleet_clients
    await asyncio.sleep(rng.uniform(0, plan.period_s))
    while not stop.is_set():
        t0 = time.monotonic()
        if screen:
            await _call(client, lat, plan, "fleet", rng, mirror, fleet_label="fleet-screen")
        else:
            await _call(client, lat, plan, METHODS[k % len(METHODS)], rng, mirror)
        k += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, plan.period_s - (time.monotonic() - t0)))


async def _one_process(plan: Plan, seeds: range,
                       barrier: Any) -> tuple[Latencies, list[str], float]:
    refused: list[str] = []
    clients: list[EngineClient] = []

    async def connect() -> None:
        try:
            clients.append(await EngineClient.connect(plan.sock, timeout=30))
        except Exception as e:  # counted, not fatal: that is what is measured
            refused.append(type(e).__name__)

    await asyncio.gather(*(connect() for _ in seeds))
    await asyncio.to_thread(barrier.wait)  # every process connected: start together
    cpu0 = time.process_time()
    lat = Latencies()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(_client(c, lat, plan, stop, seed))
             for c, seed in zip(clients, seeds, strict=False)]
    await asyncio.sleep(plan.duration_s)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    cpu_s = time.process_time() - cpu0
    for c in clients:
        await c.close()
    return lat, refused, cpu_s


def _process_main(plan: Plan, seeds: range, barrier: Any, out: Any) -> None:
    if plan.nice:
        os.nice(plan.nice)
    tune_gc()  # as the console does: rare, short collections while decoding large answers
    try:
        lat, refused, cpu_s = asyncio.run(_one_process(plan, seeds, barrier))
        out.put((lat.by_method, lat.errors, refused, {**_COUNTS, "client_cpu_s": cpu_s}))
    except BaseException as e:
        barrier.abort()
        out.put(({}, {f"client process: {type(e).__name__}: {e}": 1}, [], {}))


async def engine_clients(sock: Path, *, clients: int, period_s: float, duration_s: float,
                         jobs: int, job_method: bool, deltas: bool, procs: int = 4,
                         fleet_clients: int = 0, nice: int = 0,
                         on_start: Callable[[], None] | None = None,
                         ) -> tuple[Latencies, list[str], dict[str, float]]:
    """`clients` clients over `procs` processes (see the module docstring); the merged
    latencies, refused connections, and totals: `client_cpu_s` (the client processes' CPU
    while calling), `fleet_answers` and `fleet_nodes` (nodes they carried). `on_start` runs
    when every client is connected and the calls begin (the caller reads the engine's CPU
    there). `nice` > 0 runs the clients at that niceness: on one machine, they then take
    the CPU the engine leaves, as clients on other hosts would."""
    ctx = mp.get_context("spawn")
    procs = max(1, min(procs, clients))
    barrier = ctx.Barrier(procs + 1)
    out = ctx.Queue()
    plan = Plan(sock=sock, period_s=period_s, duration_s=duration_s, jobs=jobs,
                job_method=job_method, deltas=deltas, fleet_clients=fleet_clients, nice=nice)
    workers = [ctx.Process(target=_process_main, args=(plan, range(i, clients, procs),
                                                      barrier, out), daemon=True)
               for i in range(procs)]
    for w in workers:
        w.start()
    lat, refused, totals = Latencies(), [], dict[str, float]()
    try:
        await asyncio.to_thread(barrier.wait, 600)
        if on_start is not None:
            on_start()
        for _ in workers:
            by_method, errors, refused_one, counts = await asyncio.to_thread(
                out.get, True, duration_s + 600)
            for k, v in counts.items():
                totals[k] = totals.get(k, 0.0) + v
            for m, values in by_method.items():
                lat.by_method.setdefault(m, []).extend(values)
            for k, n in errors.items():
                lat.errors[k] = lat.errors.get(k, 0) + n
            refused.extend(refused_one)
    finally:
        for w in workers:
            w.join(30)
            if w.is_alive():
                w.kill()
    return lat, refused, totals


async def has_delta(client: EngineClient) -> bool:
    """Whether the engine answers `fleet_delta` (older code: the whole fleet each time)."""
    try:
        await client.call("fleet_delta")
    except RemoteError as e:
        return e.code.value not in ("unknown_method", "bad_request")
    return True
