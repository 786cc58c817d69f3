"""The request caches: entries expire, are bounded, and can be dropped on change."""

from __future__ import annotations

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
