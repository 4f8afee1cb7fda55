"""Column kinds from names and types (units live in column names), and how cells read
(`collectors.formatting`)."""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Literal

import polars as pl

from collectors.formatting import duration_short, grouped

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
    if kind == "pct":
        return grouped(v, 1)
    if kind == "seconds":
        return duration_short(v)
    if kind == "int":
        return grouped(int(v), 0)
    return grouped(v)  # money (the currency is in the column name), hours, float


def is_numeric(kind: Kind) -> bool:
    return kind in ("money", "pct", "hours", "seconds", "int", "float")
