"""A small time-bounded cache for what every request looks up: its token's user, its device.

Entries live a few seconds: long enough to take the database off the per-request path at
a thousand calls a second, short enough that a change made by another process (a token
revoked or a device renamed with the CLI) shows within that time. Changes made through
this process's API drop their entries at once.

Expiry and the size bound are cachetools' ``TTLCache``; what it does not do, and this
adds, is a single-flight loader.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from cachetools import TTLCache

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(
        self, ttl_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: TTLCache[K, V] = TTLCache(max_entries, ttl_s, timer=clock)
        self._loading: dict[K, asyncio.Future[V | None]] = {}

    def get(self, key: K) -> V | None:
        return self._entries.get(key)

    async def get_or_load(self, key: K, load: Callable[[], Awaitable[V | None]]) -> V | None:
        """The cached value, or ``load()``'s; None results are not kept.

        Single flight: when an entry expires under load, the requests that miss it together
        share one ``load()`` instead of each asking the database.
        """
        value = self.get(key)
        if value is not None:
            return value
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so a load nobody else awaited is not logged
            raise
        finally:
            del self._loading[key]
        future.set_result(value)
        if value is not None:
            self.put(key, value)
        return value

    def put(self, key: K, value: V) -> None:
        self._entries[key] = value

    def discard_where(self, stale: Callable[[K, V], bool]) -> None:
        for key in [k for k, v in self._entries.items() if stale(k, v)]:
            self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
