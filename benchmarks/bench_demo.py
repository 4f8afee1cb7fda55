"""`fleetdeck --demo` start-up: seconds to a live fleet, and the history generator's speed.

1. History: six months for the demo fleet (48 nodes, 272 GPUs) written to a temporary store
   with `write_history`: jobs, rollup rows, generate and write seconds (wall and process CPU,
   which a busy shared machine inflates less).
2. Start-up, in a fresh interpreter per run (imports count, as on a fresh install): what
   `run_demo` does up to the console, timed from the interpreter's start: config and job
   history written, engine started, all 48 nodes up and the first job running (as the engine
   protocol's `summary` reports them), the bulk history written in the background.
   With `--ui` it runs `console.demo.start_demo` and the console itself, headless (Textual
   `run_test`); the milestone is the console's header showing 48 nodes up.
3. Steady state (`--ui --steady S`): once the history is written, S more seconds on the Jobs
   screen (the busiest): the process's RSS (and its peak), and CPU as % of one core, for the
   whole process and for the console's own thread (Textual's loop; the rest is the embedded
   engine and the simulated fleet, which `fleetdeck --demo` runs in the same process); apart,
   the CPU of the short commands it ran (`cpu_pct_children`: job status and start shells on
   the sim nodes; the jobs themselves are detached and not counted).

    .venv/bin/python benchmarks/bench_demo.py [--runs 3] [--ui [--steady 30]] [--skip-history]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import asyncio, json, os, sys, time
t_spawn = float(os.environ["BENCH_T0"])
marks = {"interpreter": time.time() - t_spawn}
cpu = {}

def mark(name, now=None):
    marks.setdefault(name, (time.time() if now is None else now) - t_spawn)
    cpu.setdefault(name, time.process_time())

from console.demo.session import Demo, embedded_store_runner
from console.engine.client import EngineClient
from console.engine.host import EmbeddedEngine
mark("imports")
UI = os.environ.get("BENCH_UI") == "1"
NODES = 48

async def headless(socket):
    c = await EngineClient.connect(socket)
    try:
        while True:
            s = await c.call("summary")
            if s["nodes_up"] == NODES:
                mark("all_nodes_up")
            if s["running_jobs"] > 0:
                mark("first_job_running")
            if "all_nodes_up" in marks and "first_job_running" in marks:
                return
            await asyncio.sleep(0.05)
    finally:
        await c.close()

STEADY_S = float(os.environ.get("BENCH_STEADY_S") or 0)

def rss_mb():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)

def children_cpu_s():
    # CPU of the finished children this process waited for: the executor's shells on the sim
    # nodes (the jobs themselves are detached, not counted)
    t = os.times()
    return t.children_user + t.children_system

def thread_cpu_s(tid):
    parts = open(f"/proc/self/task/{tid}/stat").read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")

async def with_ui(link, demo):
    from console.app import FleetdeckApp
    from console.engine.gc_tuning import tune_gc
    tune_gc()  # as `fleetdeck --demo` does before its console runs
    app = FleetdeckApp(link)
    async with app.run_test(size=(160, 50)) as pilot:
        mark("ui_mounted")
        while True:
            s = app.summary
            if s is not None and s.nodes_up == NODES:
                mark("ui_all_nodes_up")
            if s is not None and s.running_jobs > 0:
                mark("ui_first_job_running")
            if "ui_all_nodes_up" in marks and "ui_first_job_running" in marks:
                break
            await pilot.pause(0.05)
        if not STEADY_S:
            return
        await pilot.press("2")
        while not demo.history_done.is_set():
            await pilot.pause(0.5)
        await pilot.pause(5.0)  # let the first polls after the history settle
        main = os.getpid()  # Textual's loop runs on the main thread
        wall, cpu, ui = time.monotonic(), time.process_time(), thread_cpu_s(main)
        kids = children_cpu_s()
        await pilot.pause(STEADY_S)
        wall = time.monotonic() - wall
        marks["steady:cpu_pct_children"] = round((children_cpu_s() - kids) / wall * 100, 1)
        rss, peak = rss_mb()
        marks["steady:rss_mb"] = round(rss, 1)
        marks["steady:rss_peak_mb"] = round(peak, 1)
        marks["steady:cpu_pct_process"] = round((time.process_time() - cpu) / wall * 100, 1)
        marks["steady:cpu_pct_console"] = round((thread_cpu_s(main) - ui) / wall * 100, 1)

with Demo() as demo:
    if UI:
        from console.demo import start_demo
        link, engine = start_demo(demo)
        mark("engine_started")
    else:
        loaded = demo.prepare()
        mark("prepared")
        engine = EmbeddedEngine(loaded)
        engine.start()
        mark("engine_started")
        demo.start(embedded_store_runner(engine))
    try:
        if UI:
            asyncio.run(with_ui(link, demo))
        else:
            asyncio.run(headless(loaded.config.socket_path))
        demo.wait_history(600)
        mark("history_written")
        marks.update({k: round(v, 3) for k, v in demo.timings.items()})
        marks.update({f"cpu:{k}": round(v, 3) for k, v in cpu.items()})
    finally:
        demo.stop_workload()
        engine.stop()
print("BENCH " + json.dumps(marks))
"""


def history_bench() -> None:
    from collectors.store import Store
    from console.demo.history_tables import write_history

    with tempfile.TemporaryDirectory() as tmp, Store.open(Path(tmp) / "s.duckdb") as store:
        wall, cpu = time.perf_counter(), time.process_time()
        stats = write_history(store, time.time())
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rows = stats.gpu_rows + stats.node_rows
    print(f"history: {stats.jobs:,} jobs, {stats.gpu_rows:,} gpu_samples_1h + "
          f"{stats.node_rows:,} node_samples_1h rows ({rows:,}), {stats.burst_instances} "
          f"burst instances")
    print(f"history: generate {stats.generate_s:.2f} s, write {stats.write_s:.2f} s, "
          f"total {wall:.2f} s wall / {cpu:.2f} s CPU")


def startup_run(ui: bool, steady_s: float = 0.0) -> dict[str, float]:
    env = {**os.environ, "BENCH_T0": repr(time.time()), "BENCH_UI": "1" if ui else "0",
           "BENCH_STEADY_S": repr(steady_s)}
    res = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900)
    line = next((x for x in res.stdout.splitlines() if x.startswith("BENCH ")), None)
    if res.returncode != 0 or line is None:
        raise SystemExit(f"start-up run failed ({res.returncode}): {res.stderr[-2000:]}")
    marks: dict[str, float] = json.loads(line[len("BENCH "):])
    return marks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ui", action="store_true", help="time the headless console too")
    ap.add_argument("--skip-history", action="store_true")
    ap.add_argument("--steady", type=float, default=0.0, metavar="S",
                    help="with --ui: then S seconds of steady state (RSS, CPU %%)")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if not args.skip_history:
        history_bench()
    runs = [startup_run(args.ui, args.steady if args.ui else 0.0) for _ in range(args.runs)]
    keys = list(runs[0])
    print(f"start-up ({args.runs} fresh interpreters; seconds from spawn, median [min-max]):")
    for k in keys:
        vals = [r[k] for r in runs if k in r]
        print(f"  {k:<24} {statistics.median(vals):7.2f}  [{min(vals):.2f}-{max(vals):.2f}]")


if __name__ == "__main__":
    main()
