"""One field edited in place: a line above the status line, no dialog.

`e` on a field of the overview, a phase's status or a need's text (and `k`
/ `p` for a new need) opens it with the field's label and value; Enter
saves, Escape cancels. It replaced a modal dialog for these one-line edits:
closing a modal makes Textual restyle the whole screen below it, tens of
milliseconds per edit on a plan screen, for a dialog that holds one line.

The line stays open, the text kept, until the edit is written: if the
write is refused (a bad date, say) the person corrects the text instead of
typing it again. Forms of several fields and confirmations stay dialogs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Input, Label

from tui_client.tui.bindings import localise

# Called with the text on Enter; True once it is written (the line closes).
Save = Callable[[str], Awaitable[bool]]


class FieldEditor(Horizontal):
    DEFAULT_CSS = """
    FieldEditor { height: auto; display: none; background: $boost; }
    FieldEditor #edit-label { width: auto; max-width: 40%; padding: 1 1 0 1; }
    FieldEditor #value { width: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def __init__(self) -> None:
        super().__init__(id="field-editor")
        self._save: Save | None = None
        self._back_to: Widget | None = None

    def compose(self) -> ComposeResult:
        yield Label("", id="edit-label")
        yield Input(id="value")

    @property
    def is_open(self) -> bool:
        return self.display

    def open(self, label: str, value: str, save: Save) -> None:
        """Show the line with `value` (cursor at its end) and focus it."""
        localise(self, self.app.t)  # type: ignore[attr-defined]
        self._save, self._back_to = save, self.screen.focused
        self.query_one("#edit-label", Label).update(f"{label}:")
        field = self.query_one("#value", Input)
        field.value = value
        field.cursor_position = len(value)
        self.display = True  # an inline style: a class would restyle every line below
        field.focus()

    def close(self) -> None:
        self.display = False
        self._save = None
        back, self._back_to = self._back_to, None
        if back is not None and back.is_attached:
            back.focus()

    @on(Input.Submitted, "#value")
    async def submitted(self, event: Input.Submitted) -> None:
        event.stop()
        save = self._save
        if save is not None and await save(event.value) and self._save is save:
            self.close()

    def action_cancel(self) -> None:
        self.close()
