"""Token buckets: how Particle states its limits ("about 1 event per second, bursts of 4";
"100 requests per 5 minutes"), and what every limit in Cyan is built on.

A bucket holds up to ``capacity`` tokens and gains ``per_s`` a second; each action takes
one. Time is passed in (a monotonic clock in seconds), so the gateway, the API and tests
drive them alike. No library is used: the few lines here are smaller than any dependency's
interface and the buckets must be cheap enough to keep one per connection.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")


class TokenBucket:
    __slots__ = ("_at", "_tokens", "capacity", "per_s")

    def __init__(self, capacity: float, per_s: float, now: float) -> None:
        self.capacity = capacity
        self.per_s = per_s
        self._tokens = float(capacity)
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.per_s)
            self._at = now

    def take(self, now: float) -> bool:
        """Take a token if there is one."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait_s(self, now: float) -> float:
        """Seconds until a token is there (0 if one is)."""
        self._refill(now)
        if self._tokens >= 1.0:
            return 0.0
        if self.per_s <= 0:
            return float("inf")
        return (1.0 - self._tokens) / self.per_s

    def full(self, now: float) -> bool:
        self._refill(now)
        return self._tokens >= self.capacity


class KeyedBuckets(Generic[K]):
    """One bucket per key (an address, an account), at most ``max_keys`` of them: past that
    the key least recently seen is forgotten, so a flood of keys holds bounded memory."""

    def __init__(self, capacity: float, per_s: float, max_keys: int = 10_000) -> None:
        self.capacity = capacity
        self.per_s = per_s
        self.max_keys = max_keys
        self._buckets: OrderedDict[K, TokenBucket] = OrderedDict()

    def _bucket(self, key: K, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = TokenBucket(self.capacity, self.per_s, now)
        else:
            self._buckets.move_to_end(key)
        return bucket

    def take(self, key: K, now: float) -> float | None:
        """None if ``key`` may act now (a token is taken); else the seconds until it may."""
        bucket = self._bucket(key, now)
        if bucket.take(now):
            return None
        return bucket.wait_s(now)

    def wait_s(self, key: K, now: float) -> float:
        """Seconds until ``key`` may act, taking nothing."""
        bucket = self._buckets.get(key)
        return 0.0 if bucket is None else bucket.wait_s(now)

    def forget(self, key: K) -> None:
        self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)
