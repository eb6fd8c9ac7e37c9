"""Folding stored events from their body bytes (`evolve_stored`, what
rebuilds, plan loads and time travel use) gives exactly the state `evolve`
gives from decoded events, for every body type of the catalogue."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import given, settings
from hypothesis import strategies as st

from core.events import bodies as b
from core.events.bodies import BODY_BY_TAG, BODY_TYPES, Body
from core.events.envelope import FORMAT_VERSION, Envelope, Event, open_event
from core.events.ids import new_uuid7
from core.projections.plan_state import (
    PlanState,
    canonical_bytes,
    evolve,
    evolve_stored,
    project,
    stored_recipe,
)
from core.projections.plan_view import view
from core.store import time_travel
from core.store.event_log import EventLog
from core.store.verify_log import _check_caches
from tests.core.replica import Replica

PLAN = bytes(range(16))
ENTITY_IDS = [bytes([i]) * 16 for i in range(1, 4)] + [PLAN]
AUTHORS = [bytes([0xA0 + i]) * 32 for i in range(3)]
TAGS = sorted(BODY_BY_TAG)


def values_of(t: Any, ids: list[bytes]) -> st.SearchStrategy[Any]:
    """Values of a msgspec field type (constraints aside: the fold does not
    check them, and both paths must agree on whatever is stored)."""
    if isinstance(t, mi.UnionType):
        return st.one_of(*(values_of(x, ids) for x in t.types))
    if isinstance(t, mi.StrType):
        return st.sampled_from(["", "Aure", "Áltá čđŋšŧž", "2024-05-08", "planned"])
    if isinstance(t, mi.IntType):
        return st.integers(-5, 2**40)
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.BytesType):
        return st.sampled_from(ids) if t.min_length == 16 else st.binary(max_size=32)
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(list(t.values))
    if isinstance(t, mi.ListType):
        return st.lists(values_of(t.item_type, ids), max_size=3)
    if isinstance(t, mi.DictType):
        return st.dictionaries(st.sampled_from(["a", "b"]), values_of(t.value_type, ids))
    if isinstance(t, mi.StructType):
        return st.builds(
            lambda **kw: t.cls(**kw),
            **{f.name: values_of(f.type, ids) for f in t.fields},
        )
    if isinstance(t, mi.AnyType):
        return st.one_of(st.none(), st.integers(0, 9), st.sampled_from(["x", "Sápmi"]))
    raise AssertionError(f"no strategy for {t!r}")


@st.composite
def bodies(draw: st.DrawFn, seen: list[bytes]) -> Body:
    cls = BODY_BY_TAG[draw(st.sampled_from(TAGS))]
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    kwargs = {}
    for f in info.fields:
        if f.name == "replaces":
            if seen:
                kwargs["replaces"] = draw(st.lists(st.sampled_from(seen), max_size=3))
            continue
        if f.required or draw(st.booleans()):
            kwargs[f.name] = draw(values_of(f.type, ENTITY_IDS))
    return cls(**kwargs)


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    events: list[Event] = []
    for seq in range(1, draw(st.integers(1, 40)) + 1):
        seen = [e.id for e in events]
        body = draw(bodies(seen))
        data = msgspec.msgpack.encode(body)
        if draw(st.booleans()):
            # Keys this version does not declare (a newer version's): the
            # struct decoder ignores them, so the stored fold must too, even a
            # `replaces` on a type without one.
            extra = msgspec.msgpack.decode(data)
            if "replaces" not in type(body).__struct_fields__:
                extra["replaces"] = draw(st.sampled_from([seen[-1:], 5, "x"]))
            extra["added_in_a_later_version"] = [1, {"a": None}]
            data = msgspec.msgpack.encode(extra)
        tag = next(t for t, c in BODY_BY_TAG.items() if c is type(body))
        eid = hashlib.sha256(data + seq.to_bytes(4, "big")).digest()
        env = Envelope(
            FORMAT_VERSION,
            bytes(16),
            PLAN,
            draw(st.sampled_from(AUTHORS)),
            seq,
            bytes(32),
            draw(st.integers(1, 50)),
            tag,
            msgspec.Raw(data),
        )
        # The struct `evolve` folds (its values need not meet the catalogue's
        # constraints here: neither fold checks them).
        events.append(Event(eid, data, env, body))
    if draw(st.booleans()):
        events += events[: draw(st.integers(0, len(events)))]  # duplicates
    return events


def fold_stored(events: list[Event]) -> tuple[PlanState, int]:
    state, fast = PlanState(PLAN), 0
    for ev in events:
        env = ev.env
        body = bytes(env.body)
        if evolve_stored(state, ev.id, env.hlc, env.author, env.type, body):
            fast += 1
        else:
            evolve(state, ev)
    return state, fast


@settings(max_examples=300, deadline=None)
@given(histories())
def test_stored_fold_equals_the_decoded_fold(events: list[Event]) -> None:
    expected = project(PLAN, events)
    got, _ = fold_stored(events)
    assert canonical_bytes(got) == canonical_bytes(expected)
    assert view(got) == view(expected)


def test_every_plain_edit_type_takes_the_stored_path() -> None:
    """The rarer kinds go through `evolve`; every other edit type of the
    catalogue is folded from its bytes (else the fast path silently shrinks)."""
    special = {"KeyQuestionAnswered", "EntityRemoved", "ConflictResolved"}
    for cls in BODY_TYPES:
        tag = next(t for t, c in BODY_BY_TAG.items() if c is cls)
        assert (stored_recipe(tag) is None) == (tag in special), tag
    assert stored_recipe("MemberAdded") is None
    assert stored_recipe("SomethingFromTheFuture") is None


def test_absent_defaults_are_set_as_the_struct_decoder_sets_them() -> None:
    """msgpack leaves a default out (`omit_defaults`); the struct decoder
    fills it in and the fold records it, so the stored path must too, with a
    fresh list for a list default."""
    created = BODY_BY_TAG["PlanCreated"](title="Aure", municipality="Aure")
    data = msgspec.msgpack.encode(created)
    assert b"themes" not in data and b"county" not in data
    states = []
    for eid in (b"\x01" * 32, b"\x02" * 32):
        state = PlanState(PLAN)
        assert evolve_stored(state, eid, 5, AUTHORS[0], "PlanCreated", data)
        states.append(state)
        plan = state.entities[("plan", PLAN)]
        assert plan.value("themes") == [] and plan.value("county") is None
        assert plan.value("kind") == "long" and plan.created == eid
    a, b = (s.entities[("plan", PLAN)].value("themes") for s in states)
    assert a is not b


def _sign_map(dev: Replica, tag: str, body: dict[str, Any]) -> Event:
    """What a newer version (or another implementation) might sign: a body
    map with keys this version does not declare. Opened strictly, as ingest
    opens it."""
    dev.seq += 1
    dev.wall_ms += 1
    env = Envelope(
        FORMAT_VERSION,
        dev.workspace,
        dev.plan,
        dev.device,
        dev.seq,
        dev.prev,
        dev.clock.now(dev.wall_ms),
        tag,
        msgspec.Raw(msgspec.msgpack.encode(body)),
    )
    payload = msgspec.msgpack.Encoder(order="deterministic").encode(env)
    ev = open_event(payload + dev.key.sign(payload))
    dev.prev = ev.id
    dev.made.append(ev)
    return ev


async def test_a_log_folds_undeclared_keys_as_evolve_does(tmp_path, monkeypatch) -> None:
    """A signed `SubGoalAdded` that carries a `replaces` key (the type has
    none in this version) must not replace anything on load, rebuild or time
    travel, and a `replaces` that is not a list must not break a load."""
    monkeypatch.setattr(time_travel, "TIMELINE_STEP", 2)
    monkeypatch.setattr(time_travel, "TIMELINE_FORMAT", "test+step2")
    ws, plan = new_uuid7(), new_uuid7()
    a, c = Replica(ws, plan), Replica(ws, plan)
    a.make(b.PlanCreated(title="Aure", municipality="Aure"))
    goal = new_uuid7()
    (added,) = a.make(b.SubGoalAdded(sub_goal=goal, text="one"))
    (revised,) = a.make(b.SubGoalRevised(sub_goal=goal, text="two", replaces=[added.id]))
    _sign_map(c, "SubGoalAdded", {"sub_goal": goal, "text": "three", "replaces": [revised.id]})
    _sign_map(c, "NoteWritten", {"note": new_uuid7(), "target": None, "text": "x", "replaces": 5})
    events = [*a.made, *c.made]
    expected = project(plan, events)
    assert len(expected.entity("sub_goal", goal).fields["text"].heads) == 2  # a conflict
    log = await EventLog.open(tmp_path / "a.db", workspace=ws)
    try:
        report = await log.ingest([e.raw for e in events])
        assert len(report.accepted) == len(events)
        for state in (await log.rebuild_state(plan), await log.load_state(plan)):
            assert canonical_bytes(state) == canonical_bytes(expected)
        assert await time_travel.ensure_checkpoints(log, plan) > 0
        as_of = await time_travel.state_as_of(log, plan, time_travel.END_OF_TIME)
        assert view(as_of) == view(expected)
        assert await _check_caches(log) == []
    finally:
        await log.close()
