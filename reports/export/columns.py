"""Column kinds from names and types (units live in column names), how cells read
(`collectors.formatting`), column titles for people (with units) and the totals row of
additive columns."""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Literal

import polars as pl

from collectors.formatting import duration_short, grouped

Kind = Literal["money", "pct", "hours", "seconds", "int", "float", "date", "datetime", "text",
               "id", "bool"]
ID_NAMES = frozenset({"id", "job", "job_id", "instance_id", "request_id", "pid"})


def kind_of(name: str, dtype: pl.DataType) -> Kind:
    if name in ID_NAMES or name.endswith("_id"):
        return "id"  # a name, not a quantity: never 23,092
    if dtype == pl.Boolean:
        return "bool"
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
    """A cell as people read it (text, Markdown, HTML): missing values "-", yes/no."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if kind == "id":
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    if kind == "date" and isinstance(value, date):
        return f"{value:%Y-%m-%d}"
    if kind == "datetime" and isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M}"
    if not isinstance(value, int | float):
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


ADDITIVE: frozenset[Kind] = frozenset({"money", "hours"})
COUNT_NAMES = frozenset({"jobs", "tasks", "instances"})
_WORDS = {"gpu": "GPU", "gpus": "GPUs", "cpu": "CPU", "cpus": "CPUs", "mem": "memory",
          "h": "hours", "pct": "%", "pp": "points", "p95": "p95", "gb": "GB", "id": "ID",
          "mae": "MAE", "rmse": "RMSE", "util": "utilization", "s": "seconds"}
_TITLES = {"cpu_core_h": "CPU core-hours", "mem_gb_h": "Memory GB-hours",
           "burst_instance_h": "Burst instance-hours", "trend_pp_per_month":
           "Trend (points/month)", "cloud_gpu_hour": "Cloud price ({cur}/GPU-hour)",
           "buy_gpus": "GPUs to buy", "buy_gpus_high": "GPUs to buy (upper band)",
           "buy_cost_per_month_amortized": "Purchase, amortized ({cur}/month)",
           "burst_cost_per_month": "Burst instead ({cur}/month)",
           "burst_gpu_h_per_month": "Burst GPU-hours/month",
           "break_even_gpu_h_per_month": "Break-even (GPU-hours/month)"}


def title(name: str, currency: str = "USD") -> str:
    """A column title for people, its unit in brackets: gpu_h_idle -> "GPU-hours idle",
    total_cost -> "Total cost (USD)", util_pct -> "Utilization (%)", job_id -> "Job ID"."""
    if name in _TITLES:
        return _TITLES[name].format(cur=currency)
    words = name.split("_")
    unit = ""
    if "pct" in words[:-1]:
        words, unit = [w for w in words if w != "pct"], "%"
    if words[0] == "gpu" and len(words) > 2 and words[1] == "h":
        words = ["GPU-hours", *words[2:]]
    elif words[-1] in ("pct", "pp", "s") and len(words) > 1:
        unit = {"pct": "%", "pp": "percentage points", "s": "seconds"}[words[-1]]
        words = words[:-1]
    elif words[-1] == "h" and len(words) > 1:
        unit, words = "hours", words[:-1]
    if "cost" in words or name == "cloud_gpu_hour":
        unit = currency
    text = " ".join(_WORDS.get(w, w) for w in words)
    text = text[:1].upper() + text[1:]
    return f"{text} ({unit})" if unit else text


def totals_row(frame: pl.DataFrame) -> list[object]:
    """The totals row of a table: "Total" in the first column, sums of money, hours and
    counts, utilization as GPU-hours used / allocated; other columns empty."""
    ks = kinds(frame)
    out: list[object] = []
    for i, (name, kind) in enumerate(zip(frame.columns, ks, strict=True)):
        column = frame[name]
        if i == 0:
            out.append("Total")
        elif kind in ADDITIVE or (kind == "int" and name in COUNT_NAMES):
            out.append(column.sum())
        elif name == "util_pct" and {"gpu_h_used", "gpu_h_allocated"} <= set(frame.columns):
            alloc = float(frame["gpu_h_allocated"].sum())
            out.append(float(frame["gpu_h_used"].sum()) / alloc * 100 if alloc else None)
        else:
            out.append(None)
    return out


def with_totals(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with its totals row appended (values cast to the columns' types)."""
    if frame.height == 0 or frame.width == 0:
        return frame
    row = pl.DataFrame([totals_row(frame)], schema=[
        (n, pl.String if i == 0 else t) for i, (n, t) in enumerate(frame.schema.items())],
        orient="row")
    first = frame.columns[0]
    return pl.concat([frame.with_columns(pl.col(first).cast(pl.String)), row], how="vertical")
