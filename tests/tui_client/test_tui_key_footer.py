"""The footer is rebuilt when the keys it shows change, and only then."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Footer, TabbedContent
from textual.widgets._footer import FooterKey

from tui_client.tui.app import PlanScreen, ViddaApp

from .fixed_plan import build
from .pilot_helpers import open_plan


def _keys(screen: PlanScreen) -> list[FooterKey]:
    return list(screen.query_one(Footer).query(FooterKey))


async def test_the_footer_is_kept_when_the_keys_stay_and_rebuilt_when_they_change(
    tmp_path: Path,
) -> None:
    fixed = await build(tmp_path / "home")
    app = ViddaApp(fixed.home, sync=False)
    async with app.run_test(size=(130, 36)) as pilot:
        screen = await open_plan(pilot)
        shown = _keys(screen)
        assert shown
        screen.refresh_bindings()  # the same keys: nothing to rebuild
        await pilot.pause()
        assert _keys(screen) == shown
        await pilot.press("ctrl+p")  # a modal screen (the palette), then back
        await pilot.pause()
        assert app.screen is not screen
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen
        assert _keys(screen) == shown
        screen.query_one("#tabs", TabbedContent).active = "tab-history"
        await pilot.pause()  # other keys on this tab: rebuilt
        on_history = _keys(screen)
        assert on_history != shown
        assert "t" in {k.key for k in on_history}
        assert "t" not in {k.key for k in shown}
        await pilot.press("l")  # English: the same keys, new descriptions
        await pilot.pause()
        english = _keys(screen)
        assert [k.key for k in english] == [k.key for k in on_history]
        assert "Filter" in {k.description for k in english}
