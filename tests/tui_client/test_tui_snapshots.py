"""Snapshots (SVG) of the main screens in Bokmål and English.

The data is `fixed_plan` (fixed keys, clock and ids), the header clock is
off and nothing on these screens blinks, so the SVGs are the same on every
machine and run. After a deliberate change of the screens: review, then
`pytest tests/tui_client/test_tui_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, TabbedContent

from tui_client.tui.app import ActorCompareScreen, AsOfScreen, PlanScreen, PlansScreen, ViddaApp

from .fixed_plan import build

SIZE = (130, 36)
Compare = Callable[..., bool]


def _app(tmp_path: Path, lang: str, *, contrast: bool = False) -> ViddaApp:
    fixed = asyncio.run(build(tmp_path / "home"))
    return ViddaApp(fixed.home, lang=lang, sync=False, contrast=contrast)


def _open_tab(tab: str) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run(pilot: Pilot[Any]) -> None:
        await pilot.pause()
        await pilot.press("enter")  # open the plan
        await pilot.pause()
        if tab != "overview":
            pilot.app.screen.query_one("#tabs", TabbedContent).active = f"tab-{tab}"
            await pilot.pause()
            pilot.app.screen.query_one(f"#{tab}", DataTable).focus()
        # The history is read in a worker: on a busy machine a pause alone
        # could draw the screen before the rows are in.
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(pilot.app.screen, PlanScreen)

    return run


async def _plans(pilot: Pilot[Any]) -> None:
    await pilot.pause()
    assert isinstance(pilot.app.screen, PlansScreen)


@pytest.mark.parametrize("lang", ["nb", "en"])
def test_plans_list(snap_compare: Compare, tmp_path: Path, lang: str) -> None:
    assert snap_compare(_app(tmp_path, lang), terminal_size=SIZE, run_before=_plans)


@pytest.mark.parametrize("lang", ["nb", "en"])
@pytest.mark.parametrize("tab", ["overview", "activities", "actors", "conflicts", "history"])
def test_plan_tab(snap_compare: Compare, tmp_path: Path, lang: str, tab: str) -> None:
    assert snap_compare(_app(tmp_path, lang), terminal_size=SIZE, run_before=_open_tab(tab))


@pytest.mark.parametrize("lang", ["nb", "en"])
def test_actor_analysis_between_phases(snap_compare: Compare, tmp_path: Path, lang: str) -> None:
    async def run(pilot: Pilot[Any]) -> None:
        await _open_tab("actors")(pilot)
        await pilot.press("v")
        await pilot.pause()
        await pilot.press("left_square_bracket")  # then: the end of phase 1
        await pilot.pause()
        assert isinstance(pilot.app.screen, ActorCompareScreen)

    assert snap_compare(_app(tmp_path, lang), terminal_size=SIZE, run_before=run)


def test_history_stepped_back_a_day(snap_compare: Compare, tmp_path: Path) -> None:
    async def run(pilot: Pilot[Any]) -> None:
        await _open_tab("history")(pilot)
        await pilot.press("t", "left_curly_bracket")
        await pilot.pause()
        assert isinstance(pilot.app.screen, AsOfScreen)

    assert snap_compare(_app(tmp_path, "nb"), terminal_size=SIZE, run_before=run)


def test_high_contrast_theme_on_the_actors_tab(snap_compare: Compare, tmp_path: Path) -> None:
    app = _app(tmp_path, "nb", contrast=True)
    assert snap_compare(app, terminal_size=SIZE, run_before=_open_tab("actors"))
