"""Job reads for the engine's `jobs` and `job` methods: a checked query and its answer from
the runner's in-memory live set (queued and holding jobs) or the store's reader threads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from console.engine.protocol import RequestError
from scheduler import journal
from scheduler.journal import JobRow
from scheduler.states import JobState

if TYPE_CHECKING:
    from console.engine.host import Engine
    from scheduler.runner import JobRunner


@dataclass(frozen=True, slots=True)
class JobQuery:
    """A `jobs` request: filters and a page."""

    states: tuple[JobState, ...] = ()
    user: str | None = None
    ids: tuple[int, ...] | None = None
    limit: int | None = None
    offset: int = 0

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> JobQuery:
        """From request params; a bad value is a `bad_request` naming the key."""
        def count(key: str, most: int) -> int | None:
            raw = params.get(key)
            if raw is None:
                return None
            if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= most:
                raise RequestError("bad_request", f"jobs: {key}: expected a whole number "
                                   f"0..{most}, got {raw!r}")
            return raw

        ids = params.get("ids")
        if ids is not None and (not isinstance(ids, list | tuple) or len(ids) > _MAX_IDS or any(
                isinstance(i, bool) or not isinstance(i, int) for i in ids)):
            raise RequestError("bad_request", f"jobs: ids: expected a list of at most "
                               f"{_MAX_IDS} job ids, got {str(ids)[:60]}")
        states = params.get("states") or ()
        if not isinstance(states, list | tuple) or any(s not in journal.STATES for s in states):
            raise RequestError("bad_request", "jobs: states: expected a list of "
                               f"{', '.join(journal.STATES)}, got {str(states)[:60]}")
        user = params.get("user")
        return cls(states=tuple(JobState(s) for s in states), user=str(user) if user else None,
                   ids=tuple(ids) if ids is not None else None,
                   limit=count("limit", _MAX_PAGE) or None, offset=count("offset", 10**9) or 0)


_MAX_IDS = 1000
_MAX_PAGE = 1_000_000


async def find_jobs(engine: Engine, runner: JobRunner, q: JobQuery) -> list[JobRow]:
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
                       and (q.user is None or r.user == q.user)),
                      key=lambda r: -r.id)
        return rows[q.offset:q.offset + q.limit] if q.limit else rows[q.offset:]
    if live.covers(q.states):
        return live.page(q.states, user=q.user, limit=q.limit, offset=q.offset)
    return await engine.reads.run(lambda s: journal.list_jobs(
        s, states=q.states, user=q.user, limit=q.limit, offset=q.offset, newest_first=True))
