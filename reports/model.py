"""What exporters render: reports made of tables, notes and chart data (no rendering here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import polars as pl


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    """Short id, also the XLSX sheet name (<= 31 characters)."""
    title: str
    frame: pl.DataFrame
    totals: bool = False
    """Renderers add a totals row (sums of the additive columns; see export/columns.py)."""


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    x: tuple[float, ...]
    """Epoch seconds (UTC)."""
    y: tuple[float | None, ...]
    dashed: bool = False


@dataclass(frozen=True, slots=True)
class Band:
    name: str
    x: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class LineChart:
    title: str
    y_label: str
    series: tuple[Series, ...]
    bands: tuple[Band, ...] = ()
    hlines: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class BarChart:
    title: str
    x_label: str
    labels: tuple[str, ...]
    values: tuple[float, ...]


Chart = LineChart | BarChart


@dataclass(frozen=True, slots=True)
class Report:
    name: str
    title: str
    start: datetime
    end: datetime
    generated_at: datetime
    currency: str
    tables: tuple[Table, ...]
    notes: tuple[str, ...] = ()
    charts: tuple[Chart, ...] = field(default_factory=tuple)
    headline: str = ""
    """The answer in one sentence, shown above everything else (the forecast's purchase)."""

    @property
    def period(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC"
