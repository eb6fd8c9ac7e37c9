import hashlib
import unicodedata

import msgspec
import pytest

from core.events import bodies as b
from core.events.envelope import (
    Envelope,
    EventError,
    UnknownBody,
    event_id,
    open_event,
    seal,
    signature_ok,
)
from core.events.ids import ZERO_HASH, new_uuid7
from core.events.limits import MAX_EVENT_BYTES
from core.identity.keyfile import DeviceKey
from core.projections.history import changes
from core.projections.plan_state import project

WS = new_uuid7()
PLAN = new_uuid7()
KEY = DeviceKey.generate()


def make(body: b.Body, seq: int = 1, prev: bytes = ZERO_HASH, key: DeviceKey = KEY):
    return seal(
        KEY if key is None else key,
        workspace=WS,
        plan=PLAN,
        seq=seq,
        prev=prev,
        hlc=(1_700_000_000_000 << 16),
        body=body,
    )


def forge(type_tag: str, body: object, seq: int = 1, key: DeviceKey = KEY) -> bytes:
    """Sign an envelope by hand (for shapes the catalogue would not make)."""
    env = Envelope(
        v=1,
        workspace=WS,
        plan=PLAN,
        author=key.public_key,
        seq=seq,
        prev=ZERO_HASH,
        hlc=1 << 16,
        type=type_tag,
        body=msgspec.Raw(msgspec.msgpack.encode(body)),
    )
    payload = msgspec.msgpack.encode(env)
    return payload + key.sign(payload)


def test_id_is_sha256_of_stored_bytes_and_signature_covers_payload() -> None:
    ev = make(b.PlanCreated(title="Aure", municipality="Aure"))
    assert ev.id == hashlib.sha256(ev.raw).digest() == event_id(ev.raw)
    assert signature_ok(ev.raw, KEY.public_key)
    assert not signature_ok(ev.raw, DeviceKey.generate().public_key)
    again = open_event(ev.raw)
    assert again.raw == ev.raw and again.body == ev.body and again.env.seq == 1


def test_encoding_is_deterministic() -> None:
    body = b.ActivityPlanned(activity=bytes(16), title="Gjestebud", position="V", kind="gjestebud")
    one, two = make(body), make(body)
    assert one.raw[:-64] == two.raw[:-64]  # same payload; Ed25519 is deterministic too
    assert one.raw == two.raw


def test_every_flipped_byte_is_caught() -> None:
    ev = make(b.PlanCreated(title="Aure", municipality="Aure"))
    for i in range(len(ev.raw)):
        bad = bytearray(ev.raw)
        bad[i] ^= 0x01
        with pytest.raises(EventError):
            open_event(bytes(bad))


def test_text_is_nfc_normalised_before_signing() -> None:
    decomposed = unicodedata.normalize("NFD", "Kárášjoga gielda – Čáhcesuolu ŋ ŧ ž đ")
    ev = make(b.PlanCreated(title=decomposed, municipality="Karasjok"))
    assert ev.body.title == unicodedata.normalize("NFC", decomposed)
    assert open_event(ev.raw).body.title == ev.body.title


def test_non_nfc_text_from_outside_is_rejected_on_read() -> None:
    raw = forge(
        "PlanCreated", {"title": unicodedata.normalize("NFD", "Vardø á"), "municipality": "Vardø"}
    )
    with pytest.raises(EventError) as err:
        open_event(raw)
    assert err.value.reason == "not_nfc"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"title": "x" * 301, "municipality": "A"}, "invalid_body"),
        ({"title": "x", "municipality": "A", "themes": ["t"] * 65}, "invalid_body"),
        ({"title": 5, "municipality": "A"}, "invalid_body"),
        ({"municipality": "A"}, "invalid_body"),
    ],
)
def test_limits_give_a_typed_error(body: object, reason: str) -> None:
    with pytest.raises(EventError) as err:
        open_event(forge("PlanCreated", body))
    assert err.value.reason == reason


def test_fixed_size_ids_are_enforced() -> None:
    raw = forge("PhaseMoved", {"phase": b"short", "position": "V"})
    with pytest.raises(EventError):
        open_event(raw)


def test_too_large_and_garbage() -> None:
    with pytest.raises(EventError) as err:
        open_event(b"\x00" * (MAX_EVENT_BYTES + 1))
    assert err.value.reason == "too_large"
    for junk in (b"", b"\x93\x01\x02", b"\xff" * 100, msgspec.msgpack.encode([1] * 20) + bytes(64)):
        with pytest.raises(EventError):
            open_event(junk)
    with pytest.raises(EventError) as err:
        make(b.NoteWritten(note=bytes(16), target=None, text="å" * 19_000 + "x" * 1000 * 30))
    assert err.value.reason in ("too_large", "invalid_body")


def test_unknown_event_type_is_verified_kept_and_skipped_by_projections() -> None:
    raw = forge("BudgetApproved", {"amount": 250_000, "currency": "NOK"})
    ev = open_event(raw)
    assert isinstance(ev.body, UnknownBody) and ev.body.type == "BudgetApproved"
    assert ev.body.data == {"amount": 250_000, "currency": "NOK"}
    state = project(PLAN, [ev])
    assert state.skipped == {"BudgetApproved": 1} and not state.entities
    assert changes([ev])[0].note is not None


def test_upcast_reads_old_actor_shape_as_current() -> None:
    actor = new_uuid7()
    raw = forge(
        "ActorIdentified/1", {"actor": actor, "name": "Grendelagene", "power": 2, "role": "should"}
    )
    ev = open_event(raw)
    assert isinstance(ev.body, b.ActorIdentified)
    assert ev.body.influence == 2 and ev.body.participation == "should"
    assert ev.raw == raw  # never rewritten
    state = project(PLAN, [ev])
    assert state.entity("actor", actor).value("influence") == 2


def test_first_event_must_have_zero_prev_and_conflict_values_are_checked() -> None:
    with pytest.raises(EventError):
        seal(
            KEY,
            workspace=WS,
            plan=PLAN,
            seq=0,
            prev=ZERO_HASH,
            hlc=1,
            body=b.PlanCreated(title="x", municipality="y"),
        )
    raw = forge(
        "ConflictResolved", {"entity": PLAN, "kind": "plan", "field": "no_such_field", "value": "x"}
    )
    with pytest.raises(EventError) as err:
        open_event(raw)  # strict read refuses it at the door
    assert err.value.reason == "invalid_body"
    state = project(PLAN, [open_event(raw, strict=False)])  # and the fold ignores it anyway
    assert state.rejected and ("plan", PLAN) not in state.entities


def test_the_nfc_check_skips_only_fields_that_cannot_hold_text() -> None:
    """A strict read checks NFC only on the fields that may hold text; every
    field it skips must refuse a decomposed string in any shape."""
    import typing

    from core.events.bodies import BODY_BY_TAG
    from core.events.envelope import _text_fields

    decomposed = "Sa\u0301pmi"
    for cls in BODY_BY_TAG.values():
        hints = typing.get_type_hints(cls, include_extras=True)
        for name in cls.__struct_fields__:
            if name in _text_fields(cls):
                continue
            for probe in (decomposed, [decomposed], {"k": decomposed}):
                with pytest.raises(msgspec.ValidationError):
                    msgspec.convert(probe, hints[name])
    assert "title" in _text_fields(b.ActivityRevised)
    assert "value" in _text_fields(b.ConflictResolved)
