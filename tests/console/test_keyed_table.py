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


def test_columns_give_way_to_a_cut_reason() -> None:
    """At 100 columns a long Reason (priority 7) takes the width of the lower-priority columns
    (Project, GPUs, Node, Pool, Runtime, Util, Idle) and shows in full; the higher ones
    (ID, Name, User, State) stay at their content's width. With short reasons they all stay."""
    from console.screens.jobs import COLUMNS as JOB_COLUMNS
    from console.widgets.table_columns import fit_widths

    keys = [c.key for c in JOB_COLUMNS]
    reason = "needs 4 x A100-80GB, largest free block is 1 on node gpu-a01"
    need = {"id": 1, "name": 12, "user": 5, "project": 6, "node": 8, "pool": 5,
            "reason": len(reason)}
    needs = [need.get(k, 0) for k in keys]
    widths = dict(zip(keys, fit_widths(JOB_COLUMNS, 100, needs), strict=True))
    assert widths["reason"] == len(reason)
    assert {k for k, w in widths.items() if w} == {"id", "name", "user", "state", "reason"}
    assert widths["name"] == 12 and widths["user"] == 5

    needs[keys.index("reason")] = 6  # "exit 2"
    widths = dict(zip(keys, fit_widths(JOB_COLUMNS, 100, needs), strict=True))
    assert widths["reason"] >= 6 and widths["gpus"] and widths["runtime"] and widths["project"]
