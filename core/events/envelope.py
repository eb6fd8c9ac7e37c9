"""The signed envelope: encode once, sign those bytes, keep those bytes.

Stored and shipped form of an event (`raw`)::

    raw     = payload ‖ signature            (signature: Ed25519, 64 bytes)
    payload = msgpack([v, workspace, plan, author, seq, prev, hlc, type, body])
    id      = SHA-256(raw)

The body is a msgpack map encoded by its body class (deterministic: struct
field order, defaults omitted). `prev` is the id of the same (plan, author)
chain's previous event, zeros for seq 1. Because the id covers the
signature too, a chain link commits to every earlier byte of the chain:
verifying the newest signature of a linked segment proves the author wrote
the whole segment (the fast path in `core.events.verify`).

Nothing here re-encodes an event to verify it: `open_event` splits the exact
stored bytes, checks the signature over the payload as stored and decodes
the payload for reading.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable
from typing import Any, ClassVar, Protocol

import msgspec
import msgspec.inspect
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from core.events.bodies import BODY_BY_TAG, ROLE_UNKNOWN, Body, ConflictResolved, type_tag
from core.events.ids import HASH_LEN, KEY_LEN, UUID_LEN
from core.events.limits import (
    MAX_EVENT_BYTES,
    MAX_SEQ,
    MAX_TYPE_LEN,
    SIGNATURE_LEN,
    LimitError,
    first_non_nfc,
    normalise,
)
from core.events.schema import FieldError, validate_value
from core.events.upcast import UPCASTERS

FORMAT_VERSION = 1


class Envelope(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """The signed fields. Sizes are checked by `open_event` (strict reads), not
    by the decoder, so re-reading our own validated log stays fast."""

    v: int
    workspace: bytes
    plan: bytes
    author: bytes
    seq: int
    prev: bytes
    hlc: int
    type: str
    body: msgspec.Raw


class UnknownBody(msgspec.Struct, frozen=True):
    """A body whose type this version does not know: kept, shown, skipped."""

    ROLE: ClassVar[int] = ROLE_UNKNOWN

    type: str
    data: Any


class Event(msgspec.Struct, frozen=True, gc=False):
    """One decoded event. `raw` is the truth; everything else is read from it."""

    id: bytes
    raw: bytes
    env: Envelope
    body: Body | UnknownBody

    @property
    def author(self) -> bytes:
        return self.env.author

    @property
    def seq(self) -> int:
        return self.env.seq

    @property
    def hlc(self) -> int:
        return self.env.hlc

    @property
    def plan(self) -> bytes:
        return self.env.plan

    @property
    def type(self) -> str:
        return self.env.type

    @property
    def known(self) -> bool:
        return not isinstance(self.body, UnknownBody)


class EventError(ValueError):
    """An event that cannot be accepted. `reason` is a stable machine code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Signer(Protocol):
    """What sealing needs from a device identity (see core.identity)."""

    @property
    def public_key(self) -> bytes: ...

    def sign(self, payload: bytes) -> bytes: ...


_encoder = msgspec.msgpack.Encoder(order="deterministic")
_envelope_decoder = msgspec.msgpack.Decoder(Envelope)
# Built on first use: a decoder resolves its type's hints, ~2 ms a type, and
# a command touches only a few of the catalogue's types.
_body_decoders: dict[str, msgspec.msgpack.Decoder[Any]] = {}
_any_decoder = msgspec.msgpack.Decoder()


def event_id(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


def encode_body(body: Body) -> bytes:
    """Encode a body deterministically after NFC-normalising all its text.

    Raises `EventError` if the normalised body no longer validates.
    """
    builtins = normalise(msgspec.to_builtins(body, builtin_types=(bytes,)))
    try:
        normalised = msgspec.convert(builtins, type(body))
    except msgspec.ValidationError as exc:
        raise EventError("invalid_body", f"{type(body).__name__}: {exc}") from None
    return _encoder.encode(normalised)


def seal(
    signer: Signer,
    *,
    workspace: bytes,
    plan: bytes,
    seq: int,
    prev: bytes,
    hlc: int,
    body: Body,
) -> Event:
    """Encode, sign and return a new event. The caller stores `event.raw` as is."""
    if not 1 <= seq <= MAX_SEQ:
        raise EventError("bad_seq", f"seq {seq} out of range")
    body_bytes = encode_body(body)
    env = Envelope(
        v=FORMAT_VERSION,
        workspace=workspace,
        plan=plan,
        author=signer.public_key,
        seq=seq,
        prev=prev,
        hlc=hlc,
        type=type_tag(type(body)),
        body=msgspec.Raw(body_bytes),
    )
    payload = _encoder.encode(env)
    raw = payload + signer.sign(payload)
    if len(raw) > MAX_EVENT_BYTES:
        raise EventError("too_large", f"event is {len(raw)} bytes, limit {MAX_EVENT_BYTES}")
    return open_event(raw, verify=False, strict=False)


def decode_body(tag: str, data: bytes | msgspec.Raw) -> Body | UnknownBody:
    """Decode a body by its envelope's type tag (upcasting old shapes)."""
    decoder = _body_decoders.get(tag)
    if decoder is None and tag in BODY_BY_TAG:
        decoder = _body_decoders[tag] = msgspec.msgpack.Decoder(BODY_BY_TAG[tag])
    if decoder is not None:
        body: Body = decoder.decode(data)
        return body
    upcast = UPCASTERS.get(tag)
    if upcast is not None:
        cls, fn = upcast
        old = _any_decoder.decode(data)
        if not isinstance(old, dict):
            raise msgspec.ValidationError(f"an old {tag} body must be a map")
        return msgspec.convert(fn(old), cls)
    return UnknownBody(type=tag, data=_any_decoder.decode(data))


# Everything a decode of hostile bytes may raise (msgspec raises UnicodeDecodeError
# for invalid UTF-8 in a str field and RecursionError for absurd nesting).
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError)

_public_keys: dict[bytes, Ed25519PublicKey] = {}


def public_key(author: bytes) -> Ed25519PublicKey:
    key = _public_keys.get(author)
    if key is None:
        if len(_public_keys) > 10_000:
            _public_keys.clear()
        key = _public_keys[author] = Ed25519PublicKey.from_public_bytes(author)
    return key


def signature_ok(raw: bytes, author: bytes) -> bool:
    """Check the Ed25519 signature over the exact stored payload bytes."""
    try:
        public_key(author).verify(raw[-SIGNATURE_LEN:], raw[:-SIGNATURE_LEN])
    except (InvalidSignature, ValueError):
        return False
    return True


def open_event(raw: bytes, *, verify: bool = True, strict: bool = True) -> Event:
    """Parse (and by default verify) stored bytes into an `Event`.

    `strict` adds the read-side checks for bytes that come from outside:
    every string NFC-normalised, fixed sizes, known format version.
    Raises `EventError` with a stable `reason`; never anything else.
    """
    raw = bytes(raw)
    if len(raw) > MAX_EVENT_BYTES:
        raise EventError("too_large", f"event is {len(raw)} bytes, limit {MAX_EVENT_BYTES}")
    if len(raw) <= SIGNATURE_LEN:
        raise EventError("malformed", "event shorter than a signature")
    try:
        env = _envelope_decoder.decode(raw[:-SIGNATURE_LEN])
    except _DECODE_ERRORS as exc:
        raise EventError("malformed", f"bad envelope: {exc}") from None
    if (len(env.workspace), len(env.plan), len(env.author), len(env.prev)) != (
        UUID_LEN,
        UUID_LEN,
        KEY_LEN,
        HASH_LEN,
    ):
        raise EventError("malformed", "an id in the envelope has the wrong size")
    if env.v != FORMAT_VERSION:
        raise EventError("bad_version", f"event format version {env.v} is not supported")
    if not (1 <= env.seq <= MAX_SEQ) or not (0 <= env.hlc < 2**63):  # SQLite INTEGER
        raise EventError("malformed", "seq or clock out of range")
    if len(env.type) > MAX_TYPE_LEN or not env.type:
        raise EventError("malformed", "bad event type tag")
    if env.seq == 1 and env.prev != bytes(HASH_LEN):
        raise EventError("bad_prev", "first event of a chain must have a zero prev")
    try:
        body = decode_body(env.type, bytes(env.body))
    except (*_DECODE_ERRORS, ValueError, AttributeError, TypeError) as exc:
        # ValueError/AttributeError/TypeError: an upcaster handed a strange old body.
        raise EventError("invalid_body", f"{env.type}: {exc}") from None
    if strict:
        try:
            bad = _first_non_nfc_text(body)
        except LimitError as exc:
            raise EventError("invalid_body", str(exc)) from None
        if bad is not None:
            raise EventError("not_nfc", f"text is not NFC-normalised: {bad[:40]!r}")
        if isinstance(body, ConflictResolved):
            try:
                validate_value(body.kind, body.field, body.value)
            except FieldError as exc:
                raise EventError("invalid_body", str(exc)) from None
    if verify and not signature_ok(raw, env.author):
        raise EventError("bad_signature", "signature does not match the author's key")
    return Event(id=event_id(raw), raw=raw, env=env, body=body)


def open_events(raws: Iterable[bytes]) -> list[Event | EventError]:
    """`open_event(raw, verify=False, strict=True)` of each raw, in order:
    the event, or the `EventError` it would raise (returned, not raised).

    The same checks with the per-event overhead cut for a batch (a catch-up
    frame, a push): the common case (a known body type whose decoder and
    text fields are set up, ids of the usual sizes, not a `ConflictResolved`)
    runs inline, and anything else, or anything that fails, goes through
    `open_event` itself, which decides and names the reason. So this never
    accepts what `open_event` rejects, nor the other way round."""
    out: list[Event | EventError] = []
    append = out.append
    decode_env = _envelope_decoder.decode
    decoders = _body_decoders
    text_fields = _TEXT_FIELDS
    sha256 = hashlib.sha256
    is_normalized = unicodedata.is_normalized
    unset = msgspec.UNSET
    ids: tuple[bytes, bytes, bytes] = (b"", b"", b"")  # (workspace, plan, author) last checked
    for raw in raws:
        try:
            if raw.__class__ is not bytes or not SIGNATURE_LEN < len(raw) <= MAX_EVENT_BYTES:
                raise _Slow
            env = decode_env(raw[:-SIGNATURE_LEN])
            if (env.workspace, env.plan, env.author) != ids:
                if (len(env.workspace), len(env.plan), len(env.author)) != (
                    UUID_LEN,
                    UUID_LEN,
                    KEY_LEN,
                ):
                    raise _Slow
                ids = (env.workspace, env.plan, env.author)
            seq = env.seq
            if (
                len(env.prev) != HASH_LEN
                or env.v != FORMAT_VERSION
                or not 1 <= seq <= MAX_SEQ
                or not 0 <= env.hlc < 2**63
                or (seq == 1 and env.prev != _ZERO_PREV)
            ):
                raise _Slow
            decoder = decoders.get(env.type)  # known tags only: never too long or empty
            if decoder is None:
                raise _Slow
            body = decoder.decode(env.body)
            names = text_fields.get(body.__class__)
            if names is None or body.__class__ is ConflictResolved:
                raise _Slow
            for name in names:
                value = getattr(body, name)
                if value.__class__ is str:
                    if not value.isascii() and not is_normalized("NFC", value):
                        raise _Slow
                elif (
                    value is not None and value is not unset and first_non_nfc(value, 1) is not None
                ):
                    raise _Slow
            append(Event(sha256(raw).digest(), raw, env, body))
        except Exception:
            try:
                append(open_event(raw, verify=False, strict=True))
            except EventError as exc:
                append(exc)
    return out


class _Slow(Exception):
    """`open_events`: leave this event to `open_event`."""


_ZERO_PREV = bytes(HASH_LEN)


def _may_hold_text(t: msgspec.inspect.Type) -> bool:
    """Whether a field of this type can hold free text (Literal values are
    this catalogue's own ASCII constants; ids, numbers and flags hold none)."""
    mi = msgspec.inspect
    if isinstance(t, mi.StrType | mi.AnyType | mi.StructType | mi.DictType):
        return True
    if isinstance(t, mi.UnionType):
        return any(_may_hold_text(m) for m in t.types)
    if isinstance(t, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        return _may_hold_text(t.item_type)
    return False


# Per body class: the fields that may hold text, the only ones the NFC check
# of a strict read has to look at (a walk of every field cost half of ingest).
def _text_fields(cls: type) -> tuple[str, ...]:
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    return tuple(f.name for f in info.fields if _may_hold_text(f.type))


_TEXT_FIELDS: dict[type, tuple[str, ...]] = {}  # filled on first use, as decoders are
_BODY_CLASSES = frozenset(BODY_BY_TAG.values())


def _first_non_nfc_text(body: Body | UnknownBody) -> str | None:
    """`first_non_nfc(body)`, looking only at the fields that may hold text."""
    cls = type(body)
    names = _TEXT_FIELDS.get(cls)
    if names is None:
        if cls not in _BODY_CLASSES:  # an unknown type's data
            return first_non_nfc(body)
        names = _TEXT_FIELDS[cls] = _text_fields(cls)
    for name in names:
        value = getattr(body, name)
        if value.__class__ is str:
            if not value.isascii() and not unicodedata.is_normalized("NFC", value):
                return str(value)
        elif value is not None and value is not msgspec.UNSET:
            bad = first_non_nfc(value, 1)
            if bad is not None:
                return bad
    return None


def decode_stored(raw: bytes) -> Event:
    """Fast decode of bytes that already passed `open_event` on the way in."""
    env = _envelope_decoder.decode(raw[:-SIGNATURE_LEN])
    return Event(id=event_id(raw), raw=raw, env=env, body=decode_body(env.type, env.body))
