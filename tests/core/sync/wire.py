"""A client session and a hub session wired through real frames, no network.

`Link.run()` moves frames both ways until neither side has anything to
say; `cut_after` drops the link after that many frames (a connection lost in
the middle of a batch). With `group_frames` > 1 the server's frames waiting
at once are handed to the client together (`ClientSession.receive_many`),
as the websockets shell does.
"""

from __future__ import annotations

import os

from core.events.bodies import MemberAdded
from core.identity.keyfile import DeviceKey
from core.replication.client import ClientSession, SyncStatus
from core.replication.hub import Hub
from core.store.event_log import EventLog
from core.sync import messages as m


class Link:
    def __init__(
        self,
        hub: Hub,
        log: EventLog,
        key: DeviceKey,
        status: SyncStatus | None = None,
        *,
        group_frames: int = 1,
    ) -> None:
        self.hub = hub
        self.server = hub.session(os.urandom(32))
        self.client = ClientSession(log, key, status, group_frames=group_frames)
        self.group_frames = group_frames
        self.frames = 0
        self.cut = False

    async def run(self, cut_after: int | None = None) -> None:
        while not self.cut:
            moved = False
            for msg in self.client.outgoing():
                if cut_after is not None and self.frames >= cut_after:
                    self.cut = True
                    break
                self.frames += 1
                moved = True
                await self.server.receive(m.decode_from_client(m.encode(msg)))
            while not self.cut and not self.server.outbox.empty():
                group = []
                while len(group) < self.group_frames and not self.server.outbox.empty():
                    if cut_after is not None and self.frames >= cut_after:
                        self.cut = True
                        break
                    frame = self.server.outbox.get_nowait()  # encoded by the hub
                    self.frames += 1
                    moved = True
                    group.append(m.decode_from_server(frame))
                if self.group_frames == 1:
                    for message in group:
                        await self.client.receive(message)
                else:
                    await self.client.receive_many(group)
            if not moved:
                break
        if self.cut or self.client.closed:
            self.server.close()

    def close(self) -> None:
        self.server.close()


async def enrol(
    admin_log: EventLog, admin: DeviceKey, key: DeviceKey, role: str = "editor", name: str = "x"
) -> None:
    """The admin's device writes a MemberAdded for `key` (synced later)."""
    await admin_log.append(
        admin,
        admin_log.workspace,
        [MemberAdded(device=key.public_key, name=name, role=role)],  # type: ignore[arg-type]
    )
