"""Jobs in a real DuckDB store: submit, transitions with events and audit rows, reasons."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.store import Store
from collectors.store.audit import AuditEntry
from scheduler import journal
from scheduler.jobspec import JobSpec


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "s.duckdb")
    yield s  # type: ignore[misc]
    s.close()


def spec(**kw: object) -> JobSpec:
    data = {"name": "train", "command": ["python", "train.py"], "user": "alice",
            "project": "vision", "gpus": 2, **kw}
    return JobSpec.from_mapping(data, "test")


def test_submit_persists_with_event_and_audit(store: Store) -> None:
    ids = journal.submit(store, spec(), actor="alice", now=1000.0)
    assert len(ids) == 1
    job = journal.get(store, ids[0])
    assert (job.state, job.user, job.gpu_count, job.gpu_milli) == ("queued", "alice", 2, 1000)
    assert [e["to_state"] for e in journal.events(store, ids[0])] == ["queued"]
    audit = store.con.execute("SELECT actor, action, target FROM actions").fetchall()
    assert audit == [("alice", "submit", str(ids[0]))]


def test_array_makes_one_row_per_task_with_index(store: Store) -> None:
    ids = journal.submit(store, spec(array=500, command=["run", "${FLEETDECK_ARRAY_INDEX}"],
                                     gpus=0.25), actor="bob", now=1.0)
    assert len(ids) == 500 and len(set(ids)) == 500
    rows = journal.list_jobs(store, states=("queued",))
    assert len(rows) == 500
    assert rows[7].spec.command == ("run", "7")
    assert rows[7].array_parent == ids[0] and rows[7].array_index == 7
    assert rows[7].gpu_milli == 250
    # one audit row for the whole submission
    assert store.con.execute("SELECT count(*) FROM actions").fetchall()[0][0] == 1


def test_transitions_follow_the_lifecycle(store: Store) -> None:
    (jid,) = journal.submit(store, spec(), actor="alice", now=1.0)
    journal.transition(store, jid, "starting", reason="placed on n1", actor="scheduler",
                       now=2.0, node="n1", gpu_indices=[0, 1])
    job = journal.transition(store, jid, "running", reason="container up", actor="scheduler",
                             now=3.0, external_id="abc")
    assert job.node == "n1" and job.gpu_indices == (0, 1) and job.external_id == "abc"
    job = journal.transition(store, jid, "stopped", reason="stopped by alice", actor="alice",
                             now=4.0, audit=AuditEntry("alice", "stop", "job", str(jid), "x"))
    assert job.ended_at is not None
    with pytest.raises(journal.TransitionError, match="is stopped; cannot become running"):
        journal.transition(store, jid, "running", reason="x", actor="x", now=5.0)
    states = [e["to_state"] for e in journal.events(store, jid)]
    assert states == ["queued", "starting", "running", "stopped"]


def test_pending_reasons_only_touch_queued_jobs(store: Store) -> None:
    a, = journal.submit(store, spec(), actor="alice", now=1.0)
    b, = journal.submit(store, spec(), actor="alice", now=1.0)
    journal.transition(store, b, "starting", reason="placed", actor="s", now=2.0)
    journal.set_reasons(store, {a: "waiting: needs 2 GPUs", b: "should not apply"})
    assert journal.get(store, a).reason == "waiting: needs 2 GPUs"
    assert journal.get(store, b).reason == "placed"


def test_newest_first_pages_match_a_full_sort_across_windows(store: Store) -> None:
    """Newest-first pages are searched in widening windows of the newest ids; every page,
    filtered or not, must equal the plain sort of the whole table, also when the matching
    rows are rare and old (the window widens until it holds the page, or covers all)."""
    users = ["alice"] * 3 + ["bob"]
    for i in range(1200):
        journal.submit(store, spec(user=users[i % 4], name=f"j{i}"), actor="x", now=float(i))
    # bob has every 4th job; carol only three, with ids below all others
    for _ in range(3):
        journal.submit(store, spec(user="carol"), actor="x", now=0.5)
    store.con.execute("UPDATE jobs SET id = -id WHERE user = 'carol'")  # ids below all others
    everyone = journal.list_jobs(store)
    for user in (None, "bob", "carol", "nobody"):
        want = sorted((r.id for r in everyone if user is None or r.user == user), reverse=True)
        for limit, offset in ((50, 0), (50, 300), (7, 290), (500, 0), (50, 1190)):
            got = [r.id for r in journal.list_jobs(store, user=user, newest_first=True,
                                                   limit=limit, offset=offset)]
            assert got == want[offset:offset + limit], (user, limit, offset)


def test_jobs_writes_grows_with_every_jobs_commit(store: Store) -> None:
    """The engine's job page cache keys on `jobs_writes()`: submit, transitions and
    reasons each move it once they committed."""
    before = journal.jobs_writes()
    (jid,) = journal.submit(store, spec(), actor="alice", now=1.0)
    after_submit = journal.jobs_writes()
    journal.set_reasons(store, {jid: "waiting: needs 2 GPUs"})
    after_reasons = journal.jobs_writes()
    journal.transition(store, jid, "stopped", reason="x", actor="alice", now=2.0)
    assert before < after_submit < after_reasons < journal.jobs_writes()
