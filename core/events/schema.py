"""Entity fields, derived from the event catalogue (never written twice).

`ENTITY_FIELDS[kind][field]` is the type a field's value must have, taken
from the body classes that set it. `validate_value` checks a value against
it (used for conflict resolutions and by the command layer), and
`parse_text_value` turns command-line text into a typed value.
"""

from __future__ import annotations

import types
import typing
from datetime import date
from typing import Any

import msgspec
from msgspec import UnsetType

from core.events.bodies import (
    BODY_TYPES,
    KEY_QUESTIONS,
    Body,
    ConflictResolved,
    EntityRemoved,
)
from core.events.limits import IsoDate, LimitError, Text, normalise


class FieldError(ValueError):
    """A field name or value that does not fit the schema."""


def _strip_unset(tp: Any) -> Any:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and UnsetType in args:
        rest = tuple(a for a in args if a is not UnsetType)
        return rest[0] if len(rest) == 1 else typing.Union[rest]  # noqa: UP007
    return tp


def _widen(known: Any, tp: Any) -> Any:
    """A field set by several events whose types are closed sets of values
    (`research_consent`: "given" by one event, "withdrawn" by another) takes
    every value; otherwise the first declaration stands."""
    if typing.get_origin(known) is typing.Literal and typing.get_origin(tp) is typing.Literal:
        extra = tuple(v for v in typing.get_args(tp) if v not in typing.get_args(known))
        if extra:
            return typing.Literal[(*typing.get_args(known), *extra)]
    return known


def _derive() -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], list[type[Body]]]]:
    fields: dict[str, dict[str, Any]] = {}
    setters: dict[tuple[str, str], list[type[Body]]] = {}
    for cls in BODY_TYPES:
        if cls in (EntityRemoved, ConflictResolved):
            continue
        hints = typing.get_type_hints(cls, include_extras=True)
        kind_fields = fields.setdefault(cls.ENTITY, {})
        for attr, field in cls._SETTABLE:
            tp = _strip_unset(hints[attr])
            known = kind_fields.setdefault(field, tp)
            if known is not tp:
                kind_fields[field] = _widen(known, tp)
            setters.setdefault((cls.ENTITY, field), []).append(cls)
    for q in KEY_QUESTIONS:
        fields["plan"][f"q_{q}"] = Text
    return fields, setters


ENTITY_FIELDS, FIELD_SETTERS = _derive()
ENTITY_KINDS: tuple[str, ...] = tuple(ENTITY_FIELDS)
CREATION_EVENT: dict[str, type[Body]] = {cls.ENTITY: cls for cls in BODY_TYPES if cls.CREATES}


def field_type(kind: str, field: str) -> Any:
    try:
        return ENTITY_FIELDS[kind][field]
    except KeyError:
        known = ", ".join(sorted(ENTITY_FIELDS.get(kind, {}))) or "none"
        raise FieldError(f"{kind} has no field {field!r} (fields: {known})") from None


def validate_value(kind: str, field: str, value: Any) -> Any:
    """Return `value` converted to the field's type, or raise `FieldError`.

    Text is NFC-normalised first, as it will be signed, so length limits
    count composed characters (decomposed input is not longer)."""
    tp = field_type(kind, field)
    try:
        # builtin_types: bytes stay bytes and text is never read as base64,
        # so a value's type cannot change on the way through.
        return msgspec.convert(normalise(value), tp, builtin_types=(bytes,))
    except (msgspec.ValidationError, LimitError) as exc:
        raise FieldError(f"{kind}.{field}: {exc}") from None


_DATE_PATTERN = msgspec.inspect.type_info(IsoDate).pattern  # type: ignore[attr-defined]


def check_calendar_date(kind: str, field: str, value: Any) -> None:
    """For new edits: a date field's value must be a real calendar date (the
    pattern alone lets 2021-02-30 through). Not used on read: stored events
    stay readable."""
    if not isinstance(value, str):
        return
    info = msgspec.inspect.type_info(field_type(kind, field))
    members = info.types if isinstance(info, msgspec.inspect.UnionType) else (info,)
    if any(isinstance(m, msgspec.inspect.StrType) and m.pattern == _DATE_PATTERN for m in members):
        try:
            date.fromisoformat(value)
        except ValueError:
            raise FieldError(f"{kind}.{field}: {value!r} is not a calendar date") from None


def choices(kind: str, field: str) -> list[Any]:
    """Allowed values of a closed (Literal) field, else an empty list."""
    info = msgspec.inspect.type_info(field_type(kind, field))
    options: list[Any] = []
    for t in info.types if isinstance(info, msgspec.inspect.UnionType) else (info,):
        if isinstance(t, msgspec.inspect.LiteralType):
            options.extend(t.values)
    return options


def _accepts(info: msgspec.inspect.Type, cls: type) -> bool:
    members = info.types if isinstance(info, msgspec.inspect.UnionType) else (info,)
    return any(isinstance(m, cls) for m in members)


def parse_text_value(kind: str, field: str, text: str) -> Any:
    """Turn command-line text into a typed value for `kind.field`.

    Empty text means "no value" where the field allows it; integers and
    yes/no are parsed; lists are comma-separated. Ids (uuid fields) are left
    as text for the caller to resolve against the plan.
    """
    info = msgspec.inspect.type_info(field_type(kind, field))
    stripped = text.strip()
    if stripped == "" and _accepts(info, msgspec.inspect.NoneType):
        return None
    if _accepts(info, msgspec.inspect.BoolType):
        lowered = stripped.lower()
        if lowered in ("yes", "true", "ja", "1", "y", "j"):
            return validate_value(kind, field, True)
        if lowered in ("no", "false", "nei", "0", "n"):
            return validate_value(kind, field, False)
    if _accepts(info, msgspec.inspect.IntType) and stripped.lstrip("-").isdigit():
        return validate_value(kind, field, int(stripped))
    if _accepts(info, msgspec.inspect.ListType):
        items = [item.strip() for item in text.split(",") if item.strip()]
        return validate_value(kind, field, items)
    if _accepts(info, msgspec.inspect.BytesType):
        return text  # an id reference; the command layer resolves it
    value = validate_value(kind, field, text)
    return value


def is_reference(kind: str, field: str) -> bool:
    """True when the field holds an entity id (phase, activity, sub_goal, …)."""
    return _accepts(msgspec.inspect.type_info(field_type(kind, field)), msgspec.inspect.BytesType)
