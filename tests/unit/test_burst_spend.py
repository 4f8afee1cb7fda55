"""Burst cost accrual: periods split exactly, the minimum is billed once, budgets per day/month."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.policies.spend import (
    BurstInstance,
    accrue_spend,
    budget_use,
    instance_cost,
    period_starts,
)

H = 3600.0


def at(day: int, hour: float, month: int = 3) -> float:
    return datetime(2026, month, day, tzinfo=UTC).timestamp() + hour * H


def ended(launch: float, end: float, price: float = 2.0, **kw: object) -> BurstInstance:
    return BurstInstance("i-1", "aws", "a-spot", price, launch, "terminated",
                         terminated_at=end, **kw)  # type: ignore[arg-type]


def test_hourly_accrual_splits_an_instance_over_periods() -> None:
    inst = ended(at(5, 10.5), at(5, 13.25))
    rows = [r for h in range(9, 15) for r in accrue_spend([inst], at(5, h), at(5, h + 1))]
    assert [round(r.hours, 6) for r in rows] == [0.5, 1.0, 1.0, 0.25]
    assert [r.ts for r in rows] == [at(5, 10.5), at(5, 11), at(5, 12), at(5, 13)]
    assert sum(r.amount for r in rows) == pytest.approx(5.5)
    assert instance_cost(inst, at(6, 0)) == pytest.approx(5.5)
    row = rows[0].store_row()
    assert row["ts"] == datetime(2026, 3, 5, 10, 30) and row["amount"] == pytest.approx(1.0)


def test_minimum_billed_time_is_charged_once_where_the_instance_ended() -> None:
    inst = ended(at(5, 10 + 50 / 60), at(5, 11 + 10 / 60))
    a = accrue_spend([inst], at(5, 10), at(5, 11), min_billed_hours=1.0)
    b = accrue_spend([inst], at(5, 11), at(5, 12), min_billed_hours=1.0)
    assert a[0].hours == pytest.approx(10 / 60)
    assert b[0].hours == pytest.approx(50 / 60)  # 10 min used + 40 min to the 1 h minimum
    assert instance_cost(inst, at(6, 0), min_billed_hours=1.0) == pytest.approx(2.0)
    # a long run is not topped up
    assert instance_cost(ended(at(5, 0), at(5, 3)), at(6, 0), min_billed_hours=1.0) == 6.0


def test_running_instance_accrues_to_the_period_end_without_top_up() -> None:
    run = BurstInstance("i-2", "aws", "a", 3.0, at(5, 10.75), "ready")
    rows = accrue_spend([run], at(5, 10), at(5, 11), min_billed_hours=1.0)
    assert rows[0].hours == pytest.approx(0.25) and rows[0].amount == pytest.approx(0.75)
    assert accrue_spend([run], at(5, 9), at(5, 10)) == ()


def test_budget_use_per_day_and_month_with_committed_minimum() -> None:
    now = at(15, 1)
    overnight = ended(at(14, 22), at(15, 0.5), price=1.0, team="vision", project="seg")
    last_month = ended(at(28, 0, month=2), at(28, 5, month=2), price=100.0, team="vision")
    fresh = BurstInstance("i-3", "aws", "h100", 30.0, at(15, 0.75), "provisioning",
                          team="nlp", project="llm")
    use = budget_use([overnight, last_month, fresh], now, min_billed_hours=1.0)
    assert use[("team", "vision", "daily")].spent == pytest.approx(0.5)
    assert use[("team", "vision", "monthly")].spent == pytest.approx(2.5)
    assert use[("project", "seg", "monthly")].total == pytest.approx(2.5)
    nlp = use[("team", "nlp", "daily")]
    assert nlp.spent == pytest.approx(7.5) and nlp.committed == pytest.approx(22.5)
    g = use[("global", "", "monthly")]
    assert g.spent == pytest.approx(10.0) and g.committed == pytest.approx(22.5)
    assert period_starts(now) == {"daily": at(15, 0), "monthly": at(1, 0)}


def test_from_store_row() -> None:
    row = {"instance_id": "i-9", "provider": "lab", "offer": "h100", "instance_type": "x",
           "market": "spot", "gpu_model": "H100", "gpu_count": 8, "node": "burst-9",
           "pool": "burst", "team": "vision", "project": "seg", "price_per_hour": 32.77,
           "state": "ready", "launched_at": datetime(2026, 3, 5, 10, 0),
           "ready_at": datetime(2026, 3, 5, 10, 3), "terminated_at": None, "cost": None}
    inst = BurstInstance.from_row(row, request_id="fd-1-0", last_job_ended_at=at(5, 11))
    assert inst.launched_at == at(5, 10) and inst.ready_at == at(5, 10.05)
    assert inst.active and inst.gpu_count == 8 and inst.market == "spot"
    assert inst.terminated_at is None and inst.request_id == "fd-1-0"


@settings(max_examples=60, deadline=None)
@given(st.floats(0, 50 * H), st.floats(0, 50 * H), st.floats(0, 3), st.floats(0.1, 10),
       st.lists(st.floats(60, 6 * H), min_size=1, max_size=40))
def test_consecutive_periods_sum_to_the_instance_cost(launch: float, dur: float,
                                                      min_h: float, price: float,
                                                      steps: list[float]) -> None:
    t0 = at(1, 0)
    inst = ended(t0 + launch, t0 + launch + dur, price=price)
    edges = [t0]
    while edges[-1] < t0 + launch + dur + 1:
        edges.append(edges[-1] + steps[len(edges) % len(steps)])
    total = sum(r.amount for a, b in itertools.pairwise(edges)
                for r in accrue_spend([inst], a, b, min_billed_hours=min_h))
    expected = max(dur / H, min_h) * price
    # epoch seconds near 1.8e9 carry ~1e-7 s of float error: compare money to 1e-6
    assert total == pytest.approx(expected, rel=1e-9, abs=1e-6)
    assert instance_cost(inst, edges[-1], min_billed_hours=min_h) == pytest.approx(
        expected, rel=1e-9, abs=1e-6)


def test_minimum_billing_survives_epoch_rounding() -> None:
    """A terminated instance whose end equals `now` to the last float bit still gets the
    minimum-billing top-up (a 1e-9 epsilon vanishes at epoch magnitudes)."""
    from scheduler.policies.spend import BurstInstance, instance_cost

    end = 1_795_357_235.422048  # a stored microsecond timestamp, exactly representable-ish
    inst = BurstInstance(instance_id="i", provider="p", offer="o", price_per_hour=2.0,
                         launched_at=end - 9.0, state="terminated", terminated_at=end)
    assert instance_cost(inst, end, min_billed_hours=1.0) == 2.0
