"""The TUI driven by Pilot: every edit is a signed event in the log at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Label

from core.events.bodies import ConflictResolved, PlanDetailsRevised
from tests.tui_client.pilot_helpers import logged_events
from tui_client.home import Home
from tui_client.tui.app import PLAN_FIELDS, PlanScreen, PlansScreen, ViddaApp, actor_grid

PASS = "tui-test"


@pytest.fixture
async def home(tmp_path: Path) -> Home:
    h = Home(tmp_path / "kari")
    await h.init("Kari Nordmann", None, passphrase=PASS)
    return h


async def _submit(app: ViddaApp, pilot) -> None:  # type: ignore[no-untyped-def]
    """Enter in a form's last field saves it (as a person would)."""
    app.screen.query(Input).last().focus()
    await pilot.press("enter")
    await pilot.pause()


async def _events(home: Home, plan: bytes) -> list:
    return await logged_events(home.db_path, plan)


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
        await _submit(app, pilot)
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


async def test_needs_are_added_and_moved_between_phases_like_on_the_tablecloth(
    home: Home,
) -> None:
    app = ViddaApp(home, sync=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("n")
        await pilot.pause()
        app.screen.query_one("#f_municipality", Input).value = "Nesseby"
        app.screen.query_one("#f_title", Input).value = "Unjárga 2030"
        await pilot.click("#save")
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, PlanScreen)
        screen.query_one("#tabs").active = "tab-phases"
        await pilot.pause()
        first, second = (p["id"] for p in screen.data["phases"][:2])
        await pilot.press("k")  # a knowledge need under the first phase
        await pilot.pause()
        app.screen.query_one("#value", Input).value = "Hva bruker ungdom sentrum til?"
        await pilot.press("enter")
        await pilot.pause()
        (need,) = screen.data["needs"]
        assert need["fields"]["phase"] == first and need["fields"]["kind"] == "knowledge"
        table = screen.query_one("#phases", DataTable)
        table.move_cursor(row=screen.phase_rows.index(("need", need["id"])))
        await pilot.press("greater_than_sign")
        await pilot.pause()
        assert screen.data["needs"][0]["fields"]["phase"] == second
        events = await _events(home, screen.plan)
        assert events[-1].type == "NeedMoved"


async def test_step_through_history_shows_the_plan_as_it_was(home: Home) -> None:
    app = ViddaApp(home, sync=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("d")
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, PlanScreen)
        await pilot.press("e")
        await pilot.pause()
        app.screen.query_one("#value", Input).value = "Ny tittel"
        await pilot.press("enter")
        await pilot.pause()
        screen.query_one("#tabs").active = "tab-history"
        await pilot.pause()
        await pilot.press("t")  # the newest event: the plan as it is now
        await pilot.pause()
        asof = app.screen
        assert asof.data["fields"]["title"] == "Ny tittel"
        await pilot.press("left_square_bracket")  # one event back: the old title
        await pilot.pause()
        assert asof.data["fields"]["title"] == "Et samlet Aure med et sentrum alle er stolte av"
        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert asof.data["fields"]["title"] == "Ny tittel"
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen


async def test_settings_remember_the_server_and_refuse_a_bad_address(home: Home) -> None:
    app = ViddaApp(home, sync=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f2")
        await pilot.pause()
        url = app.screen.query_one("#url", Input)
        url.focus()
        url.value = "http://wrong"
        await pilot.press("enter")
        await pilot.pause()
        assert home.profile().server_url is None
        assert "ws://" in str(app.screen.query_one("#error", Label).render())
        url.value = "ws://127.0.0.1:9"
        await pilot.press("enter")
        await pilot.pause()
        assert home.profile().server_url == "ws://127.0.0.1:9"


async def test_actor_analysis_involvement_and_decisions_through_forms(home: Home) -> None:
    from core.events.bodies import ActorClassified, DecisionRecorded, InvolvementRecorded

    app = ViddaApp(home, sync=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("d")
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, PlanScreen)
        tabs = screen.query_one("#tabs")
        tabs.active = "tab-actors"
        await pilot.pause()
        before = len(screen.data["actors"])
        await pilot.press("a")
        await pilot.pause()
        form = app.screen
        form.query_one("#f_name", Input).value = "Sámi nuoraid searvi"
        form.query_one("#f_type", Input).value = "organisation"
        form.query_one("#f_category", Input).value = "youth"
        form.query_one("#f_participation", Input).value = "should"
        form.query_one("#f_influence", Input).value = "1"
        form.query_one("#f_interest", Input).value = "3"
        await _submit(app, pilot)
        names = [a["fields"]["name"] for a in screen.data["actors"]]
        assert len(names) == before + 1 and "Sámi nuoraid searvi" in names
        # Redo the analysis: more influence now. Only the changed field is written.
        table = screen.query_one("#actors", DataTable)
        table.move_cursor(row=names.index("Sámi nuoraid searvi"))
        await pilot.press("e")
        await pilot.pause()
        assert app.screen.query_one("#f_influence", Input).value == "1"
        app.screen.query_one("#f_influence", Input).value = "2"
        await _submit(app, pilot)
        events = await _events(home, screen.plan)
        assert isinstance(events[-1].body, ActorClassified)
        assert events[-1].body.influence == 2 and events[-1].body.sets() == [("influence", 2)]
        grid = actor_grid(screen.data["actors"], app.t).splitlines()
        row_2 = next(line for line in grid if line.startswith("  2 │")).split("│")[1].split()
        assert row_2[3] != "·"  # someone at influence 2, interest 3
        cell = next(line for line in grid if line.startswith("  2×3:"))
        assert "Sámi nuoraid searvi" in cell
        # Involvement for the first activity, by its number; then a decision.
        tabs.active = "tab-involvement"
        await pilot.pause()
        await pilot.press("a")
        await pilot.pause()
        app.screen.query_one("#f_activity", Input).value = "1"
        app.screen.query_one("#f_category", Input).value = "youth"
        app.screen.query_one("#f_participants", Input).value = "12"
        await _submit(app, pilot)
        body = (await _events(home, screen.plan))[-1].body
        assert isinstance(body, InvolvementRecorded) and body.participants == 12
        assert body.activity.hex() == screen.data["activities"][0]["id"]
        tabs.active = "tab-decisions"
        await pilot.pause()
        await pilot.press("a")
        await pilot.pause()
        app.screen.query_one("#f_body", Input).value = "council"
        app.screen.query_one("#f_text", Input).value = "Kommunestyret vedtar planen."
        app.screen.query_one("#f_case_ref", Input).value = "PS 21/12"
        await _submit(app, pilot)
        body = (await _events(home, screen.plan))[-1].body
        assert isinstance(body, DecisionRecorded) and body.case_ref == "PS 21/12"


async def test_first_run_sets_up_the_device_in_a_dialog_and_unlock_asks_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tui_client.tui.app import SetupScreen, UnlockScreen

    monkeypatch.delenv("VIDDA_PASSPHRASE", raising=False)
    fresh = Home(tmp_path / "ny")
    app = ViddaApp(fresh, sync=False)
    async with app.run_test(size=(100, 30)) as pilot:
        assert isinstance(app.screen, SetupScreen)
        app.screen.query_one("#name", Input).value = "Máret Sara"
        app.screen.query_one("#passphrase", Input).value = "hemmelig"
        app.screen.query_one("#repeat", Input).value = "ikke lik"
        await _submit(app, pilot)
        assert isinstance(app.screen, SetupScreen) and not fresh.initialised
        app.screen.query_one("#repeat", Input).value = "hemmelig"
        await _submit(app, pilot)
        await pilot.pause()
        assert isinstance(app.screen, PlansScreen)
        assert fresh.profile().name == "Máret Sara"
    # Next start: the key is locked until the right passphrase is given.
    again = Home(tmp_path / "ny")
    app = ViddaApp(again, sync=False)
    async with app.run_test(size=(100, 30)) as pilot:
        assert isinstance(app.screen, UnlockScreen)
        app.screen.query_one("#passphrase", Input).value = "feil"
        await _submit(app, pilot)
        assert isinstance(app.screen, UnlockScreen)
        app.screen.query_one("#passphrase", Input).value = "hemmelig"
        await _submit(app, pilot)
        await pilot.pause()
        assert isinstance(app.screen, PlansScreen)
        await pilot.press("d")  # the demo plan is offered on the empty list
        await pilot.pause()
        assert len(app.screen.summaries) == 1
