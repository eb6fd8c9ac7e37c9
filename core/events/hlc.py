"""Hybrid logical clock: 48-bit wall milliseconds + 16-bit counter in one int.

The clock gives every local event a timestamp that is

* strictly greater than every timestamp it issued before, across restarts
  (the caller persists `last` and passes it back to `HybridClock(last=...)`),
* greater than every remote timestamp it has observed, unless that remote
  clock was more than `max_drift_ms` ahead of our wall clock: such a
  timestamp is not adopted (a skewed clock must not drag ours into the
  future) and `observe` reports it as skewed so it can be flagged.

Causality between edits is carried by `replaces`, not by clocks; the clock
only orders concurrent edits for display and gives researchers a time line.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

COUNTER_BITS = 16
COUNTER_MASK = (1 << COUNTER_BITS) - 1
MAX_MS = (1 << 48) - 1
DEFAULT_MAX_DRIFT_MS = 5 * 60 * 1000  # five minutes


def pack(ms: int, counter: int) -> int:
    return (ms << COUNTER_BITS) | counter


def wall_ms(hlc: int) -> int:
    return hlc >> COUNTER_BITS


def counter(hlc: int) -> int:
    return hlc & COUNTER_MASK


def to_iso(hlc: int) -> str:
    """Wall-clock part as an ISO-8601 UTC string with milliseconds."""
    dt = datetime.fromtimestamp(wall_ms(hlc) / 1000, tz=UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_iso(text: str) -> int:
    """Smallest HLC at or after the given ISO time (naive = UTC)."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return pack(int(dt.timestamp() * 1000), 0)


def system_ms() -> int:
    return int(time.time() * 1000)


class HybridClock:
    """A monotonic hybrid logical clock. Not thread-safe; one per device."""

    def __init__(self, last: int = 0, max_drift_ms: int = DEFAULT_MAX_DRIFT_MS) -> None:
        self.last = last
        self.max_drift_ms = max_drift_ms

    def now(self, now_ms: int | None = None) -> int:
        """Issue a timestamp for a new local event; persist `self.last` with it."""
        ms = system_ms() if now_ms is None else now_ms
        last_ms, last_counter = wall_ms(self.last), counter(self.last)
        if ms > last_ms:
            stamp = pack(min(ms, MAX_MS), 0)
        elif last_counter < COUNTER_MASK:
            stamp = pack(last_ms, last_counter + 1)
        else:  # counter exhausted within one millisecond: borrow the next one
            stamp = pack(last_ms + 1, 0)
        self.last = stamp
        return stamp

    def observe(self, remote: int, now_ms: int | None = None) -> bool:
        """Take a remote timestamp into account. Returns False if it was skewed.

        A remote timestamp more than `max_drift_ms` ahead of our wall clock is
        not adopted, so our next local timestamps stay near real time.
        """
        ms = system_ms() if now_ms is None else now_ms
        if wall_ms(remote) > ms + self.max_drift_ms:
            return False
        if remote > self.last:
            self.last = remote
        return True
