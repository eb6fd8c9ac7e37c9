"""Build event bodies for edits, with the right `replaces` (pure)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import msgspec

from core.events.bodies import (
    KEY_QUESTIONS,
    ActivityCompleted,
    ActivityRevised,
    Body,
    ConflictResolved,
    EntityRemoved,
    KeyQuestionAnswered,
    PhaseAdded,
    PlanCreated,
    ResearchConsentGiven,
    ResearchConsentWithdrawn,
)
from core.events.ids import new_uuid7
from core.events.schema import (
    CREATION_EVENT,
    ENTITY_FIELDS,
    FIELD_SETTERS,
    FieldError,
    check_calendar_date,
    validate_value,
)
from core.projections.plan_state import PlanState
from core.projections.plan_view import ORDERED_KINDS
from core.projections.positions import key_between, spread


class EditError(ValueError):
    """An edit that cannot be made; the message says why, for a person."""


def phase_template() -> list[dict[str, Any]]:
    """The default phases (editable data in phase_template.json)."""
    text = resources.files("core.commands").joinpath("phase_template.json").read_text("utf-8")
    phases: list[dict[str, Any]] = json.loads(text)["phases"]
    return phases


def new_plan(
    *, title: str, municipality: str, template: bool = True, **fields: Any
) -> tuple[bytes, list[Body]]:
    """A new plan id and its first events: PlanCreated and the template phases."""
    plan_id = new_uuid7()
    try:
        bodies: list[Body] = [PlanCreated(title=title, municipality=municipality, **fields)]
    except TypeError as exc:
        raise EditError(str(exc)) from None
    if template:
        phases = phase_template()
        for pos, ph in zip(spread(len(phases)), phases, strict=True):
            bodies.append(
                PhaseAdded(
                    phase=new_uuid7(),
                    name=ph["name"],
                    position=pos,
                    key_question=ph["key_question"],
                )
            )
    _validate(bodies)
    return plan_id, bodies


def _validate(bodies: list[Body]) -> None:
    for body in bodies:
        try:
            msgspec.convert(msgspec.to_builtins(body), type(body))
        except msgspec.ValidationError as exc:
            raise EditError(f"{type(body).__name__}: {exc}") from None


def heads(state: PlanState, kind: str, entity_id: bytes, field: str) -> list[bytes]:
    ent = state.entity(kind, entity_id)
    if ent is None or field not in ent.fields:
        return []
    return sorted(ent.fields[field].heads)


def _check_values(kind: str, values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for field, value in values.items():
        try:
            out[field] = validate_value(kind, field, value)
            check_calendar_date(kind, field, out[field])
        except FieldError as exc:
            raise EditError(str(exc)) from None
    return out


def _setter(kind: str, field: str) -> type[Body]:
    if kind == "plan" and field.startswith("research_consent"):
        raise EditError("research consent is given or withdrawn as a whole (plan consent)")
    for cls in FIELD_SETTERS.get((kind, field), []):
        if not cls.CREATES and cls is not ActivityCompleted:
            return cls
    raise EditError(f"{kind}.{field} cannot be edited")


def set_fields(state: PlanState, kind: str, entity_id: bytes, values: dict[str, Any]) -> list[Body]:
    """Bodies that set `values` on an existing entity, one per event kind,
    each replacing the current heads of the fields it sets."""
    if not values:
        raise EditError("nothing to change")
    ent = state.entity(kind, entity_id)
    if ent is None:
        raise EditError(f"no {kind} {entity_id.hex()} in this plan")
    values = _check_values(kind, values)
    bodies: list[Body] = []
    groups: dict[type[Body], dict[str, Any]] = {}
    for field, value in values.items():
        if kind == "plan" and field.startswith("q_"):
            replaces = heads(state, kind, entity_id, field)
            bodies.append(KeyQuestionAnswered(question=field[2:], answer=value, replaces=replaces))  # type: ignore[arg-type]
            continue
        if kind == "activity" and field == "status" and value == "done":
            cls: type[Body] = ActivityCompleted
        else:
            cls = _setter(kind, field)
        groups.setdefault(cls, {})[field] = value
    # An outcome given together with completion travels in the completion event.
    revised = groups.get(ActivityRevised)
    if ActivityCompleted in groups and revised and "outcome" in revised:
        groups[ActivityCompleted]["outcome"] = revised.pop("outcome")
        if not revised:
            del groups[ActivityRevised]
    for cls, fields in groups.items():
        reverse = {field: attr for attr, field in cls._SETTABLE}
        replaces = sorted({h for f in fields for h in heads(state, kind, entity_id, f)})
        kwargs: dict[str, Any] = {reverse[f]: v for f, v in fields.items()}
        if cls.ID_FIELD:
            kwargs[cls.ID_FIELD] = entity_id
        bodies.append(cls(**kwargs, replaces=replaces))
    _validate(bodies)
    return bodies


def last_position(state: PlanState, kind: str) -> str | None:
    best: str | None = None
    for (k, _), ent in state.entities.items():
        if k != kind or ent.removed:
            continue
        pos = ent.value("position")
        if isinstance(pos, str) and (best is None or pos > best):
            best = pos
    return best


def add_entity(state: PlanState, kind: str, values: dict[str, Any]) -> tuple[bytes, Body]:
    """A new entity of `kind` with `values`; ordered kinds go last."""
    cls = CREATION_EVENT.get(kind)
    if cls is None or kind == "plan":
        kinds = ", ".join(k for k in CREATION_EVENT if k != "plan")
        raise EditError(f"cannot add a {kind}; kinds: {kinds}")
    values = _check_values(kind, values)
    if kind in ORDERED_KINDS and "position" not in values:
        values["position"] = key_between(last_position(state, kind), None)
    entity_id = new_uuid7()
    reverse = {field: attr for attr, field in cls._SETTABLE}
    try:
        body = cls(**{reverse[f]: v for f, v in values.items()}, **{cls.ID_FIELD or "": entity_id})
    except TypeError as exc:
        missing = [f for f in ENTITY_FIELDS[kind] if f not in values]
        raise EditError(f"{kind}: {exc} (fields: {', '.join(missing)})") from None
    _validate([body])
    return entity_id, body


def remove_entity(state: PlanState, kind: str, entity_id: bytes) -> Body:
    ent = state.entity(kind, entity_id)
    if ent is None:
        raise EditError(f"no {kind} {entity_id.hex()} in this plan")
    if kind == "plan":
        raise EditError("a plan is archived (set status archived), not removed")
    seen = sorted({h for fs in ent.fields.values() for h in fs.heads})
    return EntityRemoved(entity=entity_id, kind=kind, replaces=seen)  # type: ignore[arg-type]


def resolve(state: PlanState, kind: str, entity_id: bytes, field: str, value: Any) -> Body:
    """Resolve a field's conflict: one value replacing every current head."""
    ent = state.entity(kind, entity_id)
    if ent is None or field not in ent.fields:
        raise EditError(f"no field {field!r} on {kind} {entity_id.hex()}")
    value = _check_values(kind, {field: value})[field]
    return ConflictResolved(
        entity=entity_id,
        kind=kind,  # type: ignore[arg-type]
        field=field,
        value=value,
        replaces=heads(state, kind, entity_id, field),
    )


def record_consent(state: PlanState, *, given: bool, note: str | None = None) -> Body:
    """Research consent for the plan given or withdrawn, replacing every
    earlier consent event the author's replica holds."""
    plan = state.plan
    if state.entity("plan", plan) is None:
        raise EditError(f"no plan {plan.hex()} in this log")
    replaces = sorted(
        set(heads(state, "plan", plan, "research_consent"))
        | set(heads(state, "plan", plan, "research_consent_note"))
    )
    note = _check_values("plan", {"research_consent_note": note})["research_consent_note"]
    cls = ResearchConsentGiven if given else ResearchConsentWithdrawn
    body = cls(note=note, replaces=replaces)
    _validate([body])
    return body


def find_entity(state: PlanState, entity_id: bytes) -> str:
    """The kind of the entity with this id (ids are unique across kinds)."""
    # A malformed event may name an id with the wrong kind; the kind whose
    # creation event we have is the real one.
    found = sorted(
        (ent.created is None, kind)
        for (kind, eid), ent in state.entities.items()
        if eid == entity_id
    )
    if not found:
        raise EditError(f"no entity {entity_id.hex()} in this plan")
    return found[0][1]


__all__ = ["KEY_QUESTIONS", "EditError"]
