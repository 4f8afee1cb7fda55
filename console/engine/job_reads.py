"""Job reads for the engine's `jobs` and `job` methods: a checked query and its answer from
the runner's in-memory live set (queued and holding jobs) or the store's reader threads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from scheduler import journal
from scheduler.job_match import JobMatch
from scheduler.journal import JobRow
from scheduler.states import JobState

if TYPE_CHECKING:
    from console.engine.hosting import Host
    from scheduler.runner import JobRunner


@dataclass(frozen=True, slots=True)
class JobFilter:
    """A `jobs` request: filters and a page."""

    states: tuple[JobState, ...] = ()
    user: str | None = None
    ids: tuple[int, ...] | None = None
    limit: int | None = None
    offset: int = 0
    match: JobMatch | None = None


class StorePages:
    """Pages the store answered, kept while no commit changed the jobs table since the read
    began (`journal.jobs_writes`): consoles poll the same first page every few seconds, and
    ended jobs change only when a job does. Shared rows are read-only."""

    KEEP = 32  # distinct queries (filters and page) kept between two job commits

    def __init__(self) -> None:
        self._at = -1
        self._pages: dict[JobFilter, list[JobRow]] = {}

    def get(self, q: JobFilter, at: int) -> list[JobRow] | None:
        if at != self._at:
            self._pages.clear()
            self._at = at
        return self._pages.get(q)

    def put(self, q: JobFilter, at: int, rows: list[JobRow]) -> None:
        if at == self._at and (q in self._pages or len(self._pages) < self.KEEP):
            self._pages[q] = rows


async def find_jobs(engine: Host, runner: JobRunner, q: JobFilter,
                    pages: StorePages | None = None) -> list[JobRow]:
    """Answer a job query from the runner's live set where it covers it, else the store
    (through `pages` when given)."""
    live = runner.live
    if q.ids is not None:
        found = {i: r for i in q.ids if (r := live.get(i)) is not None}
        missing = [i for i in q.ids if i not in found]
        if missing:
            for r in await engine.reads.run(lambda s: journal.list_jobs(s, ids=missing)):
                found[r.id] = r
        rows = sorted((r for r in found.values()
                       if (not q.states or r.state in q.states)
                       and (q.user is None or r.user == q.user)
                       and (q.match is None or q.match.matches(r))),
                      key=lambda r: -r.id)
        return rows[q.offset:q.offset + q.limit] if q.limit else rows[q.offset:]
    if live.covers(q.states):
        return live.page(q.states, user=q.user, limit=q.limit, offset=q.offset, match=q.match)
    at = journal.jobs_writes()  # before the read: a commit during it makes the page old
    hit = pages.get(q, at) if pages is not None else None
    if hit is not None:
        return hit
    rows = await engine.reads.run(lambda s: journal.list_jobs(
        s, states=q.states, user=q.user, limit=q.limit, offset=q.offset, newest_first=True,
        match=q.match))
    if pages is not None:
        pages.put(q, at, rows)
    return rows
