"""Reading a plan's history without freezing the screen.

On a plan of 100k events the history is ~135k change rows: decoding the
events and building the rows takes seconds. `read_history` does it in
slices of at most `SLICE` seconds, giving the event loop back between them
(it runs in a Textual worker, on the app's loop, which owns the aiosqlite
log): keys keep working, and cancelling the worker stops it at the next
slice. Rows come newest first (`changes_newest_first`), so the table fills
with what people look at first after the events are read; the rest follows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from msgspec.structs import asdict

from core.events.envelope import Event
from core.events.hlc import pack, to_iso
from core.projections.history import changes_newest_first, timeline
from core.projections.plan_state import PlanState, evolve
from core.store.checkpoints import gc_paused
from core.store.event_log import EventLog
from core.store.time_travel import pack_checkpoint, unpack_checkpoint

SLICE = 0.012  # seconds of work between two turns of the event loop
RX_SLICE = 2_000  # receive positions read (and decoded) per query
READ_SHARE = 0.3  # of the progress: reading and decoding; the rest: rows


class HistoryLoad:
    """A plan's history as far as it is read: `rows` newest first (one per
    field change, plain data), `steps` one per event (newest first, see
    `add_steps`), `events` the time line (oldest first), once read."""

    def __init__(self, plan: bytes) -> None:
        self.plan = plan
        self.events: list[Event] = []
        self.rows: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []
        self.fraction = 0.0
        self.done = False

    @property
    def percent(self) -> int:
        return min(99, int(self.fraction * 100)) if not self.done else 100


def add_steps(steps: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    """Extend `steps` (one per event, newest first) with more rows (newest
    first, continuing where the last call stopped)."""
    for row in rows:
        if steps and steps[-1]["event"] == row["event"]:
            steps[-1]["changes"].append(row)
        else:
            steps.append({**row, "changes": [row]})


async def server_times(log: EventLog, plan: bytes) -> dict[str, list[tuple[int, int, int]]]:
    """Author (hex) -> [(first seq, last seq, ms the server received them)],
    from the server's acknowledgements of this device's events."""
    acks: dict[str, list[tuple[int, int, int]]] = {}
    for device, first, last, ms in await log.fetch(
        "SELECT device_key, first_seq, last_seq, min(received_ms) FROM sync_acks "
        "WHERE plan_id=? AND received_ms>0 GROUP BY device_key, first_seq, last_seq",
        (plan,),
    ):
        acks.setdefault(bytes(device).hex(), []).append((int(first), int(last), int(ms)))
    return acks


async def read_history(
    log: EventLog,
    load: HistoryLoad,
    shown: Callable[[HistoryLoad], None],
    *,
    first: int = 2_000,
) -> HistoryLoad:
    """Fill `load`; `shown(load)` is called on progress (about every 0.1 s),
    once `first` rows are there (or all, if fewer), and at the end."""
    plan = load.plan
    acks = await server_times(log, plan)
    top = await log.top_rx()
    events: list[Event] = []
    after = 0
    while after < top:
        events += [ev for _, ev in await log.decoded_events(plan, after, upto_rx=after + RX_SLICE)]
        after += RX_SLICE
        load.fraction = READ_SHARE * min(1.0, after / top)
        shown(load)
    # Sorting 100k events holds the loop ~0.1-0.3 s: a thread does it (the
    # events are not shared with anyone yet; the GIL is handed back every 5 ms).
    line = await asyncio.to_thread(timeline, events)
    load.events = line
    total, done, told = max(1, len(line)), 0, False
    every = changes_newest_first(line)
    last_shown = time.perf_counter()
    while True:
        rows: list[dict[str, Any]] = []
        start = time.perf_counter()
        finished = True
        for event_changes in every:
            for change in reversed(event_changes):
                row = asdict(change)
                row["server"] = next(
                    (
                        to_iso(pack(ms, 0))
                        for lo, hi, ms in acks.get(change.author, ())
                        if lo <= change.seq <= hi
                    ),
                    None,
                )
                rows.append(row)
            done += 1
            if time.perf_counter() - start > SLICE:
                finished = False
                break
        load.rows += rows
        add_steps(load.steps, rows)
        load.fraction = READ_SHARE + (1 - READ_SHARE) * done / total
        if finished:
            break
        now = time.perf_counter()
        if (not told and len(load.rows) >= first) or now - last_shown > 0.1:
            told, last_shown = True, now
            shown(load)
        await asyncio.sleep(0)
    load.done = True
    load.fraction = 1.0
    shown(load)
    return load


class TimelineFold:
    """A plan's time line folded in memory, a pruned snapshot every `STEP`
    events (zlib, ~0.3 MB each at 100k events): the first time travel of a
    plan whose log has no time-line checkpoints yet starts from these,
    instead of `ensure_checkpoints` folding the whole plan inside a write
    transaction (10-20 s at 100k events, edits and the screen waiting)."""

    STEP = 1_000

    def __init__(self, plan: bytes, events: list[Event]) -> None:
        self.plan, self.events = plan, events
        self.anchors: dict[int, bytes] = {}  # position -> the state after that event
        self.upto = -1  # the last position folded
        self.started = self.done = False

    @property
    def percent(self) -> int:
        return int(100 * (self.upto + 1) / max(1, len(self.events)))

    def nearest(self, pos: int) -> tuple[int, PlanState] | None:
        """(position, state) of the anchor at or before `pos` that is at most
        STEP events away; None while the fold has not got there."""
        start = (pos + 1) // self.STEP * self.STEP - 1
        if start < 0:
            return -1, PlanState(self.plan)
        blob = self.anchors.get(start)
        return None if blob is None else (start, unpack_checkpoint(blob))

    async def run(self) -> None:
        state = PlanState(self.plan)
        pos, n = 0, len(self.events)
        while pos < n:
            start = time.perf_counter()
            with gc_paused():
                while pos < n:
                    evolve(state, self.events[pos])
                    if pos % self.STEP == self.STEP - 1:
                        self.anchors[pos] = pack_checkpoint(state)
                    self.upto = pos
                    pos += 1
                    if time.perf_counter() - start > SLICE:
                        break
            await asyncio.sleep(0)
        self.done = True
