"""The client side of sync over the local log (no sockets).

A `ClientSession` is one connection's worth of work: it answers the
handshake (through `ClientConnection`), subscribes to every plan it holds or
may read (with its stored cursor when the server's epoch matches), ingests
what the server sends, pushes this device's events the server lacks, and
records the server's acks. The websockets shell (`tui_client.sync_engine`)
moves frames and keeps trying while the link comes and goes.

Durability: a cursor is committed in the same transaction as the events
it covers, and only if they all landed, so it is never ahead of the events
(a crash before the commit only re-fetches; duplicates are no-ops). While
a catch-up has more frames to come, a transaction's COMMIT runs on the
database thread while the session folds its events and parses the next
frames (`ingest_batches(commit_later=True)`); the next transaction waits
for it, and the end of a catch-up is not reached (nor the plan reported
caught up) before every COMMIT of it is done (`EventLog.settle`).
Consecutive catch-up frames of one plan the shell has in hand at once
(`receive_many`, at most `group_frames` of them) are stored in ONE
transaction (group commit: one BEGIN, one fsync); the cursor recorded with
them is the one the last of them with a cursor and no rejection carries,
exactly what committing them one by one would leave.

Fold along: a plan that was empty here when this session subscribed is
folded from its rows as they are stored (`IngestReport.rows`, through the
compiled fold), and at the end of its catch-up the fold is saved as the
plan's checkpoint if it covers every stored event of the plan
(`checkpoints.save_if_complete`), so the first `load_state` after a big
catch-up restores it instead of replaying the whole log. Acks are recorded in one
transaction per `acked` (server id, plan, seq range, server receive time).
A device pushes only its own chains: the server rejects anything else
(`wrong_author`), so a bundle's events reach the server with their author.
"""

from __future__ import annotations

import random
import time

import msgspec

from core.events.envelope import Signer, decode_stored
from core.projections.plan_state import PlanState
from core.store import checkpoints
from core.store.event_log import EventLog, Statement
from core.store.ingest_report import IngestReport
from core.sync.connection import ClientConnection, State
from core.sync.messages import (
    MAX_BATCH_EVENTS,
    MAX_PLANS,
    Acked,
    ClientMessage,
    Events,
    PlanWant,
    Push,
    ServerMessage,
    Subscribe,
)

PUSH_BYTES = 1 << 20


class SyncProblem(msgspec.Struct, frozen=True):
    plan: str
    seq: int
    reason: str
    message: str


class SyncStatus(msgspec.Struct):
    """What a person (or the TUI's status bar) sees of sync."""

    state: str = "offline"  # offline | connecting | syncing | up_to_date | refused | error
    pending: int = 0  # this device's events no server has acknowledged
    sent: int = 0  # events this device pushed that the server stored (or had)
    received: int = 0  # new events from the server
    rejected: list[SyncProblem] = msgspec.field(default_factory=list)
    error: str = ""
    server: str = ""
    last_synced_ms: int = 0


class ClientSession:
    """One connection's sync work, client side."""

    def __init__(
        self,
        log: EventLog,
        signer: Signer,
        status: SyncStatus | None = None,
        *,
        group_frames: int = 1,
        fold_along: bool = True,
    ) -> None:
        self.log = log
        self.group_frames = max(1, group_frames)
        self.fold_along = fold_along
        self.folds: dict[bytes, PlanState] = {}  # plan -> fold of what this catch-up stored
        self._cursor_held: set[bytes] = set()  # plans with a rejection in this connection
        self.me = signer.public_key
        self.conn = ClientConnection(signer=signer, workspace=log.workspace)
        self.status = status if status is not None else SyncStatus()
        self.catching_up: set[bytes] = set()
        self.server_has: dict[bytes, int] = {}  # plan -> this device's seq the server holds
        self._sent_upto: dict[bytes, int] = {}
        self._inflight: dict[int, list[tuple[bytes, int]]] = {}
        self._next_batch = 1
        self._subscribed = False

    # --- driving ----------------------------------------------------------------------------

    def outgoing(self) -> list[ClientMessage]:
        return self.conn.messages_to_send()

    @property
    def ready(self) -> bool:
        return self.conn.state is State.READY

    @property
    def closed(self) -> bool:
        return self.conn.state is State.CLOSED

    @property
    def idle(self) -> bool:
        """Caught up on every plan and nothing waiting for an ack."""
        return self._subscribed and not self.catching_up and not self._inflight

    async def receive(self, message: ServerMessage) -> None:
        await self.receive_many([message])

    async def receive_many(self, messages: list[ServerMessage]) -> None:
        """Take several messages received in a row: the same as `receive` of
        each in turn, except that consecutive events of one plan (up to
        `group_frames` frames) are committed in one transaction."""
        work: list[Events | Acked] = []
        for message in messages:
            self.conn.receive_message(message)
            if self.conn.refusal is not None:
                self.status.state = "refused"
                self.status.error = f"{self.conn.refusal.reason}: {self.conn.refusal.message}"
                break
            if self.conn.failure is not None:
                self.status.state = "error"
                self.status.error = f"{self.conn.failure.code}: {self.conn.failure.message}"
                break
            if self.ready and not self._subscribed:
                await self._subscribe()
            work.extend(self.conn.work())
        group: list[Events] = []
        for item in work:
            if group and (
                not isinstance(item, Events)
                or item.plan != group[0].plan
                or not group[-1].more  # the end of a catch-up is the end of a group
                or not self._storable(item)
                or len(group) >= self.group_frames
            ):
                await self._events(group)
                group = []
            if isinstance(item, Events) and self._storable(item):
                group.append(item)
            elif isinstance(item, Events):
                await self._events([item])
            else:
                await self._acked(item)
        if group:
            await self._events(group)
        if self.conn.refusal is not None or self.conn.failure is not None:
            return
        if self.ready and self.idle:
            self.status.state = "up_to_date"
            self.status.last_synced_ms = int(time.time() * 1000)

    async def _subscribe(self) -> None:
        assert self.conn.welcome is not None and self.conn.server_id is not None
        self._subscribed = True
        self.status.state = "syncing"
        plans = {p for p, _ in await self.log.plans(membership=True)}
        plans |= set(self.conn.welcome.plans)
        plans.add(self.log.workspace)
        cursors = {
            bytes(plan): (bytes(epoch), int(cursor))
            for plan, epoch, cursor in await self.log.fetch(
                "SELECT plan_id, epoch, cursor FROM sync_cursors WHERE server_id=?",
                (self.conn.server_id,),
            )
        }
        wants = []
        for plan in sorted(plans):
            epoch, cursor = cursors.get(plan, (b"", 0))
            if epoch != self.conn.epoch:
                epoch, cursor = b"", 0
            vector = {d.hex(): s for d, s in (await self.log.vector(plan)).items()}
            wants.append(PlanWant(plan=plan, vector=vector, cursor=cursor, epoch=epoch))
            self.catching_up.add(plan)
            self._fold_if_empty(plan, vector)
        for start in range(0, len(wants), MAX_PLANS):
            self.conn.send(Subscribe(plans=wants[start : start + MAX_PLANS]))

    def _fold_if_empty(self, plan: bytes, vector: dict[str, int]) -> None:
        """Fold a plan along its catch-up if this log holds none of it (the
        membership log has no plan state to fold)."""
        if self.fold_along and not vector and plan != self.log.workspace:
            self.folds[plan] = PlanState(plan)
        else:
            self.folds.pop(plan, None)

    def _storable(self, message: Events) -> bool:
        """Events `_events` will ingest (not an error, not live events of a
        plan this connection has not caught up on)."""
        return not message.error and (message.catch_up or message.plan in self.server_has)

    async def _events(self, messages: list[Events]) -> None:
        """Events of one plan (several frames in a row, or one): stored in
        one transaction, with the cursor the last clean one carries."""
        message = messages[-1]
        plan = message.plan
        if message.error:
            # The server will not serve this plan to this device: its local
            # events of the plan stay here (pending), and the person is told.
            self.catching_up.discard(plan)
            self.folds.pop(plan, None)
            self.status.rejected.append(
                SyncProblem(plan.hex(), 0, message.error, "the server will not sync this plan")
            )
            return
        if not message.catch_up and plan not in self.server_has:
            # Live events of a plan we have not caught up on in this
            # connection (someone created it after we subscribed, or its
            # catch-up is still under way): they may start mid-chain, and
            # their cursor promises nothing. The catch-up brings them.
            if plan not in self.catching_up:
                await self._subscribe_more([plan])
            return
        server_id, epoch = self.conn.server_id, self.conn.epoch
        batches = []
        for m in messages:
            report = IngestReport()
            batches.append((self.log.open_for_ingest(m.events, report), report))

        def cursor(_last: IngestReport | None = None) -> list[Statement]:
            # Committed with the events it covers, and only if all of them
            # landed: a cursor never runs ahead of the events. Once a frame
            # of the plan had an event rejected, no later cursor of this
            # connection is recorded either (it would cover the rejected
            # event: the next connection resumes from the last good cursor).
            last = 0
            for m, (_, got) in zip(messages, batches, strict=True):
                if got.rejected:
                    self._cursor_held.add(plan)
                if m.cursor and plan not in self._cursor_held:
                    last = m.cursor
            if not last:
                return []
            assert server_id is not None and epoch is not None
            return [
                (
                    "INSERT OR REPLACE INTO sync_cursors(server_id, plan_id, epoch, cursor) "
                    "VALUES (?,?,?,?)",
                    (server_id, plan, epoch, last),
                )
            ]

        if any(m.events for m in messages):
            # Mid catch-up, the COMMIT runs while this folds the events and
            # parses the next frames; the next write (the next frames, the
            # end of the catch-up below) waits for it (`EventLog.settle`).
            await self.log.ingest_batches(
                batches, then=cursor, commit_later=message.catch_up and message.more
            )
            fold = self.folds.get(plan)
            for _, report in batches:
                self.status.received += len(report.accepted)
                if fold is not None:
                    # from the rows as stored (the compiled fold), this plan's only
                    rows = zip(report.accepted, report.rows, strict=True)
                    await self.log.fold_rows(fold, [r for ev, r in rows if ev.env.plan == plan])
                for r in report.rejected + report.evidence:
                    self.status.rejected.append(
                        SyncProblem(plan.hex(), -1, r.reason, f"from the server: {r.message}")
                    )
        elif any(m.cursor for m in messages):
            await self.log.record(cursor())
        if not message.more and plan in self.catching_up:
            await self.log.settle()  # all of the catch-up is durable
            self.catching_up.discard(plan)
            fold = self.folds.pop(plan, None)
            if fold is not None:
                await checkpoints.save_if_complete(self.log, plan, fold)
            theirs = message.vector.get(self.me.hex(), 0)
            self.server_has[plan] = theirs
            self._sent_upto[plan] = max(theirs, self._sent_upto.get(plan, 0))
            await self._record_held(plan, theirs)
            await self._push(plan)

    async def _record_held(self, plan: bytes, theirs: int) -> None:
        """The server holds this device's events up to `theirs` (its catch-up
        vector says so): an ack lost with a dropped link is recorded now, with
        receive time 0 (unknown), so they do not stay "pending" for good."""
        acked = await self.log.fetch(
            "SELECT max(last_seq) FROM sync_acks WHERE plan_id=? AND device_key=?",
            (plan, self.me),
        )
        upto = int(acked[0][0] or 0) if acked else 0
        if theirs > upto:
            assert self.conn.server_id is not None
            await self.log.record(
                [
                    (
                        "INSERT INTO sync_acks(server_id, plan_id, device_key, first_seq, "
                        "last_seq, received_ms) VALUES (?,?,?,?,?,0)",
                        (self.conn.server_id, plan, self.me, upto + 1, theirs),
                    )
                ]
            )

    async def push_new(self) -> int:
        """Push this device's events written since the last push (the shell
        calls it when the local log changed). Returns how many were sent."""
        if not self.ready:
            return 0
        sent = 0
        new = []
        for plan, _ in await self.log.plans(membership=True):
            if plan in self.catching_up:
                continue
            if plan not in self.server_has:
                new.append(plan)  # made here since we subscribed
            else:
                sent += await self._push(plan)
        await self._subscribe_more(new)
        return sent

    async def _subscribe_more(self, plans: list[bytes]) -> None:
        """Subscribe to plans met after the first subscribe: the server
        catches us up on them, keeps us live, and its vector says what to push."""
        if not plans:
            return
        wants = []
        for plan in plans:
            vector = {d.hex(): s for d, s in (await self.log.vector(plan)).items()}
            wants.append(PlanWant(plan=plan, vector=vector))
            self.catching_up.add(plan)
            self._fold_if_empty(plan, vector)
        for start in range(0, len(wants), MAX_PLANS):
            self.conn.send(Subscribe(plans=wants[start : start + MAX_PLANS]))

    async def _push(self, plan: bytes) -> int:
        after = self._sent_upto.get(plan, 0)
        sent = 0
        async for batch in self.log.lacking(
            plan, {self.me: after}, max_count=MAX_BATCH_EVENTS, max_bytes=PUSH_BYTES, only=self.me
        ):
            seqs = [(plan, decode_stored(raw).env.seq) for raw in batch]
            number = self._next_batch
            self._next_batch += 1
            self._inflight[number] = seqs
            self._sent_upto[plan] = seqs[-1][1]
            self.conn.send(Push(batch=number, events=batch))
            sent += len(batch)
        if sent:
            self.status.state = "syncing"
        return sent

    async def _acked(self, message: Acked) -> None:
        items = self._inflight.pop(message.batch, [])
        bad = {r.index: r for r in message.rejected}
        ranges: dict[bytes, list[int]] = {}
        for index, (plan, seq) in enumerate(items):
            if index in bad:
                r = bad[index]
                self.status.rejected.append(SyncProblem(plan.hex(), seq, r.reason, r.message))
                continue
            self.status.sent += 1
            ranges.setdefault(plan, []).append(seq)
            self.server_has[plan] = max(seq, self.server_has.get(plan, 0))
        assert self.conn.server_id is not None
        await self.log.record(
            [
                (
                    "INSERT INTO sync_acks(server_id, plan_id, device_key, first_seq, last_seq, "
                    "received_ms) VALUES (?,?,?,?,?,?)",
                    (self.conn.server_id, plan, self.me, min(seqs), max(seqs), message.received_ms),
                )
                for plan, seqs in ranges.items()
            ]
        )


async def pending_events(log: EventLog, device: bytes) -> int:
    """This device's events no server has acknowledged yet."""
    acked = {
        bytes(plan): int(seq)
        for plan, seq in await log.fetch(
            "SELECT plan_id, max(last_seq) FROM sync_acks WHERE device_key=? GROUP BY plan_id",
            (device,),
        )
    }
    total = 0
    for plan, _ in await log.plans(membership=True):
        head = (await log.vector(plan)).get(device, 0)
        total += max(0, head - acked.get(plan, 0))
    return total


def backoff_delay(
    attempt: int, *, base: float = 0.5, cap: float = 60.0, rng: random.Random | None = None
) -> float:
    """Seconds to wait before reconnect attempt `attempt` (0-based):
    exponential with full jitter, so a village of devices coming back online
    at once does not reconnect in lockstep."""
    ceiling = min(cap, base * (2 ** min(attempt, 30)))
    return (rng or random).uniform(ceiling / 2, ceiling)
