"""LiveJobs: the engine's in-memory queued and active jobs, answered like the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.store import Store
from scheduler import journal
from scheduler.jobspec import JobSpec
from scheduler.live import LiveJobs

T0 = 1_700_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "fd.duckdb")
    yield s
    s.close()


def submit(store: Store, n: int, user: str = "alice") -> list[int]:
    ids: list[int] = []
    for i in range(n):
        spec = JobSpec.from_dict({"name": f"j{i}", "command": ["true"], "user": user})
        ids += journal.submit(store, spec, actor=user, now=T0 + i)
    return ids


def test_pages_match_the_store_and_writes_keep_it_current(store: Store) -> None:
    submit(store, 4, "alice")
    submit(store, 3, "bob")
    live = LiveJobs()
    assert not live.covers(["queued"])
    live.replace(journal.list_jobs(store, states=("queued", *journal.ACTIVE)))
    assert live.covers(["queued", "running"]) and not live.covers(["succeeded"])
    for kw in ({"limit": 3}, {"limit": 3, "offset": 3}, {"user": "bob"}, {"offset": 5}):
        want = journal.list_jobs(store, states=("queued",), newest_first=True, **kw)
        assert live.page(["queued"], **kw) == want, kw
    started = journal.transition(store, 2, "starting", reason="placed", actor="t", now=T0 + 9)
    stopped = journal.transition(store, 3, "stopped", reason="by alice", actor="t", now=T0 + 9)
    live.apply([started, stopped, ValueError("a refused change is skipped")])
    assert live.get(2) == started and live.get(3) is None
    assert [r.id for r in live.rows(journal.ACTIVE)] == [2]
    assert live.count("queued") == 5
