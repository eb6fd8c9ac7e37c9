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


def _batch_samples() -> list[bytes]:
    """Valid events of several kinds (text with and without non-ASCII
    letters, a list field, a resolution, an unknown type): what a batch
    opener meets, before mutation."""
    import msgspec

    from core.events.envelope import Envelope

    dev = Replica(new_uuid7(), new_uuid7())
    act = new_uuid7()
    made = dev.make(
        b.PlanCreated(title="Et samlet Aure", municipality="Aure"),
        b.ActivityPlanned(activity=act, title="Gjestebud i Gáivuotna", position="V"),
        b.ActivityRevised(activity=act, title="Folkemøte", replaces=[bytes(32)]),
        b.ConflictResolved(
            kind="activity", entity=act, field="title", value="Møte", replaces=[bytes(32)]
        ),
        b.PlanDetailsRevised(title="Aure 2030"),
    )
    env = Envelope(
        v=1,
        workspace=dev.workspace,
        plan=dev.plan,
        author=dev.device,
        seq=6,
        prev=made[-1].id,
        hlc=made[-1].env.hlc + 1,
        type="SomethingNewer",
        body=msgspec.Raw(msgspec.msgpack.encode({"text": "å"})),
    )
    unknown = msgspec.msgpack.encode(env)
    env = msgspec.structs.replace(
        env,
        type="ActivityRevised",
        body=msgspec.Raw(msgspec.msgpack.encode({"activity": act, "title": "a\u030a"})),
    )
    not_nfc = msgspec.msgpack.encode(env)
    return [ev.raw for ev in made] + [p + dev.key.sign(p) for p in (unknown, not_nfc)]


BATCH = _batch_samples()


def _outcome(result: object) -> object:
    from core.events.envelope import Event

    if isinstance(result, Event):
        return result
    assert isinstance(result, EventError)
    return (result.reason, str(result))


@given(
    st.lists(
        st.tuples(
            st.integers(0, len(BATCH) - 1),
            st.lists(st.tuples(st.integers(0, 400), st.integers(1, 255)), max_size=3),
            st.integers(0, 500),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_a_batch_opens_exactly_as_each_event_alone(
    picks: list[tuple[int, list[tuple[int, int]], int]],
) -> None:
    """`open_events` (the batch opener of ingest) gives, for every event of
    a batch, the event `open_event(strict=True, verify=False)` gives or the
    error it raises: valid events of every kind, flipped bytes, cut ones."""
    from core.events.envelope import open_events

    raws = list(BATCH)  # valid ones first: the fast path is set up and used
    for which, flips, cut in picks:
        data = bytearray(BATCH[which])
        for pos, xor in flips:
            if pos < len(data):
                data[pos] ^= xor
        raws.append(bytes(data[: max(cut, 0)] if cut < len(data) else data))
    expected = []
    for raw in raws:
        try:
            expected.append(_outcome(open_event(raw, verify=False, strict=True)))
        except EventError as exc:
            expected.append(_outcome(exc))
    assert [_outcome(r) for r in open_events(raws)] == expected
