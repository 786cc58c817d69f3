"""A small time-bounded cache for what every request looks up: its token's user, its device.

Entries are fresh for a few seconds: long enough to take the database off the per-request
path at a thousand calls a second, short enough that a change made by another process (a
token revoked or a device renamed with the CLI) shows within that time. Changes made
through this process's API drop their entries at once.

Past that, an entry may be served stale for a while longer (``stale_s``) while one load
refreshes it in the background: a device called every few seconds would otherwise wait
on the database (a hop to its thread, then back to a busy loop) on every other call.
The change still shows: the first request after the fresh time gets the old value and
starts the refresh, the ones after it get the new value (or none: a revoked token).

Expiry and the size bound are cachetools' ``TTLCache``; what it does not do, and this
adds, is a single-flight loader and the refresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from cachetools import TTLCache

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

log = logging.getLogger(__name__)


class TtlCache(Generic[K, V]):
    def __init__(
        self,
        ttl_s: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        stale_s: float = 0.0,
    ) -> None:
        self.ttl_s = ttl_s
        self.stale_s = stale_s
        self.max_entries = max_entries
        self._clock = clock
        # key -> (value, when it was loaded); kept while it may still be served stale.
        self._entries: TTLCache[K, tuple[V, float]] = TTLCache(
            max_entries, ttl_s + stale_s, timer=clock
        )
        self._loading: dict[K, asyncio.Future[V | None]] = {}
        self._refreshing: dict[K, asyncio.Task[None]] = {}
        # Bumped by every drop: a load that started before a drop must not put back what
        # the drop removed (it may have read the database before the change).
        self._generation = 0

    def get(self, key: K) -> V | None:
        """The value while it is fresh."""
        entry = self._entries.get(key)
        if entry is None or self._clock() - entry[1] >= self.ttl_s:
            return None
        return entry[0]

    async def get_or_load(self, key: K, load: Callable[[], Awaitable[V | None]]) -> V | None:
        """The cached value, or ``load()``'s; None results are not kept.

        Single flight: when an entry expires under load, the requests that miss it together
        share one ``load()`` instead of each asking the database. A stale entry is answered
        at once and refreshed by one ``load()`` in the background.
        """
        entry = self._entries.get(key)
        if entry is not None:
            cached, loaded_at = entry
            if self._clock() - loaded_at >= self.ttl_s and key not in self._refreshing:
                self._refreshing[key] = asyncio.create_task(self._refresh(key, load))
            return cached
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        generation = self._generation
        try:
            value = await load()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so a load nobody else awaited is not logged
            raise
        finally:
            del self._loading[key]
        future.set_result(value)
        if value is not None and generation == self._generation:
            self.put(key, value)
        return value

    async def _refresh(self, key: K, load: Callable[[], Awaitable[V | None]]) -> None:
        generation = self._generation
        try:
            value = await load()
        except Exception as exc:  # the next request loads it again and meets the error itself
            log.debug("refreshing a cache entry failed: %r", exc)
            value = None
        finally:
            del self._refreshing[key]
        if generation != self._generation:
            return
        if value is None:
            self._entries.pop(key, None)
        else:
            self.put(key, value)

    async def refreshed(self) -> None:
        """Until the refreshes running now have ended."""
        await asyncio.gather(*self._refreshing.values())

    def put(self, key: K, value: V) -> None:
        self._entries[key] = (value, self._clock())

    def discard_where(self, stale: Callable[[K, V], bool]) -> None:
        self._generation += 1
        for key in [k for k, (v, _) in self._entries.items() if stale(k, v)]:
            self._entries.pop(key, None)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
