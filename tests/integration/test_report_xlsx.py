"""The XLSX pack opens with openpyxl: one sheet per report table, headers, typed cells."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import openpyxl
import pytest

from collectors.store.db import Store
from reports.command import render_report
from tests.unit.test_reports_history import END, NOW, RATE_A100, RATES, START, write_history


@pytest.fixture(scope="module")
def workbook(tmp_path_factory: pytest.TempPathFactory) -> openpyxl.Workbook:
    tmp = tmp_path_factory.mktemp("xlsx")
    path = write_history(tmp / "s.duckdb")
    out = tmp / "pack.xlsx"
    with Store.open(path, read_only=True) as store:
        data = render_report("all", store.con, start=START, end=END, now=NOW, rates=RATES,
                             fmt="xlsx", output_path=out)
    assert isinstance(data, bytes) and out.read_bytes() == data
    return openpyxl.load_workbook(out)


def _header(ws: object) -> list[str]:
    return [c.value for c in next(ws.iter_rows(min_row=1, max_row=1))]  # type: ignore[attr-defined]


def _table(ws: object) -> list[dict[str, object]]:
    rows = list(ws.iter_rows(values_only=True))  # type: ignore[attr-defined]
    return [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def test_sheets(workbook: openpyxl.Workbook) -> None:
    assert workbook.sheetnames == ["usage", "forecast", "forecast series", "chargeback",
                                   "rightsizing", "about"]


def test_chargeback_sheet_types_and_formats(workbook: openpyxl.Workbook) -> None:
    ws = workbook["chargeback"]
    head = _header(ws)
    assert head[:6] == ["user", "jobs", "gpu_h_allocated", "gpu_h_used", "gpu_h_idle",
                        "util_pct"]
    assert "total_cost" in head and "burst_cost" in head
    rows = {r["user"]: r for r in _table(ws)}
    bob = rows["bob"]
    assert isinstance(bob["jobs"], int) and bob["jobs"] == 1
    assert isinstance(bob["gpu_h_allocated"], int | float)  # numbers, not text
    assert bob["gpu_cost"] == pytest.approx(23 * RATE_A100)
    col = {name: i + 1 for i, name in enumerate(head)}
    r = next(i for i, row in enumerate(ws.iter_rows(values_only=True), start=1)
             if row[0] == "bob")
    assert ws.cell(r, col["gpu_cost"]).number_format == '#,##0.00 "EUR"'
    assert ws.cell(r, col["util_pct"]).number_format == "0.0"
    assert ws.cell(r, col["gpu_h_allocated"]).data_type == "n"
    assert ws.freeze_panes == "A2"


def test_usage_sheet_has_dates_and_numbers(workbook: openpyxl.Workbook) -> None:
    ws = workbook["usage"]
    assert _header(ws)[:4] == ["period_start", "pool", "model", "gpus_present"]
    first = ws.cell(2, 1)
    assert isinstance(first.value, datetime) and first.value == datetime(2024, 3, 1)
    assert first.number_format == "yyyy-mm-dd"
    for row in _table(ws):
        assert isinstance(row["gpus_present"], int | float)
        assert isinstance(row["jobs_submitted"], int)


def test_rightsizing_and_about(workbook: openpyxl.Workbook) -> None:
    rows = _table(workbook["rightsizing"])
    assert [r["job_id"] for r in rows] == [2, 5]
    about = list(workbook["about"].iter_rows(values_only=True))
    labels = [r[0] for r in about]
    assert labels.count("report") == 4 and "period" in labels
    assert any("not billed" in str(r[1]) for r in about)


def test_xlsx_path_is_the_file(tmp_path: Path) -> None:
    """A single report to XLSX also works (one data sheet and `about`)."""
    path = write_history(tmp_path / "s.duckdb")
    with Store.open(path, read_only=True) as store:
        data = render_report("chargeback", store.con, start=START, end=END, now=NOW,
                             rates=RATES, fmt="xlsx", by="project")
    out = tmp_path / "cb.xlsx"
    out.write_bytes(data if isinstance(data, bytes) else data.encode())
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == ["chargeback", "about"]
    assert _header(wb["chargeback"])[0] == "project"
