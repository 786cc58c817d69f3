"""The request caches: entries expire, are bounded, and can be dropped on change."""

from __future__ import annotations

import asyncio

import pytest

from cyan.api.cache import TtlCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_their_ttl() -> None:
    clock = FakeClock()
    cache: TtlCache[str, int] = TtlCache(3.0, 10, clock)
    cache.put("a", 1)
    clock.now += 2.9
    assert cache.get("a") == 1
    clock.now += 0.2
    assert cache.get("a") is None
    assert len(cache) == 0


def test_oldest_entries_go_first_when_full() -> None:
    cache: TtlCache[int, int] = TtlCache(60.0, 3, FakeClock())
    for key in range(5):
        cache.put(key, key)
    assert [cache.get(k) for k in range(5)] == [None, None, 2, 3, 4]


def test_discard_where_drops_matching_entries() -> None:
    cache: TtlCache[tuple[int, str], str] = TtlCache(60.0, 10, FakeClock())
    cache.put((1, "kitchen"), "dev-a")
    cache.put((1, "dev-a"), "dev-a")
    cache.put((1, "porch"), "dev-b")
    cache.discard_where(lambda _key, device: device == "dev-a")
    assert cache.get((1, "kitchen")) is None
    assert cache.get((1, "dev-a")) is None
    assert cache.get((1, "porch")) == "dev-b"


async def test_concurrent_misses_share_one_load() -> None:
    cache: TtlCache[str, str] = TtlCache(60.0, 10)
    calls = 0
    gate = asyncio.Event()

    async def load() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return "alice"

    waiting = [asyncio.create_task(cache.get_or_load("token", load)) for _ in range(20)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiting) == ["alice"] * 20
    assert calls == 1
    assert await cache.get_or_load("token", load) == "alice"
    assert calls == 1  # cached now


async def test_failed_or_empty_loads_are_not_kept() -> None:
    cache: TtlCache[str, str] = TtlCache(60.0, 10)

    async def missing() -> str | None:
        return None

    async def broken() -> str | None:
        raise RuntimeError("database down")

    assert await cache.get_or_load("k", missing) is None
    assert len(cache) == 0
    first = asyncio.create_task(cache.get_or_load("k", broken))
    second = asyncio.create_task(cache.get_or_load("k", broken))
    for task in (first, second):
        with pytest.raises(RuntimeError, match="database down"):
            await task
    assert len(cache) == 0


async def test_a_stale_entry_is_answered_at_once_and_refreshed_by_one_load() -> None:
    clock = FakeClock()
    cache: TtlCache[str, str] = TtlCache(3.0, 10, clock, stale_s=30.0)
    cache.put("device", "old name")
    clock.now += 3.5
    assert cache.get("device") is None  # not fresh
    gate = asyncio.Event()
    loads = 0

    async def load() -> str:
        nonlocal loads
        loads += 1
        await gate.wait()
        return "new name"

    # Both answered from the stale entry without waiting on the load; one load runs.
    assert await cache.get_or_load("device", load) == "old name"
    assert await cache.get_or_load("device", load) == "old name"
    gate.set()
    await cache.refreshed()
    assert loads == 1
    assert await cache.get_or_load("device", load) == "new name"
    assert loads == 1


async def test_a_refresh_that_finds_nothing_or_fails_drops_the_entry() -> None:
    clock = FakeClock()
    cache: TtlCache[str, str] = TtlCache(3.0, 10, clock, stale_s=30.0)

    async def revoked() -> str | None:
        return None

    async def broken() -> str | None:
        raise RuntimeError("database down")

    for load in (revoked, broken):
        cache.put("token", "alice")
        clock.now += 3.5
        assert await cache.get_or_load("token", load) == "alice"  # the one stale answer
        await cache.refreshed()
        assert len(cache) == 0
        if load is revoked:
            assert await cache.get_or_load("token", load) is None
        else:
            with pytest.raises(RuntimeError, match="database down"):
                await cache.get_or_load("token", load)


async def test_an_entry_past_its_stale_time_is_loaded_again() -> None:
    clock = FakeClock()
    cache: TtlCache[str, str] = TtlCache(3.0, 10, clock, stale_s=30.0)
    cache.put("device", "old")
    clock.now += 33.5

    async def load() -> str:
        return "new"

    assert await cache.get_or_load("device", load) == "new"


async def test_a_load_started_before_a_drop_does_not_put_the_old_value_back() -> None:
    cache: TtlCache[str, str] = TtlCache(3.0, 10, FakeClock(), stale_s=30.0)
    read = asyncio.Event()
    finish = asyncio.Event()

    async def load() -> str:
        read.set()  # read the database before the change below...
        await finish.wait()
        return "before the rename"

    loading = asyncio.create_task(cache.get_or_load("device", load))
    await read.wait()
    cache.discard_where(lambda _key, _value: True)  # ...the API renames it meanwhile
    finish.set()
    assert await loading == "before the rename"  # this request saw the old row
    assert cache.get("device") is None  # but the next one reads the database again
