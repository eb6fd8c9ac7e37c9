"""The stored form of an event: its signed bytes, without what the row's
columns already say.

An event's signed bytes (`core.events.envelope`) are

    0x99 | v | ws | plan | author | seq | prev | hlc | type | body | signature

and the `events` row already holds the plan and device (as small numbers),
seq and hlc; the workspace is the log's own. So a row stores only

    type_no   the type tag, as a small number (table `types`)
    data      prev (32 bytes) ‖ body ‖ signature

and the exact signed bytes are spliced back together on read (`raw_of`).
This is a lossless packing, not a re-encoding: `pack` splices the bytes
back at write time and keeps the compact form only if they come out
identical to what was signed; anything else (a valid but unusually encoded
event from another implementation, say) is stored whole, with `type_no`
NULL. A reader therefore always gets the signed bytes back exactly, and
verification runs over them as ever: a changed byte in any column changes
the spliced bytes, so a signature or a chain link fails (`vidda verify`).

It saves 102 of an event's ~340 bytes (docs/performance.md, figure 4).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from hashlib import sha256 as _sha256
from types import ModuleType
from typing import Any, NamedTuple

import msgspec

from core.events.envelope import FORMAT_VERSION, Envelope, Event, decode_body, decode_stored
from core.events.ids import HASH_LEN, KEY_LEN, UUID_LEN
from core.events.limits import SIGNATURE_LEN
from core.events.verify import ChainCheck
from core.projections.plan_state import (
    EntityState,
    FieldState,
    Head,
    PlanState,
    evolve,
    evolve_stored,
    stored_recipe,
)

_native: ModuleType | None
try:  # built with the package (pyproject.toml); Python folds every row without it
    from core.store import native_fold as _native
except ImportError:  # pragma: no cover - a build without a C compiler
    _native = None

# Whether `Numbers.fold` uses the compiled fold by default: it is built and
# VIDDA_PURE_PYTHON is not set (to compare, or to rule it out when debugging).
NATIVE = _native is not None and not os.environ.get("VIDDA_PURE_PYTHON")

_encode = msgspec.msgpack.encode
_BIN16, _BIN32 = b"\xc4\x10", b"\xc4\x20"
PREFIX_LEN = 2 + (2 + UUID_LEN) * 2 + 2 + KEY_LEN  # 72


def prefix(workspace: bytes, plan: bytes, author: bytes) -> bytes:
    """The fixed-layout head of every event of one chain: array header,
    format version, workspace, plan and author."""
    head = _encode(FORMAT_VERSION)
    return b"\x99" + head + _BIN16 + workspace + _BIN16 + plan + _BIN32 + author


def splice(head: bytes, seq: int, hlc: int, type_enc: bytes, data: bytes) -> bytes:
    """The signed bytes of a compact row (see the module docstring)."""
    return b"".join(
        (head, _encode(seq), _BIN32, data[:HASH_LEN], _encode(hlc), type_enc, data[HASH_LEN:])
    )


_TYPE_ENCODINGS: dict[str, bytes] = {}


def type_encoding(type_tag: str) -> bytes:
    found = _TYPE_ENCODINGS.get(type_tag)
    if found is None:
        found = _encode(type_tag)
        if len(_TYPE_ENCODINGS) < 10_000:  # tags of unknown types come from outside
            _TYPE_ENCODINGS[type_tag] = found
    return found


def pack(
    raw: bytes, head: bytes, seq: int, prev: bytes, hlc: int, type_tag: str, body_len: int
) -> bytes | None:
    """`data` for a compact row, or None if the event must be stored whole.
    `body_len` is the length of the encoded body inside `raw`.

    The same test as `splice(head, seq, hlc, type, data) == raw`, without
    splicing: `raw` must be `head`, then the encoded seq, prev, hlc and type,
    then exactly the body and the signature."""
    if len(prev) != HASH_LEN or body_len < 0:
        return None
    mid = b"".join((_encode(seq), _BIN32, prev, _encode(hlc), type_encoding(type_tag)))
    start = len(head) + len(mid)
    if (
        len(raw) != start + body_len + SIGNATURE_LEN
        or not raw.startswith(head)
        or raw[len(head) : start] != mid
    ):
        return None
    return prev + raw[start:]


_envelope_encoder = msgspec.msgpack.Encoder()


def pack_events(head: bytes, events: Sequence[Event]) -> list[bytes | None]:
    """`pack` of each of one chain's events (as decoded from their signed
    bytes, `head` the chain's `prefix`), in one go: their envelopes are
    encoded together (msgpack is canonical: the shortest form of every
    field) and compared with their payloads in one comparison. The payloads
    can only be as long as that encoding or longer, so if the two
    concatenations are equal, every payload is its envelope's canonical
    encoding, which is exactly what splicing gives back. If they differ
    (another implementation's encoding somewhere), each event is packed on
    its own."""
    if not events:
        return []
    envs = [ev.env for ev in events]
    payloads = b"".join([ev.raw[:-SIGNATURE_LEN] for ev in events])
    encoded = _envelope_encoder.encode(envs)
    n = len(events)
    header = 1 if n < 16 else 3 if n < 1 << 16 else 5  # msgpack's array header
    if len(encoded) == header + len(payloads) and encoded.endswith(payloads):
        out: list[bytes | None] = []
        for ev in events:
            raw, env = ev.raw, ev.env
            if raw.startswith(head) and len(env.prev) == HASH_LEN:
                out.append(env.prev + raw[len(raw) - len(env.body) - SIGNATURE_LEN :])
            else:
                out.append(None)
        return out
    return [
        pack(ev.raw, head, ev.env.seq, ev.env.prev, ev.env.hlc, ev.env.type, len(ev.env.body))
        for ev in events
    ]


class Numbers:
    """What splicing needs from the log's small-number tables."""

    __slots__ = ("_recipes", "devices", "heads", "plans", "tags", "types", "workspace")

    def __init__(self, workspace: bytes) -> None:
        self.workspace = workspace
        self.plans: dict[int, bytes] = {}
        self.devices: dict[int, bytes] = {}
        self.types: dict[int, bytes] = {}  # type_no -> msgpack-encoded tag
        self.tags: dict[int, str] = {}  # type_no -> tag
        self.heads: dict[tuple[int, int], bytes] = {}
        self._recipes: dict[int, tuple[Any, ...] | None] = {}  # type_no -> native recipe

    def head(self, plan_no: int, device_no: int) -> bytes:
        key = (plan_no, device_no)
        found = self.heads.get(key)
        if found is None:
            found = self.heads[key] = prefix(
                self.workspace, self.plans[plan_no], self.devices[device_no]
            )
        return found

    def raw_of(
        self, plan_no: int, device_no: int, seq: int, hlc: int, type_no: int | None, data: bytes
    ) -> bytes:
        """The signed bytes of one stored row. KeyError: a number this cache
        does not know yet (another process added it); reload and retry."""
        if type_no is None:
            return bytes(data)
        return splice(self.head(plan_no, device_no), seq, hlc, self.types[type_no], data)

    def event_of(
        self, plan_no: int, device_no: int, seq: int, hlc: int, type_no: int | None, data: bytes
    ) -> Event:
        """The decoded event of one stored row. The envelope is built from the
        same columns the signed bytes are spliced from (so it equals their
        decode) and the id is the hash of those bytes; only the body is
        decoded. KeyError as for `raw_of`."""
        if type_no is None:
            return decode_stored(bytes(data))
        plan = self.plans[plan_no]
        author = self.devices[device_no]
        tag = self.tags[type_no]
        raw = splice(self.head(plan_no, device_no), seq, hlc, self.types[type_no], data)
        body = data[HASH_LEN:-SIGNATURE_LEN]
        env = Envelope(
            FORMAT_VERSION,
            self.workspace,
            plan,
            author,
            seq,
            data[:HASH_LEN],
            hlc,
            tag,
            msgspec.Raw(body),
        )
        return Event(_sha256(raw).digest(), raw, env, decode_body(tag, body))

    def fold(
        self,
        state: PlanState,
        rows: Iterable[Sequence[Any]],
        check: ChainCheck | None = None,
        *,
        native: bool | None = None,
    ) -> None:
        """Fold stored rows (`ROW_COLUMNS` first; columns after those are
        ignored) into `state`, as decoding
        each (`event_of`) and `evolve` would, but without building the event:
        the signed bytes are spliced and hashed for the id, and plain edits are
        folded from their body bytes (`evolve_stored`). KeyError as for
        `raw_of`; the fold is idempotent, so folding the rows again after a
        reload is safe. With `check`, every chain's links are checked on the
        way (rows of whole chains, from seq 1, in seq order per chain).

        The compiled fold (`core.store.native_fold`, built with the package)
        does this for the common rows and hands the others to `_fold_row`;
        `native=False` (or no compiled module, or VIDDA_PURE_PYTHON set: see
        `NATIVE`) folds every row in Python. Both give the same state and the
        same chain check (tests/core/test_native_fold.py)."""
        if (NATIVE if native is None else native) and _native is not None:
            _native.fold(
                state,
                rows if isinstance(rows, Sequence) else list(rows),
                self.head,
                self.devices,
                self.types,
                self._recipes,
                self._native_recipe,
                partial(self._fold_row, state, check),
                check,
                EntityState,
                FieldState,
                Head,
            )
            return
        for row in rows:
            self._fold_row(state, check, row)

    def _fold_row(
        self,
        state: PlanState,
        check: ChainCheck | None,
        row: Sequence[Any],
        eid: bytes | None = None,
    ) -> None:
        """One row of `fold`. `eid` given: the compiled fold has already
        hashed the row and checked its link; fold it only."""
        plan_no, device_no, seq, hlc, type_no, data = row[:6]
        if type_no is None:
            event = decode_stored(bytes(data))
            if check is not None:
                env = event.env
                check.see((plan_no, device_no), seq, env.prev, event.id, event.raw, env.author)
            evolve(state, event)
            return
        if eid is None:
            raw = splice(self.head(plan_no, device_no), seq, hlc, self.types[type_no], data)
            eid = _sha256(raw).digest()
            if check is not None:
                check.see(
                    (plan_no, device_no), seq, data[:HASH_LEN], eid, raw, self.devices[device_no]
                )
        if not evolve_stored(
            state,
            eid,
            hlc,
            self.devices[device_no],
            self.tags[type_no],
            data[HASH_LEN:-SIGNATURE_LEN],
        ):
            evolve(state, self.event_of(plan_no, device_no, seq, hlc, type_no, data))

    def _native_recipe(self, type_no: int) -> tuple[Any, ...] | None:
        """What the compiled fold needs of a type (`stored_recipe`, with
        struct field names as UTF-8 and defaults by position); cached."""
        found = stored_recipe(self.tags[type_no])
        recipe = None
        if found is not None:
            kind, id_field, creates, names, defaults, has_replaces = found
            keys = tuple(names)
            recipe = (
                kind,
                id_field.encode() if id_field is not None else None,
                creates,
                tuple(k.encode() for k in keys),
                tuple(names[k] for k in keys),
                tuple((keys.index(k), factory) for k, factory in defaults.items()),
                has_replaces,
            )
        self._recipes[type_no] = recipe
        return recipe

    def raw_or_data(
        self, plan_no: int, device_no: int, seq: int, hlc: int, type_no: int | None, data: bytes
    ) -> bytes:
        """`raw_of`, but a row naming a number no table holds (only a damaged
        file has one: the columns are foreign keys) gives its bare `data`,
        which then fails verification instead of crashing the reader."""
        try:
            return self.raw_of(plan_no, device_no, seq, hlc, type_no, data)
        except KeyError:
            return bytes(data)


# The columns `Numbers.raw_of` takes, in order, for SELECTs.
ROW_COLUMNS = "plan_no, device_no, seq, hlc, type_no, data"


def load_numbers(conn: sqlite3.Connection) -> Numbers:
    """Numbers of a log opened with the standard library (tools, tests)."""
    (workspace,) = conn.execute("SELECT value FROM meta WHERE key='workspace'").fetchone()
    numbers = Numbers(bytes(workspace))
    numbers.plans.update((n, bytes(p)) for n, p in conn.execute("SELECT * FROM plans"))
    numbers.devices.update((n, bytes(d)) for n, d in conn.execute("SELECT * FROM devices"))
    for n, t in conn.execute("SELECT * FROM types"):
        numbers.types[n] = type_encoding(t)
        numbers.tags[n] = t
    return numbers


class StoredEvent(NamedTuple):
    rx: int
    plan: bytes
    device: bytes
    seq: int
    raw: bytes


def read_events(
    conn: sqlite3.Connection, where: str = "", params: Iterable[object] = ()
) -> list[StoredEvent]:
    """The events matching `where` (SQL on the events table, e.g. "WHERE
    seq=3"), in receive order, with their signed bytes: for tools and tests
    that read a log file with `sqlite3` directly."""
    numbers = load_numbers(conn)
    rows = conn.execute(
        f"SELECT rx, {ROW_COLUMNS} FROM events {where} ORDER BY rx", tuple(params)
    ).fetchall()
    raw_of: Callable[..., bytes] = numbers.raw_or_data
    return [
        StoredEvent(
            int(rx),
            numbers.plans.get(plan_no, b""),
            numbers.devices.get(dev_no, b""),
            int(seq),
            raw_of(plan_no, dev_no, seq, *rest),
        )
        for rx, plan_no, dev_no, seq, *rest in rows
    ]
