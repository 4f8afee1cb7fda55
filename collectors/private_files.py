"""Private files: what the engine writes (store, WAL, lock, provider state) is 0600 in 0700
folders, so another local user can neither copy the store nor read a job's secret env from it.

`tighten_folder` / `tighten_files` fix what already exists and report each change; the engine
says so in one line at start (`describe`). A folder that is shared by nature (sticky, like
/tmp, or someone's home) or owned by another user is left alone: only its files are tightened.
`PRIVATE_UMASK` is what `serve` and the console set for their whole process, so files DuckDB
creates later (the WAL) are born private; `child_umask` gives jobs started on the local node
the umask the user had before.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
PRIVATE_UMASK = 0o077

_umask_before: int | None = None


@dataclass(frozen=True, slots=True)
class Tightened:
    """One file or folder whose mode was narrowed."""

    path: Path
    old_mode: int
    new_mode: int


def enter_private_umask() -> None:
    """Make every file this process creates from now on private (umask 077); idempotent."""
    global _umask_before
    old = os.umask(PRIVATE_UMASK)
    if _umask_before is None:
        _umask_before = old


def child_umask() -> int:
    """The umask processes started for users get: the one in force before the private one."""
    if _umask_before is not None:
        return _umask_before
    current = os.umask(PRIVATE_UMASK)
    os.umask(current)
    return current


def private_folder(path: Path) -> list[Tightened]:
    """Create `path` (and missing parents) 0700, or tighten it if it is ours and not shared."""
    missing = not path.exists()
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    if missing:
        return []
    return tighten_folder(path)


def tighten_folder(path: Path) -> list[Tightened]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return []
    if not stat.S_ISDIR(st.st_mode) or _shared_folder(path, st):
        return []
    return _narrow(path, st.st_mode, PRIVATE_DIR_MODE)


def tighten_files(paths: Iterable[Path]) -> list[Tightened]:
    """Narrow each existing regular file we own to 0600 (missing ones are skipped)."""
    out: list[Tightened] = []
    for p in paths:
        try:
            st = p.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
            out += _narrow(p, st.st_mode, PRIVATE_FILE_MODE)
    return out


def store_files(store_path: Path) -> tuple[Path, ...]:
    """The store and the files DuckDB and the engine keep beside it."""
    return tuple(store_path.with_name(store_path.name + suffix)
                 for suffix in ("", ".wal", ".lock"))


def describe(changes: Iterable[Tightened]) -> str:
    """One line naming what was made private, or "" when nothing was."""
    parts = [f"{c.path} ({c.old_mode:o} -> {c.new_mode:o})" for c in changes]
    if not parts:
        return ""
    return "made private (readable only by the engine's owner): " + ", ".join(parts)


def _narrow(path: Path, mode: int, wanted: int) -> list[Tightened]:
    old = stat.S_IMODE(mode)
    if old & ~wanted & 0o777 == 0:
        return []
    new = old & wanted
    path.chmod(new)
    return [Tightened(path, old, new)]


def _shared_folder(path: Path, st: os.stat_result) -> bool:
    if st.st_uid != os.geteuid() or st.st_mode & stat.S_ISVTX:
        return True
    resolved = path.resolve()
    return resolved == Path("/") or resolved == Path.home().resolve()
