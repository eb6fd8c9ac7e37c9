"""Forms of several fields edited in place (no dialog): `e` and `a` on the
entity tabs. Each checked on the log, the projection and the screen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.widgets import DataTable, Input, Label
from textual.widgets._footer import FooterKey

from core.events.bodies import ActivityPlanned, ActivityRevised
from tui_client.tui.app import ViddaApp
from tui_client.tui.form_editor import FormEditor
from tui_client.tui.status_line import StatusLine

from .fixed_plan import build
from .pilot_helpers import logged_events, open_plan


async def _events(app: ViddaApp, plan: bytes) -> list[Any]:
    return await logged_events(app.home.db_path, plan)


async def test_e_edits_an_activity_in_a_form_in_place_and_enter_in_the_last_field_saves(
    tmp_path: Path,
) -> None:
    fixed = await build(tmp_path / "home")
    app = ViddaApp(fixed.home, sync=False)
    async with app.run_test(size=(130, 36)) as pilot:
        screen = await open_plan(pilot, "activities")
        table = screen.query_one("#activities", DataTable)
        table.focus()
        table.move_cursor(row=1)
        await pilot.pause()
        activity = screen.data["activities"][1]
        before = len(await _events(app, fixed.plan))
        await pilot.press("e")
        await pilot.pause()
        form = screen.query_one(FormEditor)
        assert app.screen is screen  # in place: no dialog on top
        assert form.is_open
        title = screen.query_one("#f_title", Input)
        assert title.has_focus and title.value == activity["fields"]["title"]
        assert str(screen.query_one("#l_title", Label).render()) == "Tittel:"
        assert str(screen.query_one("#form-title", Label).render()) == "Endre: Aktiviteter"
        # The form sits above the status line, which stays in sight.
        status = screen.query_one("#status", StatusLine)
        assert form.region.bottom <= status.region.y < app.size.height
        footer = {k.key: k.description for k in screen.query(FooterKey)}
        assert footer["escape"] == "Avbryt"
        await pilot.press(*"qxe")  # typed into the field, not taken as keys
        assert title.value.endswith("qxe") and app.screen is screen
        await pilot.press("shift+down", "c")  # the tab's keys wait while the form is open
        await pilot.pause()
        assert "shift+down" not in footer and "c" not in footer
        assert screen.data["activities"][1]["id"] == activity["id"]
        title.value = "Folkemøte på Tjeldbergodden"
        await pilot.press("enter")  # the next field, nothing saved yet
        await pilot.pause()
        assert form.is_open and not title.has_focus
        assert len(await _events(app, fixed.plan)) == before
        inputs = form.inputs()
        inputs[-1].focus()
        await pilot.press("enter")  # in the last field: saved
        await pilot.pause()
        events = await _events(app, fixed.plan)
        assert len(events) == before + 1
        body = events[-1].body
        assert isinstance(body, ActivityRevised)
        assert body.sets() == [("title", "Folkemøte på Tjeldbergodden")]  # only what changed
        assert table.get_row_at(1)[1] == "Folkemøte på Tjeldbergodden"
        assert not form.is_open and app.focused is table and table.cursor_row == 1


async def test_a_refused_form_stays_open_with_the_text_and_escape_cancels(tmp_path: Path) -> None:
    fixed = await build(tmp_path / "home")
    app = ViddaApp(fixed.home, sync=False, lang="en")
    async with app.run_test(size=(130, 36)) as pilot:
        screen = await open_plan(pilot, "activities")
        screen.query_one("#activities", DataTable).focus()
        before = len(await _events(app, fixed.plan))
        await pilot.press("e")
        await pilot.pause()
        form = screen.query_one(FormEditor)
        screen.query_one("#f_title", Input).value = "Ny tittel"
        await pilot.press("escape")  # cancels, nothing written
        await pilot.pause()
        assert not form.is_open and app.screen is screen
        assert len(await _events(app, fixed.plan)) == before
        await pilot.press("a")  # a new activity, with a date that is not one
        await pilot.pause()
        assert form.is_open
        assert str(screen.query_one("#form-title", Label).render()) == "Add: Activities"
        assert all(i.value == "" for i in form.inputs())
        screen.query_one("#f_title", Input).value = "Gjestebud"
        screen.query_one("#f_date", Input).value = "neste sommer"
        form.inputs()[-1].focus()
        await pilot.press("enter")
        await pilot.pause()
        assert len(await _events(app, fixed.plan)) == before
        assert form.is_open and screen.query_one("#f_title", Input).value == "Gjestebud"
        assert any(n.severity == "error" for n in app._notifications)
        screen.query_one("#f_date", Input).value = "2026-12-03"
        form.inputs()[-1].focus()
        await pilot.press("enter")
        await pilot.pause()
        body = (await _events(app, fixed.plan))[-1].body
        assert isinstance(body, ActivityPlanned) and body.date == "2026-12-03"
        assert not form.is_open
        assert "Gjestebud" in [a["fields"]["title"] for a in screen.data["activities"]]
