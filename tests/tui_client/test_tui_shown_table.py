"""`ShownTable.show`: changed cells updated in place, a new order sorted in
place, anything else rebuilt with columns sized to the new rows."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets.data_table import ColumnKey

from tui_client.tui.shown_table import ShownTable


class _One(App[None]):
    def compose(self) -> ComposeResult:
        yield ShownTable(id="t")


async def test_cells_update_in_place_and_a_rebuild_sizes_columns_afresh() -> None:
    app = _One()
    async with app.run_test() as pilot:
        table = app.query_one(ShownTable)
        table.show(("a", "b"), [("x", ("1", "kort")), ("y", ("2", "en mye lengre tekst"))])
        await pilot.pause()
        rows = dict(table.rows)
        table.move_cursor(row=1)
        table.show(("a", "b"), [("x", ("1", "endret")), ("y", ("2", "en mye lengre tekst"))])
        await pilot.pause()
        assert table.get_row("x") == ["1", "endret"]
        assert dict(table.rows) == rows and table.cursor_row == 1  # not rebuilt
        width = table.columns[ColumnKey("1")].content_width
        table.show(("a", "b"), [("x", ("1", "endret")), ("y", ("2", "kort nå"))])
        await pilot.pause()  # narrower text: the column stays (no re-measure, no layout)
        assert table.columns[ColumnKey("1")].content_width == width
        longer = "en tekst som er lengre enn alle"
        table.show(("a", "b"), [("x", ("1", "endret")), ("y", ("2", longer))])
        await pilot.pause()  # wider text: the column grows to fit it
        assert table.columns[ColumnKey("1")].content_width == len(longer)
        table.show(("a", "b"), [("x", ("1", "endret")), ("y", ("2", "en mye lengre tekst"))])
        await pilot.pause()
        table.show(("a", "b"), [("y", ("2", "en mye lengre tekst")), ("x", ("1", "endret"))])
        await pilot.pause()
        assert [table.get_row_at(i)[0] for i in range(2)] == ["2", "1"]
        assert all(table.rows[k] is r for k, r in rows.items())  # sorted in place
        table.show(("a", "b"), [("x", ("1", "endret"))])  # y removed: rebuilt
        await pilot.pause()
        assert table.row_count == 1 and table.cursor_row == 0
        assert table.columns[ColumnKey("1")].content_width == len("endret")
