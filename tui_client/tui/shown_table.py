"""A table that is told what to show and changes only what differs.

The plan screen used to clear and refill its tables after every edit: on a
big plan that is a hundred rows re-added and measured for one changed cell,
and the cursor jumped back to the first row. `ShownTable.show` takes the
whole wanted content (columns, and rows by key) and, when the columns and
the row keys are the same as on screen, updates just the changed cells
(and sorts the rows in place if only their order changed); otherwise it
rebuilds, keeping the cursor on the same row number.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

Row = tuple[str, Sequence[str]]  # (row key, cells)


class ShownTable(DataTable[str]):
    def __init__(self, *, id: str) -> None:
        super().__init__(id=id, cursor_type="row")
        self._columns_shown: tuple[str, ...] = ()
        self._rows_shown: dict[str, tuple[str, ...]] = {}

    def show(self, columns: Sequence[str], rows: Sequence[Row]) -> None:
        """Make the table hold exactly `rows` under `columns` (labels)."""
        wanted = {key: tuple(cells) for key, cells in rows}
        if tuple(columns) == self._columns_shown and wanted.keys() == self._rows_shown.keys():
            for key, cells in wanted.items():
                old = self._rows_shown[key]
                for i, (new, was) in enumerate(zip(cells, old, strict=True)):
                    if new != was:
                        self._update(key, i, new)
            if list(wanted) == list(self._rows_shown) or self._reorder(wanted):
                self._rows_shown = wanted
                return
        row = self.cursor_row
        self.clear(columns=True)  # columns too: their widths start from the new rows
        for i, label in enumerate(columns):
            self.add_column(label, key=str(i))
        for key, cells in wanted.items():
            self.add_row(*cells, key=key)
        self._columns_shown, self._rows_shown = tuple(columns), wanted
        if wanted:
            self.move_cursor(row=min(row, len(wanted) - 1))

    def _update(self, key: str, column: int, text: str) -> None:
        """One cell; its column widened if the text needs it. Not narrowed:
        a narrower column means measuring every cell of it again, and
        both that and a wider one lay the whole screen out anew (tens of
        milliseconds on a plan screen); a rebuild narrows it."""
        col = self.columns.get(ColumnKey(str(column)))
        wider = col is None or cell_len(text) > col.content_width
        self.update_cell(key, str(column), text, update_width=wider)

    def _reorder(self, wanted: dict[str, tuple[str, ...]]) -> bool:
        """The same rows in another order (an activity moved up or down):
        sorted in place when every row's cells differ from the others' (the
        table's sort sees cells, not row keys); False: rebuild instead."""
        where = {cells: i for i, cells in enumerate(wanted.values())}
        if len(where) != len(wanted):
            return False
        self.sort(key=lambda cells: where[tuple(cells)])
        return True
