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

from core.events.bodies import BODY_BY_TAG, BODY_TYPES, Body
from core.events.envelope import FORMAT_VERSION, Envelope, Event
from core.projections.plan_state import (
    PlanState,
    _stored_recipe,
    canonical_bytes,
    evolve,
    evolve_stored,
    project,
)
from core.projections.plan_view import view

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
        body = draw(bodies([e.id for e in events]))
        data = msgspec.msgpack.encode(body)
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
        assert (_stored_recipe(tag) is None) == (tag in special), tag
    assert _stored_recipe("MemberAdded") is None
    assert _stored_recipe("SomethingFromTheFuture") is None


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
