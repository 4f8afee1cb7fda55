"""What a service sees of the engine that hosts it.

Services (`svc_*.py`, `services.py`, `job_reads.py`, `wiring.py`) take a `Host`, not
`console.engine.host.Engine`: the engine imports them, so they name only what they use and
`Engine` satisfies `Host` structurally (mypy checks it where the engine is passed in).
Members a service only reads are properties; the ones a service sets are attributes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # types only: importing this module costs nothing
    from collectors.store import Store
    from console.config import Config, Loaded
    from console.engine.faults import Faults
    from console.engine.server import Handler, StreamHandler
    from console.engine.service_base import Service
    from scheduler.preempting import StoreRunner
    from scheduler.runner import JobRunner


class PolicyReads(Protocol):
    """What other services ask the policy service (`svc_policies.PolicyService`)."""

    def idle_job_ids(self) -> set[int]: ...

    def burst_summary(self) -> dict[str, Any]: ...

    def explain_read(self, job_id: int) -> Callable[[Store], dict[str, Any]]:
        """Extra `explain` lines of a job, as a read to run on a reader thread."""


class NotifyCounts(Protocol):
    """What the fleet reads of the notify service (`svc_notify.NotifyService`)."""

    @property
    def failed_deliveries(self) -> int: ...


class Host(Protocol):
    """The engine as its services use it."""

    loaded: Loaded  # replaced by `config reload`, with `config`
    config: Config
    runner: JobRunner | None  # set by the job service
    policies: PolicyReads | None  # set by the policy service
    notify: NotifyCounts | None  # set by the notify service

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def fleet_id(self) -> str: ...

    @property
    def faults(self) -> Faults: ...

    @property
    def db(self) -> StoreRunner:
        """The store's write connection, on its one thread."""

    @property
    def reads(self) -> StoreRunner:
        """Read-only store questions of clients, apart from the writer."""

    @property
    def tick_reads(self) -> StoreRunner:
        """Read-only store questions of the engine's periodic work (policy ticks), on their
        own thread so that a client's read never queues behind one."""

    @property
    def services(self) -> list[Service]: ...

    @property
    def handlers(self) -> dict[str, Handler]: ...

    @property
    def streams(self) -> dict[str, StreamHandler]: ...

    @property
    def status_parts(self) -> dict[str, Callable[[], Any]]:
        """Extra `status` keys: name -> async () -> value."""

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]: ...

    def on_close(self, fn: Callable[[], Any]) -> None: ...
