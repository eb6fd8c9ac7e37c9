"""Steps the Pilot tests share: open the first plan (and a tab), read what
the app wrote to its log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.widgets import TabbedContent

from core.events.envelope import Event
from core.store.event_log import EventLog
from tui_client.tui.app import PlanScreen


async def logged_events(db_path: Path, plan: bytes) -> list[Event]:
    """The plan's events as a second process would read them from the log."""
    log = await EventLog.open(db_path)
    try:
        return await log.events(plan)
    finally:
        await log.close()


async def open_plan(pilot: Any, tab: str | None = None) -> PlanScreen:
    """Enter on the plans list (the first plan), then show `tab` if given."""
    await pilot.press("enter")
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, PlanScreen)
    if tab is not None:
        screen.query_one("#tabs", TabbedContent).active = f"tab-{tab}"
        await pilot.pause()
    return screen
