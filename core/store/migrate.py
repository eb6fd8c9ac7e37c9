"""Schema migrations of an event log, run by `EventLog.open` in its first
transaction. Schema 1 stored every event whole in a `raw` column and had a
time index; schema 2 packs rows (core.store.rows) and has none."""

from __future__ import annotations

import aiosqlite

from core.events.envelope import decode_stored
from core.store.ingest import mark_unordered
from core.store.rows import ROW_COLUMNS, Numbers, pack
from core.store.schema import SCHEMA_VERSION


async def is_legacy(conn: aiosqlite.Connection) -> bool:
    """A schema-1 log: events stored whole in a `raw` column."""
    rows = await conn.execute_fetchall("SELECT name FROM pragma_table_info('events')")
    return "raw" in {r[0] for r in rows}


async def migrate_v1(conn: aiosqlite.Connection, workspace: bytes) -> None:
    """Move a schema-1 log (renamed to `events_v1`) into the packed form, rx
    for rx, inside the caller's transaction."""
    numbers = Numbers(workspace)
    rows = await conn.execute_fetchall("SELECT plan_no, plan_id FROM plans")
    numbers.plans.update((int(n), bytes(p)) for n, p in rows)
    rows = await conn.execute_fetchall("SELECT device_no, device_key FROM devices")
    numbers.devices.update((int(n), bytes(d)) for n, d in rows)
    type_nos: dict[str, int] = {}
    chain_hlc: dict[tuple[int, int], int] = {}
    last = 0
    while True:
        rows = list(
            await conn.execute_fetchall(
                "SELECT rx, plan_no, device_no, seq, hlc, raw FROM events_v1 "
                "WHERE rx>? ORDER BY rx LIMIT 10000",
                (last,),
            )
        )
        if not rows:
            break
        out = []
        for rx, plan_no, dev_no, seq, hlc, raw in rows:
            raw = bytes(raw)
            env = decode_stored(raw).env
            tag = env.type
            if tag not in type_nos:
                await conn.execute("INSERT OR IGNORE INTO types(type) VALUES (?)", (tag,))
                found = await conn.execute_fetchall(
                    "SELECT type_no FROM types WHERE type=?", (tag,)
                )
                type_nos[tag] = int(next(iter(found))[0])
            head = numbers.head(plan_no, dev_no)
            if hlc <= chain_hlc.get((plan_no, dev_no), -1):
                await mark_unordered(conn, plan_no, dev_no)
            chain_hlc[(plan_no, dev_no)] = hlc
            data = pack(raw, head, seq, env.prev, hlc, tag, len(env.body))
            type_no = None if data is None else type_nos[tag]
            out.append((rx, plan_no, dev_no, seq, hlc, type_no, raw if data is None else data))
            last = rx
        await conn.executemany(
            "INSERT INTO events(rx, " + ROW_COLUMNS + ") VALUES (?,?,?,?,?,?,?)", out
        )
    await conn.execute("DROP TABLE events_v1")
    await conn.execute(
        "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
        (str(SCHEMA_VERSION).encode(),),
    )
