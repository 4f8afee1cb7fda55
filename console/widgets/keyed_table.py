"""A DataTable whose rows are keyed by id and updated in place, cell by cell.

Screens hand it the complete, current set of rows on every refresh (`sync`). The table works
out what changed: new keys are added, vanished keys removed, and for rows that differ only the
changed cells are updated with `update_cell`, all inside one `batch_update`. Nothing is rebuilt
on a refresh; the only full rebuild is when the filter changes or most rows vanish at once.

A filter (set by `/`) is a list of words: `key:value` matches the column with that key, a bare
word matches anywhere in the row; all words must match (case-insensitive substring).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual._two_way_dict import TwoWayDict
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey

Cell = str | Text
Row = tuple[Cell, ...]
REBUILD_FRACTION = 0.5  # more removals than this share of shown rows: rebuild instead


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int | None = None


@dataclass(frozen=True, slots=True)
class SyncStats:
    """What one `sync` did (tests and the benchmark read it)."""

    added: int = 0
    removed: int = 0
    cells_updated: int = 0
    rebuilt: bool = False


def plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def parse_filter(text: str) -> tuple[tuple[str | None, str], ...]:
    """`user:ann gpu` -> (("user", "ann"), (None, "gpu"))."""
    terms: list[tuple[str | None, str]] = []
    for word in text.lower().split():
        key, sep, value = word.partition(":")
        if sep and key and value:
            terms.append((key, value))
        elif word:
            terms.append((None, word))
    return tuple(terms)


class KeyedTable(DataTable[Cell]):
    """Rows keyed by id; `sync(rows)` applies a refresh incrementally."""

    class Drill(Message):
        """Enter on a row: the screen should open what the row stands for."""

        def __init__(self, table: KeyedTable, key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> KeyedTable:
            return self.table

    def __init__(self, columns: Sequence[Column], *, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=False)
        self.columns_spec = tuple(columns)
        self._col_keys = tuple(c.key for c in columns)
        self._all: dict[str, Row] = {}
        self._order: list[str] = []
        self._shown: set[str] = set()
        self._haystack: dict[str, tuple[str, ...]] = {}
        self._terms: tuple[tuple[str | None, str], ...] = ()
        self.filter_text = ""
        self.last_sync = SyncStats()

    def on_mount(self) -> None:
        for c in self.columns_spec:
            self.add_column(c.label, key=c.key, width=c.width)

    # -- reading ---------------------------------------------------------------------------
    @property
    def current_key(self) -> str | None:
        """Key of the row under the cursor, if any."""
        if not self.row_count:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        return row_key.value

    @property
    def shown_keys(self) -> list[str]:
        """Keys of the rows shown, in display order."""
        return [k for k in self._order if k in self._shown]

    def row_cells(self, key: str) -> Row | None:
        return self._all.get(key)

    def select_key(self, key: str) -> bool:
        """Move the cursor to the row `key`; False if it is not shown."""
        if key not in self._shown:
            return False
        self.move_cursor(row=self.get_row_index(key))
        return True

    def action_select_cursor(self) -> None:
        key = self.current_key
        if key is not None:
            self.post_message(self.Drill(self, key))

    # -- filtering -------------------------------------------------------------------------
    def set_filter(self, text: str) -> None:
        """Show only rows matching `text` (see the module docstring); rebuilds the view."""
        if text == self.filter_text:
            return
        self.filter_text = text
        self._terms = parse_filter(text)
        self._rebuild()

    def _hay(self, key: str, row: Row) -> tuple[str, ...]:
        hay = self._haystack.get(key)
        if hay is None:
            hay = tuple(plain(c).lower() for c in row)
            self._haystack[key] = hay
        return hay

    def matches(self, key: str, row: Row) -> bool:
        if not self._terms:
            return True
        hay = self._hay(key, row)
        for col, word in self._terms:
            if col is None:
                if not any(word in h for h in hay):
                    return False
            else:
                try:
                    i = self._col_keys.index(col)
                except ValueError:
                    return False
                if word not in hay[i]:
                    return False
        return True

    # -- writing ---------------------------------------------------------------------------
    def sync(self, rows: Mapping[str, Row]) -> SyncStats:
        """Make the table show `rows` (in their order), touching only what changed."""
        old = self._all
        self._all = dict(rows)
        order = list(rows)
        order_changed = order != self._order
        self._order = order
        to_remove = [k for k in self._shown if k not in rows]
        to_add: list[str] = []
        updates: list[tuple[str, str, Cell]] = []
        for key, row in rows.items():
            prev = old.get(key)
            if prev is not None and prev != row:
                self._haystack.pop(key, None)
            visible = self.matches(key, row)
            if key in self._shown:
                if not visible:
                    to_remove.append(key)
                elif prev != row and prev is not None:
                    for ck, a, b in zip(self._col_keys, prev, row, strict=True):
                        if a != b:
                            updates.append((key, ck, b))
            elif visible:
                to_add.append(key)
        for key in to_remove:
            self._haystack.pop(key, None)
        if self._shown and len(to_remove) > max(20, len(self._shown) * REBUILD_FRACTION):
            self._rebuild()
            self.last_sync = SyncStats(added=len(to_add), removed=len(to_remove), rebuilt=True)
            return self.last_sync
        with self.app.batch_update():
            for key in to_remove:
                self.remove_row(key)
                self._shown.discard(key)
            for key, ck, cell in updates:
                self.update_cell(key, ck, cell)
            for key in to_add:
                self.add_row(*rows[key], key=key)
                self._shown.add(key)
            if to_add and order_changed:
                self._reorder()
        self.last_sync = SyncStats(added=len(to_add), removed=len(to_remove),
                                   cells_updated=len(updates))
        return self.last_sync

    def _reorder(self) -> None:
        """Put shown rows in the order the screen gave (new rows may belong in the middle)."""
        keys = self.shown_keys
        current = self._row_locations
        if all(current.get(RowKey(k)) == i for i, k in enumerate(keys)):
            return
        cursor = self.current_key
        # DataTable.sort does this same reassignment; we sort by the screen's order instead
        self._row_locations = TwoWayDict({RowKey(k): i for i, k in enumerate(keys)})
        self._update_count += 1
        self.refresh()
        if cursor is not None:
            self.select_key(cursor)

    def _rebuild(self) -> None:
        cursor = self.current_key
        with self.app.batch_update():
            self.clear()
            self._shown = set()
            for key in self._order:
                row = self._all[key]
                if self.matches(key, row):
                    self.add_row(*row, key=key)
                    self._shown.add(key)
        if cursor is not None:
            self.select_key(cursor)

    def replace_all(self, rows: Iterable[tuple[str, Row]]) -> None:
        """Forget the old rows (e.g. another report's columns) and show these."""
        self._all = {}
        self._order = []
        self._haystack.clear()
        self.sync(dict(rows))

    def data_of(self, key: str) -> dict[str, Any]:
        row = self._all.get(key, ())
        return {k: plain(c) for k, c in zip(self._col_keys, row, strict=False)}
