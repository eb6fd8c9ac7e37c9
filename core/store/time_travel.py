"""Time travel: the plan as it was at any point of its time line.

The time line orders a plan's events by (HLC, author, seq), the same on every
replica. `state_as_of(log, plan, key)` restores the nearest time-line
checkpoint at or before `key` and folds the few events after it, so a query
at any point of a large plan reads a bounded number of events.

There is no time index (see core.store.schema): a device's clock only moves
forward, so the events of one chain up to a key are a seq prefix of the
chain, found by a binary search on its (plan, device, seq) key, all chains
in one query (`_prefix_ends`). Chains listed in `unordered_chains` are read
whole and filtered.

Checkpoints are a cache: built on the first time-travel query of a plan
(every `TIMELINE_STEP` events, pruned snapshots, see `plan_state.snapshot`),
extended when the plan grows, and dropped by the log whenever an event that
precedes them arrives (an adviser back from three days offline). They are
built inside one write transaction, so no concurrent ingest can slip in
between reading the events and storing the checkpoints.
"""

from __future__ import annotations

import zlib
from typing import Any

from core.events.envelope import Event
from core.projections.plan_state import FOLD_VERSION, PlanState, restore, snapshot
from core.store.checkpoints import gc_paused
from core.store.errors import StoreError
from core.store.event_log import EventLog
from core.store.rows import ROW_COLUMNS

# Every 500 events: a query restores one checkpoint (~10 ms for the ~6k heads
# of the bench plan) and folds on average 250 events after it (~7 ms). At
# 1,000 the fold doubled and p50 was ~32 ms; the price is a cache twice as
# large (docs/performance.md, "as-of").
TIMELINE_STEP = 500
# Stored in the `fold` column: the fold version plus the blob's packing, so a
# checkpoint of another fold or packing is ignored and rebuilt.
TIMELINE_FORMAT = f"{FOLD_VERSION}+zlib1+step{TIMELINE_STEP}"


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


async def _chains(log: EventLog, plan_no: int) -> tuple[dict[int, int], set[int]]:
    """({device_no: highest seq} of the plan's chains, the unordered ones).
    One index seek per device of the log, not a scan of the plan."""
    rows = await log._conn.execute_fetchall(
        f"SELECT device_no, {_TOP_SEQ}, EXISTS(SELECT 1 FROM unordered_chains u "
        "WHERE u.plan_no=?1 AND u.device_no=d.device_no) FROM devices d",
        (plan_no,),
    )
    heads = {int(d): int(s) for d, s, _ in rows if s is not None}
    return heads, {int(d) for d, s, unordered in rows if s is not None and unordered}


# The highest seq of device d's chain in plan ?1: one index seek.
_TOP_SEQ = "(SELECT max(seq) FROM events e WHERE e.plan_no=?1 AND e.device_no=d.device_no)"


def _bound(key: Key, author: bytes) -> tuple[int, int]:
    """(highest HLC, highest seq) an event of `author`'s chain may have to
    sort at or before `key` in the time line (hlc, author, seq)."""
    hlc, key_author, seq = key
    if author < key_author:
        return hlc, 2**62
    if author > key_author:
        return hlc - 1, 2**62
    return hlc, seq


async def _prefix_ends(
    log: EventLog, plan_no: int, wanted: list[tuple[int, int, int]]
) -> list[int]:
    """For each (device_no, highest seq, HLC bound): the last seq of that
    chain whose HLC is <= the bound (0: none), by binary search in SQL."""
    if not wanted:
        return []
    seeds, params = [], [plan_no]
    for tag, (dev_no, top, bound) in enumerate(wanted):
        base = len(params) + 1
        seeds.append(f"({tag}, ?{base}, 0, ?{base + 1}, ?{base + 2})")
        params += [dev_no, top, bound]
    probe = "(SELECT hlc FROM events WHERE plan_no=?1 AND device_no=dev AND seq=(lo+hi+1)/2)"
    sql = (
        "WITH RECURSIVE bs(tag, dev, lo, hi, bound) AS (VALUES " + ", ".join(seeds) + " "
        f"UNION ALL SELECT tag, dev, CASE WHEN {probe} <= bound THEN (lo+hi+1)/2 ELSE lo END, "
        f"CASE WHEN {probe} <= bound THEN hi ELSE (lo+hi+1)/2 - 1 END, bound "
        "FROM bs WHERE lo < hi) SELECT tag, lo FROM bs WHERE lo >= hi"
    )
    ends = [0] * len(wanted)
    for tag, lo in await log._conn.execute_fetchall(sql, params):
        ends[int(tag)] = int(lo)
    return ends


Row = tuple[Any, ...]  # ROW_COLUMNS


async def _rows_between(log: EventLog, plan_no: int, lo: Key | None, hi: Key) -> list[Row]:
    """Rows (`ROW_COLUMNS`) of the events with lo < key <= hi, in time-line
    order. Their devices are in `log.numbers` (they were read through it)."""
    heads, unordered = await _chains(log, plan_no)
    ordered = sorted(d for d in heads if d not in unordered)
    keys = [await log._key_of(d) for d in ordered]
    wanted = []
    for dev_no, author in zip(ordered, keys, strict=True):
        for limit in (lo, hi):
            if limit is not None:
                hlc, _ = _bound(limit, author)
                wanted.append((dev_no, heads[dev_no], hlc))
    ends = iter(await _prefix_ends(log, plan_no, wanted))
    ranges = []
    for dev_no, author in zip(ordered, keys, strict=True):
        first = 0
        if lo is not None:
            first = min(next(ends), _bound(lo, author)[1])
        last = min(next(ends), _bound(hi, author)[1])
        if last > first:
            ranges.append((dev_no, first, last))
    whole = sorted(unordered & heads.keys())
    ranges += [(d, 0, heads[d]) for d in whole]
    rows: list[Any] = []
    if ranges:  # one query for all chains: each aiosqlite call is a thread hop
        rows = list(
            await log._conn.execute_fetchall(
                " UNION ALL ".join(
                    f"SELECT {ROW_COLUMNS} FROM events WHERE plan_no=? AND device_no=? "
                    "AND seq>? AND seq<=?"
                    for _ in ranges
                ),
                [v for dev_no, first, last in ranges for v in (plan_no, dev_no, first, last)],
            )
        )
    devices = log.numbers.devices
    if any(row[1] not in devices for row in rows):  # a device another process added
        await log._load_numbers()

    def row_key(row: Row) -> Key:
        return (row[3], devices[row[1]], row[2])

    if whole:  # only chains read whole can hold events outside (lo, hi]
        rows = [r for r in rows if (lo is None or row_key(r) > lo) and row_key(r) <= hi]
    rows.sort(key=row_key)
    return rows


async def _latest_checkpoint(
    log: EventLog, plan_no: int, limit: Key
) -> tuple[int, Key, bytes] | None:
    # Checkpoints are in time-line order, so the newest at or before `limit`
    # is one seek on `timeline_by_key` (a scan by `events` would read one
    # page per checkpoint: each row's blob fills its leaf page).
    rows = list(
        await log._conn.execute_fetchall(
            "SELECT events, hlc, author, seq, state FROM timeline_checkpoints "
            "WHERE plan_no=? AND fold=? AND (hlc, author, seq) <= (?, ?, ?) "
            "ORDER BY hlc DESC, author DESC, seq DESC LIMIT 1",
            (plan_no, TIMELINE_FORMAT, limit[0], limit[1], min(limit[2], 2**63 - 1)),
        )
    )
    if not rows:
        return None
    row = rows[0]
    return int(row[0]), (int(row[1]), bytes(row[2]), int(row[3])), bytes(row[4])


async def ensure_checkpoints(log: EventLog, plan: bytes) -> int:
    """Build the plan's missing time-line checkpoints; returns how many were added."""
    plan_no = await log._known_plan_no(plan)
    if plan_no is None:
        raise StoreError(f"no plan {plan.hex()} in this log")
    # Read-only check first (no write lock, no state blob, no scan of the
    # plan): nearly every query finds the checkpoints up to date. Chains are
    # contiguous, so the plan holds as many events as its chains' top seqs
    # add up to; a checkpoint is dropped whenever an event before it arrives.
    if await _uncovered(log, plan_no) < 2 * TIMELINE_STEP:
        return 0
    async with log._tx():
        total = sum((await _chains(log, plan_no))[0].values())
        last = await _latest_checkpoint(log, plan_no, END_OF_TIME)
        done = last[0] if last else 0
        if total - done < 2 * TIMELINE_STEP:
            return 0
        # Checkpoints of another format (fold version, step) are never read
        # again: drop them rather than keep them beside the new ones.
        await log._conn.execute(
            "DELETE FROM timeline_checkpoints WHERE plan_no=? AND fold<>?",
            (plan_no, TIMELINE_FORMAT),
        )
        state = unpack_checkpoint(last[2]) if last else PlanState(plan)
        rows = await _rows_between(log, plan_no, last[1] if last else None, END_OF_TIME)
        devices = log.numbers.devices
        added = 0
        for start in range(0, len(rows), TIMELINE_STEP):
            n = done + start
            todo = rows[start : start + TIMELINE_STEP]
            await log.fold_rows(state, todo)
            n += len(todo)
            if n % TIMELINE_STEP == 0 and total - n >= TIMELINE_STEP // 2:
                hlc, author, seq = todo[-1][3], devices[todo[-1][1]], todo[-1][2]
                await log._conn.execute(
                    "INSERT OR REPLACE INTO timeline_checkpoints"
                    "(plan_no, events, hlc, author, seq, fold, state) VALUES (?,?,?,?,?,?,?)",
                    (plan_no, n, hlc, author, seq, TIMELINE_FORMAT, pack_checkpoint(state)),
                )
                added += 1
    return added


async def _uncovered(log: EventLog, plan_no: int) -> int:
    """How many of the plan's events come after its last time-line checkpoint."""
    rows = await log._conn.execute_fetchall(
        f"SELECT coalesce((SELECT sum({_TOP_SEQ}) FROM devices d), 0) - coalesce(("
        "SELECT events FROM timeline_checkpoints WHERE plan_no=?1 AND fold=?2 "
        "ORDER BY events DESC LIMIT 1), 0)",
        (plan_no, TIMELINE_FORMAT),
    )
    return int(next(iter(rows))[0])


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
            rows = await _rows_between(log, plan_no, found[1] if found else None, limit)
        finally:
            await log._conn.execute("COMMIT")
    with gc_paused():  # the restore makes ~40k objects, none of them cycles
        state = unpack_checkpoint(found[2]) if found else PlanState(plan)
    await log.fold_rows(state, rows)
    return state


async def checkpoints_ready(log: EventLog, plan: bytes) -> bool:
    """Whether a time-travel query of `plan` is quick now: its time-line
    checkpoints are there (`ensure_checkpoints` would add none), so no query
    folds the whole plan first."""
    plan_no = await log._known_plan_no(plan)
    return plan_no is None or await _uncovered(log, plan_no) < 2 * TIMELINE_STEP
