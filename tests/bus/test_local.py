"""The in-process bus: scopes, prefixes, bounded queues and ending subscriptions."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest

import cyan.bus
import cyan.bus.local
from cyan.bus import BusError, EventBus, Scope, Subscription, SubscriptionEnded
from cyan.bus.events import CloudEvent
from cyan.cloud.router import Router

DEVICE_A = "0123456789abcdef01234567"
DEVICE_B = "89abcdef0123456789abcdef"


def event(
    name: str = "temp",
    *,
    public: bool = False,
    owner_id: int | None = 1,
    device_id: str | None = DEVICE_A,
    data: str | None = "20",
) -> CloudEvent:
    return CloudEvent(
        name=name,
        data=data,
        ttl=60,
        public=public,
        published_at=datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        device_id=device_id,
        owner_id=owner_id,
    )


def drain(sub: Subscription) -> list[str]:
    """Names of the events queued right now (the bus delivers synchronously)."""
    names: list[str] = []
    while not sub._queue.empty():
        item = sub._queue.get_nowait()
        if item is not None:
            names.append(item.name)
    return names


def test_exports() -> None:
    for name in cyan.bus.__all__:
        assert getattr(cyan.bus, name) is getattr(cyan.bus.local, name)


def test_firehose_sees_public_and_own_events() -> None:
    bus = EventBus()
    sub = bus.subscribe(prefix=None, device_id=None, owner_id=1, scope=Scope.FIREHOSE)
    bus.publish(event("own-private", owner_id=1))
    bus.publish(event("other-public", owner_id=2, public=True))
    bus.publish(event("other-private", owner_id=2))
    bus.publish(event("api-public", owner_id=None, device_id=None, public=True))
    assert drain(sub) == ["own-private", "other-public", "api-public"]


def test_firehose_without_owner_sees_only_public() -> None:
    bus = EventBus()
    sub = bus.subscribe(prefix=None, device_id=None, owner_id=None, scope=Scope.FIREHOSE)
    bus.publish(event("private", owner_id=1))
    bus.publish(event("public", owner_id=1, public=True))
    assert drain(sub) == ["public"]


def test_mine_sees_own_events_only() -> None:
    bus = EventBus()
    sub = bus.subscribe(prefix=None, device_id=None, owner_id=1, scope=Scope.MINE)
    bus.publish(event("own-private", owner_id=1))
    bus.publish(event("own-public", owner_id=1, public=True))
    bus.publish(event("other-public", owner_id=2, public=True))
    bus.publish(event("unowned", owner_id=None, public=True))
    assert drain(sub) == ["own-private", "own-public"]


def test_device_scope_filters_by_device_case_insensitively() -> None:
    bus = EventBus()
    sub = bus.subscribe(prefix=None, device_id=DEVICE_A.upper(), owner_id=1, scope=Scope.DEVICE)
    bus.publish(event("a", device_id=DEVICE_A))
    bus.publish(event("b", device_id=DEVICE_B))
    bus.publish(event("api", device_id=None))
    # The device now belongs to user 2: their private events stay hidden, public ones show.
    bus.publish(event("new-owner-private", device_id=DEVICE_A, owner_id=2))
    bus.publish(event("new-owner-public", device_id=DEVICE_A, owner_id=2, public=True))
    assert drain(sub) == ["a", "new-owner-public"]


def test_device_scope_needs_a_device() -> None:
    with pytest.raises(BusError):
        EventBus().subscribe(prefix=None, device_id=None, owner_id=1, scope=Scope.DEVICE)
    with pytest.raises(BusError):
        EventBus().subscribe(prefix=None, device_id=None, owner_id=1, scope=Scope.MINE, max_queue=0)


def test_prefix_is_a_starts_with_match() -> None:
    bus = EventBus()
    sub = bus.subscribe(prefix="spark/", device_id=None, owner_id=1, scope=Scope.MINE)
    empty = bus.subscribe(prefix="", device_id=None, owner_id=1, scope=Scope.MINE)
    for name in ("spark/status", "spark", "sparkle", "spark/flash/status", "x/spark/"):
        bus.publish(event(name))
    assert drain(sub) == ["spark/status", "spark/flash/status"]
    assert len(drain(empty)) == 5


def test_one_event_reaches_each_matching_subscriber_once() -> None:
    bus = EventBus()
    scopes = [
        bus.subscribe(prefix=None, device_id=None, owner_id=1, scope=Scope.FIREHOSE),
        bus.subscribe(prefix=None, device_id=None, owner_id=1, scope=Scope.MINE),
        bus.subscribe(prefix=None, device_id=DEVICE_A, owner_id=1, scope=Scope.DEVICE),
    ]
    bus.publish(event("x", public=True))
    assert [drain(s) for s in scopes] == [["x"], ["x"], ["x"]]


async def test_iterates_until_closed() -> None:
    bus = EventBus()
    sub = bus.subscribe(prefix=None, device_id=None, owner_id=1, scope=Scope.MINE)
    received: list[str] = []

    async def reader() -> None:
        async for ev in sub:
            received.append(ev.name)

    task = asyncio.create_task(reader())
    bus.publish(event("one"))
    bus.publish(event("two"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    sub.close()
    await asyncio.wait_for(task, 1)
    assert received == ["one", "two"]
    assert sub.closed
    assert sub.dropped_reason is None
    assert bus.subscriber_count == 0
    bus.publish(event("after"))  # nothing left to deliver to; must not fail
    sub.close()  # idempotent
    with pytest.raises(SubscriptionEnded):
        await sub.receive()


async def test_receive_times_out_with_none() -> None:
    bus = EventBus()
    sub = bus.subscribe(prefix=None, device_id=None, owner_id=1, scope=Scope.MINE)
    assert await sub.receive(0.01) is None
    bus.publish(event("x"))
    got = await sub.receive(0.01)
    assert got is not None
    assert got.name == "x"


async def test_close_wakes_a_waiting_reader() -> None:
    bus = EventBus()
    sub = bus.subscribe(prefix=None, device_id=None, owner_id=1, scope=Scope.MINE)
    waiter = asyncio.create_task(sub.receive(10))
    await asyncio.sleep(0)
    sub.close()
    with pytest.raises(SubscriptionEnded):
        await asyncio.wait_for(waiter, 1)


async def test_full_queue_drops_the_slow_subscriber_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    slow = bus.subscribe(prefix=None, device_id=None, owner_id=1, scope=Scope.MINE, max_queue=3)
    fast = bus.subscribe(prefix=None, device_id=None, owner_id=1, scope=Scope.MINE, max_queue=3)
    with caplog.at_level(logging.WARNING, logger="cyan.bus.local"):
        for i in range(3):
            bus.publish(event(f"e{i}"))
            assert (await fast.receive(0)) is not None
        bus.publish(event("overflow"))
    assert slow.closed
    assert slow.dropped_reason is not None
    assert "queue full" in slow.dropped_reason
    assert "dropped event subscriber" in caplog.text
    # The dropped reader ends at once instead of replaying its backlog.
    assert [ev.name async for ev in slow] == []
    assert not fast.closed
    got = await fast.receive(0)
    assert got is not None
    assert got.name == "overflow"
    assert bus.subscriber_count == 1


def test_bus_close_ends_every_subscription() -> None:
    bus = EventBus()
    subs = [
        bus.subscribe(prefix=None, device_id=None, owner_id=1, scope=Scope.FIREHOSE),
        bus.subscribe(prefix=None, device_id=None, owner_id=None, scope=Scope.FIREHOSE),
        bus.subscribe(prefix=None, device_id=None, owner_id=1, scope=Scope.MINE),
        bus.subscribe(prefix=None, device_id=None, owner_id=None, scope=Scope.MINE),
        bus.subscribe(prefix=None, device_id=DEVICE_A, owner_id=1, scope=Scope.DEVICE),
    ]
    assert bus.subscriber_count == 5
    bus.close()
    assert bus.subscriber_count == 0
    # Including the MINE one without an owner, which could never match anything.
    assert all(s.closed for s in subs)
    assert (bus._firehose_by_owner, bus._mine, bus._by_device) == ({}, {}, {})


def test_router_listener_feeds_the_bus() -> None:
    bus = EventBus()
    router = Router()
    router.add_listener(bus.publish)
    sub = bus.subscribe(prefix=None, device_id=DEVICE_A, owner_id=1, scope=Scope.DEVICE)
    router.publish(event("from-router"))
    assert drain(sub) == ["from-router"]


async def test_offer_after_close_is_ignored() -> None:
    bus = EventBus()
    sub = bus.subscribe(prefix=None, device_id=None, owner_id=1, scope=Scope.MINE)
    sub.close()
    sub._offer(event("late"))  # as if closed by another subscriber's handler mid-publish
    with pytest.raises(SubscriptionEnded):
        await sub.receive(0)


async def test_a_subscriber_holds_at_most_its_bytes_and_reading_frees_them() -> None:
    bus = EventBus()
    big = "x" * 600  # 200 counted for the event itself, + name + data: about 804 bytes
    sub = bus.subscribe(prefix=None, device_id=None, owner_id=1, scope=Scope.MINE, max_bytes=2000)
    bus.publish(event("a", data=big))
    bus.publish(event("b", data=big))
    assert (await sub.receive(0)) is not None  # reading "a" makes room for "c"
    bus.publish(event("c", data=big))
    assert not sub.closed
    bus.publish(event("d", data=big))  # b + c + d would pass 2000 bytes
    assert sub.closed
    assert sub.dropped_reason is not None
    assert "2000 bytes" in sub.dropped_reason
