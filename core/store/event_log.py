"""The local event log: append, ingest, vectors, checkpoints (aiosqlite).

Writes run in `BEGIN IMMEDIATE` transactions under one asyncio lock, so a
transaction never interleaves with another on the same connection and the
write lock is taken up front (no upgrade deadlocks between processes). The
client log runs with `synchronous=FULL`: a committed event survives power
loss.

Ingest rules (DESIGN.md, "Local store"; the per-chain work is in
`core.store.ingest`):

* an identical event already stored is a duplicate: a no-op, counted;
* a validly signed different event for a stored (plan, device, seq), two of
  them in one batch, or one whose `prev` is not the id of the stored event
  before it, is a **fork**: it is kept in `evidence`, the chain is frozen at
  that seq (its linked prefix stays), and it is reported;
* validly signed events for a frozen chain are kept in `evidence`
  (quarantined), not applied; forgeries are rejected (`bad_signature`);
* an event whose seq leaves a gap is rejected (`gap`): the sender still has
  it and will send the missing ones first;
* signatures: fast path per linked segment (`core.events.verify`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

from core.events.bodies import Body
from core.events.envelope import (
    Event,
    EventError,
    Signer,
    event_id,
    open_events,
    seal,
    signature_ok,
)
from core.events.hlc import HybridClock, system_ms
from core.events.ids import ZERO_HASH
from core.projections.plan_state import (
    PlanState,
)
from core.store import checkpoints, id_index
from core.store.errors import StoreError
from core.store.ingest import ingest_chain, keep_evidence, mark_unordered
from core.store.ingest_report import IngestReport, Rejection
from core.store.log_reads import LogReads
from core.store.migrate import is_legacy, migrate_v1
from core.store.rows import ROW_COLUMNS, Numbers, pack_events, type_encoding
from core.store.schema import PRAGMAS, SCHEMA, SCHEMA_VERSION

T = TypeVar("T")
Statement = tuple[str, tuple[object, ...]]  # SQL and its parameters
Row = tuple[int, int, int, int, int | None, bytes]  # the columns ROW_COLUMNS names


class EventLog(LogReads):
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
        self._commit: asyncio.Future[None] | None = None  # a COMMIT still running (`settle`)
        self._plan_nos: dict[bytes, int] = {}
        self._device_nos: dict[bytes, int] = {}
        self._type_nos: dict[str, int] = {}
        # Number -> id maps live in `numbers`, which splices stored rows back
        # into signed bytes (core.store.rows).
        self.numbers = Numbers(workspace)
        self._device_keys = self.numbers.devices
        self._plan_ids = self.numbers.plans

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
            legacy = await is_legacy(conn)
            if legacy:
                await conn.execute("ALTER TABLE events RENAME TO events_v1")
                for old in ("events_append_only_u", "events_append_only_d"):
                    await conn.execute(f"DROP TRIGGER IF EXISTS {old}")
                await conn.execute("DROP INDEX IF EXISTS events_by_time")
            for statement in _split_sql(SCHEMA):
                await conn.execute(statement)
            stored = await _meta(conn, "workspace")
            if legacy and stored is not None:
                await migrate_v1(conn, stored)
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
        """Close the file, after a COMMIT still running (`settle`): raises
        what that COMMIT raised, if anything."""
        try:
            await self.settle()
        finally:
            await self._conn.close()

    async def settle(self) -> None:
        """Wait for the COMMIT of a transaction written with `commit_later`
        (see `ingest_batches`), and raise what it raised; its events are
        durable once this returns. Every write transaction settles first."""
        commit = self._commit
        if commit is None:
            return
        try:
            await asyncio.shield(commit)
        finally:
            if self._commit is commit and commit.done():
                self._commit = None

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(db, *args)` on the connection's own thread, `db` being the
        sqlite3 connection: several statements for one aiosqlite hop (each
        hop is a thread switch, and on a busy machine a wait for the
        scheduler). `fn` must not block on the event loop. aiosqlite has no
        public call for this; `_execute` is its queue (pinned < 0.23)."""
        conn = self._conn
        return cast(T, await conn._execute(fn, conn._conn, *args))  # type: ignore[no-untyped-call]

    async def __aenter__(self) -> EventLog:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _load_numbers(self) -> None:
        async with self._conn.execute("SELECT type_no, type FROM types") as cur:
            for no, tag in await cur.fetchall():
                self._type_nos[tag] = no
                self.numbers.types[no] = type_encoding(tag)
                self.numbers.tags[no] = tag
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
    async def _tx(self, *, commit_later: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction under the lock. With `commit_later`, the
        block's end only queues the COMMIT on the connection's thread and
        returns; the lock is held until the COMMIT is done (`_finish`), and
        `settle` (which every transaction calls first) waits for it."""
        await self.settle()
        async with contextlib.AsyncExitStack() as stack:
            await self._lock.acquire()
            stack.callback(self._lock.release)
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                await self._conn.execute("ROLLBACK")
                await self._load_numbers_after_rollback()
                raise
            if commit_later:
                stack.pop_all()  # `_finish` releases the lock
                self._commit = asyncio.ensure_future(self._finish())
            else:
                await self._conn.execute("COMMIT")

    async def _finish(self) -> None:
        """The COMMIT of a `commit_later` transaction, holding its lock; if
        it fails, the transaction is rolled back and the error kept for
        `settle`."""
        try:
            await self._conn.execute("COMMIT")
        except Exception:
            with contextlib.suppress(Exception):
                await self._conn.execute("ROLLBACK")
                await self._load_numbers_after_rollback()
            raise
        finally:
            self._lock.release()

    async def _load_numbers_after_rollback(self) -> None:
        self._plan_nos.clear()
        self._plan_ids.clear()
        self._device_nos.clear()
        self._device_keys.clear()
        self._type_nos.clear()
        self.numbers.types.clear()
        self.numbers.tags.clear()
        self.numbers.heads.clear()
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

    async def _type_no(self, tag: str) -> int:
        """The type tag's number, adding it if needed (inside a write transaction)."""
        no = self._type_nos.get(tag)
        if no is None:
            no = await self._number("types", "type_no", "type", tag)
            self._type_nos[tag] = no
            self.numbers.types[no] = type_encoding(tag)
            self.numbers.tags[no] = tag
        return no

    async def stored_row(self, plan_no: int, dev_no: int, ev: Event) -> Row:
        """The `events` row of `ev` (inside a write transaction): packed if
        splicing gives its signed bytes back exactly, else whole."""
        return (await self.stored_rows(plan_no, dev_no, [ev]))[0]

    async def stored_rows(self, plan_no: int, dev_no: int, events: Iterable[Event]) -> list[Row]:
        """`stored_row` of each of one chain's events; a type tag is numbered
        (a write) only the first time it is met."""
        events = list(events)
        type_nos = self._type_nos
        rows: list[Row] = []
        packed = pack_events(self.numbers.head(plan_no, dev_no), events)
        for ev, data in zip(events, packed, strict=True):
            env = ev.env
            if data is None:
                rows.append((plan_no, dev_no, env.seq, env.hlc, None, ev.raw))
                continue
            type_no = type_nos.get(env.type)
            if type_no is None:
                type_no = await self._type_no(env.type)
            rows.append((plan_no, dev_no, env.seq, env.hlc, type_no, data))
        return rows

    async def _number(self, table: str, no_col: str, id_col: str, value: bytes | str) -> int:
        await self._conn.execute(f"INSERT OR IGNORE INTO {table}({id_col}) VALUES (?)", (value,))
        rows = await self._conn.execute_fetchall(
            f"SELECT {no_col} FROM {table} WHERE {id_col}=?", (value,)
        )
        return int(next(iter(rows))[0])

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
                f"{ROW_COLUMNS} FROM (SELECT 1) LEFT JOIN (SELECT {ROW_COLUMNS} FROM events "
                "WHERE plan_no=?1 AND device_no=?2 ORDER BY seq DESC LIMIT 1)",
                (plan_no, dev_no),
            )
            frozen, *head = next(iter(rows))
            if frozen is not None:
                raise StoreError("this device's chain for the plan is frozen after a fork")
            seq, prev, head_hlc = 0, ZERO_HASH, -1
            if head[2] is not None:
                seq, head_hlc = int(head[2]), int(head[3])
                prev = event_id((await self.raws([head]))[0])
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
            await conn.executemany(INSERT_EVENT, await self.stored_rows(plan_no, dev_no, events))
            if events[0].env.hlc <= head_hlc:  # a clock moved back (an edited store?)
                await mark_unordered(conn, plan_no, dev_no)
            await _forget_timeline_after(conn, plan_no, events[0].env.hlc)
            await _set_meta(conn, "clock", self.clock.last.to_bytes(8, "big"))
        return events

    async def ingest(
        self,
        raws: Iterable[bytes],
        then: Callable[[IngestReport], Sequence[Statement]] | None = None,
    ) -> IngestReport:
        """Verify and apply events from elsewhere (a peer, a bundle, a server).

        Never raises for bad input: every event ends up accepted, counted as
        a duplicate, kept as evidence, or rejected with a reason. `then`, if
        given, returns bookkeeping statements (a sync cursor) to commit in
        the same transaction as the events, knowing the report: one commit,
        and the bookkeeping can never run ahead of the events.
        """
        report = IngestReport()
        opened = self.open_for_ingest(raws, report)
        if not opened and then is None:
            return report
        return (await self.ingest_batches([(opened, report)], then=then))[0]

    def open_for_ingest(
        self, raws: Iterable[bytes], report: IngestReport
    ) -> list[tuple[int, Event]]:
        """Open each event strictly (no signature check yet): (index, event)
        of those that open and are of this workspace; the others are
        reported rejected."""
        opened: list[tuple[int, Event]] = []
        workspace = self.workspace
        for index, ev in enumerate(open_events(raws)):
            if isinstance(ev, EventError):
                report.rejected.append(Rejection(index, None, ev.reason, str(ev)))
            elif ev.env.workspace != workspace:
                report.rejected.append(
                    Rejection(index, ev.id, "wrong_workspace", "event of another workspace")
                )
            else:
                opened.append((index, ev))
        return opened

    async def ingest_batches(
        self,
        batches: Sequence[tuple[Sequence[tuple[int, Event]], IngestReport]],
        then: Callable[[IngestReport], Sequence[Statement]] | None = None,
        *,
        commit_later: bool = False,
    ) -> list[IngestReport]:
        """Ingest several batches of opened events (`open_for_ingest`) in
        ONE transaction (group commit: one BEGIN, one fsync), each with its
        own report, in order: a batch sees what the batches before it
        stored, exactly as separate `ingest` calls would. All or nothing: if
        anything raises, nothing of any batch is stored. `then` (see
        `ingest`) sees the last batch's report.

        With `commit_later`, it returns once the events are written and
        their COMMIT (the fsync) is queued on the connection's thread: the
        caller parses and folds what comes next meanwhile. Nothing is
        durable, nor may be acknowledged as stored, until `settle()`
        returns (the next write transaction and `close` settle too, and
        raise what the COMMIT raised; the transaction is then rolled back)."""
        async with self._tx(commit_later=commit_later) as conn:
            await self._adopt_stored_clock(conn)
            accepted: list[Event] = []
            for opened, report in batches:
                chains: dict[tuple[bytes, bytes], list[tuple[int, Event]]] = defaultdict(list)
                for index, ev in opened:
                    chains[(ev.env.plan, ev.env.author)].append((index, ev))
                rows = []
                for (plan, author), items in chains.items():
                    rows.extend(await ingest_chain(self, conn, plan, author, items, report))
                if rows:
                    await conn.executemany(INSERT_EVENT, rows)
                    oldest: dict[int, int] = {}
                    for plan_no, _, _, hlc, _, _ in rows:
                        oldest[plan_no] = min(hlc, oldest.get(plan_no, hlc))
                    for plan_no, hlc in oldest.items():
                        await _forget_timeline_after(conn, plan_no, hlc)
                accepted.extend(report.accepted)
            now = self._now_ms()
            # Observing every timestamp leaves the clock at the newest one it
            # adopts: try them newest first, and stop at the first adopted
            # (nearly always the newest of all: one observation).
            hlcs = [ev.env.hlc for ev in accepted]
            if hlcs and not self.clock.observe(max(hlcs), now):
                for hlc in sorted(set(hlcs), reverse=True):
                    if self.clock.observe(hlc, now):
                        break
            await _set_meta(conn, "clock", self.clock.last.to_bytes(8, "big"))
            if then is not None and batches:
                for sql, params in then(batches[-1][1]):
                    await conn.execute(sql, params)
        return [report for _, report in batches]

    async def record(self, statements: Sequence[Statement]) -> None:
        """Commit bookkeeping statements (sync cursors, acks) in one transaction.
        Only the derived and bookkeeping tables accept them: triggers keep
        events and evidence append-only."""
        async with self._tx() as conn:
            for sql, params in statements:
                await conn.execute(sql, params)

    async def quarantine(self, events: Iterable[Event], reason: str) -> IngestReport:
        """Keep authentic events as evidence without applying them (a revoked
        author's later events); forgeries are rejected, never kept."""
        report = IngestReport()
        async with self._tx() as conn:
            for index, ev in enumerate(events):
                if not signature_ok(ev.raw, ev.env.author):
                    report.rejected.append(
                        Rejection(index, ev.id, "bad_signature", "signature does not verify")
                    )
                    continue
                plan_no = await self._plan_no(ev.env.plan)
                dev_no = await self._device_no(ev.env.author)
                await keep_evidence(self, conn, plan_no, dev_no, ev, reason, report, index)
        return report

    async def fetch(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """A read-only query on the bookkeeping tables (sync state)."""
        rows = await self._conn.execute_fetchall(sql, params)
        return [tuple(r) for r in rows]

    async def top_rx(self) -> int:
        """The highest receive position in the log (0 when empty)."""
        rows = await self._conn.execute_fetchall("SELECT max(rx) FROM events")
        value = next(iter(rows))[0]
        return int(value) if value is not None else 0

    async def since(self, after_rx: int) -> list[tuple[int, bytes, bytes]]:
        """(rx, plan, raw) of every event received after `after_rx`, in order."""
        rows = list(
            await self._conn.execute_fetchall(
                f"SELECT rx, {ROW_COLUMNS} FROM events WHERE rx>? ORDER BY rx", (after_rx,)
            )
        )
        raws = await self.raws(row[1:] for row in rows)
        plan_ids = self._plan_ids
        return [(int(row[0]), plan_ids[row[1]], raw) for row, raw in zip(rows, raws, strict=True)]

    async def _adopt_stored_clock(self, conn: aiosqlite.Connection) -> None:
        """Another process sharing this file may have moved the clock on: never
        issue or store a timestamp below what the file already holds."""
        stored = await _meta(conn, "clock")
        if stored:
            self.clock.last = max(self.clock.last, int.from_bytes(stored, "big"))

    async def events_with_id_prefix(self, plan: bytes, prefix: str) -> list[Event]:
        """`plan`'s events whose id (hex) starts with `prefix`, found through
        the id cache (`core.store.id_index`)."""
        return await id_index.events_with_id_prefix(self, plan, prefix)

    # --- projections and checkpoints (core.store.checkpoints) ---------------------------

    async def rebuild_state(self, plan: bytes, *, verify: bool = False) -> PlanState:
        """Fold the plan from zero, ignoring checkpoints; with `verify`,
        check every chain on the way (links from seq 1 and the newest
        signature: the fast path) and raise `StoreError` naming what fails."""
        return await checkpoints.rebuild_state(self, plan, verify=verify)

    async def load_state(self, plan: bytes, *, checkpoint: bool = True) -> PlanState:
        """The plan's current state: latest checkpoint plus the events after it."""
        return await checkpoints.load_state(self, plan, checkpoint=checkpoint)


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


INSERT_EVENT = "INSERT INTO events(" + ROW_COLUMNS + ") VALUES (?,?,?,?,?,?)"


async def _forget_timeline_after(conn: aiosqlite.Connection, plan_no: int, hlc: int) -> None:
    """Drop time-travel checkpoints that a newly stored event at `hlc` precedes."""
    await conn.execute(
        "DELETE FROM timeline_checkpoints WHERE plan_no=? AND hlc>=?", (plan_no, hlc)
    )


async def _meta(conn: aiosqlite.Connection, key: str) -> bytes | None:
    # execute_fetchall: one thread hop (execute + fetchone + close are three).
    rows = list(await conn.execute_fetchall("SELECT value FROM meta WHERE key=?", (key,)))
    return bytes(rows[0][0]) if rows else None


async def _set_meta(conn: aiosqlite.Connection, key: str, value: bytes) -> None:
    await conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?,?)", (key, value))
