"""`fleetdeck report NAME`: flags, period parsing, and `render_report`, the one entry point the
CLI (store opened read-only) and the console (#7) share.

    fleetdeck report NAME [--from WHEN] [--to WHEN] [--by user|project|team|pool|model]
                          [--every day|week|month] [--months N] [--ceiling PCT]
                          [--format table|csv|parquet|xlsx|html|md|json] [-o PATH]

WHEN is a date (2024-05-01; as --to it includes that day), a month (2024-05), an ISO time
(2024-05-01T12:00, with an optional offset), `now`, `today`, or an age (30d, 12h, 2w, 6mo, 1y).
Defaults: --to now; --from 30 days before --to (forecast: 365 days, the history it learns from).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

import duckdb

from collectors.errors import InputError
from collectors.validate import check_output_path, parse_number, user_path
from reports.chargeback import KEYS
from reports.export import BINARY, EXTENSIONS, FORMATS, SINGLE_TABLE, render
from reports.ledger import build_ledger
from reports.model import Report
from reports.pack import REPORTS, build_all, build_report
from reports.rates import Rates
from reports.sources import from_store, to_naive_utc
from reports.usage import EVERY

NAMES = (*REPORTS, "all")
SOURCE = "fleetdeck report"
DEFAULT_DAYS = 30
FORECAST_DAYS = 365
_WHEN = "a date (YYYY-MM-DD), a month (YYYY-MM), an ISO time, now, today or an age (30d, 6mo)"
_AGE = re.compile(r"^(\d+(?:\.\d+)?)(mo|h|d|w|y)$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the report flags to a (sub)parser. Values are checked by `run`, which raises
    `InputError` naming the flag, so every bad value gets the same one-line error."""
    parser.add_argument("name", metavar="NAME", help="one of " + ", ".join(NAMES))
    parser.add_argument("--from", dest="start", metavar="WHEN",
                        help="period start (default: 30 days before --to; forecast: 365)")
    parser.add_argument("--to", dest="end", metavar="WHEN", help="period end (default: now)")
    parser.add_argument("--by", metavar="KEY",
                        help="chargeback/rightsizing grouping: " + "|".join(KEYS))
    parser.add_argument("--user", metavar="NAME",
                        help="chargeback: only this user's jobs (a member always gets their own)")
    parser.add_argument("--every", metavar="STEP", default="day",
                        help="usage periods: day|week|month (default day)")
    parser.add_argument("--months", metavar="N", default="3",
                        help="forecast horizon in months (default 3)")
    parser.add_argument("--ceiling", metavar="PCT", default="80",
                        help="allocation ceiling for the forecast, percent (default 80)")
    parser.add_argument("--format", dest="fmt", metavar="FORMAT",
                        help="|".join(FORMATS) + " (default: from -o's extension, else table)")
    parser.add_argument("-o", "--output", metavar="PATH", help="write to PATH (default stdout)")


def parse_when(text: str, *, now: datetime, flag: str, is_end: bool = False) -> datetime:
    """A flag's time as naive UTC. Dates and months as --to include the whole day/month."""
    s = text.strip().lower()
    if s == "now":
        return now
    day = datetime(now.year, now.month, now.day)
    if s == "today":
        return min(now, day + timedelta(days=1)) if is_end else day
    m = _AGE.match(s)
    if m:
        n, unit = float(m.group(1)), m.group(2)
        days = {"h": n / 24, "d": n, "w": 7 * n, "mo": 30.4375 * n, "y": 365.25 * n}[unit]
        try:
            return now - timedelta(days=days)
        except OverflowError:  # older than year 1
            raise InputError(SOURCE, flag, _WHEN + " after year 1", got=text) from None
    if re.fullmatch(r"\d{4}-\d{2}", s):
        try:
            first = datetime.strptime(s, "%Y-%m")
        except ValueError:
            raise InputError(SOURCE, flag, _WHEN, got=text) from None
        if not is_end:
            return first
        if first.year == 9999 and first.month == 12:
            raise InputError(SOURCE, flag, _WHEN + " within years 1-9999", got=text)
        return datetime(first.year + first.month // 12, first.month % 12 + 1, 1)
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(SOURCE, flag, _WHEN, got=text) from None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s) and is_end:
            return t + timedelta(days=1)
        return to_naive_utc(t)
    except OverflowError:  # the edges of the calendar
        raise InputError(SOURCE, flag, _WHEN + " within years 1-9999", got=text) from None


def render_report(
    name: str,
    con: duckdb.DuckDBPyConnection,
    *,
    start: datetime | float | None = None,
    end: datetime | float | None = None,
    by: str | None = None,
    fmt: str = "table",
    output_path: str | os.PathLike[str] | None = None,
    rates: Rates | None = None,
    now: datetime | float | None = None,
    every: str = "day",
    months: int = 3,
    ceiling_pct: float = 80.0,
    user: str | None = None,
) -> str | bytes:
    """Build report `name` (or `all`) from a store connection and render it in `fmt`; write it
    to `output_path` when given (atomically) and return it either way."""
    if fmt not in FORMATS:
        raise InputError(SOURCE, "--format", "one of " + ", ".join(FORMATS), got=fmt)
    if name == "all" and fmt in SINGLE_TABLE:
        raise InputError(SOURCE, "--format", "table, xlsx, html, md or json for the all pack "
                         "(csv and parquet hold one table)", got=fmt)
    reports = build_reports(name, con, start=start, end=end, by=by, rates=rates, now=now,
                            every=every, months=months, ceiling_pct=ceiling_pct, user=user)
    out = render(reports, fmt)
    if output_path is not None:
        _write_atomic(Path(output_path), out)
    return out


def build_reports(
    name: str, con: duckdb.DuckDBPyConnection, *, start: datetime | float | None = None,
    end: datetime | float | None = None, by: str | None = None, rates: Rates | None = None,
    now: datetime | float | None = None, every: str = "day", months: int = 3,
    ceiling_pct: float = 80.0, user: str | None = None,
) -> tuple[Report, ...]:
    """The `Report`s behind `render_report` (for callers that render themselves); `user`
    narrows a chargeback to that user's jobs."""
    if name not in NAMES:
        raise InputError(SOURCE, "NAME", "one of " + ", ".join(NAMES), got=name)
    _check_user(name, user)
    if by is not None and by not in KEYS:
        raise InputError(SOURCE, "--by", "one of " + ", ".join(KEYS), got=by)
    if every not in EVERY:
        raise InputError(SOURCE, "--every", "one of " + ", ".join(EVERY), got=every)
    if not 1 <= months <= 60:
        raise InputError(SOURCE, "--months", "a whole number of months 1-60", got=months)
    if not 0 < ceiling_pct <= 100:
        raise InputError(SOURCE, "--ceiling", "a percentage above 0 and at most 100",
                         got=ceiling_pct)
    now_dt = to_naive_utc(time.time() if now is None else now)
    end_dt = now_dt if end is None else to_naive_utc(end)
    days = FORECAST_DAYS if name == "forecast" else DEFAULT_DAYS
    start_dt = end_dt - timedelta(days=days) if start is None else to_naive_utc(start)
    if start_dt >= end_dt:
        raise InputError(SOURCE, "--from", "a time before --to",
                         got=f"{start_dt:%Y-%m-%d %H:%M}")
    kw = {"generated_at": now_dt, "rates": rates, "every": every, "months": months,
          "ceiling_pct": ceiling_pct}
    ledger = build_ledger(from_store(con, start_dt, end_dt, now=now_dt))
    if name != "all":
        return (build_report(name, ledger, by=by, user=user, **kw),)  # type: ignore[arg-type]
    hist_start = min(start_dt, end_dt - timedelta(days=FORECAST_DAYS))
    history = ledger if hist_start == start_dt else build_ledger(
        from_store(con, hist_start, end_dt, now=now_dt, bucket_s=3600))
    return build_all(ledger, history, by=by, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class ReportArgs:
    """`fleetdeck report`'s flags as text, as the CLI and the engine's `report_run` get them."""

    name: str
    start: str | None = None
    end: str | None = None
    by: str | None = None
    every: str = "day"
    months: str = "3"
    ceiling: str = "80"
    fmt: str = "table"
    user: str | None = None


def output_format(fmt: str | None, output: str | None) -> str:
    """The format asked for, else the one the output file's extension names, else table."""
    if fmt is None:
        ext = Path(output).suffix.lower() if output else ""
        fmt = EXTENSIONS.get(ext, "table")
    if fmt not in FORMATS:
        raise InputError(SOURCE, "--format", "one of " + ", ".join(FORMATS), got=fmt)
    return fmt


def render_args(args: ReportArgs, con: duckdb.DuckDBPyConnection, *,
                rates: Rates | None = None, now: float | None = None) -> str | bytes:
    """The report document `args` ask for (parsed and checked here: bad flags raise)."""
    now_dt = to_naive_utc(time.time() if now is None else now)
    start = parse_when(args.start, now=now_dt, flag="--from") if args.start else None
    end = parse_when(args.end, now=now_dt, flag="--to", is_end=True) if args.end else None
    return render_report(args.name, con, start=start, end=end, by=args.by,
                         fmt=output_format(args.fmt, None), rates=rates, now=now_dt,
                         every=args.every, months=_int(args.months, "--months"),
                         ceiling_pct=_float(args.ceiling, "--ceiling"), user=args.user)


def deliver(result: str | bytes, *, fmt: str, output: str | None, out: IO[str]) -> None:
    """Write a rendered report to `output` (atomically, saying so) or to `out`."""
    if output:
        _write_atomic(Path(output), result)
        size = len(result.encode() if isinstance(result, str) else result)
        out.write(f"wrote {output} ({size:,} bytes, {fmt})\n")
    elif isinstance(result, bytes):
        buffer = getattr(out, "buffer", None)
        if buffer is None:
            raise InputError(SOURCE, "-o", f"a file path for {fmt} output (binary)")
        out.flush()
        buffer.write(result)
        buffer.flush()
    else:
        out.write(result)


def check_output(fmt: str, output: str | None, out: IO[str]) -> None:
    if fmt in BINARY and output is None and out.isatty():
        raise InputError(SOURCE, "-o", f"a file path for {fmt} output (binary, not for a "
                         "terminal)")


def report_args(args: argparse.Namespace) -> ReportArgs:
    return ReportArgs(name=args.name, start=args.start, end=args.end, by=args.by,
                      every=args.every, months=str(args.months), ceiling=str(args.ceiling),
                      fmt=output_format(args.fmt, args.output), user=getattr(args, "user", None))


def run(
    args: argparse.Namespace,
    con: duckdb.DuckDBPyConnection,
    *,
    rates: Rates | None = None,
    now: float | None = None,
    stdout: IO[str] | None = None,
) -> int:
    """Run `fleetdeck report` with parsed `args`. Raises `InputError` for bad flags."""
    out = stdout if stdout is not None else sys.stdout
    rargs = report_args(args)
    check_output(rargs.fmt, args.output, out)
    check_flags(args, now=to_naive_utc(time.time() if now is None else now))
    result = render_args(rargs, con, rates=rates, now=now)
    deliver(result, fmt=rargs.fmt, output=args.output, out=out)
    return 0


def check_flags(args: argparse.Namespace, *, now: datetime
                ) -> tuple[datetime | None, datetime | None, int, float]:
    """The flags checked before any store is opened: (--from, --to, --months, --ceiling)."""
    if args.output is not None:
        check_output_path(user_path(args.output, source="-o"), flag="-o")
    _check_user(args.name, getattr(args, "user", None))
    start = parse_when(args.start, now=now, flag="--from") if args.start is not None else None
    end = parse_when(args.end, now=now, flag="--to", is_end=True) if args.end is not None else None
    return start, end, _int(args.months, "--months"), _float(args.ceiling, "--ceiling")


def _check_user(name: str, user: str | None) -> None:
    if user is not None and name != "chargeback":
        raise InputError(SOURCE, "--user", "no --user (it narrows a chargeback only)",
                         got=user)


def _int(text: str, flag: str) -> int:
    if not re.fullmatch(r"\s*[+-]?\d{1,18}\s*", str(text)):
        raise InputError(SOURCE, flag, "a whole number", got=text)
    return int(str(text))


def _float(text: str, flag: str) -> float:
    x = parse_number(str(text))
    if x is None:
        raise InputError(SOURCE, flag, "a finite number", got=text)
    return x


def _write_atomic(path: Path, data: str | bytes) -> None:
    path = path.expanduser()
    if path.parent and not path.parent.exists():
        raise InputError(SOURCE, "-o", "a path in an existing directory", got=str(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

