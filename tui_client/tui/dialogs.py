"""Dialogs of the terminal app: editing a form, confirming,
resolving a conflict, first-run setup, unlocking the key, settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Input, Label

from tui_client.home import HomeError

if TYPE_CHECKING:
    from tui_client.tui.app import ViddaApp


def _text(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "–"
    return str(value)


# --- dialogs -----------------------------------------------------------------------------------


class ConfirmDialog(ModalScreen[bool]):
    """A yes/no question before an edit that is hard to see undone (archive,
    remove): `y` or Enter on Yes confirms, `n` or Escape says no."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "answer(False)", "no", show=False),
        Binding("y", "answer(True)", "yes", show=False),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        t = self.app.t  # type: ignore[attr-defined]
        with Vertical(id="dialog"):
            yield Label(self.question, id="question")
            yield Button(t("yes"), variant="error", id="yes")
            yield Button(t("no"), variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class FormDialog(ModalScreen[dict[str, str] | None]):
    """Several labelled inputs (a new plan, a new activity)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        title: str,
        fields: list[tuple[str, str]],
        password: bool = False,
        values: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.title_text, self.fields, self.password = title, fields, password
        self.values = values or {}

    def compose(self) -> ComposeResult:
        t = self.app.t  # type: ignore[attr-defined]
        with Vertical(id="dialog"):
            yield Label(self.title_text)
            for name, label in self.fields:
                yield Label(label)
                yield Input(
                    value=self.values.get(name, ""),
                    id=f"f_{name}",
                    password=self.password and name == "passphrase",
                )
            yield Button(t("save"), variant="primary", id="save")
            yield Button(t("cancel"), id="cancel")

    @on(Button.Pressed, "#save")
    def save(self) -> None:
        self.dismiss({n: self.query_one(f"#f_{n}", Input).value for n, _ in self.fields})

    @on(Input.Submitted)
    def next_or_save(self, event: Input.Submitted) -> None:
        inputs = list(self.query(Input))
        index = inputs.index(event.input)
        if index + 1 < len(inputs):
            inputs[index + 1].focus()
        else:
            self.save()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class ResolveDialog(ModalScreen[Any]):
    """A conflict side by side: each value with author and time; pick one
    (Enter on its row) or write a merged value."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, conflict: dict[str, Any], names: dict[str, str]) -> None:
        super().__init__()
        self.conflict, self.names = conflict, names

    def compose(self) -> ComposeResult:
        t = self.app.t  # type: ignore[attr-defined]
        with Vertical(id="dialog"):
            yield Label(f"{t('resolve')}: {self.conflict['kind']} · {self.conflict['field']}")
            yield Label(t("conflict_hint"))
            table: DataTable[str] = DataTable(id="values", cursor_type="row")
            table.add_columns(t("value"), t("who"), t("when"))
            for v in self.conflict["values"]:
                who = self.names.get(v["author"], v["author"][:12])
                table.add_row(_text(v["value"]), who, v["time"][:19])
            yield table
            yield Label(t("merged_value"))
            yield Input(id="merged")
            yield Button(t("cancel"), id="cancel")

    @on(DataTable.RowSelected)
    def pick(self, event: DataTable.RowSelected) -> None:
        self.dismiss(("pick", self.conflict["values"][event.cursor_row]["value"]))

    @on(Input.Submitted)
    def merged(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(("text", event.value))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class SetupScreen(Screen[None]):
    """First run: the person's name and a passphrase for the new device key;
    creates the key, the workspace and the empty log."""

    def compose(self) -> ComposeResult:
        t = self.app.t  # type: ignore[attr-defined]
        with Vertical(id="dialog"):
            yield Label(t("setup_title"))
            yield Label(t("your_name"))
            yield Input(id="name")
            yield Label(t("passphrase"))
            yield Input(id="passphrase", password=True)
            yield Label(t("repeat_passphrase"))
            yield Input(id="repeat", password=True)
            yield Label("", id="error")
            yield Button(t("create"), variant="primary", id="create")

    @on(Input.Submitted)
    async def next_field(self, event: Input.Submitted) -> None:
        inputs = list(self.query(Input))
        index = inputs.index(event.input)
        if index + 1 < len(inputs):
            inputs[index + 1].focus()
        else:
            await self.create()

    @on(Button.Pressed, "#create")
    async def create(self) -> None:
        app: ViddaApp = self.app  # type: ignore[assignment]
        name = self.query_one("#name", Input).value.strip()
        passphrase = self.query_one("#passphrase", Input).value
        error = self.query_one("#error", Label)
        if not name:
            error.update(app.t("name_missing"))
        elif not passphrase:
            error.update(app.t("passphrase_missing"))
        elif passphrase != self.query_one("#repeat", Input).value:
            error.update(app.t("passphrase_mismatch"))
        else:
            await app.home.init(name, None, passphrase=passphrase)
            app.home.signer(passphrase)
            app.pop_screen()
            await app.start()


class UnlockScreen(Screen[None]):
    """The passphrase that opens this device's key (to sign edits)."""

    def compose(self) -> ComposeResult:
        t = self.app.t  # type: ignore[attr-defined]
        with Vertical(id="dialog"):
            yield Label(t("unlock_title"))
            yield Input(id="passphrase", password=True)
            yield Label("", id="error")
            yield Button(t("unlock"), variant="primary", id="unlock")

    @on(Input.Submitted)
    @on(Button.Pressed, "#unlock")
    async def unlock(self) -> None:
        app: ViddaApp = self.app  # type: ignore[assignment]
        try:
            app.home.signer(self.query_one("#passphrase", Input).value)
        except HomeError:
            self.query_one("#error", Label).update(app.t("wrong_passphrase"))
            return
        app.pop_screen()
        await app.start()


class SettingsScreen(ModalScreen[None]):
    """The server to sync with, and who this device is."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        app: ViddaApp = self.app  # type: ignore[assignment]
        t = app.t
        prof = app.home.profile()
        with Vertical(id="dialog"):
            yield Label(t("settings"))
            yield Label(f"{t('your_name')}: {prof.name}")
            yield Label(f"{t('device')}: {prof.device}")
            yield Label(f"{t('workspace')}: {prof.workspace}")
            yield Label(t("server_url"))
            yield Input(value=prof.server_url or "", placeholder="ws://127.0.0.1:8765", id="url")
            yield Label("", id="error")
            yield Button(t("save"), variant="primary", id="save")
            yield Button(t("cancel"), id="cancel")

    @on(Input.Submitted)
    @on(Button.Pressed, "#save")
    def save(self) -> None:
        app: ViddaApp = self.app  # type: ignore[assignment]
        url = self.query_one("#url", Input).value.strip()
        if url and not url.startswith(("ws://", "wss://")):
            self.query_one("#error", Label).update(app.t("bad_url"))
            return
        prof = app.home.profile()
        prof.server_url = url or None
        app.home.save_profile(prof)
        app.call_later(app.restart_sync)
        self.dismiss(None)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
