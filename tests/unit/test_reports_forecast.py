"""Forecast on known monthly series written into a real store (10 A100s, whole-month jobs)."""

from __future__ import annotations

import math
from datetime import date, datetime
from pathlib import Path

import pytest

from collectors.store.db import Store
from reports.forecast import BAND_Z, backtest, forecast, theil_sen
from reports.ledger import Ledger, build_ledger
from reports.rates import HOURS_PER_MONTH
from reports.sources import from_store
from tests.unit.test_reports_history import RATE_A100, RATES, monthly_history


def approx(v: object) -> object:
    return pytest.approx(v, rel=1e-9, abs=1e-9)


def _ledger(tmp_path: Path, allocated: list[int]) -> Ledger:
    path, end = monthly_history(tmp_path / "m.duckdb", allocated)
    with Store.open(path, read_only=True) as store:
        return build_ledger(from_store(store.con, datetime(2024, 1, 1), end, now=end))


def test_theil_sen_and_backtest_by_hand() -> None:
    slope, level = theil_sen([4, 5, 8, 8])
    assert slope == approx((4 / 3 + 1.5) / 2)  # median of 1, 2, 4/3, 3, 3/2, 0
    assert level == approx(8.125)  # median of 8.25, 7.83, 9.42, 8
    assert backtest([4, 5, 8, 8], 0.6) == pytest.approx([8 - 5.6, 8 - 9.2])


def test_40_50_80_80_gets_a_sensible_explained_answer(tmp_path: Path) -> None:
    fc = forecast(_ledger(tmp_path, [4, 5, 8, 8]), rates=RATES, months=3, ceiling_pct=80)
    plan = fc.plan.row(0, named=True)
    slope = (4 / 3 + 1.5) / 2
    point = [8.125 + slope * sum(0.6**k for k in range(1, h + 1)) for h in (1, 2, 3)]
    sigma = math.sqrt((2.4**2 + 1.2**2) / 2)
    assert plan["months_history"] == 4
    assert plan["allocation_pct_last"] == approx(80.0)
    assert plan["trend_pp_per_month"] == approx(slope * 10)  # up, about +14 pp/month
    assert plan["damping"] == 0.6  # short history: growth fades instead of running on
    assert plan["allocation_pct_forecast"] == approx(point[2] * 10)  # ~98%, not 122%
    band = BAND_Z * sigma * math.sqrt(3)
    assert plan["allocation_pct_low"] == approx((point[2] - band) * 10)
    assert plan["allocation_pct_high"] == approx((point[2] + band) * 10)
    assert plan["crossing_month"] == date(2024, 3, 1)
    assert plan["crossing"] == "above the ceiling since 2024-03"
    # p95 = mean here (whole-month jobs): keep 9.79 GPUs under 80% -> 12.24 GPUs -> buy 3
    assert plan["buy_gpus"] == 3
    assert plan["buy_gpus_high"] == math.ceil((point[2] + band) / 0.8 - 10)
    assert plan["buy_cost_per_month_amortized"] == approx(3 * RATE_A100 * HOURS_PER_MONTH)
    excess = sum(8 * (p / 8) - 8 for p in point) / 3 * HOURS_PER_MONTH
    assert plan["burst_gpu_h_per_month"] == approx(excess)
    assert plan["cloud_gpu_hour"] == 3.0
    assert plan["burst_cost_per_month"] == approx(excess * 3.0)
    assert plan["break_even_gpu_h_per_month"] == approx(3 * RATE_A100 * HOURS_PER_MONTH / 3.0)
    assert plan["cheaper"] == "buy"
    assert plan["backtest_mae_pp"] == approx(18.0)
    assert plan["backtest_rmse_pp"] == approx(sigma * 10)
    assert plan["naive_mae_pp"] == approx(15.0)
    text = plan["explanation"]
    assert "40% -> 50% -> 80% -> 80%" in text
    assert "paused" in text and "capped by capacity" in text
    assert "needs 3 more" in text and "buy is cheaper" in text
    assert "same as last month" in text
    series = fc.series.filter(fc.series["kind"] == "forecast")
    assert series["month"].to_list() == [date(2024, 5, 1), date(2024, 6, 1), date(2024, 7, 1)]
    assert series["allocation_pct"].to_list() == pytest.approx([p * 10 for p in point])


def test_steady_growth_is_extrapolated_and_crossing_found(tmp_path: Path) -> None:
    fc = forecast(_ledger(tmp_path, [2, 3, 4, 5, 6, 7]), rates=RATES, months=3)
    plan = fc.plan.row(0, named=True)
    assert plan["damping"] == 1.0  # six months: the backtest picks the undamped trend
    assert plan["trend_pp_per_month"] == approx(10.0)
    assert plan["backtest_mae_pp"] == approx(0.0)
    assert plan["crossing_month"] == date(2024, 7, 1)
    assert plan["crossing"] == "forecast to cross in 2024-07"
    assert plan["allocation_pct_forecast"] == approx(100.0)
    # the band is the 1%-of-capacity floor: errors were zero
    assert plan["allocation_pct_high"] - plan["allocation_pct_forecast"] == approx(
        BAND_Z * 1.0 * math.sqrt(3))
    assert plan["buy_gpus"] == 3  # 10 GPUs p95 / 0.8 = 12.5
    hist = fc.series.filter(fc.series["kind"] == "history")["allocation_pct"].to_list()
    assert hist == pytest.approx([20, 30, 40, 50, 60, 70])


def test_declining_allocation_needs_no_purchase(tmp_path: Path) -> None:
    fc = forecast(_ledger(tmp_path, [7, 6, 5, 4]), rates=RATES, months=3)
    plan = fc.plan.row(0, named=True)
    assert plan["trend_pp_per_month"] < 0
    assert plan["buy_gpus"] == 0 and plan["cheaper"] == "-"
    assert plan["crossing_month"] is None
    assert plan["crossing"].startswith("not expected within 3 months")
    assert "No purchase needed" in plan["explanation"]
