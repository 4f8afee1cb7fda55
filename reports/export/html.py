"""One self-contained HTML file: inline CSS, inline SVG charts, tables. No scripts, fonts or
URLs, so it opens offline and fetches nothing."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from reports.export.columns import display, is_numeric, kinds, title, totals_row
from reports.export.svg import render_chart
from reports.model import Report, Table

MAX_ROWS = 500
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1c1c1c}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 6px;border-bottom:1px solid #ccd}
h3{font-size:15px;margin:18px 0 6px}.meta{color:#555;margin:0 0 12px}
nav a{margin-right:14px}ul.notes{color:#333;max-width:1100px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:12.5px}
th,td{border:1px solid #d6d9e0;padding:3px 7px;vertical-align:top;white-space:nowrap}
td.w{white-space:normal;min-width:24em}.scroll{overflow-x:auto;max-width:100%}
th{background:#eef2f8;text-align:left;position:sticky;top:0}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:nth-child(even) td{background:#fafbfd}.more{color:#666;font-style:italic}
svg.chart{display:block;margin:8px 0;max-width:100%;height:auto;background:#fff}
svg .ct{font-size:14px;font-weight:600;fill:#222}svg .grid{stroke:#e4e6eb;stroke-width:1}
svg .yl{font-size:11px;fill:#555;text-anchor:end}svg .xl{font-size:11px;fill:#555;
text-anchor:middle}svg .lg{font-size:11px;fill:#333}svg .ln{fill:none;stroke-width:2}
svg .band{opacity:.18;stroke:none}svg .hl{stroke:#b23a48;stroke-width:1.5;stroke-dasharray:3 3}
svg .hlt{font-size:11px;fill:#b23a48;text-anchor:end}svg .empty{fill:#999;text-anchor:middle}
p.headline{font-size:17px;font-weight:600;background:#fff6d6;border-left:4px solid #d6a21e;
padding:8px 12px;margin:10px 0;max-width:1100px}
tfoot td{font-weight:700;background:#eef2f8;border-top:2px solid #99a}
"""


def render_html(reports: Sequence[Report]) -> str:
    title = reports[0].title if len(reports) == 1 else "fleetdeck capacity-planning pack"
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>{escape(title)}</h1>"]
    if reports:
        r0 = reports[0]
        out.append(f'<p class="meta">{escape(r0.period)} &middot; generated '
                   f"{r0.generated_at:%Y-%m-%d %H:%M} UTC &middot; money in "
                   f"{escape(r0.currency)}</p>")
    answers = [r for r in reports if r.headline]
    if len(reports) > 1 and answers:  # the pack: its answer first
        out += [f'<p class="headline" id="pack-headline">{escape(r.headline)}</p>'
                for r in answers]
    if len(reports) > 1:
        out.append("<nav>" + "".join(f'<a href="#{escape(r.name)}">{escape(r.title)}</a>'
                                     for r in reports) + "</nav>")
    for r in reports:
        out.append(f'<section id="{escape(r.name)}">')
        if len(reports) > 1:
            out.append(f"<h2>{escape(r.title)}</h2>")
            out.append(f'<p class="meta">{escape(r.period)}</p>')
        if r.headline:
            out.append(f'<p class="headline">{escape(r.headline)}</p>')
        for c in r.charts:
            out.append(render_chart(c))
        if r.notes:
            out.append('<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in r.notes)
                       + "</ul>")
        for t in r.tables:
            out.append(_table(t, r.currency))
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _table(t: Table, currency: str) -> str:
    frame = t.frame.drop([c for c in t.frame.columns if c == "explanation"])
    ks = kinds(frame)
    num = [is_numeric(k) for k in ks]
    out = [f"<h3>{escape(t.title)}</h3>", '<div class="scroll"><table><thead><tr>']
    out += [f'<th data-col="{escape(c)}">{escape(title(c, currency))}</th>'
            for c in frame.columns]
    out.append("</tr></thead><tbody>")
    for row in frame.head(MAX_ROWS).iter_rows():
        cells = [_td(display(v, k), n) for v, k, n in zip(row, ks, num, strict=True)]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody>")
    if t.totals and frame.height:
        total = totals_row(frame)
        out.append('<tfoot><tr class="totals">' + "".join(
            _td(display(v, k) if i else str(v), n and i > 0)
            for i, (v, k, n) in enumerate(zip(total, ks, num, strict=True))) + "</tr></tfoot>")
    out.append("</table></div>")
    if frame.height == 0:
        out.append('<p class="more">no rows</p>')
    elif frame.height > MAX_ROWS:
        out.append(f'<p class="more">First {MAX_ROWS} of {frame.height} rows; export csv or '
                   "xlsx for all.</p>")
    return "".join(out)


def _td(text: str, numeric: bool) -> str:
    if numeric:
        return f'<td class="n">{escape(text)}</td>'
    return f'<td class="w">{escape(text)}</td>' if len(text) > 40 else f"<td>{escape(text)}</td>"
