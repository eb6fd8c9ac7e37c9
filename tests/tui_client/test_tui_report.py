"""The research report as a screen: the same text as `vidda report PLAN`."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from tui_client.tui.app import PlanScreen, ViddaApp
from tui_client.tui.report import ReportScreen, report_text

from .cli_helpers import vidda_parallel
from .fixed_plan import build


async def test_R_shows_the_plans_report_and_escape_goes_back(tmp_path: Path) -> None:
    fixed = await build(tmp_path / "home")
    app = ViddaApp(fixed.home, sync=False)
    async with app.run_test(size=(130, 36)) as pilot:
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, PlanScreen)
        await pilot.press("R")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ReportScreen)
        await app.workers.wait_for_complete()
        await pilot.pause()
        shown = str(screen.query_one("#report", Static).render())
        expected = await report_text(app.workspace, fixed.plan)
        assert screen.text == expected and "Aure" in expected
        assert expected.splitlines()[0] in shown
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, PlanScreen)
        # Also a palette command while a plan is open (R is not in the footer).
        (report,) = [c for c in app.get_system_commands(app.screen) if c.title == "Rapport"]
        report.callback()
        await pilot.pause()
        assert isinstance(app.screen, ReportScreen)
    # The command line prints the same report for the same log.
    (out,) = vidda_parallel((fixed.home.path, ["report", fixed.plan.hex()]))
    assert out.stdout.strip() == expected.strip()
