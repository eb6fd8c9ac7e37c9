"""The server side of sync for one workspace, over its event log (no sockets).

A `Hub` owns the server's `EventLog` and the workspace's membership; each
client connection is a `HubSession` the websockets shell feeds decoded
messages. What a session wants sent goes to its bounded `outbox`, which the
shell drains onto the socket (a slow reader is dropped and resumes from its
cursor).

Push (`HubSession` → `Hub.push`), under the hub's lock so receive order is
commit order and fan-out follows it:

1. every event is opened strictly (limits, shape), must be of this
   workspace and authored by the connected device (`wrong_workspace`,
   `wrong_author`);
2. membership-log events first: only admin keys may sign them (`not_admin`);
   an accepted revocation records the cut-offs (the last seq of each of the
   device's chains the server holds now);
3. plan events: the author must be a member with write access to the plan
   (`not_member`, `read_only`, `no_access`); a revoked author's events after
   its cut-off are quarantined as evidence and rejected `revoked`;
4. the log ingests the rest (signatures fast path per chain segment, chain
   continuity, forks kept as evidence); commit; then `acked`; then the new
   events fan out to the other sessions subscribed to their plans.

Catch-up (`subscribe`): per plan, either from the client's cursor (same
server epoch: everything received after it, in receive order) or by its
version vector (`EventLog.lacking`, oldest first per chain), in bounded
batches; the last batch carries the server's vector (what to push) and the
cursor. Live events that arrive meanwhile wait in the session and follow.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable

from core.events.bodies import MemberRevoked
from core.events.envelope import Event, EventError, open_event
from core.identity.membership import Membership
from core.store.event_log import EventLog
from core.store.ingest_report import IngestReport
from core.sync.connection import Member, ServerConnection, State
from core.sync.messages import (
    MAX_BATCH_EVENTS,
    Acked,
    ClientMessage,
    Events,
    Push,
    Rejected,
    ServerMessage,
    Subscribe,
)

CATCH_UP_BYTES = 1 << 20
OUTBOX = 64  # messages queued for one connection (each at most ~1 MiB of events)


class HubStats:
    """Counters for /metrics."""

    def __init__(self) -> None:
        self.events_in = 0
        self.events_out = 0
        self.duplicates = 0
        self.rejects: dict[str, int] = defaultdict(int)
        self.batches = 0
        self.slow_readers = 0
        self.batch_seconds = 0.0
        self.batch_buckets: dict[float, int] = {b: 0 for b in BATCH_BUCKETS}


BATCH_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)


class Hub:
    """One workspace's sync service over its log."""

    def __init__(
        self, log: EventLog, *, server_id: bytes, epoch: bytes, admins: list[bytes]
    ) -> None:
        self.log = log
        self.workspace = log.workspace
        self.server_id = server_id
        self.epoch = epoch
        self.admins = list(admins)
        self.lock = asyncio.Lock()
        self.membership = Membership(self.workspace, admins)
        self.plans: set[bytes] = set()
        self.subscribers: dict[bytes, set[HubSession]] = defaultdict(set)
        self.live_sessions: set[HubSession] = set()  # subscribed at least once
        self.stats = HubStats()
        self._fanned_rx = 0

    async def start(self) -> None:
        """Load membership, revocation cut-offs and the receive position."""
        self.membership = Membership.of(
            self.workspace, self.admins, await self.log.events(self.workspace)
        )
        for device_key, plan_id, seq in await self.log.fetch(
            "SELECT device_key, plan_id, seq FROM revocation_cutoffs"
        ):
            self.membership.extend_cutoffs(bytes(device_key), {bytes(plan_id): int(seq)})
        # A revocation that landed just before a crash, without its cut-offs.
        for device in self.membership.revoked_devices():
            await self._record_cutoffs(device)
        self.plans = {p for p, _ in await self.log.plans()}
        self._fanned_rx = await self.log.top_rx()

    def session(self, nonce: bytes) -> HubSession:
        return HubSession(self, nonce)

    def member(self, workspace: bytes, device: bytes) -> Member | None:
        if workspace != self.workspace:
            return None
        info = self.membership.member(device)
        if info is None:
            return None
        readable = sorted(p for p in self.plans if not info.plans or p in info.plans)
        return Member(role=info.role, plans=readable, revoked=info.revoked)

    # --- push -------------------------------------------------------------------------------

    async def push(self, session: HubSession, message: Push) -> Acked:
        started = time.perf_counter()
        async with self.lock:
            acked = await self._push(session, message)
            await self._fan_out(exclude=session)
        took = time.perf_counter() - started
        st = self.stats
        st.batches += 1
        st.batch_seconds += took
        for bucket in BATCH_BUCKETS:
            if took <= bucket:
                st.batch_buckets[bucket] += 1
        return acked

    async def _push(self, session: HubSession, message: Push) -> Acked:
        received_ms = int(time.time() * 1000)
        rejected: list[Rejected] = []
        membership: list[tuple[int, Event]] = []
        plan_events: list[tuple[int, Event]] = []
        for index, raw in enumerate(message.events):
            try:
                ev = open_event(raw, verify=False, strict=True)
            except EventError as exc:
                rejected.append(Rejected(index, exc.reason, str(exc)[:500]))
                continue
            if ev.env.workspace != self.workspace:
                rejected.append(Rejected(index, "wrong_workspace", "event of another workspace"))
            elif ev.env.author != session.device:
                rejected.append(
                    Rejected(index, "wrong_author", "a device pushes only its own events")
                )
            elif ev.env.plan == self.workspace:
                membership.append((index, ev))
            else:
                plan_events.append((index, ev))
        accepted = 0
        if membership:
            problems = [
                (i, ev)
                for i, ev in membership
                if self.membership.write_problem(ev.env.author, ev.env.plan, ev.env.seq)
            ]
            for i, _ in problems:
                rejected.append(Rejected(i, "not_admin", "only admin keys sign membership"))
            ok = [(i, ev) for i, ev in membership if (i, ev) not in problems]
            report = await self.log.ingest([ev.raw for _, ev in ok])
            accepted += self._account(report, ok, rejected)
            for ev in report.accepted:
                self.membership.apply(ev)
                if isinstance(ev.body, MemberRevoked):
                    await self._record_cutoffs(ev.body.device)
        if plan_events:
            allowed: list[tuple[int, Event]] = []
            revoked: list[tuple[int, Event]] = []
            for i, ev in plan_events:
                problem = self.membership.write_problem(ev.env.author, ev.env.plan, ev.env.seq)
                if problem is None:
                    allowed.append((i, ev))
                elif problem == "revoked":
                    revoked.append((i, ev))
                else:
                    rejected.append(Rejected(i, problem, _MESSAGES[problem]))
            if revoked:
                report = await self.log.quarantine([ev for _, ev in revoked], "revoked")
                for r in report.rejected:
                    rejected.append(Rejected(revoked[r.index][0], r.reason, r.message))
                kept = {r.index for r in report.evidence} | (
                    set(range(len(revoked))) - {r.index for r in report.rejected}
                )
                for k in sorted(kept):
                    rejected.append(Rejected(revoked[k][0], "revoked", _MESSAGES["revoked"]))
            report = await self.log.ingest([ev.raw for _, ev in allowed])
            accepted += self._account(report, allowed, rejected)
            for ev in report.accepted:
                self.plans.add(ev.env.plan)
        rejected.sort(key=lambda rej: rej.index)
        for rej in rejected:
            self.stats.rejects[rej.reason] += 1
        return Acked(
            batch=message.batch, accepted=accepted, rejected=rejected, received_ms=received_ms
        )

    def _account(
        self, report: IngestReport, items: list[tuple[int, Event]], rejected: list[Rejected]
    ) -> int:
        for r in report.rejected + report.evidence:
            rejected.append(Rejected(items[r.index][0], r.reason, r.message[:500]))
        self.stats.events_in += len(report.accepted)
        self.stats.duplicates += report.duplicates
        return len(report.accepted) + report.duplicates

    async def _record_cutoffs(self, device: bytes) -> None:
        """Cut a revoked device off at the last seq the server holds of each
        of its chains (once: a recorded cut-off is never moved)."""
        known = {
            bytes(p)
            for (p,) in await self.log.fetch(
                "SELECT plan_id FROM revocation_cutoffs WHERE device_key=?", (device,)
            )
        }
        heads: dict[bytes, int] = {}
        for plan, _ in await self.log.plans(membership=True):
            seq = (await self.log.vector(plan)).get(device)
            if seq is not None and plan not in known:
                heads[plan] = seq
        if heads:
            await self.log.record(
                [
                    (
                        "INSERT OR IGNORE INTO revocation_cutoffs(device_key, plan_id, seq) "
                        "VALUES (?,?,?)",
                        (device, plan, seq),
                    )
                    for plan, seq in heads.items()
                ]
            )
        self.membership.extend_cutoffs(device, heads)

    async def _fan_out(self, exclude: HubSession | None) -> None:
        """Send what was committed since the last fan-out to every subscriber
        of its plan (not back to the session that pushed it)."""
        rows = await self.log.since(self._fanned_rx)
        if not rows:
            return
        self._fanned_rx = rows[-1][0]
        by_plan: dict[bytes, list[tuple[int, bytes]]] = defaultdict(list)
        for rx, plan, raw in rows:
            by_plan[plan].append((rx, raw))
        for plan, items in by_plan.items():
            subscribed = self.subscribers[plan]
            # A plan new to a live session (someone created it after the
            # session subscribed): it gets it too, and catches up on it.
            for session in self.live_sessions - subscribed:
                if session.device and self.membership.may_read(session.device, plan):
                    subscribed.add(session)
            for session in list(subscribed):
                if session is not exclude:
                    session.live(plan, items)

    # --- catch-up ---------------------------------------------------------------------------

    async def catch_up(self, session: HubSession, message: Subscribe) -> None:
        self.live_sessions.add(session)
        for want in message.plans:
            plan = want.plan
            if session.device is None or not self.membership.may_read(session.device, plan):
                await session.send(
                    Events(plan=plan, events=[], cursor=0, more=False, error="no_access")
                )
                continue
            session.waiting[plan] = []
            self.subscribers[plan].add(session)
            async with self.lock:  # a consistent (top, vector) snapshot
                top = await self._plan_top(plan)
                vector = await self.log.vector(plan)
            if want.epoch == self.epoch and 0 < want.cursor <= top:
                batches = self._since_cursor(plan, want.cursor, top)
            else:
                theirs = {bytes.fromhex(d): s for d, s in want.vector.items() if _is_hex(d)}
                batches = self._lacking(plan, theirs, top)
            final: list[tuple[int, bytes]] = []
            async for batch in batches:
                if final:
                    # Mid catch-up the cursor is only a promise when batches
                    # follow receive order (resuming from a cursor).
                    cursor = final[-1][0] if final[-1][0] < top else 0
                    await session.send(
                        Events(
                            plan=plan,
                            events=[r for _, r in final],
                            cursor=cursor,
                            more=True,
                            catch_up=True,
                        )
                    )
                    self.stats.events_out += len(final)
                final = batch
            await session.send(
                Events(
                    plan=plan,
                    events=[r for _, r in final],
                    cursor=top,
                    more=False,
                    vector={d.hex(): s for d, s in vector.items()},
                    catch_up=True,
                )
            )
            self.stats.events_out += len(final)
            for rx, raws in session.waiting.pop(plan, []):
                if rx > top:
                    await session.send(Events(plan=plan, events=raws, cursor=rx, more=False))
                    self.stats.events_out += len(raws)

    async def _plan_top(self, plan: bytes) -> int:
        found = await self.log.fetch(
            "SELECT max(rx) FROM events WHERE plan_no=(SELECT plan_no FROM plans WHERE plan_id=?)",
            (plan,),
        )
        value = found[0][0] if found else None
        return int(value) if value is not None else 0

    async def _since_cursor(
        self, plan: bytes, after: int, top: int
    ) -> AsyncIterator[list[tuple[int, bytes]]]:
        while after < top:
            rows = await self.log.raw_events(plan, after, upto_rx=top, limit=MAX_BATCH_EVENTS)
            if not rows:
                return
            after = rows[-1][0]
            for chunk in _by_size(rows):
                yield chunk

    async def _lacking(
        self, plan: bytes, theirs: dict[bytes, int], top: int
    ) -> AsyncIterator[list[tuple[int, bytes]]]:
        async for batch in self.log.lacking(
            plan, theirs, max_count=MAX_BATCH_EVENTS, max_bytes=CATCH_UP_BYTES
        ):
            yield [(top, raw) for raw in batch]  # vector order: no cursor before the end

    def drop(self, session: HubSession) -> None:
        """Forget a closed session, and every subscription left empty (a
        member may subscribe to made-up plan ids: they must not pile up)."""
        self.live_sessions.discard(session)
        for plan in list(self.subscribers):
            subs = self.subscribers[plan]
            subs.discard(session)
            if not subs:
                del self.subscribers[plan]


_MESSAGES = {
    "not_member": "the author is not a member of the workspace",
    "revoked": "written after the author's membership was revoked; quarantined",
    "read_only": "a viewer cannot write",
    "no_access": "the author may not write to this plan",
    "not_admin": "only admin keys sign membership",
}


def _is_hex(text: str) -> bool:
    try:
        return len(bytes.fromhex(text)) == 32
    except ValueError:
        return False


class HubSession:
    """One client connection, server side: the handshake state machine plus
    the store work it asks for."""

    def __init__(self, hub: Hub, nonce: bytes) -> None:
        self.hub = hub
        # The shell's writer drains this; replies and catch-up wait for room
        # (backpressure), live fan-out never waits: a reader that lets it fill
        # is `slow`, and the shell drops it (it resumes from its cursor).
        self.outbox: asyncio.Queue[ServerMessage] = asyncio.Queue(maxsize=OUTBOX)
        self.slow = False
        self.gone = False
        self.on_slow: Callable[[], None] | None = None  # the shell drops the connection
        self.conn = ServerConnection(
            server_id=hub.server_id,
            epoch=hub.epoch,
            nonce=nonce,
            workspaces=frozenset({hub.workspace}),
            members=hub.member,
            admins=hub.admins,
        )
        self.waiting: dict[bytes, list[tuple[int, list[bytes]]]] = {}

    @property
    def device(self) -> bytes | None:
        return self.conn.device if self.conn.state is State.READY else None

    @property
    def closed(self) -> bool:
        return self.conn.state is State.CLOSED

    async def receive(self, message: ClientMessage) -> None:
        self.conn.receive_message(message)
        for out in self.conn.messages_to_send():
            await self.send(out)
        for work in self.conn.work():
            if isinstance(work, Subscribe):
                await self.hub.catch_up(self, work)
            else:
                await self.send(await self.hub.push(self, work))

    async def send(self, message: ServerMessage) -> None:
        if self.gone:
            return
        await self.outbox.put(message)

    def abandon(self) -> None:
        """The socket is gone: drop what waits in the outbox and every later
        message, so nothing stays blocked on a queue nobody drains."""
        self.gone = True
        while not self.outbox.empty():
            self.outbox.get_nowait()
            self.outbox.task_done()

    def live(self, plan: bytes, items: list[tuple[int, bytes]]) -> None:
        """New events of a subscribed plan (rx order); held back during its catch-up."""
        if self.device is None or not self.hub.membership.may_read(self.device, plan):
            return
        for chunk in _by_size(items):
            rx = chunk[-1][0]
            raws = [raw for _, raw in chunk]
            if plan in self.waiting:
                self.waiting[plan].append((rx, raws))
                if len(self.waiting[plan]) > OUTBOX:
                    self._too_slow()
            elif not self.slow:
                try:
                    self.outbox.put_nowait(Events(plan=plan, events=raws, cursor=rx, more=False))
                except asyncio.QueueFull:
                    self._too_slow()
                    return
                self.hub.stats.events_out += len(raws)

    def _too_slow(self) -> None:
        """The reader fell too far behind live fan-out: drop it; it resumes
        from its cursor when it reconnects."""
        if not self.slow:
            self.slow = True
            self.hub.stats.slow_readers += 1
            if self.on_slow is not None:
                self.on_slow()

    def close(self) -> None:
        self.hub.drop(self)


def _by_size(rows: list[tuple[int, bytes]]) -> list[list[tuple[int, bytes]]]:
    """Split (rx, raw) rows into batches of at most MAX_BATCH_EVENTS events
    and about CATCH_UP_BYTES bytes (one event may be 64 KiB)."""
    out: list[list[tuple[int, bytes]]] = []
    batch: list[tuple[int, bytes]] = []
    size = 0
    for row in rows:
        batch.append(row)
        size += len(row[1])
        if len(batch) >= MAX_BATCH_EVENTS or size >= CATCH_UP_BYTES:
            out.append(batch)
            batch, size = [], 0
    if batch:
        out.append(batch)
    return out
