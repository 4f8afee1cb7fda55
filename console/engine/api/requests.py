"""What a caller sends: one frozen msgspec Struct per kind of request.

The server decodes `params` into the method's request type before any handler runs; a wrong
or missing parameter answers `bad_request` naming it. Unknown parameters are refused too, so
a typo never passes silently.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from scheduler.states import JobState

Count = Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]
JobId = Annotated[int, msgspec.Meta(ge=1)]
Hours = Annotated[float, msgspec.Meta(gt=0, le=24.0 * 30)]
Days = Annotated[float, msgspec.Meta(gt=0, le=3650)]
Minutes = Annotated[float, msgspec.Meta(gt=0, le=60.0 * 24 * 366)]
Lines = Annotated[int, msgspec.Meta(ge=0, le=10_000_000)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Text = Annotated[str, msgspec.Meta(max_length=4096)]


class Request(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every request type."""


class NoParams(Request, frozen=True):
    """A method without parameters."""


class Hello(Request, frozen=True):
    protocol: int
    client: Text = ""
    readonly: bool = False


class FleetQuery(Request, frozen=True):
    node: Name | None = None  # only this node


class AuditQuery(Request, frozen=True):
    since: Text | None = None  # ISO timestamp: rows at or after it
    limit: Count = 1000


class NodeHistoryQuery(Request, frozen=True):
    node: Name
    minutes: Minutes = 60.0


class SpecRequest(Request, frozen=True):
    """A job spec as `JobSpec.to_dict` writes it (see docs/JOBS.md); checked by JobSpec."""

    spec: dict[str, Any]


class JobsQuery(Request, frozen=True):
    """Newest first; page k of n rows is `limit=n, offset=k*n` (no limit: every match)."""

    ids: Annotated[list[JobId], msgspec.Meta(max_length=1000)] | None = None  # by key
    states: list[JobState] = []
    user: Name | None = None
    limit: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] | None = None
    offset: Annotated[int, msgspec.Meta(ge=0, le=10**9)] = 0
    # the console's filter words: `ann pretrain`, `node:gpu-a01 reason:quota` (job_match.py)
    match: Text | None = None


class JobRef(Request, frozen=True):
    job: JobId


class StopRequest(Request, frozen=True):
    job: JobId
    reason: Text | None = None


class LogsRequest(Request, frozen=True):
    job: JobId
    tail: Lines | None = None
    follow: bool = False


class SuggestQuery(Request, frozen=True):
    user: Name | None = None  # default: the caller


class SnoozeRequest(Request, frozen=True):
    job: JobId
    hours: Hours
    reason: Text = ""


class NodeRequest(Request, frozen=True):
    node: Name
    reason: Text = ""


class ReportQuery(Request, frozen=True, rename={"start": "from", "end": "to"}):
    name: Name
    start: Text | None = None  # sent as "from"
    end: Text | None = None  # sent as "to"
    by: Name | None = None


class ReportRun(Request, frozen=True, rename={"start": "from", "end": "to"}):
    """`fleetdeck report` through the engine: the CLI renders what comes back."""

    name: Name
    start: Text | None = None
    end: Text | None = None
    by: Name | None = None
    every: Name = "day"
    months: Text = "3"
    ceiling: Text = "80"
    format: Name = "table"


class ExportRequest(Request, frozen=True, rename={"start": "from", "end": "to"}):
    name: Name
    path: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    start: Text | None = None
    end: Text | None = None
    by: Name | None = None
    format: Name = "xlsx"


class WhatifRequest(Request, frozen=True):
    days: Days
    changes: list[Text]
    policy: Name | None = None


HISTORY_MAX = 10_000  # events `fleetdeck events` may ask for at once


class EventsQuery(Request, frozen=True):
    limit: Annotated[int, msgspec.Meta(ge=0, le=HISTORY_MAX)] = 50
    follow: bool = False


class NotifyTestRequest(Request, frozen=True):
    channel: Name
    to: Text = ""  # email channels: the address (default: the caller's [[users]] email)
