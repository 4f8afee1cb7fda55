"""Reports in the engine: the CLI's `report` while the engine holds the store, and the
console's previews and exports. Reports read through a cursor on the store thread."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collectors.errors import InputError
from collectors.store import Store
from console.engine.protocol import RequestError
from console.engine.server import Caller
from reports.command import build_reports as build
from reports.command import parse_when, render_report
from reports.export.columns import kinds, title, totals_row
from reports.model import Report

if TYPE_CHECKING:
    from console.engine.host import Engine


def report_json(report: Report) -> dict[str, Any]:
    """The first table as columns and rows, plus notes, for the console's preview; each
    table also has its columns' titles for people and kinds, and its totals row if any."""
    tables = []
    for t in report.tables:
        rows = [[_cell(v) for v in row] for row in t.frame.iter_rows()]
        tables.append({
            "name": t.name, "title": t.title, "columns": t.frame.columns, "rows": rows,
            "titles": [title(c, report.currency) for c in t.frame.columns],
            "kinds": kinds(t.frame),
            "totals": [_cell(v) for v in totals_row(t.frame)]
            if t.totals and t.frame.height else None})
    first = tables[0] if tables else {"columns": [], "rows": []}
    return {"name": report.name, "title": report.title, "period": report.period,
            "currency": report.currency, "columns": first["columns"], "rows": first["rows"],
            "tables": tables, "notes": list(report.notes), "headline": report.headline}


def _cell(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, datetime):
        return v.isoformat(sep=" ", timespec="minutes")
    return v


def attach(engine: Engine) -> None:

    def period(params: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
        now = datetime.fromtimestamp(engine.clock())
        start = params.get("from")
        end = params.get("to")
        return (parse_when(start, now=now, flag="--from") if start else None,
                parse_when(end, now=now, flag="--to", is_end=True) if end else None)

    async def report_cli(caller: Caller, params: Mapping[str, Any]) -> dict[str, Any]:
        from console.commands.fleet import run_report

        try:
            args = dict(params["args"])
            return await engine.db.run(lambda s: run_report(args, s, engine.config.rates))
        except InputError as e:
            raise RequestError("bad_request", str(e)) from None

    async def report(caller: Caller, params: Mapping[str, Any]) -> dict[str, Any]:
        try:
            start, end = period(params)

            def run(store: Store) -> dict[str, Any]:
                (rep,) = build(str(params["name"]), store.cursor(), start=start, end=end,
                               by=params.get("by"), rates=engine.config.rates,
                               now=engine.clock())
                return report_json(rep)

            return await engine.db.run(run)
        except InputError as e:
            raise RequestError("bad_request", str(e)) from None

    async def export(caller: Caller, params: Mapping[str, Any]) -> dict[str, Any]:
        path = Path(str(params["path"]))
        if not path.is_absolute():
            raise RequestError("bad_request", "path: expected an absolute path")
        try:
            start, end = period(params)
            await engine.db.run(lambda s: render_report(
                str(params["name"]), s.cursor(), start=start, end=end, by=params.get("by"),
                fmt=str(params.get("format") or "xlsx"), output_path=path,
                rates=engine.config.rates,
                now=engine.clock()))
        except InputError as e:
            raise RequestError("bad_request", str(e)) from None
        size = await engine.db.run(lambda s: path.stat().st_size)
        return {"path": str(path), "bytes": size}

    engine.handlers.update(report_cli=report_cli, report=report, export=export)
    attach_whatif(engine)


def attach_whatif(engine: Engine) -> None:
    async def whatif(caller: Caller, params: Mapping[str, Any]) -> dict[str, Any]:
        from console.commands.fleet import whatif_compare, whatif_history

        days = float(params["days"])
        try:
            history = await engine.db.run(lambda s: whatif_history(s, days, now=engine.clock()))
            # the replay is CPU work: off the store thread so ingest keeps its interval
            return await asyncio.to_thread(
                whatif_compare, history, engine.config, changes=list(params["changes"]),
                days=days, policy=str(params.get("policy") or "fleetdeck"))
        except InputError as e:
            raise RequestError("bad_request", str(e)) from None

    engine.handlers["whatif"] = whatif
