"""The SQLite event log: append-only, duplicates, forks, gaps, vectors, checkpoints."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from core.commands import edits
from core.events import bodies as b
from core.events.envelope import seal
from core.events.ids import new_uuid7
from core.identity.keyfile import DeviceKey
from core.projections.plan_state import canonical_bytes
from core.store import checkpoints as checkpoints_module
from core.store.errors import StoreError
from core.store.event_log import EventLog
from core.store.ingest_report import IngestReport
from tests.core.replica import Replica

WS = new_uuid7()


_open: list[EventLog] = []


def three_event_chain():
    """A fresh plan and a device that made seq 1-3 of it."""
    plan = new_uuid7()
    dev = Replica(WS, plan)
    events = dev.make(
        b.PlanCreated(title="A", municipality="A"),
        b.PlanDetailsRevised(title="B"),
        b.PlanDetailsRevised(title="C"),
    )
    return plan, dev, tuple(events)


async def open_log(path: Path, **kw: object) -> EventLog:
    log = await EventLog.open(path, workspace=WS, **kw)  # type: ignore[arg-type]
    _open.append(log)
    return log


@pytest.fixture(autouse=True)
async def _close_logs():
    yield
    while _open:
        log = _open.pop()
        with contextlib.suppress(Exception):
            await log.close()


async def test_pragmas_and_append_only_triggers(tmp_path: Path) -> None:
    log = await open_log(tmp_path / "a.db")
    plan, bodies = edits.new_plan(title="Aure", municipality="Aure")
    await log.append(DeviceKey.generate(), plan, bodies)
    await log.close()
    con = sqlite3.connect(tmp_path / "a.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("UPDATE events SET hlc = 0")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("DELETE FROM events")
    con.close()


async def test_synchronous_full_is_the_default(tmp_path: Path) -> None:
    log = await open_log(tmp_path / "a.db")
    async with log._conn.execute("PRAGMA synchronous") as cur:
        assert (await cur.fetchone())[0] == 2  # FULL
    await log.close()


async def test_workspace_is_bound_to_the_file(tmp_path: Path) -> None:
    await (await open_log(tmp_path / "a.db")).close()
    with pytest.raises(StoreError, match="belongs to workspace"):
        await EventLog.open(tmp_path / "a.db", workspace=new_uuid7())
    with pytest.raises(StoreError, match="no workspace"):
        await EventLog.open(tmp_path / "new.db")


async def test_ingest_duplicates_are_noops_and_other_workspaces_rejected(tmp_path: Path) -> None:
    a, c = await open_log(tmp_path / "a.db"), await open_log(tmp_path / "c.db")
    plan, bodies = edits.new_plan(title="Aure", municipality="Aure")
    made = await a.append(DeviceKey.generate(), plan, bodies)
    raws = [e.raw for e in made]
    first = await c.ingest(raws)
    assert len(first.accepted) == len(raws) and not first.rejected
    again = await c.ingest(raws + raws[:2])
    assert again.duplicates == len(raws) + 2 and not again.accepted
    foreign = Replica(new_uuid7(), plan).make(b.PlanCreated(title="x", municipality="y"))
    report = await c.ingest([foreign[0].raw, b"garbage"])
    assert [r.reason for r in report.rejected] == ["wrong_workspace", "malformed"]
    assert await a.vector(plan) == await c.vector(plan)
    await a.close()
    await c.close()


async def test_fork_is_kept_as_evidence_and_freezes_the_chain(tmp_path: Path) -> None:
    log = await open_log(tmp_path / "a.db")
    plan = new_uuid7()
    honest = Replica(WS, plan)
    e1, e2 = honest.make(
        b.PlanCreated(title="A", municipality="Aure"), b.PlanDetailsRevised(title="B")
    )
    await log.ingest([e1.raw, e2.raw])
    # The same device (same key) signs a *different* seq 2: a fork.
    twin = Replica(WS, plan)
    twin.key, twin.seq, twin.prev = honest.key, 1, e1.id
    (fork2,) = twin.make(b.PlanDetailsRevised(title="FORK"))
    (fork3,) = twin.make(b.PlanDetailsRevised(title="after fork"))
    report = await log.ingest([fork2.raw, fork3.raw])
    assert not report.accepted
    assert [r.reason for r in report.evidence] == ["fork", "frozen"]
    (e3,) = honest.make(b.PlanDetailsRevised(title="C"))
    later = await log.ingest([e3.raw])
    assert [r.reason for r in later.evidence] == ["frozen"] and not later.accepted
    assert len(await log.evidence()) == 3  # nothing lost
    assert [(p, d, s) for p, d, s, _ in await log.frozen_chains()] == [(plan, honest.device, 2)]
    assert (await log.vector(plan))[honest.device] == 2
    state = await log.load_state(plan)
    assert state.entity("plan", plan).value("title") == "B"
    # Evidence re-sent is a duplicate, not new evidence.
    assert (await log.ingest([fork2.raw])).duplicates == 1
    with pytest.raises(StoreError, match="frozen"):
        await log.append(honest.key, plan, [b.PlanDetailsRevised(title="D")])
    await log.close()


async def test_broken_prev_link_is_a_fork_and_a_gap_is_rejected(tmp_path: Path) -> None:
    log = await open_log(tmp_path / "a.db")
    plan, dev, (e1, _e2, e3) = three_event_chain()
    gap = await log.ingest([e1.raw, e3.raw])
    assert len(gap.accepted) == 1 and [r.reason for r in gap.rejected] == ["gap"]
    bad = seal(
        dev.key,
        workspace=WS,
        plan=plan,
        seq=2,
        prev=bytes(32),
        hlc=5,
        body=b.PlanDetailsRevised(title="X"),
    )
    report = await log.ingest([bad.raw])
    assert [r.reason for r in report.evidence] == ["fork"]
    await log.close()


async def test_forged_signature_is_rejected_but_the_rest_lands(tmp_path: Path) -> None:
    log = await open_log(tmp_path / "a.db")
    plan = new_uuid7()
    alice, mallory = Replica(WS, plan), Replica(WS, plan)
    good = alice.make(b.PlanCreated(title="A", municipality="A"), b.PlanDetailsRevised(title="B"))
    (evil,) = mallory.make(b.PlanDetailsRevised(title="forged"))
    forged = bytearray(evil.raw)
    # Claim Alice as author: the envelope's author field sits after v, workspace, plan.
    offset = forged.index(mallory.device)
    forged[offset : offset + 32] = alice.device
    report = await log.ingest([bytes(forged), good[0].raw, good[1].raw])
    assert len(report.accepted) == 2
    assert [r.reason for r in report.rejected] == ["bad_signature"]
    await log.close()


async def test_lacking_sends_exactly_what_the_other_side_misses(tmp_path: Path) -> None:
    log = await open_log(tmp_path / "a.db")
    plan = new_uuid7()
    devs = [Replica(WS, plan) for _ in range(3)]
    for n, d in enumerate(devs):
        evs = d.make(
            *[b.NoteWritten(note=new_uuid7(), target=None, text=f"{n}-{i}") for i in range(5 + n)]
        )
        await log.ingest([e.raw for e in evs])
    theirs = {devs[0].device: 5, devs[1].device: 2}
    got = [raw async for batch in log.lacking(plan, theirs, max_count=3) for raw in batch]
    batches = [len(batch) async for batch in log.lacking(plan, theirs, max_count=3)]
    expected = {e.raw for e in devs[1].made[2:]} | {e.raw for e in devs[2].made}
    assert set(got) == expected and len(got) == len(expected)
    assert max(batches) <= 3
    assert [raw async for batch in log.lacking(plan, await log.vector(plan)) for raw in batch] == []
    await log.close()


async def test_checkpoint_equals_rebuild_from_zero(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(checkpoints_module, "CHECKPOINT_EVERY", 10)
    log = await open_log(tmp_path / "a.db")
    key = DeviceKey.generate()
    plan, bodies = edits.new_plan(title="Aure", municipality="Aure")
    await log.append(key, plan, bodies)
    for i in range(3):
        state = await log.load_state(plan)
        act, body = edits.add_entity(state, "activity", {"title": f"Verksted {i}"})
        await log.append(key, plan, [body])
        for j in range(6):
            state = await log.load_state(plan)
            await log.append(
                key, plan, edits.set_fields(state, "activity", act, {"title": f"Verksted {i}.{j}"})
            )
    async with log._conn.execute("SELECT count(*), max(events) FROM checkpoints") as cur:
        count, covered = await cur.fetchone()
    assert count == 1 and covered > 10
    from_checkpoint = await log.load_state(plan)
    rebuilt = await log.rebuild_state(plan)
    assert canonical_bytes(from_checkpoint) == canonical_bytes(rebuilt)
    await log.close()
    # Reopen: the checkpoint is used and still equals a full rebuild.
    log = await open_log(tmp_path / "a.db")
    assert canonical_bytes(await log.load_state(plan)) == canonical_bytes(
        await log.rebuild_state(plan)
    )
    await log.close()


async def test_clock_never_runs_backwards_across_restarts(tmp_path: Path) -> None:
    wall = [1_800_000_000_000]
    log = await open_log(tmp_path / "a.db", now_ms=lambda: wall[0])
    key = DeviceKey.generate()
    plan = new_uuid7()
    (first,) = await log.append(key, plan, [b.PlanCreated(title="A", municipality="A")])
    await log.close()
    wall[0] -= 3_600_000  # the laptop's clock jumps back an hour
    log = await open_log(tmp_path / "a.db", now_ms=lambda: wall[0])
    (second,) = await log.append(key, plan, [b.PlanDetailsRevised(title="B")])
    assert second.env.hlc > first.env.hlc
    # A remote clock ten years ahead is not adopted.
    skewed = Replica(WS, plan, wall_ms=wall[0] + 10 * 365 * 86_400_000)
    await log.ingest(
        [
            e.raw
            for e in skewed.make(b.NoteWritten(note=new_uuid7(), target=None, text="fra framtida"))
        ]
    )
    (third,) = await log.append(key, plan, [b.PlanDetailsRevised(title="C")])
    assert second.env.hlc < third.env.hlc
    assert third.env.hlc >> 16 < 1_800_000_000_000 + 60_000  # not ten years ahead
    await log.close()


async def test_unknown_event_types_are_verified_stored_synced_and_skipped(tmp_path: Path) -> None:
    import msgspec

    from core.events.envelope import Envelope
    from core.projections.history import changes
    from core.store.verify_log import verify_log

    log = await open_log(tmp_path / "a.db")
    plan = new_uuid7()
    dev = Replica(WS, plan)
    (created,) = dev.make(b.PlanCreated(title="Loppa", municipality="Loppa"))
    env = Envelope(
        v=1,
        workspace=WS,
        plan=plan,
        author=dev.device,
        seq=2,
        prev=created.id,
        hlc=created.env.hlc + 1,
        type="BudgetApproved",
        body=msgspec.Raw(msgspec.msgpack.encode({"amount": 250_000})),
    )
    payload = msgspec.msgpack.encode(env)
    future = payload + dev.key.sign(payload)
    report = await log.ingest([created.raw, future])
    assert len(report.accepted) == 2 and not report.rejected
    state = await log.load_state(plan)
    assert state.skipped == {"BudgetApproved": 1}
    assert state.entity("plan", plan).value("title") == "Loppa"
    assert (await verify_log(log)).ok
    assert [c.note for c in changes(await log.events(plan)) if c.type == "BudgetApproved"]
    # It travels on: what another replica lacks includes it, byte for byte.
    sent = [raw async for batch in log.lacking(plan, {}) for raw in batch]
    assert future in sent


async def test_review_findings_stay_fixed(tmp_path: Path) -> None:
    """Forks inside one batch freeze the chain (and keep the linked prefix);
    forgeries for a frozen chain are rejected, not kept as evidence; a broken,
    badly signed link reports the rest of the chain instead of dropping it."""
    log = await open_log(tmp_path / "a.db")
    plan, dev, (e1, e2, e3) = three_event_chain()
    twin = Replica(WS, plan)
    twin.key, twin.seq, twin.prev = dev.key, 2, e2.id
    (e3x,) = twin.make(b.PlanDetailsRevised(title="C'"))
    report = await log.ingest([e1.raw, e2.raw, e3.raw, e3x.raw])
    assert [e.env.seq for e in report.accepted] == [1, 2]
    assert sorted(r.reason for r in report.evidence) == ["fork", "frozen"]
    assert [(d, s) for _, d, s, _ in await log.frozen_chains()] == [(dev.device, 3)]
    fake = Replica(WS, plan)
    fake.key, fake.seq, fake.prev = DeviceKey.generate(), 3, e3.id
    junk = bytearray(fake.make(b.PlanDetailsRevised(title="junk"))[0].raw)
    start = junk.index(fake.key.public_key)  # claim the frozen device as the author
    junk[start : start + 32] = dev.device
    before = len(await log.evidence())
    report = await log.ingest([bytes(junk)])
    assert [r.reason for r in report.rejected] == ["bad_signature"]
    assert len(await log.evidence()) == before


async def test_clock_is_shared_by_processes_on_one_file(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    one, two = await open_log(path), await open_log(path)
    key, plan = DeviceKey.generate(), new_uuid7()
    ahead = Replica(WS, plan, wall_ms=one._now_ms() + 60_000)  # within the drift bound
    (theirs,) = ahead.make(b.PlanCreated(title="A", municipality="A"))
    await one.ingest([theirs.raw])
    (mine,) = await two.append(key, plan, [b.PlanDetailsRevised(title="B", replaces=[theirs.id])])
    assert mine.env.hlc > theirs.env.hlc


async def test_every_event_of_a_batch_ends_up_in_the_report(tmp_path: Path) -> None:
    log = await open_log(tmp_path / "a.db")
    plan, dev, (e1, e2, e3) = three_event_chain()
    await log.ingest([e1.raw])
    broken = seal(
        Replica(WS, plan).key,
        workspace=WS,
        plan=plan,
        seq=2,
        prev=bytes(32),
        hlc=9,
        body=b.PlanDetailsRevised(title="X"),
    )
    claimed = bytearray(broken.raw)
    start = claimed.index(broken.env.author)
    claimed[start : start + 32] = dev.device  # bad link and a signature that cannot verify
    report = await log.ingest([bytes(claimed), e3.raw, e2.raw])
    indexes = sorted(r.index for r in report.rejected + report.evidence) + [
        i
        for i, raw in enumerate([bytes(claimed), e3.raw, e2.raw])
        if any(e.raw == raw for e in report.accepted)
    ]
    assert sorted(indexes) == [0, 1, 2]
    # The stored rows of what was accepted, in its order (what a caller folds).
    assert report.accepted
    assert [log.numbers.raw_of(*row) for row in report.rows] == [e.raw for e in report.accepted]
    again = await log.ingest([e1.raw, e2.raw, e3.raw])  # all duplicates now
    assert again.accepted == [] and again.rows == []
    await log.close()


async def test_ingest_commits_bookkeeping_with_the_events_or_not_at_all(tmp_path: Path) -> None:
    """A sync cursor goes into the events' own transaction: it sees the
    report (no cursor past a rejected event), and if it fails the events
    roll back with it."""
    plan = new_uuid7()
    dev = Replica(WS, plan)
    made = dev.make(
        b.PlanCreated(title="Hasvik", municipality="Hasvik"),
        *[b.NoteWritten(note=new_uuid7(), target=None, text=f"notat {i}") for i in range(4)],
    )
    cursor_sql = (
        "INSERT OR REPLACE INTO sync_cursors(server_id, plan_id, epoch, cursor) VALUES (?,?,?,?)"
    )
    seen = []

    def cursor(report):  # type: ignore[no-untyped-def]
        seen.append(len(report.accepted))
        return [] if report.rejected else [(cursor_sql, (b"s", plan, b"e", 7))]

    log = await open_log(tmp_path / "a.db")
    try:
        forged = bytearray(made[2].raw)
        forged[-1] ^= 1
        report = await log.ingest([made[0].raw, made[1].raw, bytes(forged)], then=cursor)
        assert len(report.accepted) == 2 and report.rejected and seen == [2]
        assert await log.fetch("SELECT cursor FROM sync_cursors") == []

        def broken(report):  # type: ignore[no-untyped-def]
            return [("INSERT INTO no_such_table VALUES (1)", ())]

        with pytest.raises(sqlite3.OperationalError):
            await log.ingest([e.raw for e in made[2:]], then=broken)
        assert len(await log.raw_events(plan)) == 2  # rolled back with it

        report = await log.ingest([e.raw for e in made[2:]], then=cursor)
        assert len(report.accepted) == 3 and not report.rejected
        assert await log.fetch("SELECT cursor FROM sync_cursors") == [(7,)]
    finally:
        await log.close()


async def test_a_linked_run_whose_newest_signature_fails_keeps_its_authentic_prefix(
    tmp_path: Path,
) -> None:
    """A batch that extends a chain with linked events, the newest of them
    damaged in its signature (the links hold: the id covers the damaged
    bytes): the events before it are authentic and land, it is rejected."""
    log = await open_log(tmp_path / "a.db")
    plan = new_uuid7()
    alice = Replica(WS, plan)
    first = alice.make(b.PlanCreated(title="A", municipality="A"))
    assert len((await log.ingest([first[0].raw])).accepted) == 1
    more = alice.make(*(b.PlanDetailsRevised(title=f"T{i}") for i in range(4)))
    damaged = more[-1].raw[:-1] + bytes([more[-1].raw[-1] ^ 1])
    report = await log.ingest([e.raw for e in more[:-1]] + [damaged])
    assert report.accepted == more[:-1]
    assert [(r.index, r.reason) for r in report.rejected] == [(3, "bad_signature")]
    assert (await log.vector(plan)) == {alice.device: 4}
    await log.close()


def _failing_commits(log: EventLog, times: int) -> list[str]:
    """Make the log's next `times` COMMITs fail (a full disk, say); returns
    the statements seen."""
    seen: list[str] = []
    execute = log._conn.execute
    left = [times]

    def failing(sql: str, *args: object):  # type: ignore[no-untyped-def]
        seen.append(sql)
        if sql == "COMMIT" and left[0] > 0:
            left[0] -= 1

            async def fail() -> None:
                raise sqlite3.OperationalError("database or disk is full")

            return fail()
        return execute(sql, *args)  # type: ignore[arg-type]

    log._conn.execute = failing  # type: ignore[method-assign]
    return seen


async def test_a_commit_left_running_is_settled_before_the_next_write(tmp_path: Path) -> None:
    """`ingest_batches(commit_later=True)` returns with its COMMIT queued:
    `settle` waits for it (then the events are durable, seen by another
    connection). A COMMIT that fails is rolled back and its error raised by
    `settle`, or by the next write or `close` if nothing settled it; the
    lock is free again and the same events can be ingested afterwards."""
    plan, dev, events = three_event_chain()
    path = tmp_path / "a.db"
    log = await open_log(path)

    async def ingest_later(evs: tuple[object, ...]) -> None:
        report = IngestReport()
        opened = log.open_for_ingest([e.raw for e in evs], report)  # type: ignore[attr-defined]
        await log.ingest_batches([(opened, report)], commit_later=True)
        assert len(report.accepted) == len(evs)

    def stored() -> int:
        conn = sqlite3.connect(path)
        try:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
        finally:
            conn.close()

    await ingest_later(events[:1])
    await log.settle()
    assert stored() == 1
    seen = _failing_commits(log, 1)
    await ingest_later(events[1:])
    with pytest.raises(sqlite3.OperationalError):
        await log.settle()
    assert seen[seen.index("COMMIT") + 1] == "ROLLBACK"
    assert stored() == 1 and (await log.vector(plan)) == {dev.device: 1}
    await log.settle()  # raised once
    # Not settled: the next write raises it (after the rollback), then works.
    _failing_commits(log, 1)
    await ingest_later(events[1:])
    with pytest.raises(sqlite3.OperationalError):
        await log.ingest([events[1].raw])
    assert len((await log.ingest([e.raw for e in events[1:]])).accepted) == 2
    assert stored() == 3
    # Nor settled before close: close raises it, and closes.
    more = dev.make(b.PlanDetailsRevised(title="D"))
    _failing_commits(log, 1)
    await ingest_later(tuple(more))
    with pytest.raises(sqlite3.OperationalError):
        await log.close()
    _open.remove(log)
    assert stored() == 3
