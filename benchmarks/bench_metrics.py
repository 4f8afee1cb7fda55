"""Benchmark: the Prometheus endpoint on a large fleet, and the notification outbox.

Scrape: a fleet view of N nodes x G GPUs (real `ProbeRecord`s) is published the way the engine
does (a snapshot swap on the asyncio loop every second) while a client thread scrapes the real
endpoint (`svc_metrics.Exposition` behind its HTTP handler) over loopback. Printed: scrape
round trip p50/p95/max, render time (on the renderer thread), and the engine loop's stall
(how late a 5 ms heartbeat wakes, p99/max) without and with scraping.

Outbox: events are written to a DuckDB store and delivered by the real `NotifyService` (its
store thread, sender threads, retries machinery) to a local HTTP receiver. Printed: events/s
routed and delivered and messages sent, for a burst (events of one recipient go out as
digests) and a trickle (one event per message).

Usage: .venv/bin/python benchmarks/bench_metrics.py [--nodes 1000] [--gpus 8] [--scrapes 20]
       [--events 5000] [--trickle 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from collectors.events import Event, EventName  # noqa: E402
from collectors.health import FleetView, NodeHealth, NodeView  # noqa: E402
from collectors.models import GpuSample, NodeSample, ProbeRecord  # noqa: E402
from collectors.notify.config import ChannelConfig, NotifyConfig, RouteConfig  # noqa: E402
from collectors.store import Store, outbox  # noqa: E402
from console.config import Config  # noqa: E402
from console.engine.host import StoreWorker  # noqa: E402
from console.engine.metrics import MetricsState, RunningJob, engine_metrics  # noqa: E402
from console.engine.svc_metrics import Exposition, metrics_handler  # noqa: E402
from console.engine.svc_notify import NotifyService  # noqa: E402


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def record(node: str, gpus: int, ts: float) -> ProbeRecord:
    host = NodeSample(ts, node, node, "6.1", 1e5, "EPYC", 128, 30.0, (), 1.0, 1.0, 1.0,
                      1 << 40, 1 << 39, 1 << 39, 0, 0, 0, 0)
    gs = tuple(GpuSample(ts, node, i, f"GPU-{node}-{i}", "NVIDIA H100 80GB HBM3", 80 << 30,
                         (i * 9) << 30, float((i * 13) % 100), 10.0, 40.0 + i, 300.0 + i,
                         700.0, 1980, 0, 0, 0, False, False, False) for i in range(gpus))
    return ProbeRecord(node=node, ts=ts, seq=1, gpu_source="nvml", driver_version="550",
                       host=host, gpus=gs, processes=(), events=(), disks=(), errors=())


def fleet_state(nodes: int, gpus: int, version: int) -> MetricsState:
    now = time.time()
    views = {f"gpu{n:04d}": NodeView(
        name=f"gpu{n:04d}", pool=f"pool{n % 4}", transport="ssh", labels={},
        health=NodeHealth("up"), record=record(f"gpu{n:04d}", gpus, now), last_seen=now)
        for n in range(nodes)}
    running = tuple(RunningJob(n, f"user{n % 50}", f"proj{n % 20}", f"gpu{n:04d}",
                               tuple(range(gpus // 2)), 1000) for n in range(0, nodes, 2))
    counts = {("running", f"pool{p}"): nodes // 8 for p in range(4)}
    return MetricsState(view=FleetView(ts=now, interval_s=5.0, nodes=MappingProxyType(views)),
                        running=running, job_counts=counts,
                        spend={("USD", f"team{t}"): 100.0 * t for t in range(10)},
                        version=version)


async def heartbeat(stop: asyncio.Event, lags: list[float]) -> None:
    """How late a 5 ms sleep wakes: the loop's stall."""
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(0.005)
        lags.append(time.perf_counter() - t0 - 0.005)


async def bench_scrape(nodes: int, gpus: int, scrapes: int) -> None:
    metrics = engine_metrics()
    expo = Exposition(metrics)
    expo.start()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), metrics_handler(expo))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/metrics"
    states = [fleet_state(nodes, gpus, v) for v in (1, 2)]
    expo.publish(states[0])

    t0 = time.perf_counter()
    while not expo.rendered:  # noqa: ASYNC110 (the renderer is a thread)
        await asyncio.sleep(0.05)
    startup_s = time.perf_counter() - t0
    stop = asyncio.Event()
    idle_lags: list[float] = []
    hb = asyncio.create_task(heartbeat(stop, idle_lags))
    await asyncio.sleep(2.0)
    stop.set()
    await hb

    times: list[float] = []
    sizes: list[int] = []

    def client() -> None:
        for _ in range(scrapes):
            t0 = time.perf_counter()
            with urllib.request.urlopen(url, timeout=60) as r:
                sizes.append(len(r.read()))
            times.append(time.perf_counter() - t0)
            time.sleep(0.25)

    stop = asyncio.Event()
    lags: list[float] = []
    hb = asyncio.create_task(heartbeat(stop, lags))
    th = threading.Thread(target=client)
    th.start()
    version = 2
    while th.is_alive():
        expo.publish(states[version % 2])  # the engine's whole share: a reference swap
        version += 1
        await asyncio.sleep(1.0)
    stop.set()
    await hb
    httpd.shutdown()
    expo.stop()
    first, rest = times[0], times[1:]
    print(f"scrape: {nodes} nodes x {gpus} GPUs, {sizes[-1] / 1e6:.1f} MB per scrape, "
          f"{scrapes} scrapes while snapshots change every 1 s")
    print(f"  start-up render of the first snapshot (before any scrape): "
          f"{startup_s * 1000:.0f} ms; first scrape {first * 1000:.0f} ms")
    print(f"  scrape round trip p50 {statistics.median(rest) * 1000:.1f} ms, "
          f"p95 {pct(rest, 0.95) * 1000:.1f} ms, max {max(rest) * 1000:.1f} ms")
    print(f"  render (forked child, last): {expo.render_s * 1000:.0f} ms")
    print(f"  engine loop stall, no scrapes: p99 {pct(idle_lags, 0.99) * 1000:.1f} ms, "
          f"max {max(idle_lags) * 1000:.1f} ms")
    print(f"  engine loop stall, scraping:   p99 {pct(lags, 0.99) * 1000:.1f} ms, "
          f"max {max(lags) * 1000:.1f} ms")


class Receiver:
    def __init__(self) -> None:
        self.events = 0
        self.messages = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                import json

                n = len(json.loads(body)["events"])
                with lock:
                    outer.events += n
                    outer.messages += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"


async def bench_outbox(events: int, trickle: int, tmp: Path) -> None:
    rx = Receiver()
    cfg = NotifyConfig(channels=(ChannelConfig(name="ops", type="webhook", url=rx.url),),
                       routes=(RouteConfig(events=("*",), to=("ops",)),), tick_s=0.01,
                       batch_s=0.0, rate_limit=100000, concurrency=4)
    db = StoreWorker()
    await db.open(tmp / "outbox.duckdb")
    tasks: list[asyncio.Task[Any]] = []
    engine = SimpleNamespace(config=Config(notify=cfg), db=db, clock=time.time,
                             spawn=lambda coro, name: tasks.append(asyncio.create_task(coro)),
                             on_close=lambda fn: None, status_parts={}, notify=None)
    svc = NotifyService(engine)  # type: ignore[arg-type]

    def burst(store: Store) -> None:
        now = time.time()
        outbox.emit(store, [Event(EventName.JOB_FAILED, now, f"job {i} failed", job_id=i)
                            for i in range(events)])

    await db.run(burst)
    t0 = time.perf_counter()
    await svc.start()
    while rx.events < events:  # noqa: ASYNC110 (the receiver is a thread)
        await asyncio.sleep(0.01)
    dt = time.perf_counter() - t0
    print(f"outbox burst: {events} events -> {rx.messages} messages (digests) in {dt:.2f} s: "
          f"{events / dt:.0f} events/s delivered")
    base_e, base_m = rx.events, rx.messages
    t0 = time.perf_counter()
    for i in range(trickle):
        e = Event(EventName.JOB_FAILED, time.time(), f"job {i} failed", job_id=i)
        await db.run(lambda s, e=e: outbox.emit(s, [e]))
        await asyncio.sleep(0.02)
    while rx.events - base_e < trickle:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    dt = time.perf_counter() - t0
    print(f"outbox trickle: {trickle} events one every 20 ms -> {rx.messages - base_m} "
          f"messages in {dt:.2f} s: {trickle / dt:.0f} events/s delivered "
          f"(the emit rate bounds it)")
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await svc.stop()
    await db.close()
    rx.httpd.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--scrapes", type=int, default=20)
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--trickle", type=int, default=300)
    args = ap.parse_args()
    asyncio.run(bench_scrape(args.nodes, args.gpus, args.scrapes))
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(bench_outbox(args.events, args.trickle, Path(d)))


if __name__ == "__main__":
    main()
