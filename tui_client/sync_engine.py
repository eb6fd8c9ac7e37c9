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
from collections.abc import Callable, Coroutine
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from core.events.envelope import Signer
from core.replication.client import ClientSession, SyncStatus, backoff_delay, pending_events
from core.store.event_log import EventLog
from core.sync import messages as m

# Catch-up frames already received when the session is ready for more are
# stored together, up to this many in one transaction (group commit; see
# core.replication.client). Bounded: a frame is at most MAX_FRAME_BYTES.
GROUP_FRAMES = 4


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
        group_frames: int = GROUP_FRAMES,
    ) -> None:
        self.log = log
        self.signer = signer
        self.url = url
        self.status = SyncStatus(server=url)
        self.on_status = on_status
        self.poll_seconds = poll_seconds
        self.open_timeout = open_timeout
        self.group_frames = group_frames
        self.attempts = 0
        self._connected = False
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
                await self._stoppable(self._connection(live=False))
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
                await self._stoppable(self._connection(live=True))
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

    async def _stoppable(self, work: Coroutine[Any, Any, None]) -> None:
        """Run one connection; `stop()` while it is still connecting cancels
        it (nothing is written before the handshake), once connected the
        connection itself notices and leaves cleanly."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done() and not self._connected:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            stop.cancel()
            if not task.done():  # we were cancelled ourselves: take the connection along
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # --- the connection -----------------------------------------------------------------------

    async def _connection(self, *, live: bool) -> None:
        self._report("connecting")
        self._connected = False
        async with connect(
            self.url,
            max_size=m.MAX_FRAME_BYTES,
            compression=None,
            open_timeout=self.open_timeout,
            ping_interval=20,
            ping_timeout=20,
        ) as ws:
            self._connected = True
            try:
                await self._exchange(ws, live=live)
            finally:
                self._connected = False

    async def _exchange(self, ws: ClientConnection, *, live: bool) -> None:
        session = ClientSession(self.log, self.signer, self.status, group_frames=self.group_frames)
        self.status.error = ""
        await self._flush(ws, session)
        # A reader task keeps taking frames off the socket while the session
        # stores the ones before (a bounded queue: a slow store still slows
        # the server down); the frames waiting when the session is ready are
        # handed over together.
        frames: asyncio.Queue[bytes | str | BaseException] = asyncio.Queue(self.group_frames)
        reader = asyncio.ensure_future(_read_frames(ws, frames))
        receiving: asyncio.Future[Any] | None = None
        next_poll = time.monotonic() + self.poll_seconds
        try:
            while not session.closed and not self._stop.is_set():
                if not live and session.idle:
                    if await session.push_new() == 0:
                        break  # caught up both ways
                    await self._flush(ws, session)
                    continue
                if receiving is None:
                    receiving = asyncio.ensure_future(frames.get())
                # Wake for a frame, stop(), and when live for a local edit or
                # the poll tick (however busy the socket is).
                waiters: set[asyncio.Future[Any]] = {
                    receiving,
                    asyncio.ensure_future(self._stop.wait()),
                }
                timeout = None
                if live:
                    waiters.add(asyncio.ensure_future(self._changed.wait()))
                    timeout = max(0.0, next_poll - time.monotonic())
                done, _ = await asyncio.wait(
                    waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                for waiter in waiters - {receiving}:
                    waiter.cancel()
                if receiving in done:
                    got = [receiving.result()]
                    receiving = None
                    while len(got) < self.group_frames and not frames.empty():
                        got.append(frames.get_nowait())
                    messages: list[m.ServerMessage] = []
                    problem: BaseException | None = None
                    for frame in got:
                        if isinstance(frame, BaseException):
                            problem = frame  # the link went: keep what came before
                            break
                        try:
                            messages.append(m.decode_from_server(frame))
                        except m.ProtocolError as exc:
                            problem = exc
                            break
                    await session.receive_many(messages)
                    for message in messages:
                        if isinstance(message, m.Welcome):
                            self.admins = list(message.admins)
                    if any(isinstance(message, m.Acked) for message in messages):
                        await self.refresh_pending()
                    self._report()
                    if isinstance(problem, m.ProtocolError):
                        self.status.state, self.status.error = "error", str(problem)
                        return
                    if problem is not None and not session.closed:
                        # The link went (ConnectionClosed). After a refusal or
                        # a failure the server closes: that is no news.
                        raise problem
                if live and time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + self.poll_seconds
                    self._changed.set()  # other processes may have written: look
                if live and self._changed.is_set() and session.ready:
                    self._changed.clear()
                    if await session.push_new():
                        self._report()
                await self._flush(ws, session)
        finally:
            if receiving is not None:
                receiving.cancel()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        if session.ready:
            session.conn.send(m.Bye())
            with contextlib.suppress(ConnectionClosed):
                await self._flush(ws, session)
        if session.idle and session.conn.refusal is None:
            self.status.state = "up_to_date"
            self.status.last_synced_ms = int(time.time() * 1000)

    async def _flush(self, ws: ClientConnection, session: ClientSession) -> None:
        for message in session.outgoing():
            await ws.send(m.encode(message))


async def _read_frames(
    ws: ClientConnection, frames: asyncio.Queue[bytes | str | BaseException]
) -> None:
    """Move frames from the socket to `frames` until the link goes; the
    exception that ended it (ConnectionClosed) is queued last."""
    while True:
        try:
            frame = await ws.recv()
        except Exception as exc:
            await frames.put(exc)
            return
        await frames.put(frame)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        rcvd = exc.rcvd
        if rcvd is not None:
            reason = f" {rcvd.reason}" if rcvd.reason else ""
            return f"connection closed by the server ({rcvd.code}{reason})"
        return "connection lost"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
