"""The convergence guarantee: same events, any order, duplicates → same bytes."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from core.commands import edits
from core.events import bodies as b
from core.events.envelope import Event
from core.events.ids import new_uuid7
from core.projections.plan_state import canonical_bytes, project, restore, snapshot
from core.projections.plan_view import view
from tests.core.replica import Replica

TITLES = ["Aure", "Áltá", "Kárášjohka", "Vardø", "Sjøvegan", "Bagn"]
FIELDS = {"title": TITLES, "status": ["planned", "done", "postponed"], "place": ["A", "B"]}


def simulate(data: st.DataObject, n_devices: int, steps: int) -> list[Event]:
    ws, plan = new_uuid7(), new_uuid7()
    devices = [Replica(ws, plan, wall_ms=1_700_000_000_000 + i * 7) for i in range(n_devices)]
    origin = devices[0]
    _plan_id, bodies = edits.new_plan(title="Sentrum", municipality="Aure")
    created = origin.make(*[b.PlanCreated(title="Sentrum", municipality="Aure"), *bodies[1:3]])
    for d in devices[1:]:
        d.receive(created)
    for _ in range(steps):
        d = devices[data.draw(st.integers(0, n_devices - 1), label="device")]
        op = data.draw(
            st.sampled_from(
                ["plan", "add", "edit", "move", "remove", "resolve", "sync", "sync", "unknown"]
            ),
            label="op",
        )
        acts = sorted(eid for (k, eid), e in d.state.entities.items() if k == "activity")
        if op == "plan":
            value = data.draw(st.sampled_from(TITLES))
            d.make(*edits.set_fields(d.state, "plan", plan, {"title": value}))
        elif op == "add" or (not acts and op in ("edit", "move", "remove", "resolve")):
            _, body = edits.add_entity(
                d.state, "activity", {"title": data.draw(st.sampled_from(TITLES))}
            )
            d.make(body)
        elif op == "edit":
            target = data.draw(st.sampled_from(acts))
            field = data.draw(st.sampled_from(sorted(FIELDS)))
            value = data.draw(st.sampled_from(FIELDS[field]))
            d.make(*edits.set_fields(d.state, "activity", target, {field: value}))
        elif op == "move":
            target = data.draw(st.sampled_from(acts))
            pos = data.draw(st.sampled_from(["1", "V", "k", "z"]))
            d.make(*edits.set_fields(d.state, "activity", target, {"position": pos}))
        elif op == "remove":
            d.make(edits.remove_entity(d.state, "activity", data.draw(st.sampled_from(acts))))
        elif op == "resolve":
            d.make(
                edits.resolve(d.state, "plan", plan, "title", data.draw(st.sampled_from(TITLES)))
            )
        elif op == "unknown":
            continue
        else:  # sync: d receives a random subset of another device's events
            other = devices[data.draw(st.integers(0, n_devices - 1))]
            k = data.draw(st.integers(0, len(other.made)))
            d.receive(other.made[:k])
    return [ev for d in devices for ev in d.made]


@given(st.data(), st.integers(2, 5), st.integers(1, 30), st.randoms(use_true_random=False))
def test_any_order_with_duplicates_gives_identical_bytes(
    data: st.DataObject, n_devices: int, steps: int, rnd: random.Random
) -> None:
    events = simulate(data, n_devices, steps)
    plan = events[0].env.plan
    reference = project(plan, events)
    ref_bytes = canonical_bytes(reference)
    ref_view = view(reference)
    for _ in range(3):
        shuffled = events + rnd.sample(events, k=min(len(events), rnd.randint(0, 10)))
        rnd.shuffle(shuffled)
        state = project(plan, shuffled)
        assert canonical_bytes(state) == ref_bytes
        assert view(state) == ref_view
    # A checkpoint is just another initial state: snapshot mid-way, restore, fold the rest.
    cut = rnd.randint(0, len(events))
    order = rnd.sample(events, k=len(events))
    resumed = project(plan, order[cut:], restore(snapshot(project(plan, order[:cut]))))
    assert canonical_bytes(resumed) == ref_bytes


def test_causally_later_edit_beats_concurrent_edit_from_a_clock_ten_years_ahead() -> None:
    ws, plan = new_uuid7(), new_uuid7()
    ten_years_ms = 10 * 365 * 24 * 3600 * 1000
    honest = Replica(ws, plan)
    skewed = Replica(ws, plan, wall_ms=honest.wall_ms + ten_years_ms)
    created = honest.make(b.PlanCreated(title="Sentrum", municipality="Aure"))
    skewed.receive(created)
    from_future = skewed.make(*edits.set_fields(skewed.state, "plan", plan, {"title": "Framtid"}))
    honest.receive(from_future)
    # The honest device saw the skewed edit, so its later edit replaces it: causality wins.
    later = honest.make(*edits.set_fields(honest.state, "plan", plan, {"title": "Nåtid"}))
    assert later[0].env.hlc < from_future[0].env.hlc  # its clock did not jump ten years
    for order in ([*created, *from_future, *later], [*later, *from_future, *created]):
        state = project(plan, order)
        title = state.entity("plan", plan).fields["title"]
        assert [h.value for h in title.heads.values()] == ["Nåtid"]
        assert view(state)["conflicts"] == []
    # Contrast: truly concurrent edits are a visible conflict, shown with both values.
    other = Replica(ws, plan)
    other.receive(created)
    concurrent = other.make(*edits.set_fields(other.state, "plan", plan, {"title": "Parallell"}))
    state = project(plan, [*created, *from_future, *concurrent])
    (conflict,) = view(state)["conflicts"]
    assert {v["value"] for v in conflict["values"]} == {"Framtid", "Parallell"}
    assert {v["author"] for v in conflict["values"]} == {skewed.device.hex(), other.device.hex()}


def test_resolution_replaces_every_head_and_clears_the_conflict() -> None:
    ws, plan = new_uuid7(), new_uuid7()
    a, c = Replica(ws, plan), Replica(ws, plan)
    created = a.make(b.PlanCreated(title="Sentrum", municipality="Aure"))
    c.receive(created)
    e1 = a.make(*edits.set_fields(a.state, "plan", plan, {"desired_result": "Engasjement"}))
    e2 = c.make(*edits.set_fields(c.state, "plan", plan, {"desired_result": "Medvirkning"}))
    a.receive(e2)
    assert len(view(a.state)["conflicts"]) == 1
    fix = a.make(
        edits.resolve(a.state, "plan", plan, "desired_result", "Engasjement og medvirkning")
    )
    c.receive([*e1, *fix])
    for r in (a, c):
        assert view(r.state)["conflicts"] == []
        assert r.state.entity("plan", plan).value("desired_result") == "Engasjement og medvirkning"


def test_edit_after_removal_is_kept_and_surfaced() -> None:
    ws, plan = new_uuid7(), new_uuid7()
    a, c = Replica(ws, plan), Replica(ws, plan)
    created = a.make(b.PlanCreated(title="Sentrum", municipality="Aure"))
    act_id, body = edits.add_entity(a.state, "activity", {"title": "Folkemøte"})
    made = a.make(body)
    c.receive([*created, *made])
    removal = a.make(edits.remove_entity(a.state, "activity", act_id))
    late = c.make(*edits.set_fields(c.state, "activity", act_id, {"title": "Folkemøte i Aure"}))
    for order in ([*created, *made, *removal, *late], [*late, *removal, *made, *created]):
        v = view(project(plan, order))
        assert [e["id"] for e in v["removed"]] == [act_id.hex()]
        assert v["activities"] == []
        (surfaced,) = v["edited_after_removal"]
        assert surfaced["value"] == "Folkemøte i Aure" and surfaced["author"] == c.device.hex()


def test_a_conflict_on_a_reference_field_can_be_resolved_and_shown() -> None:
    ws, plan = new_uuid7(), new_uuid7()
    a, c = Replica(ws, plan), Replica(ws, plan)
    ph1, ph2 = new_uuid7(), new_uuid7()
    start = a.make(
        b.PlanCreated(title="Sentrum", municipality="Aure"),
        b.PhaseAdded(phase=ph1, name="Innsikt", position="V"),
        b.PhaseAdded(phase=ph2, name="Retning", position="k"),
    )
    act, body = edits.add_entity(a.state, "activity", {"title": "Gjestebud", "phase": ph1})
    start += a.make(body)
    c.receive(start)
    moved_a = a.make(*edits.set_fields(a.state, "activity", act, {"phase": ph2}))
    moved_c = c.make(*edits.set_fields(c.state, "activity", act, {"phase": None}))
    a.receive(moved_c)
    assert len(view(a.state)["conflicts"]) == 1
    fix = a.make(edits.resolve(a.state, "activity", act, "phase", ph2))
    state = project(plan, [*start, *moved_a, *moved_c, *fix])
    v = view(state)
    assert v["conflicts"] == [] and v["activities"][0]["fields"]["phase"] == ph2.hex()
    # A resolution that smuggles text into an id field is ignored, never crashes.
    from core.events.envelope import open_event

    forged = a.make(
        b.ConflictResolved(
            entity=act, kind="activity", field="phase", value="AAAAAAAAAAAAAAAAAAAAAA=="
        )
    )
    assert forged[0].id in project(plan, [*start, *forged]).rejected
    import pytest

    from core.events.envelope import EventError

    with pytest.raises(EventError):
        open_event(forged[0].raw)
