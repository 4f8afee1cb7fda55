"""Formatting for the console's cells: bars, sparks, colours by state and utilization, and
the shared value formatters (`collectors.formatting`) under short names. Pure functions.

Helpers returning `Text` for table cells (`pct_text`, `state_text`, `gpu_spark`) hand out
shared, cached objects: a refresh that changes nothing yields identical cells, which tables
compare by identity first. Never mutate what they return.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache

from rich.text import Span, Text

from collectors.formatting import ago_text as ago
from collectors.formatting import bytes_short as size
from collectors.formatting import duration_short as duration
from collectors.formatting import money_text as money
from collectors.formatting import number_text as num
from collectors.formatting import pct_short as pct
from collectors.formatting import timestamp_text as clock_text
from scheduler.states import JobState

# the shared formatters under the console's short names, and the console's own cell helpers
__all__ = [
    "STATE_STYLE",
    "ago",
    "bar",
    "clock_text",
    "duration",
    "epoch",
    "gpu_spark",
    "labels_text",
    "money",
    "num",
    "pct",
    "pct_text",
    "size",
    "spark_char",
    "state_text",
    "util_style",
]

SPARK = "▁▂▃▄▅▆▇█"
BAR_FULL = "█"
BAR_PARTS = " ▏▎▍▌▋▊▉"
STATE_STYLE: dict[str, str] = {
    "up": "green",
    "degraded": "yellow",
    "unreachable": "bold red",
    "unknown": "dim",
    JobState.QUEUED: "cyan",
    JobState.STARTING: "bright_cyan",
    JobState.RUNNING: "green",
    JobState.PREEMPTED: "magenta",
    JobState.SUCCEEDED: "dim green",
    JobState.FAILED: "red",
    JobState.STOPPED: "yellow",
    JobState.LOST: "bold red",
    "warned": "yellow",
    "stop_due": "bold red",
}


def util_style(pct: float | None) -> str:
    """A colour for a utilization percentage: blue idle, through green, to red saturated."""
    if pct is None:
        return "dim"
    if pct < 5:
        return "#3a4a6b"
    if pct < 30:
        return "#2f7fbf"
    if pct < 60:
        return "#3fae5a"
    if pct < 85:
        return "#d6a21e"
    return "#d9442b"


def epoch(value: object) -> float | None:
    """Epoch seconds from a datetime or ISO string (naive means UTC), a number, or None."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime):
        return _utc(value).timestamp()
    if isinstance(value, str):
        return _iso_epoch(value)
    return None


@lru_cache(maxsize=65536)
def _iso_epoch(value: str) -> float | None:
    try:
        return _utc(datetime.fromisoformat(value)).timestamp()
    except ValueError:
        return None


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def bar(fraction: float | None, width: int, style: str = "") -> Text:
    """A horizontal bar `width` cells wide, filled to `fraction` (0..1) with eighth blocks."""
    if fraction is None:
        return Text(" " * width)
    f = min(1.0, max(0.0, fraction))
    eighths = round(f * width * 8)
    full, part = divmod(eighths, 8)
    body = BAR_FULL * full + (BAR_PARTS[part] if part and full < width else "")
    return Text(body.ljust(width), style=style or util_style(f * 100))


def spark_char(p: float | None) -> str:
    if p is None:
        return "·"
    i = min(len(SPARK) - 1, max(0, int(p / 100 * len(SPARK))))
    return SPARK[i]


def gpu_spark(utils: Sequence[float | None]) -> Text:
    """One block per GPU, its height and colour the GPU's utilization (shared, cached)."""
    return _spark(tuple((spark_char(u), util_style(u)) for u in utils))


@lru_cache(maxsize=8192)
def _spark(cells: tuple[tuple[str, str], ...]) -> Text:
    return Text("".join(c for c, _ in cells),
                spans=[Span(i, i + 1, style) for i, (_, style) in enumerate(cells)])


def pct_text(p: float | None, width: int = 4) -> Text:
    """A percentage coloured by utilization (shared, cached)."""
    return _pct_text(None if p is None else round(p), width)


@lru_cache(maxsize=1024)
def _pct_text(p: int | None, width: int) -> Text:
    if p is None:
        return Text("-".rjust(width))
    return Text(f"{p}%".rjust(width), style=util_style(p))


@lru_cache(maxsize=256)
def state_text(state: str | None, extra: str = "") -> Text:
    """A state name in its colour (shared, cached)."""
    s = state or "unknown"
    return Text(s + extra, style=STATE_STYLE.get(s, ""))


def labels_text(labels: object) -> str:
    if isinstance(labels, dict):
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return "" if labels is None else str(labels)
