"""History under Pilot: filters, jumps by event, day and phase, the server's
time, and the actor analysis compared between phases (on `fixed_plan`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.widgets import DataTable, Input, Label

from core.store.event_log import EventLog
from tui_client.tui.app import ActorCompareScreen, AsOfScreen, PlanScreen, ViddaApp
from tui_client.tui.history import event_steps, step_day, step_phase

from .fixed_plan import KARI, FixedPlan, build
from .pilot_helpers import open_plan


async def _open(app: ViddaApp, pilot: Any, tab: str) -> PlanScreen:
    return await open_plan(pilot, tab)


async def test_filter_history_by_entity_author_and_type(tmp_path: Path) -> None:
    fixed = await build(tmp_path / "home")
    app = ViddaApp(fixed.home, sync=False, lang="en")
    async with app.run_test(size=(130, 36)) as pilot:
        screen = await _open(app, pilot, "history")
        everything = len(screen.history_rows)
        assert everything == len(screen.history_all or [])
        await pilot.press("f")
        await pilot.pause()
        app.screen.query_one("#f_author", Input).value = "bjørn"
        await pilot.click("#save")
        await pilot.pause()
        (row,) = screen.history_rows
        assert row["field"] == "desired_result" and row["author"] != KARI.public_key.hex()
        assert "Who: bjørn" in str(screen.query_one("#history-filter", Label).render())
        assert screen.query_one("#history", DataTable).row_count == 1
        # Entity by name, type by part of the event type: the actor's classifications.
        await pilot.press("f")
        await pilot.pause()
        app.screen.query_one("#f_author", Input).value = ""
        app.screen.query_one("#f_entity", Input).value = "ungdomsråd"
        app.screen.query_one("#f_type", Input).value = "classified"
        await pilot.click("#save")
        await pilot.pause()
        assert [(r["type"], r["field"], r["old"], r["new"]) for r in screen.history_rows] == [
            ("ActorClassified", "interest", [2], 3),
            ("ActorClassified", "influence", [1], 2),
        ]
        # Stepping through time from a filtered row goes by the matching events only,
        # while the whole plan is shown as it was.
        await pilot.press("t")
        await pilot.pause()
        asof = app.screen
        assert isinstance(asof, AsOfScreen)
        youth = next(a for a in asof.data["actors"] if a["fields"]["name"] == "Ungdomsrådet")
        assert youth["fields"]["influence"] == 2
        here = asof.index
        assert asof.steps[here]["type"] == "ActorClassified"
        await pilot.press("left_square_bracket")  # no older match: stays
        await pilot.pause()
        assert asof.index == here
        # Clearing the filter shows everything again.
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("f")
        await pilot.pause()
        for name in ("entity", "type"):
            app.screen.query_one(f"#f_{name}", Input).value = ""
        await pilot.click("#save")
        await pilot.pause()
        assert len(screen.history_rows) == everything


async def test_jump_a_day_and_a_phase_through_the_plan(tmp_path: Path) -> None:
    fixed = await build(tmp_path / "home")
    app = ViddaApp(fixed.home, sync=False)
    async with app.run_test(size=(130, 36)) as pilot:
        screen = await _open(app, pilot, "history")
        await pilot.press("t")  # the newest event (2021-02-01)
        await pilot.pause()
        asof = app.screen
        assert isinstance(asof, AsOfScreen)

        def phase2() -> Any:
            return asof.data["phases"][1]["fields"]["status"]

        def day() -> str:
            return str(asof.steps[asof.index]["time"])[:10]

        assert day() == "2021-02-01" and phase2() == "done"
        await pilot.press("left_curly_bracket")  # end of the previous day with events
        await pilot.pause()
        assert day() == "2021-01-29" and phase2() == "done"
        await pilot.press("left_curly_bracket")
        await pilot.pause()
        assert day() == "2021-01-28" and phase2() == "ongoing"
        # The end of 01-28: both sides of the conflict are there.
        assert len(asof.data["conflicts"]) == 1
        await pilot.press("right_curly_bracket")
        await pilot.pause()
        assert day() == "2021-01-29"
        # Phases: back to the creation (phase 1 done), forward to phase 2 done.
        await pilot.press("less_than_sign")
        await pilot.pause()
        assert day() == "2021-01-27" and phase2() == "ongoing"
        assert asof.data["phases"][0]["fields"]["status"] == "done"
        await pilot.press("greater_than_sign")
        await pilot.pause()
        assert day() == "2021-01-29" and phase2() == "done"
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen


def test_day_and_phase_steps_are_pure_functions_of_the_time_line() -> None:
    def row(event: str, time: str, **kw: Any) -> dict[str, Any]:
        return {"event": event, "time": time, "hlc": 0, "author": "00", "seq": 1, **kw}

    rows = [  # newest first
        row("e5", "2021-03-02T10:00"),
        row("e4", "2021-03-02T09:00", kind="phase", field="status", new="done"),
        row("e4", "2021-03-02T09:00", kind="phase", field="actual_end", new="x"),
        row("e3", "2021-03-01T12:00"),
        row("e2", "2021-02-27T08:00"),
        row("e1", "2021-02-27T07:00", kind="phase", field="status", new="ongoing"),
    ]
    steps = event_steps(rows)
    assert [s["event"] for s in steps] == ["e5", "e4", "e3", "e2", "e1"]
    assert step_day(steps, 0, 1) == 2  # from 03-02 back to the end of 03-01
    assert step_day(steps, 2, 1) == 3  # to the end of 02-27
    assert step_day(steps, 3, 1) == 3  # nothing earlier
    assert step_day(steps, 4, -1) == 2  # from 02-27 (early) forward to the end of 03-01
    assert step_day(steps, 2, -1) == 0  # to the end of 03-02
    assert step_phase(steps, 0, 1) == 1 and step_phase(steps, 1, 1) == 4
    assert step_phase(steps, 4, -1) == 1 and step_phase(steps, 1, -1) == 1


async def test_history_shows_the_servers_time_for_acknowledged_events(tmp_path: Path) -> None:
    fixed: FixedPlan = await build(tmp_path / "home")
    log = await EventLog.open(fixed.home.db_path)
    try:  # the server acknowledged all of Kari's events of the plan at 2021-02-02 08:00
        kari = (await log.vector(fixed.plan))[KARI.public_key]
        await log.record(
            [
                (
                    "INSERT INTO sync_acks(server_id, plan_id, device_key, first_seq, last_seq, "
                    "received_ms) VALUES (?,?,?,?,?,?)",
                    (b"s" * 16, fixed.plan, KARI.public_key, 1, kari, 1_612_252_800_000),
                )
            ]
        )
    finally:
        await log.close()
    app = ViddaApp(fixed.home, sync=False)
    async with app.run_test(size=(130, 36)) as pilot:
        screen = await _open(app, pilot, "history")
        rows = screen.history_rows
        mine = [r for r in rows if r["author"] == KARI.public_key.hex()]
        assert all(r["server"] == "2021-02-02T08:00:00.000Z" for r in mine)
        assert all(r["server"] is None for r in rows if r not in mine)
        table = screen.query_one("#history", DataTable)
        assert table.get_row_at(0)[1] == "2021-02-02T08:00:00"


async def test_actor_analysis_at_the_end_of_each_phase_against_now(tmp_path: Path) -> None:
    fixed = await build(tmp_path / "home")
    app = ViddaApp(fixed.home, sync=False)
    async with app.run_test(size=(130, 36)) as pilot:
        await _open(app, pilot, "actors")
        await pilot.press("v")
        await pilot.pause()
        cmp = app.screen
        assert isinstance(cmp, ActorCompareScreen)
        # Then: the end of phase 2 (01-29); now: the present.
        assert [p[0] for p in cmp.points] == ["Oppstart og forankring", "Innsikt", ""]
        assert cmp.rows == [
            ("Ungdomsrådet", "influence", 1, 2),
            ("Ungdomsrådet", "interest", 2, 3),
            ("Sámi nuoraid searvi", "+", None, None),
        ]
        await pilot.press("left_square_bracket")  # then: the end of phase 1
        await pilot.pause()
        assert ("Grendelagene", "stance", "sceptical", "champion") in cmp.rows
        assert len(cmp.rows) == 5
        await pilot.press("left_curly_bracket")  # now: the end of phase 2
        await pilot.pause()
        assert cmp.rows == [
            ("Grendelagene", "influence", 2, 3),
            ("Grendelagene", "stance", "sceptical", "champion"),
        ]
        assert cmp.query_one("#compare", DataTable).row_count == 2
