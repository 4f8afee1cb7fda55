"""What a caller sends: one frozen msgspec Struct per kind of request.

The server decodes `params` into the method's request type before any handler runs; a wrong
or missing parameter answers `bad_request` naming it. Unknown parameters are refused too, so
a typo never passes silently.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

import msgspec

from console.engine.api import replies as rp
from scheduler.states import JobState

R = TypeVar("R")

Count = Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]
JobId = Annotated[int, msgspec.Meta(ge=1)]
Hours = Annotated[float, msgspec.Meta(gt=0, le=24.0 * 30)]
Days = Annotated[float, msgspec.Meta(gt=0, le=3650)]
Minutes = Annotated[float, msgspec.Meta(gt=0, le=60.0 * 24 * 366)]
Lines = Annotated[int, msgspec.Meta(ge=0, le=10_000_000)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Text = Annotated[str, msgspec.Meta(max_length=4096)]


class Request(msgspec.Struct, Generic[R], frozen=True, kw_only=True,
              forbid_unknown_fields=True):
    """Base of every request type; `R` is what the method answers (its events for a stream),
    so `EngineClient.call(req)` is typed. Each method has a request type of its own."""


class Hello(Request[rp.HelloReply], frozen=True):
    protocol: int
    client: Text = ""
    readonly: bool = False


class FleetQuery(Request[list[rp.FleetNode]], frozen=True):
    node: Name | None = None  # only this node
    detail: bool = False  # each node's processes and containers (always with `node`)


class FleetDeltaQuery(Request[rp.FleetDelta], frozen=True):
    since: Annotated[int, msgspec.Meta(ge=0)] | None = None  # the last answer's cursor
    readings: bool = False  # a node whose only change is a new sample as `NodeReadings`


class AuditQuery(Request[list[rp.AuditRow]], frozen=True):
    since: Text | None = None  # ISO timestamp: rows at or after it
    limit: Count = 1000


class NodeHistoryQuery(Request[rp.NodeHistory], frozen=True):
    node: Name
    minutes: Minutes = 60.0


class SpecRequest(Request[R], frozen=True):
    """A job spec as `JobSpec.to_dict` writes it (see docs/JOBS.md); checked by JobSpec."""

    spec: dict[str, Any]


class SubmitRequest(SpecRequest[rp.Submitted], frozen=True):
    """Queue the spec (an array: one job per task)."""


class PreviewRequest(SpecRequest[rp.Preview], frozen=True):
    """Would the spec start now."""


class JobsQuery(Request[list[rp.JobInfo]], frozen=True):
    """Newest first; page k of n rows is `limit=n, offset=k*n` (no limit: every match)."""

    ids: Annotated[list[JobId], msgspec.Meta(max_length=1000)] | None = None  # by key
    states: list[JobState] = []
    user: Name | None = None
    limit: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] | None = None
    offset: Annotated[int, msgspec.Meta(ge=0, le=10**9)] = 0
    # the console's filter words: `ann pretrain`, `node:gpu-a01 reason:quota` (job_match.py)
    match: Text | None = None


class JobRef(Request[R], frozen=True):
    """A request naming one job."""

    job: JobId


class JobQuery(JobRef[rp.JobInfo], frozen=True):
    """One job by id."""


class ExplainRequest(JobRef[rp.Explanation], frozen=True):
    """Why a job is where it is."""


class StopRequest(Request[rp.JobInfo], frozen=True):
    job: JobId
    reason: Text | None = None


class LogsRequest(Request[str], frozen=True):
    job: JobId
    tail: Lines | None = None
    follow: bool = False


class SuggestQuery(Request[rp.Suggestion | None], frozen=True):
    user: Name | None = None  # default: the caller


class SnoozeRequest(Request[rp.SnoozeEntry], frozen=True):
    job: JobId
    hours: Hours
    reason: Text = ""


class NodeRequest(Request[rp.Cordoned], frozen=True):
    node: Name
    reason: Text = ""


class CordonRequest(NodeRequest, frozen=True):
    """Stop placing jobs on a node."""


class UncordonRequest(NodeRequest, frozen=True):
    """Place jobs on a node again."""


class ReportQuery(Request[rp.ReportData], frozen=True,
                  rename={"start": "from", "end": "to"}):
    name: Name
    start: Text | None = None  # sent as "from"
    end: Text | None = None  # sent as "to"
    by: Name | None = None
    user: Name | None = None  # chargeback: this user's jobs only (a member: always their own)


class ReportRun(Request[rp.ReportOutput], frozen=True,
                rename={"start": "from", "end": "to"}):
    """`fleetdeck report` through the engine: the CLI renders what comes back."""

    name: Name
    start: Text | None = None
    end: Text | None = None
    by: Name | None = None
    every: Name = "day"
    months: Text = "3"
    ceiling: Text = "80"
    format: Name = "table"
    user: Name | None = None  # chargeback: this user's jobs only (a member: always their own)


class ExportRequest(Request[rp.Exported], frozen=True,
                    rename={"start": "from", "end": "to"}):
    name: Name
    path: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    start: Text | None = None
    end: Text | None = None
    by: Name | None = None
    format: Name = "xlsx"


class WhatifRequest(Request[rp.WhatifReply], frozen=True):
    days: Days
    changes: list[Text]
    policy: Name | None = None


HISTORY_MAX = 10_000  # events `fleetdeck events` may ask for at once


class EventsQuery(Request[dict[str, Any]], frozen=True):
    limit: Annotated[int, msgspec.Meta(ge=0, le=HISTORY_MAX)] = 50
    follow: bool = False


class NotifyTestRequest(Request[rp.NotifyTested], frozen=True):
    channel: Name
    to: Text = ""  # email channels: the address (default: the caller's [[users]] email)


# methods without parameters: one type each, so the type names the method
class StatusQuery(Request[rp.StatusReply], frozen=True):
    """The engine and the caller."""


class DbInfoQuery(Request[rp.DbInfo], frozen=True):
    """The store's path, schema, size and row counts."""


class WhoAmIQuery(Request[rp.WhoAmI], frozen=True):
    """The caller, their quota use and spend today."""


class NodesQuery(Request[list[rp.NodeRow]], frozen=True):
    """Nodes as the store knows them."""


class SummaryQuery(Request[rp.Summary], frozen=True):
    """Fleet totals for the console header."""


class IngestStatsQuery(Request[rp.IngestStatsReply], frozen=True):
    """How ingest keeps up."""


class PoliciesQuery(Request[rp.PoliciesReply], frozen=True):
    """Idle warnings, snoozes, burst instances, cordons and drains."""


class NotifyStatusQuery(Request[rp.NotifyStatus], frozen=True):
    """Deliveries, failures and channels."""


class ReloadConfig(Request[rp.Reloaded], frozen=True):
    """Re-read the config file."""


class Shutdown(Request[rp.Stopping], frozen=True):
    """Stop the engine."""
