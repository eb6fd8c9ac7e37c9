"""Bytes from outside: whatever they are, reading them raises EventError only."""

from hypothesis import given
from hypothesis import strategies as st

from core.events import bodies as b
from core.events.envelope import EventError, open_event
from core.events.ids import new_uuid7
from tests.core.replica import Replica

SAMPLE = (
    Replica(new_uuid7(), new_uuid7())
    .make(b.ActivityPlanned(activity=new_uuid7(), title="Gjestebud i Gáivuotna", position="V"))[0]
    .raw
)


@given(st.binary(max_size=2048))
def test_random_bytes_never_crash(data: bytes) -> None:
    try:
        open_event(data)
    except EventError as exc:
        assert exc.reason


@given(
    st.lists(
        st.tuples(st.integers(0, len(SAMPLE) - 1), st.integers(1, 255)), min_size=1, max_size=8
    ),
    st.integers(0, len(SAMPLE)),
)
def test_mutated_events_are_rejected_never_crash(flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(SAMPLE)
    for pos, xor in flips:
        data[pos] ^= xor
    for candidate in (bytes(data), bytes(data[:cut])):
        try:
            ev = open_event(candidate)
        except EventError:
            continue
        assert candidate == SAMPLE or ev.raw == candidate  # only an unchanged event may pass
        assert candidate == SAMPLE


def test_old_shapes_that_are_not_maps_are_rejected() -> None:
    import msgspec

    from core.events.envelope import Envelope

    dev = Replica(new_uuid7(), new_uuid7())
    for body in ("ab", ["abc"], 5):
        env = Envelope(
            v=1,
            workspace=dev.workspace,
            plan=dev.plan,
            author=dev.device,
            seq=1,
            prev=bytes(32),
            hlc=1,
            type="ActorIdentified/1",
            body=msgspec.Raw(msgspec.msgpack.encode(body)),
        )
        payload = msgspec.msgpack.encode(env)
        try:
            open_event(payload + dev.key.sign(payload))
        except EventError as exc:
            assert exc.reason == "invalid_body"
        else:
            raise AssertionError("accepted a non-map old body")
