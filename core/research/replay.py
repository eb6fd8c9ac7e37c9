"""Replay: every state a plan went through, one event at a time (pure).

The events are put on the shared time line (HLC, device, seq), the same on
every replica, and folded one by one. Each step names its event and the
fields of the touched entity whose *displayed* value changed (before →
after), the fields left in conflict, and whether the entity is removed.

Reproducible: a step depends only on the events folded so far and on the
fold (`FOLD_VERSION`, recorded in every step), so the same events - from a
log or from an export's signed bytes - and the same fold version give
byte-identical output (`encode_line`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from core.events.envelope import Event
from core.events.hlc import to_iso
from core.projections.history import timeline
from core.projections.plan_state import FOLD_VERSION, PlanState, evolve
from core.projections.plan_view import entity_view, view
from core.research.export import entity_of


class Step(msgspec.Struct, frozen=True):
    step: int
    fold: str
    event: str
    type: str
    author: str
    seq: int
    hlc: int
    time: str
    entity_kind: str | None
    entity: str | None
    changed: dict[str, list[Any]]  # field -> [before, after], displayed values
    conflicts: list[str]  # the entity's fields with several values after this step
    removed: bool


def replay(plan: bytes, events: Iterable[Event]) -> Iterator[tuple[Step, PlanState]]:
    """(step, state after it) for every event of `plan` in time-line order.
    The state is the same object each time, folded further: read it before
    asking for the next step."""
    state = PlanState(plan)
    for n, ev in enumerate(timeline(e for e in events if e.env.plan == plan), start=1):
        kind, hex_id = entity_of(ev)
        key = (kind, bytes.fromhex(hex_id)) if kind is not None and hex_id is not None else None
        ent = state.entities.get(key) if key is not None else None
        before = entity_view(ent)["fields"] if ent is not None else {}
        evolve(state, ev)
        ent = state.entities.get(key) if key is not None else None
        shown = entity_view(ent) if ent is not None else {"fields": {}}
        after = shown["fields"]
        changed = {
            f: [before.get(f), after.get(f)]
            for f in sorted(set(before) | set(after))
            if before.get(f) != after.get(f)
        }
        env = ev.env
        yield (
            Step(
                step=n,
                fold=FOLD_VERSION,
                event=ev.id.hex(),
                type=env.type,
                author=env.author.hex(),
                seq=env.seq,
                hlc=env.hlc,
                time=to_iso(env.hlc),
                entity_kind=kind,
                entity=hex_id,
                changed=changed,
                conflicts=list(shown.get("conflicts", [])),
                removed=bool(ent is not None and ent.removed),
            ),
            state,
        )


_encoder = msgspec.json.Encoder(order="deterministic")


def encode_line(step: Step, state: PlanState | None = None) -> bytes:
    """One JSON line: the step (a diff), or with `state` the whole plan view
    after it under `"state"`. Deterministic bytes."""
    if state is None:
        return _encoder.encode(step) + b"\n"
    data = msgspec.structs.asdict(step)
    data["state"] = view(state)
    return _encoder.encode(data) + b"\n"
