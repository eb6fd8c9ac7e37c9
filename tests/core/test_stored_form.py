"""The packed stored form (core.store.rows): lossless, whole where it must be,
migrated from schema 1, and time travel over chains whose clock ran back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest

from core.events import bodies as b
from core.events.envelope import Envelope, Event, decode_stored, open_event
from core.events.ids import ZERO_HASH, new_uuid7
from core.identity.keyfile import DeviceKey
from core.projections.plan_state import canonical_bytes, project
from core.projections.plan_view import view
from core.store import time_travel
from core.store.event_log import EventLog
from core.store.rows import PREFIX_LEN, read_events
from core.store.time_travel import key_at_time, key_of, state_as_of
from core.store.verify_log import verify_log
from tests.core.replica import Replica

WS = new_uuid7()


def _notes(n: int, tag: str = "") -> list[b.Body]:
    return [
        b.NoteWritten(note=new_uuid7(), target=None, text=f"notat {tag}{i} – Guovdageaidnu ŋ")
        for i in range(n)
    ]


def _seal_by_hand(
    key: DeviceKey, plan: bytes, seq: int, prev: bytes, hlc: int, body: b.Body, *, wide: bool
) -> Event:
    """A validly signed event, its seq encoded as msgpack uint32 if `wide`
    (legal msgpack that msgspec would never write)."""
    body_bytes = msgspec.msgpack.encode(body)
    env = Envelope(
        1, WS, plan, key.public_key, seq, prev, hlc, "NoteWritten", msgspec.Raw(body_bytes)
    )
    payload = msgspec.msgpack.encode(env)
    if wide:
        minimal = msgspec.msgpack.encode(seq)
        at = PREFIX_LEN
        assert payload[at : at + len(minimal)] == minimal
        payload = payload[:at] + b"\xce" + seq.to_bytes(4, "big") + payload[at + len(minimal) :]
    return open_event(payload + key.sign(payload))


async def test_rows_are_packed_and_give_the_signed_bytes_back(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    plan = new_uuid7()
    dev = Replica(WS, plan)
    made = dev.make(b.PlanCreated(title="Kautokeino", municipality="Guovdageaidnu"), *_notes(30))
    async with await EventLog.open(path, workspace=WS) as log:
        await log.ingest([e.raw for e in made])
        assert [raw for _, raw in await log.raw_events(plan)] == [e.raw for e in made]
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT type_no, length(data) FROM events ORDER BY rx").fetchall()
    assert all(t is not None for t, _ in rows)
    # Stored: prev + body + signature; the 72-byte prefix, seq, hlc and the
    # type tag live in the columns.
    for (_, stored), ev in zip(rows, made, strict=True):
        assert stored == 32 + len(ev.env.body) + 64 < len(ev.raw) - PREFIX_LEN
    assert [e.raw for e in read_events(conn)] == [e.raw for e in made]
    conn.close()


async def test_an_unusually_encoded_event_is_stored_whole(tmp_path: Path) -> None:
    """Valid msgpack that splicing would not reproduce byte for byte (a wide
    seq) is kept as it came: its id, signature and links stay as signed."""
    plan = new_uuid7()
    key = DeviceKey.generate()
    first = _seal_by_hand(key, plan, 1, ZERO_HASH, 1 << 40, _notes(1)[0], wide=False)
    odd = _seal_by_hand(key, plan, 2, first.id, (1 << 40) + 1, _notes(1)[0], wide=True)
    third = _seal_by_hand(key, plan, 3, odd.id, (1 << 40) + 2, _notes(1)[0], wide=False)
    assert odd.raw[PREFIX_LEN] == 0xCE
    path = tmp_path / "a.db"
    async with await EventLog.open(path, workspace=WS) as log:
        report = await log.ingest([first.raw, odd.raw, third.raw])
        assert len(report.accepted) == 3 and not report.rejected
        assert [raw for _, raw in await log.raw_events(plan)] == [first.raw, odd.raw, third.raw]
        # Packed rows decode from their columns, whole ones from their bytes:
        # both equal a decode of the signed bytes.
        decoded = [ev for _, ev in await log.decoded_events(plan)]
        assert decoded == [decode_stored(e.raw) for e in (first, odd, third)]
        assert [bytes(e.env.body) for e in decoded] == [
            bytes(decode_stored(e.raw).env.body) for e in (first, odd, third)
        ]
        assert (await verify_log(log, full=True)).ok
        again = await log.ingest([odd.raw])
        assert again.duplicates == 1
    conn = sqlite3.connect(path)
    kinds = conn.execute("SELECT seq, type_no IS NULL, data FROM events ORDER BY seq").fetchall()
    conn.close()
    assert [(s, whole) for s, whole, _ in kinds] == [(1, 0), (2, 1), (3, 0)]
    assert bytes(kinds[1][2]) == odd.raw


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE plans (plan_no INTEGER PRIMARY KEY, plan_id BLOB NOT NULL UNIQUE);
CREATE TABLE devices (device_no INTEGER PRIMARY KEY, device_key BLOB NOT NULL UNIQUE);
CREATE TABLE events (
    rx INTEGER PRIMARY KEY, plan_no INTEGER NOT NULL REFERENCES plans(plan_no),
    device_no INTEGER NOT NULL REFERENCES devices(device_no),
    seq INTEGER NOT NULL CHECK (seq >= 1), hlc INTEGER NOT NULL, raw BLOB NOT NULL,
    UNIQUE (plan_no, device_no, seq));
CREATE INDEX events_by_time ON events (plan_no, hlc);
CREATE TRIGGER events_append_only_u BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER events_append_only_d BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
"""


async def test_a_schema_1_log_is_migrated_in_place(tmp_path: Path) -> None:
    plan = new_uuid7()
    anne, bjorn = Replica(WS, plan), Replica(WS, plan)
    made = anne.make(b.PlanCreated(title="Aure", municipality="Aure"), *_notes(20, "a"))
    made += bjorn.make(*_notes(15, "b"))
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    conn.execute("INSERT INTO meta VALUES ('workspace', ?), ('schema_version', '1')", (WS,))
    conn.execute("INSERT INTO plans VALUES (1, ?)", (plan,))
    conn.executemany("INSERT INTO devices VALUES (?, ?)", [(1, anne.device), (2, bjorn.device)])
    conn.executemany(
        "INSERT INTO events(plan_no, device_no, seq, hlc, raw) VALUES (1,?,?,?,?)",
        [(1 if e.author == anne.device else 2, e.seq, e.hlc, e.raw) for e in made],
    )
    conn.commit()
    conn.close()

    async with await EventLog.open(path) as log:
        assert [raw for _, raw in await log.raw_events(plan)] == [e.raw for e in made]
        assert (await verify_log(log, full=True)).ok
        state = await log.load_state(plan)
        assert canonical_bytes(state) == canonical_bytes(project(plan, made))
        more = anne.make(*_notes(2, "c"))
        assert len((await log.ingest([e.raw for e in more])).accepted) == 2
    conn = sqlite3.connect(path)
    try:
        version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        assert bytes(version[0]) == b"2"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "events_v1" not in tables and "events_by_time" not in tables
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE events SET hlc = 0")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM events")
    finally:
        conn.close()


@pytest.mark.parametrize("step", [2_000, 2])
async def test_time_travel_reads_a_chain_whose_clock_ran_back_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: int
) -> None:
    """Another implementation's chain whose HLC falls back: listed as
    unordered, and as-of at every point (from no checkpoint, or from one
    every two events) still equals a fold of exactly the events up to it."""
    monkeypatch.setattr(time_travel, "TIMELINE_STEP", step)
    plan = new_uuid7()
    key = DeviceKey.generate()
    clocks = [500, 900, 700, 1_000, 600, 1_200]  # (ms) not monotonic
    events, prev = [], ZERO_HASH
    for seq, ms in enumerate(clocks, start=1):
        ev = _seal_by_hand(key, plan, seq, prev, ms << 16, _notes(1, str(seq))[0], wide=False)
        events.append(ev)
        prev = ev.id
    honest = Replica(WS, plan, wall_ms=0)
    honest.wall_ms = 550
    events += honest.make(*_notes(6, "h"))
    path = tmp_path / "a.db"
    async with await EventLog.open(path, workspace=WS) as log:
        await log.ingest([e.raw for e in events])
        unordered = await log.fetch("SELECT count(*) FROM unordered_chains")
        assert unordered == [(1,)]
        for ev in events:
            for limit in (key_of(ev), key_at_time(ev.env.hlc)):
                wanted = [e for e in events if key_of(e) <= limit]
                got = await state_as_of(log, plan, limit)
                assert view(got) == view(project(plan, wanted)), (ev.env.seq, limit)


async def test_events_are_found_by_id_prefix_through_a_cache_verify_checks(
    tmp_path: Path,
) -> None:
    plan = new_uuid7()
    dev = Replica(WS, plan)
    first = dev.make(b.PlanCreated(title="Kárášjohka", municipality="Karasjok"), *_notes(40))
    path = tmp_path / "a.db"
    async with await EventLog.open(path, workspace=WS) as log:
        await log.ingest([e.raw for e in first])
        for ev in (first[0], first[17], first[-1]):
            for n in (4, 9, 16, 17, 64):
                found = await log.events_with_id_prefix(plan, ev.id.hex()[:n].upper())
                assert ev in found and all(e.id.hex().startswith(ev.id.hex()[:n]) for e in found)
        # Events that arrive later are indexed on the next lookup.
        later = dev.make(*_notes(5, "later"))
        await log.ingest([e.raw for e in later])
        assert await log.events_with_id_prefix(plan, later[-1].id.hex()) == [later[-1]]
        assert await log.events_with_id_prefix(new_uuid7(), later[-1].id.hex()) == []
        every = await log.events_with_id_prefix(plan, "0")
        every += [e for d in "123456789abcdef" for e in await log.events_with_id_prefix(plan, d)]
        assert sorted(e.id for e in every) == sorted(e.id for e in first + later)
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM event_ids WHERE rx = 18")
    conn.commit()
    conn.close()
    async with await EventLog.open(path, workspace=WS) as log:
        report = await verify_log(log)
        assert any("event id cache" in p for p in report.store_problems)
        assert await log.events_with_id_prefix(plan, first[17].id.hex()) == [first[17]]
        assert (await verify_log(log)).ok


def test_pack_accepts_exactly_what_splices_back_to_the_signed_bytes() -> None:
    """`pack` checks the layout without splicing: for every one-byte change
    of an event, and for cut or lengthened bytes, it packs exactly when
    splicing the packed form would give those bytes back."""
    from core.events.envelope import seal
    from core.store.rows import pack as pack_row
    from core.store.rows import prefix, splice, type_encoding

    key = DeviceKey.generate()
    ws, plan = new_uuid7(), new_uuid7()
    ev = seal(
        key, workspace=ws, plan=plan, seq=300, prev=b"\x07" * 32, hlc=2**40, body=_notes(1)[0]
    )
    env = ev.env
    head = prefix(ws, plan, key.public_key)
    variants = [ev.raw, ev.raw[:-1], ev.raw + b"\x00"]
    for i in range(len(ev.raw)):
        variants.append(ev.raw[:i] + bytes([ev.raw[i] ^ 0x01]) + ev.raw[i + 1 :])
    packed = 0
    for raw in variants:
        data = pack_row(raw, head, env.seq, env.prev, env.hlc, env.type, len(env.body))
        # The splice-and-compare test `pack` used to run:
        old = env.prev + raw[len(raw) - 64 - len(env.body) :]
        fits = splice(head, env.seq, env.hlc, type_encoding(env.type), old) == raw
        assert (data is not None) == fits, raw
        if data is not None:
            packed += 1
            assert splice(head, env.seq, env.hlc, type_encoding(env.type), data) == raw
    assert packed > 64  # the signature and body bytes change freely


def test_pack_events_packs_a_chain_as_pack_does_event_by_event() -> None:
    """`pack_events` (one comparison for a chain's events) gives exactly
    what `pack` gives for each: for a chain of canonical events, and for
    the same chain with one event re-encoded another valid way (seq as
    int16 instead of uint16: same value, same length) or changed in any one
    byte that still decodes, at the start, in the middle or at the end."""
    from core.events.envelope import EventError, seal
    from core.store.rows import pack as pack_row
    from core.store.rows import pack_events, prefix

    key = DeviceKey.generate()
    ws, plan = new_uuid7(), new_uuid7()
    chain, prev = [], ZERO_HASH
    for seq in range(299, 304):
        ev = seal(
            key, workspace=ws, plan=plan, seq=seq, prev=prev, hlc=2**40 + seq, body=_notes(1)[0]
        )
        chain.append(ev)
        prev = ev.id
    head = prefix(ws, plan, key.public_key)

    def one_by_one(events: list[Event]) -> list[bytes | None]:
        return [
            pack_row(e.raw, head, e.env.seq, e.env.prev, e.env.hlc, e.env.type, len(e.env.body))
            for e in events
        ]

    assert pack_events(head, chain) == one_by_one(chain)
    assert None not in pack_events(head, chain)
    other = bytearray(chain[2].raw)  # seq 301 = 0xcd 0x01 0x2d, as int16: 0xd1 0x01 0x2d
    at = PREFIX_LEN
    assert other[at : at + 3] == b"\xcd\x01\x2d"
    other[at] = 0xD1
    variants = [open_event(bytes(other), verify=False, strict=False)]
    for i in range(len(chain[1].raw)):
        raw = chain[1].raw[:i] + bytes([chain[1].raw[i] ^ 0x01]) + chain[1].raw[i + 1 :]
        try:
            variants.append(open_event(raw, verify=False, strict=False))
        except EventError:
            continue
    assert len(variants) > 64
    for variant in variants:
        for spot in (0, 2, 4):
            events = list(chain)
            events[spot] = variant
            assert pack_events(head, events) == one_by_one(events), variant.raw
    assert pack_events(head, variants[:1]) == [None]
