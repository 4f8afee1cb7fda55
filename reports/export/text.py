"""Plain-text tables for terminals and Markdown for tickets."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from reports.export.columns import display, is_numeric, kinds, with_totals
from reports.model import Report, Table

MAX_ROWS = 500
LONG_TEXT = ("explanation",)


def _cells(frame: pl.DataFrame) -> tuple[list[str], list[list[str]], list[bool]]:
    ks = kinds(frame)
    rows = [[display(v, k) for v, k in zip(row, ks, strict=True)]
            for row in frame.head(MAX_ROWS).iter_rows()]
    return list(frame.columns), rows, [is_numeric(k) for k in ks]


def _split(t: Table) -> pl.DataFrame:
    """Long text columns leave the table (reports repeat them in their notes); a table with
    totals gets its totals row."""
    frame = t.frame.drop([c for c in t.frame.columns if c in LONG_TEXT])
    return with_totals(frame) if t.totals else frame


def render_text(reports: Sequence[Report]) -> str:
    out: list[str] = []
    for r in reports:
        out += [f"{r.title}", "=" * len(r.title), f"{r.period}; money in {r.currency}", ""]
        if r.headline:
            out += [r.headline, ""]
        for t in r.tables:
            frame = _split(t)
            out.append(t.title)
            out.append(_text_table(frame))
            if t.frame.height > MAX_ROWS:
                out.append(f"(first {MAX_ROWS} of {t.frame.height} rows; use csv or xlsx "
                           "for all)")
            out.append("")
        out += [f"- {n}" for n in r.notes]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _text_table(frame: pl.DataFrame) -> str:
    if frame.width == 0:
        return "(no columns)"
    head, rows, num = _cells(frame)
    if not rows:
        return "  ".join(head) + "\n(no rows)"
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if n else c.ljust(w)
                         for c, w, n in zip(cells, widths, num, strict=True)).rstrip()

    return "\n".join([line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def render_markdown(reports: Sequence[Report]) -> str:
    out: list[str] = []
    for r in reports:
        out += [f"## {r.title}", "", f"{r.period}; money in {r.currency}.", ""]
        if r.headline:
            out += [f"**{_md_escape(r.headline)}**", ""]
        for t in r.tables:
            frame = _split(t)
            out += [f"### {t.title}", ""]
            if frame.height == 0:
                out += ["(no rows)", ""]
                continue
            head, rows, num = _cells(frame)
            out.append("| " + " | ".join(_md_escape(h) for h in head) + " |")
            out.append("|" + "|".join("---:" if n else "---" for n in num) + "|")
            out += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
            if t.frame.height > MAX_ROWS:
                out.append(f"\n_First {MAX_ROWS} of {t.frame.height} rows._")
            out.append("")
        out += [f"- {_md_escape(n)}" for n in r.notes]
        out.append("")
    return "\n".join(out).rstrip() + "\n"
