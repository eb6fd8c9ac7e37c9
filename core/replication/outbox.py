"""A connection's outbox: encoded frames waiting for the socket, bounded by
count and by bytes (no sockets here; the shell's writer drains it).

Two kinds of sender share it:

* replies and catch-up batches wait for room (`put`, backpressure), but
  only up to half of either bound, so that
* live fan-out, which never waits (`put_nowait`), always finds the other
  half free unless the reader really stopped reading: a frame that does not
  fit raises `asyncio.QueueFull` and the hub drops the connection as a slow
  reader (it resumes from its cursor).

An empty outbox admits one frame of any size (a frame is at most ~1 MiB of
events, far below the bound), so a large frame can never wait forever.
The frames are the bytes sent on the wire: a live frame is encoded once and
the same bytes object sits in every subscriber's outbox.
"""

from __future__ import annotations

import asyncio
from collections import deque

OUTBOX_FRAMES = 64  # frames queued for one connection
OUTBOX_BYTES = 8 << 20  # bytes queued for one connection


class Outbox:
    """A FIFO of frames; `max_frames` / `max_bytes` of 0 mean unbounded."""

    def __init__(self, max_frames: int = OUTBOX_FRAMES, max_bytes: int = OUTBOX_BYTES) -> None:
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.nbytes = 0  # bytes queued now
        self._frames: deque[bytes] = deque()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._unfinished = 0
        self._finished = asyncio.Event()
        self._finished.set()

    # --- the queue interface the shell and the tests use -------------------------------------

    def qsize(self) -> int:
        return len(self._frames)

    def empty(self) -> bool:
        return not self._frames

    def fits(self, size: int, *, share: float = 1.0) -> bool:
        """Would a frame of `size` bytes fit within `share` of both bounds?"""
        if not self._frames:
            return True
        if self.max_frames and len(self._frames) >= max(1, int(self.max_frames * share)):
            return False
        return not (self.max_bytes and self.nbytes + size > self.max_bytes * share)

    def put_nowait(self, frame: bytes) -> None:
        """Queue a live frame now, within the full bounds, or raise QueueFull."""
        if not self.fits(len(frame)):
            raise asyncio.QueueFull
        self._append(frame)

    async def put(self, frame: bytes) -> None:
        """Queue a reply or catch-up frame, waiting until it fits within half
        of each bound (the other half stays free for live fan-out)."""
        while not self.fits(len(frame), share=0.5):
            waiter = asyncio.get_running_loop().create_future()
            self._putters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._putters:
                    self._putters.remove(waiter)
        self._append(frame)

    def get_nowait(self) -> bytes:
        if not self._frames:
            raise asyncio.QueueEmpty
        frame = self._frames.popleft()
        self.nbytes -= len(frame)
        _wake(self._putters, every=True)  # room for any of them, by count or bytes
        return frame

    async def get(self) -> bytes:
        while not self._frames:
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._getters:
                    self._getters.remove(waiter)
        return self.get_nowait()

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0:
            self._finished.set()

    async def join(self) -> None:
        """Until every frame put was taken and marked done."""
        await self._finished.wait()

    def clear(self) -> None:
        """Drop every queued frame (the socket is gone) and wake every sender."""
        while self._frames:
            self.get_nowait()
            self.task_done()

    # --- internals ---------------------------------------------------------------------------

    def _append(self, frame: bytes) -> None:
        self._frames.append(frame)
        self.nbytes += len(frame)
        self._unfinished += 1
        self._finished.clear()
        _wake(self._getters, every=False)


def _wake(waiters: deque[asyncio.Future[None]], *, every: bool) -> None:
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            if not every:
                return
