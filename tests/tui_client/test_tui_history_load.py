"""The history of a large plan is read in a worker: keys keep working while
it is read, the newest rows come first, a change of the plan or closing the
screen cancels the reading, and the rows at the end are the ones read all
at once (`Workspace.history`)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import asdict
from textual import events
from textual.widgets import DataTable, Label, TabbedContent
from textual.worker import WorkerState

from core.commands import edits
from core.projections.history import changes, changes_newest_first, timeline
from core.projections.plan_state import PlanState, evolve
from core.projections.plan_view import conflicts
from core.store.event_log import EventLog
from core.store.time_travel import state_as_of
from tui_client.tui import history_load
from tui_client.tui.app import AsOfScreen, PlanScreen, ViddaApp
from tui_client.tui.history import Stepper, as_of_view, event_steps, step_key
from tui_client.tui.history_load import TimelineFold

from .fixed_plan import KARI, FixedPlan, build

EDITS = 3_000  # more events, over the plan's activities


async def _large(path: Path) -> FixedPlan:
    """The fixed plan, then EDITS edits of its activities' titles."""
    fixed = await build(path)
    log = await EventLog.open(fixed.home.db_path)
    try:
        state = await log.load_state(fixed.plan)
        acts = [eid for (kind, eid) in state.entities if kind == "activity"]
        for n in range(EDITS // len(acts)):
            bodies = [
                body
                for i, act in enumerate(acts)
                for body in edits.set_fields(
                    state, "activity", act, {"title": f"Aktivitet {i}.{n}"}
                )
            ]
            for ev in await log.append(KARI, fixed.plan, bodies):
                state = evolve(state, ev)
    finally:
        await log.close()
    return fixed


@pytest.fixture
def slow_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """One event per turn of the event loop, and a millisecond per row: the
    reading spans seconds and many turns (as on a plan of 100k events)."""
    monkeypatch.setattr(history_load, "SLICE", 0.0)
    monkeypatch.setattr(history_load, "RX_SLICE", 25)

    def slow(change: Any) -> dict[str, Any]:
        time.sleep(0.001)
        return asdict(change)

    monkeypatch.setattr(history_load, "asdict", slow)


def _key(app: ViddaApp, name: str) -> None:
    """A key as the terminal driver hands it over (no waiting for idle)."""
    event = events.Key(name, None)
    event.set_sender(app)
    app._driver.send_message(event)  # type: ignore[union-attr]


async def _until(ready: Any, limit: float = 60.0) -> None:
    end = time.monotonic() + limit
    while not ready():
        assert time.monotonic() < end, "not there in time"
        await asyncio.sleep(0.001)


async def _open(app: ViddaApp, pilot: Any) -> PlanScreen:
    await pilot.press("enter")
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, PlanScreen)
    return screen


async def _all_at_once(app: ViddaApp, plan: bytes) -> list[dict[str, Any]]:
    return list(reversed(await app.workspace.history(plan)))


def test_newest_first_equals_the_time_line_walk(tmp_path: Path) -> None:
    async def run() -> None:
        fixed = await _large(tmp_path / "home")
        log = await EventLog.open(fixed.home.db_path)
        try:
            line = timeline(await log.events(fixed.plan))
        finally:
            await log.close()
        newest = [c for cs in changes_newest_first(line) for c in reversed(cs)]
        assert newest == list(reversed(changes(line)))
        assert sum(1 for c in newest if c.old) > 2_500  # old values found by event id

    asyncio.run(run())


def test_stepping_shows_the_view_of_the_state_after_each_event(tmp_path: Path) -> None:
    """`Stepper` keeps the view after every event it folds (`AsOfTracker`,
    one entity derived again per event): each equals `as_of_view` of the
    state folded from zero, stepping back or forward, from the in-memory
    fold or from the log's checkpoints."""

    async def run() -> None:
        fixed = await _large(tmp_path / "home")
        plan = fixed.plan
        log = await EventLog.open(fixed.home.db_path)
        try:
            state = await log.load_state(plan)
            first = {k: eid for (k, eid) in sorted(state.entities) if k != "plan"}
            (conflict, *_) = conflicts(state)
            bodies = [
                edits.remove_entity(state, "actor", first["actor"]),
                edits.remove_entity(state, "activity", first["activity"]),
                *edits.set_fields(state, "phase", first["phase"], {"name": "Ny fase"}),
                edits.resolve(
                    state,
                    conflict["kind"],
                    bytes.fromhex(conflict["entity"]),
                    conflict["field"],
                    conflict["values"][0]["value"],
                ),
            ]
            await log.append(KARI, plan, bodies)
            line = timeline(await log.events(plan))
            expected, folded = [], PlanState(plan)
            for ev in line:
                evolve(folded, ev)
                expected.append(as_of_view(folded))
            assert expected[-1]["conflicts"] == [] and expected[-2]["conflicts"]
            fold = TimelineFold(plan, line)
            await fold.run()
            for stepper in (Stepper(log, plan, line, fold), Stepper(log, plan, line)):
                for pos in reversed(range(len(line))):  # `[` from the newest event
                    assert await stepper.view_at(line[pos].id.hex()) == expected[pos], pos
            stepper = Stepper(log, plan, line, fold)
            for pos in [1_500, *range(1_200, len(line), 7)]:  # a jump back, then forward
                assert await stepper.view_at(line[pos].id.hex()) == expected[pos], pos
        finally:
            await log.close()

    asyncio.run(run())


async def test_keys_work_while_the_history_is_read(tmp_path: Path, slow_reading: None) -> None:
    fixed = await _large(tmp_path / "home")
    app = ViddaApp(fixed.home, sync=False, lang="en")
    async with app.run_test(size=(130, 36)) as pilot:
        screen = await _open(app, pilot)
        tabs = screen.query_one("#tabs", TabbedContent)
        table = screen.query_one("#history", DataTable)
        tabs.active = "tab-history"
        await _until(lambda: screen.history_load is not None and table.row_count > 0)
        load = screen.history_load
        assert load is not None and not load.done
        # The newest rows are on screen, with the progress above them.
        assert table.row_count == 2_000
        assert "reading history" in str(screen.query_one("#history-filter", Label).render())
        table.focus()
        _key(app, "down")
        await _until(lambda: table.cursor_row == 1)
        assert not load.done  # the key was handled while reading
        _key(app, "t")  # time travel waits for the whole history: said, not frozen
        await _until(lambda: bool(app._notifications))
        assert not load.done and app.screen is screen
        tabs.active = "tab-overview"  # another tab meanwhile; the reading goes on
        await _until(lambda: load.done)
        assert table.cursor_row == 1  # kept through the last redraw
        expected = await _all_at_once(app, fixed.plan)
        assert screen.history_all == expected and len(expected) > 2_500
        assert screen.history_steps == event_steps(expected)
        assert app.workspace.timelines[fixed.plan] == timeline(
            await app.workspace.log.events(fixed.plan)
        )
        tabs.active = "tab-history"
        await pilot.pause()
        label = str(screen.query_one("#history-filter", Label).render())
        assert "reading" not in label and f"newest 2000 of {len(expected)}" in label


async def test_a_change_restarts_the_reading_and_closing_stops_it(
    tmp_path: Path, slow_reading: None
) -> None:
    fixed = await _large(tmp_path / "home")
    app = ViddaApp(fixed.home, sync=False, lang="en")
    async with app.run_test(size=(130, 36)) as pilot:
        screen = await _open(app, pilot)
        screen.query_one("#tabs", TabbedContent).active = "tab-history"
        await _until(lambda: screen.history_load is not None)
        first = screen.history_load
        (worker,) = [w for w in app.workers if w.group == "history"]
        # An edit (here: of the plan's title) while reading: the reading starts over.
        await app.workspace.set_field(fixed.plan, "plan", fixed.plan, "title", "Ny tittel")
        await screen.reload()
        await _until(lambda: worker.state == WorkerState.CANCELLED)
        assert first is not None and not first.done
        assert screen.history_load is not first
        await _until(lambda: screen.history_all is not None)
        expected = await _all_at_once(app, fixed.plan)
        assert screen.history_all == expected
        assert expected[0]["new"] == "Ny tittel"
        # Read again after the next change; closing the plan stops the reading.
        await app.workspace.set_field(fixed.plan, "plan", fixed.plan, "title", "Igjen")
        await screen.reload()
        await _until(lambda: any(w.group == "history" for w in app.workers))
        (worker,) = [w for w in app.workers if w.group == "history"]
        _key(app, "escape")
        await _until(lambda: worker.state == WorkerState.CANCELLED)
        assert not app.screen.query("#history")


async def test_first_time_travel_folds_in_memory_while_keys_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixed = await _large(tmp_path / "home")  # no time-line checkpoints in its log
    app = ViddaApp(fixed.home, sync=False, lang="en")
    async with app.run_test(size=(130, 36)) as pilot:
        screen = await _open(app, pilot)
        screen.query_one("#tabs", TabbedContent).active = "tab-history"
        await _until(lambda: screen.history_all is not None)
        monkeypatch.setattr(history_load, "SLICE", 0.0)  # one event per turn
        _key(app, "t")
        # pushed, then composed: under load the first check can fall between
        await _until(lambda: isinstance(app.screen, AsOfScreen) and bool(app.screen.query("#when")))
        asof = app.screen
        assert isinstance(asof, AsOfScreen)
        when = asof.query_one("#when", Label)
        await _until(lambda: "preparing time travel" in str(when.render()))
        _key(app, "left_square_bracket")  # one back, while the fold goes on
        await _until(lambda: asof.index == 1)
        assert not asof.shown
        await _until(lambda: asof.shown, limit=120)
        log = app.workspace.log
        assert await log.fetch("SELECT count(*) FROM timeline_checkpoints") == [(0,)]
        for _ in range(3):  # a few more steps back: from the anchors in memory
            expected = as_of_view(
                await state_as_of(log, fixed.plan, step_key(asof.steps[asof.index]))
            )
            assert asof.data == expected
            before = asof.index
            _key(app, "left_square_bracket")
            await _until(lambda before=before: asof.index != before and asof.shown)
