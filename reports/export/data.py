"""Machine formats: CSV and Parquet (a report's first table), JSON (everything)."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from reports.export.columns import with_totals
from reports.model import Report


def render_csv(report: Report) -> str:
    """The first table; a table with totals ends with its "Total" row."""
    table = report.tables[0]
    return (with_totals(table.frame) if table.totals else table.frame).write_csv()


def render_parquet(report: Report) -> bytes:
    buf = io.BytesIO()
    report.tables[0].frame.write_parquet(buf)
    return buf.getvalue()


def _jsonable(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat() + ("Z" if v.tzinfo is None else "")
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    return v


def report_dict(r: Report) -> dict[str, Any]:
    return {
        "report": r.name, "title": r.title,
        "start": _jsonable(r.start), "end": _jsonable(r.end),
        "generated_at": _jsonable(r.generated_at), "currency": r.currency,
        "tables": {t.name: [{k: _jsonable(v) for k, v in row.items()}
                            for row in t.frame.iter_rows(named=True)] for t in r.tables},
        "notes": list(r.notes),
    }


def render_json(reports: Sequence[Report]) -> str:
    body: Any = report_dict(reports[0]) if len(reports) == 1 else {
        "reports": [report_dict(r) for r in reports]}
    return json.dumps(body, indent=2, ensure_ascii=False) + "\n"
