"""The queued and holding (starting, running, preempted) jobs in memory, by id: what the
engine's reads answer from.

The store stays the truth: the runner replaces the whole set from the store on a placement
cycle after any commit changed the jobs table (`journal.jobs_writes`) and applies each row it
writes in between, so a read is never older than one cycle. Jobs that reach a terminal state
leave the set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from scheduler.job_match import JobMatch
from scheduler.journal import HOLDING, JobRow, jobs_writes
from scheduler.states import JobState

LIVE_STATES = frozenset((JobState.QUEUED, *HOLDING))


class LiveJobs:
    """Queued, starting, running and preempted jobs by id; `loaded` once filled from the store."""

    def __init__(self) -> None:
        self._rows: dict[int, JobRow] = {}
        self.loaded = False
        self._writes: int | None = None  # `jobs_writes()` when the set was read

    def replace(self, rows: Iterable[JobRow], writes: int | None = None) -> None:
        """The whole set, as just read from the store; `writes`: `journal.jobs_writes()`
        taken before that read."""
        self._rows = {r.id: r for r in rows if r.state in LIVE_STATES}
        self.loaded = True
        self._writes = writes

    def current(self) -> bool:
        """True while no commit has changed the jobs table since the set was read (so it is
        what the store holds: every change in between came with a commit)."""
        return self._writes is not None and self._writes == jobs_writes()

    def apply(self, rows: Iterable[object]) -> None:
        """Rows just written (anything not a `JobRow`, e.g. a refused change, is skipped)."""
        for r in rows:
            if not isinstance(r, JobRow):
                continue
            if r.state in LIVE_STATES:
                self._rows[r.id] = r
            else:
                self._rows.pop(r.id, None)

    def get(self, job_id: int) -> JobRow | None:
        return self._rows.get(job_id)

    def rows(self, states: Iterable[str] = LIVE_STATES) -> list[JobRow]:
        """Jobs in these states, by id."""
        wanted = frozenset(states)
        return sorted((r for r in self._rows.values() if r.state in wanted),
                      key=lambda r: r.id)

    def count(self, state: str) -> int:
        return sum(1 for r in self._rows.values() if r.state == state)

    def page(self, states: Sequence[str], *, user: str | None = None, limit: int | None = None,
             offset: int = 0, match: JobMatch | None = None) -> list[JobRow]:
        """Newest first, filtered like `journal.list_jobs`, `offset` rows skipped."""
        rows = [r for r in self.rows(states or LIVE_STATES)
                if (user is None or r.user == user) and (match is None or match.matches(r))]
        rows.reverse()
        return rows[offset:offset + limit] if limit else rows[offset:]

    def covers(self, states: Sequence[str]) -> bool:
        """True when every state asked for is one kept here (and the set is loaded)."""
        return self.loaded and bool(states) and set(states) <= LIVE_STATES
