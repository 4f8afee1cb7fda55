"""The one input-validation layer: checks every input surface shares.

Config files and env overrides (console/typed.py), job files and flags (scheduler/jobspec.py),
CLI options (console/commands), trace files (scheduler/sim) and store metadata all use these
checks, so a value is judged the same way wherever it comes from:

- numbers are finite (no NaN, inf or 1e309) and within bounds; integers have a bounded size;
- strings have a bounded length and no NUL bytes; names have a sane length and charset;
- files are existing, readable, regular UTF-8 files of a bounded size;
- values shown back in an error are shortened and escaped (`show`), never echoed whole or
  across lines.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from collectors.errors import InputError, show

MAX_INT = 2**63 - 1  # DuckDB BIGINT; anything larger is absurd for every key we have
MAX_TEXT_LEN = 128 * 1024  # a command line, a label value, a path
MAX_NAME_LEN = 64
MAX_FILE_BYTES = 64 * 1024 * 1024  # config, job and trace files are read whole
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._@-]{0,63}")
NAME_EXPECTED = f"a name of letters, digits, '.', '_', '@', '-' (max {MAX_NAME_LEN})"


def finite(value: float) -> bool:
    """True for a real, finite number (not NaN, not +-inf)."""
    return math.isfinite(value)


def parse_number(text: str) -> float | None:
    """A finite number from text, or None ("nan", "inf", "1e309" and digit floods are None)."""
    text = text.strip()
    if not text or len(text) > 64:
        return None
    try:
        x = float(text)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def check_number(value: object, *, source: str, key: str | None, expected: str,
                 lo: float | None = None, hi: float | None = None) -> float:
    """A finite int/float (bools refused) within [lo, hi], else InputError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(source, key, expected, got=value)
    if isinstance(value, int) and abs(value) > MAX_INT:
        raise InputError(source, key, expected, got=value)
    x = float(value)
    if not math.isfinite(x) or (lo is not None and x < lo) or (hi is not None and x > hi):
        raise InputError(source, key, expected, got=value)
    return x


def check_text(value: str, *, source: str, key: str | None, max_len: int = MAX_TEXT_LEN) -> str:
    """A string of at most `max_len` characters without NUL bytes, else InputError."""
    if len(value) > max_len:
        raise InputError(source, key, f"at most {max_len} characters", got=value)
    if "\x00" in value:
        raise InputError(source, key, "text without NUL bytes", got=value)
    return value


def check_name(value: object, *, source: str, key: str | None) -> str:
    """A name of a sane length and charset (users, nodes, pools, projects...)."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise InputError(source, key, NAME_EXPECTED, got=value)
    return value


def read_text_file(path: Path, *, source: str, key: str | None = None,
                   what: str = "file", max_bytes: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of an existing, readable, regular file, else InputError naming it.

    `source` names where the path came from (a flag like `-f`, or a config file)."""
    label = f"{source} {path}" if key is None else source
    check_text(str(path), source=label, key=key, max_len=4096)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(label, key, f"an existing {what} (not found)") from None
    except OSError as e:
        raise InputError(label, key, f"a readable {what} ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(label, key, f"a {what}, not a directory")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(label, key, f"a regular {what}")
    if st.st_size > max_bytes:
        raise InputError(label, key, f"a {what} of at most {max_bytes // 2**20} MiB")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(label, key, f"a readable {what} ({e.strerror})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(label, key, f"a UTF-8 text {what} (this one is binary)") from None


def check_output_path(path: Path, *, flag: str) -> Path:
    """A path a command may write a file to: not a directory, in an existing directory."""
    check_text(str(path), source=flag, key=None, max_len=4096)
    try:
        return _check_output_path(path, flag)
    except OSError as e:  # a name too long, a loop of links...
        raise InputError(flag, None, f"a usable file path ({e.strerror})", got=str(path)) from None


def _check_output_path(path: Path, flag: str) -> Path:
    if path.is_dir():
        raise InputError(flag, None, "a file path, not a directory", got=str(path))
    parent = path.parent if str(path.parent) else Path()
    if not parent.is_dir():
        raise InputError(flag, None, "a path in an existing directory", got=str(path))
    if not os.access(parent, os.W_OK):
        raise InputError(flag, None, "a path in a writable directory", got=str(path))
    return path


# ---- command-line option types (argparse `type=`): one rule for every flag ------------------


def arg_int(lo: int, hi: int) -> Callable[[str], int]:
    """argparse type: an integer in [lo, hi]; argparse names the flag in its one-line error."""
    expected = f"an integer {lo}..{hi}"

    def parse(text: str) -> int:
        text = text.strip()
        if len(text) > 24 or not re.fullmatch(r"[+-]?\d+", text) or not lo <= int(text) <= hi:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {show(text)}")
        return int(text)

    parse.__name__ = "integer"
    return parse


def arg_number(lo: float, hi: float, *, lo_open: bool = False) -> Callable[[str], float]:
    """argparse type: a finite number in [lo, hi] (or (lo, hi] with `lo_open`)."""
    expected = f"a number {'>' if lo_open else '>='} {lo:g} and <= {hi:g}"

    def parse(text: str) -> float:
        x = parse_number(text)
        if x is None or x < lo or x > hi or (lo_open and x == lo):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {show(text)}")
        return x

    parse.__name__ = "number"
    return parse


def arg_iso_time(text: str) -> str:
    """argparse type: an ISO date or time (2026-11-01, 2026-11-01T12:00), returned as ISO."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        if when.tzinfo is not None:
            when = when.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(
            f"expected an ISO time like 2026-11-01 or 2026-11-01T12:00, got {show(text)}"
        ) from None
    return when.isoformat(sep=" ")


def check_store_path(path: Path, *, flag: str) -> Path:
    """A store file path: not a directory or a device, and under a directory (missing folders
    are created by `serve`, so the nearest existing ancestor must be a directory)."""
    check_text(str(path), source=flag, key=None, max_len=4096)
    try:
        return _check_store_path(path, flag)
    except OSError as e:  # a name too long, a loop of links...
        raise InputError(flag, None, f"a usable store path ({e.strerror})", got=str(path)
                         ) from None


def _check_store_path(path: Path, flag: str) -> Path:
    if path.is_dir():
        raise InputError(flag, None, "a store file path, not a directory", got=str(path))
    if path.exists() and not path.is_file():
        raise InputError(flag, None, "a regular store file", got=str(path))
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(flag, None, f"a store path under a directory ({ancestor} is a file)",
                         got=str(path))
    return path


def user_path(text: str, *, source: str, key: str | None = None) -> Path:
    """A path given by a user, `~` and `~user` expanded; an unknown user is InputError."""
    check_text(text, source=source, key=key, max_len=4096)
    try:
        return Path(text).expanduser()
    except RuntimeError:  # ~name of no such user
        raise InputError(source, key, "a path whose ~user exists", got=text) from None
