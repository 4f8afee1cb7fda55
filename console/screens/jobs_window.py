"""What the Jobs screen's "all" view asks between full pages.

A full page (the newest 2,000 jobs) is read from the store; most polls need not: finished jobs
do not change. So most polls ask only for the live jobs (queued and holding: the engine keeps
them in memory) plus, by id (the store's key), the jobs that left the live set since the last
poll, any newer ids the live set skipped (a job born and ended in between) and the next AHEAD
ids after the newest known one (short jobs submitted and ended since the last poll, newer
than every live job). A full page comes every FULL_EVERY polls, on Ctrl+R and when that list
of ids would be long.
Pure: rows in, ids and rows out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from console.engine.api.replies import JobInfo
from scheduler.states import HOLDING, JobState

LIVE_STATES: tuple[JobState, ...] = (JobState.QUEUED, *HOLDING)
FULL_EVERY = 10  # polls (20 s at 2 s)
MAX_IDS = 500  # more ids than this to ask by key: ask for a full page instead
AHEAD = 64  # ids after the newest known one, asked by key on every live-only poll

Job = JobInfo


def live_ids(jobs: Iterable[Job]) -> set[int]:
    return {j.id for j in jobs if j.state in LIVE_STATES}


def ids_to_ask(shown: Mapping[str, Job], live: Sequence[Job]) -> list[int] | None:
    """Ids to read by key after a live-only poll: the jobs shown live that are no longer
    live (ended, or filtered out), and ids newer than every shown job that the live set skips.
    None: too many, ask for a full page."""
    now_live = {j.id for j in live}
    gone = live_ids(shown.values()) - now_live
    top = max((int(k) for k in shown), default=0)
    newest = max(now_live, default=0)
    born = [i for i in range(top + 1, newest) if i not in now_live] if top else []
    ask = sorted(gone | set(born))
    return ask if len(ask) <= MAX_IDS else None


def ids_ahead(shown: Mapping[str, Job], live: Sequence[Job]) -> list[int]:
    """The AHEAD ids after the newest job shown or live: a job submitted and ended between
    two polls, newer than every live job, shows at the next poll, not the next full page
    (ids a store never gave are simply not found)."""
    newest = max((*(int(k) for k in shown), *(j.id for j in live)), default=0)
    return list(range(newest + 1, newest + 1 + AHEAD))


def merge(shown: Mapping[str, Job], live: Sequence[Job], asked: Sequence[int],
          found: Sequence[Job], page: int) -> list[Job]:
    """The jobs after a live-only poll, newest first, at most `page`: the shown jobs updated
    with the live rows and the rows read by id (an id asked and not found is dropped: it no
    longer matches the filter)."""
    out = {int(k): j for k, j in shown.items()}
    for i in asked:
        out.pop(i, None)
    for j in (*live, *found):
        out[j.id] = j
    return [out[i] for i in sorted(out, reverse=True)[:page]]
