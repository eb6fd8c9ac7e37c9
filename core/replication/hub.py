"""The server side of sync for one workspace, over its event log (no sockets).

A `Hub` owns the server's `EventLog` and the workspace's membership; each
client connection is a `HubSession` the websockets shell feeds decoded
messages. What a session wants sent goes, encoded, to its `outbox` (bounded by
frames and bytes, `core.replication.outbox`), which the shell drains onto the
socket (a slow reader is dropped and resumes from its cursor).

Push (`HubSession` → `Hub.push`). A push is opened first, on the pushing
session's own task; then it waits for the hub's committer, which takes every
push waiting at that moment (group commit) and, under the hub's lock (so
receive order is commit order and fan-out follows it), judges them in
arrival order:

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
   continuity, forks kept as evidence), every push of the group in ONE
   transaction, each push with its own report, in order (exactly what
   separate transactions would store); commit; then the new events fan out
   to the sessions subscribed to their plans (not back to the session that
   pushed them); then each push's `acked` (never before the commit). A push carrying membership
   events is a group of its own (it changes what the next push may do). If
   a group's transaction fails, nothing of it was stored and each push is
   retried alone: one push's failure never costs another's events.

Fan-out encodes each `events` frame once and puts the same bytes in every
subscriber's outbox (a session that pushed some of a frame's events gets
its own frame without them); whether a device may read a plan is checked
once per device and plan and cached until the membership log changes.

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
from dataclasses import dataclass, field

from core.events.bodies import MemberRevoked
from core.events.envelope import Event, EventError, open_event
from core.identity.membership import Membership
from core.replication.outbox import OUTBOX_BYTES, OUTBOX_FRAMES, Outbox
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
    encode,
)

CATCH_UP_BYTES = 1 << 20
OUTBOX = OUTBOX_FRAMES  # frames queued for one connection (each at most ~1 MiB of events)
GROUP_PUSHES = 64  # pushes committed in one transaction at most
GROUP_EVENTS = 4_000  # events committed in one transaction at most (a push has <= 1,000)
READ_CACHE = 100_000  # cached (device, plan) read checks at most

LiveFrame = tuple[int, bytes, int]  # (cursor rx, encoded `events` frame, events in it)


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


@dataclass(eq=False)
class PendingPush:
    """A push opened and waiting for the committer (group commit)."""

    session: HubSession
    device: bytes
    message: Push
    started: float
    received_ms: int
    rejected: list[Rejected]  # decided before any store work (shape, workspace, author)
    membership: list[tuple[int, Event]]
    plan_events: list[tuple[int, Event]]
    done: asyncio.Future[Acked] = field(repr=False)


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
        self._pending: list[PendingPush] = []
        self._committer: asyncio.Task[None] | None = None
        self._readable: dict[tuple[bytes, bytes], bool] = {}  # (device, plan) -> may read

    async def start(self) -> None:
        """Load membership, revocation cut-offs and the receive position."""
        self.membership = Membership.of(
            self.workspace, self.admins, await self.log.events(self.workspace)
        )
        self._readable.clear()
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

    def may_read(self, device: bytes, plan: bytes) -> bool:
        """`Membership.may_read`, cached until the membership log changes."""
        key = (device, plan)
        found = self._readable.get(key)
        if found is None:
            if len(self._readable) >= READ_CACHE:
                self._readable.clear()
            found = self._readable[key] = self.membership.may_read(device, plan)
        return found

    # --- push -------------------------------------------------------------------------------

    async def push(self, session: HubSession, message: Push) -> Acked:
        """Open the push here, queue it for the committer, return its ack
        once its events are committed (never before)."""
        pending = self._open(session, message)
        self._pending.append(pending)
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_pending())
        return await pending.done

    def _open(self, session: HubSession, message: Push) -> PendingPush:
        """What can be decided without the store: the events open strictly,
        are of this workspace and authored by the connected device."""
        started = time.perf_counter()
        device = session.device or b""
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
            elif ev.env.author != device:
                rejected.append(
                    Rejected(index, "wrong_author", "a device pushes only its own events")
                )
            elif ev.env.plan == self.workspace:
                membership.append((index, ev))
            else:
                plan_events.append((index, ev))
        return PendingPush(
            session=session,
            device=device,
            message=message,
            started=started,
            received_ms=int(time.time() * 1000),
            rejected=rejected,
            membership=membership,
            plan_events=plan_events,
            done=asyncio.get_running_loop().create_future(),
        )

    def _next_group(self) -> list[PendingPush]:
        """The waiting pushes to commit together, in arrival order: at most
        GROUP_PUSHES / GROUP_EVENTS; a push with membership events alone."""
        group: list[PendingPush] = []
        events = 0
        for pending in self._pending:
            n = len(pending.message.events)
            if group and (
                pending.membership
                or group[0].membership
                or len(group) >= GROUP_PUSHES
                or events + n > GROUP_EVENTS
            ):
                break
            group.append(pending)
            events += n
        del self._pending[: len(group)]
        return group

    async def _commit_pending(self) -> None:
        """The committer: while pushes wait, commit them a group at a time."""
        try:
            while self._pending:
                group = self._next_group()
                async with self.lock:
                    await self._commit_group(group)
        finally:
            self._committer = None
            if self._pending:  # queued while the finally ran
                self._committer = asyncio.create_task(self._commit_pending())

    async def _commit_group(self, group: list[PendingPush]) -> None:
        origin: dict[bytes, HubSession] = {}
        results: list[Acked | BaseException]
        try:
            results = list(await self._store(group, origin))
        except Exception as exc:
            if len(group) == 1:
                results = [exc]
            else:
                # Nothing of the group was stored (one transaction): each push
                # alone, so that one push's failure never costs another's events.
                results = []
                for pending in group:
                    try:
                        results.extend(await self._store([pending], origin))
                    except Exception as exc_one:
                        results.append(exc_one)
        self._count(group, results)
        try:
            # Committed; the others hear of it before the pusher's `acked` is
            # queued (as when each push ran alone: a session's reply to a push
            # follows the fan-out it caused).
            await self._fan_out(origin)
        finally:
            for pending, result in zip(group, results, strict=True):
                _settle(pending, result)

    def _count(self, group: list[PendingPush], results: list[Acked | BaseException]) -> None:
        st = self.stats
        now = time.perf_counter()
        for pending, result in zip(group, results, strict=True):
            if not isinstance(result, Acked):
                continue
            for rej in result.rejected:
                st.rejects[rej.reason] += 1
            took = now - pending.started
            st.batches += 1
            st.batch_seconds += took
            for bucket in BATCH_BUCKETS:
                if took <= bucket:
                    st.batch_buckets[bucket] += 1

    async def _store(
        self, group: list[PendingPush], origin: dict[bytes, HubSession]
    ) -> list[Acked]:
        """Judge and commit a group: its acks, in group order; what it
        stored goes into `origin` (raw -> pushing session). Raises, having
        stored none of the group's plan events, if the store does."""
        rejected = {id(p): list(p.rejected) for p in group}
        accepted = {id(p): 0 for p in group}
        for pending in group:
            if pending.membership:
                accepted[id(pending)] += await self._store_membership(
                    pending, rejected[id(pending)]
                )
        batches: list[tuple[PendingPush, list[tuple[int, Event]], IngestReport]] = []
        for pending in group:
            if not pending.plan_events:
                continue
            allowed: list[tuple[int, Event]] = []
            revoked: list[tuple[int, Event]] = []
            out = rejected[id(pending)]
            for i, ev in pending.plan_events:
                problem = self.membership.write_problem(ev.env.author, ev.env.plan, ev.env.seq)
                if problem is None:
                    allowed.append((i, ev))
                elif problem == "revoked":
                    revoked.append((i, ev))
                else:
                    out.append(Rejected(i, problem, _MESSAGES[problem]))
            if revoked:
                await self._quarantine(revoked, out)
            if allowed:
                batches.append((pending, allowed, IngestReport()))
        if batches:
            # The report's indices are positions in `allowed` (mapped back in _account).
            await self.log.ingest_batches(
                [(list(enumerate(e for _, e in allowed)), r) for _, allowed, r in batches]
            )
            for pending, allowed, report in batches:
                accepted[id(pending)] += self._account(report, allowed, rejected[id(pending)])
                for ev in report.accepted:
                    self.plans.add(ev.env.plan)
                    origin[ev.raw] = pending.session
        acks = []
        for pending in group:
            out = rejected[id(pending)]
            out.sort(key=lambda rej: rej.index)
            acks.append(
                Acked(
                    batch=pending.message.batch,
                    accepted=accepted[id(pending)],
                    rejected=out,
                    received_ms=pending.received_ms,
                )
            )
        return acks

    async def _store_membership(self, pending: PendingPush, rejected: list[Rejected]) -> int:
        """Membership-log events of one push (its group holds no other push)."""
        problems = [
            (i, ev)
            for i, ev in pending.membership
            if self.membership.write_problem(ev.env.author, ev.env.plan, ev.env.seq)
        ]
        for i, _ in problems:
            rejected.append(Rejected(i, "not_admin", "only admin keys sign membership"))
        ok = [(i, ev) for i, ev in pending.membership if (i, ev) not in problems]
        report = await self.log.ingest([ev.raw for _, ev in ok])
        accepted = self._account(report, ok, rejected)
        for ev in report.accepted:
            self.membership.apply(ev)
        self._readable.clear()  # who may read what may have changed
        for ev in report.accepted:
            if isinstance(ev.body, MemberRevoked):
                await self._record_cutoffs(ev.body.device)
        return accepted

    async def _quarantine(self, revoked: list[tuple[int, Event]], out: list[Rejected]) -> None:
        report = await self.log.quarantine([ev for _, ev in revoked], "revoked")
        for r in report.rejected:
            out.append(Rejected(revoked[r.index][0], r.reason, r.message))
        kept = {r.index for r in report.evidence} | (
            set(range(len(revoked))) - {r.index for r in report.rejected}
        )
        for k in sorted(kept):
            out.append(Rejected(revoked[k][0], "revoked", _MESSAGES["revoked"]))

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
        self._readable.clear()

    async def _fan_out(self, origin: dict[bytes, HubSession]) -> None:
        """Send what was committed since the last fan-out to every subscriber
        of its plan, each frame encoded once for all of them; not back to the
        session that pushed an event (`origin`: raw -> pushing session)."""
        rows = await self.log.since(self._fanned_rx)
        if not rows:
            return
        self._fanned_rx = rows[-1][0]
        by_plan: dict[bytes, list[tuple[int, bytes]]] = defaultdict(list)
        for rx, plan, raw in rows:
            by_plan[plan].append((rx, raw))
        for plan, items in by_plan.items():
            subscribed = self.subscribers.get(plan)
            # A plan new to a live session (someone created it after the
            # session subscribed): it gets it too, and catches up on it.
            for session in self.live_sessions - (subscribed or set()):
                if session.device and self.may_read(session.device, plan):
                    if subscribed is None:
                        subscribed = self.subscribers[plan]
                    subscribed.add(session)
            if not subscribed:
                continue
            chunks = _by_size(items)
            pushers = {s for _, raw in items if (s := origin.get(raw)) is not None}
            shared: list[LiveFrame] | None = None
            for session in list(subscribed):
                device = session.device
                if device is None or not self.may_read(device, plan):
                    continue
                if session in pushers:
                    session.live(plan, _frames(plan, chunks, origin, session))
                else:
                    if shared is None:
                        shared = _frames(plan, chunks, origin, None)
                    session.live(plan, shared)

    # --- catch-up ---------------------------------------------------------------------------

    async def catch_up(self, session: HubSession, message: Subscribe) -> None:
        self.live_sessions.add(session)
        for want in message.plans:
            plan = want.plan
            # Uncached: a member may subscribe to any made-up plan id.
            if session.device is None or not self.membership.may_read(session.device, plan):
                await session.send(
                    Events(plan=plan, events=[], cursor=0, more=False, error="no_access")
                )
                continue
            session.release_waiting(plan)  # a plan subscribed to again starts over
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
            for rx, frame, n in session.release_waiting(plan):
                if rx > top:
                    await session.send_frame(frame)
                    self.stats.events_out += n

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
        # (backpressure, within half the bounds), live fan-out never waits: a
        # reader that lets it fill is `slow`, and the shell drops it (it
        # resumes from its cursor).
        self.outbox = Outbox(OUTBOX_FRAMES, OUTBOX_BYTES)
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
        # Live frames of a plan held back during its catch-up, and their bytes.
        self.waiting: dict[bytes, list[LiveFrame]] = {}
        self._waiting_bytes = 0

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
        await self.outbox.put(encode(message))

    async def send_frame(self, frame: bytes) -> None:
        """An already encoded frame (live events held back during a catch-up)."""
        if self.gone:
            return
        await self.outbox.put(frame)

    def abandon(self) -> None:
        """The socket is gone: drop what waits in the outbox and every later
        message, so nothing stays blocked on a queue nobody drains."""
        self.gone = True
        self.outbox.clear()

    def live(self, plan: bytes, frames: list[LiveFrame]) -> None:
        """New events of a subscribed plan (rx order, encoded by the hub,
        which checked this device may read the plan); held back during its
        catch-up."""
        waiting = self.waiting.get(plan)
        if waiting is not None:
            waiting.extend(frames)
            self._waiting_bytes += sum(len(frame) for _, frame, _ in frames)
            if len(waiting) > OUTBOX_FRAMES or self._waiting_bytes > OUTBOX_BYTES:
                self._too_slow()
            return
        if self.slow or self.gone:
            return
        for _, frame, n in frames:
            try:
                self.outbox.put_nowait(frame)
            except asyncio.QueueFull:
                self._too_slow()
                return
            self.hub.stats.events_out += n

    def release_waiting(self, plan: bytes) -> list[LiveFrame]:
        """The live frames held back during the plan's catch-up, now it ended."""
        frames = self.waiting.pop(plan, [])
        self._waiting_bytes -= sum(len(frame) for _, frame, _ in frames)
        return frames

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


def _settle(pending: PendingPush, result: Acked | BaseException) -> None:
    """Hand a push its ack (or its failure), unless its session gave up waiting."""
    if pending.done.done():
        return
    if isinstance(result, BaseException):
        pending.done.set_exception(result)
    else:
        pending.done.set_result(result)


def _frames(
    plan: bytes,
    chunks: list[list[tuple[int, bytes]]],
    origin: dict[bytes, HubSession],
    leave_out: HubSession | None,
) -> list[LiveFrame]:
    """The live frames of `chunks`, each encoded once, without the events
    `leave_out` pushed (it has them); each carries its chunk's last rx."""
    out: list[LiveFrame] = []
    for chunk in chunks:
        if leave_out is None:
            raws = [raw for _, raw in chunk]
        else:
            raws = [raw for _, raw in chunk if origin.get(raw) is not leave_out]
        if raws:
            rx = chunk[-1][0]
            frame = encode(Events(plan=plan, events=raws, cursor=rx, more=False))
            out.append((rx, frame, len(raws)))
    return out


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
