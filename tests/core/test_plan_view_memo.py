"""`view(state, memo)`: entity views kept between calls give the same view
as a fresh one, as long as the caller drops the entries events touched."""

from __future__ import annotations

from core.commands import edits
from core.commands.aure_demo import aure_plan
from core.events.envelope import seal
from core.events.ids import ZERO_HASH
from core.identity.keyfile import DeviceKey
from core.projections.plan_state import PlanState, evolve
from core.projections.plan_view import entities_of, view


def test_a_memo_gives_the_same_view_when_touched_entities_are_dropped() -> None:
    key = DeviceKey.from_seed(b"\x07" * 32)
    plan, bodies = aure_plan()
    state, prev, seq = PlanState(plan), ZERO_HASH, 0
    memo: dict[tuple[str, bytes], dict[str, object]] = {}

    def apply(body: object) -> None:
        nonlocal prev, seq
        seq += 1
        ev = seal(
            key,
            workspace=b"\x01" * 16,
            plan=plan,
            seq=seq,
            prev=prev,
            hlc=(1_700_000_000_000 + seq) << 16,
            body=body,
        )  # type: ignore[arg-type]
        prev = ev.id
        evolve(state, ev)
        memo.pop((ev.body.entity_kind(), ev.body.entity_id(plan)), None)  # type: ignore[union-attr]

    for body in bodies:
        apply(body)
    assert view(state, memo) == view(state)
    actor = next(eid for (kind, eid) in state.entities if kind == "actor")
    for body in edits.set_fields(state, "actor", actor, {"influence": 0, "stance": "opposing"}):
        apply(body)
    apply(edits.remove_entity(state, "actor", actor))
    fresh = view(state)
    assert view(state, memo) == fresh
    assert entities_of(state, "actor") == fresh["actors"]
    assert entities_of(state, "phase") == fresh["phases"]
