"""`fleetdeck report` glue: flags, dates, formats, files; rates arithmetic."""

from __future__ import annotations

import argparse
import io
import json
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from collectors.errors import InputError
from collectors.store.db import Store
from reports.command import add_arguments, parse_when, render_report, run
from reports.rates import GpuRate, PoolRates, Rates
from tests.unit.test_reports_history import END, NOW, RATES, START, write_history


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_history(tmp_path_factory.mktemp("cli") / "s.duckdb")


def _run(store_path: Path, *argv: str) -> str:
    parser = argparse.ArgumentParser(prog="fleetdeck report")
    add_arguments(parser)
    args = parser.parse_args(list(argv))
    out = io.StringIO()
    with Store.open(store_path, read_only=True) as store:
        now = (NOW - datetime(1970, 1, 1)).total_seconds()
        assert run(args, store.con, rates=RATES, now=now, stdout=out) == 0
    return out.getvalue()


def test_parse_when() -> None:
    now = datetime(2024, 3, 10, 15, 30)
    assert parse_when("2024-03-01", now=now, flag="--from") == datetime(2024, 3, 1)
    assert parse_when("2024-03-01", now=now, flag="--to", is_end=True) == datetime(2024, 3, 2)
    assert parse_when("2024-02", now=now, flag="--to", is_end=True) == datetime(2024, 3, 1)
    assert parse_when("2024-12", now=now, flag="--to", is_end=True) == datetime(2025, 1, 1)
    assert parse_when("7d", now=now, flag="--from") == datetime(2024, 3, 3, 15, 30)
    assert parse_when("12h", now=now, flag="--from") == datetime(2024, 3, 10, 3, 30)
    assert parse_when("today", now=now, flag="--from") == datetime(2024, 3, 10)
    assert parse_when("2024-03-01T12:00+02:00", now=now, flag="--from") == datetime(
        2024, 3, 1, 10, 0)
    with pytest.raises(InputError) as e:
        parse_when("yesterday-ish", now=now, flag="--from")
    assert str(e.value).startswith('fleetdeck report: --from: expected a date (YYYY-MM-DD)')
    assert str(e.value).endswith('got "yesterday-ish"')


@pytest.mark.parametrize(("argv", "flag"), [
    (("chargeback", "--by", "owner"), "--by"),
    (("nope",), "NAME"),
    (("usage", "--every", "hour"), "--every"),
    (("usage", "--format", "pdf"), "--format"),
    (("forecast", "--months", "three"), "--months"),
    (("forecast", "--ceiling", "180"), "--ceiling"),
    (("usage", "--from", "2024-03-05", "--to", "2024-03-01"), "--from"),
    (("all", "--format", "csv"), "--format"),
    (("usage", "--user", "alice"), "--user"),
])
def test_bad_flags_raise_one_line_input_errors(store_path: Path, argv: tuple[str, ...],
                                               flag: str) -> None:
    with pytest.raises(InputError) as e:
        _run(store_path, *argv)
    msg = str(e.value)
    assert msg.startswith(f"fleetdeck report: {flag}: expected ") and "\n" not in msg
    assert e.value.exit_code == 2


def test_user_narrows_a_chargeback_to_their_jobs(store_path: Path) -> None:
    mine = _run(store_path, "chargeback", "--from", "2024-03-01", "--to", "2024-03-03",
                "--user", "alice", "--format", "csv")
    everyone = _run(store_path, "chargeback", "--from", "2024-03-01", "--to", "2024-03-03",
                    "--format", "csv")
    users = {line.split(",")[0] for line in everyone.splitlines()[1:]}
    assert "alice" in users and len(users - {"Total"}) > 1
    assert {line.split(",")[0] for line in mine.splitlines()[1:]} == {"alice", "Total"}


def test_table_markdown_json_csv_parquet(store_path: Path, tmp_path: Path) -> None:
    text = _run(store_path, "chargeback", "--from", "2024-03-01", "--to", "2024-03-03")
    assert "Chargeback by user" in text and "alice" in text and "money in EUR" in text
    md = _run(store_path, "usage", "--from", "2024-03-01", "--to", "2024-03-03", "--format",
              "md")
    assert "| period_start | pool | model |" in md and "|---|---|---|---:" in md
    out = tmp_path / "cb.json"
    msg = _run(store_path, "chargeback", "--from", "2024-03-01", "--to", "2024-03-03",
               "--by", "team", "-o", str(out))
    assert msg.startswith(f"wrote {out}") and "json" in msg
    body = json.loads(out.read_text())
    assert body["report"] == "chargeback" and body["currency"] == "EUR"
    teams = {r["team"]: r for r in body["tables"]["chargeback"]}
    assert teams["t1"]["gpu_h_allocated"] == pytest.approx(25 + 23)
    csv_path = tmp_path / "u.csv"
    _run(store_path, "usage", "--from", "2024-03-01", "--to", "2024-03-03", "-o", str(csv_path))
    assert csv_path.read_text().splitlines()[0].startswith("period_start,pool,model,")
    pq = tmp_path / "r.parquet"
    _run(store_path, "rightsizing", "--from", "2024-03-01", "--to", "2024-03-03", "-o",
         str(pq))
    frame = pl.read_parquet(pq)
    assert frame["job_id"].to_list() == [2, 5]


def test_render_report_all_markdown_holds_every_report(store_path: Path) -> None:
    with Store.open(store_path, read_only=True) as store:
        md = render_report("all", store.con, start=START, end=END, now=NOW, fmt="md",
                           rates=RATES)
    assert isinstance(md, str)
    for title in ("## Capacity, allocation and utilization", "## Forecast and purchase plan",
                  "## Chargeback", "## Right-sizing"):
        assert title in md


def test_rates_amortization_and_matching() -> None:
    r = GpuRate(purchase_price=8766 * 4, lifetime_years=4, power_w=500, kwh_price=0.2,
                hosting_per_month=730.5)
    assert r.per_gpu_hour == pytest.approx(1.0 + 0.1 + 1.0)
    assert GpuRate(gpu_hour=2.5, purchase_price=1e9).per_gpu_hour == 2.5
    rates = Rates(gpu={"A100": GpuRate(gpu_hour=1.0), "A100-SXM4-80GB": GpuRate(gpu_hour=2.0)},
                  default_gpu=GpuRate(gpu_hour=0.1), cpu_core_hour=0.01,
                  pools={"inf": PoolRates(gpu={"a100": GpuRate(gpu_hour=3.0)},
                                          mem_gb_hour=0.5)})
    assert rates.gpu_rate("NVIDIA A100-SXM4-80GB").per_gpu_hour == 2.0  # longest key wins
    assert rates.gpu_rate("NVIDIA A100-PCIE-40GB").per_gpu_hour == 1.0
    assert rates.gpu_rate("NVIDIA L4").per_gpu_hour == 0.1
    assert rates.gpu_rate("NVIDIA A100-PCIE-40GB", "inf").per_gpu_hour == 3.0
    assert rates.cpu_rate("inf") == 0.01 and rates.mem_rate("inf") == 0.5
    with pytest.raises(ValueError):
        GpuRate(lifetime_years=0)


def test_every_report_and_format_on_an_empty_store(tmp_path: Path) -> None:
    Store.open(tmp_path / "e.duckdb").close()
    with Store.open(tmp_path / "e.duckdb", read_only=True) as store:
        for name in ("chargeback", "usage", "forecast", "rightsizing", "all"):
            for fmt in ("table", "md", "json", "html", "xlsx", "csv", "parquet"):
                if name == "all" and fmt in ("csv", "parquet"):
                    continue
                out = render_report(name, store.con, now=NOW, fmt=fmt)
                assert out, (name, fmt)
        body = json.loads(render_report("chargeback", store.con, now=NOW, fmt="json"))
    assert body["tables"]["chargeback"] == []


def test_jobs_without_telemetry_are_allocated_but_unmeasured(tmp_path: Path) -> None:
    """A Slurm job with no GPU samples: billed, counted as unmeasured, never as used."""
    store = Store.open(tmp_path / "s.duckdb")
    try:
        store.append_rows("jobs", [
            {"id": 1, "name": "j", "user": "u", "executor": "slurm", "spec": "{}",
             "state": "succeeded", "pool": "hpc", "node": "c1", "gpu_indices": None,
             "gpu_count": 4, "gpu_milli": 0, "gpu_model": "H100", "submitted_at": START,
             "started_at": START, "ended_at": datetime(2024, 3, 1, 10)}])
    finally:
        store.close()
    with Store.open(tmp_path / "s.duckdb", read_only=True) as store:
        body = json.loads(render_report("chargeback", store.con, start=START, end=END,
                                        now=NOW, fmt="json", rates=RATES, by="pool"))
    row = body["tables"]["chargeback"][0]
    assert row["pool"] == "hpc"
    assert row["gpu_h_allocated"] == pytest.approx(40.0)
    assert row["gpu_h_unmeasured"] == pytest.approx(40.0)
    assert row["gpu_h_used"] == 0.0
