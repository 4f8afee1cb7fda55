"""The fleet collector: one task per node streaming the probe, Docker and Slurm sources, health.

Every node has its own task holding its own connection, so a slow or dead node only makes its
own data stale: there is no per-sweep barrier. The probe is started once per connection and
keeps writing one JSON line per interval on the same channel; it is restarted if it dies, and a
node without python3 gets the shell fallback. Connections that fail are retried with
exponential backoff and jitter. Every change publishes a new immutable `FleetView`.

Records go to `on_record(ProbeRecord)`, other rows to `on_rows(table, rows)` (an
`IngestBuffer`'s `add_record` / `add_rows`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors.health import (
    Backoff,
    FleetView,
    NodeHealth,
    NodeState,
    NodeView,
    SlurmPoolView,
    format_view,
    freeze,
    stale_reason,
)
from collectors.models import ProbeHello, ProbeRecord
from collectors.sources.docker import DockerSource, container_rows
from collectors.sources.probe import (
    ProbeFormatError,
    exit_reason,
    parse_line,
    probe_command,
    run_once,
)
from collectors.sources.slurm import SlurmSource, job_rows, node_rows
from collectors.transport import (
    Disconnected,
    NodeLike,
    SshOptions,
    Transport,
    TransportError,
    make_transport,
)
from collectors.transport.ssh import DEFAULT_CONNECT_CONCURRENCY

log = logging.getLogger("fleetdeck.collect")

RecordCallback = Callable[[ProbeRecord], None]
RowsCallback = Callable[[str, list[dict[str, Any]]], None]


@dataclass(slots=True)
class _Status:
    """A node's mutable status inside the collector; `NodeView`s are built from it."""

    conn_problem: str | None = None  # set while the node cannot be reached
    probe_problem: str | None = None
    record_problem: str | None = None  # what the last sample could not read
    stale: str | None = None
    docker_problem: str | None = None
    docker_ok_once: bool = False
    awaiting_sample: bool = True  # connected, no sample since
    health: NodeHealth = field(default_factory=NodeHealth)


class FleetCollector:
    """Collects the whole fleet continuously. Use as `async with FleetCollector(...) as fc:`.

    nodes: the configured nodes (`NodeConfig`, `NodeTarget` or anything `NodeLike`).
    slurm_pools: pool name -> name of its login node (one of `nodes`).
    transports: ready transports by node name (tests, or sharing with executors); others are
        made from the node's `transport` key.
    probe_env: extra environment for the probe, by node name (e.g. LD_LIBRARY_PATH for NVML).
    """

    def __init__(
        self,
        nodes: Sequence[NodeLike],
        *,
        interval_s: float,
        known_hosts: Path | str | None = None,
        on_record: RecordCallback | None = None,
        on_rows: RowsCallback | None = None,
        ssh: SshOptions | None = None,
        slurm_pools: Mapping[str, str] | None = None,
        disk_paths: Sequence[str] = ("/",),
        docker: bool = True,
        max_concurrent_connects: int = DEFAULT_CONNECT_CONCURRENCY,
        backoff: Backoff | None = None,
        transports: Mapping[str, Transport] | None = None,
        probe_env: Mapping[str, Mapping[str, str]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        names = [n.name for n in nodes]
        if len(set(names)) != len(names):
            raise ValueError("node names must be unique")
        self.interval_s = interval_s
        self.clock = clock
        self.nodes: dict[str, NodeLike] = {}
        self.on_record = on_record
        self.on_rows = on_rows
        self.disk_paths = tuple(disk_paths)
        self.probe_env = {k: dict(v) for k, v in (probe_env or {}).items()}
        self.docker = docker
        self.backoff = backoff or Backoff(base_s=min(1.0, interval_s), max_s=60.0)
        self.slurm_pools = dict(slurm_pools or {})
        for pool, login in self.slurm_pools.items():
            if login not in names:
                raise ValueError(f"slurm pool {pool}: login node {login!r} is not a fleet node")
        base = ssh or SshOptions()
        if known_hosts is not None:
            base = dataclasses.replace(base, known_hosts=Path(known_hosts))
        # Keepalives only go out on a connection silent for 1.5 intervals (a streaming probe
        # never is), so a silently dead peer is dropped about three intervals after its last
        # line; a crashed node's closed TCP connection is seen at once.
        self.ssh = dataclasses.replace(
            base, keepalive_s=min(base.keepalive_s, max(1.5 * interval_s, 1.0)),
            keepalive_count_max=2,
        )
        self._limit = asyncio.Semaphore(max_concurrent_connects)
        self._given = dict(transports or {})
        self._transports: dict[str, Transport] = {}
        self._status: dict[str, _Status] = {}
        self._views: dict[str, NodeView] = {}
        self._slurm: dict[str, SlurmPoolView] = {
            pool: SlurmPoolView(pool=pool, login_node=login)
            for pool, login in self.slurm_pools.items()
        }
        self._version = 0
        self._view: FleetView | None = None
        self._changed = asyncio.Event()
        self._running = False
        self._tasks: list[asyncio.Task[None]] = []  # Slurm pools, staleness watch
        self._node_tasks: dict[str, list[asyncio.Task[None]]] = {}
        self._docker_sources: dict[str, DockerSource] = {}
        for node in nodes:
            self._register(node)

    def _register(self, node: NodeLike) -> None:
        self.nodes[node.name] = node
        self._transports[node.name] = self._given.get(node.name) or make_transport(
            node, self.ssh, connect_limit=self._limit)
        self._status[node.name] = _Status(
            health=NodeHealth("unknown", "not contacted yet", self.clock()))
        self._views[node.name] = NodeView(
            name=node.name, pool=node.pool, transport=node.transport,
            labels=freeze(getattr(node, "labels", {}) or {}),
            health=self._status[node.name].health)

    # -- lifetime --------------------------------------------------------------------------
    async def __aenter__(self) -> FleetCollector:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start one task per node (plus Docker, Slurm and the staleness watch)."""
        if self._running:
            return
        self._running = True
        loop = asyncio.get_running_loop()
        for name in self.nodes:
            self._start_node(name)
        for pool in self.slurm_pools:
            self._tasks.append(loop.create_task(self._slurm_loop(pool), name=f"slurm:{pool}"))
        self._tasks.append(loop.create_task(self._watch_stale(), name="stale-watch"))

    def _start_node(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._node_loop(name), name=f"probe:{name}")]
        if self.docker and self.nodes[name].docker_socket:
            tasks.append(loop.create_task(self._docker_loop(name), name=f"docker:{name}"))
        self._node_tasks[name] = tasks

    async def stop(self) -> None:
        """Stop every task and close the connections this collector made (transports passed
        in through `transports` are left open for their owner)."""
        self._running = False
        tasks = self._tasks + [t for ts in self._node_tasks.values() for t in ts]
        self._tasks, self._node_tasks = [], {}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for source in self._docker_sources.values():
            source.close()
        self._docker_sources.clear()
        await asyncio.gather(*(t.close() for name, t in self._transports.items()
                               if name not in self._given), return_exceptions=True)

    async def add_node(self, node: NodeLike, transport: Transport | None = None) -> None:
        """Start collecting a node that joined the fleet (e.g. a burst instance)."""
        if node.name in self.nodes:
            raise ValueError(f"node {node.name} is already collected")
        if transport is not None:
            self._given[node.name] = transport
        self._register(node)
        self._publish()
        if self._running:
            self._start_node(node.name)

    async def remove_node(self, name: str) -> None:
        """Stop collecting a node (torn down, or removed from the config)."""
        if name not in self.nodes:
            raise KeyError(name)
        if any(login == name for login in self.slurm_pools.values()):
            raise ValueError(f"node {name} is a Slurm login node")
        tasks = self._node_tasks.pop(name, [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        source = self._docker_sources.pop(name, None)
        if source is not None:
            source.close()
        transport = self._transports.pop(name)
        if name not in self._given:
            await transport.close()
        self._given.pop(name, None)
        del self.nodes[name], self._status[name], self._views[name]
        self._publish()

    # -- what others read ------------------------------------------------------------------
    def view(self) -> FleetView:
        """The current immutable snapshot (the same object until something changes)."""
        if self._view is None or self._view.version != self._version:
            self._view = FleetView(ts=self.clock(), interval_s=self.interval_s,
                                   nodes=freeze(self._views), slurm=freeze(self._slurm),
                                   version=self._version)
        return self._view

    def transport(self, node: str) -> Transport:
        """The node's connection, for executors to share."""
        return self._transports[node]

    async def wait_for(self, predicate: Callable[[FleetView], bool], timeout_s: float
                       ) -> FleetView:
        """Wait until `predicate(view)` holds; raises TimeoutError after `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            while True:
                view = self.view()
                if predicate(view):
                    return view
                event = self._changed
                await event.wait()

    # -- state -----------------------------------------------------------------------------
    def _publish(self) -> None:
        self._version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    def _update(self, name: str, **changes: Any) -> None:
        st = self._status[name]
        state, reason = _derive(st)
        if state != st.health.state or reason != st.health.reason:
            since = st.health.since if state == st.health.state else self.clock()
            st.health = NodeHealth(state, reason, since)
            if state != _prev_state(self._views[name]):
                log.info("node %s: %s%s", name, state, f" ({reason})" if reason else "")
        self._views[name] = dataclasses.replace(self._views[name], health=st.health, **changes)
        self._publish()

    def _emit_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        if self.on_rows is not None and rows:
            try:
                self.on_rows(table, rows)
            except Exception:
                log.exception("on_rows(%s) failed", table)

    # -- per node: the probe ---------------------------------------------------------------
    async def _node_loop(self, name: str) -> None:
        t = self._transports[name]
        st = self._status[name]
        attempt = 0
        while True:
            fresh = not t.connected
            try:
                await t.connect()
            except TransportError as e:
                st.conn_problem = str(e)
                self._update(name)
                await asyncio.sleep(self.backoff.delay_s(attempt))
                attempt += 1
                continue
            if fresh:
                st.awaiting_sample = True
                self._update(name, connects=self._views[name].connects + 1)
            records = 0
            try:
                records, status, err = await self._probe_session(name, t)
            except Disconnected as e:
                st.conn_problem = str(e)
            except TransportError as e:
                st.conn_problem = None if t.connected else str(e)
                st.probe_problem = f"probe could not start: {e}"
            else:
                if t.connected:
                    st.conn_problem = None
                    st.probe_problem = exit_reason(status, err)
                else:
                    st.conn_problem = f"node {name}: connection lost"
            self._update(name, probe_restarts=self._views[name].probe_restarts + 1)
            if records:
                attempt = 0
            if t.connected:  # the probe died: restart it soon, on the same connection
                await asyncio.sleep(min(self.backoff.delay_s(attempt), max(self.interval_s, 1.0)))
            else:
                await t.close()
                await asyncio.sleep(self.backoff.delay_s(attempt))
            attempt += 1

    async def _probe_session(self, name: str, t: Transport) -> tuple[int, int | None, bytes]:
        """Run the probe until it ends: (records received, exit status, stderr tail)."""
        command, payload = probe_command(self.interval_s, self.disk_paths,
                                         env=self.probe_env.get(name))
        st = self._status[name]
        count = 0
        async with t.stream_shell(command, input=payload, keep_stdin_open=True) as lines:
            async for raw in lines:
                now = self.clock()
                try:
                    msg = parse_line(name, raw)
                except ProbeFormatError as e:
                    st.probe_problem = str(e)[:200]
                    self._update(name)
                    continue
                if isinstance(msg, ProbeHello):
                    self._update(name, hello=msg, probe_mode=msg.mode)
                    continue
                count += 1
                st.conn_problem = st.probe_problem = st.stale = None
                st.awaiting_sample = False
                st.record_problem = "; ".join(msg.errors) if msg.errors else None
                self._on_record(name, msg, now)
            return count, lines.exit_status, lines.stderr_tail

    def _on_record(self, name: str, rec: ProbeRecord, now: float) -> None:
        self._update(name, record=rec, last_seen=now)
        if self.on_record is not None:
            try:
                self.on_record(rec)
            except Exception:
                log.exception("on_record failed for node %s", name)

    async def _watch_stale(self) -> None:
        while True:
            await asyncio.sleep(max(self.interval_s / 2, 0.1))
            now = self.clock()
            for name, st in list(self._status.items()):
                view = self._views[name]
                reason = stale_reason(view.last_seen, now, self.interval_s)
                if st.conn_problem is None and reason != st.stale:
                    st.stale = reason
                    self._update(name)

    # -- per node: Docker ------------------------------------------------------------------
    async def _docker_loop(self, name: str) -> None:
        node, t, st = self.nodes[name], self._transports[name], self._status[name]
        source = DockerSource(name, t, node.docker_socket, timeout_s=max(10.0, self.interval_s))
        self._docker_sources[name] = source
        while True:
            await _sleep_until_tick(self.clock, self.interval_s)
            if not t.connected:
                continue
            ts = self.clock()
            try:
                samples = await source.sample(ts)
            except TransportError as e:
                if st.docker_ok_once:
                    st.docker_problem = str(e)
                self._update(name, docker_error=str(e))
                continue
            st.docker_ok_once, st.docker_problem = True, None
            self._update(name, containers=tuple(samples), containers_ts=ts, docker_error=None)
            self._emit_rows("container_samples", container_rows(samples))

    # -- per pool: Slurm -------------------------------------------------------------------
    async def _slurm_loop(self, pool: str) -> None:
        login = self.slurm_pools[pool]
        source = SlurmSource(pool, self._transports[login],
                             timeout_s=max(10.0, 2 * self.interval_s))
        while True:
            await _sleep_until_tick(self.clock, self.interval_s)
            ts = self.clock()
            try:
                snap = await source.sample(ts)
            except TransportError as e:
                self._slurm[pool] = dataclasses.replace(self._slurm[pool], error=str(e))
                self._publish()
                continue
            self._slurm[pool] = SlurmPoolView(pool=pool, login_node=login, ts=ts,
                                              nodes=snap.nodes, jobs=snap.jobs)
            self._publish()
            self._emit_rows("slurm_node_samples", node_rows(snap.nodes))
            self._emit_rows("slurm_job_samples", job_rows(snap.jobs))


def _derive(st: _Status) -> tuple[NodeState, str]:
    if st.conn_problem:
        return "unreachable", st.conn_problem
    problems = [p for p in (st.probe_problem, st.stale, st.record_problem, st.docker_problem)
                if p]
    if problems:
        return "degraded", "; ".join(problems)
    if st.awaiting_sample and st.health.state in ("unknown", "unreachable"):
        # Connected, first sample not in yet: keep the old state until it comes.
        return st.health.state, st.health.reason
    return "up", ""


def _prev_state(view: NodeView) -> NodeState:
    return view.health.state


async def _sleep_until_tick(clock: Callable[[], float], interval_s: float) -> None:
    now = clock()
    await asyncio.sleep((math.floor(now / interval_s) + 1) * interval_s - now)


# -- one-shot collection for `fleetdeck collect --once` ------------------------------------------
async def collect_once(
    nodes: Sequence[NodeLike],
    *,
    known_hosts: Path | str | None = None,
    timeout_s: float = 20.0,
    ssh: SshOptions | None = None,
    slurm_pools: Mapping[str, str] | None = None,
    disk_paths: Sequence[str] = ("/",),
    docker: bool = True,
    max_concurrent_connects: int = DEFAULT_CONNECT_CONCURRENCY,
    clock: Callable[[], float] = time.time,
) -> FleetView:
    """Contact every node once (probe, containers, Slurm pools) and return the fleet as seen.

    A node that does not answer within `timeout_s` is reported unreachable with the reason.
    """
    opts = ssh or SshOptions()
    if known_hosts is not None:
        opts = dataclasses.replace(opts, known_hosts=Path(known_hosts))
    limit = asyncio.Semaphore(max_concurrent_connects)
    transports = {n.name: make_transport(n, opts, connect_limit=limit) for n in nodes}
    try:
        views = await asyncio.gather(*(
            _once_node(n, transports[n.name], timeout_s, disk_paths, docker, clock)
            for n in nodes
        ))
        pools: dict[str, SlurmPoolView] = {}
        for pool, login in (slurm_pools or {}).items():
            pools[pool] = await _once_slurm(pool, login, transports.get(login), timeout_s, clock)
    finally:
        await asyncio.gather(*(t.close() for t in transports.values()), return_exceptions=True)
    return FleetView(ts=clock(), interval_s=0.0, nodes=freeze({v.name: v for v in views}),
                     slurm=freeze(pools), version=1)


async def _once_node(node: NodeLike, t: Transport, timeout_s: float, disk_paths: Iterable[str],
                     docker: bool, clock: Callable[[], float]) -> NodeView:
    base = NodeView(name=node.name, pool=node.pool, transport=node.transport,
                    labels=freeze(getattr(node, "labels", {}) or {}),
                    health=NodeHealth("unknown", "", clock()))
    try:
        async with asyncio.timeout(timeout_s):
            await t.connect()
            hello, rec, problem = await run_once(node.name, t, timeout_s,
                                                              tuple(disk_paths))
            view = dataclasses.replace(base, hello=hello, record=rec, last_seen=clock(),
                                       probe_mode=hello.mode if hello else None, connects=1)
            if docker and node.docker_socket:
                source = DockerSource(node.name, t, node.docker_socket, timeout_s=timeout_s)
                try:
                    ts = clock()
                    ctrs = await source.sample(ts)
                    view = dataclasses.replace(view, containers=tuple(ctrs), containers_ts=ts)
                except TransportError as e:
                    view = dataclasses.replace(view, docker_error=str(e))
                finally:
                    source.close()
    except TimeoutError:
        return dataclasses.replace(base, health=NodeHealth(
            "unreachable", f"node {node.name}: no answer within {timeout_s:g} s", clock()))
    except Disconnected as e:
        return dataclasses.replace(base, health=NodeHealth("unreachable", str(e), clock()))
    except TransportError as e:
        state: NodeState = "unreachable" if not t.connected else "degraded"
        return dataclasses.replace(base, health=NodeHealth(state, str(e), clock()))
    if rec is None:
        return dataclasses.replace(view, health=NodeHealth(
            "degraded", problem or "the probe sent no sample", clock()))
    reason = problem or ""
    return dataclasses.replace(view, health=NodeHealth("degraded" if reason else "up", reason,
                                                       clock()))


async def _once_slurm(pool: str, login: str, t: Transport | None, timeout_s: float,
                      clock: Callable[[], float]) -> SlurmPoolView:
    if t is None:
        return SlurmPoolView(pool, login, error=f"login node {login} is not a fleet node")
    ts = clock()
    try:
        async with asyncio.timeout(timeout_s):
            snap = await SlurmSource(pool, t, timeout_s=timeout_s).sample(ts)
    except TimeoutError:
        return SlurmPoolView(pool, login, error=f"no answer within {timeout_s:g} s")
    except TransportError as e:
        return SlurmPoolView(pool, login, error=str(e))
    return SlurmPoolView(pool, login, ts=ts, nodes=snap.nodes, jobs=snap.jobs)


__all__ = ["FleetCollector", "FleetView", "NodeView", "collect_once", "format_view"]
