"""A member's day for the console header: the chargeback report's numbers for one user, from
00:00 UTC to now."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from collectors.store.db import Store
from reports.chargeback import chargeback
from reports.ledger import build_ledger
from reports.personal import user_day
from reports.sources import from_store
from tests.unit.test_reports_history import RATES, write_history

NOON = datetime(2024, 3, 2, 12, 0)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_history(tmp_path_factory.mktemp("personal") / "s.duckdb")


def test_user_day_matches_the_report_for_today(store: Path) -> None:
    now = NOON.replace(tzinfo=UTC).timestamp()
    with Store.open(store, read_only=True) as s:
        report = chargeback(build_ledger(from_store(s.con, datetime(2024, 3, 2), NOON,
                                                    now=NOON)), by="user", rates=RATES)
        users = [u for u in report["user"].to_list() if not u.startswith("(")]
        assert users  # the history has work on that day
        for user in users:
            row = report.filter(pl.col("user") == user)
            day = user_day(s.con, user, now=now, rates=RATES)
            assert day.gpu_h_today == pytest.approx(row["gpu_h_allocated"][0])
            assert day.spend_today == pytest.approx(row["total_cost"][0])
        nobody = user_day(s.con, "nobody", now=now, rates=RATES)
        assert (nobody.gpu_h_today, nobody.spend_today) == (0.0, 0.0)
