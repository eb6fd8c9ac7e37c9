"""The read side of an event log (`EventLog` inherits it): plans, vectors,
what another replica lacks, rows and events in receive order, folds of
stored rows, chains, evidence and SQLite's own integrity check. Nothing
here writes; the small-number tables are re-read when a number is missing
(another process added it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from core.events.envelope import Event, decode_stored, event_id
from core.events.verify import ChainCheck
from core.projections.plan_state import PlanState
from core.store import checkpoints
from core.store.rows import ROW_COLUMNS, Numbers

if TYPE_CHECKING:
    import aiosqlite

Vector = dict[bytes, int]  # device key -> highest contiguous seq


class LogReads:
    """Reading methods of `EventLog`; it holds the connection and numbers."""

    if TYPE_CHECKING:
        _conn: aiosqlite.Connection
        numbers: Numbers
        workspace: bytes
        _plan_ids: dict[int, bytes]
        _plan_nos: dict[bytes, int]
        _device_keys: dict[int, bytes]
        _device_nos: dict[bytes, int]

        async def _load_numbers(self) -> None: ...

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

    async def raws(self, rows: Iterable[Sequence[Any]]) -> list[bytes]:
        """The signed bytes of stored rows (the columns ROW_COLUMNS names)."""
        rows = list(rows)
        raw_of = self.numbers.raw_of
        try:
            return [raw_of(*row) for row in rows]
        except KeyError:  # a plan, device or type another process added
            await self._load_numbers()
            raw_or_data = self.numbers.raw_or_data
            return [raw_or_data(*row) for row in rows]

    # --- reading ---------------------------------------------------------------------------

    async def plans(self, *, membership: bool = False) -> list[tuple[bytes, int]]:
        """(plan id, event count) for every plan in the log, oldest plan first.
        The workspace's membership log (plan id = workspace id) is left out
        unless `membership`."""
        async with self._conn.execute(
            "SELECT p.plan_id, count(e.rx) FROM plans p LEFT JOIN events e USING (plan_no) "
            "GROUP BY p.plan_no ORDER BY p.plan_no"
        ) as cur:
            rows = [(bytes(pid), int(n)) for pid, n in await cur.fetchall() if n]
        return [r for r in rows if membership or r[0] != self.workspace]

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
        self,
        plan: bytes,
        theirs: Vector,
        *,
        max_count: int = 1000,
        max_bytes: int = 1 << 20,
        only: bytes | None = None,
    ) -> AsyncIterator[list[bytes]]:
        """What the other side lacks, given its vector: batches of raw events,
        each at most `max_count` events / about `max_bytes`, oldest first per
        chain (only the chain of device `only`, if given). The one query path
        for bundles and sync."""
        plan_no = await self._known_plan_no(plan)
        if plan_no is None:
            return
        batch: list[bytes] = []
        size = 0
        for device, ours in sorted((await self.vector(plan)).items()):
            if only is not None and device != only:
                continue
            after = theirs.get(device, 0)
            if ours <= after:
                continue
            dev_no = self._device_nos[device]
            cursor_seq = after
            while True:
                rows = list(
                    await self._conn.execute_fetchall(
                        f"SELECT {ROW_COLUMNS} FROM events WHERE plan_no=? AND device_no=? "
                        "AND seq>? ORDER BY seq LIMIT ?",
                        (plan_no, dev_no, cursor_seq, max_count),
                    )
                )
                if not rows:
                    break
                for row, raw in zip(rows, await self.raws(rows), strict=True):
                    batch.append(raw)
                    size += len(raw)
                    cursor_seq = int(row[2])
                    if len(batch) >= max_count or size >= max_bytes:
                        yield batch
                        batch, size = [], 0
        if batch:
            yield batch

    async def raw_events(
        self, plan: bytes, after_rx: int = 0, *, upto_rx: int | None = None, limit: int = -1
    ) -> list[tuple[int, bytes]]:
        """(rx, raw) of `plan`'s events in this log's receive order, after
        `after_rx` (and up to `upto_rx`), at most `limit` of them."""
        plan_no = await self._known_plan_no(plan)
        if plan_no is None:
            return []
        # `+plan_no`: walk the rx (rowid) range; with the (plan, device, seq)
        # index on plan_no, SQLite would scan the whole plan and sort it, even
        # for an empty tail.
        rows = await self._conn.execute_fetchall(
            f"SELECT rx, {ROW_COLUMNS} FROM events WHERE +plan_no=? AND rx>? AND rx<=? "
            "ORDER BY rx LIMIT ?",
            (plan_no, after_rx, upto_rx if upto_rx is not None else 2**62, limit),
        )
        raw_of = self.numbers.raw_of
        try:
            return [(rx, raw_of(p, d, s, h, t, data)) for rx, p, d, s, h, t, data in rows]
        except KeyError:  # a device or type another process added
            await self._load_numbers()
            raw_or_data = self.numbers.raw_or_data
            return [(rx, raw_or_data(p, d, s, h, t, data)) for rx, p, d, s, h, t, data in rows]

    async def decoded_events(
        self, plan: bytes, after_rx: int = 0, *, upto_rx: int | None = None
    ) -> list[tuple[int, Event]]:
        """(rx, event) of `plan`'s events in receive order after `after_rx`
        (and up to `upto_rx`): `raw_events`, decoded straight from the rows
        (`Numbers.event_of`)."""
        plan_no = await self._known_plan_no(plan)
        if plan_no is None:
            return []
        rows = await self._conn.execute_fetchall(
            f"SELECT rx, {ROW_COLUMNS} FROM events WHERE +plan_no=? AND rx>? AND rx<=? ORDER BY rx",
            (plan_no, after_rx, upto_rx if upto_rx is not None else 2**62),
        )
        try:
            event_of = self.numbers.event_of
            return [(rx, event_of(p, d, s, h, t, data)) for rx, p, d, s, h, t, data in rows]
        except KeyError:  # a device or type another process added
            await self._load_numbers()
            raws = await self.raws(row[1:] for row in rows)
            return [(row[0], decode_stored(raw)) for row, raw in zip(rows, raws, strict=True)]

    async def fold_events(
        self, state: PlanState, plan: bytes, after_rx: int = 0, check: ChainCheck | None = None
    ) -> tuple[int, int]:
        """Fold `plan`'s events after `after_rx` into `state`, in receive
        order, straight from the rows (`Numbers.fold`); returns (how many
        rows, the last rx read). What `decoded_events` + `evolve` do, with
        no event objects built for plain edits."""
        plan_no = await self._known_plan_no(plan)
        if plan_no is None:
            return 0, after_rx
        # rx last: the fold takes the rows as read (`Numbers.fold` ignores
        # trailing columns), with no copy of each; the cyclic GC paused while
        # the rows are built too (a million tuples would set it off again and
        # again over the growing list).
        with checkpoints.gc_paused():
            rows = list(
                await self._conn.execute_fetchall(
                    f"SELECT {ROW_COLUMNS}, rx FROM events WHERE +plan_no=? AND rx>? ORDER BY rx",
                    (plan_no, after_rx),
                )
            )
            if not rows:
                return 0, after_rx
            await self.fold_rows(state, rows, check)
        return len(rows), int(rows[-1][-1])

    async def fold_rows(
        self, state: PlanState, rows: Sequence[Sequence[Any]], check: ChainCheck | None = None
    ) -> None:
        """`Numbers.fold` of stored rows (`ROW_COLUMNS` first), with the cyclic
        GC paused; if another process added a device or type, the numbers are
        reloaded and the rows folded again (the fold is idempotent)."""
        with checkpoints.gc_paused():
            try:
                self.numbers.fold(state, rows, check)
            except KeyError:
                await self._load_numbers()
                if check is not None:
                    check.clear()
                self.numbers.fold(state, rows, check)

    async def events(self, plan: bytes) -> list[Event]:
        return [ev for _, ev in await self.decoded_events(plan)]

    async def chains(self) -> AsyncIterator[tuple[bytes, bytes, list[tuple[int, int, bytes]]]]:
        """Every stored chain: (plan, device, [(seq, hlc, raw)…] by seq)."""
        async with self._conn.execute(
            "SELECT plan_no, device_no FROM events GROUP BY plan_no, device_no"
        ) as cur:
            pairs = await cur.fetchall()
        for plan_no, dev_no in pairs:
            found = list(
                await self._conn.execute_fetchall(
                    f"SELECT {ROW_COLUMNS} FROM events WHERE plan_no=? AND device_no=? "
                    "ORDER BY seq",
                    (plan_no, dev_no),
                )
            )
            raws = await self.raws(found)
            rows = [(int(r[2]), int(r[3]), raw) for r, raw in zip(found, raws, strict=True)]
            # A row naming no known plan or device exists only in a damaged file:
            # report its chain under a zero id rather than crash the verifier.
            plan = self._plan_ids.get(plan_no, bytes(16))
            yield plan, self._device_keys.get(dev_no, bytes(32)), rows

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
