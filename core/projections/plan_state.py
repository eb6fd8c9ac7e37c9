"""The plan projection: a pure, order-independent fold of a plan's events.

Theory of operation
-------------------
Every entity is keyed by (kind, id). Every field of an entity keeps

* `replaced`: the union of the `replaces` lists of all edits of the field;
* `heads`: the edits of the field whose id is not in `replaced`.

Both are pure set functions of the events folded (an edit that arrives
after the edit replacing it is never a head; one that arrived before is
dropped from the heads when the replacement comes), so folding the same
events in any order, with duplicates, gives the same state, and the
canonical bytes (`canonical_bytes`, sorted) are identical too. Removals and
the ids a removal saw are sets as well.

One head: that value. Several heads: a conflict; the displayed value is the
head with the highest (HLC, device) but every head stays visible until an
edit replaces them all. Causality (replaces) decides before clocks: an edit
that saw another replaces it whatever either clock says.

Removal is a tombstone (`EntityRemoved`); an entity with any tombstone is
removed. A head the remover had not seen (not in its `replaces`) is an
"edit after removal": kept and surfaced in `PlanView.edited_after_removal`.

Unknown event types are counted in `skipped` and otherwise ignored.
`evolve(state, event)` folds one event in place and returns the state;
`project(plan, events)` folds many. A checkpoint is just a decoded state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Any, cast

import msgspec
from msgspec import UNSET

from core.events.bodies import (
    BODY_BY_TAG,
    ROLE_EDIT,
    ROLE_MEMBERSHIP,
    ROLE_REMOVAL,
    ROLE_RESOLUTION,
    ROLE_UNKNOWN,
    Body,
    ConflictResolved,
)
from core.events.envelope import Event, UnknownBody
from core.events.ids import HASH_LEN
from core.events.schema import FieldError, validate_value

FOLD_VERSION = "plan-state/4"


class Head(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One concurrent value of a field: who set it, when, to what."""

    hlc: int
    author: bytes
    value: Any


class FieldState(msgspec.Struct, array_like=True, gc=False):
    """Heads and replaced ids of one field; also its own snapshot form.

    A restored field keeps its replaced ids as one packed blob (`packed`)
    until a fold first touches the field: opening a checkpoint then costs one
    bytes object per field instead of one per edit ever made. `unpacked` is
    the live set (None while packed).
    """

    heads: dict[bytes, Head] = msgspec.field(default_factory=dict)
    packed: bytes = b""
    unpacked: set[bytes] | None = msgspec.field(default_factory=set)

    @property
    def replaced(self) -> set[bytes]:
        if self.unpacked is None:
            blob = self.packed
            self.unpacked = {blob[i : i + HASH_LEN] for i in range(0, len(blob), HASH_LEN)}
            self.packed = b""
        return self.unpacked

    def packed_replaced(self, exclude: set[bytes] | None = None) -> bytes:
        if self.unpacked is None and not exclude:
            return self.packed
        ids = self.replaced if not exclude else self.replaced - exclude
        return b"".join(sorted(ids))

    def winner(self) -> tuple[bytes, Head] | None:
        """The displayed head: highest (HLC, device, event id)."""
        if not self.heads:
            return None
        return max(self.heads.items(), key=lambda kv: (kv[1].hlc, kv[1].author, kv[0]))


class EntityState(msgspec.Struct, array_like=True, gc=False):
    """One entity's fields and tombstones; also its own snapshot form."""

    kind: str
    id: bytes
    created: bytes | None = None  # smallest creation event id seen
    fields: dict[str, FieldState] = msgspec.field(default_factory=dict)
    removals: dict[bytes, Head] = msgspec.field(default_factory=dict)  # id -> (hlc, author)
    removal_seen: set[bytes] = msgspec.field(default_factory=set)

    @property
    def removed(self) -> bool:
        return bool(self.removals)

    def value(self, field: str, default: Any = None) -> Any:
        fs = self.fields.get(field)
        win = fs.winner() if fs else None
        return win[1].value if win else default


class PlanState:
    """Mutable fold state for one plan. Use `evolve`/`project`, not the fields."""

    __slots__ = ("applied", "entities", "events", "plan", "rejected", "skipped")

    def __init__(self, plan: bytes) -> None:
        self.plan = plan
        self.entities: dict[tuple[str, bytes], EntityState] = {}
        self.skipped: dict[str, int] = {}  # unknown event type -> count
        self.rejected: dict[bytes, str] = {}  # event id -> why the fold ignored it
        self.events = 0  # distinct events folded
        self.applied: set[bytes] = set()  # for idempotence; not part of the state's bytes

    def entity(self, kind: str, entity_id: bytes) -> EntityState | None:
        return self.entities.get((kind, entity_id))

    def canonical(self) -> dict[str, Any]:
        """The state as sorted builtins: equal states give equal bytes."""
        ents = {}
        for (kind, eid), ent in sorted(self.entities.items()):
            ents[f"{kind}:{eid.hex()}"] = {
                "created": ent.created,
                "fields": {
                    name: {
                        "heads": sorted(
                            (k, [h.hlc, h.author, h.value]) for k, h in fs.heads.items()
                        ),
                        "replaced": sorted(fs.replaced),
                    }
                    for name, fs in sorted(ent.fields.items())
                },
                "removals": sorted((k, [h.hlc, h.author]) for k, h in ent.removals.items()),
                "removal_seen": sorted(ent.removal_seen),
            }
        return {
            "fold": FOLD_VERSION,
            "plan": self.plan,
            "entities": ents,
            "skipped": dict(sorted(self.skipped.items())),
            "rejected": sorted(self.rejected.items()),
            "events": self.events,
        }


_encoder = msgspec.msgpack.Encoder(order="deterministic")


def canonical_bytes(state: PlanState) -> bytes:
    return _encoder.encode(state.canonical())


# What the fold needs to know about a body class, looked up once per class:
# (role, entity kind or None when the body names it, id getter or None for
# the plan itself, creates, entity field names, values getter or None when
# the class computes its own `sets()`, carries `replaces`).
_Recipe = tuple[
    int,
    str | None,
    Callable[[Any], bytes] | None,
    bool,
    tuple[str, ...],
    Callable[[Any], tuple[Any, ...]] | None,
    bool,
]
_RECIPES: dict[type, _Recipe] = {}


def _recipe(cls: type) -> _Recipe:
    found = _RECIPES.get(cls)
    if found is not None:
        return found
    role = getattr(cls, "ROLE", ROLE_UNKNOWN)
    if not issubclass(cls, Body):
        found = (role, None, None, False, (), None, False)
    else:
        own_kind = cls.entity_kind is Body.entity_kind
        own_sets = cls.sets is Body.sets
        id_field = cls.ID_FIELD
        values = cls._VALUES if own_sets else None
        if own_sets and len(cls._FIELDS) == 1:
            getter = attrgetter(cls._SETTABLE[0][0])
            values = lambda body: (getter(body),)  # noqa: E731
        elif own_sets and cls._SETTABLE:
            values = attrgetter(*(attr for attr, _ in cls._SETTABLE))
        found = (
            role,
            cls.ENTITY if own_kind else None,
            attrgetter(id_field) if id_field else None,
            cls.CREATES,
            cls._FIELDS,
            values,
            "replaces" in cls.__struct_fields__,
        )
    _RECIPES[cls] = found
    return found


def evolve(state: PlanState, event: Event) -> PlanState:
    """Fold one event into `state` (in place) and return it.

    Idempotent within one state's life (`applied`). A restored checkpoint does
    not remember which events it covers: fold only events after it (the log
    does, by receive order).
    """
    eid = event.id
    applied = state.applied
    if eid in applied:
        return state
    applied.add(eid)
    state.events += 1
    body = event.body
    role, kind, get_id, creates, names, get_values, has_replaces = _RECIPES.get(
        type(body)
    ) or _recipe(type(body))
    if role != ROLE_EDIT or kind is None or get_values is None:
        return _evolve_special(state, event, role)
    env = event.env
    key = (kind, env.plan if get_id is None else get_id(body))
    entities = state.entities
    ent = entities.get(key)
    if ent is None:
        ent = entities[key] = EntityState(kind, key[1], None, {}, {}, set())
    if creates and (ent.created is None or eid < ent.created):
        ent.created = eid
    replaces = body.replaces if has_replaces else None  # type: ignore[union-attr]
    _set_fields(
        ent.fields, zip(names, get_values(body), strict=True), replaces, eid, env.hlc, env.author
    )
    return state


def _set_fields(
    fields: dict[str, FieldState],
    pairs: Iterable[tuple[str, Any]],
    replaces: list[bytes] | None,
    eid: bytes,
    hlc: int,
    author: bytes,
) -> None:
    """The per-field merge (module docstring): drop the replaced heads,
    remember what was replaced, and add this edit as a head unless an edit
    already folded replaced it. Values that are UNSET are not set."""
    for name, value in pairs:
        if value is UNSET:
            continue
        fs = fields.get(name)
        if fs is None:
            fs = fields[name] = FieldState({}, b"", set())
        replaced = fs.unpacked
        if replaced is None:
            replaced = fs.replaced
        if replaces:
            heads = fs.heads
            for r in replaces:
                heads.pop(r, None)
            replaced.update(replaces)
        if eid not in replaced:
            fs.heads[eid] = Head(hlc, author, value)


def _evolve_special(state: PlanState, event: Event, role: int) -> PlanState:
    """The rarer events: unknown types, membership, removals, resolutions and
    bodies that compute their own fields (already counted in `events`)."""
    eid = event.id
    body = event.body
    if role == ROLE_UNKNOWN:
        body = cast(UnknownBody, body)
        state.skipped[body.type] = state.skipped.get(body.type, 0) + 1
        return state
    if role == ROLE_MEMBERSHIP:  # the workspace's membership log, not a plan's
        state.skipped[event.env.type] = state.skipped.get(event.env.type, 0) + 1
        return state
    body = cast(Body, body)
    env = event.env
    kind = body.entity_kind()
    if role == ROLE_RESOLUTION:
        body = cast(ConflictResolved, body)
        try:
            pairs = [(body.field, validate_value(kind, body.field, body.value))]
        except FieldError as exc:
            state.rejected[eid] = str(exc)
            return state
    elif role == ROLE_REMOVAL and kind == "plan":
        state.rejected[eid] = "a plan is archived, not removed"
        return state
    else:
        pairs = body.sets()
    key = (kind, body.entity_id(env.plan))
    ent = state.entities.get(key)
    if ent is None:
        ent = state.entities[key] = EntityState(key[0], key[1], None, {}, {}, set())
    replaces = body.replaced()
    if role == ROLE_REMOVAL:
        ent.removals[eid] = Head(env.hlc, env.author, None)
        ent.removal_seen.update(replaces)
        return state
    if body.CREATES and (ent.created is None or eid < ent.created):
        ent.created = eid
    _set_fields(ent.fields, pairs, replaces, eid, env.hlc, env.author)
    return state


# --- folding stored events straight from their body bytes ---------------------------------

# What `evolve_stored` needs of a plain edit type: (entity kind, struct field
# holding the entity id or None for the plan, creates, {struct field: entity
# field}, {struct field: default factory} for the settable fields whose
# default is a value rather than UNSET: msgpack leaves defaults out, the
# struct decoder fills them in; whether the type has `replaces`: a key the
# type does not declare is ignored, as the struct decoder ignores it). None:
# the type needs `evolve`.
_StoredRecipe = tuple[str, str | None, bool, dict[str, str], dict[str, Callable[[], Any]], bool]
_STORED: dict[str, _StoredRecipe | None] = {}
_any_body = msgspec.msgpack.Decoder()


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def stored_recipe(tag: str) -> _StoredRecipe | None:
    """What `evolve_stored` needs to fold a type from its body bytes (see
    `_StoredRecipe`), or None if the type needs `evolve`; cached."""
    if tag in _STORED:
        return _STORED[tag]
    cls = BODY_BY_TAG.get(tag)
    found: _StoredRecipe | None = None
    if cls is not None:
        role, kind, _, creates, _, get_values, has_replaces = _recipe(cls)
        if role == ROLE_EDIT and kind is not None and get_values is not None:
            names = dict(cls._SETTABLE)
            defaults: dict[str, Callable[[], Any]] = {}
            # The struct's own defaults (for its last fields, in order); not
            # `msgspec.inspect` / `structs.fields`, which resolve every type
            # hint (~20 ms per process for the catalogue).
            given, fields = cls.__struct_defaults__, cls.__struct_fields__
            for name, default in zip(fields[len(fields) - len(given) :], given, strict=True):
                if name not in names or default is UNSET:
                    continue  # UNSET: a field absent from the body is not set
                factory = getattr(default, "factory", None)  # msgspec's Factory
                defaults[name] = factory if callable(factory) else _constant(default)
            found = (kind, cls.ID_FIELD, creates, names, defaults, has_replaces)
    _STORED[tag] = found
    return found


def evolve_stored(
    state: PlanState, eid: bytes, hlc: int, author: bytes, tag: str, body: bytes | memoryview
) -> bool:
    """Fold one event of a log into `state` from its parts, as `evolve`
    would, and say whether it could: False for the kinds `evolve` must
    decode (removals, resolutions, key questions, membership, unknown or
    upcast types); decode those and call `evolve`.

    For events a log validated when it stored them (`open_event`, strict):
    the body is decoded as plain msgpack, so only the fields it carries are
    visited and no struct is built; keys the type does not declare (a newer
    version's, say) are ignored, as the struct decoder ignores them. Plan
    fields are keyed by `state.plan`: fold only that plan's rows. Every value
    an edit type may hold is a string, number, bool, None, bytes or a list of
    them, which decode to the same Python values either way
    (tests/core/test_evolve_stored.py)."""
    recipe = _STORED.get(tag, False)
    if recipe is False:
        recipe = stored_recipe(tag)
    if recipe is None:
        return False
    applied = state.applied
    if eid in applied:
        return True
    applied.add(eid)
    state.events += 1
    kind, id_field, creates, names, defaults, has_replaces = recipe  # type: ignore[misc]
    data: dict[str, Any] = _any_body.decode(body)
    key = (kind, state.plan if id_field is None else data[id_field])
    entities = state.entities
    ent = entities.get(key)
    if ent is None:
        ent = entities[key] = EntityState(kind, key[1], None, {}, {}, set())
    if creates and (ent.created is None or eid < ent.created):
        ent.created = eid
    for name, default in defaults.items():
        if name not in data:
            data[name] = default()
    _set_fields(
        ent.fields,
        ((names[k], v) for k, v in data.items() if k in names),
        data.get("replaces") if has_replaces else None,
        eid,
        hlc,
        author,
    )
    return True


def project(plan: bytes, events: Iterable[Event], state: PlanState | None = None) -> PlanState:
    """Fold `events` into `state` (a fresh state if None) and return it."""
    st = PlanState(plan) if state is None else state
    for event in events:
        evolve(st, event)
    return st


# --- checkpoints: a state is its own snapshot ---------------------------------------------


class _Snapshot(msgspec.Struct, array_like=True, gc=False):
    fold: str
    plan: bytes
    events: int
    skipped: dict[str, int]
    rejected: dict[bytes, str]
    entities: list[EntityState]


def snapshot(state: PlanState, *, prune: bool = False) -> bytes:
    """Serialise the state for a checkpoint; it decodes straight back into
    `EntityState`/`FieldState` structs (see `restore`).

    With `prune`, replaced ids of events already folded into this state are
    left out: they can never arrive again, so folding any *new* events into
    the restored state gives the same heads and the same view. Pruned
    snapshots serve time travel (read-only); plan checkpoints keep every id so
    that a rebuild from zero equals them byte for byte.
    """
    exclude = state.applied if prune else None
    ents = [
        EntityState(
            kind=ent.kind,
            id=ent.id,
            created=ent.created,
            fields={
                name: FieldState(heads=fs.heads, packed=fs.packed_replaced(exclude), unpacked=None)
                for name, fs in sorted(ent.fields.items())
            },
            removals=ent.removals,
            removal_seen=ent.removal_seen,
        )
        for _, ent in sorted(state.entities.items())
    ]
    snap = _Snapshot(
        fold=FOLD_VERSION,
        plan=state.plan,
        events=state.events,
        skipped=state.skipped,
        rejected=state.rejected,
        entities=ents,
    )
    return _snapshot_encoder.encode(snap)


_snapshot_encoder = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(_Snapshot)


class SnapshotMismatch(ValueError):
    """A checkpoint written by another fold version; rebuild instead."""


def restore(data: bytes) -> PlanState:
    snap = _snapshot_decoder.decode(data)
    if snap.fold != FOLD_VERSION:
        raise SnapshotMismatch(f"checkpoint fold {snap.fold!r} != {FOLD_VERSION!r}")
    state = PlanState(snap.plan)
    state.events = snap.events
    state.skipped = snap.skipped
    state.rejected = snap.rejected
    state.entities = {(ent.kind, ent.id): ent for ent in snap.entities}
    return state
