"""The XLSX pack opens with openpyxl: one sheet per report table, column titles for people
(units in brackets), typed cells, ids as text, a totals row under the chargeback."""

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
    assert head[:6] == ["User", "Jobs", "GPU-hours allocated", "GPU-hours used",
                        "GPU-hours idle", "Utilization (%)"]
    assert "Total cost (EUR)" in head and "Burst cost (EUR)" in head
    table = _table(ws)
    rows = {r["User"]: r for r in table}
    bob = rows["bob"]
    assert isinstance(bob["Jobs"], int) and bob["Jobs"] == 1
    assert isinstance(bob["GPU-hours allocated"], int | float)  # numbers, not text
    assert bob["GPU cost (EUR)"] == pytest.approx(23 * RATE_A100)
    col = {name: i + 1 for i, name in enumerate(head)}
    r = next(i for i, row in enumerate(ws.iter_rows(values_only=True), start=1)
             if row[0] == "bob")
    assert ws.cell(r, col["GPU cost (EUR)"]).number_format == '#,##0.00 "EUR"'
    assert ws.cell(r, col["Utilization (%)"]).number_format == "0.0"
    assert ws.cell(r, col["GPU-hours allocated"]).data_type == "n"
    assert ws.freeze_panes == "A2"
    total = table[-1]
    assert total["User"] == "Total"
    assert total["Total cost (EUR)"] == pytest.approx(
        sum(float(t["Total cost (EUR)"] or 0) for t in table[:-1]))


def test_usage_sheet_has_dates_and_numbers(workbook: openpyxl.Workbook) -> None:
    ws = workbook["usage"]
    assert _header(ws)[:4] == ["Period start", "Pool", "Model", "GPUs present"]
    first = ws.cell(2, 1)
    assert isinstance(first.value, datetime) and first.value == datetime(2024, 3, 1)
    assert first.number_format == "yyyy-mm-dd"
    for row in _table(ws):
        assert isinstance(row["GPUs present"], int | float)
        assert isinstance(row["Jobs submitted"], int)


def test_rightsizing_and_about(workbook: openpyxl.Workbook) -> None:
    rows = _table(workbook["rightsizing"])
    assert [r["Job ID"] for r in rows] == ["2", "5"]  # ids are names, not quantities
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
    assert _header(wb["chargeback"])[0] == "Project"
