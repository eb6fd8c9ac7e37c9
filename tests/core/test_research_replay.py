"""Replay and time travel are reproducible folds of exactly the events
before each point (Hypothesis): `state_as_of` at any point equals a fresh
fold of the events up to it, and a replay step's state equals a fresh fold
of its prefix, the same bytes in any input order."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.events import bodies as b
from core.events.envelope import Event
from core.events.ids import new_uuid7
from core.projections.history import timeline
from core.projections.plan_state import FOLD_VERSION, project
from core.projections.plan_view import view
from core.research.replay import encode_line, replay
from core.store import time_travel
from core.store.event_log import EventLog
from core.store.time_travel import key_at_time, key_of, state_as_of
from tests.core.replica import Replica
from tests.core.test_time_travel import edits_by

WS = new_uuid7()


def _events() -> tuple[bytes, list[Event]]:
    plan = new_uuid7()
    rnd = random.Random(5)
    devs = [Replica(WS, plan, wall_ms=1_700_000_000_000 + 7 * i) for i in range(3)]
    devs[0].make(b.PlanCreated(title="Loppa", municipality="Loppa"))
    for _ in range(6):  # rounds: each device edits, then all exchange
        for dev in devs:
            edits_by(dev, plan, 15, rnd)
        made = [e for d in devs for e in d.made]
        for dev in devs:
            dev.receive(made)
    return plan, timeline(e for d in devs for e in d.made)


PLAN, EVENTS = _events()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("asof") / "vidda.db"

    async def fill() -> None:
        log = await EventLog.open(path, workspace=WS)
        try:
            await log.ingest([e.raw for e in EVENTS])
        finally:
            await log.close()

    asyncio.run(fill())
    return path


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(point=st.integers(0, len(EVENTS) - 1), by_time=st.booleans())
def test_as_of_equals_a_fresh_fold_of_the_events_before(
    db: Path, monkeypatch: pytest.MonkeyPatch, point: int, by_time: bool
) -> None:
    monkeypatch.setattr(time_travel, "TIMELINE_STEP", 16)  # checkpoints in play
    target = EVENTS[point]
    limit = key_at_time(target.env.hlc) if by_time else key_of(target)
    expected = [e for e in EVENTS if key_of(e) <= limit]

    async def query() -> dict[str, object]:
        log = await EventLog.open(db)
        try:
            return view(await state_as_of(log, PLAN, limit))
        finally:
            await log.close()

    assert asyncio.run(query()) == view(project(PLAN, expected))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_replay_is_byte_identical_in_any_input_order(seed: int) -> None:
    shuffled = list(EVENTS)
    random.Random(seed).shuffle(shuffled)
    first = b"".join(encode_line(step) for step, _ in replay(PLAN, EVENTS))
    again = b"".join(encode_line(step) for step, _ in replay(PLAN, shuffled))
    assert first == again


def test_every_replay_state_is_a_fresh_fold_of_its_prefix() -> None:
    for n, (step, state) in enumerate(replay(PLAN, EVENTS), start=1):
        assert step.step == n and step.fold == FOLD_VERSION
        assert step.event == EVENTS[n - 1].id.hex()
        if n % 23 == 0 or n == len(EVENTS):
            assert view(state) == view(project(PLAN, EVENTS[:n]))
    assert any(step.conflicts for step, _ in replay(PLAN, EVENTS))


def test_report_of_a_plan_whose_phases_have_no_dates() -> None:
    """`plan new` makes the template phases with no dates: the report sorts
    them by start date without comparing the phases themselves (it raised
    TypeError, and the app's R crashed with it)."""
    from core.commands import edits
    from core.research.report import plan_report

    dev = Replica(new_uuid7(), new_uuid7())
    plan, bodies = edits.new_plan(title="Grue", municipality="Grue")
    dev.plan = plan
    dev.make(*bodies)
    report = plan_report(plan, dev.made, {})
    phases = [p["fields"]["name"] for p in view(dev.state)["phases"]]
    assert len(phases) >= 2
    assert [p["name"] for p in report["phases"]] == phases


def test_gantt_draws_a_phase_under_way_up_to_the_last_event() -> None:
    from datetime import date

    from core.research.plots import ACTUAL, PLANNED, gantt_bars

    def phase(name: str, **dates: str | None) -> dict[str, str | None]:
        keys = ("planned_start", "planned_end", "actual_start", "actual_end")
        return {"name": name, **{k: dates.get(k) for k in keys}}

    report = {
        "last": "2026-03-10T09:00:00.000Z",
        "phases": [
            phase(
                "Innsikt",
                planned_start="2026-01-01",
                planned_end="2026-02-01",
                actual_start="2026-01-15",
            ),
            phase("Plan", planned_start="2026-02-01"),
        ],
    }
    bars = gantt_bars(report)
    day = date.fromisoformat
    # Rows from the top: "Plan" is row 0 (planned only, one day), "Innsikt" row 1.
    assert (0.15, day("2026-02-01").toordinal(), 1, PLANNED) in bars
    assert (1.15, day("2026-01-01").toordinal(), 31, PLANNED) in bars
    assert (0.85, day("2026-01-15").toordinal(), 54, ACTUAL) in bars
    assert len(bars) == 3


def test_report_conflicts_and_offline_spells() -> None:
    """Two devices set the same fields unaware of each other: one conflict
    is resolved, one superseded by a later edit, one left open; the
    report says how each ended. An edit that reached the server two hours
    after it was made is an offline spell of its author."""
    from core.commands import edits
    from core.events.hlc import to_iso
    from core.identity.membership import MemberInfo
    from core.research.report import plan_report

    ws, plan = new_uuid7(), new_uuid7()
    kari, ola = Replica(ws, plan), Replica(ws, plan)
    start = kari.make(b.PlanCreated(title="Aure", municipality="Aure"))
    ola.receive(start)
    fields = {"title": "A", "societal_goal": "A", "desired_result": "A"}
    kari.make(*edits.set_fields(kari.state, "plan", plan, fields))
    ola.wall_ms += 60_000
    ola.make(*edits.set_fields(ola.state, "plan", plan, {k: "B" for k in fields}))
    kari.receive(ola.made)
    kari.wall_ms = ola.wall_ms + 60_000
    kari.make(edits.resolve(kari.state, "plan", plan, "title", "A+B"))
    kari.make(*edits.set_fields(kari.state, "plan", plan, {"societal_goal": "C"}))
    ola.receive(kari.made[len(start) :])
    events = [*kari.made, *ola.made]
    offline = ola.made[0]
    got_ms = (offline.env.hlc >> 16) + 2 * 3_600_000
    members = {kari.device: MemberInfo(kari.device, "Kari", "owner", ())}
    report = plan_report(plan, events, members, {(plan, ola.device, offline.env.seq): got_ms})

    how = {c["field"]: (c["how"], c["by"]) for c in report["conflicts"]}
    assert how == {
        "title": ("resolved", "Kari"),
        "societal_goal": ("superseded by an edit", "Kari"),
        "desired_result": ("still open", None),
    }
    (spell,) = report["offline"]["spells"]
    assert spell["events"] == 1 and spell["hours"] == 2.0
    assert spell["reached_server"] == to_iso(got_ms << 16)
    assert report["offline"]["events_with_server_time"] == 1
