"""Fractional position keys for ordered lists (phases, activities, sub-goals).

A key is a non-empty string over 62 digits ('0'-'9', 'A'-'Z', 'a'-'z') read
as a base-62 fraction 0.k₁k₂…; keys never end in '0', so between any two
keys there is always another. Ties (two devices picking the same key at
the same time) are broken by the caller with the device key and the id.
"""

from __future__ import annotations

DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(DIGITS)}


def _midpoint(a: str, b: str | None) -> str:
    if b is not None:
        n = 0
        while n < len(b) and (a[n] if n < len(a) else "0") == b[n]:
            n += 1
        if n > 0:
            return b[:n] + _midpoint(a[n:], b[n:])
    da = _INDEX[a[0]] if a else 0
    db = _INDEX[b[0]] if b is not None else len(DIGITS)
    if db - da > 1:
        return DIGITS[(da + db) // 2]
    if b is not None and len(b) > 1:
        return b[:1]
    return DIGITS[da] + _midpoint(a[1:], None)


def key_between(before: str | None, after: str | None) -> str:
    """A key strictly between `before` and `after` (None: the open end)."""
    a = before or ""
    if after is not None and a >= after:
        raise ValueError(f"position {before!r} is not before {after!r}")
    return _midpoint(a, after)


def spread(count: int) -> list[str]:
    """`count` increasing single- or double-digit keys, evenly spaced."""
    base = len(DIGITS)
    out = []
    for i in range(1, count + 1):
        value = i * base * base // (count + 1)
        hi, lo = divmod(value, base)
        key = DIGITS[hi] + (DIGITS[lo] if lo else "")
        out.append(key if hi or lo else DIGITS[1])
    return out
