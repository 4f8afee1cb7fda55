"""Job transitions from many tasks written together, in few commits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from collectors.store import Store
from scheduler import journal
from scheduler.journal import JobRow
from scheduler.live import LiveJobs
from scheduler.preempting import StoreRunner


class GroupCommit:
    """Job transitions from many tasks written together: while one batch commits on the store
    thread, the next gathers, so N concurrent transitions cost a few commits, not N."""

    def __init__(self, db: StoreRunner, clock: Callable[[], float],
                 live: LiveJobs | None = None) -> None:
        self.db = db
        self.clock = clock
        self.live = live
        self._queue: list[tuple[journal.Change, asyncio.Future[JobRow]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def __call__(self, change: journal.Change) -> JobRow:
        """Apply one change (raises its `TransitionError`/`NotFoundError`)."""
        fut: asyncio.Future[JobRow] = asyncio.get_running_loop().create_future()
        self._queue.append((change, fut))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="job-commits")
        return await fut

    def _write(self, changes: list[journal.Change]) -> Callable[[Store], list[Any]]:
        return lambda s: journal.transition_many(s, changes, now=self.clock())

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                results = await self.db.run(self._write([c for c, _ in batch]))
            except Exception as e:  # handed to every waiter
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            if self.live is not None:
                self.live.apply(results)
            for (_, fut), r in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(r, Exception):
                    fut.set_exception(r)
                else:
                    fut.set_result(r)
