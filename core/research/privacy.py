"""Pseudonymised and anonymised research exports (pure).

`redact(derived, mode, key)` rewrites a `Derived` so the writers put no
person in the files:

* **pseudonymised** (`--pseudonymise`): every person (member name), every
  device key and every *personal* actor (one marked `personal_data`, or of
  type `person`, at any point of the exported history) gets a stable
  pseudonym: `P-`/`D-`/`A-` + the first hex digits of HMAC-SHA256(key,
  kind ‖ value). The same key gives the same pseudonyms in every export, so
  exports can be joined; without the key a pseudonym cannot be turned back
  (nor checked against a guessed name). Those names are replaced wherever
  they stand in free text too (whole words). Event and entity ids stay: the
  holder of the log can re-identify, as pseudonymisation allows.
* **anonymised** (`--anonymise`): no key at all. Devices, persons and events
  are numbered in the export's order (`device-3`, `person-2`, `event-117`);
  a personal actor's name and description and the text of every note about
  one are removed (null); member and personal-actor names in any other free
  text become `[person]` / `[actor]`. Event ids, `prev` links and chain heads
  are ordinals, so nothing in the export links back to the signed log. Entity
  ids (random, they name no one) stay, so the tables still join.

In both modes the signed bytes are left out (they hold device keys and
names): `verify-export` can then check the files against the manifest and
the chains' shape, not the signatures; the holder of the log re-derives the
export to prove it (`verify-export --against-home`). docs/research.md says
what each mode can and cannot prove.

Both modes are deterministic: the same events (and key) give the same bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Any, cast

import msgspec

from core.research.export import Derived, Record, json_text

FULL, PSEUDONYMISED, ANONYMISED = "full", "pseudonymised", "anonymised"
MODES = (FULL, PSEUDONYMISED, ANONYMISED)
KEY_BYTES = 32

_json = msgspec.json.Decoder()


def key_id(key: bytes) -> str:
    """Names a pseudonym key without revealing it (recorded in the manifest)."""
    return hmac.new(key, b"vidda-export-key-id", hashlib.sha256).hexdigest()[:16]


_ID_HEX = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")
_WORD = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*")


def name_parts(name: str) -> list[str]:
    """How a person's name may also appear in free text: the name before a
    comma (what follows is a role: "Ivar Torset, næringssjef") and each of
    its capitalised words, hyphenated ones also by part ("Anne-Marie":
    "Anne", "Marie"); punctuation is no part of a word. If no word is
    capitalised (a name typed in lower case), every word."""
    head = name.split(",", 1)[0].strip()
    words = _WORD.findall(head)
    capital = [w for w in words if w[:1].isupper()] or words
    parts = [head] if head != name.strip() else []
    for word in capital:
        parts.append(word)
        parts += [
            p for p in re.split(r"[-'’]", word) if p != word and len(p) > 1 and p[:1].isupper()
        ]
    return parts


class Redactor:
    """What to replace, learnt from the whole export before anything is written."""

    def __init__(self, derived: Derived, mode: str, key: bytes | None) -> None:
        if mode not in (PSEUDONYMISED, ANONYMISED):
            raise ValueError(f"unknown privacy mode {mode!r}")
        if mode == PSEUDONYMISED and (key is None or len(key) < 16):
            raise ValueError("pseudonymisation needs a key of at least 16 bytes")
        self.mode = mode
        self._key = key if mode == PSEUDONYMISED else None
        self.anonymous = mode == ANONYMISED
        self._devices: dict[bytes, str] = {}
        self._events: dict[bytes, str] = {}
        self._persons: dict[str, str] = {}
        self._actors: dict[str, str] = {}  # personal actor id (hex) -> label
        self._notes: set[str] = set()  # notes about a personal actor (hex ids)
        # Anonymised: workspace, plan and entity ids (16 bytes, 32 hex) are
        # labels too: kept, they would join a row to the same row of a full
        # export or of the log (and a UUIDv7 carries its creation time).
        self._ids: dict[str, str] = {}
        if self.anonymous:
            self._ids[derived.workspace.hex()] = "workspace"
            plans = [p for p in derived.plans if p != derived.workspace]
            self._ids.update((p.hex(), f"plan-{n}") for n, p in enumerate(plans, 1))
        self._learn(derived)
        self._scrub = self._scrubber()

    # --- labels ----------------------------------------------------------------------------

    def _pseudonym(self, prefix: str, kind: bytes, value: bytes, digits: int) -> str:
        assert self._key is not None
        mac = hmac.new(self._key, kind + b"\0" + value, hashlib.sha256).hexdigest()
        return f"{prefix}-{mac[:digits]}"

    def key_id(self) -> str | None:
        return key_id(self._key) if self._key is not None else None

    def device(self, device: bytes) -> str:
        label = self._devices.get(device)
        if label is None:
            if self.anonymous:
                label = f"device-{len(self._devices) + 1}"
            else:
                label = self._pseudonym("D", b"device", device, 16)
            self._devices[device] = label
        return label

    def event_id(self, event: bytes) -> str:
        if not self.anonymous:
            return event.hex()
        if event == bytes(32):
            return "event-0"  # the `prev` of a chain's first event
        label = self._events.get(event)
        if label is None:
            label = self._events[event] = f"event-{len(self._events) + 1}"
        return label

    def id_label(self, value: str) -> str:
        """Anonymised: the label of a 16-byte id (hex); entities are
        numbered in id order (`tables`), any other in the order met."""
        label = self._ids.get(value)
        if label is None:
            label = self._ids[value] = f"entity-{len(self._ids)}"
        return label

    def unlink(self, value: Any) -> Any:
        """Anonymised: every 16-byte id (32 hex) in `value` replaced by its
        label (`id_label`); otherwise `value` unchanged."""
        if not self.anonymous:
            return value
        if isinstance(value, str):
            return self.id_label(value) if _ID_HEX.fullmatch(value) else value
        if isinstance(value, list):
            return [self.unlink(v) for v in value]
        if isinstance(value, dict):
            return {k: self.unlink(v) for k, v in value.items()}
        return value

    def unlink_text(self, text: str) -> str:
        """`unlink` for ids inside a sentence (the manifest's notes)."""
        if not self.anonymous:
            return text
        return _ID_HEX.sub(lambda m: self.id_label(m.group(0)), text)

    def person(self, name: str | None) -> str | None:
        if name is None:
            return None
        label = self._persons.get(name)
        if label is None:
            if self.anonymous:
                label = f"person-{len(self._persons) + 1}"
            else:
                label = self._pseudonym("P", b"person", name.encode(), 10)
            self._persons[name] = label
        return label

    def admins(self, admins: list[bytes]) -> list[str]:
        return [] if self.anonymous else sorted(self.device(a) for a in admins)

    def note(self) -> str:
        if self.anonymous:
            return (
                "anonymised: no signed bytes, device keys, person names, event ids or key; "
                "devices, persons and events are numbered in export order; personal actors' "
                "names and descriptions and notes about them are removed"
            )
        return (
            "pseudonymised: no signed bytes; persons (P-), devices (D-) and personal actors (A-) "
            "are HMAC-SHA256 pseudonyms under the key named by pseudonym_key_id"
        )

    # --- learning who is personal ----------------------------------------------------------

    def _learn(self, derived: Derived) -> None:
        """Number devices, persons and events in export order (anonymised:
        stable, and nothing but the order); find personal actors, their names
        over time, and the notes about them."""
        names: dict[str, set[str]] = {}
        personal: set[str] = set()
        targets: dict[str, set[str]] = {}
        for rec in derived.records:
            env = rec.event.env
            self.device(env.author)
            member = derived.members.get(env.author)
            self.person(member.name if member else None)
            self.event_id(rec.event.id)
            for ch in rec.changes:
                if ch.kind == "actor" and ch.entity is not None:
                    if ch.field == "name" and isinstance(ch.new, str):
                        names.setdefault(ch.entity, set()).add(ch.new)
                    elif (ch.field == "personal_data" and ch.new is True) or (
                        ch.field == "type" and ch.new == "person"
                    ):
                        personal.add(ch.entity)
                elif ch.kind == "note" and ch.field == "target" and isinstance(ch.new, str):
                    targets.setdefault(ch.new, set()).add(ch.entity or "")
        for m in sorted(derived.members.values(), key=lambda m: m.device):
            self.device(m.device)
            self.person(m.name)
        self._actor_names: dict[str, str] = {}
        for actor in sorted(personal):
            label = (
                "[actor]"
                if self.anonymous
                else self._pseudonym("A", b"actor", bytes.fromhex(actor), 10)
            )
            self._actors[actor] = label
            for name in names.get(actor, ()):
                self._actor_names.setdefault(name, label)
            self._notes |= targets.get(actor, set())

    def _scrubber(self) -> Callable[[str], str]:
        swap: dict[str, str] = {}
        for name, label in self._actor_names.items():
            swap[name] = label
        for name, label in self._persons.items():
            swap[name] = "[person]" if self.anonymous else label
        # Each word of a name on its own too ("sier Kari." names Kari
        # Nordmann), in any letter case: whole names first, then their parts.
        for name, label in list(swap.items()):
            for part in name_parts(name):
                swap.setdefault(part, label)
        folded: dict[str, str] = {}
        for name, label in swap.items():
            folded.setdefault(name.casefold(), label)
        words = sorted((n for n in folded if len(n.strip()) >= 3), key=lambda n: (-len(n), n))
        if not words:
            return lambda text: text
        pattern = re.compile(
            r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)", re.IGNORECASE
        )
        return lambda text: pattern.sub(lambda m: folded.get(m.group(0).casefold(), "[name]"), text)

    # --- values ----------------------------------------------------------------------------

    def text(self, value: Any) -> Any:
        """Free text (or a JSON structure of it) with every known name replaced."""
        if isinstance(value, str):
            return self._scrub(value)
        if isinstance(value, list):
            return [self.text(v) for v in value]
        if isinstance(value, dict):
            return {k: self.text(v) for k, v in value.items()}
        return value

    def field(self, kind: str | None, entity: str | None, field: str | None, value: Any) -> Any:
        """An entity field's value as this mode shows it."""
        if kind == "actor" and entity in self._actors:
            if field == "name":
                return None if self.anonymous else self._actors[entity]
            if field == "description" and self.anonymous:
                return None
        if kind == "note" and entity in self._notes and field == "text" and self.anonymous:
            return None
        return self.text(value)

    def _old(self, kind: str | None, entity: str | None, field: str | None, old: Any) -> Any:
        return [self.field(kind, entity, field, v) for v in old] if isinstance(old, list) else old

    def body(self, type_: str, kind: str | None, entity: str | None, body: Any) -> Any:
        """A decoded body (ids as hex) with persons replaced."""
        if not isinstance(body, dict):
            return self.text(body)
        out: dict[str, Any] = {}
        for key, value in body.items():
            if type_ in ("MemberAdded", "MemberRevoked") and key == "device":
                out[key] = self.device(bytes.fromhex(value))
            elif type_ == "MemberAdded" and key == "name":
                out[key] = self.person(value)
            elif key == "replaces" and isinstance(value, list):
                out[key] = [self.event_id(bytes.fromhex(v)) for v in value]
            elif type_ == "ConflictResolved" and key == "value":
                out[key] = self.field(body.get("kind"), entity, body.get("field"), value)
            elif key in ("entity", "kind", "field") and type_ == "ConflictResolved":
                out[key] = value
            else:
                out[key] = self.field(kind, entity, key, value)
        return out

    # --- rows ------------------------------------------------------------------------------

    def event_line(self, obj: dict[str, Any], rec: Record) -> dict[str, Any]:
        kind, entity = obj["entity_kind"], obj["entity_id"]
        obj["id"] = self.event_id(rec.event.id)
        obj["prev"] = self.event_id(rec.event.env.prev)
        obj["author_device"] = self.device(rec.event.env.author)
        obj["person"] = self.person(obj["person"])
        obj["body"] = self.body(obj["type"], kind, entity, obj["body"])
        obj["changes"] = [
            {
                "field": c["field"],
                "old": self._old(kind, entity, c["field"], c["old"]),
                "new": self.field(kind, entity, c["field"], c["new"]),
                "note": self.text(c["note"]),
            }
            for c in obj["changes"]
        ]
        obj["signed_bytes"] = None
        return cast(dict[str, Any], self.unlink(obj))

    def tables(self, tables: dict[str, list[tuple[Any, ...]]]) -> None:
        """Rewrite every table in place."""
        dev = self._hex_device
        tables["events"] = [
            (
                self.event_id(bytes.fromhex(r[0])),
                r[1],
                dev(r[2]),
                self.person(r[3]),
                r[4],
                r[5],
                self.event_id(bytes.fromhex(r[6])),
                *r[7:11],
                r[11],
                r[12],
                json_text(self.body(r[10], r[11], r[12], _json.decode(r[13]))),
                None,
            )
            for r in tables["events"]
        ]
        tables["chains"] = [
            (r[0], dev(r[1]), self.person(r[2]), r[3], self.event_id(bytes.fromhex(r[4])), *r[5:])
            for r in tables["chains"]
        ]
        tables["members"] = [(dev(r[0]), self.person(r[1]), *r[2:]) for r in tables["members"]]
        from core.research.codebook import ENTITY_TABLE_KINDS, TABLE_BY_NAME

        for kind in ENTITY_TABLE_KINDS:
            cols = TABLE_BY_NAME[kind].columns
            lead = 1 if kind != "plan" else 0
            id_at = lead
            rows = []
            for r in tables[kind]:
                entity = r[id_at]
                row = list(r)
                for i in range(lead + 4, len(cols)):
                    col = cols[i]
                    if col.type == "json" and row[i] is not None:
                        row[i] = json_text(self.field(kind, entity, col.name, _json.decode(row[i])))
                    elif col.type == "text":
                        row[i] = self.field(kind, entity, col.name, row[i])
                row[lead + 1] = (
                    self.event_id(bytes.fromhex(row[lead + 1])) if row[lead + 1] else None
                )
                rows.append(tuple(row))
            tables[kind] = rows
            hist = []
            for r in tables[f"{kind}_history"]:
                field, entity = r[9], r[2]
                old = _json.decode(r[10])
                new = None if r[11] is None else _json.decode(r[11])
                hist.append(
                    (
                        self.event_id(bytes.fromhex(r[0])),
                        r[1],
                        entity,
                        dev(r[3]),
                        self.person(r[4]),
                        *r[5:10],
                        json_text(self._old(kind, entity, field, old)),
                        None if r[11] is None else json_text(self.field(kind, entity, field, new)),
                        self.text(r[12]),
                    )
                )
            tables[f"{kind}_history"] = hist
        if self.anonymous:
            self._unlink_tables(tables)

    def _unlink_tables(self, tables: dict[str, list[tuple[Any, ...]]]) -> None:
        """Every id cell, and every id inside a JSON cell, as its label;
        entities numbered in id order first (UUIDv7: creation order)."""
        from core.research.codebook import ENTITY_TABLE_KINDS, TABLE_BY_NAME

        entities = {
            r[0 if kind == "plan" else 1] for kind in ENTITY_TABLE_KINDS for r in tables[kind]
        }
        for entity in sorted(entities - self._ids.keys()):
            self.id_label(entity)
        for name, rows in tables.items():
            json_at = {i for i, c in enumerate(TABLE_BY_NAME[name].columns) if c.type == "json"}
            tables[name] = [
                tuple(
                    (
                        json_text(self.unlink(_json.decode(cell)))
                        if i in json_at and cell is not None and _ID_HEX.search(cell)
                        else self.unlink(cell)
                        if isinstance(cell, str)
                        else cell
                    )
                    for i, cell in enumerate(row)
                )
                for row in rows
            ]

    def _hex_device(self, value: str | None) -> str | None:
        return None if value is None else self.device(bytes.fromhex(value))


def redact(derived: Derived, mode: str, key: bytes | None = None) -> Derived:
    """`derived` rewritten for `mode` (in place; returned). `full` leaves it."""
    if mode == FULL:
        return derived
    red = Redactor(derived, mode, key)
    red.tables(derived.tables)
    derived.mode = mode
    derived.redactor = red
    return derived
