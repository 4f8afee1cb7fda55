"""The engine's reads apart from the writer: the ticks' reader never holds up a client's, the
burst instances answered from a pass's rows are the store's, and `explain`'s store part read
in one call is what the separate reads answered (all on a real DuckDB store)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collectors.errors import NotFoundError
from collectors.store import Store
from collectors.store.audit import utc
from collectors.store.db import insert_rows
from console.engine.burst_store import explain_lines, instance_rows, instances_since
from console.engine.host import StoreReader, StoreWorker
from scheduler import journal
from scheduler.job_explain import job_record
from scheduler.jobspec import JobSpec
from scheduler.live import LiveJobs
from scheduler.policies.audit import BURST_ACTOR
from scheduler.policies.spend import period_starts

NOW = datetime(2026, 1, 16, 13, tzinfo=UTC).timestamp()  # mid-month, mid-day


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "fd.duckdb")
    yield s
    s.close()


def test_a_client_read_is_answered_while_a_tick_read_runs(tmp_path: Path) -> None:
    async def main() -> None:
        db = StoreWorker()
        await db.open(tmp_path / "fd.duckdb")
        reads, ticks = StoreReader(db), StoreReader(db, 1, name="fleetdeck-tick-read")
        await reads.open()
        await ticks.open()
        inside, release = threading.Event(), threading.Event()

        def slow_tick(s: Store) -> str:
            inside.set()
            release.wait()
            return threading.current_thread().name

        tick = asyncio.ensure_future(ticks.run(slow_tick))
        await asyncio.to_thread(inside.wait)
        for _ in range(4):  # more client reads than client threads: none waits on the tick
            assert await reads.run(lambda s: s.con.execute("SELECT 1").fetchone()) == (1,)
        assert not tick.done()
        release.set()
        assert (await tick).startswith("fleetdeck-tick-read")

        def close(_s: Store) -> None:
            reads.close()
            ticks.close()

        await db.run(close)
        await db.close()

    asyncio.run(main())


def test_todays_instances_from_a_months_rows_are_the_stores(store: Store) -> None:
    day, month = period_starts(NOW)["daily"], period_starts(NOW)["monthly"]

    def inst(iid: str, state: str, launched: float, ended: float | None) -> dict[str, object]:
        return {"instance_id": iid, "provider": "p", "offer": "o", "state": state,
                "launched_at": utc(launched), "cost": 1.0,
                "terminated_at": utc(ended) if ended is not None else None}

    store.append_rows("burst_instances", [
        inst("old-ended", "terminated", month - 5 * 86_400, month - 4 * 86_400),
        inst("old-running", "ready", month - 3 * 86_400, None),
        inst("month-ended", "terminated", month + 3600, day - 3600),
        inst("ended-today", "lost", day - 7200, day + 60),
        inst("launched-today", "terminated", day + 120, day + 3600),
        inst("provisioning", "provisioning", day + 600, None),
        inst("terminating", "terminating", month + 7200, None),
    ])
    month_rows = instance_rows(store, since=month)
    assert {r["instance_id"] for r in month_rows} >= {"month-ended", "old-running"}
    today = instances_since(month_rows, day)
    assert today == instance_rows(store, since=day)
    assert {r["instance_id"] for r in today} == {
        "old-running", "ended-today", "launched-today", "provisioning", "terminating"}


def test_explains_store_part_in_one_read(store: Store) -> None:
    spec = JobSpec.from_dict({"name": "train", "command": ["true"], "user": "ana", "gpus": 1})
    (job,) = journal.submit(store, spec, actor="ana", now=NOW)
    journal.transition(store, job, "starting", reason="placed", actor="scheduler", now=NOW + 1)
    rec = job_record(store, job)
    assert rec.row == journal.get(store, job)
    assert rec.events == journal.events(store, job)
    assert [e["to_state"] for e in rec.events] == ["queued", "starting"]
    assert rec.preemptions == journal.preemption_audit(store, job) == []
    with pytest.raises(NotFoundError):
        job_record(store, job + 1)

    def action(kind: str, target_kind: str, target: str, ts: float) -> dict[str, object]:
        return {"ts": utc(ts), "actor": BURST_ACTOR, "action": kind, "target_kind": target_kind,
                "target": target, "reason": f"{kind} reason", "evidence": "{}",
                "dry_run": False}

    with store.transaction() as con:
        insert_rows(con, "actions", [
            action("burst_refused", "job", str(job), NOW + 2),
            action("burst_refused", "job", str(job), NOW + 2),  # the same line once
            action("burst_provision", "instance", f"fd-{job}-1", NOW + 3),
            action("burst_provision", "instance", f"fd-{job}1-1", NOW + 4),  # another job's
            action("burst_refused", "job", str(job + 10), NOW + 5)])
    lines = explain_lines(store, job, ["waits for capacity"])
    assert lines == ["waits for capacity",
                     "2026-01-16 13:00:02 burst_refused " f"{job}: burst_refused reason",
                     "2026-01-16 13:00:03 burst_provision " f"fd-{job}-1: burst_provision reason"]


def test_whoamis_holding_jobs_from_memory_are_the_stores(store: Store) -> None:
    ids = []
    for user in ("ana", "ana", "bo", "ana"):
        spec = JobSpec.from_dict({"name": "j", "command": ["true"], "user": user, "gpus": 2})
        ids += journal.submit(store, spec, actor=user, now=NOW)
    live = LiveJobs()
    live.replace(journal.list_jobs(store, states=("queued", *journal.HOLDING)))
    for job_id, to in ((ids[0], "starting"), (ids[2], "starting"), (ids[3], "starting"),
                       (ids[3], "running"), (ids[3], "preempted")):
        live.apply([journal.transition(store, job_id, to, reason="t", actor="t", now=NOW)])
    for user in ("ana", "bo", "cy"):
        want = journal.list_jobs(store, states=journal.HOLDING, user=user)
        assert sorted(live.page(journal.HOLDING, user=user), key=lambda r: r.id) == want


def test_jobs_by_key_are_sorted_and_paged_as_sql_would(store: Store) -> None:
    ids = []
    for i in range(6):
        spec = JobSpec.from_dict({"name": f"j{i}", "command": ["true"], "user": "ana"})
        ids += journal.submit(store, spec, actor="ana", now=NOW + i)
    journal.transition(store, ids[1], "starting", reason="placed", actor="t", now=NOW + 9)
    ask = [ids[4], ids[0], ids[5], ids[1], ids[3] + 100]
    sel = f"SELECT id FROM jobs WHERE id IN ({', '.join('?' for _ in ask)})"
    for newest, limit, offset in ((False, None, 0), (True, None, 0), (True, 2, 1), (False, 3, 2),
                                  (False, None, 3)):
        page = (f" LIMIT {limit}" if limit else "") + (f" OFFSET {offset}" if offset else "")
        want = [r[0] for r in store.con.execute(
            sel + (" ORDER BY id DESC" if newest else " ORDER BY id") + page, ask).fetchall()]
        got = journal.list_jobs(store, ids=ask, newest_first=newest, limit=limit, offset=offset)
        assert [r.id for r in got] == want, (newest, limit, offset)
    assert [r.id for r in journal.list_jobs(store, ids=ask, states=("queued",))] == sorted(
        [ids[0], ids[4], ids[5]])
    events = journal.events(store, ids[1])
    assert [e["to_state"] for e in events] == ["queued", "starting"]
    assert list(events[0]) == ["ts", "from_state", "to_state", "reason", "actor"]
