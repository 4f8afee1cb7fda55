"""The Reports screen's chart marks a period the report's end cuts short (today) instead of
drawing it as a drop."""

from __future__ import annotations

from typing import Any

import msgspec

from console.engine.api.replies import ReportTable
from console.screens.reports import PARTIAL_MARK, chart_from


def test_partial_period_is_marked_in_the_chart() -> None:
    rows: list[list[Any]] = [["2026-11-30", "train", 40.0, False],
                             ["2026-12-01", "train", 41.0, False],
                             ["2026-12-02", "train", 9.5, True]]
    report = ReportTable(name="usage", title="Usage", rows=rows,
                         columns=["period_start", "pool", "gpus_allocated_mean", "partial"])
    title, pairs = chart_from(report)
    assert pairs == [("2026-11-30", 40.0), ("2026-12-01", 41.0),
                     ("2026-12-02" + PARTIAL_MARK, 9.5)]
    assert title.endswith("(* partial period, still filling)")
    title, pairs = chart_from(msgspec.structs.replace(report, rows=rows[:2]))
    assert "partial" not in title and not any(lab.endswith(PARTIAL_MARK) for lab, _ in pairs)
