"""The sync wire messages: one msgspec tagged union per direction.

Every websocket frame is one msgpack message. The tag (`t`) names it; the
set is small on purpose (see docs/protocol.md for the exchange and the
rules). Events travel as their exact stored bytes, never re-encoded.

Decoding is typed and bounded: `decode_from_client` / `decode_from_server`
raise `ProtocolError` with a stable `code` for anything that is not a
well-formed message of that direction, and never anything else.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from core.events.ids import DeviceKey, Uuid
from core.events.limits import MAX_EVENT_BYTES

PROTOCOL_VERSIONS: tuple[int, ...] = (1,)
MAX_FRAME_BYTES = 4 * 1024 * 1024
MAX_BATCH_EVENTS = 1_000
MAX_PLANS = 1_000  # plans per subscribe message (a client sends several if it must)
MAX_READABLE_PLANS = 100_000  # plans a welcome may list
MAX_VECTOR = 10_000

Nonce = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
Signature = Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]
RawEvent = Annotated[bytes, msgspec.Meta(min_length=65, max_length=MAX_EVENT_BYTES)]
Batch = Annotated[list[RawEvent], msgspec.Meta(max_length=MAX_BATCH_EVENTS)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
Vector = Annotated[dict[str, Seq], msgspec.Meta(max_length=MAX_VECTOR)]  # device hex -> seq
Reason = Annotated[str, msgspec.Meta(max_length=64)]
Text = Annotated[str, msgspec.Meta(max_length=500)]


class Message(msgspec.Struct, frozen=True, tag_field="t", forbid_unknown_fields=False):
    """Base of every wire message."""


# --- client → server ---------------------------------------------------------------------


class Hello(Message, frozen=True, tag="hello"):
    """Opens a connection: the versions the client speaks, who it is."""

    versions: Annotated[list[int], msgspec.Meta(min_length=1, max_length=16)]
    workspace: Uuid
    device: DeviceKey


class Prove(Message, frozen=True, tag="prove"):
    """Ed25519 signature over `auth_payload(nonce, workspace, server_id)`."""

    signature: Signature


class PlanWant(msgspec.Struct, frozen=True, array_like=True):
    plan: Uuid
    vector: Vector  # what the client has: {device: highest contiguous seq}
    cursor: Seq = 0  # the server's receive position the client saw last
    epoch: bytes = b""  # the server epoch that cursor belongs to


class Subscribe(Message, frozen=True, tag="subscribe"):
    """Catch me up on these plans, then keep me live."""

    plans: Annotated[list[PlanWant], msgspec.Meta(max_length=MAX_PLANS)]


class Push(Message, frozen=True, tag="push"):
    """New events from the client, oldest first per chain."""

    batch: Seq
    events: Batch


class Bye(Message, frozen=True, tag="bye"):
    """The client is leaving on purpose."""


# --- server → client ---------------------------------------------------------------------


class Challenge(Message, frozen=True, tag="challenge"):
    version: int
    server_id: Uuid
    epoch: Annotated[bytes, msgspec.Meta(max_length=32)]
    nonce: Nonce


class Welcome(Message, frozen=True, tag="welcome"):
    role: Literal["owner", "editor", "viewer"]
    plans: Annotated[list[Uuid], msgspec.Meta(max_length=MAX_READABLE_PLANS)]  # it may read
    admins: Annotated[list[DeviceKey], msgspec.Meta(max_length=64)] = []  # the workspace's admins


class Refused(Message, frozen=True, tag="refused"):
    """The handshake failed; the server closes after sending it."""

    reason: Reason  # unsupported_version, unknown_workspace, not_member, revoked, bad_proof
    message: Text


class Events(Message, frozen=True, tag="events"):
    """A batch of events of one plan the client lacks (catch-up or live)."""

    plan: Uuid
    events: Batch
    cursor: Seq  # server receive position the client holds everything up to (0: not yet)
    more: bool  # more catch-up batches follow
    vector: Vector = {}  # last catch-up batch: what the server holds of the plan
    error: Reason = ""  # the plan could not be served: no_access
    catch_up: bool = False  # part of a catch-up (True) or a live event (False)


class Rejected(msgspec.Struct, frozen=True, array_like=True):
    index: Seq
    reason: Reason  # bad_signature, fork, gap, not_member, revoked, read_only, too_large, …
    message: Text


class Acked(Message, frozen=True, tag="acked"):
    """The server committed these events of a Push durably (then acks)."""

    batch: Seq
    accepted: Seq  # how many of the batch were stored (or were already there)
    rejected: Annotated[list[Rejected], msgspec.Meta(max_length=MAX_BATCH_EVENTS)]
    received_ms: int  # server receive time, recorded with the events


class Failure(Message, frozen=True, tag="failure"):
    """A protocol error; the server closes after sending it."""

    code: Reason
    message: Text


ClientMessage = Hello | Prove | Subscribe | Push | Bye
ServerMessage = Challenge | Welcome | Refused | Events | Acked | Failure


class ProtocolError(Exception):
    """A frame that is not a valid message; `code` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


_encoder = msgspec.msgpack.Encoder()
_from_client = msgspec.msgpack.Decoder(ClientMessage)
_from_server = msgspec.msgpack.Decoder(ServerMessage)
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError)


def encode(message: Message) -> bytes:
    return _encoder.encode(message)


def _decode(decoder: msgspec.msgpack.Decoder[Any], frame: bytes | str) -> object:
    if isinstance(frame, str):
        raise ProtocolError("text_frame", "frames are binary msgpack, not text")
    if len(frame) > MAX_FRAME_BYTES:
        raise ProtocolError("too_large", f"frame of {len(frame)} bytes, limit {MAX_FRAME_BYTES}")
    try:
        return decoder.decode(frame)
    except _DECODE_ERRORS as exc:
        raise ProtocolError("malformed", f"not a valid message: {exc}") from None


def decode_from_client(frame: bytes | str) -> ClientMessage:
    message = _decode(_from_client, frame)
    assert isinstance(message, Hello | Prove | Subscribe | Push | Bye)
    return message


def decode_from_server(frame: bytes | str) -> ServerMessage:
    message = _decode(_from_server, frame)
    assert isinstance(message, Challenge | Welcome | Refused | Events | Acked | Failure)
    return message


def auth_payload(nonce: bytes, workspace: bytes, server_id: bytes) -> bytes:
    """What a client signs to prove its device key: bound to this server,
    this workspace and this connection's nonce (no replay elsewhere)."""
    return b"vidda-auth-v1\x00" + nonce + workspace + server_id


def choose_version(offered: list[int]) -> int | None:
    """The highest protocol version both sides speak, or None."""
    common = set(offered) & set(PROTOCOL_VERSIONS)
    return max(common) if common else None
