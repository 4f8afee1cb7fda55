"""Opening the DuckDB store: migrations, the single-writer lock, batched frame writes.

Only the engine opens the store for writing; it holds an exclusive `flock` on `<path>.lock`
for its whole life, so a second engine on the same store is refused with the holder's pid.
Read-only openers (CLI commands with no engine running) need no lock. The writer keeps the
store, its WAL and lock 0600 in a 0700 folder (`collectors.private_files`); what it had to
narrow is in `Store.made_private`.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from collectors.errors import FleetdeckError, clip, show
from collectors.private_files import Tightened, private_folder, store_files, tighten_files
from collectors.store.schema import MIGRATIONS, SCHEMA_VERSION, TABLES


class StoreError(FleetdeckError):
    """The store cannot be opened or used as asked."""


class StoreLockedError(StoreError):
    """Another engine owns the store."""


class StoreWriteError(StoreError):
    """A write the store could not commit (disk full, I/O error): nothing of it was kept."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"store write failed: {reason} at {path}")


_WRITE_FAILURES = ("no space left on device", "disk quota exceeded", "read-only file system",
                   "input/output error", "could not write", "failed to commit")


def write_failure(e: BaseException) -> str | None:
    """The plain reason ("no space left on device") if `e` is a failed store write, else None."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    if not isinstance(e, duckdb.Error | OSError):
        return None
    text = str(e).lower()
    for reason in _WRITE_FAILURES[:4]:
        if reason in text:
            return reason
    return first_line(e) if any(r in text for r in _WRITE_FAILURES[4:]) else None


class Store:
    """A DuckDB store. Use `Store.open(path)` for the engine's writer, `read_only=True` else."""

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, lock_fd: int | None) -> None:
        self.path = path
        self.con = con
        self._lock_fd = lock_fd
        self.read_only = lock_fd is None
        self.made_private: tuple[Tightened, ...] = ()

    # -- lifetime -------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str], *, read_only: bool = False) -> Store:
        p = Path(path).expanduser()
        if read_only:
            if not p.exists():
                raise StoreError(f"{p}: no store here yet (start `fleetdeck serve` to create one)")
            try:
                con = duckdb.connect(str(p), read_only=True)
            except duckdb.IOException as e:
                raise StoreLockedError(f"{p}: cannot open read-only: {first_line(e)}") from None
            except duckdb.Error as e:
                raise StoreError(f"{p}: cannot open: {first_line(e)}") from None
            store = cls(p, con, None)
            try:
                store._check_version(upgrade=False)
            except BaseException:
                store.close()
                raise
            return store
        try:
            narrowed = private_folder(p.parent)
            existed = {f for f in store_files(p) if f.exists()}
            lock_fd = _acquire_lock(p)
        except OSError as e:  # a full disk or a read-only folder, said in one line
            raise StoreError(f"{p}: cannot open for writing: {os_reason(e)}") from None
        try:
            con = duckdb.connect(str(p))
        except duckdb.Error as e:
            os.close(lock_fd)
            raise StoreError(f"{p}: cannot open: {first_line(e)}") from None
        store = cls(p, con, lock_fd)
        # files DuckDB just created follow the umask: narrowed too, reported only if they existed
        fixed = narrowed + tighten_files(store_files(p))
        store.made_private = tuple(c for c in fixed if c.path in existed or c.path == p.parent)
        try:
            store._check_version(upgrade=True)
            con.execute("INSERT OR IGNORE INTO meta VALUES ('fleet_id', ?)",
                        [uuid.uuid4().hex[:10]])
        except duckdb.Error as e:  # e.g. a migration on a full disk: one line
            store.close()
            reason = write_failure(e) or first_line(e)
            raise StoreError(f"{p}: cannot open for writing: {reason}") from None
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        try:
            self.con.close()
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ---------------------------------------------------------------------------
    def schema_version(self) -> int:
        """The store's schema version from `meta`; a corrupt value is a StoreError."""
        try:
            rows = self.con.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).fetchall()
        except duckdb.CatalogException:
            return 0
        except duckdb.Error as e:
            raise StoreError(f"{self.path}: cannot read the store: {first_line(e)}") from None
        if not rows:
            return 0
        text = str(rows[0][0])
        if not text.isdigit() or len(text) > 6:
            raise StoreError(f"{self.path}: corrupt store metadata: schema_version is "
                             f"{show(text)}, not a version number")
        return int(text)

    def fleet_id(self) -> str:
        """This store's random id: scopes job names and directories on nodes, since job ids
        restart at 1 in every store."""
        rows = self.con.execute("SELECT value FROM meta WHERE key = 'fleet_id'").fetchall()
        return str(rows[0][0]) if rows else ""

    def _check_version(self, *, upgrade: bool) -> None:
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: store schema version {version} is newer than this fleetdeck "
                f"supports ({SCHEMA_VERSION}); upgrade fleetdeck"
            )
        if version < SCHEMA_VERSION:
            if not upgrade:
                raise StoreError(
                    f"{self.path}: store schema version {version} is older than "
                    f"{SCHEMA_VERSION}; start `fleetdeck serve` once to upgrade it"
                )
            self.migrate(version)

    def migrate(self, from_version: int, to_version: int = SCHEMA_VERSION) -> None:
        """Apply migrations `from_version` -> `to_version`, each in its own transaction."""
        for v in range(from_version, to_version):
            self.con.execute("BEGIN TRANSACTION")
            try:
                self.con.execute(MIGRATIONS[v])
                self.con.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(v + 1)]
                )
                self.con.execute("COMMIT")
            except BaseException:
                self.con.execute("ROLLBACK")
                raise

    # -- writes ---------------------------------------------------------------------------
    def append(self, table: str, frame: pa.Table | Any) -> int:
        """Append an Arrow table (or anything DuckDB can scan: Polars frame) by column name."""
        return insert_frame(self.con, table, frame)

    def append_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Append dict rows as one Arrow batch (never row by row)."""
        return insert_rows(self.con, table, rows)

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    # -- reads ----------------------------------------------------------------------------
    def row_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in TABLES:
            rows = self.con.execute(f'SELECT count(*) FROM "{t}"').fetchall()
            out[t] = int(rows[0][0])
        return out

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for another thread (DuckDB connections are not shared across threads)."""
        return self.con.cursor()


def insert_frame(con: duckdb.DuckDBPyConnection, table: str, frame: pa.Table | Any) -> int:
    """INSERT an Arrow table / Polars frame by column name, as one batch."""
    if table not in TABLES:
        raise StoreError(f"unknown table {table!r}")
    n = int(frame.num_rows if isinstance(frame, pa.Table) else len(frame))
    if n == 0:
        return 0
    con.register("_fd_batch", frame)
    try:
        con.execute(f'INSERT INTO "{table}" BY NAME SELECT * FROM _fd_batch')
    finally:
        con.unregister("_fd_batch")
    return n


def insert_rows(con: duckdb.DuckDBPyConnection, table: str,
                rows: Sequence[Mapping[str, Any]]) -> int:
    """INSERT dict rows as one Arrow batch (never row by row)."""
    if not rows:
        return 0
    return insert_frame(con, table, pa.Table.from_pylist(list(rows)))


def _acquire_lock(path: Path) -> int:
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StoreLockedError(
            f"{path}: store is in use by another fleetdeck engine (pid {holder}); "
            "attach to it instead (`fleetdeck status`)"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def first_line(e: BaseException) -> str:
    """A database error as one short line (DuckDB's messages span many)."""
    return clip(str(e).strip().splitlines()[0], 300) if str(e).strip() else type(e).__name__


def os_reason(e: OSError) -> str:
    """An OSError as its plain reason, "no space left on device" style."""
    return (e.strerror or type(e).__name__).lower()
