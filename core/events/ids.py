"""Fixed-size identifiers and their text forms.

* Entity, plan and workspace ids are UUIDv7 (16 bytes): time-ordered, so
  SQLite indexes stay append-friendly, random enough to never collide.
* Device ids are Ed25519 public keys (32 bytes).
* Event ids are SHA-256 digests of the stored event bytes (32 bytes).

Text form everywhere (CLI, JSON, exports) is lowercase hex without dashes;
the command line accepts any unique prefix (see `resolve_prefix`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Annotated

import msgspec

UUID_LEN = 16
KEY_LEN = 32
HASH_LEN = 32

Uuid = Annotated[bytes, msgspec.Meta(min_length=UUID_LEN, max_length=UUID_LEN)]
DeviceKey = Annotated[bytes, msgspec.Meta(min_length=KEY_LEN, max_length=KEY_LEN)]
EventId = Annotated[bytes, msgspec.Meta(min_length=HASH_LEN, max_length=HASH_LEN)]

ZERO_HASH = bytes(HASH_LEN)


_last_ms = 0
_counter = 0


def new_uuid7(now_ms: int | None = None) -> bytes:
    """Return a fresh RFC 9562 UUIDv7 as 16 bytes.

    Ids made by one process are strictly increasing (RFC 9562 method 1: a
    12-bit counter in `rand_a` within one millisecond), so sorting by id
    keeps creation order, which the views use for unordered lists.
    """
    global _last_ms, _counter
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    if ms <= _last_ms:
        ms = _last_ms
        _counter += 1
        if _counter > 0xFFF:
            ms += 1
            _counter = 0
    else:
        _counter = int.from_bytes(os.urandom(2), "big") & 0x3FF
    _last_ms = ms
    tail = bytearray(os.urandom(8))
    tail[0] = 0x80 | (tail[0] & 0x3F)  # RFC 4122 variant
    head = (ms & 0xFFFFFFFFFFFF).to_bytes(6, "big") + (0x7000 | _counter).to_bytes(2, "big")
    return head + bytes(tail)


def to_hex(value: bytes) -> str:
    return value.hex()


class IdError(ValueError):
    """A text id that is malformed, unknown or ambiguous."""


def parse_hex(text: str, length: int, what: str = "id") -> bytes:
    """Parse a full-length hex id; raise `IdError` with a readable message."""
    cleaned = text.strip().lower().replace("-", "")
    try:
        raw = bytes.fromhex(cleaned)
    except ValueError:
        raise IdError(f"{what} {text!r} is not hexadecimal") from None
    if len(raw) != length:
        raise IdError(f"{what} {text!r} must be {length * 2} hex digits")
    return raw


def resolve_prefix(prefix: str, candidates: Iterable[bytes], what: str = "id") -> bytes:
    """Return the one candidate whose hex form starts with `prefix`.

    Raises `IdError` naming the problem when none or several match.
    """
    wanted = prefix.strip().lower().replace("-", "")
    if not wanted or any(c not in "0123456789abcdef" for c in wanted):
        raise IdError(f"{what} {prefix!r} is not a hex id or prefix")
    matches = {c for c in candidates if c.hex().startswith(wanted)}
    if not matches:
        raise IdError(f"no {what} starts with {prefix!r}")
    if len(matches) > 1:
        shown = ", ".join(sorted(short_ids(matches, minimum=len(wanted) + 1).values())[:5])
        raise IdError(f"{what} prefix {prefix!r} is ambiguous ({shown} …)")
    return matches.pop()


def short_ids(ids: Iterable[bytes], minimum: int = 8) -> dict[bytes, str]:
    """Shortest unique hex prefix (at least `minimum` digits) for each id."""
    hexes = sorted({i.hex() for i in ids})
    out: dict[bytes, str] = {}
    for n, h in enumerate(hexes):
        need = minimum
        for other in (hexes[n - 1] if n else None, hexes[n + 1] if n + 1 < len(hexes) else None):
            if other is None:
                continue
            common = 0
            while common < len(h) and h[common] == other[common]:
                common += 1
            need = max(need, common + 1)
        out[bytes.fromhex(h)] = h[:need]
    return out
