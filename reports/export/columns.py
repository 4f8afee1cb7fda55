"""Column kinds from names and types (units live in column names), and display formatting."""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Literal

import polars as pl

Kind = Literal["money", "pct", "hours", "seconds", "int", "float", "date", "datetime", "text"]


def kind_of(name: str, dtype: pl.DataType) -> Kind:
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    if not dtype.is_numeric():
        return "text"
    if "cost" in name or name == "cloud_gpu_hour":
        return "money"
    if name.endswith(("_pct", "_pp")) or "_pct_" in name:
        return "pct"
    if name.endswith("_s"):
        return "seconds"
    if name.endswith("_h") or "_h_" in name:
        return "hours"
    if dtype.is_integer():
        return "int"
    return "float"


def kinds(frame: pl.DataFrame) -> list[Kind]:
    return [kind_of(n, t) for n, t in frame.schema.items()]


def display(value: object, kind: Kind) -> str:
    """A cell as people read it (text, Markdown, HTML); empty for missing values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if kind == "date" and isinstance(value, date):
        return f"{value:%Y-%m-%d}"
    if kind == "datetime" and isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    v = float(value)
    if kind == "money":
        return f"{v:,.2f}"
    if kind == "pct":
        return f"{v:.1f}"
    if kind == "hours":
        return f"{v:,.2f}"
    if kind == "seconds":
        return duration(v)
    if kind == "int":
        return f"{int(v):,}"
    return f"{v:,.2f}"


def duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def is_numeric(kind: Kind) -> bool:
    return kind in ("money", "pct", "hours", "seconds", "int", "float")
