"""One field edited in place (no dialog): `e` on the overview and the
phases tab, `k`/`p` for a new need. Each checked on the log, the
projection and the screen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.widgets import DataTable, Input, Label, TabbedContent
from textual.widgets._footer import FooterKey

from core.events.bodies import (
    DesiredResultRevised,
    NeedIdentified,
    PhaseRevised,
    SocietalGoalSet,
)
from tui_client.tui.app import PLAN_FIELDS, ViddaApp
from tui_client.tui.field_editor import FieldEditor
from tui_client.tui.status_line import StatusLine

from .fixed_plan import build
from .pilot_helpers import logged_events, open_plan


async def _events(app: ViddaApp, plan: bytes) -> list[Any]:
    return await logged_events(app.home.db_path, plan)


async def test_e_edits_an_overview_field_in_place_and_enter_writes_one_event(
    tmp_path: Path,
) -> None:
    fixed = await build(tmp_path / "home")
    app = ViddaApp(fixed.home, sync=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_plan(pilot)
        overview = screen.query_one("#overview", DataTable)
        overview.move_cursor(row=PLAN_FIELDS.index("societal_goal"))
        before = len(await _events(app, fixed.plan))
        focused = app.focused
        await pilot.press("e")
        await pilot.pause()
        editor = screen.query_one(FieldEditor)
        field = screen.query_one("#value", Input)
        assert app.screen is screen  # in place: no dialog on top
        assert editor.is_open and field.has_focus
        assert field.value == screen.data["fields"]["societal_goal"]
        assert str(screen.query_one("#edit-label", Label).render()) == "Samfunnsmål:"
        # The line sits above the status line, which stays in sight.
        status = screen.query_one("#status", StatusLine)
        assert editor.region.bottom <= status.region.y < app.size.height
        footer = {k.key: k.description for k in screen.query(FooterKey)}
        assert footer["escape"] == "Avbryt"  # Escape cancels, said in the footer (and F1)
        field.value = ""
        await pilot.press(*"qxe", "l")  # typed into the line, not taken as keys
        assert field.value == "qxel" and app.screen is screen
        field.value = "Aure: levende bygder, ŋ đ ŧ"
        await pilot.press("enter")
        await pilot.pause()
        events = await _events(app, fixed.plan)
        assert len(events) == before + 1
        body = events[-1].body
        assert isinstance(body, SocietalGoalSet) and body.text == field.value
        assert screen.data["fields"]["societal_goal"] == "Aure: levende bygder, ŋ đ ŧ"
        assert overview.get_row("societal_goal")[1] == "Aure: levende bygder, ŋ đ ŧ"
        # Only the changed cell was redrawn: the cursor stays on the edited field.
        assert overview.cursor_row == PLAN_FIELDS.index("societal_goal")
        assert not editor.is_open and app.focused is focused  # back where it was


async def test_escape_cancels_the_edit_and_a_refused_one_keeps_the_text(tmp_path: Path) -> None:
    fixed = await build(tmp_path / "home")
    app = ViddaApp(fixed.home, sync=False)
    async with app.run_test(size=(130, 36)) as pilot:
        screen = await open_plan(pilot)
        overview = screen.query_one("#overview", DataTable)
        overview.move_cursor(row=PLAN_FIELDS.index("desired_result_due"))
        before = len(await _events(app, fixed.plan))
        editor = screen.query_one(FieldEditor)
        focused = app.focused
        await pilot.press("e")
        await pilot.pause()
        screen.query_one("#value", Input).value = "2031-06-30"
        await pilot.press("escape")  # cancels the edit, stays on the plan
        await pilot.pause()
        assert app.screen is screen and not editor.is_open and app.focused is focused
        assert len(await _events(app, fixed.plan)) == before
        await pilot.press("e")
        await pilot.pause()
        screen.query_one("#value", Input).value = "neste sommer"  # not a date
        await pilot.press("enter")
        await pilot.pause()
        assert len(await _events(app, fixed.plan)) == before
        assert editor.is_open and screen.query_one("#value", Input).value == "neste sommer"
        assert any(n.severity == "error" for n in app._notifications)
        screen.query_one("#value", Input).value = "2031-06-30"
        await pilot.press("enter")
        await pilot.pause()
        body = (await _events(app, fixed.plan))[-1].body
        assert isinstance(body, DesiredResultRevised) and body.due == "2031-06-30"
        assert not editor.is_open


async def test_phase_status_and_a_new_need_in_place_on_the_phases_tab(tmp_path: Path) -> None:
    fixed = await build(tmp_path / "home")
    app = ViddaApp(fixed.home, sync=False, lang="en")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_plan(pilot)
        screen.query_one("#tabs", TabbedContent).active = "tab-phases"
        await pilot.pause()
        phases = screen.query_one("#phases", DataTable)
        phases.focus()
        last = screen.data["phases"][-1]["id"]
        phases.move_cursor(row=screen.phase_rows.index(("phase", last)))
        await pilot.press("e")
        await pilot.pause()
        assert app.screen is screen
        assert str(screen.query_one("#edit-label", Label).render()) == "Status:"
        screen.query_one("#value", Input).value = "ongoing"
        await pilot.press("enter")
        await pilot.pause()
        body = (await _events(app, fixed.plan))[-1].body
        assert isinstance(body, PhaseRevised) and body.status == "ongoing"
        assert screen.data["phases"][-1]["fields"]["status"] == "ongoing"
        await pilot.press("p")  # a process need under the selected phase
        await pilot.pause()
        assert str(screen.query_one("#edit-label", Label).render()) == "Process need:"
        screen.query_one("#value", Input).value = "Møte med Sámi nuoraid searvi"
        await pilot.press("enter")
        await pilot.pause()
        body = (await _events(app, fixed.plan))[-1].body
        assert isinstance(body, NeedIdentified) and body.kind == "process"
        need = next(n for n in screen.data["needs"] if n["fields"]["text"].startswith("Møte"))
        assert need["fields"]["phase"] == last
        assert ("need", need["id"]) in screen.phase_rows


async def test_the_open_lines_escape_key_follows_a_language_switch(tmp_path: Path) -> None:
    fixed = await build(tmp_path / "home")
    app = ViddaApp(fixed.home, sync=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_plan(pilot)
        screen.query_one("#overview", DataTable).move_cursor(row=PLAN_FIELDS.index("societal_goal"))
        await pilot.press("e")
        await pilot.pause()
        editor = screen.query_one(FieldEditor)
        assert editor.is_open

        def escape() -> str:
            (binding,) = editor._bindings.key_to_bindings["escape"]
            return binding.description

        norsk = escape()
        await app.action_language()
        await pilot.pause()
        assert editor.is_open and escape() == app.t("cancel") != norsk
