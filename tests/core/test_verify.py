"""`verify` catches any single changed byte in any stored event and names it."""

from __future__ import annotations

import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from core.events import bodies as b
from core.events.ids import new_uuid7
from core.events.verify import authentic_prefix, first_problem
from core.store.event_log import EventLog
from core.store.verify_log import verify_log
from tests.core.replica import Replica

WS = new_uuid7()


@pytest.fixture
async def source_db(tmp_path: Path) -> Path:
    path = tmp_path / "source.db"
    log = await EventLog.open(path, workspace=WS)
    plan = new_uuid7()
    devices = [Replica(WS, plan) for _ in range(3)]
    devices[0].make(b.PlanCreated(title="Vardø", municipality="Vardø"))
    for n, dev in enumerate(devices):
        dev.make(
            *[
                b.NoteWritten(note=new_uuid7(), target=None, text=f"notat {n}.{i} – Čáhcesuolu")
                for i in range(12)
            ]
        )
        await log.ingest([e.raw for e in dev.made])
    report = await verify_log(log)
    assert report.ok and report.events == 37 and report.chains == 3
    await log.close()
    return path


def tamper(src: Path, dst: Path, rnd: random.Random) -> tuple[int, int, int]:
    """Flip one byte of one stored event (its packed bytes: prev, body, signature)."""
    shutil.copy(src, dst)
    con = sqlite3.connect(dst)
    con.execute("DROP TRIGGER events_append_only_u")
    rows = con.execute("SELECT rx, seq, device_no, data FROM events").fetchall()
    rx, seq, device_no, data = rnd.choice(rows)
    pos = rnd.randrange(len(data))
    changed = bytearray(data)
    changed[pos] ^= rnd.randrange(1, 256)
    con.execute("UPDATE events SET data=? WHERE rx=?", (bytes(changed), rx))
    con.commit()
    con.close()
    return seq, device_no, pos


async def test_many_random_single_byte_tamperings_are_all_caught(
    source_db: Path, tmp_path: Path
) -> None:
    rnd = random.Random(20201022)
    for trial in range(150):
        dst = tmp_path / f"t{trial}.db"
        seq, _, pos = tamper(source_db, dst, rnd)
        log = await EventLog.open(dst, workspace=WS)
        try:
            for full in (False, True):
                report = await verify_log(log, full=full)
                assert not report.ok, (trial, seq, pos)
                (problem,) = report.problems
                assert problem.seq == seq, (trial, pos, problem)
        finally:
            await log.close()
        dst.unlink()


@pytest.mark.parametrize(
    "change",
    [
        "hlc = hlc + 1",
        "type_no = (SELECT min(type_no) FROM types)",
        "type_no = 999",
        "plan_no = 999",
        "data = x'00'",
    ],
)
async def test_a_changed_column_is_caught(source_db: Path, tmp_path: Path, change: str) -> None:
    """The columns are part of the signed bytes (core.store.rows): changing
    any of them breaks that event's signature or the link after it."""
    dst = tmp_path / "col.db"
    shutil.copy(source_db, dst)
    con = sqlite3.connect(dst)
    con.execute("PRAGMA foreign_keys=OFF")
    con.execute("DROP TRIGGER events_append_only_u")
    (rx,) = con.execute("SELECT rx FROM events WHERE seq = 5 LIMIT 1").fetchone()
    assert con.execute(f"UPDATE events SET {change} WHERE rx = ?", (rx,)).rowcount == 1
    con.commit()
    con.close()
    log = await EventLog.open(dst, workspace=WS)
    report = await verify_log(log)
    await log.close()
    assert not report.ok
    # Moved to another plan, the event also leaves a hole in its own chain.
    assert {p.seq for p in report.problems} == ({5, 6} if "plan_no" in change else {5})


def test_fast_path_checks_one_signature_and_falls_back_per_event() -> None:
    plan = new_uuid7()
    dev = Replica(WS, plan)
    events = dev.make(
        *[b.NoteWritten(note=new_uuid7(), target=None, text=str(i)) for i in range(20)]
    )
    assert authentic_prefix(events, bytes(32)) == 20
    assert first_problem(events) is None and first_problem(events, full=True) is None
    # A bad signature on the newest event: the fallback keeps the 19 before it.
    from core.events.envelope import decode_stored

    last = bytearray(events[-1].raw)
    last[-1] ^= 0xFF
    broken = [*events[:-1], decode_stored(bytes(last))]
    assert authentic_prefix(broken, bytes(32)) == 19
    assert first_problem(broken).seq == 20


async def test_a_forged_checkpoint_is_caught_and_dropped(tmp_path: Path, monkeypatch) -> None:
    from core.projections.plan_state import canonical_bytes, snapshot
    from core.store import checkpoints, time_travel

    monkeypatch.setattr(checkpoints, "CHECKPOINT_EVERY", 5)
    monkeypatch.setattr(time_travel, "TIMELINE_STEP", 4)
    log = await EventLog.open(tmp_path / "a.db", workspace=WS)
    plan = new_uuid7()
    dev = Replica(WS, plan)
    dev.make(
        b.PlanCreated(title="Vardø", municipality="Vardø"),
        *[b.PlanDetailsRevised(title=f"Vardø {i}") for i in range(20)],
    )
    await log.ingest([e.raw for e in dev.made])
    await log.load_state(plan)  # writes the plan checkpoint
    await time_travel.state_as_of(log, plan, time_travel.END_OF_TIME)  # and time-line ones
    assert (await verify_log(log)).ok
    forger = Replica(WS, plan)
    forger.make(b.PlanCreated(title="FORGED TITLE", municipality="Vardø"))
    async with log._tx() as conn:
        await conn.execute("UPDATE checkpoints SET state=?", (snapshot(forger.state),))
        await conn.execute("UPDATE timeline_checkpoints SET state=?", (snapshot(forger.state),))
    report = await verify_log(log)
    assert not report.ok and len(report.store_problems) == 2
    assert canonical_bytes(await log.load_state(plan)) == canonical_bytes(
        await log.rebuild_state(plan)
    )
    assert (await verify_log(log)).ok
    await log.close()


async def test_a_verified_rebuild_names_any_changed_byte(source_db: Path, tmp_path: Path) -> None:
    """`rebuild_state(verify=True)` checks the chains while it folds (links
    from seq 1, the newest signature): a clean log folds to what the
    reference fold gives, and a changed byte anywhere fails with the chain
    and the seq where its chain breaks (the changed event, or the one after
    it whose link no longer matches), whether the event decodes or not."""
    from core.projections.plan_state import canonical_bytes, project
    from core.store.errors import StoreError

    log = await EventLog.open(source_db, workspace=WS)
    try:
        ((plan, _),) = await log.plans()
        rebuilt = await log.rebuild_state(plan, verify=True)
        expected = project(plan, await log.events(plan))
        assert canonical_bytes(rebuilt) == canonical_bytes(expected)
        keys = {no: key.hex()[:12] for no, key in log._device_keys.items()}
    finally:
        await log.close()
    rnd = random.Random(7)
    for trial in range(60):
        dst = tmp_path / f"v{trial}.db"
        seq, device_no, pos = tamper(source_db, dst, rnd)
        log = await EventLog.open(dst, workspace=WS)
        try:
            with pytest.raises(StoreError, match="fails verification") as caught:
                await log.rebuild_state(plan, verify=True)
            message = str(caught.value)
            assert any(f"device {keys[device_no]} seq {n}:" in message for n in (seq, seq + 1)), (
                trial,
                pos,
                message,
            )
        finally:
            await log.close()
        dst.unlink()
