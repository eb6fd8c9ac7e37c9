"""Sync convergence as a state machine: devices, one hub, a flaky link.

Three to five editor devices (enrolled by an admin key through the
membership log) and the admin's own device edit plans offline (set fields,
add, remove, resolve, concurrent edits of one field so conflicts arise),
create plans, and sync with one `Hub` over a server `EventLog` through real
encoded frames (`tests.core.sync.wire.Link`): fully; cut after a random
number of frames (mid handshake, catch-up, push, before an ack); live (a
link kept open across steps that receives fan-out while others push, maybe
cut mid-delivery); with a subscribe that reaches the hub only after others
pushed; with duplicated deliveries (a replayed `events` message,
re-ingested raw events, a push from an earlier seq); and across hub
restarts (a new epoch: clients must fall back to vectors).

Batches are shrunk to a few events and checkpoints to a few events' tail so
that small histories still take the multi-batch catch-up and push paths and
the checkpoint path of `load_state`. Each device's client takes the frames
waiting at once in groups of 1, 2 or 4 (drawn per device: group commit,
`ClientSession.receive_many`, as the websockets shell does with up to 4).
`Link` drains a session's outbox only between frames (the shell's writer
drains it concurrently), so sessions get an unbounded outbox here: no slow
readers in this machine.

After every step: no acknowledged event is lost (every seq range in a
client's `sync_acks` is on the server with the same bytes); no cursor runs
ahead of the events its replica holds; every log's chains are contiguous
and linked; honest devices never produce evidence or frozen chains. After a
full sync the device and the server hold the same events; after a live
delivery the device holds everything of the plans it is subscribed to. At
the end (and in the `heal` rule) every device syncs twice; then every
replica and the server hold the same raw events per plan and the same
projections (`rebuild_state`, and `load_state` from checkpoints), and no
device has events pending.

The two tests at the end are minimal repros of bugs the machine found
(both fixed since; kept as regression tests).

More examples: VIDDA_HYPOTHESIS_EXAMPLES=200 (a failure then shrinks for
up to five minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from core.commands import edits
from core.events.envelope import decode_stored, event_id
from core.events.ids import ZERO_HASH, new_uuid7
from core.identity.keyfile import DeviceKey
from core.projections.plan_state import PlanState, canonical_bytes
from core.replication import client as client_module
from core.replication import hub as hub_module
from core.replication.client import pending_events
from core.replication.hub import Hub
from core.replication.outbox import Outbox
from core.store import checkpoints
from core.store.event_log import EventLog
from core.sync import messages as m
from tests.core.sync.wire import Link, enrol

EXAMPLES = int(os.environ.get("VIDDA_HYPOTHESIS_EXAMPLES", "8"))
STEPS = 25
BATCH = 3  # events per push / catch-up batch (the product's is 1,000)
CHECKPOINT_TAIL = 3  # load_state writes a checkpoint after this many (the product's is 2,000)
TIMEOUT = 60.0  # seconds for one step's async work; a hang is a failure
# Frames a device's client takes together (`ClientSession.receive_many`,
# group commit), per device; the shell's is 4.
GROUP_FRAMES = [1, 2, 4]

TITLES = ["Aure", "Áltá", "Kárášjohka", "Vardø", "Sjøvegan", "Bagn"]
PLAN_FIELDS: dict[str, list[Any]] = {
    "title": TITLES,
    "status": ["draft", "active", "paused", "completed"],
    "desired_result": ["Engasjement", "Medvirkning", "Tillit"],
    "q_who_are_we": ["Vi", "Oss", "Bygda"],
}
ACTIVITY_FIELDS: dict[str, list[Any]] = {
    "title": TITLES,
    "status": ["planned", "done", "postponed", "cancelled"],
    "place": ["Huset", "Skolen", None],
    "mode": ["physical", "digital", "hybrid"],
    "position": ["1", "V", "k", "z"],
}
FIELDS = {"plan": PLAN_FIELDS, "activity": ACTIVITY_FIELDS}

Raws = dict[bytes, frozenset[bytes]]  # plan -> its raw events


class Device:
    def __init__(self, name: str, key: DeviceKey, log: EventLog, group_frames: int = 1) -> None:
        self.name = name
        self.key = key
        self.log = log
        # Frames its links hand to the client together (group commit), as
        # the websockets shell does with the frames waiting at once.
        self.group_frames = group_frames
        self.link: Link | None = None  # an open (live) connection
        self.delivered: list[m.Events] = []  # every events message any of its links got
        self.acks: list[m.Acked] = []  # every acked message any of its links got

    @property
    def me(self) -> bytes:
        return self.key.public_key

    def __repr__(self) -> str:
        return self.name


async def _open(path: Path, workspace: bytes) -> EventLog:
    # Real SQLite files; NORMAL skips the fsync per commit (nothing crashes here).
    return await EventLog.open(path, workspace=workspace, synchronous="NORMAL")


async def _raws(log: EventLog) -> Raws:
    out = {}
    for plan, _ in await log.plans(membership=True):
        out[plan] = frozenset(raw for _, raw in await log.raw_events(plan))
    return out


async def _states(log: EventLog, plan: bytes) -> tuple[bytes, bytes]:
    return (
        canonical_bytes(await log.rebuild_state(plan)),
        canonical_bytes(await log.load_state(plan)),
    )


async def _handshake(link: Link) -> None:
    """Hello to welcome through real frames; the client's subscribe, already
    queued, stays unsent (a link with latency: others may push meanwhile)."""
    for _ in range(2):
        for message in link.client.outgoing():
            await link.server.receive(m.decode_from_client(m.encode(message)))
            link.frames += 1
        while not link.server.outbox.empty():
            reply = link.server.outbox.get_nowait()
            await link.client.receive(m.decode_from_server(reply))
            link.frames += 1
    assert link.client.ready


def _conflicts(state: PlanState) -> list[tuple[str, bytes, str]]:
    return sorted(
        (kind, eid, name)
        for (kind, eid), ent in state.entities.items()
        if kind in FIELDS
        for name, fs in ent.fields.items()
        if name in FIELDS[kind] and len(fs.heads) > 1
    )


class SyncMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="vidda-sync-"))
        self.editors: list[Device] = []
        self.admin: Device | None = None
        self.server_log: EventLog | None = None
        self.hub: Hub | None = None
        self.server_id = new_uuid7()

    # --- plumbing -------------------------------------------------------------------------------

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))

    @property
    def everyone(self) -> list[Device]:
        assert self.admin is not None
        return [self.admin, *self.editors]

    def connect(self, dev: Device) -> Link:
        assert self.hub is not None
        self.drop(dev)
        link = Link(self.hub, dev.log, dev.key, group_frames=dev.group_frames)
        # The shell drains a session's outbox while the session works; Link
        # drains it only between frames, so a catch-up of many small batches
        # would wait forever for room. An unbounded outbox (no slow readers).
        link.server.outbox = Outbox(max_frames=0, max_bytes=0)
        receive_many, outgoing = link.client.receive_many, link.client.outgoing

        async def recording(messages: list[m.ServerMessage]) -> None:
            # `receive` of one message goes through `receive_many` too.
            for message in messages:
                if isinstance(message, m.Events):
                    dev.delivered.append(message)
                elif isinstance(message, m.Acked):
                    dev.acks.append(message)
            await receive_many(messages)

        def checked() -> list[m.ClientMessage]:
            sent = outgoing()
            for message in sent:
                if isinstance(message, m.Subscribe):
                    # A cursor of another server epoch is never offered: vectors instead.
                    assert link.client.conn.epoch == self.hub_epoch()
                    for want in message.plans:
                        assert want.cursor == 0 or want.epoch == self.hub_epoch(), want
            return sent

        link.client.receive_many = recording  # type: ignore[method-assign]
        link.client.outgoing = checked  # type: ignore[method-assign]
        return link

    def hub_epoch(self) -> bytes:
        assert self.hub is not None
        return self.hub.epoch

    def drop(self, dev: Device) -> None:
        if dev.link is not None:
            dev.link.close()
            dev.link = None

    async def _start_hub(self) -> Hub:
        assert self.server_log is not None and self.admin is not None
        hub = Hub(
            self.server_log,
            server_id=self.server_id,
            epoch=os.urandom(16),  # a new epoch at every start
            admins=[self.admin.me],
        )
        await hub.start()
        return hub

    def live_link(self, dev: Device) -> Link | None:
        """The device's open link, if it still is one."""
        link = dev.link
        if link is not None and (link.server.slow or link.cut or link.client.closed):
            self.drop(dev)
            return None
        return link

    # --- setup ----------------------------------------------------------------------------------

    @initialize(
        n=st.integers(3, 5),
        groups=st.lists(st.sampled_from(GROUP_FRAMES), min_size=6, max_size=6),
    )
    def setup(self, n: int, groups: list[int]) -> None:
        self.run(self._setup(n, groups))

    async def _setup(self, n: int, groups: list[int]) -> None:
        ws = new_uuid7()
        admin_key = DeviceKey.from_seed(bytes([200]) * 32)
        admin_log = await _open(self.dir / "admin.db", ws)
        self.admin = Device("admin", admin_key, admin_log, groups[-1])
        self.server_log = await _open(self.dir / "server.db", ws)
        self.hub = await self._start_hub()
        for i in range(n):
            key = DeviceKey.from_seed(bytes([i + 1]) * 32)
            await enrol(self.admin.log, admin_key, key, name=f"d{i}")
            log = await _open(self.dir / f"d{i}.db", ws)
            self.editors.append(Device(f"d{i}", key, log, groups[i]))
        # The first editor starts a plan; everyone syncs and stays connected.
        first = self.editors[0]
        plan, bodies = edits.new_plan(title="Sentrum", municipality="Aure")
        await first.log.append(first.key, plan, bodies)
        for dev in self.everyone:
            link = self.connect(dev)
            await link.run()
            await self._check_full_sync(dev, link)
            dev.link = link
        assert self.hub is not None and self.hub.stats.events_in == n + len(bodies)

    # --- offline edits --------------------------------------------------------------------------

    def _plans(self, dev: Device) -> list[bytes]:
        return sorted(p for p, _ in self.run(dev.log.plans()))

    @rule(data=st.data())
    def create_plan(self, data: st.DataObject) -> None:
        self.create_plan_on(data.draw(st.sampled_from(self.editors), label="device"), data)

    def create_plan_on(self, dev: Device, data: st.DataObject) -> None:
        plan, bodies = edits.new_plan(
            title=data.draw(st.sampled_from(TITLES), label="title"), municipality="Aure"
        )
        self.run(dev.log.append(dev.key, plan, bodies))

    @rule(data=st.data())
    def edit(self, data: st.DataObject) -> None:
        dev = data.draw(st.sampled_from(self.editors), label="device")
        for _ in range(data.draw(st.integers(1, 3), label="edits")):
            self.edit_on(dev, data)

    def _edit_bodies(self, data: st.DataObject, state: PlanState, plan: bytes) -> list[Any]:
        acts = sorted(eid for (kind, eid) in state.entities if kind == "activity")
        phases = sorted(eid for (kind, eid) in state.entities if kind == "phase")
        op = data.draw(
            st.sampled_from(["plan", "add", "edit", "edit", "remove", "resolve", "phase", "note"]),
            label="op",
        )
        if op in ("edit", "remove") and not acts:
            op = "add"
        if op == "resolve" and not _conflicts(state):
            op = "plan"
        # A replica may hold part of a plan (a catch-up cut short): no plan
        # entity or phases yet.
        if (op == "plan" and state.entity("plan", plan) is None) or (op == "phase" and not phases):
            op = "add"
        if op == "plan":
            field = data.draw(st.sampled_from(sorted(PLAN_FIELDS)), label="field")
            value = data.draw(st.sampled_from(PLAN_FIELDS[field]), label="value")
            return edits.set_fields(state, "plan", plan, {field: value})
        if op == "add":
            _, body = edits.add_entity(
                state, "activity", {"title": data.draw(st.sampled_from(TITLES), label="title")}
            )
            return [body]
        if op == "edit":  # removed ones too: an edit after removal is kept and surfaced
            target = data.draw(st.sampled_from(acts), label="activity")
            field = data.draw(st.sampled_from(sorted(ACTIVITY_FIELDS)), label="field")
            value = data.draw(st.sampled_from(ACTIVITY_FIELDS[field]), label="value")
            return edits.set_fields(state, "activity", target, {field: value})
        if op == "remove":
            return [edits.remove_entity(state, "activity", data.draw(st.sampled_from(acts)))]
        if op == "resolve":
            kind, eid, name = data.draw(st.sampled_from(_conflicts(state)), label="conflict")
            value = data.draw(st.sampled_from(FIELDS[kind][name]), label="value")
            return [edits.resolve(state, kind, eid, name, value)]
        if op == "phase":
            target = data.draw(st.sampled_from(phases), label="phase")
            name = data.draw(st.sampled_from(TITLES), label="name")
            return edits.set_fields(state, "phase", target, {"name": name})
        text = data.draw(st.sampled_from(TITLES), label="text")
        _, body = edits.add_entity(state, "note", {"text": text, "target": None})
        return [body]

    @rule(data=st.data())
    def concurrent_edit(self, data: st.DataObject) -> None:
        """Two devices set the same field of the same entity without seeing
        each other's edit: a conflict every replica must show alike."""
        a, b = data.draw(
            st.lists(st.sampled_from(self.editors), min_size=2, max_size=2, unique=True),
            label="devices",
        )
        common = sorted(set(self._plans(a)) & set(self._plans(b)))
        if not common:
            return
        plan = data.draw(st.sampled_from(common), label="plan")
        sa, sb = self.run(a.log.load_state(plan)), self.run(b.log.load_state(plan))
        targets = sorted(k for k in set(sa.entities) & set(sb.entities) if k[0] in FIELDS)
        if not targets:
            return
        kind, eid = data.draw(st.sampled_from(targets), label="entity")
        field = data.draw(st.sampled_from(sorted(FIELDS[kind])), label="field")
        va, vb = data.draw(
            st.lists(st.sampled_from(FIELDS[kind][field]), min_size=2, max_size=2, unique=True),
            label="values",
        )
        self.run(a.log.append(a.key, plan, edits.set_fields(sa, kind, eid, {field: va})))
        self.run(b.log.append(b.key, plan, edits.set_fields(sb, kind, eid, {field: vb})))

    # --- sync -----------------------------------------------------------------------------------

    async def _check_full_sync(self, dev: Device, link: Link) -> None:
        """A sync that ran to the end: caught up both ways, nothing rejected,
        and the device and the server hold the same events of every plan."""
        assert self.server_log is not None
        c = link.client
        assert not link.cut
        assert c.status.state == "up_to_date", c.status
        assert c.idle, (c.catching_up, c._inflight)
        assert c.status.rejected == [], c.status.rejected
        mine, server = await _raws(dev.log), await _raws(self.server_log)
        assert mine.keys() == server.keys()
        for plan in server:
            assert mine[plan] == server[plan], (dev, plan.hex())

    @rule(data=st.data())
    def sync(self, data: st.DataObject) -> None:
        self.sync_on(data.draw(st.sampled_from(self.everyone), label="device"))

    def sync_on(self, dev: Device) -> None:
        link = self.connect(dev)
        self.run(link.run())
        self.run(self._check_full_sync(dev, link))
        dev.link = link  # stays connected: live from now on

    @rule(data=st.data())
    def slow_subscribe(self, data: st.DataObject) -> None:
        """A device is welcomed, but its subscribe reaches the hub only after
        another device synced (with a new plan, maybe); then it catches up."""
        dev = data.draw(st.sampled_from(self.everyone), label="device")
        other = data.draw(st.sampled_from([d for d in self.editors if d is not dev]))
        link = self.connect(dev)
        self.run(_handshake(link))
        if data.draw(st.booleans(), label="new plan"):
            self.create_plan_on(other, data)
        else:
            self.edit_on(other, data)
        self.sync_on(other)
        dev.link = link
        self.deliver(dev, data)
        # Meanwhile others keep working: one more device syncs, edits, pushes.
        third = data.draw(st.sampled_from([d for d in self.editors if d is not dev]))
        self.sync_on(third)
        self.push_live_by(third, data)

    @rule(data=st.data(), frames=st.integers(0, 40))
    def sync_cut(self, data: st.DataObject, frames: int) -> None:
        """A new connection lost after `frames` frames (handshake, catch-up
        batches, pushes, acks)."""
        dev = data.draw(st.sampled_from(self.everyone), label="device")
        link = self.connect(dev)
        self.run(link.run(cut_after=frames))
        if not link.cut:  # it was long enough to finish
            self.run(self._check_full_sync(dev, link))
            dev.link = link

    async def _check_live(self, dev: Device) -> None:
        """An open link that was just drained holds everything the server
        has of the plans it is subscribed to."""
        assert self.hub is not None and self.server_log is not None and dev.link is not None
        assert dev.link.client.status.rejected == [], dev.link.client.status.rejected
        subscribed = [p for p, subs in self.hub.subscribers.items() if dev.link.server in subs]
        for plan in subscribed:
            theirs = {raw for _, raw in await self.server_log.raw_events(plan)}
            mine = {raw for _, raw in await dev.log.raw_events(plan)}
            assert theirs <= mine, (dev, plan.hex(), len(theirs - mine))

    @precondition(lambda self: any(d.link is not None for d in self.editors))
    @rule(data=st.data())
    def push_live(self, data: st.DataObject) -> None:
        """A connected device edits and pushes (maybe losing the link after a
        few frames, acks in flight); every other open link receives the
        fan-out (maybe cut too)."""
        assert self.server_log is not None
        online = [d for d in self.editors if self.live_link(d) is not None]
        if not online:
            return
        self.push_live_by(data.draw(st.sampled_from(online), label="device"), data)

    def push_live_by(self, dev: Device, data: st.DataObject) -> None:
        assert self.server_log is not None
        link = dev.link
        assert link is not None
        if data.draw(st.booleans(), label="new plan"):
            self.create_plan_on(dev, data)
        for _ in range(data.draw(st.integers(0, 2), label="edits")):
            self.edit_on(dev, data)
        self.run(link.client.push_new())
        cut = data.draw(st.none() | st.integers(0, 4), label="cut after")
        self.run(link.run(cut_after=None if cut is None else link.frames + cut))
        if link.cut:
            dev.link = None
        else:
            c = link.client
            assert c.idle and c.status.rejected == [], c.status
            for plan in self._plans(dev):  # all of this device's events are on the server
                mine = self.run(dev.log.vector(plan)).get(dev.me, 0)
                assert self.run(self.server_log.vector(plan)).get(dev.me, 0) == mine, dev
        for other in self.everyone:
            if other is not dev and self.live_link(other) is not None:
                self.deliver(other, data)

    def edit_on(self, dev: Device, data: st.DataObject) -> None:
        plans = self._plans(dev)
        if not plans:
            plan, bodies = edits.new_plan(title="Ny", municipality="Aure")
            self.run(dev.log.append(dev.key, plan, bodies))
            return
        plan = data.draw(st.sampled_from(plans), label="plan")
        state = self.run(dev.log.load_state(plan))  # from a checkpoint, when there is one
        assert canonical_bytes(state) == canonical_bytes(self.run(dev.log.rebuild_state(plan)))
        self.run(dev.log.append(dev.key, plan, self._edit_bodies(data, state, plan)))

    @precondition(lambda self: any(d.link is not None for d in self.everyone))
    @rule(data=st.data())
    def drain(self, data: st.DataObject) -> None:
        """An open link delivers what waits for it (live fan-out), maybe cut
        after a few frames; or the device goes offline."""
        online = [d for d in self.everyone if self.live_link(d) is not None]
        if online:
            dev = data.draw(st.sampled_from(online), label="device")
            if data.draw(st.booleans(), label="offline"):
                self.drop(dev)
            else:
                self.deliver(dev, data)

    def deliver(self, dev: Device, data: st.DataObject) -> None:
        link = dev.link
        assert link is not None
        cut = data.draw(st.none() | st.integers(0, 3), label="cut after")
        self.run(link.run(cut_after=None if cut is None else link.frames + cut))
        if link.cut:
            dev.link = None
        else:
            self.run(self._check_live(dev))

    @rule()
    def restart_hub(self) -> None:
        """A new Hub over the same log (a new epoch): every connection is
        gone; cursors of the old epoch are no longer trusted."""
        for dev in self.everyone:
            self.drop(dev)
        self.hub = self.run(self._start_hub())

    # --- duplicates -----------------------------------------------------------------------------

    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        """A delivery comes twice: an `events` message the device already
        got is replayed on its open link, or raw events it holds are ingested
        again. Nothing changes."""
        dev = data.draw(st.sampled_from(self.everyone), label="device")
        before = self.run(_raws(dev.log))
        link = self.live_link(dev)
        if link is not None and dev.delivered and data.draw(st.booleans(), label="replay"):
            message = data.draw(st.sampled_from(dev.delivered), label="message")
            received = link.client.status.received
            self.run(link.client.receive(m.decode_from_server(m.encode(message))))
            assert link.client.status.received == received
            assert link.client.status.rejected == []
        else:
            held = sorted(raw for raws in before.values() for raw in raws)
            if not held:
                return
            again = data.draw(st.lists(st.sampled_from(held), min_size=1, max_size=8))
            report = self.run(dev.log.ingest(again))
            assert report.accepted == [] and report.rejected == [] and report.evidence == []
            assert report.duplicates == len(again)
        assert self.run(_raws(dev.log)) == before

    @precondition(lambda self: any(d.link is not None for d in self.everyone))
    @rule(data=st.data())
    def push_again(self, data: st.DataObject) -> None:
        """The device forgets what the server has of one of its chains and
        pushes it again from an earlier seq: duplicates are acked, not stored."""
        assert self.server_log is not None
        online = [d for d in self.everyone if self.live_link(d) is not None]
        if not online:
            return
        dev = data.draw(st.sampled_from(online), label="device")
        assert dev.link is not None
        held = {}  # plan -> how much of this device's chain the server holds
        for plan, _ in self.run(self.server_log.plans(membership=True)):
            seq = self.run(self.server_log.vector(plan)).get(dev.me, 0)
            if seq:
                held[plan] = seq
        if not held:
            return
        plan = data.draw(st.sampled_from(sorted(held)), label="plan")
        before = self.run(_raws(self.server_log))
        assert self.hub is not None
        duplicates = self.hub.stats.duplicates
        start = data.draw(st.integers(0, held[plan] - 1), label="from")
        c = dev.link.client
        c._sent_upto[plan] = start
        sent, acks = c.status.sent, len(dev.acks)
        self.run(c.push_new())
        self.run(dev.link.run())
        assert c.idle and c.status.rejected == [], c.status
        assert self.hub.stats.duplicates - duplicates == held[plan] - start
        # `accepted` counts the events stored now or already there.
        assert sum(a.accepted for a in dev.acks[acks:]) == c.status.sent - sent
        assert c.status.sent - sent >= held[plan] - start
        after = self.run(_raws(self.server_log))
        own = {r for r in self.run(_raws(dev.log))[plan] if decode_stored(r).env.author == dev.me}
        assert after[plan] == before[plan] | own

    # --- healing --------------------------------------------------------------------------------

    async def _heal(self) -> None:
        """Everyone syncs twice; then every replica equals the server."""
        assert self.server_log is not None
        for dev in self.everyone:
            self.drop(dev)
        for _ in range(2):
            for dev in self.everyone:
                link = self.connect(dev)
                await link.run()
                assert link.client.idle and link.client.status.rejected == [], link.client.status
                dev.link = link  # the second round's links stay open
        server = await _raws(self.server_log)
        projections = {plan: await _states(self.server_log, plan) for plan in server}
        for plan, (rebuilt, loaded) in projections.items():
            assert loaded == rebuilt, plan.hex()
        for dev in self.everyone:
            mine = await _raws(dev.log)
            assert mine.keys() == server.keys(), dev
            for plan in server:
                assert mine[plan] == server[plan], (dev, plan.hex())
                assert await _states(dev.log, plan) == projections[plan], (dev, plan.hex())
            # Everything this device wrote is on the server: nothing is pending.
            assert await pending_events(dev.log, dev.me) == 0, dev

    @rule()
    def heal(self) -> None:
        self.run(self._heal())

    # --- invariants -----------------------------------------------------------------------------

    @invariant()
    def nothing_acknowledged_is_lost(self) -> None:
        if self.server_log is None or self.admin is None:
            return
        self.run(self._check_logs())

    async def _check_logs(self) -> None:
        assert self.server_log is not None
        server = await self._chains(self.server_log)
        for dev in self.everyone:
            mine = await self._chains(dev.log)
            # A cursor never runs ahead of the events: the replica holds every
            # event the server received up to it (rx is the server log's own).
            held = {raw for chain in mine.values() for raw in chain}
            for sid, plan, _epoch, cursor in await dev.log.fetch(
                "SELECT server_id, plan_id, epoch, cursor FROM sync_cursors"
            ):
                assert bytes(sid) == self.server_id
                upto = await self.server_log.raw_events(bytes(plan), upto_rx=int(cursor))
                assert {raw for _, raw in upto} <= held, (dev, "cursor", cursor)
            for sid, plan, device, first, last, _ms in await dev.log.fetch(
                "SELECT server_id, plan_id, device_key, first_seq, last_seq, received_ms "
                "FROM sync_acks"
            ):
                assert bytes(sid) == self.server_id and bytes(device) == dev.me
                chain = server.get((bytes(plan), dev.me), [])
                assert len(chain) >= last, (dev, "acked", first, last, "server has", len(chain))
                assert chain[first - 1 : last] == mine[(bytes(plan), dev.me)][first - 1 : last]

    @staticmethod
    async def _chains(log: EventLog) -> dict[tuple[bytes, bytes], list[bytes]]:
        """Every chain of the log, checked contiguous and linked; no evidence."""
        out = {}
        async for plan, device, rows in log.chains():
            prev = ZERO_HASH
            for i, (seq, _hlc, raw) in enumerate(rows, start=1):
                env = decode_stored(raw).env
                assert seq == env.seq == i, (log.path.name, "gap", i, seq)
                assert (env.plan, env.author) == (plan, device)
                assert env.prev == prev, (log.path.name, "broken link", seq)
                prev = event_id(raw)
            out[(plan, device)] = [raw for _, _, raw in rows]
        assert await log.evidence() == [], log.path.name
        assert await log.frozen_chains() == [], log.path.name
        return out

    # --- teardown -------------------------------------------------------------------------------

    def teardown(self) -> None:
        try:
            # Heal only after a clean run: never mask the step that failed.
            if sys.exc_info()[0] is None and self.admin is not None:
                self.run(self._heal())
        finally:
            for dev in self.everyone if self.admin is not None else []:
                self.drop(dev)
            for log in [self.server_log, *(d.log for d in self.editors)] + (
                [self.admin.log] if self.admin else []
            ):
                if log is not None:
                    with contextlib.suppress(Exception):
                        self.run(log.close())
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.mark.timeout(900)  # room for Hypothesis to shrink a failure (it stops at 5 min)
def test_devices_and_hub_converge_through_cuts_duplicates_and_restarts() -> None:
    with (
        mock.patch.object(hub_module, "MAX_BATCH_EVENTS", BATCH),
        mock.patch.object(client_module, "MAX_BATCH_EVENTS", BATCH),
        mock.patch.object(checkpoints, "CHECKPOINT_EVERY", CHECKPOINT_TAIL),
    ):
        run_state_machine_as_test(
            SyncMachine,
            settings=settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None),
        )


async def test_an_ack_lost_with_the_link_does_not_leave_events_pending(tmp_path: Path) -> None:
    """The server commits a push, then the link drops before `acked` arrives.
    The next sync finds the events on the server (its catch-up vector says
    so) and pushes nothing; the client must record that as an ack, or
    `pending_events` (the status bar's "pending") reports them unsaved for
    good although the server holds them. Found by the state machine above."""
    ws = new_uuid7()
    admin, device = DeviceKey.generate(), DeviceKey.generate()
    server_log = await _open(tmp_path / "server.db", ws)
    admin_log = await _open(tmp_path / "admin.db", ws)
    log = await _open(tmp_path / "device.db", ws)
    try:
        hub = Hub(
            server_log, server_id=new_uuid7(), epoch=os.urandom(16), admins=[admin.public_key]
        )
        await hub.start()
        await enrol(admin_log, admin, device)
        await Link(hub, admin_log, admin).run()
        plan, bodies = edits.new_plan(title="Sentrum", municipality="Aure")
        await log.append(device, plan, bodies)
        # hello, challenge, prove, welcome, subscribe, 2 x events, push: cut before `acked`.
        link = Link(hub, log, device)
        await link.run(cut_after=8)
        assert link.cut and link.client._inflight  # the push is committed, its ack lost
        assert (await server_log.vector(plan)) == {device.public_key: len(bodies)}
        again = Link(hub, log, device)
        await again.run()
        assert again.client.status.state == "up_to_date" and again.client.status.sent == 0
        assert await pending_events(log, device.public_key) == 0
    finally:
        for each in (server_log, admin_log, log):
            await each.close()


async def test_a_plan_pushed_before_a_slow_subscribe_is_not_skipped_by_the_cursor(
    tmp_path: Path,
) -> None:
    """B is welcomed; before its subscribe reaches the hub, A pushes a new
    plan, so B neither subscribes to it nor gets its fan-out. Then C's first
    edit of the plan fans out to B, a live session new to the plan, without
    the plan's history, and the link drops right after. B must not take that
    event's cursor as covering the plan: it would resume from it and never
    receive A's events (until the server's epoch changed), while its status
    said up to date. Found by the state machine above."""
    ws = new_uuid7()
    admin, a, b, c = (DeviceKey.generate() for _ in range(4))
    server_log = await _open(tmp_path / "server.db", ws)
    admin_log = await _open(tmp_path / "admin.db", ws)
    logs = [await _open(tmp_path / f"{name}.db", ws) for name in "abc"]
    la, lb, lc = logs
    try:
        hub = Hub(
            server_log, server_id=new_uuid7(), epoch=os.urandom(16), admins=[admin.public_key]
        )
        await hub.start()
        for key in (a, b, c):
            await enrol(admin_log, admin, key)
        await Link(hub, admin_log, admin).run()
        slow = Link(hub, lb, b)
        await _handshake(slow)  # welcomed; its subscribe is still on the way
        plan, bodies = edits.new_plan(title="Sentrum", municipality="Aure")
        await la.append(a, plan, bodies)
        await Link(hub, la, a).run()
        await slow.run()  # subscribed, without the plan
        assert slow.client.idle and await lb.plans() == []
        other = Link(hub, lc, c)
        await other.run()
        state = await lc.load_state(plan)
        await lc.append(c, plan, edits.set_fields(state, "plan", plan, {"title": "Sentrum 2030"}))
        await other.client.push_new()
        await other.run()
        await slow.run(cut_after=slow.frames + 1)  # the fan-out arrives, then the link drops
        assert slow.cut
        ahead = []  # cursors past events the replica lacks
        for plan_id, cursor in await lb.fetch("SELECT plan_id, cursor FROM sync_cursors"):
            upto = {raw for _, raw in await server_log.raw_events(bytes(plan_id), upto_rx=cursor)}
            if not upto <= {raw for _, raw in await lb.raw_events(bytes(plan_id))}:
                ahead.append(bytes(plan_id))
        again = Link(hub, lb, b)
        await again.run()
        assert again.client.status.state == "up_to_date"
        held, server = await _raws(lb), await _raws(server_log)
        assert len(held[plan]) == len(server[plan]), "B lacks events of the plan for good"
        assert held == server and ahead == []
    finally:
        for each in (server_log, admin_log, *logs):
            await each.close()
