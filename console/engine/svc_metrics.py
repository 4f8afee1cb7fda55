"""`[engine] metrics_listen`: the Prometheus endpoint, off the engine loop.

The loop only publishes snapshots (`MetricsState`: the immutable fleet view plus one store read
of job counts, running jobs and spend) every collect interval. Rendering the text format
(prometheus_client's `generate_latest`) runs after each snapshot while someone scrapes, in a
forked child (a copy-on-write view of the snapshot) so its CPU never contends with the loop
for the GIL; the HTTP thread answers from the cache. A scrape of a large fleet costs the loop
a reference swap and the scraper no rendering wait.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from collectors.errors import InputError
from collectors.store import Store
from collectors.store.audit import utc
from console.config import parse_listen
from console.engine.metrics import EngineMetrics, MetricsState, RunningJob, engine_metrics

if TYPE_CHECKING:
    from console.engine.hosting import Host
    from console.engine.svc_telemetry import Telemetry

log = logging.getLogger(__name__)


class Exposition:
    """The text format of the latest snapshot, rendered off the loop and cached."""

    def __init__(self, metrics: EngineMetrics) -> None:
        self.metrics = metrics
        self._lock = threading.Lock()  # one render at a time
        self._cache: tuple[int, bytes] | None = None
        self._wake = threading.Event()
        self._stop = False
        # as if scraped at start: the first snapshot is rendered before anyone asks
        self.last_scrape = time.monotonic()
        self._rendered_at = 0.0  # monotonic start of the last render
        self.render_s = 0.0  # how long the last render took
        self._thread = threading.Thread(target=self._run, name="fleetdeck-metrics-render",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()

    def publish(self, state: MetricsState) -> None:
        """Called on the loop: swap the snapshot; wake the renderer when a scrape came since
        the last render (rendering follows demand: at most once per scrape)."""
        self.metrics.fleet.state = state
        if self.last_scrape > self._rendered_at:
            self._wake.set()

    @property
    def rendered(self) -> bool:
        """Whether a scrape would be answered from the cache."""
        return self._cache is not None

    def body(self) -> bytes:
        """The scrape answer: the cached text of the current snapshot, rendering it here
        only when there is none yet (the first scrape)."""
        self.last_scrape = time.monotonic()
        cached = self._cache
        if cached is not None:
            if cached[0] != self.metrics.fleet.state.version:
                self._wake.set()  # slightly stale: the renderer catches up for the next one
            return cached[1]
        return self._render()

    def _render(self) -> bytes:
        with self._lock:
            version = self.metrics.fleet.state.version
            cached = self._cache
            if cached is not None and cached[0] == version:
                return cached[1]
            t0 = time.perf_counter()
            self._rendered_at = time.monotonic()
            try:
                out = render_forked(self.metrics)
            except RenderError as e:
                log.warning("metrics: rendering in a child failed (%s); rendering here", e)
                out = generate_latest(self.metrics.registry)
            self.render_s = time.perf_counter() - t0
            self._cache = (version, out)
            return out

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait()
            self._wake.clear()
            if not self._stop:
                try:
                    self._render()
                except Exception:
                    log.exception("metrics render failed")


class RenderError(Exception):
    """The forked renderer did not deliver."""


def render_forked(metrics: EngineMetrics, timeout_s: float = 30.0) -> bytes:
    """`generate_latest` in a forked child, read back through a pipe (the GIL is released
    while this thread waits). The child only renders immutable data and leaves with
    `os._exit`; one that does not finish in `timeout_s` is killed."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: render, write, leave without running any cleanup
        code = 1
        try:
            os.close(r)
            view = memoryview(generate_latest(metrics.registry))
            while view:
                view = view[os.write(w, view):]
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([r], [], [], max(0.0, left))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                raise RenderError(f"no output after {timeout_s:.0f}s")
            chunk = os.read(r, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    if status != 0:
        raise RenderError(f"renderer exited with status {status}")
    return b"".join(chunks)


def metrics_handler(exposition: Exposition) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                self.send_error(404, "only /metrics here")
                return
            body = exposition.body()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # scrapes every few seconds would flood the engine log

    return Handler


class MetricsServer:
    """The HTTP server thread plus the loop task publishing snapshots."""

    def __init__(self, engine: Host, telemetry: Telemetry, host: str, port: int) -> None:
        self.engine = engine
        self.telemetry = telemetry
        self.metrics = engine_metrics()
        self.exposition = Exposition(self.metrics)
        self.httpd = ThreadingHTTPServer((host, port), metrics_handler(self.exposition))
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever,
                                        name="fleetdeck-metrics", daemon=True)
        self._version = 0
        self._started_mark = engine.clock()
        self._sweep_mark = float("-inf")  # the newest probe tick observed

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self.exposition.start()
        self._thread.start()

    def close(self) -> None:
        self.exposition.stop()
        self.httpd.shutdown()
        self.httpd.server_close()

    async def loop(self) -> None:
        interval = max(0.2, self.engine.config.collect.interval_s)
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("metrics refresh failed")
            await asyncio.sleep(interval)

    async def refresh(self) -> None:
        """One store read, then a snapshot swap (the loop's whole share of metrics)."""
        mark = self._started_mark
        currency = self.engine.config.rates.currency
        counts, running, spend, waits, newest = await self.engine.db.run(
            lambda s: read_jobs(s, mark))
        self._started_mark = max(mark, newest)
        for w in waits:
            self.metrics.queue_wait.observe(max(0.0, w))
        stats = self.telemetry.stats  # the same figures as `status` (telemetry_stats)
        for tick, late in stats.sweeps_after(self._sweep_mark):
            self.metrics.sweep.observe(max(0.0, late))
            self._sweep_mark = tick
        if stats.write_lag_s:
            self.metrics.write_lag.set(max(0.0, stats.write_lag_s[-1]))
        self._version += 1
        self.exposition.publish(MetricsState(
            view=self.telemetry.view(), running=running, job_counts=counts,
            spend={(currency, team): amount for team, amount in spend.items()},
            unhealthy=frozenset(self.telemetry.unhealthy_gpus), version=self._version))


def read_jobs(store: Store, started_after: float) -> tuple[
        dict[tuple[str, str], int], tuple[RunningJob, ...], dict[str, float], list[float],
        float]:
    """Job counts per (state, pool), jobs holding GPUs, spend per team, and the queue waits
    of jobs started after `started_after` (epoch s) with the newest start."""
    con = store.con
    counts = {(str(st), str(pool)): int(n) for st, pool, n in con.execute(
        "SELECT state, coalesce(pool, ''), count(*) FROM jobs GROUP BY ALL").fetchall()}
    running = tuple(RunningJob(int(i), str(u), str(p or ""), str(n), tuple(g), int(m or 1000))
                    for i, u, p, n, g, m in con.execute(
                        "SELECT id, user, project, node, gpu_indices, gpu_milli FROM jobs "
                        "WHERE state IN ('starting', 'running') AND node IS NOT NULL "
                        "AND len(gpu_indices) > 0").fetchall())
    spend = {str(t or ""): float(a) for t, a in con.execute(
        "SELECT team, sum(amount) FROM spend GROUP BY ALL").fetchall()}
    rows = con.execute(
        "SELECT epoch(started_at) - epoch(submitted_at), epoch(started_at) FROM jobs "
        "WHERE started_at > ?", [utc(started_after)]).fetchall()
    newest = max((float(r[1]) for r in rows), default=started_after)
    return counts, running, spend, [float(r[0]) for r in rows], newest


async def attach(engine: Host, telemetry: Telemetry) -> MetricsServer | None:
    listen = engine.config.engine.metrics_listen
    if not listen:
        return None
    where = parse_listen(listen)
    if where is None:
        raise InputError(engine.loaded.source, "engine.metrics_listen",
                         'HOST:PORT like "127.0.0.1:9464"', got=listen)
    try:
        server = MetricsServer(engine, telemetry, *where)
    except OSError as e:
        raise InputError(engine.loaded.source, "engine.metrics_listen",
                         f"an address to listen on ({e.strerror})", got=listen) from None
    server.start()
    await server.refresh()
    engine.spawn(server.loop(), "metrics")
    engine.on_close(server.close)
    engine.status_parts["metrics"] = _status_part(server)
    log.info("metrics on http://%s:%d/metrics", *server.address)
    return server


def _status_part(server: MetricsServer) -> Callable[[], Any]:
    async def part() -> dict[str, Any]:
        host, port = server.address
        return {"listen": f"{host}:{port}", "render_s": round(server.exposition.render_s, 4)}

    return part
