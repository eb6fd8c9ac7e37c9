"""History: who changed what, when, from which values to which (pure).

Events are put on one time line by (HLC, device, seq): the same order on
every replica. `changes` walks that line keeping every version ever set, so
each edit can show the values it replaced ("old → new"), even when the
replaced value arrived from another device.
"""

from __future__ import annotations

from collections.abc import Iterable
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


def changes(events: Iterable[Event]) -> list[Change]:
    versions: dict[tuple[bytes, str], Any] = {}  # (event id, field) -> value
    out: list[Change] = []
    for ev in timeline(events):
        env = ev.env

        def change(
            kind: str | None,
            entity: str | None,
            field: str | None,
            old: list[Any],
            new: Any,
            note: str | None,
            ev: Event = ev,
        ) -> Change:
            env = ev.env
            return Change(
                event=ev.id.hex(),
                seq=env.seq,
                author=env.author.hex(),
                time=to_iso(env.hlc),
                hlc=env.hlc,
                type=env.type,
                kind=kind,
                entity=entity,
                field=field,
                old=old,
                new=new,
                note=note,
            )

        body = ev.body
        if isinstance(body, UnknownBody):
            out.append(
                change(
                    kind=None,
                    entity=None,
                    field=None,
                    old=[],
                    new=None,
                    note="unknown event type: kept, verified, not projected",
                )
            )
            continue
        kind = body.entity_kind()
        entity = body.entity_id(env.plan).hex()
        if isinstance(body, EntityRemoved):
            out.append(
                change(kind=kind, entity=entity, field=None, old=[], new=None, note="removed")
            )
            continue
        replaced = body.replaced()
        pairs = body.sets()
        if isinstance(body, ConflictResolved):
            try:
                pairs = [(body.field, validate_value(kind, body.field, body.value))]
            except FieldError as exc:
                out.append(
                    change(
                        kind=kind,
                        entity=entity,
                        field=body.field,
                        old=[],
                        new=None,
                        note=f"resolution ignored: {exc}",
                    )
                )
                continue
        for field, value in pairs:
            if body.CREATES and value in (None, [], False):
                versions[(ev.id, field)] = value
                continue  # a creation's empty defaults are not news
            old = [
                plain(kind, field, versions[(r, field)]) for r in replaced if (r, field) in versions
            ]
            versions[(ev.id, field)] = value
            note = "conflict resolved" if isinstance(body, ConflictResolved) else None
            out.append(
                change(
                    kind=kind,
                    entity=entity,
                    field=field,
                    old=old,
                    new=plain(kind, field, value),
                    note=note,
                )
            )
    return out
