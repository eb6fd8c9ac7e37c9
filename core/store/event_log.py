"""The local event log: append, ingest, vectors, checkpoints (aiosqlite).

Writes run in `BEGIN IMMEDIATE` transactions under one asyncio lock, so a
transaction never interleaves with another on the same connection and the
write lock is taken up front (no upgrade deadlocks between processes). The
client log runs with `synchronous=FULL`: a committed event survives power
loss.

Ingest rules (DESIGN.md, "Local store"):

* an identical event already stored is a duplicate: a no-op, counted;
* a different event for a stored (plan, device, seq), or one whose `prev`
  is not the id of the stored event before it, is a **fork**: it is kept in
  `evidence`, the chain is frozen, and it is reported;
* events for a frozen chain are kept in `evidence` (quarantined), not applied;
* an event whose seq leaves a gap is rejected (`gap`): the sender still has
  it and will send the missing ones first;
* signatures: fast path per linked segment (`core.events.verify`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

import aiosqlite
import msgspec

from core.events.bodies import Body
from core.events.envelope import (
    Event,
    EventError,
    Signer,
    decode_stored,
    event_id,
    open_event,
    seal,
    signature_ok,
)
from core.events.hlc import HybridClock, system_ms
from core.events.ids import ZERO_HASH
from core.events.verify import authentic_prefix
from core.projections.plan_state import (
    PlanState,
)
from core.store import checkpoints
from core.store.errors import StoreError
from core.store.schema import PRAGMAS, SCHEMA, SCHEMA_VERSION

Vector = dict[bytes, int]  # device key -> highest contiguous seq


class Rejection(msgspec.Struct, frozen=True):
    index: int  # position in the ingested batch
    event: bytes | None  # event id, if the bytes could be parsed
    reason: str  # stable code: malformed, bad_signature, fork, gap, frozen, ...
    message: str


class IngestReport(msgspec.Struct):
    accepted: list[Event] = msgspec.field(default_factory=list)
    duplicates: int = 0
    rejected: list[Rejection] = msgspec.field(default_factory=list)
    evidence: list[Rejection] = msgspec.field(default_factory=list)  # kept, not applied


class EventLog:
    """One SQLite event log. Create with `await EventLog.open(path)`."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        path: Path,
        workspace: bytes,
        clock: HybridClock,
        now_ms: Callable[[], int],
    ) -> None:
        self._conn = conn
        self.path = path
        self.workspace = workspace
        self.clock = clock
        self._now_ms = now_ms
        self._lock = asyncio.Lock()
        self._plan_nos: dict[bytes, int] = {}
        self._device_nos: dict[bytes, int] = {}
        self._device_keys: dict[int, bytes] = {}
        self._plan_ids: dict[int, bytes] = {}

    # --- opening and closing -------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        workspace: bytes | None = None,
        synchronous: str = "FULL",
        now_ms: Callable[[], int] = system_ms,
    ) -> EventLog:
        """Open (creating if needed) the log at `path`.

        A new log needs `workspace`; an existing one must match it if given.
        """
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise StoreError(f"unsupported synchronous mode {synchronous!r}")
        path = Path(path)
        conn = await aiosqlite.connect(path, isolation_level=None)
        try:
            for pragma in PRAGMAS:
                await conn.execute(pragma)
            await conn.execute(f"PRAGMA synchronous={synchronous}")
            await conn.execute("BEGIN IMMEDIATE")
            for statement in _split_sql(SCHEMA):
                await conn.execute(statement)
            stored = await _meta(conn, "workspace")
            if stored is None:
                if workspace is None:
                    raise StoreError(f"{path} is a new log and no workspace was given")
                await _set_meta(conn, "workspace", workspace)
                await _set_meta(conn, "schema_version", str(SCHEMA_VERSION).encode())
                stored = workspace
            elif workspace is not None and workspace != stored:
                raise StoreError(
                    f"{path} belongs to workspace {stored.hex()}, not {workspace.hex()}"
                )
            clock_last = await _meta(conn, "clock")
            await conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.execute("ROLLBACK")
            await conn.close()
            raise
        last = int.from_bytes(clock_last, "big") if clock_last else 0
        log = cls(conn, path, stored, HybridClock(last=last), now_ms)
        await log._load_numbers()
        if not clock_last:
            log.clock.last = await log._max_plausible_hlc()
        return log

    async def close(self) -> None:
        await self._conn.close()

    async def __aenter__(self) -> EventLog:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _load_numbers(self) -> None:
        async with self._conn.execute("SELECT plan_no, plan_id FROM plans") as cur:
            for no, pid in await cur.fetchall():
                self._plan_nos[bytes(pid)] = no
                self._plan_ids[no] = bytes(pid)
        async with self._conn.execute("SELECT device_no, device_key FROM devices") as cur:
            for no, key in await cur.fetchall():
                self._device_nos[bytes(key)] = no
                self._device_keys[no] = bytes(key)

    async def _max_plausible_hlc(self) -> int:
        limit = (self._now_ms() + self.clock.max_drift_ms) << 16
        async with self._conn.execute("SELECT max(hlc) FROM events WHERE hlc <= ?", (limit,)) as c:
            row = await c.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                await self._conn.execute("ROLLBACK")
                await self._load_numbers_after_rollback()
                raise
            await self._conn.execute("COMMIT")

    async def _load_numbers_after_rollback(self) -> None:
        self._plan_nos.clear()
        self._plan_ids.clear()
        self._device_nos.clear()
        self._device_keys.clear()
        await self._load_numbers()

    async def _plan_no(self, plan: bytes) -> int:
        """The plan's number, adding the plan if needed (inside a write
        transaction). Another process may have added it since we cached."""
        no = self._plan_nos.get(plan)
        if no is None:
            no = await self._number("plans", "plan_no", "plan_id", plan)
            self._plan_nos[plan] = no
            self._plan_ids[no] = plan
        return no

    async def _device_no(self, device: bytes) -> int:
        """The device's number, adding it if needed (inside a write transaction)."""
        no = self._device_nos.get(device)
        if no is None:
            no = await self._number("devices", "device_no", "device_key", device)
            self._device_nos[device] = no
            self._device_keys[no] = device
        return no

    async def _number(self, table: str, no_col: str, id_col: str, value: bytes) -> int:
        await self._conn.execute(f"INSERT OR IGNORE INTO {table}({id_col}) VALUES (?)", (value,))
        rows = await self._conn.execute_fetchall(
            f"SELECT {no_col} FROM {table} WHERE {id_col}=?", (value,)
        )
        return int(next(iter(rows))[0])

    async def _known_plan_no(self, plan: bytes) -> int | None:
        """The plan's number for reading; re-reads the tables on a miss."""
        if plan not in self._plan_nos:
            await self._load_numbers()
        return self._plan_nos.get(plan)

    async def _key_of(self, dev_no: int) -> bytes:
        if dev_no not in self._device_keys:
            await self._load_numbers()
        return self._device_keys[dev_no]

    async def _plan_of(self, plan_no: int) -> bytes:
        if plan_no not in self._plan_ids:
            await self._load_numbers()
        return self._plan_ids[plan_no]

    # --- writing ---------------------------------------------------------------------------

    async def append(self, signer: Signer, plan: bytes, bodies: Iterable[Body]) -> list[Event]:
        """Seal `bodies` as this device's next events of `plan`, durably, in one
        transaction. Returns the events (fold them into any open projection)."""
        bodies = list(bodies)
        if not bodies:
            return []
        async with self._tx() as conn:
            await self._adopt_stored_clock(conn)
            plan_no = await self._plan_no(plan)
            dev_no = await self._device_no(signer.public_key)
            # One round trip for the frozen flag and the chain head (each
            # aiosqlite call is a thread hop; execute + fetchone + close are three).
            rows = await conn.execute_fetchall(
                "SELECT (SELECT at_seq FROM frozen_chains WHERE plan_no=?1 AND device_no=?2), "
                "seq, raw FROM (SELECT 1) LEFT JOIN (SELECT seq, raw FROM events "
                "WHERE plan_no=?1 AND device_no=?2 ORDER BY seq DESC LIMIT 1)",
                (plan_no, dev_no),
            )
            frozen, head_seq, head_raw = next(iter(rows))
            if frozen is not None:
                raise StoreError("this device's chain for the plan is frozen after a fork")
            seq, prev = 0, ZERO_HASH
            if head_seq is not None:
                seq, prev = int(head_seq), event_id(bytes(head_raw))
            events = []
            for body in bodies:
                seq += 1
                ev = seal(
                    signer,
                    workspace=self.workspace,
                    plan=plan,
                    seq=seq,
                    prev=prev,
                    hlc=self.clock.now(self._now_ms()),
                    body=body,
                )
                events.append(ev)
                prev = ev.id
            await conn.executemany(
                "INSERT INTO events(plan_no, device_no, seq, hlc, raw) VALUES (?,?,?,?,?)",
                [(plan_no, dev_no, e.env.seq, e.env.hlc, e.raw) for e in events],
            )
            await _forget_timeline_after(conn, plan_no, events[0].env.hlc)
            await _set_meta(conn, "clock", self.clock.last.to_bytes(8, "big"))
        return events

    async def ingest(self, raws: Iterable[bytes]) -> IngestReport:
        """Verify and apply events from elsewhere (a peer, a bundle, a server).

        Never raises for bad input: every event ends up accepted, counted as
        a duplicate, kept as evidence, or rejected with a reason.
        """
        report = IngestReport()
        chains: dict[tuple[bytes, bytes], list[tuple[int, Event]]] = defaultdict(list)
        for index, raw in enumerate(raws):
            try:
                ev = open_event(raw, verify=False, strict=True)
            except EventError as exc:
                report.rejected.append(Rejection(index, None, exc.reason, str(exc)))
                continue
            if ev.env.workspace != self.workspace:
                report.rejected.append(
                    Rejection(index, ev.id, "wrong_workspace", "event of another workspace")
                )
                continue
            chains[(ev.env.plan, ev.env.author)].append((index, ev))
        if not chains:
            return report
        async with self._tx() as conn:
            await self._adopt_stored_clock(conn)
            rows = []
            for (plan, author), items in chains.items():
                rows.extend(await self._ingest_chain(conn, plan, author, items, report))
            if rows:
                await conn.executemany(
                    "INSERT INTO events(plan_no, device_no, seq, hlc, raw) VALUES (?,?,?,?,?)",
                    rows,
                )
                oldest: dict[int, int] = {}
                for plan_no, _, _, hlc, _ in rows:
                    oldest[plan_no] = min(hlc, oldest.get(plan_no, hlc))
                for plan_no, hlc in oldest.items():
                    await _forget_timeline_after(conn, plan_no, hlc)
            now = self._now_ms()
            for ev in report.accepted:
                self.clock.observe(ev.env.hlc, now)
            await _set_meta(conn, "clock", self.clock.last.to_bytes(8, "big"))
        return report

    async def _ingest_chain(
        self,
        conn: aiosqlite.Connection,
        plan: bytes,
        author: bytes,
        items: list[tuple[int, Event]],
        report: IngestReport,
    ) -> list[tuple[int, int, int, int, bytes]]:
        items.sort(key=lambda it: (it[1].env.seq, it[0]))
        by_seq: dict[int, set[bytes]] = defaultdict(set)
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
        plan_no = await self._plan_no(plan)
        dev_no = await self._device_no(author)
        async with conn.execute(
            "SELECT seq, raw FROM events WHERE plan_no=? AND device_no=? ORDER BY seq DESC LIMIT 1",
            (plan_no, dev_no),
        ) as cur:
            row = await cur.fetchone()
        head_seq, head_id = (int(row[0]), event_id(bytes(row[1]))) if row else (0, ZERO_HASH)
        frozen = await self._frozen_at(plan_no, dev_no)
        fresh: list[tuple[int, Event]] = []
        seen_in_batch: dict[int, bytes] = {}
        for index, ev in items:
            seq = ev.env.seq
            if seq in seen_in_batch:
                if seen_in_batch[seq] == ev.raw:
                    report.duplicates += 1
                else:  # two validly signed events for one seq in one batch: a fork
                    await self._keep_evidence(conn, plan_no, dev_no, ev, "fork", report, index)
                    frozen = await self._freeze(conn, plan_no, dev_no, seq, "fork", frozen)
                continue
            seen_in_batch[seq] = ev.raw
            if seq <= head_seq:
                async with conn.execute(
                    "SELECT raw FROM events WHERE plan_no=? AND device_no=? AND seq=?",
                    (plan_no, dev_no, seq),
                ) as cur:
                    stored = await cur.fetchone()
                if stored is not None and bytes(stored[0]) == ev.raw:
                    report.duplicates += 1
                    continue
                if not _signature_checked(ev):
                    report.rejected.append(
                        Rejection(index, ev.id, "bad_signature", "signature does not verify")
                    )
                    continue
                await self._keep_evidence(conn, plan_no, dev_no, ev, "fork", report, index)
                frozen = await self._freeze(conn, plan_no, dev_no, seq, "fork", frozen)
                continue
            fresh.append((index, ev))
        rows: list[tuple[int, int, int, int, bytes]] = []
        expected_seq, expected_prev = head_seq + 1, head_id
        run: list[tuple[int, Event]] = []
        for pos, (index, ev) in enumerate(fresh):
            seq = ev.env.seq
            if frozen is not None and seq >= frozen:
                # Quarantine only what the author really signed: forgeries must
                # not fill the evidence table or plant evidence against a device.
                if _signature_checked(ev):
                    await self._keep_evidence(conn, plan_no, dev_no, ev, "frozen", report, index)
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
                    _reject_rest(
                        report, fresh[pos:], "it follows an event that failed verification"
                    )
                    break
                if not _signature_checked(ev):
                    report.rejected.append(
                        Rejection(index, ev.id, "bad_signature", "signature does not verify")
                    )
                    _reject_rest(report, fresh[pos + 1 :], "it follows a rejected event")
                    break
                await self._keep_evidence(conn, plan_no, dev_no, ev, "fork", report, index)
                frozen = await self._freeze(conn, plan_no, dev_no, seq, "fork", frozen)
                continue
            run.append((index, ev))
            expected_seq, expected_prev = seq + 1, ev.id
        if run:
            events = [ev for _, ev in run]
            good = authentic_prefix(events, head_id)
            for _index, ev in run[:good]:
                report.accepted.append(ev)
                rows.append((plan_no, dev_no, ev.env.seq, ev.env.hlc, ev.raw))
            for index, ev in run[good:]:
                report.rejected.append(
                    Rejection(index, ev.id, "bad_signature", "signature does not verify")
                )
        return rows

    async def _adopt_stored_clock(self, conn: aiosqlite.Connection) -> None:
        """Another process sharing this file may have moved the clock on: never
        issue or store a timestamp below what the file already holds."""
        stored = await _meta(conn, "clock")
        if stored:
            self.clock.last = max(self.clock.last, int.from_bytes(stored, "big"))

    async def _frozen_at(self, plan_no: int, dev_no: int) -> int | None:
        async with self._conn.execute(
            "SELECT at_seq FROM frozen_chains WHERE plan_no=? AND device_no=?", (plan_no, dev_no)
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else None

    async def _freeze(
        self,
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
            (plan_no, dev_no, seq, reason, self._now_ms()),
        )
        return seq

    async def _keep_evidence(
        self,
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
        }[reason]
        cur = await conn.execute(
            "INSERT OR IGNORE INTO evidence(plan_no, device_no, seq, reason, detail, raw, received)"
            " VALUES (?,?,?,?,?,?,?)",
            (plan_no, dev_no, ev.env.seq, reason, detail, ev.raw, self._now_ms()),
        )
        if cur.rowcount:
            report.evidence.append(Rejection(index, ev.id, reason, detail))
        else:
            report.duplicates += 1

    # --- reading ---------------------------------------------------------------------------

    async def plans(self) -> list[tuple[bytes, int]]:
        """(plan id, event count) for every plan in the log, oldest plan first."""
        async with self._conn.execute(
            "SELECT p.plan_id, count(e.rx) FROM plans p LEFT JOIN events e USING (plan_no) "
            "GROUP BY p.plan_no ORDER BY p.plan_no"
        ) as cur:
            return [(bytes(pid), int(n)) for pid, n in await cur.fetchall() if n]

    async def vector(self, plan: bytes) -> Vector:
        """{device: highest seq} of `plan`; chains are contiguous, so this is
        also the highest contiguous seq."""
        plan_no = await self._known_plan_no(plan)
        if plan_no is None:
            return {}
        async with self._conn.execute(
            "SELECT device_no, max(seq) FROM events WHERE plan_no=? GROUP BY device_no", (plan_no,)
        ) as cur:
            rows = await cur.fetchall()
        return {await self._key_of(d): int(s) for d, s in rows}

    async def lacking(
        self, plan: bytes, theirs: Vector, *, max_count: int = 1000, max_bytes: int = 1 << 20
    ) -> AsyncIterator[list[bytes]]:
        """What the other side lacks, given its vector: batches of raw events,
        each at most `max_count` events / about `max_bytes`, oldest first per
        chain. The one query path for bundles and sync."""
        plan_no = await self._known_plan_no(plan)
        if plan_no is None:
            return
        batch: list[bytes] = []
        size = 0
        for device, ours in sorted((await self.vector(plan)).items()):
            after = theirs.get(device, 0)
            if ours <= after:
                continue
            dev_no = self._device_nos[device]
            cursor_seq = after
            while True:
                async with self._conn.execute(
                    "SELECT seq, raw FROM events WHERE plan_no=? AND device_no=? AND seq>? "
                    "ORDER BY seq LIMIT ?",
                    (plan_no, dev_no, cursor_seq, max_count),
                ) as cur:
                    rows = await cur.fetchall()
                if not rows:
                    break
                for seq, raw in rows:
                    batch.append(bytes(raw))
                    size += len(raw)
                    cursor_seq = int(seq)
                    if len(batch) >= max_count or size >= max_bytes:
                        yield batch
                        batch, size = [], 0
        if batch:
            yield batch

    async def raw_events(self, plan: bytes, after_rx: int = 0) -> list[tuple[int, bytes]]:
        """(rx, raw) of `plan`'s events in this log's receive order."""
        plan_no = await self._known_plan_no(plan)
        if plan_no is None:
            return []
        # `+plan_no`: walk the rx (rowid) range; with only events_by_time on
        # plan_no, SQLite would scan the whole plan and sort it, even for an
        # empty tail.
        rows = await self._conn.execute_fetchall(
            "SELECT rx, raw FROM events WHERE +plan_no=? AND rx>? ORDER BY rx",
            (plan_no, after_rx),
        )
        return [(int(rx), bytes(raw)) for rx, raw in rows]

    async def events_with_id_prefix(self, plan: bytes, prefix: str) -> list[Event]:
        """`plan`'s events whose id (hex) starts with `prefix`: hashes every
        stored event, decodes only the matches."""
        plan_no = await self._known_plan_no(plan)
        if plan_no is None:
            return []
        wanted = prefix.lower()
        rows = await self._conn.execute_fetchall(
            "SELECT raw FROM events WHERE +plan_no=?", (plan_no,)
        )
        return [
            decode_stored(bytes(raw)) for (raw,) in rows if event_id(raw).hex().startswith(wanted)
        ]

    async def events(self, plan: bytes) -> list[Event]:
        return [decode_stored(raw) for _, raw in await self.raw_events(plan)]

    async def chains(self) -> AsyncIterator[tuple[bytes, bytes, list[tuple[int, int, bytes]]]]:
        """Every stored chain: (plan, device, [(seq, hlc, raw)…] by seq)."""
        async with self._conn.execute(
            "SELECT plan_no, device_no FROM events GROUP BY plan_no, device_no"
        ) as cur:
            pairs = await cur.fetchall()
        for plan_no, dev_no in pairs:
            async with self._conn.execute(
                "SELECT seq, hlc, raw FROM events WHERE plan_no=? AND device_no=? ORDER BY seq",
                (plan_no, dev_no),
            ) as cur:
                rows = [(int(s), int(h), bytes(r)) for s, h, r in await cur.fetchall()]
            yield await self._plan_of(plan_no), await self._key_of(dev_no), rows

    async def evidence(self) -> list[dict[str, object]]:
        async with self._conn.execute(
            "SELECT p.plan_id, d.device_key, v.seq, v.reason, v.detail, v.raw, v.received "
            "FROM evidence v JOIN plans p USING (plan_no) JOIN devices d USING (device_no) "
            "ORDER BY v.id"
        ) as cur:
            rows = await cur.fetchall()
        return [
            {
                "plan": bytes(p),
                "device": bytes(d),
                "seq": int(s),
                "reason": r,
                "detail": det,
                "event": event_id(bytes(raw)),
                "received": int(rec),
            }
            for p, d, s, r, det, raw, rec in rows
        ]

    async def frozen_chains(self) -> list[tuple[bytes, bytes, int, str]]:
        async with self._conn.execute(
            "SELECT p.plan_id, d.device_key, f.at_seq, f.reason FROM frozen_chains f "
            "JOIN plans p USING (plan_no) JOIN devices d USING (device_no)"
        ) as cur:
            return [(bytes(p), bytes(d), int(s), r) for p, d, s, r in await cur.fetchall()]

    async def integrity_problems(self) -> list[str]:
        """SQLite's own integrity check, as a list of problems (empty: fine)."""
        async with self._conn.execute("PRAGMA integrity_check") as cur:
            rows = [r[0] for r in await cur.fetchall()]
        return [] if rows == ["ok"] else rows

    # --- projections and checkpoints (core.store.checkpoints) ---------------------------

    async def rebuild_state(self, plan: bytes) -> PlanState:
        """Fold the plan from zero, ignoring checkpoints."""
        return await checkpoints.rebuild_state(self, plan)

    async def load_state(self, plan: bytes, *, checkpoint: bool = True) -> PlanState:
        """The plan's current state: latest checkpoint plus the events after it."""
        return await checkpoints.load_state(self, plan, checkpoint=checkpoint)


def _reject_rest(report: IngestReport, items: list[tuple[int, Event]], why: str) -> None:
    """Report the rest of a chain's batch as `gap`: the sender still has them."""
    for index, ev in items:
        report.rejected.append(Rejection(index, ev.id, "gap", f"seq {ev.env.seq}: {why}"))


def _signature_checked(ev: Event) -> bool:
    return signature_ok(ev.raw, ev.env.author)


def _split_sql(script: str) -> list[str]:
    """Split the schema into statements (triggers contain inner semicolons)."""
    out, buf = [], []
    for line in script.splitlines():
        if line.strip().startswith("--") or not line.strip():
            continue
        buf.append(line)
        joined = "\n".join(buf)
        if joined.rstrip().endswith(";") and (
            "CREATE TRIGGER" not in joined or joined.rstrip().endswith("END;")
        ):
            out.append(joined)
            buf = []
    return out


async def _forget_timeline_after(conn: aiosqlite.Connection, plan_no: int, hlc: int) -> None:
    """Drop time-travel checkpoints that a newly stored event at `hlc` precedes."""
    await conn.execute(
        "DELETE FROM timeline_checkpoints WHERE plan_no=? AND hlc>=?", (plan_no, hlc)
    )


async def _meta(conn: aiosqlite.Connection, key: str) -> bytes | None:
    async with conn.execute("SELECT value FROM meta WHERE key=?", (key,)) as cur:
        row = await cur.fetchone()
    return bytes(row[0]) if row else None


async def _set_meta(conn: aiosqlite.Connection, key: str, value: bytes) -> None:
    await conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?,?)", (key, value))
