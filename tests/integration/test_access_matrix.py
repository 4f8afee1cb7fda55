"""Authorization: every method of the table x every role (and no role), read-only sessions,
ownership, and the audit rows refusals leave. One real engine (DuckDB store, no collection)
driven in-process through its control server, as peers with the uids and names below."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from console.config import load
from console.engine.access import Caller, Peer, role_of
from console.engine.api import replies as rp
from console.engine.api import requests as rq
from console.engine.api.methods import BY_NAME, TABLE, Role, conforms
from console.engine.client import EngineClient
from console.engine.host import Engine
from console.engine.protocol import ErrorCode, encode
from tests.helpers import write_config

OWNER_JOB_USER = "mia"
PEERS = {
    "admin": Peer(uid=61001, gid=61001, pid=1, user="ada", groups=frozenset({"ada"})),
    "operator": Peer(uid=61002, gid=61002, pid=1, user="olga", groups=frozenset({"ops"})),
    "member": Peer(uid=61003, gid=61003, pid=1, user="mia", groups=frozenset({"mia"})),
    "other_member": Peer(uid=61004, gid=61004, pid=1, user="max", groups=frozenset({"max"})),
    "viewer": Peer(uid=61005, gid=61005, pid=1, user="vic", groups=frozenset({"vic"})),
    "none": Peer(uid=61006, gid=61006, pid=1, user="mallory", groups=frozenset()),
}
ACCESS = """
[access]
admins = ["ada"]
operators = ["@ops"]
members = ["mia", "max"]
viewers = ["vic"]
"""
DENIED = {ErrorCode.FORBIDDEN.value, ErrorCode.UNAUTHORIZED.value, ErrorCode.READONLY.value}


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    cfg = write_config(tmp_path / "config.toml", tmp_path / "store.duckdb",
                       "[engine]\ncollect = false\nschedule = false\n" + ACCESS)
    eng = Engine(load(str(cfg)))
    await eng.start()
    try:
        yield eng
    finally:
        eng.request_stop()
        await eng.wait_stopped()


async def ask(eng: Engine, who: str, method: str, readonly: bool = False,
              **params: Any) -> dict[str, Any]:
    """The final message of one request (events dropped)."""
    peer = PEERS[who]
    caller = Caller(uid=peer.uid, pid=peer.pid, user=peer.user, readonly=readonly)
    last: dict[str, Any] = {}
    async for msg in eng.server.handle(peer, caller, method, params):
        last = msg
    if "result" in last:  # as a client reads it; the typed reply stays under "reply"
        last = {**last, "reply": last["result"], "result": json.loads(encode(last["result"]))}
    return last


def code(msg: dict[str, Any]) -> str | None:
    err = msg.get("error")
    return str(err["code"]) if err else None


def params_for(method: str, jobs: dict[str, int], tmp: Path) -> dict[str, Any]:
    """Valid params naming the member's own job (or the member themselves)."""
    spec = {"name": "t", "command": ["true"]}
    return {
        "node_history": {"node": "nowhere"}, "jobs": {"limit": 10},
        "explain": {"job": jobs["mia"]}, "logs": {"job": jobs["mia"]},
        "preview": {"spec": spec}, "suggest": {}, "submit": {"spec": spec},
        "stop": {"job": jobs["mia"], "reason": "matrix"},
        "snooze": {"job": jobs["mia"], "hours": 1, "reason": "matrix"},
        "cordon": {"node": "nowhere"}, "uncordon": {"node": "nowhere"},
        "audit": {"limit": 5}, "report": {"name": "chargeback"},
        "report_run": {"name": "chargeback", "format": "csv"},
        "whatif": {"days": 1, "changes": ["+1 A100"]},
        "export": {"name": "usage", "path": str(tmp / "usage.csv"), "format": "csv"},
        "notify_test": {"channel": "nope"}, "events": {"limit": 5},
    }.get(method, {})


async def test_every_method_against_every_role(engine: Engine, tmp_path: Path) -> None:
    jobs = {}
    for user in ("mia", "max"):
        msg = await ask(engine, "member" if user == "mia" else "other_member", "submit",
                        spec={"name": f"{user}-job", "command": ["sleep", "1"]})
        jobs[user] = msg["result"]["ids"][0]
    denied = 0
    methods = [m for m in TABLE if m.name not in ("hello", "shutdown")]
    for m in methods:
        for who in ("none", "viewer", "member", "operator", "admin"):
            role = None if who == "none" else Role[who.upper()]
            msg = await ask(engine, who, m.name, **params_for(m.name, jobs, tmp_path))
            got = code(msg)
            if role is None:
                assert got == ErrorCode.UNAUTHORIZED, (m.name, who, msg)
                assert "mallory has no role" in msg["error"]["message"]
            elif role < m.role:
                assert got == ErrorCode.FORBIDDEN, (m.name, who, msg)
                assert msg["error"]["message"] == (
                    f"{m.name} needs the {m.role.label} role; {PEERS[who].user} is {who}")
            else:
                assert got not in DENIED, (m.name, who, msg)
                if got is None and not m.stream:
                    assert conforms(msg["reply"], m.reply), (m.name, msg["reply"])
                    wire = encode(msg["result"])  # as the client reads it: the declared type
                    msgspec.json.decode(wire, type=m.reply, strict=False)
            denied += got in DENIED
    # shutdown last: everyone below admin is refused, the admin stops the engine
    for who in ("none", "viewer", "member", "operator"):
        assert code(await ask(engine, who, "shutdown")) in DENIED
        denied += 1
    rows = await engine.db.run(lambda s: s.con.execute(
        "SELECT actor, target, evidence FROM actions WHERE target_kind = 'method'").fetchall())
    refused = [r for r in rows if json.loads(r[2])["outcome"] in DENIED]
    assert len(refused) == denied  # one audit row per refused call
    ok = [r for r in rows if json.loads(r[2])["outcome"] == "ok"]
    assert ("mia", "submit") in {(r[0], r[1]) for r in ok}
    ev = json.loads(next(r[2] for r in ok if r[1] == "submit"))
    assert (ev["uid"], ev["role"]) == (61003, "member")
    assert code(await ask(engine, "admin", "shutdown")) is None


async def test_members_act_only_on_their_own_jobs(engine: Engine) -> None:
    spec = {"name": "mine", "command": ["sleep", "1"], "env": {"API_TOKEN": "s3cret"}}
    mine = (await ask(engine, "member", "submit", spec=spec))["result"]["ids"][0]
    theirs = (await ask(engine, "other_member", "submit", spec=spec))["result"]["ids"][0]
    for method, params in (("stop", {"job": theirs}), ("explain", {"job": theirs}),
                           ("logs", {"job": theirs}),
                           ("snooze", {"job": theirs, "hours": 1, "reason": "x"}),
                           ("submit", {"spec": {**spec, "user": "max"}}),
                           ("suggest", {"user": "max"})):
        msg = await ask(engine, "member", method, **params)
        assert code(msg) == ErrorCode.FORBIDDEN, (method, msg)
        assert msg["error"]["message"].startswith(f"{method} on ")
        assert "needs the operator role" in msg["error"]["message"] or method == "submit"
    # others' command lines and env are hidden from members and viewers, not from operators
    for who, hidden in (("member", True), ("viewer", True), ("operator", False)):
        rows = {r["id"]: r for r in (await ask(engine, who, "jobs"))["result"]}
        other = rows[theirs]["spec"]
        assert (other["env"]["API_TOKEN"] == "(hidden)") is hidden, who
        assert (other["command"] == ["(hidden)"]) is hidden, who
    own = {r["id"]: r for r in (await ask(engine, "member", "jobs"))["result"]}[mine]
    assert own["spec"]["env"] == {"API_TOKEN": "s3cret"}
    assert code(await ask(engine, "member", "stop", job=mine)) is None
    assert code(await ask(engine, "operator", "stop", job=theirs)) is None
    # the audit trail never holds env values
    rows = await engine.db.run(lambda s: s.con.execute(
        "SELECT evidence FROM actions WHERE target_kind = 'method' AND target = 'submit'"
    ).fetchall())
    assert rows and all("s3cret" not in r[0] for r in rows)


async def test_members_get_their_own_chargeback_only(engine: Engine) -> None:
    """The table's own_only: a member's report is their chargeback, narrowed to them; a
    viewer (below member) still reads every report."""
    for m in TABLE:
        if m.own_only is None:
            continue
        assert m.own_only.role is Role.MEMBER and m.own_only.names == {"chargeback"}
        extra = {"format": "csv"} if m.name == "report_run" else {}
        for params in ({"name": "usage"}, {"name": "chargeback", "user": "max"}):
            msg = await ask(engine, "member", m.name, **params, **extra)
            assert code(msg) == ErrorCode.FORBIDDEN, (m.name, params, msg)
            assert "a member gets their own chargeback only" in msg["error"]["message"]
        for who in ("viewer", "operator"):
            assert code(await ask(engine, who, m.name, name="usage", **extra)) is None
    mine = await ask(engine, "member", "report", name="chargeback")
    assert mine["result"]["tables"][0]["title"] == "Chargeback by user for mia"
    assert code(await ask(engine, "member", "report", name="chargeback", user="mia")) is None
    everyone = await ask(engine, "viewer", "report", name="chargeback", user="max")
    assert everyone["result"]["tables"][0]["title"] == "Chargeback by user for max"
    rows = await engine.db.run(lambda s: s.con.execute(
        "SELECT count(*) FROM actions WHERE action = 'refused' AND actor = 'mia'"
    ).fetchall())
    assert rows[0][0] == 4  # each refusal audited


async def test_readonly_sessions_may_call_no_changing_method(engine: Engine,
                                                             tmp_path: Path) -> None:
    jobs = {"mia": 1}
    for m in TABLE:
        if not m.changes:
            continue
        msg = await ask(engine, "admin", m.name, readonly=True,
                        **params_for(m.name, jobs, tmp_path))
        assert code(msg) == ErrorCode.READONLY, (m.name, msg)
    assert not (tmp_path / "usage.csv").exists()  # export wrote nothing
    assert code(await ask(engine, "admin", "status", readonly=True)) is None  # reads work


async def test_bad_params_are_bad_requests_naming_the_parameter(engine: Engine) -> None:
    msg = await ask(engine, "admin", "stop", job="seven")
    assert code(msg) == ErrorCode.BAD_REQUEST
    assert "$.job" in msg["error"]["message"]
    msg = await ask(engine, "admin", "snooze", job=1, reason="x")
    assert "hours" in msg["error"]["message"]


def test_roles_from_names_groups_and_star(tmp_path: Path) -> None:
    cfg = load(str(write_config(tmp_path / "c.toml", tmp_path / "s.duckdb", ACCESS))).config
    assert role_of(cfg.access, PEERS["operator"]) is Role.OPERATOR  # by @ops
    assert role_of(cfg.access, PEERS["none"]) is None
    star = load(str(write_config(tmp_path / "d.toml", tmp_path / "s.duckdb",
                                 '[access]\nviewers = ["*"]\n'))).config
    assert role_of(star.access, PEERS["none"]) is Role.VIEWER
    nobody = Peer(uid=61999, gid=-1, pid=1, user="uid:61999", groups=frozenset())
    assert role_of(star.access, nobody) is None  # "*" is every local user, not any uid
    root = Peer(uid=0, gid=0, pid=1, user="root", groups=frozenset())
    empty = load(str(write_config(tmp_path / "e.toml", tmp_path / "s.duckdb"))).config
    assert role_of(empty.access, root) is Role.ADMIN
    assert role_of(empty.access, PEERS["admin"]) is None  # empty [access]: owner only
    assert BY_NAME["export"].role is Role.ADMIN


async def test_a_reply_off_its_declared_type_is_an_internal_error_logged_once(
        engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """The server checks every answer against the table's reply type: a handler answering a
    plain dict (an engine bug) is refused as `internal`, and the log says so once."""
    real = engine.server.handlers["summary"]

    async def untyped(caller: Caller, req: Any) -> Any:
        return msgspec.to_builtins(await real(caller, req))

    handlers = dict(engine.server.handlers)
    handlers["summary"] = untyped
    engine.server.handlers = handlers
    for _ in range(3):
        msg = await ask(engine, "admin", "summary")
        assert code(msg) == ErrorCode.INTERNAL, msg
        assert msg["error"]["message"] == ("engine bug: summary answered outside its "
                                           "declared reply type (see the engine's log)")
    bugs = [r for r in caplog.records if "engine bug: summary answered dict" in r.getMessage()]
    assert len(bugs) == 1
    assert code(await ask(engine, "admin", "fleet")) is None  # other methods unaffected


async def test_the_client_answers_each_method_in_its_reply_type(engine: Engine) -> None:
    """`call(request)` over the socket: the table's method for the request's type, the
    answer decoded into its reply type; the untyped path still answers plain JSON."""
    async with await EngineClient.connect(engine.config.socket_path) as c:
        [job] = (await c.call(rq.SubmitRequest(spec={"name": "t", "command": ["true"]}))).ids
        status = await c.call(rq.StatusQuery())
        assert isinstance(status, rp.StatusReply) and status.caller == c.hello.user
        jobs = await c.call(rq.JobsQuery(limit=5))
        assert [type(j) for j in jobs] == [rp.JobInfo] and jobs[0].id == job
        assert isinstance(jobs[0].submitted_at, datetime)
        assert (await c.call(rq.JobQuery(job=job))).id == job
        assert isinstance(await c.call(rq.SummaryQuery()), rp.Summary)
        assert isinstance(await c.call(rq.WhoAmIQuery()), rp.WhoAmI)
        assert isinstance(await c.call(rq.ReportQuery(name="usage")), rp.ReportData)
        assert all(isinstance(n, rp.FleetNode) for n in await c.call(rq.FleetQuery()))
        events = [e async for e in c.stream(rq.EventsQuery(limit=5))]
        assert all(isinstance(e, dict) for e in events)
        raw = await c.call("jobs", limit=5)  # the wire protocol's plain JSON, for scripts
        assert raw[0]["id"] == job and isinstance(raw[0]["submitted_at"], str)
