"""Events in a real DuckDB store: job changes write their events in the same transaction,
the outbox routes each event once and keeps delivery state across a reopen."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.errors import InputError
from collectors.events import Event, EventName, is_pattern, matches
from collectors.store import Store, outbox
from collectors.store.outbox import Recipient
from scheduler import journal
from scheduler.jobspec import JobSpec


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "s.duckdb")
    yield s  # type: ignore[misc]
    s.close()


def spec(**kw: object) -> JobSpec:
    data = {"name": "train", "command": ["python", "train.py"], "user": "alice",
            "team": "vision", "gpus": 1, **kw}
    return JobSpec.from_mapping(data, "test")


def names(store: Store) -> list[str]:
    return [str(e.name) for e in outbox.since(store, 0)]


def test_job_lifecycle_writes_stable_event_names(store: Store) -> None:
    (jid,) = journal.submit(store, spec(retries=1), actor="alice", now=1.0)
    journal.transition(store, jid, "starting", reason="placed on n1", actor="scheduler",
                       now=2.0, node="n1", gpu_indices=[0])
    journal.transition(store, jid, "running", reason="started on n1", actor="scheduler",
                       now=3.0)
    journal.transition(store, jid, "lost", reason="node gone", actor="scheduler", now=4.0)
    journal.transition(store, jid, "queued", reason="requeued after loss", actor="scheduler",
                       now=5.0, node=None)
    journal.transition(store, jid, "starting", reason="placed", actor="scheduler", now=6.0,
                       node="n2", gpu_indices=[1])
    journal.transition(store, jid, "failed", reason="exited with code 3", actor="scheduler",
                       now=7.0, exit_code=3)
    assert names(store) == ["job.started", "job.lost", "job.requeued", "job.failed"]
    failed = outbox.since(store, 0)[-1]
    assert failed.job_id == jid and failed.owner == "alice" and failed.team == "vision"
    assert failed.node == "n2" and failed.evidence["exit_code"] == 3
    assert f"fleetdeck logs {jid}" in failed.actions
    assert failed.seq > 0 and len(failed.key) == 32


def test_change_events_commit_with_the_change_or_not_at_all(store: Store) -> None:
    (jid,) = journal.submit(store, spec(), actor="alice", now=1.0)
    extra = Event(EventName.IDLE_STOPPED, 2.0, f"job {jid} stopped: idle", job_id=jid)
    journal.transition(store, jid, "stopped", reason="idle", actor="policy:idle", now=2.0,
                       events=[extra])
    assert names(store) == ["idle.stopped"]  # a stop itself is no event; the policy's is
    with pytest.raises(journal.TransitionError):  # refused change: its event is not written
        journal.transition(store, jid, "running", reason="x", actor="scheduler", now=3.0,
                           events=[Event(EventName.JOB_PREEMPTED, 3.0, "no", job_id=jid)])
    assert names(store) == ["idle.stopped"]


def test_opt_in_travels_from_the_spec_to_the_event(store: Store) -> None:
    (jid,) = journal.submit(store, spec(notify=["job.failed"]), actor="alice", now=1.0)
    journal.transition(store, jid, "starting", reason="p", actor="scheduler", now=2.0,
                       node="n1")
    journal.transition(store, jid, "failed", reason="boom", actor="scheduler", now=3.0)
    assert outbox.since(store, 0)[-1].opt_in == ("job.failed",)
    with pytest.raises(InputError, match="notify"):
        spec(notify=["idle.warned"])


def test_routing_is_once_and_delivery_state_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.duckdb"
    to = Recipient("mail", "alice@example.org")
    with Store.open(path) as s:
        outbox.emit(s, [Event(EventName.NODE_DRAINED, 10.0, "node n1 drained", node="n1"),
                        Event(EventName.NODE_RECOVERED, 11.0, "node n1 recovered",
                              node="n1")])
        evs = outbox.since(s, outbox.routed_cursor(s))
        outbox.add_deliveries(s, [(e.seq, to, e.ts) for e in evs], cursor=evs[-1].seq)
        assert outbox.since(s, outbox.routed_cursor(s)) == []
        due = outbox.due(s, 20.0)
        assert [p.event.name for p in due] == [EventName.NODE_DRAINED, EventName.NODE_RECOVERED]
        outbox.claim(s, to, [due[0].event.seq], "k1", retry_at=30.0)
        outbox.mark_failed_attempt(s, to, "k1", "connection refused", retry_at=40.0)
    with Store.open(path) as s:  # a restart keeps what was claimed, tried and routed
        assert [p.event.seq for p in outbox.due(s, 35.0)] == [due[1].event.seq]
        again = outbox.due(s, 45.0)
        assert again[0].message_key == "k1" and again[0].attempts == 1
        outbox.mark_sent(s, to, "k1", 46.0)
        assert outbox.sent_since(s, 0.0) == {to: 1}
        assert outbox.prune_sent(s, 46.0) == 0 and outbox.prune_sent(s, 47.0) == 1
        outbox.claim(s, to, [due[1].event.seq], "k2", retry_at=50.0)
        outbox.mark_failed_attempt(s, to, "k2", "gave up", retry_at=None)
        assert [f["name"] for f in outbox.failures(s)] == ["node.recovered"]
        assert outbox.due(s, 1e9) == []


def test_route_patterns() -> None:
    assert matches("job.failed", ("job.",)) and matches("idle.warned", ("*",))
    assert not matches("job.failed", ("job.succeeded", "idle."))
    assert is_pattern("job.") and is_pattern("budget.threshold")
    assert not is_pattern("job") and not is_pattern("jobs.") and not is_pattern("job.done")


def test_events_command_reads_the_store_without_an_engine(tmp_path: Path) -> None:
    from tests.helpers import cli, one_line_error, write_config

    path = tmp_path / "c.duckdb"
    with Store.open(path) as s:
        outbox.emit(s, [Event(EventName.NODE_UNREACHABLE, 5.0, "node n1 is unreachable",
                              reason="ssh: timeout", node="n1")])
    config = write_config(tmp_path / "c.toml", path)
    res = cli("--config", str(config), "events", "--format", "json")
    assert res.returncode == 0, res.stderr
    [line] = res.stdout.splitlines()
    assert '"name":"node.unreachable"' in line and '"node":"n1"' in line
    res = cli("--config", str(config), "events")
    assert "node.unreachable" in res.stdout and "(ssh: timeout)" in res.stdout
    bad = cli("--config", str(config), "events", "--limit", "-1")
    assert bad.returncode == 2 and "--limit" in one_line_error(bad)
