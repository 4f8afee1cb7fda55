"""The engine's method table: every method declared once (see `console.engine.api`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin

from console.engine.api import replies as rp
from console.engine.api import requests as rq


class Role(IntEnum):
    """What a caller may do; each role may do everything the roles below it may."""

    VIEWER = 1  # read only: fleet, queue, reports; no other user's logs, env or command lines
    MEMBER = 2  # submit as themselves; stop/snooze/logs/explain their own jobs
    OPERATOR = 3  # cordon/uncordon, stop/snooze any job, every report, the audit trail
    ADMIN = 4  # everything: reload, shutdown, exports, submit for others

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class OwnOnly:
    """What a caller of exactly `role` gets of a method: only the requests whose `name` is one
    of `names`, narrowed to their own data (the server sets the request's `user` to the caller;
    naming another user is refused)."""

    role: Role
    names: frozenset[str]
    what: str  # "their own chargeback": for refusals and the protocol document

    def text(self) -> str:
        return f"a {self.role.label} gets {self.what} only"


@dataclass(frozen=True, slots=True)
class Method:
    """One engine method.

    `others`: the least role that may act on another user's job or for another user (a
    request's `job`, `user` or `spec.user`); callers below it only on their own. None: the
    method names no user or job.
    """

    name: str
    request: type[rq.Request[Any]]
    reply: Any  # a reply Struct type, list[...] of one, str (stream events) or None
    role: Role
    changes: bool
    doc: str
    others: Role | None = None
    stream: bool = False
    own_only: OwnOnly | None = None


V, M, OP, A = Role.VIEWER, Role.MEMBER, Role.OPERATOR, Role.ADMIN
# members see the fleet, the queue and their own chargeback; viewers every report
MEMBER_CHARGEBACK = OwnOnly(M, frozenset({"chargeback"}), "their own chargeback")

TABLE: tuple[Method, ...] = (
    Method("hello", rq.Hello, rp.HelloReply, V, False,
           "first request of a connection: protocol version, read-only wish; answers the "
           "caller's user and role"),
    Method("status", rq.StatusQuery, rp.StatusReply, V, False,
           "engine version, pid, uptime, store, socket, config file, the caller and role"),
    Method("db_info", rq.DbInfoQuery, rp.DbInfo, V, False,
           "the store's path, schema version, size and row counts"),
    Method("whoami", rq.WhoAmIQuery, rp.WhoAmI, V, False,
           "the caller: user, role, GPUs their jobs hold of their quota, spend today"),
    Method("nodes", rq.NodesQuery, list[rp.NodeRow], V, False,
           "configured and discovered nodes as the store knows them"),
    Method("fleet", rq.FleetQuery, list[rp.FleetNode], V, False,
           "every node live: GPUs, allocations, jobs; its processes and containers with "
           "`node` or `detail`"),
    Method("fleet_delta", rq.FleetDeltaQuery, rp.FleetDelta, V, False,
           "what changed in `fleet` since a cursor: changed nodes (as `fleet` without "
           "`detail`), removed names, the next cursor (the whole fleet without one); with "
           "`readings`, a node whose only change is a new sample as its new readings"),
    Method("summary", rq.SummaryQuery, rp.Summary, V, False,
           "fleet totals for the console header"),
    Method("ingest_stats", rq.IngestStatsQuery, rp.IngestStatsReply, OP, False,
           "how ingest keeps up: sweep, write lag, data age, rollup (p50/p99/max), threads"),
    Method("node_history", rq.NodeHistoryQuery, rp.NodeHistory, V, False,
           "a node's GPU and CPU samples over the last minutes"),
    Method("jobs", rq.JobsQuery, list[rp.JobInfo], V, False,
           "jobs, newest first, optionally by state and user (others' command lines and "
           "env hidden below operator)"),
    Method("job", rq.JobQuery, rp.JobInfo, V, False,
           "one job by id (others' command lines and env hidden below operator)"),
    Method("explain", rq.ExplainRequest, rp.Explanation, M, False,
           "why a job is where it is: events, placement, burst and idle verdicts", others=OP),
    Method("logs", rq.LogsRequest, str, M, False,
           "a job's output (events are text chunks); follow streams until it ends",
           others=OP, stream=True),
    Method("preview", rq.PreviewRequest, rp.Preview, M, False,
           "would this spec start now, where, or why it would wait", others=A),
    Method("suggest", rq.SuggestQuery, rp.Suggestion | None, M, False,
           "the GPU amount and model a user's recent jobs ran with", others=OP),
    Method("submit", rq.SubmitRequest, rp.Submitted, M, True,
           "queue a job (or an array) as the caller", others=A),
    Method("stop", rq.StopRequest, rp.JobInfo, M, True,
           "stop a queued or running job", others=OP),
    Method("snooze", rq.SnoozeRequest, rp.SnoozeEntry, M, True,
           "keep the idle policy off a job for some hours, with a reason", others=OP),
    Method("policies", rq.PoliciesQuery, rp.PoliciesReply, V, False,
           "idle warnings, snoozes, burst instances, cordoned and drained nodes"),
    Method("cordon", rq.CordonRequest, rp.Cordoned, OP, True,
           "stop placing jobs on a node"),
    Method("uncordon", rq.UncordonRequest, rp.Cordoned, OP, True,
           "place jobs on a node again (clears a health drain)"),
    Method("audit", rq.AuditQuery, list[rp.AuditRow], OP, False,
           "the audit trail, newest first"),
    Method("report", rq.ReportQuery, rp.ReportData, V, False,
           "a report as columns and rows, for the console", own_only=MEMBER_CHARGEBACK),
    Method("report_run", rq.ReportRun, rp.ReportOutput, V, False,
           "`fleetdeck report` while the engine holds the store: the rendered document",
           own_only=MEMBER_CHARGEBACK),
    Method("whatif", rq.WhatifRequest, rp.WhatifReply, V, False,
           "replay recent history against a changed fleet"),
    Method("events", rq.EventsQuery, dict[str, Any], V, False,
           "the newest events (job, node, policy), then with follow each new one",
           stream=True),
    Method("notify_status", rq.NotifyStatusQuery, rp.NotifyStatus, OP, False,
           "deliveries per state, recent failures, channels"),
    Method("notify_test", rq.NotifyTestRequest, rp.NotifyTested, OP, True,
           "send a test message to a channel now"),
    Method("export", rq.ExportRequest, rp.Exported, A, True,
           "write a report file on the engine's machine, as the engine's user"),
    Method("reload_config", rq.ReloadConfig, rp.Reloaded, A, True,
           "re-read the config file and apply what can change live"),
    Method("shutdown", rq.Shutdown, rp.Stopping, A, True,
           "stop the engine"),
)

BY_NAME: dict[str, Method] = {m.name: m for m in TABLE}
BY_REQUEST: dict[type[rq.Request[Any]], Method] = {m.request: m for m in TABLE}


def declared_reply(request: type[rq.Request[Any]]) -> Any:
    """The reply (or event) type a request class declares: `Request[R]`'s R."""
    for base in getattr(request, "__orig_bases__", ()):
        args = get_args(base)
        if args and not isinstance(args[0], TypeVar):
            return args[0]
    return declared_reply(request.__bases__[0])


def conforms(value: Any, tp: Any) -> bool:
    """True when `value` is of the declared reply type `tp` (Structs by class, every item
    of a list, None for an optional reply, str and dict events)."""
    origin = get_origin(tp)
    if origin is list:
        (item,) = get_args(tp)
        return isinstance(value, list) and all(conforms(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if origin in (Union, UnionType):
        return any(conforms(value, a) for a in get_args(tp))
    if tp is None or tp is type(None):
        return value is None
    return isinstance(value, tp)

