"""Inline SVG charts drawn here (no chart library, no scripts): lines with bands, and bars."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from html import escape

from reports.model import BarChart, Chart, LineChart

PALETTE = ("#1f6fb2", "#e07b00", "#2a9d4b", "#b23a48", "#7a4fb2", "#6b6b6b")
W, H = 880, 300
ML, MR, MT, MB = 64, 16, 34, 58


def render_chart(chart: Chart) -> str:
    return _line(chart) if isinstance(chart, LineChart) else _bars(chart)


def _nice_ticks(hi: float, n: int = 5) -> list[float]:
    if hi <= 0:
        return [0.0, 1.0]
    raw = hi / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [i * step for i in range(math.ceil(hi / step) + 1)]


def _fmt_num(v: float) -> str:
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:g}" if v == int(v) else f"{v:.1f}"


def _time_label(t: float, span: float) -> str:
    d = datetime.fromtimestamp(t, UTC)
    if span <= 2 * 86400:
        return f"{d:%m-%d %H:%M}"
    if span <= 120 * 86400:
        return f"{d:%Y-%m-%d}"
    return f"{d:%Y-%m}"


def _frame(title: str) -> list[str]:
    return [f'<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
            f'aria-label="{escape(title)}">',
            f"<title>{escape(title)}</title>",
            f'<text x="{ML}" y="20" class="ct">{escape(title)}</text>']


def _line(c: LineChart) -> str:
    xs = [x for s in c.series for x in s.x] + [x for b in c.bands for x in b.x]
    ys = [y for s in c.series for y in s.y if y is not None]
    ys += [v for b in c.bands for v in b.high] + [v for _, v in c.hlines]
    out = _frame(c.title)
    if not xs or not ys:
        out.append(f'<text x="{W / 2}" y="{H / 2}" class="empty">no data</text></svg>')
        return "\n".join(out)
    x0, x1 = min(xs), max(xs)
    x1 = x1 if x1 > x0 else x0 + 1
    ticks = _nice_ticks(max(ys) * 1.05)
    y1 = ticks[-1]
    pw, ph = W - ML - MR, H - MT - MB

    def px(x: float) -> float:
        return ML + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return MT + ph - max(0.0, y) / y1 * ph

    for t in ticks:
        out.append(f'<line x1="{ML}" x2="{W - MR}" y1="{py(t):.1f}" y2="{py(t):.1f}" '
                   f'class="grid"/><text x="{ML - 6}" y="{py(t) + 4:.1f}" class="yl">'
                   f"{_fmt_num(t)}</text>")
    out.append(f'<text x="14" y="{MT + ph / 2}" class="yl" transform="rotate(-90 14 '
               f'{MT + ph / 2})">{escape(c.y_label)}</text>')
    distinct = sorted(set(xs))
    ticks_x = distinct if len(distinct) <= 13 else [x0 + (x1 - x0) * i / 6 for i in range(7)]
    for i, t in enumerate(ticks_x):
        anchor = ' style="text-anchor:end"' if t >= x1 and i else (
            ' style="text-anchor:start"' if t <= x0 else "")
        out.append(f'<text x="{px(t):.1f}" y="{H - MB + 16}" class="xl"{anchor}>'
                   f"{_time_label(t, x1 - x0)}</text>")
    for i, b in enumerate(c.bands):
        pts = [f"{px(x):.1f},{py(v):.1f}" for x, v in zip(b.x, b.low, strict=True)]
        pts += [f"{px(x):.1f},{py(v):.1f}" for x, v in zip(reversed(b.x), reversed(b.high),
                                                          strict=True)]
        out.append(f'<path d="M{" L".join(pts)} Z" class="band" fill="{PALETTE[(i + 1) % 6]}">'
                   f"<title>{escape(b.name)}</title></path>")
    for label, v in c.hlines:
        out.append(f'<line x1="{ML}" x2="{W - MR}" y1="{py(v):.1f}" y2="{py(v):.1f}" '
                   f'class="hl"/><text x="{W - MR - 4}" y="{py(v) - 4:.1f}" class="hlt">'
                   f"{escape(label)}</text>")
    for i, s in enumerate(c.series):
        color = PALETTE[i % len(PALETTE)]
        parts: list[str] = []
        pen = "M"
        for x, y in zip(s.x, s.y, strict=True):
            if y is None:
                pen = "M"
                continue
            parts.append(f"{pen}{px(x):.1f},{py(y):.1f}")
            pen = "L"
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        if parts:
            out.append(f'<path d="{" ".join(parts)}" class="ln" stroke="{color}"{dash}>'
                       f"<title>{escape(s.name)}</title></path>")
            if len(parts) == 1:
                cx, cy = parts[0][1:].split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{color}"/>')
    lx = ML
    for i, s in enumerate(c.series):
        out.append(f'<rect x="{lx}" y="{H - 22}" width="14" height="4" '
                   f'fill="{PALETTE[i % len(PALETTE)]}"/><text x="{lx + 18}" y="{H - 16}" '
                   f'class="lg">{escape(s.name)}</text>')
        lx += 30 + 7 * len(s.name)
    out.append("</svg>")
    return "\n".join(out)


def _bars(c: BarChart) -> str:
    out = _frame(c.title)
    if not c.values:
        out.append(f'<text x="{W / 2}" y="{H / 2}" class="empty">no data</text></svg>')
        return "\n".join(out)
    label_w = min(220, 12 + 7 * max(len(v) for v in c.labels))
    ticks = _nice_ticks(max(c.values) * 1.05)
    top = ticks[-1]
    pw = W - ML - MR - label_w
    bar_h = (H - MT - MB) / len(c.values)
    x0 = ML + label_w
    for t in ticks:
        x = x0 + t / top * pw
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{MT}" y2="{H - MB}" class="grid"/>'
                   f'<text x="{x:.1f}" y="{H - MB + 16}" class="xl">{_fmt_num(t)}</text>')
    for i, (label, v) in enumerate(zip(c.labels, c.values, strict=True)):
        y = MT + i * bar_h
        w = max(0.5, v / top * pw)
        out.append(f'<text x="{x0 - 6}" y="{y + bar_h * 0.65:.1f}" class="yl">'
                   f"{escape(label[:32])}</text>"
                   f'<rect x="{x0}" y="{y + bar_h * 0.15:.1f}" width="{w:.1f}" '
                   f'height="{bar_h * 0.7:.1f}" fill="{PALETTE[1]}"><title>{escape(label)}: '
                   f"{v:,.1f}</title></rect>")
    out.append(f'<text x="{x0 + pw / 2}" y="{H - 18}" class="xl">{escape(c.x_label)}</text>')
    out.append("</svg>")
    return "\n".join(out)
