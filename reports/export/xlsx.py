"""XLSX: one sheet per report table with typed, formatted cells, and an `about` sheet."""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import xlsxwriter

from reports.export.columns import Kind, kinds, title, totals_row
from reports.model import Report

_NUM_FORMATS: dict[str, str] = {
    "pct": "0.0", "hours": "#,##0.00", "seconds": "#,##0", "int": "#,##0",
    "float": "#,##0.00", "date": "yyyy-mm-dd", "datetime": "yyyy-mm-dd hh:mm",
}
_WIDE_TEXT = 80


def sheet_name(name: str, used: set[str]) -> str:
    base = re.sub(r"[\[\]:*?/\\]", "_", name)[:31] or "sheet"
    out, i = base, 2
    while out.lower() in used:
        suffix = f" {i}"
        out, i = base[: 31 - len(suffix)] + suffix, i + 1
    used.add(out.lower())
    return out


def render_xlsx(reports: Sequence[Report]) -> bytes:
    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, {"in_memory": True, "remove_timezone": True})
    bold = wb.add_format({"bold": True, "bg_color": "#E8EEF7", "border": 1})
    wrap = wb.add_format({"text_wrap": True, "valign": "top"})
    currency = reports[0].currency if reports else "USD"
    fmts: dict[str, Any] = {k: wb.add_format({"num_format": v}) for k, v in _NUM_FORMATS.items()}
    fmts["money"] = wb.add_format({"num_format": f'#,##0.00 "{currency}"'})
    used: set[str] = set()
    for r in reports:
        for t in r.tables:
            ws = wb.add_worksheet(sheet_name(t.name, used))
            _write_table(ws, t.frame, kinds(t.frame), bold, wrap, fmts, r.currency)
            if t.totals and t.frame.height:
                _write_totals(ws, t.frame, bold, fmts)
    about = wb.add_worksheet(sheet_name("about", used))
    about.set_column(0, 0, 18)
    about.set_column(1, 1, 120, wrap)
    row = 0
    for r in reports:
        if r.headline:
            about.write_string(row, 0, "answer", bold)
            about.write_string(row, 1, r.headline, wrap)
            row += 1
        for label, value in (("report", r.title), ("period", r.period),
                             ("generated at", f"{r.generated_at:%Y-%m-%d %H:%M} UTC"),
                             ("currency", r.currency)):
            about.write_string(row, 0, label, bold)
            about.write_string(row, 1, value)
            row += 1
        for n in r.notes:
            about.write_string(row, 0, "note")
            about.write_string(row, 1, n, wrap)
            row += 1
        row += 1
    wb.close()
    return buf.getvalue()


def _write_totals(ws: Any, frame: Any, bold: Any, fmts: dict[str, Any]) -> None:
    """The totals row under the table, in bold (the key column says Total)."""
    row = frame.height + 1
    for j, (v, k) in enumerate(zip(totals_row(frame), kinds(frame), strict=True)):
        if j == 0:
            ws.write_string(row, j, str(v), bold)
        elif isinstance(v, int | float) and math.isfinite(float(v)):
            ws.write_number(row, j, float(v), fmts.get(k, fmts["float"]))


def _write_table(ws: Any, frame: Any, ks: list[Kind], bold: Any, wrap: Any,
                 fmts: dict[str, Any], currency: str) -> None:
    titles = [title(c, currency) for c in frame.columns]
    widths = [len(c) + 2 for c in titles]
    for j, c in enumerate(titles):
        ws.write_string(0, j, c, bold)
    for i, row in enumerate(frame.iter_rows(), start=1):
        for j, (v, k) in enumerate(zip(row, ks, strict=True)):
            if v is None or (isinstance(v, float) and (math.isnan(v) or math.isinf(v))):
                continue
            if k in ("date", "datetime") and isinstance(v, date | datetime):
                dt = v if isinstance(v, datetime) else datetime(v.year, v.month, v.day)
                ws.write_datetime(i, j, dt, fmts[k])
                widths[j] = max(widths[j], 12 if k == "date" else 17)
            elif k in ("text", "id"):
                s = str(v)
                ws.write_string(i, j, s, wrap if len(s) > _WIDE_TEXT else None)
                widths[j] = max(widths[j], min(len(s), _WIDE_TEXT) + 2)
            elif isinstance(v, bool):
                ws.write_boolean(i, j, v)
            else:
                ws.write_number(i, j, float(v), fmts[k])
                widths[j] = max(widths[j], 14)
    for j, w in enumerate(widths):
        ws.set_column(j, j, w)
    ws.freeze_panes(1, 0)
    if frame.width:
        ws.autofilter(0, 0, max(frame.height, 1), frame.width - 1)
