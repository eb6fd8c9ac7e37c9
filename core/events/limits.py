"""Hard limits every event obeys, checked when it is made and when it is read.

Why these numbers: an event is one human edit. 64 KiB holds a long note
with room to spare; anything larger is a mistake or an attack, and bounding
it keeps a sync batch, a decode and a fold bounded too.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any

import msgspec

MAX_EVENT_BYTES = 64 * 1024
SIGNATURE_LEN = 64
MAX_TYPE_LEN = 64
MAX_SHORT_TEXT = 300
MAX_TEXT = 20_000
MAX_LIST = 64
MAX_REPLACES = 64
MAX_SEQ = 2**53
MAX_DEPTH = 4

ShortText = Annotated[str, msgspec.Meta(max_length=MAX_SHORT_TEXT)]
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
IsoDate = Annotated[str, msgspec.Meta(pattern=r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")]
Position = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z]+$")]
Score = Annotated[int, msgspec.Meta(ge=0, le=3)]
Count = Annotated[int, msgspec.Meta(ge=0, le=10_000_000)]
Year = Annotated[int, msgspec.Meta(ge=1900, le=2300)]
Minutes = Annotated[int, msgspec.Meta(ge=0, le=60 * 24 * 365)]


class LimitError(ValueError):
    """A value breaks one of the limits above; the message says which."""


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def normalise(value: Any, depth: int = 0) -> Any:
    """NFC-normalise every string inside builtins (dict/list/str); bound nesting."""
    if depth > MAX_DEPTH:
        raise LimitError(f"value nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        return nfc(value)
    if isinstance(value, list):
        if len(value) > MAX_LIST:
            raise LimitError(f"list longer than {MAX_LIST} items")
        return [normalise(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {normalise(k, depth + 1): normalise(v, depth + 1) for k, v in value.items()}
    return value


def first_non_nfc(value: Any, depth: int = 0) -> str | None:
    """Return the first string that is not NFC-normalised, else None."""
    if depth > MAX_DEPTH:
        raise LimitError(f"value nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        return None if value.isascii() or unicodedata.is_normalized("NFC", value) else value
    if isinstance(value, list | tuple):
        for item in value:
            bad = first_non_nfc(item, depth + 1)
            if bad is not None:
                return bad
    elif isinstance(value, dict):
        for k, v in value.items():
            bad = first_non_nfc(k, depth + 1) or first_non_nfc(v, depth + 1)
            if bad is not None:
                return bad
    elif isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            bad = first_non_nfc(getattr(value, name), depth + 1)
            if bad is not None:
                return bad
    return None
