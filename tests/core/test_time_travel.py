"""Time travel equals a fresh fold of exactly the events before that point."""

from __future__ import annotations

import random
from pathlib import Path

from core.commands import edits
from core.events import bodies as b
from core.events.ids import new_uuid7
from core.projections.plan_state import project
from core.projections.plan_view import view
from core.store import time_travel
from core.store.event_log import EventLog
from core.store.time_travel import END_OF_TIME, key_of, state_as_of
from tests.core.replica import Replica

WS = new_uuid7()


def edits_by(dev: Replica, plan: bytes, n: int, rnd: random.Random) -> None:
    for _ in range(n):
        acts = [eid for (k, eid) in dev.state.entities if k == "activity"]
        if not acts or rnd.random() < 0.2:
            _, body = edits.add_entity(dev.state, "activity", {"title": f"A{rnd.random():.3f}"})
            dev.make(body)
        else:
            act = rnd.choice(acts)
            dev.make(
                *edits.set_fields(dev.state, "activity", act, {"title": f"T{rnd.randrange(99)}"})
            )
        dev.wall_ms += rnd.randrange(0, 50)


async def test_as_of_equals_fresh_fold_and_survives_late_arrivals(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(time_travel, "TIMELINE_STEP", 7)
    rnd = random.Random(7)
    plan = new_uuid7()
    log = await EventLog.open(tmp_path / "a.db", workspace=WS)
    try:
        a, c, offline = (Replica(WS, plan) for _ in range(3))
        start = a.make(b.PlanCreated(title="Aure", municipality="Aure"))
        c.receive(start)
        offline.receive(start)
        edits_by(a, plan, 40, rnd)
        edits_by(c, plan, 40, rnd)
        edits_by(offline, plan, 25, rnd)  # made early, arrives last
        for dev in (a, c):
            await log.ingest([e.raw for e in dev.made])
        present = [*a.made, *c.made]

        async def check(known: list) -> None:
            keys = sorted(key_of(e) for e in known)
            for limit in [*rnd.sample(keys, 12), keys[0], keys[-1], END_OF_TIME]:
                expected = view(project(plan, [e for e in known if key_of(e) <= limit]))
                got = view(await state_as_of(log, plan, limit))
                assert got == expected

        await check(present)
        async with log._conn.execute("SELECT count(*) FROM timeline_checkpoints") as cur:
            assert (await cur.fetchone())[0] >= 5
        # The offline adviser's older edits arrive: stale checkpoints are dropped.
        await log.ingest([e.raw for e in offline.made])
        await check([*present, *offline.made])
    finally:
        await log.close()


async def test_checkpoints_of_another_step_are_replaced_not_kept(
    tmp_path: Path, monkeypatch
) -> None:
    """A new step (or fold version) changes the checkpoints' format: the old
    ones are never read again, so building the new ones drops them."""
    rnd = random.Random(3)
    plan = new_uuid7()
    log = await EventLog.open(tmp_path / "a.db", workspace=WS)

    async def formats() -> dict[str, int]:
        rows = await log._conn.execute_fetchall(
            "SELECT fold, count(*) FROM timeline_checkpoints GROUP BY fold"
        )
        return {str(f): int(n) for f, n in rows}

    try:
        a = Replica(WS, plan)
        a.make(b.PlanCreated(title="Aure", municipality="Aure"))
        edits_by(a, plan, 60, rnd)
        await log.ingest([e.raw for e in a.made])
        monkeypatch.setattr(time_travel, "TIMELINE_STEP", 7)
        monkeypatch.setattr(time_travel, "TIMELINE_FORMAT", "test+step7")
        assert await time_travel.ensure_checkpoints(log, plan) > 0
        assert set(await formats()) == {"test+step7"}
        monkeypatch.setattr(time_travel, "TIMELINE_STEP", 5)
        monkeypatch.setattr(time_travel, "TIMELINE_FORMAT", "test+step5")
        added = await time_travel.ensure_checkpoints(log, plan)
        assert await formats() == {"test+step5": added}
        keys = sorted(key_of(e) for e in a.made)
        for limit in rnd.sample(keys, 8):
            expected = view(project(plan, [e for e in a.made if key_of(e) <= limit]))
            assert view(await state_as_of(log, plan, limit)) == expected
    finally:
        await log.close()


async def test_as_of_sees_a_device_another_process_added(tmp_path: Path, monkeypatch) -> None:
    """Two handles on one file (the TUI and a `vidda sync` beside it): the
    reader's device numbers are stale when the other one stores a new
    device's chain, and its as-of query still folds that chain."""
    monkeypatch.setattr(time_travel, "TIMELINE_STEP", 7)
    monkeypatch.setattr(time_travel, "TIMELINE_FORMAT", "test+step7")
    rnd = random.Random(5)
    plan = new_uuid7()
    reader = await EventLog.open(tmp_path / "a.db", workspace=WS)
    writer = await EventLog.open(tmp_path / "a.db", workspace=WS)
    try:
        a, newcomer = Replica(WS, plan), Replica(WS, plan)
        start = a.make(b.PlanCreated(title="Aure", municipality="Aure"))
        newcomer.receive(start)
        edits_by(a, plan, 40, rnd)
        await reader.ingest([e.raw for e in a.made])
        await state_as_of(reader, plan, END_OF_TIME)  # checkpoints built, numbers loaded
        newcomer.wall_ms = a.wall_ms + 1_000
        edits_by(newcomer, plan, 5, rnd)
        await writer.ingest([e.raw for e in newcomer.made])
        assert newcomer.key.public_key not in reader.numbers.devices.values()
        everything = [*a.made, *newcomer.made]
        got = view(await state_as_of(reader, plan, END_OF_TIME))
        assert got == view(project(plan, everything))
        assert got["events"] == len(everything)
    finally:
        await writer.close()
        await reader.close()


async def test_building_the_time_line_reports_progress(tmp_path: Path, monkeypatch) -> None:
    """The first as-of query of a large plan builds its checkpoints (10–20 s
    at 100k events): the command line draws a bar from these calls."""
    monkeypatch.setattr(time_travel, "TIMELINE_STEP", 7)
    monkeypatch.setattr(time_travel, "TIMELINE_FORMAT", "test+step7")
    plan = new_uuid7()
    log = await EventLog.open(tmp_path / "a.db", workspace=WS)
    try:
        a = Replica(WS, plan)
        a.make(b.PlanCreated(title="Aure", municipality="Aure"))
        edits_by(a, plan, 60, random.Random(2))
        await log.ingest([e.raw for e in a.made])
        calls: list[tuple[str, int, int]] = []
        state = await state_as_of(log, plan, END_OF_TIME, lambda *c: calls.append(c))
        assert state.events == len(a.made)
        assert {stage for stage, _, _ in calls} == {"time line"}
        assert calls[-1] == ("time line", len(a.made), len(a.made))
        assert [done for _, done, _ in calls] == sorted(done for _, done, _ in calls)
        assert len(calls) >= len(a.made) // 7
        calls.clear()  # built: the next query has nothing to report
        await state_as_of(log, plan, END_OF_TIME, lambda *c: calls.append(c))
        assert calls == []
    finally:
        await log.close()
