"""The plan list: open, create, archive (hidden unless asked for), the demo."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Header, Label

from tui_client.tui.bindings import localise
from tui_client.tui.cells import EDIT_ERRORS
from tui_client.tui.dialogs import ConfirmDialog, FormDialog
from tui_client.tui.status_line import status_bar
from tui_client.tui.workspace import PlanSummary

if TYPE_CHECKING:
    from tui_client.tui.app import ViddaApp


class PlansScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "new_plan", "new_plan"),
        Binding("d", "demo", "demo"),
        Binding("x", "archive", "archive"),
        Binding("h", "show_archived", "show_archived"),
        Binding("enter", "open", "open", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.summaries: list[PlanSummary] = []  # the rows shown, in order
        self.show_archived = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("", id="empty")
        yield DataTable(id="plans", cursor_type="row")
        yield status_bar()

    async def on_mount(self) -> None:
        await self.refresh_plans()

    async def refresh_plans(self) -> None:
        app: ViddaApp = self.app  # type: ignore[assignment]
        t = app.t
        if localise(self, t):
            self.refresh_bindings()
        table = self.query_one("#plans", DataTable)
        row = table.cursor_row
        table.clear(columns=True)
        table.add_columns(
            t("municipality"), t("title"), t("phases"), t("pending"), t("conflicts"), t("events")
        )
        every = await app.workspace.summaries()
        self.summaries = [s for s in every if self.show_archived or s.status != "archived"]
        for s in self.summaries:
            archived = f" ({t('archived')})" if s.status == "archived" else ""
            table.add_row(
                s.municipality,
                s.title + archived,
                f"{s.phases_done}/{s.phases}",
                str(s.pending),
                str(s.conflicts) if s.conflicts else "",
                str(s.events),
                key=s.plan.hex(),
            )
        if self.summaries:
            table.move_cursor(row=min(row, len(self.summaries) - 1))
        hidden = len(every) - len(self.summaries)
        empty = "" if self.summaries else t("no_plans")
        if hidden:
            empty = (empty + " " if empty else "") + t("archived_hidden", count=hidden)
        self.query_one("#empty", Label).update(empty)
        app.refresh_status()

    def _selected(self) -> PlanSummary | None:
        if not self.summaries:
            return None
        return self.summaries[self.query_one("#plans", DataTable).cursor_row]

    @on(DataTable.RowSelected, "#plans")
    def open_row(self, event: DataTable.RowSelected) -> None:
        from tui_client.tui.plan_screen import PlanScreen

        assert event.row_key.value is not None
        self.app.push_screen(PlanScreen(bytes.fromhex(event.row_key.value)))

    def action_open(self) -> None:
        from tui_client.tui.plan_screen import PlanScreen

        chosen = self._selected()
        if chosen is not None:
            self.app.push_screen(PlanScreen(chosen.plan))

    def action_new_plan(self) -> None:
        app: ViddaApp = self.app  # type: ignore[assignment]
        t = app.t

        async def done(values: dict[str, str] | None) -> None:
            if not values:
                return
            try:
                await app.workspace.new_plan(values["title"], values["municipality"])
            except EDIT_ERRORS as exc:
                app.notify(str(exc), severity="error")
            await self.refresh_plans()

        self.app.push_screen(
            FormDialog(
                t("new_plan"),
                [("municipality", t("municipality")), ("title", t("title"))],
            ),
            done,
        )

    async def action_demo(self) -> None:
        app: ViddaApp = self.app  # type: ignore[assignment]
        await app.workspace.add_demo()
        await self.refresh_plans()

    async def action_show_archived(self) -> None:
        self.show_archived = not self.show_archived
        await self.refresh_plans()

    def action_archive(self) -> None:
        """Archive the selected plan (a signed status change, after a yes);
        an archived plan, shown with `h`, is brought back the same way."""
        app: ViddaApp = self.app  # type: ignore[assignment]
        chosen = self._selected()
        if chosen is None:
            return
        restore = chosen.status == "archived"
        question = "confirm_restore" if restore else "confirm_archive"

        async def done(yes: bool | None) -> None:
            if not yes:
                return
            status = "active" if restore else "archived"
            try:
                await app.workspace.set_values(chosen.plan, "plan", chosen.plan, {"status": status})
            except EDIT_ERRORS as exc:
                app.notify(str(exc), severity="error")
                return
            app.local_change()
            await self.refresh_plans()

        self.app.push_screen(ConfirmDialog(app.t(question, title=chosen.title)), done)
