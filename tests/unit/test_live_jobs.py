"""LiveJobs: the engine's in-memory queued and active jobs, answered like the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.store import Store
from scheduler import journal
from scheduler.job_match import engine_part, parse_match
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


def test_a_text_match_answers_alike_from_memory_and_the_store(store: Store) -> None:
    submit(store, 4, "alice")
    submit(store, 3, "bob")
    live = LiveJobs()
    live.replace(journal.list_jobs(store, states=("queued",)))
    for text in ("bob", "user:ali j2", "j", "STATE:queue", "name:nothing", "id:5"):
        match = parse_match(text)
        want = journal.list_jobs(store, states=("queued",), newest_first=True, match=match)
        assert live.page(["queued"], match=match) == want, text
        assert [r.id for r in want] == [r.id for r in live.page(["queued"])
                                        if match.matches(r)], text
    assert [r.name for r in live.page(["queued"], match=parse_match("user:bob j1"))] == ["j1"]
    with pytest.raises(ValueError, match="unknown field 'gpus'"):
        parse_match("gpus:4")
    assert engine_part("gpus:4 Ann node:gpu-a01") == "ann node:gpu-a01"


def test_current_until_a_commit_changes_the_jobs_table(store: Store) -> None:
    """The placement cycle reads the store again only when `current` is false."""
    submit(store, 2)
    live = LiveJobs()
    assert not live.current()  # never read
    at = journal.jobs_writes()
    live.replace(journal.list_jobs(store, states=("queued", *journal.HOLDING)), at)
    assert live.current()
    assert [r.id for r in live.rows()] == [r.id for r in journal.list_jobs(store)]
    journal.set_reasons(store, {live.rows()[0].id: "waiting"})
    assert not live.current()
    live.replace(journal.list_jobs(store, states=("queued",)))  # read without its count
    assert not live.current()
