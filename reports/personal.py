"""One user's day: GPU-hours and spend since midnight UTC, for a member's console header.

The same ledger and chargeback lines as `fleetdeck report chargeback`, narrowed to one user, so
the header and the report never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import polars as pl

from reports.chargeback import chargeback
from reports.ledger import build_ledger
from reports.rates import Rates
from reports.sources import from_store, to_naive_utc


@dataclass(frozen=True, slots=True)
class UserDay:
    """What `user` allocated and spent today (UTC day so far)."""

    user: str
    gpu_h_today: float
    spend_today: float


def user_day(con: duckdb.DuckDBPyConnection, user: str, *, now: float,
             rates: Rates | None = None) -> UserDay:
    """`user`'s GPU-hours and total cost from 00:00 UTC today to `now`."""
    end = to_naive_utc(now)
    start = datetime(end.year, end.month, end.day)
    if end - start < timedelta(seconds=1):
        return UserDay(user, 0.0, 0.0)
    table = chargeback(build_ledger(from_store(con, start, end, now=end)), by="user",
                       rates=rates)
    mine = table.filter(pl.col("user") == user)
    if mine.height == 0:
        return UserDay(user, 0.0, 0.0)
    return UserDay(user, float(mine["gpu_h_allocated"][0] or 0.0),
                   float(mine["total_cost"][0] or 0.0))
