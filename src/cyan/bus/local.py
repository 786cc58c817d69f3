"""The in-process event bus: fans published events out to SSE subscribers.

The router hands every event to ``EventBus.publish`` (``router.add_listener(bus.publish)``);
each subscriber owns a bounded queue and reads it as an async iterator. Publishing never
waits: a subscriber whose queue is full is dropped with a reason (design.md, "Shape for
speed and scale"), so one slow HTTP client can never slow the gateway or other clients.

Everything here runs on the event loop thread; ``publish`` is not thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import TypeVar

from cyan.bus.events import CloudEvent
from cyan.errors import CyanError

log = logging.getLogger(__name__)

DEFAULT_MAX_QUEUE = 1000
# What a queued event is counted as beyond its name and data: the object and its fields.
EVENT_OVERHEAD_BYTES = 200

K = TypeVar("K")


class BusError(CyanError):
    """The bus family of errors (cyan/errors.py)."""


class SubscriptionEnded(BusError):
    """The subscription was closed or dropped; no more events will come."""


class Scope(StrEnum):
    """Which events a subscription sees (rest-api.md §5, "Paths to serve")."""

    # /v1/events: public events from anyone plus every event owned by the subscriber.
    FIREHOSE = "firehose"
    # /v1/devices/events: the subscriber's own events, public and private.
    MINE = "mine"
    # /v1/devices/:id/events: one device's events (the API checks the device is the caller's).
    DEVICE = "device"


class Subscription:
    """One subscriber's view of the bus: an async iterator of matching events."""

    __slots__ = (
        "_bus",
        "_closed",
        "_queue",
        "_queued_bytes",
        "device_id",
        "dropped_reason",
        "max_bytes",
        "max_queue",
        "owner_id",
        "prefix",
        "scope",
    )

    def __init__(
        self,
        bus: EventBus,
        *,
        scope: Scope,
        prefix: str | None,
        device_id: str | None,
        owner_id: int | None,
        max_queue: int,
        max_bytes: int | None = None,
    ) -> None:
        self._bus = bus
        self.scope = scope
        self.prefix = prefix or None
        self.device_id = device_id.lower() if device_id is not None else None
        self.owner_id = owner_id
        self.max_queue = max_queue
        # Bytes of queued events at most (None: only the count bounds the queue): what one
        # subscriber that stops reading can make the server hold.
        self.max_bytes = max_bytes
        self._queued_bytes = 0
        self.dropped_reason: str | None = None
        self._closed = False
        # Unbounded on purpose: the bound is enforced in ``_offer`` so that there is always
        # room left for the ``None`` end marker that wakes a waiting reader.
        self._queue: asyncio.Queue[CloudEvent | None] = asyncio.Queue()

    @property
    def closed(self) -> bool:
        return self._closed

    def matches(self, event: CloudEvent) -> bool:
        if self.prefix is not None and not event.name.startswith(self.prefix):
            return False
        mine = self.owner_id is not None and event.owner_id == self.owner_id
        if self.scope is Scope.FIREHOSE:
            return event.public or mine
        if self.scope is Scope.MINE:
            return mine
        if event.device_id is None or event.device_id.lower() != self.device_id:
            return False
        # Guards a device that changed hands while the stream was open: its new owner's
        # private events must not reach the previous owner.
        return event.public or mine or self.owner_id is None

    def _offer(self, event: CloudEvent) -> None:
        if self._closed:  # closed while the bus was fanning out this very event
            return
        if self._queue.qsize() >= self.max_queue:
            self.drop(f"queue full ({self.max_queue} events): the client reads too slowly")
            return
        size = _queued_size(event)
        if self.max_bytes is not None and self._queued_bytes + size > self.max_bytes:
            self.drop(f"queue full ({self.max_bytes} bytes): the client reads too slowly")
            return
        self._queued_bytes += size
        self._queue.put_nowait(event)

    def drop(self, reason: str) -> None:
        """End the subscription because of ``reason``; the reader sees the iterator end."""
        if self._closed:
            return
        self.dropped_reason = reason
        log.warning(
            "dropped event subscriber (scope=%s prefix=%r device=%s owner=%s): %s",
            self.scope,
            self.prefix,
            self.device_id,
            self.owner_id,
            reason,
        )
        self._end()

    def close(self) -> None:
        """Stop receiving events; idempotent. Events still queued are discarded."""
        self._end()

    def _end(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._bus._remove(self)
        # A dropped reader is behind anyway, and a closed one asked to stop: discard what is
        # queued so that the reader ends now instead of after a backlog.
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queued_bytes = 0
        self._queue.put_nowait(None)

    async def receive(self, timeout_s: float | None = None) -> CloudEvent | None:
        """The next event, or None if ``timeout_s`` passes first.

        Raises ``SubscriptionEnded`` once the subscription is closed or dropped.
        """
        if self._queue.empty():
            if self._closed:
                raise SubscriptionEnded(self.dropped_reason or "subscription closed")
            try:
                async with asyncio.timeout(timeout_s):
                    item = await self._queue.get()
            except TimeoutError:
                return None
        else:
            item = self._queue.get_nowait()
        if item is None:
            # Put the marker back so that every later call also ends.
            self._queue.put_nowait(None)
            raise SubscriptionEnded(self.dropped_reason or "subscription closed")
        self._queued_bytes -= _queued_size(item)
        return item

    def __aiter__(self) -> AsyncIterator[CloudEvent]:
        return self

    async def __anext__(self) -> CloudEvent:
        try:
            event = await self.receive()
        except SubscriptionEnded:
            raise StopAsyncIteration from None
        assert event is not None  # no timeout was given
        return event


class EventBus:
    """In-memory fan-out of ``CloudEvent``s to subscriptions, indexed by scope key.

    Indexing keeps ``publish`` proportional to the subscribers that may match, not to all of
    them: an event is offered to every firehose subscriber only when it is public.
    """

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self._firehose: set[Subscription] = set()
        self._firehose_by_owner: dict[int, set[Subscription]] = {}
        self._mine: dict[int, set[Subscription]] = {}
        self._by_device: dict[str, set[Subscription]] = {}

    def subscribe(
        self,
        *,
        prefix: str | None,
        device_id: str | None,
        owner_id: int | None,
        scope: Scope,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_bytes: int | None = None,
    ) -> Subscription:
        if scope is Scope.DEVICE and not device_id:
            raise BusError("a DEVICE subscription needs a device_id")
        if max_queue < 1:
            raise BusError("max_queue must be at least 1")
        sub = Subscription(
            self,
            scope=scope,
            prefix=prefix,
            device_id=device_id,
            owner_id=owner_id,
            max_queue=max_queue,
            max_bytes=max_bytes,
        )
        self._subscriptions.add(sub)
        if scope is Scope.FIREHOSE:
            self._firehose.add(sub)
            if owner_id is not None:
                self._firehose_by_owner.setdefault(owner_id, set()).add(sub)
        elif scope is Scope.MINE:
            if owner_id is not None:  # no owner: the subscription can never match
                self._mine.setdefault(owner_id, set()).add(sub)
        else:
            assert sub.device_id is not None
            self._by_device.setdefault(sub.device_id, set()).add(sub)
        return sub

    def publish(self, event: CloudEvent) -> None:
        """Offer ``event`` to every matching subscription; never blocks, never raises."""
        for sub in self._candidates(event):
            if sub.matches(event):
                sub._offer(event)

    def _candidates(self, event: CloudEvent) -> list[Subscription]:
        found: list[Subscription] = []
        if event.public:
            found.extend(self._firehose)
        elif event.owner_id is not None:
            found.extend(self._firehose_by_owner.get(event.owner_id, ()))
        if event.owner_id is not None:
            found.extend(self._mine.get(event.owner_id, ()))
        if event.device_id is not None:
            found.extend(self._by_device.get(event.device_id.lower(), ()))
        return found

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    def close(self) -> None:
        """End every subscription (server shutdown), so open event streams finish."""
        for sub in list(self._subscriptions):
            sub.close()

    def _remove(self, sub: Subscription) -> None:
        self._subscriptions.discard(sub)
        if sub.scope is Scope.FIREHOSE:
            self._firehose.discard(sub)
            if sub.owner_id is not None:
                _discard(self._firehose_by_owner, sub.owner_id, sub)
        elif sub.scope is Scope.MINE:
            if sub.owner_id is not None:
                _discard(self._mine, sub.owner_id, sub)
        elif sub.device_id is not None:
            _discard(self._by_device, sub.device_id, sub)


def _queued_size(event: CloudEvent) -> int:
    return EVENT_OVERHEAD_BYTES + len(event.name) + len(event.data or "")


def _discard(index: dict[K, set[Subscription]], key: K, sub: Subscription) -> None:
    group = index.get(key)
    if group is not None:
        group.discard(sub)
        if not group:
            del index[key]
