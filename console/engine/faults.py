"""Faults said once: a failing store, an unreachable Docker socket, a failing provider, repeated
connection errors.

A service reports `fail(kind, what, reason)` on every failure and `ok(kind)` when it works again.
The log gets one line when a fault begins, then at most one a minute with the count since
(never a traceback per failure), and one when it ends. `status` and the console header show
the open faults ("store: writes failing since 06:10:03 UTC (no space left on device, 12 times)").
`QuietFaults` is the logging filter that keeps tracebacks of known faults out of the log.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from collectors.health import FleetView
from collectors.store import Store
from collectors.store.db import StoreWriteError

log = logging.getLogger(__name__)
SAY_EVERY_S = 60.0
MIN_FREE_BYTES = 8 * 2**20  # room a flush needs before the store counts as writable again


@dataclass(slots=True)
class Fault:
    """One open fault: what fails, why, since when, how often."""

    kind: str  # store | docker:<node> | provider:<name> | connect:<node>
    what: str  # "writes failing", "socket unreachable"
    reason: str
    since_s: float
    count: int = 1
    said_s: float = 0.0
    unsaid: int = 0  # failures since the last log line

    def headline(self) -> str:
        """The console header's words: "store: writes failing since 06:10:03 UTC"."""
        return f"{self.kind}: {self.what} since " + datetime.fromtimestamp(
            self.since_s, UTC).strftime("%H:%M:%S UTC")

    def line(self) -> str:
        since = datetime.fromtimestamp(self.since_s, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        times = "once" if self.count == 1 else f"{self.count} times"
        return f"{self.kind}: {self.what} since {since} ({self.reason}, {times})"


class Faults:
    """The engine's open faults, logged once a minute at most per kind."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.open: dict[str, Fault] = {}

    def fail(self, kind: str, what: str, reason: str) -> Fault:
        now = self.clock()
        fault = self.open.get(kind)
        if fault is None:
            fault = self.open[kind] = Fault(kind, what, reason, now, said_s=now)
            log.error("%s", fault.line())
            return fault
        fault.count += 1
        fault.unsaid += 1
        fault.reason = reason
        if now - fault.said_s >= SAY_EVERY_S:
            log.error("%s; %d more in the last %.0fs", fault.line(), fault.unsaid,
                      now - fault.said_s)
            fault.said_s, fault.unsaid = now, 0
        return fault

    def ok(self, kind: str, *, note: str = "") -> None:
        fault = self.open.pop(kind, None)
        if fault is not None:
            log.warning("%s: working again after %.0fs (%d failures)%s", kind,
                        self.clock() - fault.since_s, fault.count, f"; {note}" if note else "")

    def failing(self, kind: str) -> bool:
        return kind in self.open

    def lines(self) -> list[str]:
        return [f.line() for f in self.open.values()]

    def headlines(self) -> list[str]:
        """For the console header; unreachable nodes are counted there already."""
        return [f.headline() for f in self.open.values() if not f.kind.startswith("connect:")]


def node_faults(faults: Faults, view: FleetView) -> None:
    """Docker sockets that stopped answering and unreachable nodes, as engine faults (called
    on every telemetry flush: the count is of flushes that saw the fault)."""
    for name, v in view.nodes.items():
        if v.docker_error and v.containers is not None:  # it worked before
            faults.fail(f"docker:{name}", "socket unreachable", v.docker_error)
        else:
            faults.ok(f"docker:{name}")
        if v.health.state == "unreachable":
            faults.fail(f"connect:{name}", "unreachable", v.health.reason or "no answer")
        else:
            faults.ok(f"connect:{name}")


class QuietFaults(logging.Filter):
    """Drops log records whose exception is a fault `Faults` already reports (no traceback
    per failed write); every other record passes unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, StoreWriteError)


async def watch_store(run: Callable[[Callable[[Store], None]], Awaitable[None]], faults: Faults,
                      *, every_s: float = 2.0) -> None:
    """While store writes fail, check every `every_s`: room on the store's disk again (a
    tiny write alone may fit in slack and flap) and a write that commits end the fault."""
    while True:
        await asyncio.sleep(every_s)
        if not faults.failing("store"):
            continue
        try:
            await run(_probe_write)
        except StoreWriteError:
            continue
        faults.ok("store")


def _probe_write(store: Store) -> None:
    disk = os.statvfs(store.path.parent)
    if disk.f_bavail * disk.f_frsize < MIN_FREE_BYTES:
        raise StoreWriteError(store.path, "no space left on device")
    store.con.execute("INSERT OR REPLACE INTO meta VALUES ('write_probe', ?)",
                      [datetime.now(UTC).isoformat()])
