"""The layout at 80×24 and on a wide screen: the sync status line is on
screen on every main screen, above the key footer, never under it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.geometry import Region
from textual.widgets import Footer, TabbedContent

from tui_client.tui.app import AsOfScreen, PlanScreen, PlansScreen, ViddaApp
from tui_client.tui.status_line import StatusLine

from .fixed_plan import build


def _assert_status_visible(app: ViddaApp) -> None:
    screen = app.screen
    status = screen.query_one("#status", StatusLine)
    footer = screen.query_one(Footer)
    whole = Region(0, 0, *app.size)
    assert status.region.height == 1
    assert whole.contains_region(status.region)
    assert not status.region.overlaps(footer.region)
    assert status.region.bottom <= footer.region.y  # the line sits above the keys
    # What is drawn at the line's place is the line (nothing docked over it).
    for x in (status.region.x, status.region.right - 1):
        widget, _ = screen.get_widget_at(x, status.region.y)
        assert widget is status
    assert str(status.render()).startswith("Synk: ")  # Bokmål, the default


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_the_status_line_is_visible_above_the_footer(tmp_path: Path, size: Any) -> None:
    fixed = await build(tmp_path / "home")
    app = ViddaApp(fixed.home, sync=False)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, PlansScreen)
        _assert_status_visible(app)
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, PlanScreen)
        _assert_status_visible(app)
        screen.query_one("#tabs", TabbedContent).active = "tab-history"
        await pilot.pause()
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, AsOfScreen)
        _assert_status_visible(app)
