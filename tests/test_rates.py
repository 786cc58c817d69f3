"""rates.py: token buckets, alone and by key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cyan.rates import KeyedBuckets, TokenBucket


def test_a_burst_then_one_a_second() -> None:
    bucket = TokenBucket(4, 1.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(5)] == [True] * 4 + [False]
    assert bucket.wait_s(0.0) == pytest.approx(1.0)
    assert bucket.wait_s(0.25) == pytest.approx(0.75)
    assert bucket.take(1.0)
    assert not bucket.take(1.5)
    assert bucket.full(10.0)  # never more than its capacity
    assert [bucket.take(10.0) for _ in range(5)] == [True] * 4 + [False]


@given(st.lists(st.floats(min_value=0, max_value=5), min_size=1, max_size=200))
def test_never_more_taken_than_the_burst_and_the_rate_allow(gaps: list[float]) -> None:
    bucket = TokenBucket(4, 1.0, now=0.0)
    now, taken = 0.0, 0
    for gap in gaps:
        now += gap
        taken += bucket.take(now)
    assert taken <= 4 + now * 1.0 + 1e-9


def test_keys_are_limited_apart_and_their_number_is_bounded() -> None:
    buckets: KeyedBuckets[str] = KeyedBuckets(2, 0.5, max_keys=3)
    assert buckets.take("a", 0.0) is None
    assert buckets.take("a", 0.0) is None
    assert buckets.take("a", 0.0) == pytest.approx(2.0)
    assert buckets.take("b", 0.0) is None
    for key in ("c", "d"):  # "a" is the least recently seen: forgotten, so full again
        buckets.take(key, 0.0)
    assert len(buckets) == 3
    assert buckets.take("a", 0.0) is None
    assert buckets.wait_s("never-seen", 0.0) == 0.0
