"""The keyed table applies refreshes incrementally: unchanged rows keep their objects and
cached lines, changed rows report only their changed cells, the cursor stays on its key, and
the filter matches words and column:value."""

from __future__ import annotations

from rich.text import Text
from textual.app import App, ComposeResult

from console.widgets.keyed_table import Column, KeyedTable, Row

COLUMNS = (Column("id", "ID", 4), Column("user", "User", 8), Column("state", "State", 10))


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield KeyedTable(COLUMNS, id="t")


def rows(n: int, state: str = "queued") -> dict[str, Row]:
    return {str(i): (str(i), f"user{i % 3}", Text(state)) for i in range(n, 0, -1)}


async def test_sync_touches_only_what_changed() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 20)) as pilot:
        table = app.query_one(KeyedTable)
        first = rows(50)
        stats = table.sync(first)
        assert (stats.added, stats.removed, stats.cells_updated) == (50, 0, 0)
        assert table.shown_keys[:3] == ["50", "49", "48"]
        await pilot.pause()
        table.select_key("10")

        again = rows(50)  # equal but new objects, as from a fresh engine reply
        stats = table.sync(again)
        assert (stats.added, stats.removed, stats.cells_updated) == (0, 0, 0)
        assert table.row_cells("7") is first["7"]  # the old row object (and its line) kept

        changed = rows(50)
        changed["7"] = ("7", "user1", Text("running"))
        changed["8"] = ("8", "someone", Text("running"))
        stats = table.sync(changed)
        assert stats.cells_updated == 3 and not stats.rebuilt
        assert table.row_cells("7") is changed["7"]

        grown = {"51": ("51", "new", Text("queued")), **changed}
        del grown["3"]
        stats = table.sync(grown)
        assert (stats.added, stats.removed) == (1, 1)
        assert table.shown_keys[0] == "51" and "3" not in table.shown_keys
        assert table.current_key == "10", "the cursor follows its row"


async def test_filter_words_and_columns() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 20)):
        table = app.query_one(KeyedTable)
        data = rows(30)
        data["5"] = ("5", "user2", Text("running"))
        table.sync(data)
        table.set_filter("state:run")
        assert table.shown_keys == ["5"]
        table.set_filter("user1")
        assert table.shown_keys == [k for k in data if data[k][1] == "user1"]
        table.set_filter("user:user2 state:queued")
        assert "5" not in table.shown_keys and table.shown_keys
        table.set_filter("nobody:x")
        assert table.row_count == 0
        table.set_filter("")
        assert table.row_count == 30
        # rows arriving while filtered are filtered too
        table.set_filter("state:running")
        data["6"] = ("6", "user0", Text("running"))
        table.sync(data)
        assert table.shown_keys == ["6", "5"]
