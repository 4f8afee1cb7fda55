"""Columns of a KeyedTable: which fit a width (priorities), how wide each is (growing to its
content), their sort keys (Shift+letter) and the value a cell sorts by.

Pure functions of the column specs, the width and the widest content seen, so they are tested
without a terminal.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

PAD = 1  # blank cells each side of a column


@dataclass(frozen=True, slots=True)
class Column:
    """A table column. `width` is its natural width (None: the remaining width, at least the
    label); `priority` (0-9) decides which columns stay on a narrow terminal (higher stays
    longer); a `grow` column takes spare width up to its widest content."""

    key: str
    label: str
    width: int | None = None
    priority: int = 5
    grow: bool = False


def base_width(column: Column, need: int) -> int:
    """The width a column starts from: its own, a growing column's content if narrower;
    never less than the label and the sort mark (▲/▼) after it."""
    label = len(column.label) + 1
    if column.width is None:
        return label
    if column.grow:
        return max(label, min(column.width, need))
    return max(label, column.width)


def fit_widths(columns: Sequence[Column], width: int, need: Sequence[int]) -> tuple[int, ...]:
    """Each column's width for a table `width` cells wide (0: left out). Columns with the
    lowest priority go first (the rightmost of equals) until the rest fit. Spare width goes
    to growing columns up to their widest content (`need`), the highest priority first; a
    growing column still cut makes columns of lower priority give way to it. What is left
    goes to columns without a width."""
    shown = list(range(len(columns)))
    base = [base_width(c, n) for c, n in zip(columns, need, strict=True)]

    def lowest(among: list[int]) -> int:
        return min(among, key=lambda i: (columns[i].priority, -i))

    while len(shown) > 1 and _used(base, shown) > width:
        shown.remove(lowest(shown))
    widths = _grow(columns, shown, base, need, width)
    while True:
        cut = [i for i in shown if (columns[i].grow or columns[i].width is None)
               and widths[i] < need[i]]
        top = max((columns[i].priority for i in cut), default=-1)
        weaker = [i for i in shown if columns[i].priority < top]
        if not weaker:
            break
        shown.remove(lowest(weaker))
        widths = _grow(columns, shown, base, need, width)
    flex = [i for i in shown if columns[i].width is None]
    spare = max(0, width - sum(widths[i] + 2 * PAD for i in shown))
    for n, i in enumerate(flex):
        widths[i] += spare // len(flex) + (1 if n < spare % len(flex) else 0)
    return tuple(widths)


def _used(widths: Sequence[int], shown: Sequence[int]) -> int:
    return sum(widths[i] + 2 * PAD for i in shown)


def _grow(columns: Sequence[Column], shown: list[int], base: Sequence[int],
          need: Sequence[int], width: int) -> list[int]:
    """Widths with the spare width given to growing columns by priority (the highest first;
    equals share it in proportion to what each still wants)."""
    widths = [0] * len(columns)
    for i in shown:
        widths[i] = base[i]
    spare = max(0, width - _used(base, shown))
    growers = [i for i in shown if columns[i].grow or columns[i].width is None]
    for priority in sorted({columns[i].priority for i in growers}, reverse=True):
        wants = {i: max(0, need[i] - widths[i]) for i in growers
                 if columns[i].priority == priority}
        total = sum(wants.values())
        if not total or not spare:
            continue
        if total <= spare:
            for i, want in wants.items():
                widths[i] += want
            spare -= total
            continue
        given = 0
        for i, want in wants.items():
            extra = spare * want // total
            widths[i] += extra
            given += extra
        spare -= given
    return widths


def sort_letters(columns: Sequence[Column]) -> dict[str, str]:
    """letter -> column key: each column gets the first letter of its label not taken by a
    column to its left (Shift+that letter sorts by it, as in k9s)."""
    letters: dict[str, str] = {}
    for c in columns:
        for ch in c.label.lower():
            if ch.isalpha() and ch not in letters:
                letters[ch] = c.key
                break
    return letters


_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_NUMBER = re.compile(r"^[$€£]?\s*(-?[\d,]*\.?\d+)\s*([kmgtp]i?b|[kmgt]|%|w|°c|c)?\b", re.I)
_SCALE = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40, "pib": 2**50, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "pb": 1e15}
MISSING_TEXT = frozenset({"", "-", "—", "none", "n/a"})

SortValue = tuple[int, float, str]


def sort_value(text: str) -> SortValue:
    """What a cell sorts by: numbers (with units: 4m05s, 55%, 12 GiB, $1,234.50, "3/8" by
    its first number) before text; missing values ("-", empty) last either way."""
    t = text.strip().lstrip("⚠ ").strip()
    low = t.lower()
    if low in MISSING_TEXT:
        return (2, 0.0, "")
    m = _DURATION.match(low)
    if m and any(m.groups()):
        d, h, mi, s = (int(g or 0) for g in m.groups())
        return (0, float(((d * 24 + h) * 60 + mi) * 60 + s), "")
    m = _NUMBER.match(low)
    if m:
        try:
            value = float(m.group(1).replace(",", ""))
        except ValueError:
            return (1, 0.0, low)
        unit = (m.group(2) or "").lower()
        return (0, value * _SCALE.get(unit, 1.0), low)
    return (1, 0.0, low)
