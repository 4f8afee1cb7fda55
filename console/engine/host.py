"""The engine: one asyncio loop hosting collectors, scheduler and policies.

It owns the store's only write connection (used from one dedicated thread, so the loop never
waits on DuckDB) and serves the control socket. Services plug in by registering handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb
import msgspec

from collectors.errors import EngineError
from collectors.private_files import describe as describe_private
from collectors.private_files import enter_private_umask
from collectors.store import Store
from collectors.store.audit import AuditEntry, record
from collectors.store.audit_kinds import ActionKind, TargetKind
from collectors.store.db import StoreWriteError, write_failure
from console import __version__
from console.config import Loaded
from console.engine.access import Caller, Peer, role_of, unreachable_dirs
from console.engine.api.methods import TABLE, Role
from console.engine.api.replies import DbInfo, StatusReply, Stopping
from console.engine.api.requests import DbInfoQuery, Request, Shutdown, StatusQuery
from console.engine.banner import start_line
from console.engine.faults import Faults, QuietFaults, watch_store
from console.engine.gc_tuning import tune_gc
from console.engine.server import ControlServer, Handler, Limits, StreamHandler
from console.engine.service_base import Service

if TYPE_CHECKING:
    from console.engine.hosting import NotifyCounts, PolicyReads
    from scheduler.runner import JobRunner

log = logging.getLogger(__name__)
T = TypeVar("T")


class StoreWorker:
    """Runs every store operation on one thread: DuckDB connections are not thread-safe.
    A write the disk refuses raises `StoreWriteError` (one line) and opens the store fault."""

    def __init__(self, faults: Faults | None = None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fleetdeck-store")
        self.store: Store | None = None
        self.faults = faults if faults is not None else Faults(time.time)

    async def run(self, fn: Callable[[Store], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, self._call, fn)
        except StoreWriteError as e:
            self.faults.fail("store", "writes failing", e.reason)
            raise

    def _call(self, fn: Callable[[Store], T]) -> T:
        assert self.store is not None, "store not open"
        try:
            return fn(self.store)
        except (duckdb.Error, OSError) as e:
            reason = write_failure(e)
            if reason is None:
                raise
            raise StoreWriteError(self.store.path, reason) from None

    async def open(self, path: os.PathLike[str], *, memory_limit_mb: int | None = None) -> Store:
        loop = asyncio.get_running_loop()
        self.store = await loop.run_in_executor(self._pool, Store.open, path)
        if memory_limit_mb is not None:  # DuckDB's default is 80 % of RAM: bound the engine
            limit = f"SET memory_limit = '{int(memory_limit_mb)}MB'"
            await self.run(lambda s: s.con.execute(limit))
        return self.store

    async def close(self) -> None:
        if self.store is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._pool, self.store.close)
            self.store = None
        self._pool.shutdown(wait=True)


class StoreReader:
    """Runs read-only store questions on their own threads, each with its own DuckDB cursor,
    so a client's read never waits behind the writer's ingest, rollups or job commits.
    Reads see what is committed (DuckDB's MVCC); anything that must see the writer's own
    uncommitted work stays on `StoreWorker`.

    The cursors are made on the store thread (`open`): making one from another thread takes
    the writer connection's lock while holding the GIL, which deadlocks against a writer
    query that needs the GIL (an Arrow scan)."""

    def __init__(self, worker: StoreWorker, threads: int = 2, *,
                 name: str = "fleetdeck-read") -> None:
        self._worker = worker
        self._threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
        self._local = threading.local()
        self._free: list[Store] = []
        self._all: list[Store] = []
        self._lock = threading.Lock()

    async def open(self) -> None:
        def make(store: Store) -> list[Store]:
            return [Store(store.path, store.cursor(), None) for _ in range(self._threads)]

        self._all = await self._worker.run(make)
        self._free = list(self._all)

    async def run(self, fn: Callable[[Store], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, fn)

    def _call(self, fn: Callable[[Store], T]) -> T:
        view: Store | None = getattr(self._local, "store", None)
        if view is None:
            with self._lock:
                assert self._free, "store readers not open"
                view = self._free.pop()
            self._local.store = view
        return fn(view)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for view in self._all:
            with contextlib.suppress(Exception):
                view.close()
        self._all, self._free = [], []


class Engine:
    """The headless core. `await engine.start()`, then `await engine.wait_stopped()`.
    Its services see it as a `console.engine.hosting.Host`."""

    def __init__(self, loaded: Loaded, *, clock: Callable[[], float] = time.time) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.clock = clock
        self.started_at = clock()
        self.faults = Faults(clock)
        self.db = StoreWorker(self.faults)
        self.reads = StoreReader(self.db)  # client reads, apart from the writer
        # the engine's own timed reads (policy ticks): never ahead of a client's in a queue
        self.tick_reads = StoreReader(self.db, 1, name="fleetdeck-tick-read")
        self.handlers: dict[str, Handler] = {}
        self.streams: dict[str, StreamHandler] = {}
        self._server: ControlServer | None = None
        self._stopped = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._closers: list[Callable[[], Any]] = []
        self.services: list[Service] = []  # in start order
        # extra `status` keys from services (notify, metrics): name -> async () -> value
        self.status_parts: dict[str, Callable[[], Any]] = {}
        self.runner: JobRunner | None = None  # the scheduler's, once attached
        self.policies: PolicyReads | None = None  # the policy service, once attached
        self.notify: NotifyCounts | None = None  # the notify service, once attached
        self.fleet_id = ""  # the store's id, scoping job names on nodes
        self.handlers.update(status=self._status, db_info=self._db_info, shutdown=self._shutdown)

    # -- lifetime -------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the store (refusing if another engine owns it or a live engine answers on
        the socket) and serve the socket."""
        from console.engine.client import live_engine

        path = self.config.socket_path
        store = await self.db.open(self.config.store.path,  # refuses a store in use
                                   memory_limit_mb=self.config.store.memory_limit_mb)
        if note := describe_private(store.made_private):
            log.warning("%s", note)
        await self.reads.open()
        await self.tick_reads.open()
        try:
            other = await live_engine(path)
            if other is not None:
                raise EngineError(f"socket {path} is served by a running fleetdeck engine "
                                  f"(pid {other.pid}, store {other.store}); stop it first or "
                                  "set [engine] socket to another path")
            self.fleet_id = await self.db.run(lambda s: s.fleet_id())
            from console.engine import wiring

            await wiring.attach_all(self)
            check_table(self.handlers, self.streams)
            eng = self.config.engine
            shared = self.config.access.grants_others
            self._server = ControlServer(
                path, self.handlers, self.streams, self,
                limits=Limits(eng.max_connections, eng.max_connections_per_user),
                shared=shared)
            await self._server.start()
            self.spawn(watch_store(self.db.run, self.faults), "store-watch")
        except BaseException:
            await self._close()
            raise
        log.info("engine serving on %s", path)
        blocked = unreachable_dirs(path) if shared else []
        if blocked:
            log.warning("[access] grants other users, but they cannot reach %s: %s lacks "
                        "o+x (use a socket path in a folder others can pass, e.g. "
                        "/run/fleetdeck/engine.sock)", path, blocked[0])

    @property
    def server(self) -> ControlServer:
        assert self._server is not None, "engine not started"
        return self._server

    # -- what the control server asks (console.engine.server.Gate) -----------------------
    def role_of(self, peer: Peer) -> Role | None:
        return role_of(self.config.access, peer)

    async def owner_of(self, job_id: int) -> str | None:
        rows = await self.db.run(lambda s: s.con.execute(
            "SELECT user FROM jobs WHERE id = ?", [job_id]).fetchall())
        return str(rows[0][0]) if rows else None

    async def audit(self, caller: Caller, method: str, req: Request | None, outcome: str,
                    message: str) -> None:
        """One `actions` row for a changing or refused call."""
        refused = outcome in ("forbidden", "unauthorized", "readonly")
        entry = AuditEntry(
            actor=caller.user, action=ActionKind.REFUSED if refused else ActionKind.CALL,
            target_kind=TargetKind.METHOD, target=method,
            reason=message if outcome != "ok" else "",
            evidence={"uid": caller.uid, "role": caller.role.label, "outcome": outcome,
                      "readonly": caller.readonly,
                      "params": redact(msgspec.to_builtins(req)) if req is not None else {}})

        def write(store: Store) -> None:
            with store.transaction() as con:
                record(con, [entry], now=self.clock())

        try:
            await self.db.run(write)
        except Exception:
            log.exception("audit row for %s failed", method)

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """Run a service loop for the engine's life; a crash is logged, not fatal."""
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)
        return task

    def on_close(self, fn: Callable[[], Any]) -> None:
        self._closers.append(fn)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("service %s crashed", task.get_name(), exc_info=task.exception())

    def request_stop(self) -> None:
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()
        await self._close()

    async def _close(self) -> None:
        if self._server is not None:
            await self._server.close()
            self._server = None
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for fn in reversed(self._closers):
            with contextlib.suppress(Exception):
                res = fn()
                if asyncio.iscoroutine(res):
                    await res
        if self.db.store is not None:  # cursors closed on the thread that made them
            def close_readers(_store: Store) -> None:
                self.reads.close()
                self.tick_reads.close()

            await self.db.run(close_readers)
        await self.db.close()

    # -- built-in handlers ------------------------------------------------------------------
    async def _status(self, caller: Caller, req: StatusQuery) -> StatusReply:
        """The engine and the caller, with one field per status part (notify, metrics)."""
        parts = {name: await fn() for name, fn in self.status_parts.items()}
        return StatusReply(
            engine=__version__, pid=os.getpid(),
            uptime_s=round(self.clock() - self.started_at, 1),
            store=str(self.config.store.path), socket=str(self.config.socket_path),
            config=self.loaded.source, nodes_configured=len(self.config.nodes),
            fleet_id=self.fleet_id, caller=caller.user, role=caller.role.label,
            faults=self.faults.lines(),  # "store: writes failing since ..."
            notify=parts.get("notify"), metrics=parts.get("metrics"))

    async def _db_info(self, caller: Caller, req: DbInfoQuery) -> DbInfo:
        return DbInfo(**await self.reads.run(db_info))

    async def _shutdown(self, caller: Caller, req: Shutdown) -> Stopping:
        asyncio.get_running_loop().call_soon(self.request_stop)
        return Stopping(stopping=True)


def check_table(handlers: dict[str, Handler], streams: dict[str, StreamHandler]) -> None:
    """Every table method has its handler and every handler a table entry."""
    want = {m.name for m in TABLE if not m.stream and m.name != "hello"}
    want_streams = {m.name for m in TABLE if m.stream}
    missing = (want - set(handlers)) | (want_streams - set(streams))
    extra = (set(handlers) - want) | (set(streams) - want_streams)
    if missing or extra:
        raise RuntimeError(f"method table and handlers differ: missing {sorted(missing)}, "
                           f"not in the table {sorted(extra)}")


def redact(params: Any) -> Any:
    """Request params for the audit trail: environment values are never stored."""
    if isinstance(params, dict):
        return {k: ({e: "(hidden)" for e in v} if k in ("env", "secret_env")
                    and isinstance(v, dict) else redact(v)) for k, v in params.items()}
    if isinstance(params, list):
        return [redact(v) for v in params]
    return params


def db_info(store: Store) -> dict[str, Any]:
    """Path, schema version and row counts of a store (also used without an engine)."""
    size = store.path.stat().st_size if store.path.exists() else 0
    return {
        "path": str(store.path),
        "schema_version": store.schema_version(),
        "size_bytes": size,
        "tables": store.row_counts(),
    }


async def serve(loaded: Loaded) -> int:
    """`fleetdeck serve`: run until SIGINT/SIGTERM or a shutdown request."""
    enter_private_umask()  # the WAL and what services write later are born 0600
    for handler in logging.getLogger().handlers:
        handler.addFilter(QuietFaults())  # a failing store is said by Faults, once a minute
    raise_fd_limit()
    engine = Engine(loaded)
    await engine.start()
    tune_gc()  # rare, short full collections: see gc_tuning
    sys.stdout.write(start_line(loaded.config) + "\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, engine.request_stop)
    loop.add_signal_handler(signal.SIGHUP, lambda: engine.spawn(_sighup(engine), "reload"))
    await engine.wait_stopped()
    return 0


def raise_fd_limit() -> None:
    """Open files up to the hard limit: every control connection holds one."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def _sighup(engine: Engine) -> None:
    from console.engine.protocol import RequestError
    from console.engine.svc_reload import reload_config

    try:
        result = await reload_config(engine, actor="signal:SIGHUP")
        log.warning("config reloaded: %s", result.reason)
    except RequestError as e:
        log.error("config reload refused: %s", e.message)


class EmbeddedEngine:
    """An engine on its own thread and loop, for the console when none runs yet."""

    def __init__(self, loaded: Loaded, *, clock: Callable[[], float] = time.time) -> None:
        self.loaded = loaded
        self.clock = clock  # tests pin it for deterministic snapshots
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._engine: Engine | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 30.0) -> None:
        self._thread = threading.Thread(target=self._main, name="fleetdeck-engine", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("embedded engine did not start in time")
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        async def run() -> None:
            self._loop = asyncio.get_running_loop()
            self._engine = Engine(self.loaded, clock=self.clock)
            try:
                await self._engine.start()
            except BaseException as e:
                self._error = e
                self._ready.set()
                return
            self._ready.set()
            await self._engine.wait_stopped()

        asyncio.run(run())

    def run_on_store(self, fn: Callable[[Store], T], timeout: float = 600.0) -> T:
        """Run `fn(store)` on the engine's store thread from another thread; wait for it."""
        if self._loop is None or self._engine is None:
            raise RuntimeError("the embedded engine is not running")
        fut = asyncio.run_coroutine_threadsafe(self._engine.db.run(fn), self._loop)
        return fut.result(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._engine is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._engine.request_stop)
        if self._thread is not None:
            self._thread.join(timeout)
