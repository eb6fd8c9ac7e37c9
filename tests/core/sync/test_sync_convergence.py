"""Sync convergence as a state machine: devices, one hub, a flaky link.

Three to five editor devices (enrolled by an admin key through the
membership log) and the admin's own device edit plans offline, create plans,
make concurrent edits of one field, and sync with one `Hub` over a server
`EventLog` through real encoded frames (`tests.core.sync.wire.Link`): fully,
cut after a random number of frames, live (a link kept open across steps
that receives fan-out while others push), with duplicated deliveries (a
replayed `events` message, re-ingested raw events, a push of events the
server already holds), and across hub restarts (a new epoch: clients fall
back to vectors).

Batches are shrunk to a few events and checkpoints to a few events' tail so
that small histories still take the multi-batch catch-up and push paths and
the checkpoint path of `load_state`.

After every step: no acknowledged event is lost (every seq range in a
client's `sync_acks` is on the server with the same bytes), every log's
chains are contiguous and linked, and honest devices never produce evidence
or frozen chains. At the end (and in the `heal` rule) every device syncs
twice; then every replica and the server hold the same raw events per plan
and the same projections (`rebuild_state` and `load_state`).

More examples: VIDDA_HYPOTHESIS_EXAMPLES=200.
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
from core.store import checkpoints
from core.store.event_log import EventLog
from core.sync import messages as m
from tests.core.sync.wire import Link, enrol

EXAMPLES = int(os.environ.get("VIDDA_HYPOTHESIS_EXAMPLES", "8"))
STEPS = 25
BATCH = 3  # events per push / catch-up batch (the product's is 1,000)
CHECKPOINT_TAIL = 3  # load_state writes a checkpoint after this many (the product's is 2,000)
TIMEOUT = 60.0  # seconds for one step's async work; a hang is a failure

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
    def __init__(self, name: str, key: DeviceKey, log: EventLog) -> None:
        self.name = name
        self.key = key
        self.log = log
        self.link: Link | None = None  # an open (live) connection
        self.delivered: list[m.Events] = []  # every events message any of its links got

    @property
    def me(self) -> bytes:
        return self.key.public_key

    def __repr__(self) -> str:
        return self.name


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
        self.restarts = 0

    # --- plumbing -------------------------------------------------------------------------------

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))

    @property
    def everyone(self) -> list[Device]:
        assert self.admin is not None
        return [self.admin, *self.editors]

    @property
    def live(self) -> list[Device]:
        return [d for d in self.everyone if d.link is not None]

    def connect(self, dev: Device) -> Link:
        assert self.hub is not None
        self.drop(dev)
        link = Link(self.hub, dev.log, dev.key)
        receive = link.client.receive

        async def recording(message: m.ServerMessage) -> None:
            if isinstance(message, m.Events):
                dev.delivered.append(message)
            await receive(message)

        link.client.receive = recording  # type: ignore[method-assign]
        return link

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
        """The device's open link, unless the hub dropped it as a slow reader."""
        link = dev.link
        if link is not None and (link.server.slow or link.cut or link.client.closed):
            self.drop(dev)
            return None
        return link

    # --- setup ----------------------------------------------------------------------------------

    @initialize(n=st.integers(3, 5))
    def setup(self, n: int) -> None:
        self.run(self._setup(n))

    async def _setup(self, n: int) -> None:
        ws = new_uuid7()
        admin_key = DeviceKey.from_seed(bytes([200]) * 32)
        admin_log = await EventLog.open(self.dir / "admin.db", workspace=ws)
        self.admin = Device("admin", admin_key, admin_log)
        self.server_log = await EventLog.open(self.dir / "server.db", workspace=ws)
        self.hub = await self._start_hub()
        for i in range(n):
            key = DeviceKey.from_seed(bytes([i + 1]) * 32)
            await enrol(self.admin.log, admin_key, key, name=f"d{i}")
            log = await EventLog.open(self.dir / f"d{i}.db", workspace=ws)
            self.editors.append(Device(f"d{i}", key, log))
        link = self.connect(self.admin)
        await link.run()
        assert link.client.idle and link.client.status.sent == n, link.client.status
        link.close()

    # --- offline edits --------------------------------------------------------------------------

    def _plans(self, dev: Device) -> list[bytes]:
        return sorted(p for p, _ in self.run(dev.log.plans()))

    @rule(data=st.data())
    def create_plan(self, data: st.DataObject) -> None:
        dev = data.draw(st.sampled_from(self.editors), label="device")
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
        dev = data.draw(st.sampled_from(self.everyone), label="device")
        link = self.connect(dev)
        self.run(link.run())
        self.run(self._check_full_sync(dev, link))
        dev.link = link  # stays connected: live from now on

    @rule(data=st.data(), frames=st.integers(0, 24))
    def sync_cut(self, data: st.DataObject, frames: int) -> None:
        """A connection lost after `frames` frames (a new one, or the open one)."""
        dev = data.draw(st.sampled_from(self.everyone), label="device")
        link = self.live_link(dev)
        if link is not None and data.draw(st.booleans(), label="reuse"):
            fresh, cut_after = False, link.frames + frames
        else:
            link, fresh, cut_after = self.connect(dev), True, frames
        dev.link = link
        self.run(link.run(cut_after=cut_after))
        if link.cut:
            dev.link = None  # run() closed the server side
        elif fresh:
            self.run(self._check_full_sync(dev, link))
        else:
            self.run(self._check_live(dev))

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
        """A connected device edits and pushes; every other open link
        receives the fan-out."""
        assert self.server_log is not None
        online = [d for d in self.editors if self.live_link(d) is not None]
        if not online:
            return
        dev = data.draw(st.sampled_from(online), label="device")
        assert dev.link is not None
        if data.draw(st.booleans(), label="edit first"):
            self.edit_on(dev, data)
        self.run(dev.link.client.push_new())
        self.run(dev.link.run())
        c = dev.link.client
        assert c.idle and c.status.rejected == [], c.status
        for plan in self._plans(dev):  # all of this device's events are on the server
            mine = self.run(dev.log.vector(plan)).get(dev.me, 0)
            assert self.run(self.server_log.vector(plan)).get(dev.me, 0) == mine, (dev, plan)
        for other in self.everyone:
            if other is not dev and self.live_link(other) is not None:
                assert other.link is not None
                self.run(other.link.run())
                self.run(self._check_live(other))

    def edit_on(self, dev: Device, data: st.DataObject) -> None:
        plans = self._plans(dev)
        if not plans:
            plan, bodies = edits.new_plan(title="Ny", municipality="Aure")
            self.run(dev.log.append(dev.key, plan, bodies))
            return
        plan = data.draw(st.sampled_from(plans), label="plan")
        state = self.run(dev.log.load_state(plan))
        self.run(dev.log.append(dev.key, plan, self._edit_bodies(data, state, plan)))

    @precondition(lambda self: any(d.link is not None for d in self.everyone))
    @rule(data=st.data())
    def drain(self, data: st.DataObject) -> None:
        """An open link delivers what waits for it (live fan-out)."""
        online = [d for d in self.everyone if self.live_link(d) is not None]
        if online:
            dev = data.draw(st.sampled_from(online), label="device")
            assert dev.link is not None
            self.run(dev.link.run())
            self.run(self._check_live(dev))

    @precondition(lambda self: any(d.link is not None for d in self.everyone))
    @rule(data=st.data())
    def go_offline(self, data: st.DataObject) -> None:
        dev = data.draw(st.sampled_from(self.live), label="device")
        self.drop(dev)

    @rule()
    def restart_hub(self) -> None:
        """A new Hub over the same log (a new epoch): every connection is
        gone; cursors of the old epoch are no longer trusted."""
        for dev in self.everyone:
            self.drop(dev)
        self.hub = self.run(self._start_hub())
        self.restarts += 1

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
        dev.link.client._sent_upto[plan] = start
        self.run(dev.link.client.push_new())
        self.run(dev.link.run())
        c = dev.link.client
        assert c.idle and c.status.rejected == [], c.status
        assert self.hub.stats.duplicates - duplicates == held[plan] - start
        after = self.run(_raws(self.server_log))
        own = {r for r in self.run(_raws(dev.log))[plan] if decode_stored(r).env.author == dev.me}
        assert after[plan] == before[plan] | own

    # --- reading --------------------------------------------------------------------------------

    @rule(data=st.data())
    def open_plan(self, data: st.DataObject) -> None:
        """Opening a plan (checkpoint plus tail) equals a rebuild from zero."""
        assert self.server_log is not None
        log = data.draw(st.sampled_from([self.server_log] + [d.log for d in self.everyone]))
        plans = sorted(p for p, _ in self.run(log.plans()))
        if plans:
            plan = data.draw(st.sampled_from(plans), label="plan")
            rebuilt, loaded = self.run(_states(log, plan))
            assert loaded == rebuilt

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
                link.close()
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
