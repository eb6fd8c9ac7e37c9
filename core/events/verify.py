"""Chain verification: the fast path and the per-event fallback.

Within one chain (plan, author) every event's `prev` is the id (SHA-256 of
the stored bytes, signature included) of the event before it. If the links
of a contiguous segment hold and the newest event's signature is valid,
the author signed a commitment to every earlier byte of the segment, so one
signature check authenticates the whole segment. Where a link is broken or
the newest signature fails, each event is checked on its own so the first
bad event can be named.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.events.envelope import Event, signature_ok
from core.events.ids import ZERO_HASH


class Problem:
    """The first bad event of a chain and what is wrong with it."""

    __slots__ = ("event_id", "message", "reason", "seq")

    def __init__(self, seq: int, event_id: bytes | None, reason: str, message: str) -> None:
        self.seq = seq
        self.event_id = event_id
        self.reason = reason
        self.message = message

    def __repr__(self) -> str:
        return f"Problem(seq={self.seq}, reason={self.reason!r})"


def links_ok(events: Sequence[Event], prev_id: bytes | None) -> int:
    """Index of the first event whose link breaks (len(events) if none).

    `prev_id` is the id of the event before `events[0]` (None: not known,
    so the first link is not checked, except that seq 1 must have zero prev).
    """
    expected = prev_id
    expected_seq = events[0].env.seq if events else 0
    for i, ev in enumerate(events):
        env = ev.env
        if env.seq != expected_seq:
            return i
        if expected is not None and env.prev != expected:
            return i
        if env.seq == 1 and env.prev != ZERO_HASH:
            return i
        expected = ev.id
        expected_seq += 1
    return len(events)


def authentic_prefix(events: Sequence[Event], prev_id: bytes | None) -> int:
    """How many leading events of a contiguous chain run are authentic.

    Fast path: if all links hold and the newest signature verifies, all are.
    Otherwise signatures are checked newest-first within the linked prefix:
    the newest valid one authenticates everything before it.
    """
    linked = links_ok(events, prev_id)
    if linked == 0:
        return 0
    last = events[linked - 1]
    if signature_ok(last.raw, last.env.author):
        return linked
    for i in range(linked - 2, -1, -1):
        ev = events[i]
        if signature_ok(ev.raw, ev.env.author):
            return i + 1
    return 0


def first_problem(events: Sequence[Event], full: bool = False) -> Problem | None:
    """Check a whole stored chain from seq 1; name its first bad event.

    With `full`, every signature is checked individually (slow, thorough).
    """
    if not events:
        return None
    if events[0].env.seq != 1:
        return Problem(events[0].env.seq, events[0].id, "gap", "chain does not start at seq 1")
    if not full and authentic_prefix(events, ZERO_HASH) == len(events):
        return None
    prev = ZERO_HASH
    for i, ev in enumerate(events):
        env = ev.env
        if env.seq != i + 1:
            return Problem(env.seq, ev.id, "gap", f"expected seq {i + 1}, found {env.seq}")
        if not signature_ok(ev.raw, env.author):
            return Problem(env.seq, ev.id, "bad_signature", "signature does not verify")
        if env.prev != prev:
            return Problem(env.seq, ev.id, "bad_prev", "prev does not match the event before")
        prev = ev.id
    return None
