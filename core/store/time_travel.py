"""Time travel: the plan as it was at any point of its time line.

The time line orders a plan's events by (HLC, author, seq), the same on every
replica. `state_as_of(log, plan, key)` restores the nearest time-line
checkpoint at or before `key` and folds the few events after it, so a query
at any point of a large plan reads a bounded number of events.

Checkpoints are a cache: built on the first time-travel query of a plan
(every `TIMELINE_STEP` events, pruned snapshots, see `plan_state.snapshot`),
extended when the plan grows, and dropped by the log whenever an event that
precedes them arrives (an adviser back from three days offline). They are
built inside one write transaction, so no concurrent ingest can slip in
between reading the events and storing the checkpoints.
"""

from __future__ import annotations

import zlib

from core.events.envelope import Event, decode_stored
from core.projections.plan_state import FOLD_VERSION, PlanState, evolve, restore, snapshot
from core.store.checkpoints import gc_paused
from core.store.errors import StoreError
from core.store.event_log import EventLog

TIMELINE_STEP = 2_000
# Stored in the `fold` column: the fold version plus the blob's packing, so a
# checkpoint of another fold or packing is ignored and rebuilt.
TIMELINE_FORMAT = FOLD_VERSION + "+zlib1"


def pack_checkpoint(state: PlanState) -> bytes:
    """A pruned snapshot, zlib level 1: heads repeat the same few device keys,
    so this stores ~2.9× less for ~3 ms more per query (docs/performance.md)."""
    return zlib.compress(snapshot(state, prune=True), 1)


def unpack_checkpoint(blob: bytes) -> PlanState:
    return restore(zlib.decompress(blob))


Key = tuple[int, bytes, int]  # (hlc, author, seq)
END_OF_TIME: Key = (2**63 - 1, b"\xff" * 32, 2**63 - 1)


def key_of(event: Event) -> Key:
    return (event.env.hlc, event.env.author, event.env.seq)


def key_at_time(hlc: int) -> Key:
    """The last possible key at or before `hlc` (every event of that stamp)."""
    return (min(hlc, 2**63 - 1), b"\xff" * 32, 2**63 - 1)


async def _events_between(log: EventLog, plan_no: int, lo: Key | None, hi: Key) -> list[Event]:
    """Events with lo < key <= hi, in time-line order."""
    lo_hlc = lo[0] if lo else 0
    async with log._conn.execute(
        "SELECT raw FROM events WHERE plan_no=? AND hlc>=? AND hlc<=?", (plan_no, lo_hlc, hi[0])
    ) as cur:
        rows = await cur.fetchall()
    with gc_paused():
        events = [decode_stored(bytes(r[0])) for r in rows]
    picked = [e for e in events if (lo is None or key_of(e) > lo) and key_of(e) <= hi]
    picked.sort(key=key_of)
    return picked


async def _latest_checkpoint(
    log: EventLog, plan_no: int, limit: Key
) -> tuple[int, Key, bytes] | None:
    async with log._conn.execute(
        "SELECT events, hlc, author, seq, state FROM timeline_checkpoints "
        "WHERE plan_no=? AND fold=? AND (hlc, author, seq) <= (?, ?, ?) "
        "ORDER BY events DESC LIMIT 1",
        (plan_no, TIMELINE_FORMAT, limit[0], limit[1], min(limit[2], 2**63 - 1)),
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        return None
    return int(row[0]), (int(row[1]), bytes(row[2]), int(row[3])), bytes(row[4])


async def ensure_checkpoints(log: EventLog, plan: bytes) -> int:
    """Build the plan's missing time-line checkpoints; returns how many were added."""
    plan_no = await log._known_plan_no(plan)
    if plan_no is None:
        raise StoreError(f"no plan {plan.hex()} in this log")
    # Read-only check first, bounded (no write lock, no state blob, no count of
    # the whole plan): nearly every query finds the checkpoints up to date.
    rows = await log._conn.execute_fetchall(
        "SELECT count(*) FROM (SELECT 1 FROM events WHERE plan_no=?1 AND hlc>coalesce("
        "(SELECT hlc FROM timeline_checkpoints WHERE plan_no=?1 AND fold=?2 "
        "ORDER BY events DESC LIMIT 1), -1) LIMIT ?3)",
        (plan_no, TIMELINE_FORMAT, 2 * TIMELINE_STEP),
    )
    if next(iter(rows))[0] < 2 * TIMELINE_STEP:
        return 0
    async with log._tx() as conn:
        async with conn.execute("SELECT count(*) FROM events WHERE plan_no=?", (plan_no,)) as cur:
            row = await cur.fetchone()
        total = int(row[0]) if row else 0
        last = await _latest_checkpoint(log, plan_no, END_OF_TIME)
        done = last[0] if last else 0
        if total - done < 2 * TIMELINE_STEP:
            return 0
        state = unpack_checkpoint(last[2]) if last else PlanState(plan)
        events = await _events_between(log, plan_no, last[1] if last else None, END_OF_TIME)
        added = 0
        with gc_paused():
            for n, ev in enumerate(events, start=done + 1):
                evolve(state, ev)
                if n % TIMELINE_STEP == 0 and total - n >= TIMELINE_STEP // 2:
                    hlc, author, seq = key_of(ev)
                    await conn.execute(
                        "INSERT OR REPLACE INTO timeline_checkpoints"
                        "(plan_no, events, hlc, author, seq, fold, state) VALUES (?,?,?,?,?,?,?)",
                        (plan_no, n, hlc, author, seq, TIMELINE_FORMAT, pack_checkpoint(state)),
                    )
                    added += 1
    return added


async def state_as_of(log: EventLog, plan: bytes, limit: Key) -> PlanState:
    """The plan folded over exactly the events with time-line key <= `limit`.

    Its view equals `view(project(plan, [events with key <= limit]))`; its
    replaced sets may be pruned (see `snapshot(prune=True)`), so use it for
    reading, not as a base for further appends.
    """
    plan_no = await log._known_plan_no(plan)
    if plan_no is None:
        raise StoreError(f"no plan {plan.hex()} in this log")
    await ensure_checkpoints(log, plan)
    # One read transaction: the checkpoint and the events after it come from
    # the same moment, whatever another process writes meanwhile.
    async with log._lock:
        await log._conn.execute("BEGIN")
        try:
            found = await _latest_checkpoint(log, plan_no, limit)
            events = await _events_between(log, plan_no, found[1] if found else None, limit)
        finally:
            await log._conn.execute("COMMIT")
    state = unpack_checkpoint(found[2]) if found else PlanState(plan)
    with gc_paused():
        for ev in events:
            evolve(state, ev)
    return state
