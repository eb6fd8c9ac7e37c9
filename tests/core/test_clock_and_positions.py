from hypothesis import given
from hypothesis import strategies as st

from core.events.hlc import COUNTER_MASK, HybridClock, from_iso, pack, to_iso, wall_ms
from core.events.ids import new_uuid7, short_ids
from core.projections.positions import key_between, spread


def test_clock_is_monotonic_even_when_the_wall_clock_stalls_or_jumps_back() -> None:
    clock = HybridClock()
    stamps = [clock.now(1000), clock.now(1000), clock.now(999), clock.now(500), clock.now(2000)]
    assert stamps == sorted(set(stamps))
    assert wall_ms(stamps[-1]) == 2000


def test_counter_overflow_borrows_the_next_millisecond() -> None:
    clock = HybridClock(last=pack(1000, COUNTER_MASK))
    assert clock.now(1000) == pack(1001, 0)


def test_remote_clock_bounded_drift() -> None:
    clock = HybridClock(max_drift_ms=1000)
    assert clock.observe(pack(1500, 3), now_ms=1000)
    assert clock.now(1000) > pack(1500, 3)
    assert not clock.observe(pack(10_000_000, 0), now_ms=1000)
    assert wall_ms(clock.now(1000)) < 2000


def test_iso_round_trip() -> None:
    stamp = from_iso("2021-01-28T10:00:00Z")
    assert to_iso(stamp) == "2021-01-28T10:00:00.000Z"


def test_uuid7_ids_increase_within_a_process_and_short_ids_are_unique() -> None:
    ids = [new_uuid7() for _ in range(5000)]
    assert ids == sorted(ids) and len(set(ids)) == 5000
    assert all(i[6] >> 4 == 7 and i[8] >> 6 == 0b10 for i in ids)
    shorts = short_ids(ids)
    assert len(set(shorts.values())) == 5000
    assert all(i.hex().startswith(s) and len(s) >= 8 for i, s in shorts.items())


@given(st.lists(st.integers(0, 1000), min_size=1, max_size=60))
def test_key_between_always_fits_between(choices: list[int]) -> None:
    keys = spread(3)
    for c in choices:
        i = c % (len(keys) + 1)
        before = keys[i - 1] if i else None
        after = keys[i] if i < len(keys) else None
        key = key_between(before, after)
        assert (before is None or before < key) and (after is None or key < after)
        assert not key.endswith("0")
        keys.insert(i, key)
    assert keys == sorted(keys)
