"""The hub's server-side hot path: frames encoded once, membership checks
cached, outboxes bounded by bytes, group commit (issue 3)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from core.events.bodies import MemberRevoked, NoteWritten
from core.events.ids import new_uuid7
from core.identity.keyfile import DeviceKey
from core.replication import hub as hub_module
from core.replication.hub import Hub, HubSession
from core.replication.outbox import OUTBOX_BYTES, OUTBOX_FRAMES, Outbox
from core.store.event_log import EventLog
from core.sync import messages as m
from tests.core.sync.wire import Link, enrol


async def _setup(tmp_path: Path, n: int) -> tuple[Hub, DeviceKey, EventLog, list[Any]]:
    """A hub, its admin, and `n` enrolled devices, each with a log and a live
    link subscribed to nothing yet."""
    ws = new_uuid7()
    admin = DeviceKey.generate()
    hub = Hub(
        await EventLog.open(tmp_path / "server.db", workspace=ws, synchronous="NORMAL"),
        server_id=new_uuid7(),
        epoch=os.urandom(16),
        admins=[admin.public_key],
    )
    await hub.start()
    admin_log = await EventLog.open(tmp_path / "admin.db", workspace=ws, synchronous="NORMAL")
    devices = []
    for i in range(n):
        key = DeviceKey.generate()
        await enrol(admin_log, admin, key, name=f"d{i}")
        devices.append((key, await EventLog.open(tmp_path / f"d{i}.db", workspace=ws)))
    await Link(hub, admin_log, admin).run()
    return hub, admin, admin_log, devices


async def _close(hub: Hub, *logs: EventLog) -> None:
    for log in (hub.log, *logs):
        await log.close()


async def _note(log: EventLog, key: DeviceKey, plan: bytes, n: int = 1, text: str = "x") -> list:
    return await log.append(
        key, plan, [NoteWritten(note=new_uuid7(), target=None, text=text) for _ in range(n)]
    )


def _drain(session: HubSession) -> list[m.ServerMessage]:
    out = []
    while not session.outbox.empty():
        out.append(m.decode_from_server(session.outbox.get_nowait()))
        session.outbox.task_done()
    return out


class _CountingEncoder:
    def __init__(self, real: Any) -> None:
        self.real = real
        self.events = 0

    def encode(self, message: Any) -> bytes:
        if isinstance(message, m.Events):
            self.events += 1
        return self.real.encode(message)


@contextlib.contextmanager
def _commits(hub: Any) -> Iterator[list[int]]:
    """Record how many pushes each of the hub's commits carried."""
    calls: list[int] = []
    real = hub.log.ingest_batches

    async def spy(batches: Any, **kw: Any) -> Any:
        calls.append(len(batches))
        return await real(batches, **kw)

    with mock.patch.object(hub.log, "ingest_batches", spy):
        yield calls


async def test_a_live_frame_is_encoded_once_and_the_same_bytes_go_to_every_subscriber(
    tmp_path: Path,
) -> None:
    hub, _admin, admin_log, devices = await _setup(tmp_path, 4)
    plan = new_uuid7()
    (wkey, wlog), *readers = devices
    await _note(wlog, wkey, plan)
    writer = Link(hub, wlog, wkey)
    await writer.run()
    links = [Link(hub, log, key) for key, log in readers]
    for link in links:
        await link.run()
    counting = _CountingEncoder(m._encoder)
    with mock.patch.object(m, "_encoder", counting):
        (ev,) = await _note(wlog, wkey, plan)
        await writer.server.receive(m.Push(batch=99, events=[ev.raw]))
        frames = [link.server.outbox.get_nowait() for link in links]
    # One encode of the live `events` frame for three subscribers (before:
    # one per subscriber), and the very same bytes object in each outbox.
    assert counting.events == 1
    assert all(frame is frames[0] for frame in frames)
    live = m.decode_from_server(frames[0])
    assert isinstance(live, m.Events) and live.events == [ev.raw] and not live.catch_up
    # Not back to the pusher: it gets only its ack.
    assert [type(x) for x in _drain(writer.server)] == [m.Acked]
    await _close(hub, admin_log, *(log for _, log in devices))


async def test_read_checks_are_cached_per_device_and_plan_until_membership_changes(
    tmp_path: Path,
) -> None:
    hub, admin, admin_log, devices = await _setup(tmp_path, 3)
    plan = new_uuid7()
    (wkey, wlog), (rkey, rlog), (qkey, qlog) = devices
    await _note(wlog, wkey, plan)
    writer = Link(hub, wlog, wkey)
    await writer.run()
    reader, other = Link(hub, rlog, rkey), Link(hub, qlog, qkey)
    await reader.run()
    await other.run()
    real = hub.membership.may_read
    calls: list[tuple[bytes, bytes]] = []

    def counted(device: bytes, p: bytes) -> bool:
        calls.append((device, p))
        return real(device, p)

    with mock.patch.object(hub.membership, "may_read", counted):
        for _ in range(5):
            (ev,) = await _note(wlog, wkey, plan)
            await writer.server.receive(m.Push(batch=1, events=[ev.raw]))
    # Five fan-outs, two subscribers: at most one membership check each.
    assert len(calls) <= 2, calls
    assert len([x for x in _drain(reader.server) if isinstance(x, m.Events)]) == 5
    # The membership log changes (the reader is revoked): the cache is
    # dropped, and the revoked reader hears nothing more.
    await admin_log.append(admin, admin_log.workspace, [MemberRevoked(device=rkey.public_key)])
    await Link(hub, admin_log, admin).run()
    _drain(other.server)
    (ev,) = await _note(wlog, wkey, plan)
    await writer.server.receive(m.Push(batch=2, events=[ev.raw]))
    assert [x for x in _drain(reader.server) if isinstance(x, m.Events)] == []
    assert [x.events for x in _drain(other.server) if isinstance(x, m.Events)] == [[ev.raw]]
    await _close(hub, admin_log, *(log for _, log in devices))


# --- the outbox ------------------------------------------------------------------------------


async def test_outbox_bounds_live_frames_by_bytes_and_backpressure_by_half() -> None:
    box = Outbox(max_frames=100, max_bytes=1000)
    box.put_nowait(b"a" * 400)
    box.put_nowait(b"b" * 400)
    with pytest.raises(asyncio.QueueFull):  # 1,200 bytes > 1,000; 3 frames < 100
        box.put_nowait(b"c" * 400)
    assert box.nbytes == 800
    # A reply waits until the outbox holds at most half the bound with it.
    reply = asyncio.ensure_future(box.put(b"r" * 200))
    await asyncio.sleep(0.01)
    assert not reply.done()
    box.get_nowait()
    await asyncio.sleep(0.01)
    assert not reply.done()  # 400 + 200 > 500
    box.get_nowait()
    await asyncio.wait_for(reply, 1)
    # An empty outbox admits any one frame (it can never wait forever).
    big = Outbox(max_frames=4, max_bytes=10)
    await asyncio.wait_for(big.put(b"x" * 100), 1)
    assert big.qsize() == 1
    # Unbounded.
    free = Outbox(max_frames=0, max_bytes=0)
    for _ in range(1000):
        free.put_nowait(b"y" * 1000)
    assert free.qsize() == 1000


async def test_a_reader_holding_too_many_bytes_is_dropped_before_the_frame_count_says_so(
    tmp_path: Path,
) -> None:
    hub, _admin, admin_log, devices = await _setup(tmp_path, 2)
    plan = new_uuid7()
    (wkey, wlog), (rkey, rlog) = devices
    await _note(wlog, wkey, plan)
    writer = Link(hub, wlog, wkey)
    await writer.run()
    reader = Link(hub, rlog, rkey)
    await reader.run()
    assert (reader.server.outbox.max_frames, reader.server.outbox.max_bytes) == (
        OUTBOX_FRAMES,
        OUTBOX_BYTES,
    )
    dropped: list[bool] = []
    reader.server.on_slow = lambda: dropped.append(True)
    # The reader stalls while the writer pushes big events (six of ~40 kB
    # per push: ~240 kB a frame): the bytes bound is hit after ~35 frames,
    # long before the 64-frame bound.
    pushes = 0
    while not dropped and pushes < OUTBOX_FRAMES - 1:
        events = await _note(wlog, wkey, plan, n=6, text="ø" * 20_000)
        await writer.server.receive(m.Push(batch=pushes, events=[e.raw for e in events]))
        _drain(writer.server)
        pushes += 1
    assert dropped == [True] and reader.server.slow
    assert pushes < OUTBOX_FRAMES // 2 + 4
    assert reader.server.outbox.qsize() < OUTBOX_FRAMES
    assert reader.server.outbox.nbytes <= OUTBOX_BYTES
    await _close(hub, admin_log, *(log for _, log in devices))


async def test_a_catch_up_leaves_room_for_live_frames_of_other_plans(tmp_path: Path) -> None:
    """Catch-up waits for room within half the outbox; live fan-out of a
    plan already caught up uses the other half: a client catching up on a
    big plan is not dropped because a small plan it follows moved."""
    hub, _admin, admin_log, devices = await _setup(tmp_path, 2)
    small, big = new_uuid7(), new_uuid7()
    (wkey, wlog), (rkey, rlog) = devices
    await _note(wlog, wkey, small)
    await _note(wlog, wkey, big, n=40)
    writer = Link(hub, wlog, wkey)
    await writer.run()
    reader = Link(hub, rlog, rkey)
    reader.server.outbox = Outbox(max_frames=8, max_bytes=0)
    with mock.patch.object(hub_module, "MAX_BATCH_EVENTS", 3):
        # The reader follows only the small plan so far (a fresh replica
        # that subscribed before the big plan reached it).
        await reader.server.receive(
            m.Hello(versions=[1], workspace=hub.workspace, device=rkey.public_key)
        )
        challenge = m.decode_from_server(reader.server.outbox.get_nowait())
        assert isinstance(challenge, m.Challenge)
        sig = rkey.sign(m.auth_payload(challenge.nonce, hub.workspace, hub.server_id))
        await reader.server.receive(m.Prove(signature=sig))
        _drain(reader.server)
        await reader.server.receive(m.Subscribe(plans=[m.PlanWant(plan=small, vector={})]))
        _drain(reader.server)
        # Now it subscribes to the big plan and stops reading mid catch-up.
        catching = asyncio.ensure_future(
            reader.server.receive(m.Subscribe(plans=[m.PlanWant(plan=big, vector={})]))
        )
        await asyncio.sleep(0.2)
        assert not catching.done() and reader.server.outbox.qsize() == 4
        (ev,) = await _note(wlog, wkey, small)
        await writer.server.receive(m.Push(batch=5, events=[ev.raw]))
        assert not reader.server.slow
        assert reader.server.outbox.qsize() == 5
        reader.server.abandon()
        await asyncio.wait_for(catching, 5)
    await _close(hub, admin_log, *(log for _, log in devices))


# --- group commit ------------------------------------------------------------------------------


async def _ready(hub: Hub, key: DeviceKey, log: EventLog) -> HubSession:
    link = Link(hub, log, key)
    await link.run()
    _drain(link.server)
    return link.server


def _ack(session: HubSession) -> m.Acked:
    (acked,) = [x for x in _drain(session) if isinstance(x, m.Acked)]
    return acked


async def test_concurrent_pushes_commit_in_one_transaction_with_exact_acks(
    tmp_path: Path,
) -> None:
    hub, _admin, admin_log, devices = await _setup(tmp_path, 2)
    plan = new_uuid7()
    (xkey, xlog), (ykey, ylog) = devices
    x = await _ready(hub, xkey, xlog)
    y = await _ready(hub, ykey, ylog)
    xs = await _note(xlog, xkey, plan, n=2)
    ys = await _note(ylog, ykey, plan, n=3)
    with _commits(hub) as calls:
        await asyncio.gather(
            # X: its two events and one of Y's (wrong_author).
            x.receive(m.Push(batch=1, events=[xs[0].raw, xs[1].raw, ys[0].raw])),
            # Y: seq 1, then seq 3 (a gap: seq 2 is missing).
            y.receive(m.Push(batch=2, events=[ys[0].raw, ys[2].raw])),
        )
    assert calls == [2]  # one transaction for both pushes
    ax, ay = _ack(x), _ack(y)
    assert (ax.batch, ax.accepted) == (1, 2)
    assert [(j.index, j.reason) for j in ax.rejected] == [(2, "wrong_author")]
    assert (ay.batch, ay.accepted) == (2, 1)
    assert [(j.index, j.reason) for j in ay.rejected] == [(1, "gap")]
    vector = await hub.log.vector(plan)
    assert vector == {xkey.public_key: 2, ykey.public_key: 1}
    await _close(hub, admin_log, *(log for _, log in devices))


async def test_each_pusher_gets_the_others_events_but_not_its_own(tmp_path: Path) -> None:
    hub, _admin, admin_log, devices = await _setup(tmp_path, 3)
    plan = new_uuid7()
    (xkey, xlog), (ykey, ylog), (rkey, rlog) = devices
    for key, log in devices:
        await _note(log, key, plan)
    sessions = []
    for key, log in devices:
        link = Link(hub, log, key)
        await link.run()
        await link.run()
        sessions.append(link.server)
    for s in sessions:
        _drain(s)
    x, y, r = sessions
    (ex,) = await _note(xlog, xkey, plan)
    (ey,) = await _note(ylog, ykey, plan)
    await asyncio.gather(
        x.receive(m.Push(batch=1, events=[ex.raw])), y.receive(m.Push(batch=1, events=[ey.raw]))
    )

    def live(s: HubSession) -> list[bytes]:
        return [raw for msg in _drain(s) if isinstance(msg, m.Events) for raw in msg.events]

    assert live(x) == [ey.raw]
    assert live(y) == [ex.raw]
    assert sorted(live(r)) == sorted([ex.raw, ey.raw])
    del rkey, rlog
    await _close(hub, admin_log, *(log for _, log in devices))


async def test_a_failing_push_never_costs_another_push_of_its_group_its_events(
    tmp_path: Path,
) -> None:
    hub, _admin, admin_log, devices = await _setup(tmp_path, 3)
    plan = new_uuid7()
    (xkey, xlog), (ykey, ylog), (rkey, rlog) = devices
    x = await _ready(hub, xkey, xlog)
    y = await _ready(hub, ykey, ylog)
    await _note(rlog, rkey, plan)
    reader = Link(hub, rlog, rkey)
    await reader.run()  # pushes the plan, then follows it live
    await reader.run()
    _drain(reader.server)
    # Neither X nor Y has pushed anything of the plan yet: each pushes all three.
    await _note(xlog, xkey, plan)
    await _note(ylog, ykey, plan)
    xs = await _note(xlog, xkey, plan, n=2)
    ys = await _note(ylog, ykey, plan, n=2)
    first_x = next(raw for _, raw in await xlog.raw_events(plan))
    first_y = next(raw for _, raw in await ylog.raw_events(plan))
    poison = ys[1].raw
    real = hub.log.ingest_batches
    calls: list[int] = []

    async def flaky(batches: Any) -> Any:
        calls.append(len(batches))
        if any(ev.raw == poison for opened, _ in batches for _, ev in opened):
            raise RuntimeError("the disk is on fire")
        return await real(batches)

    with mock.patch.object(hub.log, "ingest_batches", flaky):
        results = await asyncio.gather(
            x.receive(m.Push(batch=1, events=[first_x, *(e.raw for e in xs)])),
            y.receive(m.Push(batch=2, events=[first_y, *(e.raw for e in ys)])),
            return_exceptions=True,
        )
    assert calls == [2, 1, 1]  # the group, then each push alone
    assert results[0] is None and isinstance(results[1], RuntimeError)
    acked = _ack(x)
    assert (acked.batch, acked.accepted, acked.rejected) == (1, 3, [])
    assert [x for x in _drain(y) if isinstance(x, m.Acked)] == []  # never acked
    vector = await hub.log.vector(plan)
    assert vector.get(xkey.public_key) == 3 and ykey.public_key not in vector
    # X's events fanned out; nothing of Y's.
    got = [raw for msg in _drain(reader.server) if isinstance(msg, m.Events) for raw in msg.events]
    assert sorted(got) == sorted([first_x, *(e.raw for e in xs)])
    await _close(hub, admin_log, *(log for _, log in devices))


async def test_a_membership_push_is_committed_alone(tmp_path: Path) -> None:
    """A push carrying membership events changes what later pushes may do:
    it is its own group, so a push queued after a revocation is judged by it."""
    hub, admin, admin_log, devices = await _setup(tmp_path, 1)
    plan = new_uuid7()
    ((dkey, dlog),) = devices
    d = await _ready(hub, dkey, dlog)
    a = await _ready(hub, admin, admin_log)
    (rev,) = await admin_log.append(
        admin, admin_log.workspace, [MemberRevoked(device=dkey.public_key)]
    )
    evs = await _note(dlog, dkey, plan, n=1)
    with _commits(hub) as calls:
        await asyncio.gather(
            a.receive(m.Push(batch=1, events=[rev.raw])),
            d.receive(m.Push(batch=2, events=[e.raw for e in evs])),
        )
    assert _ack(a).accepted == 1
    assert [j.reason for j in _ack(d).rejected] == ["revoked"]
    assert calls == [1]  # the membership push alone (the other stored nothing)
    await _close(hub, admin_log, dlog)
