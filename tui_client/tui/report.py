"""The research report of a plan (`vidda report PLAN`) as a screen.

The same text the command prints (`core.research.report_text`): how the
goal and desired result were revised, phases planned vs actual with a
Gantt chart, activities, participants, the actor analysis per phase,
edits by affiliation, offline spells and conflicts. Built in a worker, so a
large plan never freezes the app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Header, Static

from core.research.report import plan_report
from core.research.report_text import render_report
from tui_client.tui.bindings import localise
from tui_client.tui.status_line import status_bar

if TYPE_CHECKING:
    from tui_client.tui.app import ViddaApp
    from tui_client.tui.workspace import Workspace


async def report_text(ws: Workspace, plan: bytes) -> str:
    """The plan's report, from the log: events, members, and the server's
    receive times this device knows (its own acknowledged events)."""
    events = await ws.log.events(plan)
    members = {m.device: m for m in (await ws.home.membership(ws.log)).members()}
    received: dict[tuple[bytes, bytes, int], int] = {}
    for device, first, last, ms in await ws.log.fetch(
        "SELECT device_key, first_seq, last_seq, min(received_ms) FROM sync_acks "
        "WHERE plan_id=? AND received_ms>0 GROUP BY device_key, first_seq, last_seq",
        (plan,),
    ):
        for seq in range(int(first), int(last) + 1):
            key = (plan, bytes(device), seq)
            received[key] = min(int(ms), received.get(key, int(ms)))
    return render_report(plan_report(plan, events, members, received))


class ReportScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "back")]

    def __init__(self, plan: bytes) -> None:
        super().__init__()
        self.plan = plan
        self.text = ""

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="report-scroll"):
            yield Static("", id="report", markup=False)
        yield status_bar()

    def on_mount(self) -> None:
        app: ViddaApp = self.app  # type: ignore[assignment]
        if localise(self, app.t):
            self.refresh_bindings()
        self.query_one("#report", Static).update(app.t("report_reading"))
        self.run_worker(self._build(), exclusive=True, group="report")

    async def _build(self) -> None:
        app: ViddaApp = self.app  # type: ignore[assignment]
        self.text = await report_text(app.workspace, self.plan)
        self.query_one("#report", Static).update(self.text)
        self.query_one("#report-scroll", VerticalScroll).focus()

    def action_back(self) -> None:
        self.app.pop_screen()
