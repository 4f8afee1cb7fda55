"""A table whose rows are keyed by id and updated in place, cell by cell.

Screens hand it the complete, current set of rows on every refresh (`sync`). The table works
out what changed: new keys are added, vanished keys removed, and for rows that differ only the
changed cells are updated (`update_cell`), all inside one `batch_update`. Nothing is rebuilt
on a refresh; the view is rebuilt only when the filter changes.

It is a Line API widget (like Textual's own DataTable, minus per-cell measuring): only the
lines on screen are rendered, each cached until its row changes, so 10,000 rows cost what the
visible 40 cost. Columns have priorities and natural widths (table_columns.py): on a narrow
terminal the lowest-priority columns are left out, on a wide one growing columns (names,
reasons) widen up to their widest content.

Sorting: Shift+letter sorts by the column with that letter (the header underlines it; again
reverses), `>`/`<` move the sort to the next/previous column, a click on a header sorts by
it. The sort is remembered per screen and table for the app's life (`App.table_sorts`).

Live columns: values that change on every refresh for every row (a running job's runtime, its
GPUs' utilization) can be given as `live` (key -> those cells). They are computed only for the
lines on screen when they are drawn, instead of being diffed for 10,000 rows per refresh;
`refresh_live()` redraws the visible lines. Filters do not see live columns.

A filter (set by `/`) is a list of words: `key:value` matches the column with that key, a bare
word matches anywhere in the row; all words must match (case-insensitive substring).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from console.widgets.table_columns import (
    PAD,
    Column,
    SortValue,
    fit_widths,
    sort_letters,
    sort_value,
)
from console.widgets.table_filter import Cell, parse_filter, plain

__all__ = ["Cell", "Column", "KeyedTable", "Row", "SyncStats", "parse_filter", "plain"]

Row = tuple[Cell, ...]
Live = Callable[[str], tuple[Cell, ...]]
Sort = tuple[str, bool]  # (column key, descending)
Sorter = Callable[[str, str], float | None]  # (row key, column key) -> number, None: by text


@dataclass(frozen=True, slots=True)
class SyncStats:
    """What one `sync` did (tests and the benchmark read it)."""

    added: int = 0
    removed: int = 0
    cells_updated: int = 0
    rebuilt: bool = False


class RowMessage(Message):
    """A message about one row of a `KeyedTable`: the table and the row's key."""

    def __init__(self, table: KeyedTable, key: str) -> None:
        super().__init__()
        self.table = table
        self.key = key

    @property
    def control(self) -> KeyedTable:
        return self.table


class KeyedTable(ScrollView, can_focus=True):
    """Rows keyed by id; `sync(rows)` applies a refresh incrementally."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "edge(0)", "First row", show=False),
        Binding("end", "edge(1)", "Last row", show=False),
        Binding("left", "scroll_left", "Scroll left", show=False),
        Binding("right", "scroll_right", "Scroll right", show=False),
        Binding("enter", "select_cursor", "Open", show=False),
        Binding("greater_than_sign", "sort_step(1)", "Sort"),
        Binding("less_than_sign", "sort_step(-1)", "Sort back", show=False),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "keyed-table--header", "keyed-table--cursor", "keyed-table--cursor-blurred"}
    DEFAULT_CSS = """
    KeyedTable { height: 1fr; background: $surface; }
    KeyedTable > .keyed-table--header { text-style: bold; background: $panel; }
    KeyedTable > .keyed-table--cursor { background: $block-cursor-background;
        color: $block-cursor-foreground; text-style: bold; }
    KeyedTable > .keyed-table--cursor-blurred { background: $block-cursor-blurred-background; }
    """

    cursor_row: reactive[int] = reactive(0, init=False)

    class Drill(RowMessage):
        """Enter (or a double click) on a row: the screen opens what the row stands for."""

    class Highlighted(RowMessage):
        """The cursor moved to the row `key`."""

    def __init__(self, columns: Sequence[Column], *, id: str | None = None,
                 classes: str | None = None, live_columns: Sequence[str] = (),
                 live: Live | None = None, sorter: Sorter | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.columns_spec = tuple(columns)
        self.live = live
        self.sorter = sorter  # numbers for cells whose text does not sort well (sparklines)
        self._live_index = tuple(i for i, c in enumerate(columns) if c.key in live_columns)
        self._grow_index = tuple(i for i, c in enumerate(columns) if c.grow or c.width is None)
        self._need = [len(c.label) + 1 for c in columns]  # widest content seen (+ sort mark)
        self._letters = sort_letters(columns)
        self.sort: Sort | None = None
        self._sort_values: dict[str, SortValue] = {}
        self._col_keys = tuple(c.key for c in columns)
        self._col_index = {k: i for i, k in enumerate(self._col_keys)}
        self._all: dict[str, Row] = {}
        self._order: list[str] = []
        self._view: list[str] = []  # shown keys, in order
        self._pos: dict[str, int] = {}  # shown key -> index in _view
        self._haystack: dict[str, tuple[str, ...]] = {}
        self._terms: tuple[tuple[str | None, str], ...] = ()
        self._strips: dict[str, tuple[Row, bool, int, tuple[Cell, ...], Strip]] = {}
        self._widths: tuple[int, ...] = ()
        self._layout_version = 0
        self._header: Strip | None = None
        self._base_style: Style | None = None
        self.filter_text = ""
        self.last_sync = SyncStats()

    # -- reading ---------------------------------------------------------------------------
    @property
    def row_count(self) -> int:
        return len(self._view)

    @property
    def current_key(self) -> str | None:
        """Key of the row under the cursor, if any."""
        if 0 <= self.cursor_row < len(self._view):
            return self._view[self.cursor_row]
        return None

    @property
    def shown_keys(self) -> list[str]:
        """Keys of the rows shown, in display order."""
        return list(self._view)

    def row_cells(self, key: str) -> Row | None:
        return self._all.get(key)

    def data_of(self, key: str) -> dict[str, Any]:
        row = self._all.get(key, ())
        return {k: plain(c) for k, c in zip(self._col_keys, row, strict=False)}

    def select_key(self, key: str) -> bool:
        """Move the cursor to the row `key`; False if it is not shown."""
        index = self._pos.get(key)
        if index is None:
            return False
        self.cursor_row = index
        return True

    # -- filtering -------------------------------------------------------------------------
    def set_filter(self, text: str) -> None:
        """Show only rows matching `text` (see the module docstring)."""
        if text == self.filter_text:
            return
        self.filter_text = text
        self._terms = parse_filter(text)
        cursor = self.current_key
        self._set_view(self._sorted([k for k in self._order if self.matches(k, self._all[k])]))
        if cursor is None or not self.select_key(cursor):
            self.cursor_row = 0
        self.refresh()

    def matches(self, key: str, row: Row) -> bool:
        if not self._terms:
            return True
        hay = self._haystack.get(key)
        if hay is None:
            hay = tuple(plain(c).lower() for c in row)
            self._haystack[key] = hay
        for col, word in self._terms:
            if col is None:
                if not any(word in h for h in hay):
                    return False
            else:
                i = self._col_index.get(col)
                if i is None or word not in hay[i]:
                    return False
        return True

    # -- writing ---------------------------------------------------------------------------
    def update_cell(self, key: str, column: str, value: Cell) -> None:
        """Set one cell; its line is redrawn on the next frame if it is on screen."""
        row = self._all[key]
        i = self._col_index[column]
        self._all[key] = (*row[:i], value, *row[i + 1:])
        self._haystack.pop(key, None)
        self._sort_values.pop(key, None)
        index = self._pos.get(key)
        if index is not None and self._on_screen(index):
            self.refresh_line(index + 1)  # virtual line: the header is line 0

    def sync(self, rows: Mapping[str, Row]) -> SyncStats:
        """Make the table show `rows` (in their order), touching only what changed: rows
        whose cells are all identical (or equal) keep their cached line; a row with changed
        cells takes them (as `update_cell` would, one line redraw if it is on screen)."""
        old = self._all
        order = list(rows)
        added = [k for k in order if k not in old]
        removed = [k for k in self._order if k not in rows]
        cells = 0
        resort = False
        sort_index = self._col_index.get(self.sort[0], -1) if self.sort else -1
        top = self.scroll_offset.y
        bottom = top + max(1, self.size.height - 1)
        dirty: list[int] = []
        grown = self._grow_need(rows[k] for k in added)
        with self.app.batch_update():
            new: dict[str, Row] = {}
            for key, row in rows.items():
                prev = old.get(key)
                if prev is None or prev is row:
                    new[key] = row
                    continue
                changed = sum(1 for a, b in zip(prev, row, strict=True) if a is not b and a != b)
                if not changed:
                    new[key] = prev  # keep the identical row: its cached line stays valid
                    continue
                new[key] = row
                cells += changed
                grown = self._grow_need((row,)) or grown
                if sort_index >= 0 and prev[sort_index] != row[sort_index]:
                    resort = True
                    self._sort_values.pop(key, None)
                self._haystack.pop(key, None)
                index = self._pos.get(key)
                if index is not None and top <= index < bottom:
                    dirty.append(index)
            self._all = new
            for key in removed:
                self._haystack.pop(key, None)
                self._strips.pop(key, None)
                self._sort_values.pop(key, None)
            if grown:
                self._relayout()
            if self.sort is not None and self.sort[0] in self._live_keys():
                resort = True  # a live column moves on every refresh
            if (added or removed or order != self._order or (self._terms and cells)
                    or resort):
                cursor = self.current_key
                self._order = order
                self._set_view(self._sorted([k for k in order if self.matches(k, new[k])]))
                if cursor is not None and not self.select_key(cursor):
                    self.cursor_row = min(self.cursor_row, max(0, len(self._view) - 1))
                self.refresh()
            else:
                for index in dirty:
                    self.refresh_line(index + 1)  # virtual line: the header is line 0
        self.last_sync = SyncStats(added=len(added), removed=len(removed), cells_updated=cells)
        return self.last_sync

    def refresh_live(self) -> None:
        """Redraw the visible lines so their live cells are computed afresh."""
        if self.live is not None:
            self.refresh()

    def replace_all(self, rows: Iterable[tuple[str, Row]]) -> None:
        """Forget the old rows and show these."""
        self._all, self._order, self._view, self._pos = {}, [], [], {}
        self._haystack.clear()
        self._strips.clear()
        self._sort_values.clear()
        self.sync(dict(rows))

    def _set_view(self, keys: list[str]) -> None:
        if keys != self._view:
            self._view = keys
            self._pos = {k: i for i, k in enumerate(keys)}
        self.virtual_size = Size(self._total_width(), len(self._view) + 1)

    # -- sorting ---------------------------------------------------------------------------
    def _live_keys(self) -> tuple[str, ...]:
        return tuple(self._col_keys[i] for i in self._live_index)

    def _sorted(self, keys: list[str]) -> list[str]:
        """`keys` in the sort's order (stable; missing values last either way)."""
        if self.sort is None or self.sort[0] not in self._col_index:
            return keys
        column, descending = self.sort
        value = self._value_getter(column)
        present = [(value(k), k) for k in keys]
        missing = [k for v, k in present if v[0] == 2]
        present = [(v, k) for v, k in present if v[0] != 2]
        present.sort(key=lambda vk: vk[0], reverse=descending)
        return [k for _, k in present] + missing

    def _value_getter(self, column: str) -> Callable[[str], SortValue]:
        by_text = self._text_getter(column)
        sorter = self.sorter
        if sorter is None:
            return by_text

        def value(key: str) -> SortValue:
            number = sorter(key, column)
            return (0, number, "") if number is not None else by_text(key)

        return value

    def _text_getter(self, column: str) -> Callable[[str], SortValue]:
        if column in self._live_keys() and self.live is not None:
            at = self._live_keys().index(column)
            live = self.live
            return lambda key: sort_value(plain(live(key)[at]))
        i = self._col_index[column]
        cache, rows = self._sort_values, self._all

        def value(key: str) -> SortValue:
            v = cache.get(key)
            if v is None:
                v = cache[key] = sort_value(plain(rows[key][i]))
            return v

        return value

    def set_sort(self, column: str | None, descending: bool = False) -> None:
        """Sort by `column` (None: the order rows were given in); remembered per screen."""
        if column is not None and column not in self._col_index:
            return
        self.sort = (column, descending) if column is not None else None
        self._sort_values.clear()
        memory = getattr(self.app, "table_sorts", None)
        if isinstance(memory, dict):
            memory[self._memory_key()] = self.sort
        cursor = self.current_key
        self._set_view(self._sorted([k for k in self._order if self.matches(k, self._all[k])]))
        if cursor is not None:
            self.select_key(cursor)
        self._header = None
        self._strips.clear()
        self.refresh()

    def sort_by(self, column: str) -> None:
        """Sort by `column`; again reverses. Numbers start largest first, text from A."""
        if self.sort is not None and self.sort[0] == column:
            self.set_sort(column, not self.sort[1])
            return
        getter = self._value_getter(column) if column in self._col_index else None
        numeric = getter is not None and any(getter(k)[0] == 0 for k in self._view[:50])
        self.set_sort(column, numeric)

    def _memory_key(self) -> str:
        return f"{type(self.screen).__name__}/{self.id or ''}"

    def on_mount(self) -> None:
        memory = getattr(self.app, "table_sorts", None)
        if isinstance(memory, dict) and memory.get(self._memory_key()):
            self.sort = memory[self._memory_key()]

    def action_sort_step(self, step: int) -> None:
        """Sort by the next (or previous) column that is shown."""
        keys = self.shown_columns
        if not keys:
            return
        at = keys.index(self.sort[0]) if self.sort and self.sort[0] in keys else -1
        self.sort_by(keys[(at + step) % len(keys)] if at >= 0 else keys[0 if step > 0 else -1])

    def on_key(self, event: events.Key) -> None:
        """Shift+letter sorts by the column with that letter (k9s style)."""
        ch = event.character or ""
        if len(ch) == 1 and ch.isupper() and ch.lower() in self._letters:
            event.stop()
            event.prevent_default()
            self.sort_by(self._letters[ch.lower()])

    def _labels(self) -> list[Text]:
        """Header cells: the sort letter underlined, ▲/▼ on the sorted column."""
        by_key = {v: k for k, v in self._letters.items()}
        out: list[Text] = []
        for c in self.columns_spec:
            t = Text(c.label)
            letter = by_key.get(c.key)
            if letter is not None:
                at = c.label.lower().find(letter)
                t.stylize("underline", at, at + 1)
            if self.sort is not None and self.sort[0] == c.key:
                t.append("▼" if self.sort[1] else "▲")
            out.append(t)
        return out

    def column_at(self, x: int) -> str | None:
        """The key of the column under screen column `x` of this widget."""
        pos = x + self.scroll_offset.x
        for c, w in zip(self.columns_spec, self._widths, strict=False):
            if not w:
                continue
            if pos < w + 2 * PAD:
                return c.key
            pos -= w + 2 * PAD
        return None

    # -- geometry and rendering ------------------------------------------------------------
    def _on_screen(self, index: int) -> bool:
        top = self.scroll_offset.y
        return top <= index < top + max(1, self.size.height - 1)

    def _compute_widths(self) -> tuple[int, ...]:
        return fit_widths(self.columns_spec, self.size.width, self._need)

    def _grow_need(self, rows: Iterable[Row]) -> bool:
        """Note the widest content of growing columns; True if a column now wants more."""
        grown = False
        need = self._need
        for row in rows:
            for i in self._grow_index:
                n = len(plain(row[i]))
                if n > need[i]:
                    need[i] = n
                    grown = True
        return grown

    def _relayout(self) -> None:
        """Recompute the column widths; on a change every cached line is redrawn."""
        if not self.size.width:
            return
        widths = self._compute_widths()
        if widths != self._widths:
            self._widths = widths
            self._layout_version += 1
            self._header = None
            self._strips.clear()
            self.refresh()
        self.virtual_size = Size(self._total_width(), len(self._view) + 1)

    def _total_width(self) -> int:
        return sum(w + 2 * PAD for w in self._widths if w) if self._widths else self.size.width

    def on_resize(self, event: events.Resize) -> None:
        self._relayout()

    @property
    def shown_columns(self) -> list[str]:
        """Keys of the columns that fit the current width, in order."""
        widths = self._widths or self._compute_widths()
        return [c.key for c, w in zip(self.columns_spec, widths, strict=True) if w]

    def _cells_strip(self, cells: Sequence[Cell], style: Style) -> Strip:
        segments: list[Segment] = []
        pad = " " * PAD
        for cell, width in zip(cells, self._widths, strict=False):
            if not width:
                continue  # left out at this width
            segments.append(Segment(pad, style))
            if isinstance(cell, Text):
                text = cell.copy()
                text.truncate(width, overflow="ellipsis", pad=True)
                console = self.app.console
                # Text.render applies spans only; the Text's own style is added here
                cell_style = style + console.get_style(cell.style) if cell.style else style
                for seg in text.render(console):
                    segments.append(Segment(seg.text,
                                            cell_style + seg.style if seg.style else cell_style))
            else:
                s = cell if len(cell) <= width else cell[: max(0, width - 1)] + "…"
                segments.append(Segment(s.ljust(width), style))
            segments.append(Segment(pad, style))
        return Strip(segments)

    def render_lines(self, crop: Region) -> list[Strip]:
        self._base_style = self.rich_style  # once per paint, not once per line
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        if not self._widths:
            self._widths = self._compute_widths()
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self._base_style or self.rich_style
        if y == 0:
            if self._header is None:
                style = base + self.get_component_rich_style("keyed-table--header")
                self._header = self._cells_strip(self._labels(), style)
            strip = self._header
            style = base + self.get_component_rich_style("keyed-table--header")
            return strip.crop_extend(scroll_x, scroll_x + width, style)
        index = scroll_y + y - 1
        if index >= len(self._view):
            if index == 0:  # an empty table says so (and whether the filter hid its rows)
                note = "  none match the filter" if self._all and self._terms else "  none"
                return Strip([Segment(note.ljust(width)[:width], base + Style(dim=True,
                                                                           italic=True))])
            return Strip.blank(width, base)
        key = self._view[index]
        row = self._all[key]
        live = self.live(key) if self.live is not None else ()
        selected = index == self.cursor_row
        cached = self._strips.get(key)
        if (cached is not None and cached[0] is row and cached[1] == selected
                and cached[2] == self._layout_version and cached[3] == live):
            strip = cached[4]
        else:
            style = base
            if selected:
                style += self.get_component_rich_style(
                    "keyed-table--cursor" if self.has_focus else "keyed-table--cursor-blurred")
            cells = list(row)
            for i, cell in zip(self._live_index, live, strict=False):
                cells[i] = cell
            strip = self._cells_strip(cells, style)
            self._strips[key] = (row, selected, self._layout_version, live, strip)
        return strip.crop_extend(scroll_x, scroll_x + width,
                                 base if not selected else strip_style(strip, base))

    # -- cursor ----------------------------------------------------------------------------
    def watch_cursor_row(self, old: int, new: int) -> None:
        if not self._view:
            return
        clamped = min(max(0, new), len(self._view) - 1)
        if clamped != new:
            self.cursor_row = clamped
            return
        top = self.scroll_offset.y
        visible = max(1, self.size.height - 1)
        if new < top:
            self.scroll_to(y=new, animate=False)
        elif new >= top + visible:
            self.scroll_to(y=new - visible + 1, animate=False)
        self.refresh()
        self.post_message(self.Highlighted(self, self._view[new]))

    def action_move(self, delta: int) -> None:
        if self._view:
            self.cursor_row = min(len(self._view) - 1, max(0, self.cursor_row + delta))

    def action_page(self, direction: int) -> None:
        self.action_move(direction * max(1, self.size.height - 2))

    def action_edge(self, end: int) -> None:
        if self._view:
            self.cursor_row = len(self._view) - 1 if end else 0

    def action_select_cursor(self) -> None:
        key = self.current_key
        if key is not None:
            self.post_message(self.Drill(self, key))

    def on_click(self, event: events.Click) -> None:
        if event.y < 1:
            column = self.column_at(event.x)
            if column is not None:
                self.sort_by(column)
            return
        index = self.scroll_offset.y + event.y - 1
        if 0 <= index < len(self._view):
            self.cursor_row = index
            if event.chain >= 2:
                self.action_select_cursor()

    def on_focus(self) -> None:
        self._strips.pop(self.current_key or "", None)
        self.refresh()

    def on_blur(self) -> None:
        self._strips.pop(self.current_key or "", None)
        self.refresh()


def strip_style(strip: Strip, base: Style) -> Style:
    """The style a row's padding continues with (the cursor's background)."""
    segments = list(strip)
    return segments[0].style or base if segments else base
