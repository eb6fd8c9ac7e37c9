"""Read model for people: the plan as they see it, conflicts made visible.

`view(state)` turns the fold state into plain data (JSON-ready): every
entity with its displayed field values, ordered phases/activities/sub-goals,
every conflict with all its values and authors, removed entities, edits
that arrived after a removal, and what the fold skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from core.events.hlc import to_iso
from core.projections.plan_state import EntityState, PlanState

ORDERED_KINDS = ("phase", "activity", "sub_goal")
KIND_LISTS = {
    "sub_goal": "sub_goals",
    "phase": "phases",
    "need": "needs",
    "activity": "activities",
    "actor": "actors",
    "involvement": "involvement",
    "decision": "decisions",
    "note": "notes",
}


def plain(kind: str, field: str, value: Any) -> Any:
    """A field value as JSON-ready data (ids as hex)."""
    if isinstance(value, bytes):
        return value.hex()
    return value


def _sort_key(ent: EntityState) -> tuple[Any, ...]:
    if ent.kind in ORDERED_KINDS:
        fs = ent.fields.get("position")
        win = fs.winner() if fs else None
        if win is not None:
            return (0, str(win[1].value), win[1].author, ent.id)
    return (1, "", b"", ent.id)


def entity_view(ent: EntityState) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    conflicts = []
    for name, fs in sorted(ent.fields.items()):
        heads = fs.heads
        if len(heads) == 1:  # nearly every field: no ranking needed
            for head in heads.values():
                value = head.value
        else:
            win = fs.winner()
            if win is None:
                continue
            value = win[1].value
            conflicts.append(name)
        fields[name] = value.hex() if isinstance(value, bytes) else value  # `plain`
    out: dict[str, Any] = {"id": ent.id.hex(), "kind": ent.kind, "fields": fields}
    if conflicts:
        out["conflicts"] = conflicts
    if ent.created is None:
        out["incomplete"] = True  # edits arrived before the creation event
    return out


def entity_conflicts(ent: EntityState) -> list[dict[str, Any]]:
    """The entity's fields with several heads: each value with author, time, event."""
    out = []
    for name, fs in sorted(ent.fields.items()):
        if len(fs.heads) < 2:
            continue
        ranked = sorted(
            fs.heads.items(), key=lambda kv: (kv[1].hlc, kv[1].author, kv[0]), reverse=True
        )
        out.append(
            {
                "kind": ent.kind,
                "entity": ent.id.hex(),
                "field": name,
                "removed": ent.removed,
                "values": [
                    {
                        "value": plain(ent.kind, name, head.value),
                        "author": head.author.hex(),
                        "time": to_iso(head.hlc),
                        "hlc": head.hlc,
                        "event": ev.hex(),
                    }
                    for ev, head in ranked
                ],
            }
        )
    return out


def conflicts(state: PlanState) -> list[dict[str, Any]]:
    """Every field with several heads: each value with author, time, event."""
    return [c for _, ent in sorted(state.entities.items()) for c in entity_conflicts(ent)]


def entity_edited_after_removal(ent: EntityState) -> list[dict[str, Any]]:
    """Edits of a removed entity that its removal did not see."""
    if not ent.removed:
        return []
    out = []
    for name, fs in sorted(ent.fields.items()):
        for ev, head in sorted(fs.heads.items()):
            if ev in ent.removal_seen or ent.created == ev:
                continue
            out.append(
                {
                    "kind": ent.kind,
                    "entity": ent.id.hex(),
                    "field": name,
                    "value": plain(ent.kind, name, head.value),
                    "author": head.author.hex(),
                    "time": to_iso(head.hlc),
                    "event": ev.hex(),
                }
            )
    return out


def edited_after_removal(state: PlanState) -> list[dict[str, Any]]:
    return [
        e for _, ent in sorted(state.entities.items()) for e in entity_edited_after_removal(ent)
    ]


class EntityMemo(NamedTuple):
    """What `view` derives from one entity, kept between calls."""

    view: dict[str, Any]
    conflicts: list[dict[str, Any]]
    edited_after_removal: list[dict[str, Any]]


Memo = dict[tuple[str, bytes], EntityMemo]


def entity_memo(ent: EntityState) -> EntityMemo:
    return EntityMemo(entity_view(ent), entity_conflicts(ent), entity_edited_after_removal(ent))


def view_ids(data: dict[str, Any]) -> list[str]:
    """Every entity id (hex) a plan view shows, the plan's first."""
    ids = [data["plan"]]
    for key in (*KIND_LISTS.values(), "removed"):
        ids.extend(e["id"] for e in data[key])
    return ids


def entities_of(state: PlanState, kind: str) -> list[dict[str, Any]]:
    """The live entities of one kind, as `view` lists them (in order)."""
    return views_of(e for (k, _), e in state.entities.items() if k == kind)


def views_of(ents: Iterable[EntityState]) -> list[dict[str, Any]]:
    """The live ones of `ents` (of one kind), as `view` lists them (in order)."""
    live = sorted((e for e in ents if not e.removed), key=lambda e: e.id)
    return [entity_view(e) for e in sorted(live, key=_sort_key)]


def view(state: PlanState, memo: Memo | None = None) -> dict[str, Any]:
    """The whole plan as JSON-ready data (deterministic for equal states).

    `memo` (optional) keeps what is derived from each entity (its view, its
    conflicts, its edits after removal) between calls: the caller must drop
    the entries of the entities that events touched since (the state does
    not say), and never change the returned dicts. An edit then costs the
    entities it touched, not the whole plan (each conflict is a walk over
    every field of every entity)."""
    if memo is None:
        memo = {}
    order = sorted(state.entities.items())
    derived: list[EntityMemo] = []
    for key, ent in order:
        found = memo.get(key)
        if found is None:
            found = memo[key] = entity_memo(ent)
        derived.append(found)
    plan_memo = memo.get(("plan", state.plan))
    plan_view = plan_memo.view if plan_memo else None
    out: dict[str, Any] = {
        "plan": state.plan.hex(),
        "fields": plan_view["fields"] if plan_view else {},
        "plan_conflicts": plan_view.get("conflicts", []) if plan_view else [],
    }
    groups: dict[str, list[tuple[EntityState, dict[str, Any]]]] = {k: [] for k in KIND_LISTS}
    removed = []
    for ((kind, _), ent), m in zip(order, derived, strict=True):
        if kind == "plan":
            continue
        if ent.removed:
            removed.append(m.view)
        elif kind in groups:
            groups[kind].append((ent, m.view))
    for kind, name in KIND_LISTS.items():
        out[name] = [v for _, v in sorted(groups[kind], key=lambda ev: _sort_key(ev[0]))]
    out["removed"] = removed
    out["conflicts"] = [c for m in derived for c in m.conflicts]
    out["edited_after_removal"] = [e for m in derived for e in m.edited_after_removal]
    out["skipped_unknown_types"] = dict(sorted(state.skipped.items()))
    out["rejected_by_fold"] = [
        {"event": k.hex(), "reason": v} for k, v in sorted(state.rejected.items())
    ]
    out["events"] = state.events
    return out
