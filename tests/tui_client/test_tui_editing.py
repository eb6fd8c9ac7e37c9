"""Plans archived and brought back, activities reordered and moved between
phases, removals confirmed, the command palette and its language, and the
high-contrast theme: each checked on the log and the projection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.command import CommandPalette
from textual.widgets import DataTable, Input

from core.events.bodies import ActivityMoved, EntityRemoved, PlanDetailsRevised
from tui_client.tui.app import PlansScreen, ViddaApp
from tui_client.tui.dialogs import ConfirmDialog
from tui_client.tui.plan_screen import slot
from tui_client.tui.theme import HIGH_CONTRAST

from .fixed_plan import build
from .pilot_helpers import logged_events, open_plan


async def _events(app: ViddaApp, plan: bytes) -> list[Any]:
    return await logged_events(app.home.db_path, plan)


async def test_archive_hides_the_plan_and_h_shows_it_to_bring_it_back(tmp_path: Path) -> None:
    fixed = await build(tmp_path / "home")
    app = ViddaApp(fixed.home, sync=False)
    async with app.run_test(size=(130, 36)) as pilot:
        plans = app.screen
        assert isinstance(plans, PlansScreen) and len(plans.summaries) == 1
        before = len(await _events(app, fixed.plan))
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")  # no: nothing written
        await pilot.pause()
        assert len(await _events(app, fixed.plan)) == before
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        events = await _events(app, fixed.plan)
        assert len(events) == before + 1
        body = events[-1].body
        assert isinstance(body, PlanDetailsRevised) and body.status == "archived"
        assert (await app.workspace.view(fixed.plan))["fields"]["status"] == "archived"
        assert plans.summaries == []  # hidden by default
        assert plans.query_one("#plans", DataTable).row_count == 0
        await pilot.press("h")
        await pilot.pause()
        assert [s.status for s in plans.summaries] == ["archived"]
        assert "(arkivert)" in str(plans.query_one("#plans", DataTable).get_row_at(0)[1])
        await pilot.press("x")  # on an archived plan: bring it back
        await pilot.pause()
        await pilot.click("#yes")
        await pilot.pause()
        body = (await _events(app, fixed.plan))[-1].body
        assert isinstance(body, PlanDetailsRevised) and body.status == "active"
        await pilot.press("h")
        await pilot.pause()
        assert [s.status for s in plans.summaries] == ["active"]


async def test_reorder_activities_and_move_one_to_the_next_phase(tmp_path: Path) -> None:
    fixed = await build(tmp_path / "home")
    app = ViddaApp(fixed.home, sync=False)
    async with app.run_test(size=(130, 36)) as pilot:
        screen = await open_plan(pilot, "activities")
        titles = [a["fields"]["title"] for a in screen.data["activities"]]
        table = screen.query_one("#activities", DataTable)
        table.move_cursor(row=0)
        rows = dict(table.rows)
        await pilot.press("shift+down")
        await pilot.pause()
        now = [a["fields"]["title"] for a in screen.data["activities"]]
        assert now == [titles[1], titles[0], *titles[2:]]
        assert table.cursor_row == 1  # the cursor went with it
        # Shown in the new order, the rows sorted in place (not all added again).
        assert [table.get_row_at(i)[1] for i in range(len(now))] == now
        assert all(table.rows[key] is row for key, row in rows.items())
        body = (await _events(app, fixed.plan))[-1].body
        assert (
            isinstance(body, ActivityMoved)
            and body.position == (screen.data["activities"][1]["fields"]["position"])
        )
        await pilot.press("shift+up", "shift+up")  # back up, and no further than the top
        await pilot.pause()
        assert [a["fields"]["title"] for a in screen.data["activities"]] == titles
        assert table.cursor_row == 0
        # To the next phase.
        phases = [p["id"] for p in screen.data["phases"]]
        first = screen.data["activities"][0]
        here = phases.index(first["fields"]["phase"])
        await pilot.press("greater_than_sign")
        await pilot.pause()
        moved = next(a for a in screen.data["activities"] if a["id"] == first["id"])
        assert moved["fields"]["phase"] == phases[here + 1]
        body = (await _events(app, fixed.plan))[-1].body
        assert isinstance(body, ActivityMoved) and body.phase.hex() == phases[here + 1]


def test_slot_between_neighbours_and_past_tied_keys() -> None:
    assert "1" < slot(["1", "3"], 1) < "3"
    assert slot(["1", "3"], 0) < "1"
    assert slot(["1", "3"], 2) > "3"
    tied = slot(["0P", "1", "1", "1E"], 2)  # between the two "1"s: just past them
    assert "1" < tied < "1E"


async def test_remove_asks_first_and_writes_a_removal(tmp_path: Path) -> None:
    fixed = await build(tmp_path / "home")
    app = ViddaApp(fixed.home, sync=False)
    async with app.run_test(size=(130, 36)) as pilot:
        screen = await open_plan(pilot, "notes")
        (note,) = screen.data["notes"]
        await pilot.press("x")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog) and "Husk" in dialog.question
        await pilot.press("escape")
        await pilot.pause()
        assert len(screen.data["notes"]) == 1
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert screen.data["notes"] == []
        assert [r["id"] for r in screen.data["removed"]] == [note["id"]]
        body = (await _events(app, fixed.plan))[-1].body
        assert isinstance(body, EntityRemoved) and body.entity.hex() == note["id"]


async def test_palette_has_the_apps_commands_in_the_language_of_the_moment(
    tmp_path: Path,
) -> None:
    fixed = await build(tmp_path / "home")
    app = ViddaApp(fixed.home, sync=False)
    async with app.run_test(size=(130, 36)) as pilot:
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Ny plan" in titles and "Innstillinger" in titles and "Synk nå" in titles
        assert any(t.startswith("Åpne: Aure") for t in titles)
        assert "Theme" not in titles  # Textual's own (English only) are left out
        await pilot.press("ctrl+p")
        await pilot.pause()
        palette = app.screen
        assert isinstance(palette, CommandPalette)
        assert palette.query_one(Input).placeholder == "Søk etter en kommando …"
        await pilot.press("escape")
        await pilot.pause()
        # The footer's own key for the palette, and our keys, follow the language.
        assert app._bindings.key_to_bindings["ctrl+p"][0].description == "Kommandoer"
        await pilot.press("l")
        await pilot.pause()
        assert app._bindings.key_to_bindings["ctrl+p"][0].description == "Commands"
        plans = app.screen
        assert plans._bindings.key_to_bindings["n"][0].description == "New plan"
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "New plan" in titles and "High contrast" in titles
        # A palette command does what it says: a new plan, written to the log.
        new_plan = next(c for c in app.get_system_commands(app.screen) if c.title == "New plan")
        new_plan.callback()
        await pilot.pause()
        app.screen.query_one("#f_municipality", Input).value = "Loppa"
        app.screen.query_one("#f_title", Input).value = "Levende Loppa"
        await pilot.click("#save")
        await pilot.pause()
        assert sorted(s.municipality for s in plans.summaries) == ["Aure", "Loppa"]
        assert len(await app.workspace.log.plans()) == 2


async def test_f1_lists_the_keys_and_f3_switches_to_high_contrast(tmp_path: Path) -> None:
    fixed = await build(tmp_path / "home")
    app = ViddaApp(fixed.home, sync=False)
    async with app.run_test(size=(130, 36)) as pilot:
        await pilot.press("f1")
        await pilot.pause()
        assert app.screen.query("HelpPanel")
        await pilot.press("f1")
        await pilot.pause()
        assert not app.screen.query("HelpPanel")
        assert app.theme != HIGH_CONTRAST.name
        await pilot.press("f3")
        await pilot.pause()
        assert app.theme == HIGH_CONTRAST.name
