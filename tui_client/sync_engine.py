"""The client's sync engine: the websockets shell around `core.replication.client`.

`SyncEngine.run_once()` connects, catches up both ways and leaves;
`SyncEngine.run()` stays connected (live push both ways) and reconnects with
exponential backoff and jitter while the link comes and goes. Both can be
stopped at any moment (`stop()`, or cancelling the task) without losing
anything: events are committed before their cursor, acks after the server
committed, and whatever was in flight is simply sent again next time.

`status` (a `SyncStatus`) is what the TUI shows: offline, connecting,
syncing, up to date, refused or error, and the events still pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from core.events.envelope import Signer
from core.replication.client import ClientSession, SyncStatus, backoff_delay, pending_events
from core.store.event_log import EventLog
from core.sync import messages as m


class SyncEngine:
    def __init__(
        self,
        log: EventLog,
        signer: Signer,
        url: str,
        *,
        on_status: Callable[[SyncStatus], None] | None = None,
        poll_seconds: float = 1.0,
        open_timeout: float = 10.0,
    ) -> None:
        self.log = log
        self.signer = signer
        self.url = url
        self.status = SyncStatus(server=url)
        self.on_status = on_status
        self.poll_seconds = poll_seconds
        self.open_timeout = open_timeout
        self.attempts = 0
        self.admins: list[bytes] = []  # the workspace's admin keys, from the server
        self._stop = asyncio.Event()
        self._changed = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    def local_change(self) -> None:
        """The local log has new events of this device: push them soon."""
        self._changed.set()

    def _report(self, state: str | None = None) -> None:
        if state is not None:
            self.status.state = state
        if self.on_status is not None:
            self.on_status(self.status)

    async def refresh_pending(self) -> int:
        self.status.pending = await pending_events(self.log, self.signer.public_key)
        return self.status.pending

    # --- one pass -----------------------------------------------------------------------------

    async def run_once(self, timeout: float = 300.0) -> SyncStatus:
        """Connect, exchange until both sides are caught up, leave."""
        try:
            async with asyncio.timeout(timeout):
                await self._connection(live=False)
        except TimeoutError:
            self.status.state, self.status.error = "error", f"no progress within {timeout:.0f} s"
        except (OSError, InvalidHandshake, InvalidURI, ConnectionClosed) as exc:
            self.status.state, self.status.error = "offline", _describe(exc)
        await self.refresh_pending()
        self._report()
        return self.status

    # --- keep running -------------------------------------------------------------------------

    async def run(self) -> None:
        """Stay in sync until `stop()`; reconnect with backoff and jitter."""
        await self.refresh_pending()
        while not self._stop.is_set():
            try:
                await self._connection(live=True)
                self.attempts = 0 if self.status.state != "refused" else self.attempts + 1
            except (OSError, InvalidHandshake, InvalidURI, ConnectionClosed, TimeoutError) as exc:
                self.status.error = _describe(exc)
                self.attempts += 1
            if self._stop.is_set():
                break
            if self.status.state not in ("refused", "error"):
                self._report("offline")
            delay = backoff_delay(self.attempts)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()
        self._report("offline")

    # --- the connection -----------------------------------------------------------------------

    async def _connection(self, *, live: bool) -> None:
        self._report("connecting")
        async with connect(
            self.url,
            max_size=m.MAX_FRAME_BYTES,
            compression=None,
            open_timeout=self.open_timeout,
            ping_interval=20,
            ping_timeout=20,
        ) as ws:
            session = ClientSession(self.log, self.signer, self.status)
            self.status.error = ""
            await self._flush(ws, session)
            while not session.closed and not self._stop.is_set():
                if not live and session.idle:
                    if await session.push_new() == 0:
                        break  # caught up both ways
                    await self._flush(ws, session)
                    continue
                try:
                    async with asyncio.timeout(self.poll_seconds if live else None):
                        frame = await ws.recv()
                except TimeoutError:
                    frame = None
                if frame is not None:
                    try:
                        message = m.decode_from_server(frame)
                    except m.ProtocolError as exc:
                        self.status.state, self.status.error = "error", str(exc)
                        return
                    await session.receive(message)
                    if isinstance(message, m.Welcome):
                        self.admins = list(message.admins)
                    if isinstance(message, m.Acked):
                        await self.refresh_pending()
                    self._report()
                if live and (self._changed.is_set() or frame is None) and session.ready:
                    self._changed.clear()
                    if await session.push_new():
                        self._report()
                await self._flush(ws, session)
            if session.ready:
                session.conn.send(m.Bye())
                await self._flush(ws, session)
            if session.idle and session.conn.refusal is None:
                self.status.state = "up_to_date"
                self.status.last_synced_ms = int(time.time() * 1000)

    async def _flush(self, ws: ClientConnection, session: ClientSession) -> None:
        for message in session.outgoing():
            await ws.send(m.encode(message))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        rcvd = exc.rcvd
        if rcvd is not None:
            return f"connection closed by the server ({rcvd.code} {rcvd.reason})".strip()
        return "connection lost"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
