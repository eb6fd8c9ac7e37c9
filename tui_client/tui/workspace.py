"""What the TUI needs from a device home, as one object the screens share.

It keeps the event log open for the app's lifetime and one folded state per
open plan. Every edit is appended (one durable transaction) *before* the
screen changes, so what a person sees is always in the log: there is no
save button and nothing to lose when the lid closes.
"""

from __future__ import annotations

from typing import Any

import msgspec

from core.commands import edits
from core.commands.aure_demo import aure_plan
from core.events.bodies import Body
from core.events.envelope import Event
from core.events.hlc import pack, to_iso
from core.projections.history import changes, timeline
from core.projections.plan_state import PlanState, evolve
from core.projections.plan_view import Memo, conflicts, view
from core.replication.client import pending_events
from core.store.event_log import EventLog
from tui_client.home import Home
from tui_client.tui.history_load import TimelineFold


class PlanSummary(msgspec.Struct, frozen=True):
    plan: bytes
    municipality: str
    title: str
    phases_done: int
    phases: int
    status: str
    conflicts: int
    events: int
    pending: int


class Workspace:
    def __init__(self, home: Home, log: EventLog) -> None:
        self.home = home
        self.log = log
        self.states: dict[bytes, PlanState] = {}
        # Entity views kept between edits (see `plan_view.view`): an edit
        # redraws the entities it touched, not the whole plan.
        self.memos: dict[bytes, Memo] = {}
        self.names: dict[str, str] = {}
        # Each plan's events in time-line order, kept once the history was read
        # (time travel steps through them in memory).
        self.timelines: dict[bytes, list[Event]] = {}
        # ... and folded in memory for time travel (see `TimelineFold`).
        self.folds: dict[bytes, TimelineFold] = {}

    @classmethod
    async def open(cls, home: Home) -> Workspace:
        ws = cls(home, await home.open_log())
        await ws.refresh_names()
        return ws

    async def close(self) -> None:
        await self.log.close()

    async def refresh_names(self) -> None:
        from tui_client.cli_plan import names_for

        self.names = await names_for(self.home, self.log)

    @property
    def device(self) -> bytes:
        return bytes.fromhex(self.home.profile().device)

    # --- reading -----------------------------------------------------------------------------

    async def summaries(self) -> list[PlanSummary]:
        acked = {
            bytes(p): int(s)
            for p, s in await self.log.fetch(
                "SELECT plan_id, max(last_seq) FROM sync_acks WHERE device_key=? GROUP BY plan_id",
                (self.device,),
            )
        }
        out = []
        for plan, _ in await self.log.plans():
            state = await self.state(plan, reload=True)
            data = view(state)
            f = data["fields"]
            phases = data["phases"]
            mine = (await self.log.vector(plan)).get(self.device, 0)
            out.append(
                PlanSummary(
                    plan=plan,
                    municipality=str(f.get("municipality", "")),
                    title=str(f.get("title", "")),
                    phases_done=sum(1 for p in phases if p["fields"].get("status") == "done"),
                    phases=len(phases),
                    status=str(f.get("status", "")),
                    conflicts=len(data["conflicts"]),
                    events=state.events,
                    pending=max(0, mine - acked.get(plan, 0)),
                )
            )
        return out

    async def pending(self) -> int:
        return await pending_events(self.log, self.device)

    async def state(self, plan: bytes, *, reload: bool = False) -> PlanState:
        if reload or plan not in self.states:
            self.states[plan] = await self.log.load_state(plan)
            self.memos.pop(plan, None)
        return self.states[plan]

    async def view(self, plan: bytes) -> dict[str, Any]:
        state = await self.state(plan)
        return view(state, self.memos.setdefault(plan, {}))

    async def conflicts(self, plan: bytes) -> list[dict[str, Any]]:
        return conflicts(await self.state(plan))

    def timeline_fold(self, plan: bytes, events: list[Event]) -> TimelineFold:
        """The fold of this time line of the plan (a new one if it changed)."""
        fold = self.folds.get(plan)
        if fold is None or fold.events is not events:
            fold = self.folds[plan] = TimelineFold(plan, events)
        return fold

    async def history(self, plan: bytes) -> list[dict[str, Any]]:
        """All at once (the screen reads it in a worker: `history_load`).
        Every change, oldest first; `server`: when the server received the
        event, for this device's own events it acknowledged (else None)."""
        events = self.timelines[plan] = timeline(await self.log.events(plan))
        acks: dict[str, list[tuple[int, int, int]]] = {}
        for device, first, last, ms in await self.log.fetch(
            "SELECT device_key, first_seq, last_seq, min(received_ms) FROM sync_acks "
            "WHERE plan_id=? AND received_ms>0 GROUP BY device_key, first_seq, last_seq",
            (plan,),
        ):
            acks.setdefault(bytes(device).hex(), []).append((int(first), int(last), int(ms)))
        out = []
        for change in changes(events):
            row = msgspec.to_builtins(change)
            row["server"] = next(
                (
                    to_iso(pack(ms, 0))
                    for first, last, ms in acks.get(change.author, ())
                    if first <= change.seq <= last
                ),
                None,
            )
            out.append(row)
        return out

    # --- writing (one signed event per edit, durable before the screen changes) -------------

    async def append(self, plan: bytes, bodies: list[Body]) -> list[Event]:
        events = await self.log.append(self.home.signer(), plan, bodies)
        state = await self.state(plan)
        memo = self.memos.get(plan, {})
        for ev in events:
            state = evolve(state, ev)
            if isinstance(ev.body, Body):
                memo.pop((ev.body.entity_kind(), ev.body.entity_id(plan)), None)
        self.states[plan] = state
        return events

    async def new_plan(self, title: str, municipality: str) -> bytes:
        plan, bodies = edits.new_plan(title=title, municipality=municipality)
        await self.append(plan, bodies)
        return plan

    async def add_demo(self) -> bytes:
        plan, bodies = aure_plan()
        await self.append(plan, bodies)
        return plan

    async def set_field(
        self, plan: bytes, kind: str, entity: bytes, field: str, text: str
    ) -> Event:
        from tui_client.cli_plan import typed_values

        state = await self.state(plan)
        values = typed_values(state, kind, {field: text})
        events = await self.append(plan, edits.set_fields(state, kind, entity, values))
        return events[-1]

    async def set_fields(
        self, plan: bytes, kind: str, entity: bytes, texts: dict[str, str]
    ) -> Event:
        from tui_client.cli_plan import typed_values

        state = await self.state(plan)
        values = typed_values(state, kind, texts)
        events = await self.append(plan, edits.set_fields(state, kind, entity, values))
        return events[-1]

    async def set_values(
        self, plan: bytes, kind: str, entity: bytes, values: dict[str, Any]
    ) -> Event:
        """Set typed values (ids as bytes), one event per event kind."""
        state = await self.state(plan)
        events = await self.append(plan, edits.set_fields(state, kind, entity, values))
        return events[-1]

    async def remove(self, plan: bytes, kind: str, entity: bytes) -> Event:
        state = await self.state(plan)
        (event,) = await self.append(plan, [edits.remove_entity(state, kind, entity)])
        return event

    async def add(self, plan: bytes, kind: str, texts: dict[str, str]) -> Event:
        from tui_client.cli_plan import typed_values

        state = await self.state(plan)
        _, body = edits.add_entity(state, kind, typed_values(state, kind, texts))
        (event,) = await self.append(plan, [body])
        return event

    async def resolve(self, plan: bytes, kind: str, entity: bytes, field: str, value: Any) -> Event:
        state = await self.state(plan)
        (event,) = await self.append(plan, [edits.resolve(state, kind, entity, field, value)])
        return event

    async def ingested(self, plan: bytes | None = None) -> None:
        """Events arrived from elsewhere (sync): fold them in."""
        for p in [plan] if plan else list(self.states):
            self.states[p] = await self.log.load_state(p)
            self.memos.pop(p, None)
        await self.refresh_names()
