"""Reports in the engine: the CLI's `report` while the engine holds the store, and the
console's previews and exports. Reports read through a cursor on the store thread."""

from __future__ import annotations

import asyncio
import base64
import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from collectors.errors import InputError
from collectors.store import Store
from console.config import Config
from console.engine.access import Caller
from console.engine.api.replies import (
    Exported,
    ReportData,
    ReportOutput,
    ReportTable,
    WhatifReply,
)
from console.engine.api.requests import ExportRequest, ReportQuery, ReportRun, WhatifRequest
from console.engine.protocol import ErrorCode, RequestError
from console.engine.server import Handler
from console.engine.service_base import BaseService
from scheduler.sim import whatif as sim_whatif

# `reports` (polars, some 35 MB) loads with the first report, not with the engine
if TYPE_CHECKING:
    from console.engine.hosting import Host
    from reports.command import ReportArgs
    from reports.model import Report


def report_json(report: Report) -> ReportData:
    """The first table as columns and rows, plus notes, for the console's preview; each
    table also has its columns' titles for people and kinds, and its totals row if any."""
    from reports.export.columns import kinds, title, totals_row

    tables = []
    for t in report.tables:
        rows = [[_cell(v) for v in row] for row in t.frame.iter_rows()]
        tables.append(ReportTable(
            name=t.name, title=t.title, columns=t.frame.columns, rows=rows,
            titles=[title(c, report.currency) for c in t.frame.columns],
            kinds=list[str](kinds(t.frame)),
            totals=[_cell(v) for v in totals_row(t.frame)]
            if t.totals and t.frame.height else None))
    first = tables[0] if tables else None
    return ReportData(name=report.name, title=report.title, period=report.period,
                      currency=report.currency, columns=first.columns if first else [],
                      rows=first.rows if first else [], tables=tables,
                      notes=list(report.notes), headline=report.headline)


def _cell(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, datetime):
        return v.isoformat(sep=" ", timespec="minutes")
    return v


def whatif_prices(cfg: Config) -> tuple[float, float]:
    """(wait threshold s, cloud price per GPU-hour) a what-if's burst estimate uses: the
    cheapest burst offer per GPU, else the highest configured cloud rate."""
    cloud = max((g.cloud_gpu_hour or 0.0 for g in cfg.rates.gpu.values()), default=0.0)
    cloud = cloud or (cfg.rates.default_gpu.cloud_gpu_hour or 0.0)
    offers = [o.price_per_hour / max(o.gpu_count, 1) for o in cfg.policies.burst.offers]
    if offers:
        cloud = min(offers)
    return cfg.policies.burst.wait_threshold_s, cloud


def run_args(req: ReportRun) -> ReportArgs:
    from reports.command import ReportArgs

    return ReportArgs(name=req.name, start=req.start, end=req.end, by=req.by, every=req.every,
                      months=req.months, ceiling=req.ceiling, fmt=req.format, user=req.user)


def rendered(result: str | bytes, fmt: str) -> ReportOutput:
    """A rendered report as the `report_run` reply carries it."""
    if isinstance(result, bytes):
        return ReportOutput(format=fmt, b64=base64.b64encode(result).decode())
    return ReportOutput(format=fmt, text=result)


class ReportService(BaseService):
    """Reports and what-ifs: they read through a cursor on the store thread and return data
    (or a rendered document); the CLI and the screens show it."""

    def __init__(self, engine: Host) -> None:
        self.engine = engine

    def handlers(self) -> Mapping[str, Handler]:
        return {"report": self.report, "report_run": self.report_run, "export": self.export,
                "whatif": self.whatif}

    def _period(self, start: str | None, end: str | None,
                ) -> tuple[datetime | None, datetime | None]:
        from reports.command import parse_when

        now = datetime.fromtimestamp(self.engine.clock())
        return (parse_when(start, now=now, flag="--from") if start else None,
                parse_when(end, now=now, flag="--to", is_end=True) if end else None)

    async def report_run(self, caller: Caller, req: ReportRun) -> ReportOutput:
        from reports.command import render_args

        engine = self.engine
        try:
            result = await engine.db.run(lambda s: render_args(
                run_args(req), s.cursor(), rates=engine.config.rates, now=engine.clock()))
        except InputError as e:
            raise RequestError(ErrorCode.BAD_REQUEST, str(e)) from None
        return rendered(result, req.format)

    async def report(self, caller: Caller, req: ReportQuery) -> ReportData:
        from reports.command import build_reports as build

        engine = self.engine
        try:
            start, end = self._period(req.start, req.end)

            def run(store: Store) -> ReportData:
                (rep,) = build(req.name, store.cursor(), start=start, end=end, by=req.by,
                               rates=engine.config.rates, now=engine.clock(), user=req.user)
                return report_json(rep)

            return await engine.db.run(run)
        except InputError as e:
            raise RequestError(ErrorCode.BAD_REQUEST, str(e)) from None

    async def export(self, caller: Caller, req: ExportRequest) -> Exported:
        from reports.command import render_report

        engine = self.engine
        path = Path(req.path)
        if not path.is_absolute():
            raise RequestError(ErrorCode.BAD_REQUEST, "path: expected an absolute path")
        try:
            start, end = self._period(req.start, req.end)
            await engine.db.run(lambda s: render_report(
                req.name, s.cursor(), start=start, end=end, by=req.by, fmt=req.format,
                output_path=path, rates=engine.config.rates, now=engine.clock()))
        except InputError as e:
            raise RequestError(ErrorCode.BAD_REQUEST, str(e)) from None
        size = await engine.db.run(lambda s: path.stat().st_size)
        return Exported(path=str(path), bytes=size)

    async def whatif(self, caller: Caller, req: WhatifRequest) -> WhatifReply:
        engine = self.engine
        wait_s, cloud = whatif_prices(engine.config)
        try:
            now = engine.clock()
            hist, observed = await engine.db.run(lambda s: (
                sim_whatif.history(s, req.days, now=now),
                sim_whatif.observed(s, req.days, now=now)))
            # the replay is CPU work: off the store thread so ingest keeps its interval
            result = await asyncio.to_thread(
                sim_whatif.whatif, hist, changes=req.changes, days=req.days,
                policy=req.policy or "fleetdeck", wait_threshold_s=wait_s,
                cloud_gpu_hour=cloud)
            # scheduler.sim answers plain data; `observed` is what the window really had
            return msgspec.convert({**result, "observed": observed}, WhatifReply)
        except InputError as e:
            raise RequestError(ErrorCode.BAD_REQUEST, str(e)) from None
