"""Wire messages: round trips, and hostile frames that only ever raise ProtocolError."""

from __future__ import annotations

import contextlib

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.events import bodies as b
from core.events.ids import new_uuid7
from core.sync import messages as m
from tests.core.replica import Replica

WS, PLAN = new_uuid7(), new_uuid7()
DEV = Replica(WS, PLAN)
EVENT = DEV.make(b.PlanCreated(title="Sjøvegan sentrum", municipality="Salangen"))[0].raw

CLIENT = [
    m.Hello(versions=[1], workspace=WS, device=DEV.device),
    m.Prove(signature=bytes(64)),
    m.Subscribe(
        plans=[m.PlanWant(plan=PLAN, vector={DEV.device.hex(): 3}, cursor=7, epoch=b"e" * 16)]
    ),
    m.Push(batch=1, events=[EVENT]),
    m.Bye(),
]
SERVER = [
    m.Challenge(version=1, server_id=new_uuid7(), epoch=b"e" * 16, nonce=bytes(32)),
    m.Welcome(role="editor", plans=[PLAN]),
    m.Refused(reason="not_member", message="this device is not enrolled"),
    m.Events(plan=PLAN, events=[EVENT], cursor=9, more=False),
    m.Acked(
        batch=1,
        accepted=0,
        rejected=[m.Rejected(index=0, reason="fork", message="kept as evidence")],
        received_ms=1_700_000_000_000,
    ),
    m.Failure(code="malformed", message="not a valid message"),
]


@pytest.mark.parametrize("message", CLIENT, ids=lambda msg: type(msg).__name__)
def test_client_messages_round_trip(message: m.Message) -> None:
    assert m.decode_from_client(m.encode(message)) == message


@pytest.mark.parametrize("message", SERVER, ids=lambda msg: type(msg).__name__)
def test_server_messages_round_trip(message: m.Message) -> None:
    assert m.decode_from_server(m.encode(message)) == message


def test_events_travel_as_their_exact_bytes() -> None:
    (push,) = [x for x in CLIENT if isinstance(x, m.Push)]
    assert m.decode_from_client(m.encode(push)).events == [EVENT]


@pytest.mark.parametrize("message", SERVER, ids=lambda msg: type(msg).__name__)
def test_a_server_message_is_not_a_client_message(message: m.Message) -> None:
    with pytest.raises(m.ProtocolError):
        m.decode_from_client(m.encode(message))


HOSTILE = [
    b"",
    b"\x00",
    b"\xc1",
    "text frame",
    b"\x81\xa1t\xa5hello",
    msgspec.msgpack.encode({"t": "hello", "versions": [1], "workspace": b"x", "device": b"y"}),
    msgspec.msgpack.encode({"t": "push", "batch": 2**64 - 1, "events": []}),
    msgspec.msgpack.encode({"t": "push", "batch": 1, "events": [b"x" * 10]}),
    msgspec.msgpack.encode({"t": "push", "batch": 1, "events": [EVENT] * (m.MAX_BATCH_EVENTS + 1)}),
    msgspec.msgpack.encode({"t": "subscribe", "plans": [[PLAN, {"a": -1}]]}),
    msgspec.msgpack.encode({"t": "nope"}),
    b"\x91" * 100_000,
    b"\x00" * (m.MAX_FRAME_BYTES + 1),
]


@pytest.mark.parametrize("frame", HOSTILE, ids=[f"frame{i}" for i in range(len(HOSTILE))])
def test_hostile_frames_get_a_typed_error(frame: bytes | str) -> None:
    with pytest.raises(m.ProtocolError) as err:
        m.decode_from_client(frame)
    assert err.value.code in ("malformed", "too_large", "text_frame")


@given(st.binary(max_size=4096))
def test_random_frames_never_crash(frame: bytes) -> None:
    for decode in (m.decode_from_client, m.decode_from_server):
        with contextlib.suppress(m.ProtocolError):
            decode(frame)


def test_version_choice_and_auth_binding() -> None:
    assert m.choose_version([1, 2, 3]) == 1
    assert m.choose_version([7]) is None
    nonce, other = bytes(32), b"\x01" * 32
    a = m.auth_payload(nonce, WS, b"s" * 16)
    assert a != m.auth_payload(other, WS, b"s" * 16)
    assert a != m.auth_payload(nonce, new_uuid7(), b"s" * 16)
    assert a != m.auth_payload(nonce, WS, b"t" * 16)
