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
