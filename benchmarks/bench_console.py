"""Console responsiveness with a large fleet: time to first paint, and main-loop time per refresh.

Feeds the real screens generated data in the engine's reply shapes (`fleet`, `jobs`,
`summary`) through their own message handlers, exactly as the poll workers do, and measures
on the UI loop: the handler (diffing rows, `update_cell` on changed cells only) plus the
frame it causes (layout and compositor render of the visible screen). No engine runs, so no
real poll interferes (they fail fast and change nothing).

    .venv/bin/python benchmarks/bench_console.py [--nodes 1000] [--jobs 10000] [--refreshes 20]

Targets (issue #7): first paint under 1 s; under 50 ms of main-loop time per refresh; (issue
#16) the `:` palette drawn with its list under 200 ms after the key press.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from textual import events
from textual.command import CommandList, CommandPalette

from console.app import EngineLink, FleetdeckApp
from console.config import load
from console.engine.api.replies import FleetNode, JobInfo, Summary
from console.messages import SummaryLoaded
from console.screens.fleet import FleetScreen
from console.screens.jobs import JobsScreen
from console.widgets.heatmap import GpuHeatmap
from console.widgets.keyed_table import KeyedTable

GIB = 2**30
T = TypeVar("T")
T0 = datetime(2024, 5, 1, 12, tzinfo=UTC).timestamp()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None).isoformat()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def make_fleet(n_nodes: int, rng: random.Random) -> list[dict[str, Any]]:
    nodes = []
    for i in range(n_nodes):
        gpus: list[dict[str, Any]] = [{"index": g, "uuid": f"GPU-{i}-{g}", "model": "A100-80GB",
                 "util_pct": rng.uniform(0, 100), "mem_used_bytes": rng.randrange(80) * GIB,
                 "mem_total_bytes": 80 * GIB, "temp_c": 50.0, "power_w": 250.0,
                 "power_limit_w": 400.0, "ecc_uncorrected": 0, "healthy": True,
                 "alloc_milli": 1000 if g < 6 else 0, "jobs": [], "idle": g == 0 and i % 50 == 0}
                for g in range(8)]
        nodes.append({
            "name": f"gpu-{i:04d}", "pool": f"pool{i % 4}", "labels": {"rack": str(i // 40)},
            "state": "up" if i % 97 else "degraded", "state_reason": None, "cordoned": False,
            "drained_reason": None, "cpu_count": 64, "cpu_util_pct": rng.uniform(0, 100),
            "mem_used_bytes": rng.randrange(512) * GIB, "mem_total_bytes": 512 * GIB,
            "load1": 8.0, "last_seen": T0, "gpus": gpus, "jobs": [], "containers": [],
            "processes": []})
    return nodes


def make_jobs(n_jobs: int, n_nodes: int) -> list[dict[str, Any]]:
    jobs = []
    for j in range(n_jobs, 0, -1):
        kind = j % 10
        state = "running" if kind < 5 else ("queued" if kind < 9 else "succeeded")
        node = f"gpu-{j % n_nodes:04d}" if state != "queued" else None
        jobs.append({
            "id": j, "name": f"job-{j}", "state": state, "user": f"user{j % 37}",
            "project": f"proj{j % 11}", "team": f"team{j % 5}", "kind": "batch",
            "executor": "process", "gpus": 1.0, "gpu_count": 1, "gpu_milli": 1000,
            "node": node, "gpu_indices": [j % 8] if node else [], "pool": f"pool{j % 4}",
            "priority": 0, "submitted_at": iso(T0 - 7200 - j), "reason": "waiting" if
            state == "queued" else "started",
            "started_at": iso(T0 - 3600 - j) if state != "queued" else None,
            "ended_at": iso(T0 - 60) if state == "succeeded" else None,
            "exit_code": 0 if state == "succeeded" else None, "attempt": 1, "spec": {}})
    return jobs


def summary(nodes: list[dict[str, Any]], jobs: list[dict[str, Any]]) -> dict[str, Any]:
    gpus = [g for n in nodes for g in n["gpus"]]
    return {"gpus_total": len(gpus), "gpus_allocated": sum(g["alloc_milli"] for g in gpus) / 1e3,
            "gpu_util_pct": statistics.fmean(g["util_pct"] for g in gpus),
            "cpus_total": 64 * len(nodes), "cpus_allocated": 3000.0, "cpu_util_pct": 40.0,
            "nodes_up": len(nodes), "nodes_degraded": 0, "nodes_unreachable": 0,
            "queue_len": sum(j["state"] == "queued" for j in jobs),
            "running_jobs": sum(j["state"] == "running" for j in jobs),
            "burst_spend_today": 12.5, "burst_budget_today": 100.0, "idle_warnings": 3}


def churn(nodes: list[dict[str, Any]], rng: random.Random) -> None:
    """One refresh's worth of change: every GPU's and node's utilization moves."""
    for n in nodes:
        n["cpu_util_pct"] = rng.uniform(0, 100)
        for g in n["gpus"]:
            g["util_pct"] = rng.uniform(0, 100)


def churn_jobs(jobs: list[dict[str, Any]], now: float, rng: random.Random) -> None:
    """1% of the jobs change state each refresh (queued -> running -> succeeded)."""
    for job in rng.sample(jobs, len(jobs) // 100):
        if job["state"] == "queued":
            job.update(state="running", node=f"gpu-{job['id'] % 1000:04d}",
                       gpu_indices=[job["id"] % 8], started_at=iso(now), reason="started")
        elif job["state"] == "running":
            job.update(state="succeeded", ended_at=iso(now), exit_code=0, reason="exit 0")


def decoded(data: Any, tp: type[T]) -> T:
    """What the poll worker hands over: fresh reply Structs decoded from the engine's JSON."""
    return msgspec.json.decode(msgspec.json.encode(data), type=tp, strict=False)


def frame(app: FleetdeckApp) -> None:
    """Lay out what the handlers changed, then render the whole visible screen (every line
    of every widget, an upper bound on the frame the update timer would paint)."""
    screen = app.screen
    screen._on_timer_update()
    screen._compositor.render_full_update()


async def open_palette(app: FleetdeckApp) -> tuple[float, float]:
    """Press `:` and wait for the first frame that draws the palette's list; returns the
    press's (perf_counter, process_time)."""
    drawn = asyncio.Event()
    display = app._display

    def watch(screen: Any, update: Any) -> None:
        if (isinstance(screen, CommandPalette) and screen.query(CommandList)
                and screen.query_one(CommandList).option_count > 0):
            drawn.set()
        display(screen, update)

    app._display = watch  # type: ignore[method-assign,assignment]
    key = events.Key("colon", ":")
    key.set_sender(app)
    assert app._driver is not None
    t0, c0 = time.perf_counter(), time.process_time()
    app._driver.send_message(key)
    try:
        await drawn.wait()
    finally:
        app._display = display  # type: ignore[method-assign]
    return t0, c0


def pctl(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def run(n_nodes: int, n_jobs: int, refreshes: int) -> None:
    rng = random.Random(7)
    tmp = Path(tempfile.mkdtemp())
    cfg = tmp / "config.toml"
    cfg.write_text(f'[store]\npath = "{tmp / "store.duckdb"}"\n')
    link = EngineLink(load(str(cfg)), None)
    clock = Clock()
    nodes = make_fleet(n_nodes, rng)
    jobs = make_jobs(n_jobs, n_nodes)
    util = {(n["name"], g["index"]): g["util_pct"] for n in nodes for g in n["gpus"]}

    t_start = time.perf_counter()
    app = FleetdeckApp(link, clock=clock)
    async with app.run_test(size=(160, 50)) as pilot:
        t_ready = time.perf_counter() - t_start
        fleet = app.screen
        assert isinstance(fleet, FleetScreen)
        table = fleet.query_one(KeyedTable)

        # first paint with data: the first fleet reply, rendered
        t0 = time.perf_counter()
        app.post_message(SummaryLoaded(decoded(summary(nodes, jobs), Summary)))
        fleet.post_message(FleetScreen.FleetLoaded(decoded(nodes, list[FleetNode])))
        while table.row_count < n_nodes:
            await pilot.pause(0)
        await pilot.pause()
        frame(app)
        t_fleet_first = time.perf_counter() - t0

        fleet_ms: list[float] = []
        fleet_cpu: list[float] = []
        handler_ms: list[float] = []
        cells = 0
        for _ in range(refreshes):
            churn(nodes, rng)
            clock.now += 2
            msg = FleetScreen.FleetLoaded(decoded(nodes, list[FleetNode]))
            c0, t0 = time.process_time(), time.perf_counter()
            fleet.show_fleet(msg)
            t1 = time.perf_counter()
            frame(app)
            t2, c2 = time.perf_counter(), time.process_time()
            handler_ms.append((t1 - t0) * 1e3)
            fleet_ms.append((t2 - t0) * 1e3)
            fleet_cpu.append((c2 - c0) * 1e3)
            cells += table.last_sync.cells_updated
            await pilot.pause()

        # heatmap view
        await pilot.press("h")
        heat = fleet.query_one(GpuHeatmap)
        heat_ms: list[float] = []
        heat_cpu: list[float] = []
        for _ in range(refreshes):
            churn(nodes, rng)
            msg = FleetScreen.FleetLoaded(decoded(nodes, list[FleetNode]))
            c0, t0 = time.process_time(), time.perf_counter()
            fleet.show_fleet(msg)
            frame(app)
            heat_ms.append((time.perf_counter() - t0) * 1e3)
            heat_cpu.append((time.process_time() - c0) * 1e3)
            await pilot.pause()
        assert len(heat.rows) == n_nodes

        # jobs: first render of 10,000 rows, then refreshes
        await pilot.press("2")
        await pilot.pause()
        js = app.screen
        assert isinstance(js, JobsScreen)
        jtable = js.query_one(KeyedTable)
        t0 = time.perf_counter()
        js.post_message(JobsScreen.JobsLoaded(decoded(jobs, list[JobInfo]), util, {}, "all"))
        while jtable.row_count < n_jobs:
            await pilot.pause(0)
        await pilot.pause()
        frame(app)
        t_jobs_first = time.perf_counter() - t0

        jobs_ms: list[float] = []
        jobs_cpu: list[float] = []
        jcells = 0
        for _ in range(refreshes):
            churn(nodes, rng)
            util = {(n["name"], g["index"]): g["util_pct"] for n in nodes for g in n["gpus"]}
            clock.now += 2
            churn_jobs(jobs, clock.now, rng)
            jmsg = JobsScreen.JobsLoaded(decoded(jobs, list[JobInfo]), util, {}, "all")
            c0, t0 = time.process_time(), time.perf_counter()
            js.show_jobs(jmsg)
            frame(app)
            jobs_ms.append((time.perf_counter() - t0) * 1e3)
            jobs_cpu.append((time.process_time() - c0) * 1e3)
            jcells += jtable.last_sync.cells_updated
            await pilot.pause()
        rebuilt = jtable.last_sync.rebuilt or table.last_sync.rebuilt

        # the `:` palette with every node and job loaded: the key as the terminal driver
        # delivers it, to the first frame drawn with the palette's list (the frame the app
        # would write to the terminal); the app settles between openings
        palette_ms: list[float] = []
        palette_cpu: list[float] = []
        for _ in range(7):
            t0, c0 = await open_palette(app)
            palette_ms.append((time.perf_counter() - t0) * 1e3)
            palette_cpu.append((time.process_time() - c0) * 1e3)
            await pilot.press("escape")
            while isinstance(app.screen, CommandPalette):
                await pilot.pause(0)
            await pilot.pause(0.3)
        first_palette_ms, first_palette_cpu = palette_ms.pop(0), palette_cpu.pop(0)
        await pilot.press("q")

    loadavg = os.getloadavg()[0]
    print(f"console benchmark: {n_nodes} nodes x 8 GPUs, {n_jobs} jobs, {refreshes} refreshes "
          f"(Textual headless, 160x50; {os.cpu_count()} CPUs, load average {loadavg:.1f})")
    print(f"  time to first paint (app start -> first frame):  {t_ready * 1e3:8.0f} ms")
    print(f"  first Fleet render of {n_nodes} nodes:              {t_fleet_first * 1e3:8.0f} ms")
    print(f"  first Jobs render of {n_jobs} jobs:              {t_jobs_first * 1e3:8.0f} ms")
    print("  main-loop time per refresh (handler + frame), wall / CPU of this process:")
    for name, ms, cpu in (("Fleet table", fleet_ms, fleet_cpu),
                          ("  of which handler", handler_ms, None),
                          ("Heatmap", heat_ms, heat_cpu), ("Jobs table", jobs_ms, jobs_cpu)):
        line = (f"  {name:<20} wall p50 {statistics.median(ms):6.1f} ms  p95 "
                f"{pctl(ms, 0.95):6.1f} ms")
        if cpu is not None:
            line += f"   CPU p50 {statistics.median(cpu):6.1f} ms  p95 {pctl(cpu, 0.95):6.1f} ms"
        print(line)
    print(f"  palette (`:` -> first frame with its list, {n_nodes} nodes + {n_jobs} jobs): "
          f"wall p50 {statistics.median(palette_ms):.0f} ms, max {max(palette_ms):.0f} ms; "
          f"CPU p50 {statistics.median(palette_cpu):.0f} ms; the first opening "
          f"{first_palette_ms:.0f} ms, CPU {first_palette_cpu:.0f} ms (target: under 200 ms)")
    print(f"  cells updated per refresh: fleet {cells / refreshes:.0f}, jobs "
          f"{jcells / refreshes:.0f} (+ the live columns of the visible rows, drawn fresh); "
          f"full rebuilds: {'yes' if rebuilt else 'none'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--refreshes", type=int, default=20)
    a = p.parse_args()
    asyncio.run(run(a.nodes, a.jobs, a.refreshes))


if __name__ == "__main__":
    main()
