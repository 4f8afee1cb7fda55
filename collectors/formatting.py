"""How fleetdeck writes values for people: bytes, durations, money, percentages, timestamps.

The CLI, the console, the exporters and the reasons policies write all format here, so a
value reads the same everywhere. Each kind has a few styles, by where the text goes:

- *short*: table cells, narrow and aligned ("1.5K", "4m05s");
- *text*: sentences ("16 GiB", "1m30s", "in ~2h");
- *exact*: a value a person may edit and that parses back unchanged ("16GiB", "90m").

Pure functions; None (and NaN for durations) is "-" where a cell needs a placeholder.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

_SHORT_UNITS = ("B", "K", "M", "G", "T", "P")
_BINARY = (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))


# ---- bytes -------------------------------------------------------------------------------


def bytes_short(n: float | None) -> str:
    """A cell: "512B", "1.5K", "80.0G", "123G" (binary units, one letter)."""
    if n is None:
        return "-"
    value = float(n)
    for unit in _SHORT_UNITS:
        if abs(value) < 1024 or unit == "P":
            if unit == "B":
                return f"{int(value)}B"
            return f"{value:.1f}{unit}" if value < 100 else f"{value:.0f}{unit}"
        value /= 1024
    return f"{value:.0f}P"  # pragma: no cover - the loop always returns


def bytes_text(n: float, *, fixed: bool = False) -> str:
    """A sentence: "16 GiB", "1.5 GiB", "512 B"; `fixed`: always one decimal ("20.0 GiB")."""
    for unit, size in _BINARY:
        if abs(n) >= size:
            v = n / size
            return f"{v:.1f} {unit}" if fixed else f"{round(v, 1):g} {unit}"
    return f"{n:.0f} B"


def bytes_exact(n: object) -> str:
    """An editable value: the largest binary unit dividing `n` ("16GiB"); "" unless n > 0."""
    if not isinstance(n, int) or n <= 0:
        return ""
    for unit, size in _BINARY:
        if n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


# ---- durations ---------------------------------------------------------------------------


def duration_short(seconds: float | None) -> str:
    """A cell: "3s", "4m05s", "2h13m", "3d04h" (truncated)."""
    if seconds is None or seconds < 0 or math.isnan(seconds):
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def duration_text(seconds: float) -> str:
    """A sentence: "90" -> "1m30s", "120" -> "2m", "7260" -> "2h01m", days past 48 hours."""
    s = round(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        m, r = divmod(s, 60)
        return f"{m}m{r:02d}s" if r else f"{m}m"
    h, r = divmod(s, 3600)
    if h < 48:
        return f"{h}h{r // 60:02d}m"
    d, r = divmod(s, 86400)
    return f"{d}d{r // 3600:02d}h"


def duration_rounded(seconds: float) -> str:
    """About how long, one unit: "45s", "12m", "2.5h", "14h", "3d"."""
    if seconds < 60:
        return f"{max(0.0, seconds):.0f}s"
    if seconds < 3600:
        return f"{round(seconds / 60)}m"
    if seconds < 48 * 3600:
        h = seconds / 3600
        return f"{round(h, 1) if h < 10 else round(h):g}h"
    return f"{round(seconds / 86400)}d"


def eta_text(seconds: float) -> str:
    """Seconds from now as "in ~2h", "in ~45m", "now"."""
    return "now" if seconds <= 0 else f"in ~{duration_rounded(seconds)}"


def duration_exact(seconds: object) -> str:
    """An editable value: whole hours or minutes when exact ("2h", "90m"), else "75s"; ""
    unless seconds > 0."""
    if not isinstance(seconds, int | float) or seconds <= 0:
        return ""
    s = int(seconds)
    for unit, mult in (("h", 3600), ("m", 60)):
        if s % mult == 0:
            return f"{s // mult}{unit}"
    return f"{s}s"


def ago_text(ts: float | None, now: float) -> str:
    """"4m05s ago" (a cell)."""
    if ts is None:
        return "-"
    return duration_short(max(0.0, now - ts)) + " ago"


# ---- numbers, money, percentages ---------------------------------------------------------


def number_text(x: float | None, places: int = 2) -> str:
    """A number without trailing zeros: "2", "0.25", "12.5"."""
    if x is None:
        return "-"
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.{places}f}".rstrip("0").rstrip(".")


def grouped(x: float, places: int = 2) -> str:
    """Thousands grouped, fixed places: "12,345.60" (report cells: amounts, hours)."""
    return f"{x:,.{places}f}"


def money_text(x: float | None) -> str:
    """"$1,234.50"."""
    return "-" if x is None else f"${grouped(x)}"


def pct_short(p: float | None, width: int = 0) -> str:
    """A percentage cell, right-aligned to `width`: "50%"."""
    if p is None:
        return "-".rjust(width)
    return f"{p:.0f}%".rjust(width)


# ---- timestamps --------------------------------------------------------------------------


def timestamp_text(ts: float | None, *, zone: bool = False) -> str:
    """UTC date and time of epoch seconds: "2024-05-01 12:03:04" (" UTC" with `zone`)."""
    if ts is None:
        return "-"
    text = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return text + " UTC" if zone else text
