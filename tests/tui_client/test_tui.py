"""The TUI driven by Pilot: every edit is a signed event in the log at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Input

from core.events.bodies import ConflictResolved, PlanDetailsRevised
from core.store.event_log import EventLog
from tui_client.home import Home
from tui_client.tui.app import PLAN_FIELDS, PlanScreen, PlansScreen, ViddaApp

PASS = "tui-test"


@pytest.fixture
async def home(tmp_path: Path) -> Home:
    h = Home(tmp_path / "kari")
    await h.init("Kari Nordmann", None, passphrase=PASS)
    return h


async def _events(home: Home, plan: bytes) -> list:
    log = await EventLog.open(home.db_path)
    try:
        return await log.events(plan)
    finally:
        await log.close()


async def test_demo_plan_open_and_edit_the_title_writes_one_event(home: Home) -> None:
    app = ViddaApp(home, sync=False)
    async with app.run_test(size=(100, 30)) as pilot:
        assert isinstance(app.screen, PlansScreen)
        await pilot.press("d")
        await pilot.pause()
        table = app.screen.query_one("#plans", DataTable)
        assert table.row_count == 1
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, PlanScreen)
        plan = app.screen.plan
        before = len(await _events(home, plan))
        await pilot.press("e")  # the cursor is on the first field: the title
        await pilot.pause()
        field = app.screen.query_one("#value", Input)
        field.value = "Et samlet Aure – ŋuorra, čálli, đ, š, ŧ, ž"
        await pilot.press("enter")
        await pilot.pause()
        events = await _events(home, plan)
        assert len(events) == before + 1
        body = events[-1].body
        assert isinstance(body, PlanDetailsRevised)
        assert body.title == "Et samlet Aure – ŋuorra, čálli, đ, š, ŧ, ž"
        ov = app.screen.query_one("#overview", DataTable)
        assert ov.get_row("title")[1] == body.title
    assert PLAN_FIELDS[0] == "title"


async def test_new_plan_add_activity_complete_it_and_switch_language(home: Home) -> None:
    app = ViddaApp(home, sync=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("n")
        await pilot.pause()
        app.screen.query_one("#f_municipality", Input).value = "Kárášjohka"
        app.screen.query_one("#f_title", Input).value = "Levende Kárášjohka"
        await pilot.click("#save")
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, PlanScreen)
        await pilot.press("a")
        await pilot.pause()
        app.screen.query_one("#f_title", Input).value = "Gjestebud i Šuoššjávri"
        app.screen.query_one("#f_kind", Input).value = "gjestebud"
        app.screen.query_one("#f_date", Input).value = "2026-12-03"
        await pilot.click("#save")
        await pilot.pause()
        activities = screen.data["activities"]
        assert [a["fields"]["title"] for a in activities] == ["Gjestebud i Šuoššjávri"]
        screen.query_one("#tabs").active = "tab-activities"
        await pilot.pause()
        await pilot.press("c")
        await pilot.pause()
        assert screen.data["activities"][0]["fields"]["status"] == "done"
        events = await _events(home, screen.plan)
        assert events[-1].type == "ActivityCompleted"
        await pilot.press("l")
        await pilot.pause()
        assert app.t("plans") == "Plans"
        assert screen.query_one("#overview", DataTable).get_row("title")[0] == "Title"


async def test_a_conflict_is_marked_and_resolved_with_a_picked_value(home: Home) -> None:
    from core.commands import edits
    from core.identity.keyfile import DeviceKey

    app = ViddaApp(home, sync=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("d")
        await pilot.pause()
        plan = app.screen.summaries[0].plan
        # Someone else, offline, edits the desired result at the same time.
        log = app.workspace.log
        state = await log.load_state(plan)
        other = DeviceKey.generate()
        await log.append(
            other, plan, edits.set_fields(state, "plan", plan, {"desired_result": "B"})
        )
        await log.append(
            home.signer(), plan, edits.set_fields(state, "plan", plan, {"desired_result": "A"})
        )
        await app.workspace.ingested()
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, PlanScreen)
        label = screen.query_one("#overview", DataTable).get_row("desired_result")[0]
        assert label.endswith("⚠")
        await pilot.press("r")
        await pilot.pause()
        await pilot.press("enter")  # pick the first (newest) value
        await pilot.pause()
        events = await _events(home, plan)
        assert isinstance(events[-1].body, ConflictResolved)
        assert screen.data["conflicts"] == []
