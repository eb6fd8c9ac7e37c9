"""Ingest of one chain's events: duplicates, forks, frozen chains, gaps, signatures.

`EventLog.ingest` groups a batch by (plan, author) and calls `ingest_chain`
for each inside its write transaction. The rules are in the event log's
module docstring (and docs/decisions.md); every event ends up accepted,
counted as a duplicate, kept as evidence or rejected with a reason.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import aiosqlite

from core.events.envelope import Event, event_id, signature_ok
from core.events.ids import ZERO_HASH
from core.events.verify import authentic_prefix, links_ok
from core.store.ingest_report import IngestReport, Rejection
from core.store.rows import ROW_COLUMNS

if TYPE_CHECKING:
    from core.store.event_log import EventLog, Row


async def ingest_chain(
    log: EventLog,
    conn: aiosqlite.Connection,
    plan: bytes,
    author: bytes,
    items: list[tuple[int, Event]],
    report: IngestReport,
) -> list[Row]:
    seqs = [ev.env.seq for _, ev in items]
    # The common case (a catch-up, a push): one run of consecutive seqs, in order.
    consecutive = bool(seqs) and seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    if not consecutive:
        items.sort(key=lambda it: (it[1].env.seq, it[0]))
    by_seq: dict[int, set[bytes]] = defaultdict(set)
    if not consecutive and len(set(seqs)) < len(items):  # a seq twice: look closer
        for _, ev in items:
            by_seq[ev.env.seq].add(ev.raw)
    if any(len(raws) > 1 for raws in by_seq.values()):
        # Two different events for one seq in one batch: only validly signed
        # ones may count as a fork; a forgery must not freeze an honest chain.
        kept = []
        for index, ev in items:
            if len(by_seq[ev.env.seq]) > 1 and not signature_ok(ev.raw, ev.env.author):
                report.rejected.append(
                    Rejection(index, ev.id, "bad_signature", "signature does not verify")
                )
            else:
                kept.append((index, ev))
        items = kept
    plan_no = await log._plan_no(plan)
    dev_no = await log._device_no(author)
    # One round trip for the frozen flag and the chain head (each aiosqlite
    # call is a thread hop).
    frozen_at, *head = next(
        iter(
            await conn.execute_fetchall(
                "SELECT (SELECT at_seq FROM frozen_chains WHERE plan_no=?1 AND device_no=?2), "
                f"{ROW_COLUMNS} FROM (SELECT 1) LEFT JOIN (SELECT {ROW_COLUMNS} FROM events "
                "WHERE plan_no=?1 AND device_no=?2 ORDER BY seq DESC LIMIT 1)",
                (plan_no, dev_no),
            )
        )
    )
    head_seq, head_id, head_hlc = 0, ZERO_HASH, -1
    if head[2] is not None:
        head_seq, head_hlc = int(head[2]), int(head[3])
        head_id = event_id((await log.raws([head]))[0])
    frozen = None if frozen_at is None else int(frozen_at)
    if consecutive and frozen is None and seqs[0] == head_seq + 1:
        events = [ev for _, ev in items]
        if links_ok(events, head_id) == len(events):
            # Every event extends the chain and links to the one before: no
            # duplicates, forks, gaps or frozen chain to sort out, only the
            # signatures (the same run the general path below would build).
            newest = events[-1]
            good = len(events) if signature_ok(newest.raw, newest.env.author) else None
            return await _store_run(
                log, conn, plan_no, dev_no, items, head_id, head_hlc, report, good
            )
    fresh: list[tuple[int, Event]] = []
    seen_in_batch: dict[int, bytes] = {}
    for index, ev in items:
        seq = ev.env.seq
        if seq in seen_in_batch:
            if seen_in_batch[seq] == ev.raw:
                report.duplicates += 1
            else:  # two validly signed events for one seq in one batch: a fork
                await keep_evidence(log, conn, plan_no, dev_no, ev, "fork", report, index)
                frozen = await freeze(log, conn, plan_no, dev_no, seq, "fork", frozen)
            continue
        seen_in_batch[seq] = ev.raw
        if seq <= head_seq:
            stored = list(
                await conn.execute_fetchall(
                    f"SELECT {ROW_COLUMNS} FROM events WHERE plan_no=? AND device_no=? AND seq=?",
                    (plan_no, dev_no, seq),
                )
            )
            if stored and (await log.raws(stored))[0] == ev.raw:
                report.duplicates += 1
                continue
            if not signature_ok(ev.raw, ev.env.author):
                report.rejected.append(
                    Rejection(index, ev.id, "bad_signature", "signature does not verify")
                )
                continue
            await keep_evidence(log, conn, plan_no, dev_no, ev, "fork", report, index)
            frozen = await freeze(log, conn, plan_no, dev_no, seq, "fork", frozen)
            continue
        fresh.append((index, ev))
    rows: list[Row] = []
    expected_seq, expected_prev = head_seq + 1, head_id
    run: list[tuple[int, Event]] = []
    for pos, (index, ev) in enumerate(fresh):
        seq = ev.env.seq
        if frozen is not None and seq >= frozen:
            # Quarantine only what the author really signed: forgeries must
            # not fill the evidence table or plant evidence against a device.
            if signature_ok(ev.raw, ev.env.author):
                await keep_evidence(log, conn, plan_no, dev_no, ev, "frozen", report, index)
            else:
                report.rejected.append(
                    Rejection(index, ev.id, "bad_signature", "signature does not verify")
                )
            continue
        if seq != expected_seq:
            _reject_rest(report, fresh[pos:], f"this log has up to {expected_seq - 1}")
            break
        if ev.env.prev != expected_prev:
            if run and authentic_prefix([e for _, e in run], head_id) < len(run):
                # The link breaks against an event of this batch that is itself
                # not authentic (damaged on the way): no evidence of a fork. The
                # rest of the chain waits for an undamaged copy.
                _reject_rest(report, fresh[pos:], "it follows an event that failed verification")
                break
            if not signature_ok(ev.raw, ev.env.author):
                report.rejected.append(
                    Rejection(index, ev.id, "bad_signature", "signature does not verify")
                )
                _reject_rest(report, fresh[pos + 1 :], "it follows a rejected event")
                break
            await keep_evidence(log, conn, plan_no, dev_no, ev, "fork", report, index)
            frozen = await freeze(log, conn, plan_no, dev_no, seq, "fork", frozen)
            continue
        run.append((index, ev))
        expected_seq, expected_prev = seq + 1, ev.id
    if run:
        rows.extend(await _store_run(log, conn, plan_no, dev_no, run, head_id, head_hlc, report))
    return rows


async def _store_run(
    log: EventLog,
    conn: aiosqlite.Connection,
    plan_no: int,
    dev_no: int,
    run: list[tuple[int, Event]],
    head_id: bytes,
    head_hlc: int,
    report: IngestReport,
    good: int | None = None,
) -> list[Row]:
    """The rows of a linked run that extends the chain: its authentic
    prefix (fast path: the newest signature; `good` if the caller knows it)
    is accepted, the rest rejected."""
    events = [ev for _, ev in run]
    if good is None:
        good = authentic_prefix(events, head_id)
    authentic = events[:good]
    report.accepted.extend(authentic)
    rows = await log.stored_rows(plan_no, dev_no, authentic)
    report.rows.extend(rows)
    last_hlc = head_hlc
    for ev in authentic:
        hlc = ev.env.hlc
        if hlc <= last_hlc:
            await mark_unordered(conn, plan_no, dev_no)
            break
        last_hlc = hlc
    for index, ev in run[good:]:
        report.rejected.append(
            Rejection(index, ev.id, "bad_signature", "signature does not verify")
        )
    return rows


async def freeze(
    log: EventLog,
    conn: aiosqlite.Connection,
    plan_no: int,
    dev_no: int,
    seq: int,
    reason: str,
    frozen: int | None,
) -> int:
    if frozen is not None:
        return frozen
    await conn.execute(
        "INSERT OR IGNORE INTO frozen_chains(plan_no, device_no, at_seq, reason, since) "
        "VALUES (?,?,?,?,?)",
        (plan_no, dev_no, seq, reason, log._now_ms()),
    )
    return seq


async def keep_evidence(
    log: EventLog,
    conn: aiosqlite.Connection,
    plan_no: int,
    dev_no: int,
    ev: Event,
    reason: str,
    report: IngestReport,
    index: int,
) -> None:
    detail = {
        "fork": f"a different event for seq {ev.env.seq} or a broken prev link",
        "frozen": "the author's chain is frozen after a fork; quarantined",
        "revoked": "written after the author's membership was revoked; quarantined",
    }[reason]
    cur = await conn.execute(
        "INSERT OR IGNORE INTO evidence(plan_no, device_no, seq, reason, detail, raw, received)"
        " VALUES (?,?,?,?,?,?,?)",
        (plan_no, dev_no, ev.env.seq, reason, detail, ev.raw, log._now_ms()),
    )
    if cur.rowcount:
        report.evidence.append(Rejection(index, ev.id, reason, detail))
    else:
        report.duplicates += 1


async def mark_unordered(conn: aiosqlite.Connection, plan_no: int, dev_no: int) -> None:
    """Record that a chain's HLC did not strictly grow (see core.store.schema)."""
    await conn.execute(
        "INSERT OR IGNORE INTO unordered_chains(plan_no, device_no) VALUES (?,?)",
        (plan_no, dev_no),
    )


def _reject_rest(report: IngestReport, items: list[tuple[int, Event]], why: str) -> None:
    """Report the rest of a chain's batch as `gap`: the sender still has them."""
    for index, ev in items:
        report.rejected.append(Rejection(index, ev.id, "gap", f"seq {ev.env.seq}: {why}"))
