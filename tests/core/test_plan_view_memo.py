"""`view(state, memo)`: entity views kept between calls give the same view
as a fresh one, as long as the caller drops the entries events touched."""

from __future__ import annotations

from core.commands import edits
from core.commands.aure_demo import aure_plan
from core.events.envelope import seal
from core.events.ids import ZERO_HASH
from core.identity.keyfile import DeviceKey
from core.projections.plan_state import PlanState, evolve
from core.projections.plan_view import Memo, conflicts, edited_after_removal, entities_of, view


def test_a_memo_gives_the_same_view_when_touched_entities_are_dropped() -> None:
    key = DeviceKey.from_seed(b"\x07" * 32)
    plan, bodies = aure_plan()
    state, prev, seq = PlanState(plan), ZERO_HASH, 0
    memo: Memo = {}

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


def test_a_memo_keeps_conflicts_and_edits_after_removal_true() -> None:
    """Conflicts and edits after a removal come from the memo too: equal to a
    fresh view when a conflict appears, is resolved, and after a removal."""
    kari, bjorn = DeviceKey.from_seed(b"\x07" * 32), DeviceKey.from_seed(b"\x08" * 32)
    plan, bodies = aure_plan()
    state = PlanState(plan)
    chains = {kari.public_key: [ZERO_HASH, 0], bjorn.public_key: [ZERO_HASH, 0]}
    memo: Memo = {}
    clock = 1_700_000_000_000

    def apply(key: DeviceKey, body: object) -> None:
        nonlocal clock
        chain = chains[key.public_key]
        chain[1] += 1
        clock += 1
        ev = seal(
            key,
            workspace=b"\x01" * 16,
            plan=plan,
            seq=chain[1],
            prev=chain[0],
            hlc=clock << 16,
            body=body,
        )  # type: ignore[arg-type]
        chain[0] = ev.id
        evolve(state, ev)
        memo.pop((ev.body.entity_kind(), ev.body.entity_id(plan)), None)  # type: ignore[union-attr]

    for body in bodies:
        apply(kari, body)
    assert view(state, memo) == view(state)
    actor = next(eid for (kind, eid) in state.entities if kind == "actor")
    # Both edit the same field, neither seeing the other: a conflict.
    mine = edits.set_fields(state, "actor", actor, {"stance": "opposing"})
    theirs = edits.set_fields(state, "actor", actor, {"stance": "supportive"})
    for body in mine:
        apply(kari, body)
    for body in theirs:
        apply(bjorn, body)
    fresh = view(state)
    assert fresh["conflicts"] and fresh["conflicts"] == conflicts(state)
    first = view(state, memo)
    assert first == fresh
    # Nothing touched since: the conflicts come from the memo, not a new walk.
    assert view(state, memo)["conflicts"][0] is first["conflicts"][0]
    heads = fresh["conflicts"][0]["values"]
    apply(kari, edits.resolve(state, "actor", actor, "stance", heads[0]["value"]))
    fresh = view(state)
    assert not fresh["conflicts"]
    assert view(state, memo) == fresh
    # Removed by one; edited by the other, who had not seen the removal.
    late = edits.set_fields(state, "actor", actor, {"influence": 3})
    apply(kari, edits.remove_entity(state, "actor", actor))
    for body in late:
        apply(bjorn, body)
    fresh = view(state)
    assert fresh["edited_after_removal"] == edited_after_removal(state) != []
    assert view(state, memo) == fresh
