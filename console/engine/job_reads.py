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


async def find_jobs(engine: Host, runner: JobRunner, q: JobFilter) -> list[JobRow]:
    """Answer a job query from the runner's live set where it covers it, else the store."""
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
    return await engine.reads.run(lambda s: journal.list_jobs(
        s, states=q.states, user=q.user, limit=q.limit, offset=q.offset, newest_first=True,
        match=q.match))
