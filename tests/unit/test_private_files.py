"""Private files: the writer's store, WAL and lock are 0600 in a 0700 folder; existing ones
are fixed and reported; shared folders (sticky, another owner's) are left alone."""

from __future__ import annotations

import stat
from pathlib import Path

import duckdb

from collectors.private_files import (
    describe,
    private_folder,
    store_files,
    tighten_files,
    tighten_folder,
)
from collectors.store import Store


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_new_store_is_private(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "deeper" / "store.duckdb"
    with Store.open(path) as store:
        assert store.made_private == ()  # nothing existed to fix
        assert mode(path.parent) == 0o700
        assert mode(path) == 0o600
        assert mode(path.with_name("store.duckdb.lock")) == 0o600


def test_existing_open_store_is_fixed_and_reported(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    path = folder / "store.duckdb"
    duckdb.connect(str(path)).close()
    wal = path.with_name("store.duckdb.wal")
    wal.write_bytes(b"")
    for p in (path, wal):
        p.chmod(0o644)
    with Store.open(path) as store:
        fixed = {c.path: (c.old_mode, c.new_mode) for c in store.made_private}
        assert fixed[folder] == (0o755, 0o700)
        assert fixed[path] == (0o644, 0o600)
        line = describe(store.made_private)
        assert "\n" not in line and str(path) in line and "644 -> 600" in line
    assert all(mode(p) == 0o600 for p in store_files(path) if p.exists())
    assert mode(folder) == 0o700


def test_sticky_folder_is_left_alone_but_files_are_narrowed(tmp_path: Path) -> None:
    shared = tmp_path / "tmpish"
    shared.mkdir()
    shared.chmod(0o1777)
    f = shared / "x.lock"
    f.write_text("1")
    f.chmod(0o666)
    assert tighten_folder(shared) == []
    assert mode(shared) == 0o1777
    assert [c.new_mode for c in tighten_files([f, shared / "missing"])] == [0o600]


def test_private_folder_is_idempotent(tmp_path: Path) -> None:
    d = tmp_path / "state"
    assert private_folder(d) == []
    assert private_folder(d) == []
    assert mode(d) == 0o700
    assert describe([]) == ""
