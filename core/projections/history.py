"""History: who changed what, when, from which values to which (pure).

Events are put on one time line by (HLC, device, seq): the same order on
every replica. `changes` walks that line keeping every version ever set, so
each edit can show the values it replaced ("old → new"), even when the
replaced value arrived from another device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec

from core.events.bodies import ConflictResolved, EntityRemoved
from core.events.envelope import Event, UnknownBody
from core.events.hlc import to_iso
from core.events.schema import FieldError, validate_value
from core.projections.plan_view import plain


class Change(msgspec.Struct, frozen=True):
    event: str
    seq: int
    author: str
    time: str
    hlc: int
    type: str
    kind: str | None
    entity: str | None
    field: str | None
    old: list[Any]
    new: Any
    note: str | None = None


def timeline_key(event: Event) -> tuple[int, bytes, int]:
    return (event.env.hlc, event.env.author, event.env.seq)


def timeline(events: Iterable[Event]) -> list[Event]:
    """Distinct events in time-line order."""
    unique = {e.id: e for e in events}
    return sorted(unique.values(), key=timeline_key)


_MISSING: Any = object()


def set_values(ev: Event) -> dict[str, Any]:
    """The field values an event sets, as later events see them when they
    name it in `replaces` (a creation's empty defaults included; a rejected
    resolution sets nothing)."""
    body = ev.body
    if isinstance(body, UnknownBody | EntityRemoved):
        return {}
    if isinstance(body, ConflictResolved):
        try:
            return {body.field: validate_value(body.entity_kind(), body.field, body.value)}
        except FieldError:
            return {}
    return dict(body.sets())


def changes(events: Iterable[Event]) -> list[Change]:
    """Every change, oldest first, along the time line."""
    versions: dict[tuple[bytes, str], Any] = {}  # (event id, field) -> value
    out: list[Change] = []
    for ev in timeline(events):
        out += event_changes(ev, lambda r, f: versions.get((r, f), _MISSING))
        for field, value in set_values(ev).items():
            versions[(ev.id, field)] = value
    return out


def changes_newest_first(line: list[Event]) -> Iterator[list[Change]]:
    """The changes of each event of a time line (`timeline`), newest event
    first, each event's as `changes` gives them. The values an edit replaced
    are looked up in the events it names, so the newest rows come first
    without walking the whole line (a reader shows them at once)."""
    position = {ev.id: i for i, ev in enumerate(line)}

    for i in range(len(line) - 1, -1, -1):

        def old_value(replaced: bytes, field: str, i: int = i) -> Any:
            at = position.get(replaced)
            if at is None or at >= i:  # only what came before on the time line
                return _MISSING
            return set_values(line[at]).get(field, _MISSING)

        yield event_changes(line[i], old_value)


def event_changes(ev: Event, old_value: Callable[[bytes, str], Any]) -> list[Change]:
    """One event's changes; `old_value(event id, field)`: the value that
    earlier event set (`_MISSING`: none known)."""
    env = ev.env
    base: dict[str, Any] = {
        "event": ev.id.hex(),
        "seq": env.seq,
        "author": env.author.hex(),
        "time": to_iso(env.hlc),
        "hlc": env.hlc,
        "type": env.type,
    }
    body = ev.body
    if isinstance(body, UnknownBody):
        note = "unknown event type: kept, verified, not projected"
        return [Change(**base, kind=None, entity=None, field=None, old=[], new=None, note=note)]
    kind = body.entity_kind()
    entity = body.entity_id(env.plan).hex()
    if isinstance(body, EntityRemoved):
        return [
            Change(**base, kind=kind, entity=entity, field=None, old=[], new=None, note="removed")
        ]
    replaced = body.replaced()
    pairs = body.sets()
    if isinstance(body, ConflictResolved):
        try:
            pairs = [(body.field, validate_value(kind, body.field, body.value))]
        except FieldError as exc:
            note = f"resolution ignored: {exc}"
            return [
                Change(
                    **base, kind=kind, entity=entity, field=body.field, old=[], new=None, note=note
                )
            ]
    out: list[Change] = []
    resolved = "conflict resolved" if isinstance(body, ConflictResolved) else None
    for field, value in pairs:
        if body.CREATES and value in (None, [], False):
            continue  # a creation's empty defaults are not news
        olds = (old_value(r, field) for r in replaced)
        old = [plain(kind, field, v) for v in olds if v is not _MISSING]
        out.append(
            Change(
                **base,
                kind=kind,
                entity=entity,
                field=field,
                old=old,
                new=plain(kind, field, value),
                note=resolved,
            )
        )
    return out
