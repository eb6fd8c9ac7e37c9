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

import sqlite3
import zlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

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


R = TypeVar("R")
Key = tuple[int, bytes, int]  # (hlc, author, seq)
END_OF_TIME: Key = (2**63 - 1, b"\xff" * 32, 2**63 - 1)


def key_of(event: Event) -> Key:
    return (event.env.hlc, event.env.author, event.env.seq)


def key_at_time(hlc: int) -> Key:
    """The last possible key at or before `hlc` (every event of that stamp)."""
    return (min(hlc, 2**63 - 1), b"\xff" * 32, 2**63 - 1)


# The reads below are plain functions on the sqlite3 connection, run on the
# log's own thread (`EventLog.in_thread`): an as-of query is then one thread
# hop instead of seven, which on a busy machine is most of its spread.
Devices = Mapping[int, bytes]  # device_no -> device key (`log.numbers.devices`)


def _chains(db: sqlite3.Connection, plan_no: int) -> tuple[dict[int, int], set[int]]:
    """({device_no: highest seq} of the plan's chains, the unordered ones).
    One index seek per device of the log, not a scan of the plan."""
    rows = db.execute(
        f"SELECT device_no, {_TOP_SEQ}, EXISTS(SELECT 1 FROM unordered_chains u "
        "WHERE u.plan_no=?1 AND u.device_no=d.device_no) FROM devices d",
        (plan_no,),
    ).fetchall()
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


def _prefix_ends(
    db: sqlite3.Connection, plan_no: int, wanted: list[tuple[int, int, int]]
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
    for tag, lo in db.execute(sql, params):
        ends[int(tag)] = int(lo)
    return ends


Row = tuple[Any, ...]  # ROW_COLUMNS


def _rows_between(
    db: sqlite3.Connection, plan_no: int, lo: Key | None, hi: Key, devices: Devices
) -> list[Row]:
    """Rows (`ROW_COLUMNS`) of the events with lo < key <= hi, in time-line
    order. KeyError: a device another process added (reload, read again)."""
    heads, unordered = _chains(db, plan_no)
    ordered = sorted(d for d in heads if d not in unordered)
    keys = [devices[d] for d in ordered]
    wanted = []
    for dev_no, author in zip(ordered, keys, strict=True):
        for limit in (lo, hi):
            if limit is not None:
                hlc, _ = _bound(limit, author)
                wanted.append((dev_no, heads[dev_no], hlc))
    ends = iter(_prefix_ends(db, plan_no, wanted))
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
    if ranges:  # one statement for all chains
        rows = db.execute(
            " UNION ALL ".join(
                f"SELECT {ROW_COLUMNS} FROM events WHERE plan_no=? AND device_no=? "
                "AND seq>? AND seq<=?"
                for _ in ranges
            ),
            [v for dev_no, first, last in ranges for v in (plan_no, dev_no, first, last)],
        ).fetchall()

    def row_key(row: Row) -> Key:
        return (row[3], devices[row[1]], row[2])

    if whole:  # only chains read whole can hold events outside (lo, hi]
        rows = [r for r in rows if (lo is None or row_key(r) > lo) and row_key(r) <= hi]
    rows.sort(key=row_key)
    return rows


def _latest_checkpoint(
    db: sqlite3.Connection, plan_no: int, limit: Key
) -> tuple[int, Key, bytes] | None:
    # Checkpoints are in time-line order, so the newest at or before `limit`
    # is one seek on `timeline_by_key` (a scan by `events` would read one
    # page per checkpoint: each row's blob fills its leaf page).
    row = db.execute(
        "SELECT events, hlc, author, seq, state FROM timeline_checkpoints "
        "WHERE plan_no=? AND fold=? AND (hlc, author, seq) <= (?, ?, ?) "
        "ORDER BY hlc DESC, author DESC, seq DESC LIMIT 1",
        (plan_no, TIMELINE_FORMAT, limit[0], limit[1], min(limit[2], 2**63 - 1)),
    ).fetchone()
    if row is None:
        return None
    return int(row[0]), (int(row[1]), bytes(row[2]), int(row[3])), bytes(row[4])


def _uncovered(db: sqlite3.Connection, plan_no: int) -> int:
    """How many of the plan's events come after its last time-line checkpoint."""
    row = db.execute(
        f"SELECT coalesce((SELECT sum({_TOP_SEQ}) FROM devices d), 0) - coalesce(("
        "SELECT events FROM timeline_checkpoints WHERE plan_no=?1 AND fold=?2 "
        "ORDER BY events DESC LIMIT 1), 0)",
        (plan_no, TIMELINE_FORMAT),
    ).fetchone()
    return int(row[0])


Found = tuple[tuple[int, Key, bytes] | None, list[Row]]  # (checkpoint, rows after it)


def _to_extend(db: sqlite3.Connection, plan_no: int, devices: Devices) -> tuple[int, Found] | None:
    """(events in the plan, (its newest checkpoint, every row after it)), or
    None if the checkpoints are near enough the end. Drops checkpoints of
    another format (fold version, step): they are never read again. Runs
    inside the caller's write transaction."""
    total = sum(_chains(db, plan_no)[0].values())
    last = _latest_checkpoint(db, plan_no, END_OF_TIME)
    if total - (last[0] if last else 0) < 2 * TIMELINE_STEP:
        return None
    db.execute(
        "DELETE FROM timeline_checkpoints WHERE plan_no=? AND fold<>?",
        (plan_no, TIMELINE_FORMAT),
    )
    rows = _rows_between(db, plan_no, last[1] if last else None, END_OF_TIME, devices)
    return total, (last, rows)


def _as_of(db: sqlite3.Connection, plan_no: int, limit: Key, devices: Devices) -> Found | None:
    """In one read transaction (the checkpoint and the events after it from
    the same moment, whatever another process writes meanwhile): the newest
    checkpoint at or before `limit` and the rows after it up to `limit`; None
    if checkpoints are missing (`ensure_checkpoints` first)."""
    db.execute("BEGIN")
    try:
        if _uncovered(db, plan_no) >= 2 * TIMELINE_STEP:
            return None
        found = _latest_checkpoint(db, plan_no, limit)
        return found, _rows_between(db, plan_no, found[1] if found else None, limit, devices)
    finally:
        db.execute("COMMIT")


async def _read(log: EventLog, fn: Callable[..., R], *args: Any, lock: bool = False) -> R:
    """`fn(db, *args, devices)` on the log's thread (holding the log's lock
    if `lock`: `fn` opens its own transaction); if it met a device another
    process added, reload the log's numbers and read again."""

    async def once() -> R:
        if not lock:
            return await log.in_thread(fn, *args, log.numbers.devices)
        async with log._lock:
            return await log.in_thread(fn, *args, log.numbers.devices)

    try:
        return await once()
    except KeyError:
        await log._load_numbers()
        return await once()


Progress = Callable[[str, int, int], None]  # (stage, done, total)


def _quiet(stage: str, done: int, total: int) -> None:
    pass


async def ensure_checkpoints(log: EventLog, plan: bytes, progress: Progress = _quiet) -> int:
    """Build the plan's missing time-line checkpoints; returns how many were
    added. `progress("time line", events folded, events to fold)` is called
    as they are built (10–20 s for the first query of a 100k-event plan)."""
    plan_no = await log._known_plan_no(plan)
    if plan_no is None:
        raise StoreError(f"no plan {plan.hex()} in this log")
    # Read-only check first (no write lock, no state blob, no scan of the
    # plan): nearly every query finds the checkpoints up to date. Chains are
    # contiguous, so the plan holds as many events as its chains' top seqs
    # add up to; a checkpoint is dropped whenever an event before it arrives.
    if await log.in_thread(_uncovered, plan_no) < 2 * TIMELINE_STEP:
        return 0
    async with log._tx():
        todo = await _read(log, _to_extend, plan_no)
        if todo is None:
            return 0
        total, (last, rows) = todo
        done = last[0] if last else 0
        state = unpack_checkpoint(last[2]) if last else PlanState(plan)
        devices = log.numbers.devices
        added = 0
        for start in range(0, len(rows), TIMELINE_STEP):
            progress("time line", start, len(rows))
            n = done + start
            batch = rows[start : start + TIMELINE_STEP]
            await log.fold_rows(state, batch)
            n += len(batch)
            if n % TIMELINE_STEP == 0 and total - n >= TIMELINE_STEP // 2:
                hlc, author, seq = batch[-1][3], devices[batch[-1][1]], batch[-1][2]
                await log._conn.execute(
                    "INSERT OR REPLACE INTO timeline_checkpoints"
                    "(plan_no, events, hlc, author, seq, fold, state) VALUES (?,?,?,?,?,?,?)",
                    (plan_no, n, hlc, author, seq, TIMELINE_FORMAT, pack_checkpoint(state)),
                )
                added += 1
        progress("time line", len(rows), len(rows))
    return added


async def state_as_of(
    log: EventLog, plan: bytes, limit: Key, progress: Progress = _quiet
) -> PlanState:
    """The plan folded over exactly the events with time-line key <= `limit`.

    Its view equals `view(project(plan, [events with key <= limit]))`; its
    replaced sets may be pruned (see `snapshot(prune=True)`), so use it for
    reading, not as a base for further appends. `progress`: as for
    `ensure_checkpoints`, if the query has to build checkpoints first.
    """
    plan_no = await log._known_plan_no(plan)
    if plan_no is None:
        raise StoreError(f"no plan {plan.hex()} in this log")
    while (found := await _read(log, _as_of, plan_no, limit, lock=True)) is None:
        await ensure_checkpoints(log, plan, progress)
    checkpoint, rows = found
    with gc_paused():  # the restore makes ~40k objects, none of them cycles
        state = unpack_checkpoint(checkpoint[2]) if checkpoint else PlanState(plan)
    await log.fold_rows(state, rows)
    return state


async def checkpoints_ready(log: EventLog, plan: bytes) -> bool:
    """Whether a time-travel query of `plan` is quick now: its time-line
    checkpoints are there (`ensure_checkpoints` would add none), so no query
    folds the whole plan first."""
    plan_no = await log._known_plan_no(plan)
    return plan_no is None or await log.in_thread(_uncovered, plan_no) < 2 * TIMELINE_STEP
