"""Exporters: `render(reports, fmt)` gives the file's text (str) or bytes."""

from __future__ import annotations

from collections.abc import Sequence

from reports.export.data import render_csv, render_json, render_parquet
from reports.export.html import render_html
from reports.export.text import render_markdown, render_text
from reports.export.xlsx import render_xlsx
from reports.model import Report

FORMATS = ("table", "csv", "parquet", "xlsx", "html", "md", "json")
BINARY = frozenset({"parquet", "xlsx"})
SINGLE_TABLE = frozenset({"csv", "parquet"})
EXTENSIONS = {".txt": "table", ".csv": "csv", ".parquet": "parquet", ".xlsx": "xlsx",
              ".html": "html", ".htm": "html", ".md": "md", ".json": "json"}


def render(reports: Sequence[Report], fmt: str) -> str | bytes:
    """Render one or more reports. csv and parquet take one report and write its first table
    (the forecast's plan); every other format holds every table and note."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    if fmt in SINGLE_TABLE:
        if len(reports) != 1:
            raise ValueError(f"{fmt} holds one table: export one report, or use xlsx, html, md "
                             "or json for the pack")
        return render_csv(reports[0]) if fmt == "csv" else render_parquet(reports[0])
    if fmt == "table":
        return render_text(reports)
    if fmt == "md":
        return render_markdown(reports)
    if fmt == "json":
        return render_json(reports)
    if fmt == "html":
        return render_html(reports)
    return render_xlsx(reports)


__all__ = ["BINARY", "EXTENSIONS", "FORMATS", "SINGLE_TABLE", "render"]
