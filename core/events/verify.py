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


class ChainCheck:
    """The fast-path check of whole chains whose events stream by in seq
    order per chain (a fold of a log from its first row): every link from
    seq 1, then the newest signature of each chain (`finish`). Holds one
    entry per chain, not the events."""

    __slots__ = ("_chains", "_problems")

    def __init__(self) -> None:
        # chain -> (seq, id, signed bytes, author) of its newest event seen
        self._chains: dict[object, tuple[int, bytes, bytes, bytes]] = {}
        self._problems: dict[object, Problem] = {}

    def see(
        self, chain: object, seq: int, prev: bytes, eid: bytes, raw: bytes, author: bytes
    ) -> None:
        last = self._chains.get(chain)
        expected_seq, expected_prev = (1, ZERO_HASH) if last is None else (last[0] + 1, last[1])
        if seq != expected_seq or prev != expected_prev:
            self.note_break(chain, seq, eid, expected_seq)
        self._chains[chain] = (seq, eid, raw, author)

    # The compiled fold (core/store/native_fold.c) follows the links itself
    # and keeps the ChainCheck up to date through these three.

    def newest(self, chain: object) -> tuple[int, bytes] | None:
        """(seq, id) of the newest event of `chain` seen, if any."""
        last = self._chains.get(chain)
        return None if last is None else (last[0], last[1])

    def note_break(self, chain: object, seq: int, eid: bytes, expected_seq: int) -> None:
        """Event `seq` of `chain` does not link to the newest one seen (or
        to nothing, at seq 1); only the first problem of a chain is kept."""
        if chain in self._problems:
            return
        reason, what = (
            ("gap", f"expected seq {expected_seq}, found {seq}")
            if seq != expected_seq
            else ("bad_prev", "prev does not match the event before")
        )
        self._problems[chain] = Problem(seq, eid, reason, what)

    def set_newest(self, chain: object, seq: int, eid: bytes, raw: bytes, author: bytes) -> None:
        """Record the newest event of `chain` (its link already followed)."""
        self._chains[chain] = (seq, eid, raw, author)

    def clear(self) -> None:
        """Start over (to see the same rows again)."""
        self._chains.clear()
        self._problems.clear()

    def finish(self) -> dict[object, Problem]:
        """The first problem of each chain that has one: a broken link, or
        a newest event whose signature does not verify (then `first_problem`
        on that chain's events names the first bad one)."""
        problems = dict(self._problems)
        for chain, (seq, eid, raw, author) in self._chains.items():
            if chain not in problems and not signature_ok(raw, author):
                problems[chain] = Problem(seq, eid, "bad_signature", "signature does not verify")
        return problems
