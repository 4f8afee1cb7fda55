"""One demo run: a temporary folder with the sim fleet, its config, history and workload.

    with Demo() as demo:
        loaded = demo.prepare()          # config, sandboxes, inventory, reserved ids
        engine = EmbeddedEngine(loaded); engine.start()
        demo.start(embedded_store_runner(engine))   # history + live workload, background
        ...
        demo.stop_workload(); engine.stop()
    # leaving the block kills what the demo's jobs still run and deletes the folder

The history (27,000 jobs with their events and audit rows, six months of hourly rollups: about
1.6 million rows) is built in a background thread and written on the engine's own store thread,
so the fleet is live on screen before it is in, and the engine stays the store's only writer.
`prepare` only reserves the job and audit ids it will take. With `defer_history=False`,
`prepare` writes everything itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import pyarrow as pa

import console.demo.fleet as fleet
from collectors.store import Store
from collectors.transport.sim import stop_sandbox_jobs
from console.config import Config, EngineConfig, Loaded, load
from console.demo.history_tables import (
    History,
    plan,
    reserve,
    rollup_tables,
    small_tables,
    write_rollups,
    write_small,
)
from console.demo.pointer import announce, withdraw
from console.demo.workload import drive, engine_submit
from console.engine.client import EngineClient
from console.engine.host import EmbeddedEngine

log = logging.getLogger(__name__)
HISTORY_CHUNK_ROWS = 2 * 122_880  # two DuckDB row groups: short store-thread turns
T = TypeVar("T")
StoreRunner = Callable[[Callable[[Store], Any]], Any]  # runs fn(store) on the engine's thread


def embedded_store_runner(engine: EmbeddedEngine) -> StoreRunner:
    """Run `fn(store)` on an embedded engine's store thread and wait for it."""
    def run(fn: Callable[[Store], T]) -> T:
        return engine.run_on_store(fn)
    return run


def _append(table: str, frame: pa.Table, store: Store) -> int:
    return store.append(table, frame)


def pinned(loaded: Loaded, root: Path) -> Loaded:
    """The demo config with `[store]` and `[engine]` forced back to the demo's own: a
    `FLEETDECK__STORE__PATH` or `FLEETDECK__ENGINE__SOCKET` in the environment must not point
    the demo at the user's store or engine."""
    cfg = loaded.config
    store = root / "store" / "demo.duckdb"
    if cfg.store.path == store and cfg.engine == EngineConfig():
        return loaded
    log.info("demo: ignoring [store]/[engine] settings from the environment")
    config = dataclasses.replace(cfg, store=dataclasses.replace(cfg.store, path=store),
                                 engine=EngineConfig())
    return dataclasses.replace(loaded, config=config)


class Demo:
    """See the module docstring. `root` defaults to a new temporary folder, deleted at close."""

    def __init__(self, root: Path | None = None, *, seed: int = 7, interval_s: float = 2.0,
                 history_days: int = 182, burst: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        self._own_root = root is None
        self.root = root or Path(tempfile.mkdtemp(prefix="fleetdeck-demo-"))
        self.seed = seed
        self.interval_s = interval_s
        self.history_days = history_days
        self.burst = burst
        self.clock = clock
        self.loaded: Loaded | None = None
        self.history: History | None = None
        self.history_done = threading.Event()
        self.history_error: BaseException | None = None
        self.timings: dict[str, float] = {}
        self.submitted = 0
        self._threads: list[threading.Thread] = []
        self._driver_loop: asyncio.AbstractEventLoop | None = None
        self._driver_stop: asyncio.Event | None = None
        self._stopping = threading.Event()

    @property
    def config(self) -> Config:
        assert self.loaded is not None, "prepare() first"
        return self.loaded.config

    def __enter__(self) -> Demo:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- setup ------------------------------------------------------------------------------
    def prepare(self, *, defer_history: bool = True) -> Loaded:
        """Write the config, the sandboxes and what the store needs before an engine opens it.

        With `defer_history=False` the whole history is written now (no engine needed);
        otherwise `start` writes it through the engine."""
        t0 = time.perf_counter()
        path = fleet.write_demo(self.root, interval_s=self.interval_s, burst=self.burst)
        self.loaded = pinned(load(str(path)), self.root)
        if self._own_root:  # `fleetdeck --demo COMMAND` finds this demo through it
            announce(path)
        t1 = time.perf_counter()
        self.history = plan(self.clock(), days=self.history_days, seed=self.seed)
        with Store.open(self.loaded.config.store.path) as store:
            reserve(store, self.history)
            if not defer_history:
                write_small(store, small_tables(self.history))
                write_rollups(store, rollup_tables(self.history))
                self.history_done.set()
        t2 = time.perf_counter()
        self.timings.update(config_s=t1 - t0, history_plan_s=t2 - t1)
        return self.loaded

    def start(self, store_runner: StoreRunner | None, *, workload: bool = True) -> None:
        """Background work once the engine runs: the history (written through `store_runner`,
        on the engine's store thread) and the live workload submitted to the engine's socket."""
        if not self.history_done.is_set():
            if store_runner is None:
                raise ValueError("history still to write: pass the engine's store runner")
            self._spawn(self._write_history, "demo-history", store_runner)
        if workload:
            self._spawn(self._drive, "demo-workload")

    def _spawn(self, target: Callable[..., None], name: str, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _write_history(self, store_runner: StoreRunner) -> None:
        assert self.history is not None
        h = self.history
        try:
            t0 = time.perf_counter()
            self._write_chunked(store_runner, small_tables(h))
            t1 = time.perf_counter()
            tables = rollup_tables(h)
            t2 = time.perf_counter()
            self._write_chunked(store_runner, tables)
            self.timings.update(history_jobs_s=t1 - t0, rollups_generate_s=t2 - t1,
                                rollups_write_s=time.perf_counter() - t2)
            # Arrow's allocator keeps the freed tables' pages (up to some 30 MB): hand them back
            del tables
            pa.default_memory_pool().release_unused()
        except BaseException as e:  # reported by wait_history(); the demo goes on without it
            self.history_error = e
            log.warning("demo history: %s", e)
        finally:
            self.history_done.set()

    def _write_chunked(self, store_runner: StoreRunner, tables: dict[str, pa.Table]) -> None:
        """Append in slices: the engine's own store work (ingest, job starts, submissions)
        queues on the same thread and runs between two slices, not after the whole history."""
        for table, frame in tables.items():
            for offset in range(0, frame.num_rows, HISTORY_CHUNK_ROWS):
                if self._stopping.is_set():
                    return
                store_runner(functools.partial(_append, table,
                                               frame.slice(offset, HISTORY_CHUNK_ROWS)))

    def wait_history(self, timeout_s: float) -> bool:
        """True once the whole history is written (raises what writing it raised)."""
        done = self.history_done.wait(timeout_s)
        if self.history_error is not None:
            raise self.history_error
        return done

    # -- workload ---------------------------------------------------------------------------
    def _drive(self) -> None:
        async def main() -> None:
            self._driver_loop = asyncio.get_running_loop()
            self._driver_stop = asyncio.Event()
            if self._stopping.is_set():
                return
            client = await EngineClient.connect(self.config.socket_path)
            try:
                self.submitted = await drive(engine_submit(client.call),
                                             random.Random(self.seed), self._driver_stop)
            finally:
                await client.close()

        try:
            asyncio.run(main())
        except Exception as e:
            log.warning("demo workload stopped: %s", e)

    def stop_workload(self) -> None:
        """Stop submitting (call before stopping the engine)."""
        self._stopping.set()
        loop, ev = self._driver_loop, self._driver_stop
        if loop is not None and ev is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(ev.set)

    # -- teardown ---------------------------------------------------------------------------
    def sandboxes(self) -> list[Path]:
        out = []
        for parent in (self.root / "nodes", self.root / "cloud" / "nodes"):
            if parent.is_dir():
                out += [p for p in parent.iterdir() if p.is_dir()]
        return out

    def stop_jobs(self) -> int:
        """Kill what the demo's jobs still run on every sim node (the engine does not)."""
        return sum(stop_sandbox_jobs(p) for p in self.sandboxes())

    def close(self) -> None:
        """Stop the workload, kill leftover job processes, delete the folder if it is ours."""
        self.stop_workload()
        for t in self._threads:
            t.join(timeout=30.0)
        self.stop_jobs()
        if self._own_root:
            withdraw(self.root / "config.toml")
            shutil.rmtree(self.root, ignore_errors=True)
