"""Hub and client sessions over real SQLite logs, wired through real frames."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.commands.edits import new_plan
from core.events.bodies import MemberRevoked, PlanDetailsRevised
from core.events.ids import new_uuid7
from core.identity.keyfile import DeviceKey
from core.projections.plan_state import canonical_bytes
from core.replication.hub import Hub
from core.store.event_log import EventLog
from tests.core.sync.wire import Link, enrol


async def _setup(tmp_path: Path, n: int = 2):
    ws = new_uuid7()
    admin = DeviceKey.generate()
    server_log = await EventLog.open(tmp_path / "server.db", workspace=ws)
    hub = Hub(server_log, server_id=new_uuid7(), epoch=os.urandom(16), admins=[admin.public_key])
    await hub.start()
    admin_log = await EventLog.open(tmp_path / "admin.db", workspace=ws)
    keys, logs = [], []
    for i in range(n):
        key = DeviceKey.generate()
        await enrol(admin_log, admin, key, name=f"d{i}")
        keys.append(key)
        logs.append(await EventLog.open(tmp_path / f"d{i}.db", workspace=ws))
    link = Link(hub, admin_log, admin)
    await link.run()
    assert link.client.idle, link.client.status
    return ws, hub, admin, admin_log, keys, logs


async def test_two_devices_converge_through_the_hub(tmp_path: Path) -> None:
    _ws, hub, _admin, admin_log, keys, logs = await _setup(tmp_path)
    plan, bodies = new_plan(title="Aure", municipality="Aure")
    await logs[0].append(keys[0], plan, bodies)
    first = Link(hub, logs[0], keys[0])
    await first.run()
    assert first.client.status.state == "up_to_date"
    assert first.client.status.sent == len(bodies)
    second = Link(hub, logs[1], keys[1])
    await second.run()
    assert second.client.status.received >= len(bodies)
    a = await logs[0].rebuild_state(plan)
    b = await logs[1].rebuild_state(plan)
    assert canonical_bytes(a) == canonical_bytes(b)
    # Live: the second device is subscribed; an edit from the first reaches it.
    await logs[0].append(keys[0], plan, [PlanDetailsRevised(title="Aure 2030", replaces=[])])
    assert await first.client.push_new() == 1
    await first.run()
    await second.run()
    assert (await logs[1].vector(plan)) == (await logs[0].vector(plan))
    # Resume by cursor: nothing new comes twice.
    third = Link(hub, logs[1], keys[1])
    await third.run()
    assert third.client.status.received == 0
    for log in [*logs, admin_log, hub.log]:
        await log.close()


async def test_unenrolled_viewer_revoked_and_wrong_author(tmp_path: Path) -> None:
    ws, hub, admin, admin_log, keys, logs = await _setup(tmp_path)
    stranger = DeviceKey.generate()
    slog = await EventLog.open(tmp_path / "s.db", workspace=ws)
    link = Link(hub, slog, stranger)
    await link.run()
    assert link.client.status.state == "refused" and "not_member" in link.client.status.error
    viewer = DeviceKey.generate()
    await enrol(admin_log, admin, viewer, role="viewer")
    await Link(hub, admin_log, admin).run()
    vlog = await EventLog.open(tmp_path / "v.db", workspace=ws)
    plan, bodies = new_plan(title="T", municipality="M")
    await vlog.append(viewer, plan, bodies)
    vl = Link(hub, vlog, viewer)
    await vl.run()
    assert {p.reason for p in vl.client.status.rejected} == {"read_only"}
    # Revocation: the device stays connected; what it writes next is quarantined.
    await logs[0].append(keys[0], plan, bodies)
    dl = Link(hub, logs[0], keys[0])
    await dl.run()
    assert dl.client.status.sent == len(bodies)
    await admin_log.append(admin, ws, [MemberRevoked(device=keys[0].public_key)])
    await Link(hub, admin_log, admin).run()
    await logs[0].append(keys[0], plan, [PlanDetailsRevised(title="late", replaces=[])])
    await dl.client.push_new()
    await dl.run()
    assert [p.reason for p in dl.client.status.rejected] == ["revoked"]
    evidence = await hub.log.evidence()
    assert [e["reason"] for e in evidence] == ["revoked"]
    again = Link(hub, logs[0], keys[0])
    await again.run()
    assert "revoked" in again.client.status.error
    for log in [*logs, admin_log, hub.log, slog, vlog]:
        await log.close()


async def _fill(log: EventLog, key: DeviceKey, plan: bytes, n: int) -> None:
    from core.events.bodies import NoteWritten

    for start in range(0, n, 500):
        await log.append(
            key,
            plan,
            [
                NoteWritten(note=new_uuid7(), target=None, text=f"notat {i}")
                for i in range(start, min(n, start + 500))
            ],
        )


async def test_catch_up_in_bounded_batches_resumes_by_cursor_and_after_restart_by_vector(
    tmp_path: Path,
) -> None:
    ws, hub, admin, admin_log, keys, logs = await _setup(tmp_path)
    plan = new_uuid7()
    await _fill(logs[0], keys[0], plan, 10)
    await Link(hub, logs[0], keys[0]).run()
    await Link(hub, logs[1], keys[1]).run()

    async def cursor() -> int:
        rows = await logs[1].fetch("SELECT plan_id, cursor FROM sync_cursors")
        return next(int(c) for p, c in rows if bytes(p) == plan)

    first = await cursor()
    await _fill(logs[0], keys[0], plan, 2_500)
    await Link(hub, logs[0], keys[0]).run()
    # The second device's link is cut after the first batch of its resumed
    # catch-up (frames: hello, challenge, prove, welcome, subscribe, the
    # membership log, one batch): what it got, it keeps, with its cursor.
    cut = Link(hub, logs[1], keys[1])
    await cut.run(cut_after=7)
    assert cut.cut
    got = (await logs[1].vector(plan))[keys[0].public_key]
    assert got == 10 + 1_000
    assert await cursor() > first
    again = Link(hub, logs[1], keys[1])
    await again.run()
    assert again.client.status.received == 2_510 - got
    assert (await logs[1].vector(plan)) == (await logs[0].vector(plan))
    # A restarted server (new epoch) is caught up with by vector; nothing twice.
    await logs[0].append(keys[0], plan, [PlanDetailsRevised(title="etter omstart", replaces=[])])
    restarted = Hub(hub.log, server_id=hub.server_id, epoch=os.urandom(16), admins=hub.admins)
    await restarted.start()
    await Link(restarted, logs[0], keys[0]).run()
    late = Link(restarted, logs[1], keys[1])
    await late.run()
    assert late.client.status.received == 1
    raws = [sorted(r for _, r in await log.raw_events(plan)) for log in (hub.log, *logs)]
    assert raws[0] == raws[1] == raws[2]
    for log in [*logs, admin_log, hub.log]:
        await log.close()
    del ws, admin


async def test_an_editor_limited_to_one_plan_neither_reads_nor_writes_another(
    tmp_path: Path,
) -> None:
    from core.events.bodies import MemberAdded

    ws, hub, admin, admin_log, keys, logs = await _setup(tmp_path)
    mine, other = new_uuid7(), new_uuid7()
    limited = DeviceKey.generate()
    await admin_log.append(
        admin,
        ws,
        [MemberAdded(device=limited.public_key, name="L", role="editor", plans=[mine])],
    )
    await Link(hub, admin_log, admin).run()
    await _fill(logs[0], keys[0], other, 3)
    await Link(hub, logs[0], keys[0]).run()
    llog = await EventLog.open(tmp_path / "l.db", workspace=ws)
    await _fill(llog, limited, other, 2)
    await _fill(llog, limited, mine, 2)
    link = Link(hub, llog, limited)
    await link.run()
    assert {p.reason for p in link.client.status.rejected} == {"no_access"}
    assert link.client.status.sent == 2
    assert link.server.conn.member is not None
    assert other not in link.server.conn.member.plans
    # It never received the other plan's events.
    assert keys[0].public_key not in await llog.vector(other)
    for log in [*logs, admin_log, hub.log, llog]:
        await log.close()


async def test_a_reader_that_stops_reading_is_dropped_and_resumes(tmp_path: Path) -> None:
    from core.replication.hub import OUTBOX

    ws, hub, admin, admin_log, keys, logs = await _setup(tmp_path)
    plan = new_uuid7()
    await _fill(logs[0], keys[0], plan, 1)
    writer = Link(hub, logs[0], keys[0])
    await writer.run()
    reader = Link(hub, logs[1], keys[1])
    await reader.run()
    dropped: list[bool] = []
    reader.server.on_slow = lambda: dropped.append(True)
    # The reader's socket stalls (nobody drains its outbox) while the writer
    # pushes many small batches: live fan-out must not queue without bound.
    for _ in range(OUTBOX + 5):
        await logs[0].append(keys[0], plan, [PlanDetailsRevised(title="x", replaces=[])])
        await writer.client.push_new()
        await writer.run()
    assert dropped == [True] and reader.server.slow
    assert reader.server.outbox.qsize() <= OUTBOX
    reader.close()
    # It comes back and resumes: everything arrives.
    back = Link(hub, logs[1], keys[1])
    await back.run()
    assert (await logs[1].vector(plan)) == (await logs[0].vector(plan))
    for log in [*logs, admin_log, hub.log]:
        await log.close()
    del ws, admin


def test_backoff_grows_with_full_jitter_and_a_cap() -> None:
    import random

    from core.replication.client import backoff_delay

    rng = random.Random(7)
    first = [backoff_delay(0, rng=rng) for _ in range(200)]
    assert all(0.25 <= d <= 0.5 for d in first) and len(set(first)) > 100
    assert all(15 <= backoff_delay(6, rng=rng) <= 32 for _ in range(50))
    assert max(backoff_delay(40, rng=rng) for _ in range(200)) <= 60


async def test_two_events_for_one_seq_on_two_connections_at_once_one_stored_one_evidence(
    tmp_path: Path,
) -> None:
    """One key on two installations (a restored backup, a copied folder):
    both write seq 1 of the same plan and push at the same moment."""
    import asyncio

    from core.events.bodies import NoteWritten

    ws, hub, admin, admin_log, keys, logs = await _setup(tmp_path)
    twin = await EventLog.open(tmp_path / "twin.db", workspace=ws)
    plan = new_uuid7()
    (a,) = await logs[0].append(
        keys[0], plan, [NoteWritten(note=new_uuid7(), target=None, text="A")]
    )
    (b,) = await twin.append(keys[0], plan, [NoteWritten(note=new_uuid7(), target=None, text="B")])
    assert (a.env.seq, b.env.seq) == (1, 1) and a.raw != b.raw
    first, second = Link(hub, logs[0], keys[0]), Link(hub, twin, keys[0])
    await asyncio.gather(first.run(), second.run())
    stored = [raw for _, raw in await hub.log.raw_events(plan)]
    evidence = await hub.log.evidence()
    assert len(stored) == 1 and stored[0] in (a.raw, b.raw)
    assert [e["reason"] for e in evidence] == ["fork"]
    other = b if stored[0] == a.raw else a
    assert evidence[0]["event"] == other.id  # the other one is kept, not lost
    loser = second if stored[0] == a.raw else first
    # The loser hears "fork" in its ack (and, if the winner's event reached
    # it live, from its own log too, which keeps that one as evidence).
    reasons = [p.reason for p in loser.client.status.rejected]
    assert reasons and set(reasons) == {"fork"}
    assert (await hub.log.frozen_chains())[0][:2] == (plan, keys[0].public_key)
    for log in [*logs, admin_log, hub.log, twin]:
        await log.close()
    del admin


async def test_a_live_device_gets_plans_created_after_it_subscribed(tmp_path: Path) -> None:
    """Both connected first; then each creates a plan. The other's plan
    reaches each device live, and each device's new plan is pushed."""
    ws, hub, admin, admin_log, keys, logs = await _setup(tmp_path)
    links = [Link(hub, log, key) for log, key in zip(logs, keys, strict=True)]
    for link in links:
        await link.run()
    plans = []
    for log, key, link in zip(logs, keys, links, strict=True):
        plan = new_uuid7()
        plans.append(plan)
        await _fill(log, key, plan, 3)
        await link.client.push_new()
        await link.run()
    for link in links:
        await link.run()
    for plan in plans:
        vectors = [await log.vector(plan) for log in (*logs, hub.log)]
        assert vectors[0] == vectors[1] == vectors[2] != {}
    for log in [*logs, admin_log, hub.log]:
        await log.close()
    del ws, admin


async def test_a_dead_link_never_leaves_a_reply_blocked(tmp_path: Path) -> None:
    """The socket died while the outbox was full: the reply being queued must
    not wait forever (the handler would never close, SIGTERM would hang)."""
    import asyncio

    from core.replication.hub import OUTBOX
    from core.sync import messages as m

    ws, hub, admin, admin_log, keys, logs = await _setup(tmp_path)
    session = hub.session(os.urandom(32))
    for _ in range(OUTBOX):
        session.outbox.put_nowait(m.encode(m.Failure(code="x", message="filler")))
    pending = asyncio.ensure_future(session.send(m.Failure(code="x", message="reply")))
    await asyncio.sleep(0.05)
    assert not pending.done()
    session.abandon()
    await asyncio.wait_for(pending, 1)
    await asyncio.wait_for(session.send(m.Failure(code="x", message="later")), 1)
    for log in [*logs, admin_log, hub.log]:
        await log.close()
    del ws, admin, keys


async def test_catch_up_frames_in_hand_are_stored_in_one_transaction(tmp_path: Path) -> None:
    """Group commit: the catch-up frames of a plan the client has in hand at
    once go into one transaction, and end where frame-by-frame would."""
    ws, hub, admin, admin_log, keys, logs = await _setup(tmp_path)
    plan = new_uuid7()
    await _fill(logs[0], keys[0], plan, 2_500)  # three catch-up frames
    await Link(hub, logs[0], keys[0]).run()
    calls: list[int] = []
    ingest_batches = logs[1].ingest_batches

    async def counted(batches, then=None, **kw):  # type: ignore[no-untyped-def]
        calls.append(len(batches))
        return await ingest_batches(batches, then=then, **kw)

    logs[1].ingest_batches = counted  # type: ignore[method-assign]
    link = Link(hub, logs[1], keys[1], group_frames=4)
    await link.run()
    assert link.client.status.state == "up_to_date"
    assert 3 in calls  # the plan's three frames: one transaction
    assert link.client.status.received == 2_500 + 2  # and the two enrolments
    assert (await logs[1].vector(plan)) == (await logs[0].vector(plan))
    rows = await logs[1].fetch("SELECT plan_id, cursor FROM sync_cursors")
    tops = await hub.log.fetch("SELECT max(rx) FROM events")
    assert {bytes(p): int(c) for p, c in rows}[plan] <= int(tops[0][0])
    for log in [*logs, admin_log, hub.log]:
        await log.close()
    del ws, admin


async def test_no_cursor_is_recorded_past_a_frame_with_a_rejected_event(tmp_path: Path) -> None:
    """Frames [clean, one event damaged, clean], handed over together: the
    cursor stays at the first frame's (committing them one by one used to
    record the third frame's, covering the rejected event)."""
    from core.sync import messages as m

    ws, hub, _admin, admin_log, keys, logs = await _setup(tmp_path)
    plan = new_uuid7()
    await _fill(logs[0], keys[0], plan, 4)
    other = DeviceKey.generate()
    olog = await EventLog.open(tmp_path / "o.db", workspace=ws)
    await _fill(olog, other, plan, 2)
    mine = [raw for _, raw in await logs[0].raw_events(plan)]
    theirs = [raw for _, raw in await olog.raw_events(plan)]
    damaged = mine[3][:-1] + bytes([mine[3][-1] ^ 1])
    link = Link(hub, logs[1], keys[1], group_frames=4)
    await link.run()
    assert link.client.ready

    def frame(events: list[bytes], cursor: int) -> m.Events:
        return m.Events(plan=plan, events=events, cursor=cursor, more=True, catch_up=True)

    await link.client.receive_many(
        [frame(mine[:3], 100), frame([damaged], 200), frame(theirs, 300)]
    )
    rows = await logs[1].fetch("SELECT plan_id, cursor FROM sync_cursors")
    assert {bytes(p): int(c) for p, c in rows}[plan] == 100
    assert [p.reason for p in link.client.status.rejected] == ["bad_signature"]
    vector = await logs[1].vector(plan)
    assert vector == {keys[0].public_key: 3, other.public_key: 2}
    for log in [*logs, admin_log, hub.log, olog]:
        await log.close()


async def test_a_plan_caught_up_from_empty_is_folded_along_and_checkpointed(
    tmp_path: Path,
) -> None:
    """Fold along: the catch-up of a plan this log did not hold leaves a
    checkpoint of every stored event, equal to a rebuild from zero, so the
    first `load_state` replays nothing."""
    from core.store import checkpoints
    from core.store.event_log import EventLog as Log

    ws, hub, admin, admin_log, keys, logs = await _setup(tmp_path)
    plan = new_uuid7()
    await _fill(logs[0], keys[0], plan, 2_500)
    await Link(hub, logs[0], keys[0]).run()
    link = Link(hub, logs[1], keys[1], group_frames=2)
    await link.run()
    rows = await logs[1].fetch("SELECT events, upto_rx FROM checkpoints")
    assert [int(r[0]) for r in rows] == [2_500]
    assert int(rows[0][1]) == await logs[1].top_rx()
    folded: list[int] = []
    fold_events = logs[1].fold_events

    async def counting(state, plan, after_rx=0, check=None):  # type: ignore[no-untyped-def]
        n, last = await fold_events(state, plan, after_rx, check)
        folded.append(n)
        return n, last

    logs[1].fold_events = counting  # type: ignore[method-assign]
    loaded = await logs[1].load_state(plan)
    assert folded == [0]
    assert canonical_bytes(loaded) == canonical_bytes(await logs[1].rebuild_state(plan))
    # A fold that misses a stored event (another process stored it meanwhile)
    # is not saved.
    short = await logs[1].rebuild_state(plan)
    short.events -= 1
    assert not await checkpoints.save_if_complete(logs[1], plan, short)
    # A plan that was not empty here is not folded along (its fold would
    # start from nothing): no second checkpoint appears for it.
    await _fill(logs[0], keys[0], plan, 2_600)
    await Link(hub, logs[0], keys[0]).run()
    again = Link(hub, logs[1], keys[1])
    await again.run()
    assert again.client.folds == {}
    rows = await logs[1].fetch("SELECT events FROM checkpoints")
    assert [int(r[0]) for r in rows] == [2_500]
    for log in [*logs, admin_log, hub.log]:
        await log.close()
    del ws, admin, Log


async def test_catch_up_commits_run_behind_and_the_end_waits_for_them(tmp_path: Path) -> None:
    """While more catch-up frames follow, a transaction's COMMIT is left
    running (`commit_later`) while the client goes on; the end of the
    catch-up waits for every one of them. A COMMIT that fails mid catch-up
    fails the session, with no cursor past the events stored, and the next
    connection catches up on everything."""
    import sqlite3

    ws, hub, admin, admin_log, keys, logs = await _setup(tmp_path)
    plan = new_uuid7()
    await _fill(logs[0], keys[0], plan, 2_500)  # three catch-up frames
    await Link(hub, logs[0], keys[0]).run()
    log = logs[1]
    later: list[bool] = []
    ingest_batches = log.ingest_batches

    armed = [False]

    async def spied(batches, then=None, *, commit_later=False):  # type: ignore[no-untyped-def]
        later.append(commit_later)
        if later.count(True) == 2:  # the plan's second frame: its COMMIT fails
            await log.settle()  # (the first frame's, still running, does not)
            armed[0] = True
        return await ingest_batches(batches, then=then, commit_later=commit_later)

    log.ingest_batches = spied  # type: ignore[method-assign]
    execute = log._conn.execute

    def second_commit_fails(sql: str, *args: object):  # type: ignore[no-untyped-def]
        if sql == "COMMIT" and armed[0]:
            armed[0] = False

            async def fail() -> None:
                raise sqlite3.OperationalError("disk I/O error")

            return fail()
        return execute(sql, *args)  # type: ignore[arg-type]

    log._conn.execute = second_commit_fails  # type: ignore[method-assign]
    link = Link(hub, log, keys[1])
    with pytest.raises(sqlite3.OperationalError):
        await link.run()
    link.close()
    held = (await log.vector(plan)).get(keys[0].public_key, 0)
    assert held == 1_000  # the first frame; not the second, whose COMMIT failed
    for plan_id, cursor in await log.fetch("SELECT plan_id, cursor FROM sync_cursors"):
        upto = {raw for _, raw in await hub.log.raw_events(bytes(plan_id), upto_rx=int(cursor))}
        assert upto <= {raw for _, raw in await log.raw_events(bytes(plan_id))}
    later.clear()
    again = Link(hub, log, keys[1])
    await again.run()
    assert again.client.status.state == "up_to_date"
    assert (await log.vector(plan)) == (await logs[0].vector(plan))
    assert True in later and later[-1] is False  # mid catch-up behind, the last one not
    assert not log._lock.locked() and log._commit is None
    for each in [*logs, admin_log, hub.log]:
        await each.close()
    del ws, admin
