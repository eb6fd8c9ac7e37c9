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

pytestmark = pytest.mark.asyncio


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
