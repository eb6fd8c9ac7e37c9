"""Read what an export is derived from out of a log, as one consistent snapshot."""

from __future__ import annotations

from core.research.export import ReceivedTimes, Source
from core.store.event_log import EventLog
from core.store.rows import ROW_COLUMNS


class Snapshot(Source):
    """A `Source` plus where in this log it was cut."""

    cutoff_rx: int = 0
    cutoff_acks: int = 0  # the sync_acks rowid read up to


async def read_snapshot(
    log: EventLog,
    plans: list[bytes],
    admins: list[bytes],
    *,
    cutoff_rx: int | None = None,
    cutoff_acks: int | None = None,
) -> Snapshot:
    """The signed bytes of every event of `plans` and of the workspace's
    membership log, up to this log's receive position at the start of the
    read, in one read transaction (another process may append meanwhile).

    Chains are stored in seq order, so a receive-position cut keeps every
    chain a prefix from seq 1. Server-received times come from this
    device's sync acknowledgements (0 there means unknown and is left out).
    `cutoff_rx`, `cutoff_acks`: cut at that receive position and that
    acknowledgement rowid instead (an earlier export's, to derive it again:
    acks are only appended, so a later ack cannot change the result).
    """
    wanted = sorted(set(plans) | {log.workspace})
    plan_nos = {no: plan for plan in wanted if (no := await log._known_plan_no(plan)) is not None}
    conn = log._conn
    async with log._lock:
        await conn.execute("BEGIN")
        try:
            rows = await conn.execute_fetchall("SELECT coalesce(max(rx), 0) FROM events")
            cutoff = int(next(iter(rows))[0])
            if cutoff_rx is not None:
                cutoff = min(cutoff, cutoff_rx)
            raws: list[bytes] = []
            for plan_no in sorted(plan_nos):
                rows = await conn.execute_fetchall(
                    f"SELECT {ROW_COLUMNS} FROM events WHERE plan_no=? AND rx<=? ORDER BY rx",
                    (plan_no, cutoff),
                )
                raws.extend(await log.raws(rows))
            rows = await conn.execute_fetchall("SELECT coalesce(max(rowid), 0) FROM sync_acks")
            acks_cut = int(next(iter(rows))[0])
            if cutoff_acks is not None:
                acks_cut = min(acks_cut, cutoff_acks)
            acks = await conn.execute_fetchall(
                "SELECT plan_id, device_key, first_seq, last_seq, min(received_ms) "
                "FROM sync_acks WHERE received_ms > 0 AND rowid <= ? "
                "GROUP BY plan_id, device_key, first_seq, last_seq",
                (acks_cut,),
            )
        finally:
            await conn.execute("COMMIT")
    received: ReceivedTimes = {}
    for plan, device, first, last, ms in acks:
        if bytes(plan) not in wanted:
            continue
        for seq in range(int(first), int(last) + 1):
            key = (bytes(plan), bytes(device), seq)
            received[key] = min(int(ms), received.get(key, int(ms)))
    return Snapshot(
        workspace=log.workspace,
        admins=sorted(admins),
        raws=raws,
        received=received,
        cutoff_rx=cutoff,
        cutoff_acks=acks_cut,
    )
