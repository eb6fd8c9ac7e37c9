"""A form of several fields edited in place: a panel above the status line.

`a` (add) and `e` (edit) on the entity tabs (activities, actors, …) open it
with one line per field, two fields side by side; Enter goes to the next
field and saves in the last one, Escape cancels. It replaced a modal
dialog: closing a modal screen makes Textual restyle the whole plan screen
below it (every pane's widgets, shown or not), ~35 ms more per edit than
an edit in place on a large plan.

Like the one-line `FieldEditor`, the panel stays open, every text kept,
until the edit is written: if it is refused (a bad date, say) the person
corrects the one field instead of typing the form again. The fields' lines
are kept (hidden) after the panel closes and reused when the next form has
the same fields, so opening the same kind of form again mounts nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Vertical
from textual.widget import Widget
from textual.widgets import Input, Label

from tui_client.tui.bindings import localise

# Called with every field's text (by name) on Enter in the last field; True
# once it is written (the panel closes).
SaveForm = Callable[[dict[str, str]], Awaitable[bool]]


class FormEditor(Vertical):
    DEFAULT_CSS = """
    FormEditor { height: auto; max-height: 60vh; display: none; background: $boost;
                 padding: 0 1; overflow-y: auto; }
    FormEditor #form-title { text-style: bold; width: 1fr; }
    FormEditor #form-hint { color: $text-muted; width: 1fr; }
    FormEditor #form-fields { layout: grid; grid-size: 4; grid-columns: auto 1fr auto 1fr;
                              grid-rows: 1; grid-gutter: 0 1; height: auto; }
    FormEditor #form-fields Label { width: auto; }
    FormEditor #form-fields Input { width: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def __init__(self) -> None:
        super().__init__(id="form-editor")
        self._save: SaveForm | None = None
        self._back_to: Widget | None = None
        self._names: tuple[str, ...] = ()  # the fields whose lines are mounted

    def compose(self) -> ComposeResult:
        yield Label("", id="form-title")
        yield Grid(id="form-fields")
        yield Label("", id="form-hint")

    @property
    def is_open(self) -> bool:
        return self.display

    def inputs(self) -> list[Input]:
        return list(self.query_one("#form-fields", Grid).query(Input))

    async def open(
        self,
        title: str,
        fields: list[tuple[str, str]],
        save: SaveForm,
        values: dict[str, str] | None = None,
    ) -> None:
        """Show the form: `fields` as (name, label), `values` by name; the
        cursor in the first field."""
        t = self.app.t  # type: ignore[attr-defined]
        localise(self, t)
        values = values or {}
        self._save = save
        if not self.is_open:
            self._back_to = self.screen.focused
        self.query_one("#form-title", Label).update(title)
        self.query_one("#form-hint", Label).update(t("form_hint"))
        grid = self.query_one("#form-fields", Grid)
        names = tuple(name for name, _ in fields)
        if names != self._names:
            await grid.remove_children()
            lines: list[Widget] = []
            for name, label in fields:
                lines += [Label(f"{label}:", id=f"l_{name}"), Input(id=f"f_{name}", compact=True)]
            await grid.mount_all(lines)
            self._names = names
        for name, label in fields:
            self.query_one(f"#l_{name}", Label).update(f"{label}:")
            field = self.query_one(f"#f_{name}", Input)
            field.value = values.get(name, "")
            field.cursor_position = len(field.value)
        self.display = True  # an inline style: a class would restyle every line below
        first = self.inputs()
        if first:
            first[0].focus()

    def values(self) -> dict[str, str]:
        return {name: self.query_one(f"#f_{name}", Input).value for name in self._names}

    def close(self) -> None:
        self.display = False
        self._save = None
        back, self._back_to = self._back_to, None
        if back is not None and back.is_attached:
            back.focus()

    @on(Input.Submitted, "#form-fields Input")
    async def submitted(self, event: Input.Submitted) -> None:
        """Enter: the next field, or (in the last) save."""
        event.stop()
        inputs = self.inputs()
        index = inputs.index(event.input)
        if index + 1 < len(inputs):
            inputs[index + 1].focus()
            return
        save = self._save
        if save is not None and await save(self.values()) and self._save is save:
            self.close()

    def action_cancel(self) -> None:
        self.close()
