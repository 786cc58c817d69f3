"""The bounded failure history, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cyan.store import ConnectionFailure, Store
from cyan.store import failures as failure_log

A, B = "a" * 24, "b" * 24
T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def failure(
    n: int, device_id: str | None = A, address: str = "10.0.0.5", stage: str = "key-mismatch"
) -> ConnectionFailure:
    return ConnectionFailure(T0 + timedelta(seconds=n), address, device_id, stage, f"attempt {n}")


async def test_a_devices_failures_come_back_newest_first(store: Store) -> None:
    await store.failures.record([failure(1), failure(2, device_id=B), failure(3)])
    assert [f.reason for f in await store.failures.for_device(A)] == ["attempt 3", "attempt 1"]
    assert await store.failures.for_device(B.upper()) == [failure(2, device_id=B)]


async def test_each_devices_history_is_bounded(store: Store) -> None:
    for start in range(0, 45, 15):  # several batches, as the gateway's sweep writes them
        await store.failures.record([failure(n) for n in range(start, start + 15)])
    await store.failures.record([failure(100, device_id=B)])
    kept = await store.failures.for_device(A, limit=1000)
    assert len(kept) == failure_log.FAILURES_PER_DEVICE
    assert kept[0].reason == "attempt 44"
    assert kept[-1].reason == f"attempt {45 - failure_log.FAILURES_PER_DEVICE}"
    assert len(await store.failures.for_device(B)) == 1  # another device's history is untouched


async def test_unnamed_failures_are_kept_per_address_and_bounded(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(failure_log, "UNNAMED_FAILURES_MAX", 30)
    stage = "handshake-decrypt"
    await store.failures.record(
        [failure(n, device_id=None, address="10.0.0.9", stage=stage) for n in range(25)]
    )
    from_nine = await store.failures.unnamed(remote_address="10.0.0.9", limit=1000)
    assert len(from_nine) == failure_log.FAILURES_PER_ADDRESS
    await store.failures.record(
        [failure(n, device_id=None, address=f"10.1.0.{n}", stage=stage) for n in range(100, 120)]
    )
    everything = await store.failures.unnamed(limit=1000)
    assert len(everything) == 30
    assert everything[0].remote_address == "10.1.0.119"
    # A device's named failures never count against the unnamed bound.
    await store.failures.record([failure(200)])
    assert len(await store.failures.for_device(A)) == 1


async def test_unnamed_failures_since_a_moment(store: Store) -> None:
    await store.failures.record([failure(n, device_id=None) for n in range(5)])
    recent = await store.failures.unnamed(since=T0 + timedelta(seconds=3))
    assert [f.reason for f in recent] == ["attempt 4", "attempt 3"]


async def test_a_long_reason_is_cut_not_refused(store: Store) -> None:
    long = ConnectionFailure(T0, "::1", A, "session", "x" * 10_000)
    await store.failures.record([long])
    (kept,) = await store.failures.for_device(A)
    assert kept.reason == "x" * failure_log.MAX_REASON_CHARS
