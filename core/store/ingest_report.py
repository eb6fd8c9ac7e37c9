"""What an ingest did with each event of a batch."""

from __future__ import annotations

from typing import Any

import msgspec

from core.events.envelope import Event


class Rejection(msgspec.Struct, frozen=True):
    index: int  # position in the ingested batch
    event: bytes | None  # event id, if the bytes could be parsed
    reason: str  # stable code: malformed, bad_signature, fork, gap, frozen, ...
    message: str


class IngestReport(msgspec.Struct):
    accepted: list[Event] = msgspec.field(default_factory=list)
    # The stored rows (`ROW_COLUMNS`) of `accepted`, in the same order: a
    # caller folds what was stored from them (`EventLog.fold_rows`).
    rows: list[tuple[Any, ...]] = msgspec.field(default_factory=list)
    duplicates: int = 0
    rejected: list[Rejection] = msgspec.field(default_factory=list)
    evidence: list[Rejection] = msgspec.field(default_factory=list)  # kept, not applied
