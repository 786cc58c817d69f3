"""Event streams under a real uvicorn on 127.0.0.1, read the way particle-api-js reads them."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI

from cyan.bus import EventBus
from cyan.bus.events import CloudEvent
from cyan.cloud.router import Router
from tests.sse import SseEvent, SseReader

from .conftest import DEVICE_A, DEVICE_B, DEVICE_BOB, KEEPALIVE_S, Caller

PUBLISHED_AT = datetime(2024, 3, 4, 5, 6, 7, 89000, tzinfo=UTC)


@asynccontextmanager
async def open_stream(
    http: httpx.AsyncClient, path: str, caller: Caller, bus: EventBus | None = None
) -> AsyncIterator[SseReader]:
    """Opens a stream and waits for ":ok", after which the subscription is in place."""
    before = bus.subscriber_count if bus is not None else 0
    async with http.stream("GET", path, headers=caller.headers) as response:
        assert response.status_code == 200
        reader = SseReader(response)
        assert await reader.first_bytes(5) == b":ok\n\n"
        assert [await reader.next_line(), await reader.next_line()] == [":ok", ""]
        if bus is not None:
            assert bus.subscriber_count == before + 1
        yield reader


async def publish(http: httpx.AsyncClient, caller: Caller, **body: object) -> None:
    reply = await http.post("/v1/devices/events", json=body, headers=caller.headers)
    assert reply.json() == {"ok": True}


async def next_event(reader: SseReader) -> SseEvent:
    async with asyncio.timeout(5):
        event = await reader.next_event()
    assert event is not None
    return event


def device_event(
    name: str, device_id: str, owner_id: int | None, *, public: bool = False
) -> CloudEvent:
    return CloudEvent(
        name=name,
        data="d",
        ttl=60,
        public=public,
        published_at=PUBLISHED_AT,
        device_id=device_id,
        owner_id=owner_id,
    )


async def test_stream_opens_with_ok_and_carries_published_events(
    http: httpx.AsyncClient, alice: Caller
) -> None:
    async with http.stream(
        "GET", "/v1/devices/events?nonce=0.123", headers=alice.headers
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        reader = SseReader(response)
        assert await reader.first_bytes(5) == b":ok\n\n"
        await publish(http, alice, name="temp", data='20 "C"\nline2')
        event = await next_event(reader)
    assert event.name == "temp"
    assert set(event.data) == {"data", "ttl", "published_at", "coreid"}
    assert event.data["data"] == '20 "C"\nline2'
    assert event.data["ttl"] == 60
    assert event.data["coreid"] == "api"
    published = event.data["published_at"]
    assert published.endswith("Z")
    assert len(published) == len("2024-01-01T00:00:00.000Z")
    assert abs(datetime.fromisoformat(published) - datetime.now(UTC)).total_seconds() < 5
    # The exact frame: event line, one-line data JSON, blank line.
    data = f'{{"data":"20 \\"C\\"\\nline2","ttl":60,"published_at":"{published}","coreid":"api"}}'
    frame = f"event: temp\ndata: {data}\n\n"
    assert frame.encode() in reader.raw


async def test_keepalive_after_silence(http: httpx.AsyncClient, alice: Caller) -> None:
    async with open_stream(http, "/v1/devices/events", alice) as reader:
        opened = time.monotonic()
        async with asyncio.timeout(3):
            assert await reader.next_line() == ":"
            first = time.monotonic()
            assert await reader.next_line() == ":"
    # Sent only after KEEPALIVE_S of silence, not at once (then repeated while silent).
    assert first - opened >= KEEPALIVE_S / 2
    assert reader.raw.startswith(b":ok\n\n:\n:\n")


@pytest.mark.parametrize(
    "path",
    ["/v1/devices/events/spark%2Fstat", "/v1/devices/events/spark/stat", "/v1/events/spark%2Fstat"],
)
async def test_prefix_filter_is_percent_decoded(
    http: httpx.AsyncClient, alice: Caller, path: str
) -> None:
    async with open_stream(http, path, alice) as reader:
        await publish(http, alice, name="spark/other", data="no")
        await publish(http, alice, name="spark", data="no")
        await publish(http, alice, name="spark/status", data="yes")
        event = await next_event(reader)
    assert (event.name, event.data["data"]) == ("spark/status", "yes")


async def test_private_events_stay_with_their_owner(
    http: httpx.AsyncClient, alice: Caller, bob: Caller
) -> None:
    async with (
        open_stream(http, "/v1/events", bob) as bob_all,
        open_stream(http, "/v1/devices/events", bob) as bob_mine,
        open_stream(http, "/v1/events", alice) as alice_all,
    ):
        await publish(http, alice, name="secret", data="1")
        await publish(http, alice, name="open", data="2", private=False)
        await publish(http, bob, name="bobs", data="3")
        assert (await next_event(bob_all)).name == "open"
        assert (await next_event(bob_all)).name == "bobs"
        assert (await next_event(bob_mine)).name == "bobs"
        assert [(await next_event(alice_all)).name for _ in range(2)] == ["secret", "open"]


async def test_device_events_reach_the_right_scopes(
    http: httpx.AsyncClient, router: Router, alice: Caller, bob: Caller
) -> None:
    a = alice.user.id
    async with (
        open_stream(http, f"/v1/devices/{DEVICE_A.upper()}/events", alice) as device_a,
        open_stream(http, "/v1/devices/photon1/events/t", alice) as device_a_t,
        open_stream(http, "/v1/devices/events", alice) as mine,
        open_stream(http, "/v1/events", alice) as firehose,
        open_stream(http, "/v1/events", bob) as bob_firehose,
        open_stream(http, "/v1/devices/events", bob) as bob_mine,
    ):
        router.publish(device_event("t1", DEVICE_B, a))
        router.publish(device_event("t2", DEVICE_A, a))
        router.publish(device_event("x3", DEVICE_A, a, public=True))
        router.publish(device_event("t4", DEVICE_BOB, bob.user.id))
        router.publish(device_event("end", DEVICE_A, a, public=True))

        async def names(reader: SseReader, count: int) -> list[str]:
            return [(await next_event(reader)).name for _ in range(count)]

        assert await names(device_a, 3) == ["t2", "x3", "end"]
        assert await names(device_a_t, 1) == ["t2"]
        assert await names(mine, 4) == ["t1", "t2", "x3", "end"]
        assert await names(firehose, 4) == ["t1", "t2", "x3", "end"]
        assert await names(bob_firehose, 3) == ["x3", "t4", "end"]
        assert await names(bob_mine, 1) == ["t4"]


async def test_device_event_data_shape(
    http: httpx.AsyncClient, router: Router, alice: Caller
) -> None:
    async with open_stream(http, "/v1/devices/photon1/events", alice) as reader:
        router.publish(
            CloudEvent(
                name="spark/status",
                data=None,
                ttl=60,
                public=False,
                published_at=PUBLISHED_AT,
                device_id=DEVICE_A,
                owner_id=alice.user.id,
            )
        )
        event = await next_event(reader)
    assert event.data == {
        "data": None,
        "ttl": 60,
        "published_at": "2024-03-04T05:06:07.089Z",
        "coreid": DEVICE_A,
    }


async def test_event_with_a_line_break_in_its_name_is_skipped(
    http: httpx.AsyncClient, router: Router, alice: Caller
) -> None:
    async with open_stream(http, "/v1/devices/events", alice) as reader:
        router.publish(device_event("bad\nname", DEVICE_A, alice.user.id))
        router.publish(device_event("good", DEVICE_A, alice.user.id))
        assert (await next_event(reader)).name == "good"
    assert b"bad" not in reader.raw


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/devices/{DEVICE_BOB}/events",
        f"/v1/devices/{DEVICE_BOB}/events/x",
        "/v1/devices/nope/events",
    ],
)
async def test_device_stream_of_someone_elses_device(
    http: httpx.AsyncClient, alice: Caller, bob: Caller, path: str
) -> None:
    reply = await http.get(path, headers=alice.headers)
    assert reply.status_code == 404
    assert reply.json() == {"ok": False, "error": "Device not found."}


async def test_stream_needs_a_token(http: httpx.AsyncClient) -> None:
    reply = await http.get("/v1/devices/events")
    assert reply.status_code == 401
    assert reply.json() == {
        "error": "invalid_request",
        "error_description": "The access token was not found",
    }


async def test_dropped_subscription_ends_the_stream(
    http: httpx.AsyncClient, bus: EventBus, alice: Caller
) -> None:
    async with open_stream(http, "/v1/devices/events", alice, bus) as reader:
        bus.close()
        async with asyncio.timeout(5):
            assert await reader.next_event() is None  # the response ended cleanly


async def test_disconnect_releases_the_subscription(
    http: httpx.AsyncClient, bus: EventBus, alice: Caller
) -> None:
    async with open_stream(http, "/v1/devices/events", alice, bus):
        assert bus.subscriber_count == 1
    async with asyncio.timeout(5):
        # The server notices the disconnect on its own schedule; nothing to wait on but that.
        while bus.subscriber_count:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_streams_whose_clients_left_leave_little_for_the_garbage_collector(
    app: FastAPI, live_url: str, alice: Caller
) -> None:
    """Freed by reference counting as their clients leave: Starlette's own streaming
    (an anyio task group, ended by a cancellation) left about 120 cyclic objects a
    stream, and 3,000 streams closing together one 0.4 s collection with the loop
    stopped (bench/abuse.py). The client here is a bare socket, so that what is found
    is the server's."""
    address = urlsplit(live_url)
    assert address.hostname is not None
    assert address.port is not None
    request = (
        f"GET /v1/devices/events HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {alice.headers['Authorization']}\r\n\r\n"
    ).encode()
    streams = 10
    gc.collect()
    gc.disable()  # what is found below is what these streams left, not collected midway
    try:
        for _ in range(streams):
            reader, writer = await asyncio.open_connection(address.hostname, address.port)
            writer.write(request)
            async with asyncio.timeout(5):
                await reader.readuntil(b":ok\n\n")
            writer.close()
            await writer.wait_closed()
        limits = app.state.cyan.limits
        async with asyncio.timeout(5):
            # Each stream's last step (api/limits.py counts it closed); the server notices
            # each disconnect on its own schedule, so there is nothing to wait on but that.
            while limits.open_streams("127.0.0.1"):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # and its task's return through uvicorn
        left = gc.collect()
    finally:
        gc.enable()
    assert left < streams * 40, f"{left} cyclic objects left by {streams} streams"


async def test_a_stream_ends_on_the_loop_without_a_worker_thread(
    app: FastAPI, http: httpx.AsyncClient, bus: EventBus, alice: Caller
) -> None:
    """The stream's last step runs on the event loop: as a background task on a worker
    thread, 3,000 streams closing together queued 3,000 thread hand-offs."""
    limits = app.state.cyan.limits
    open_stream_counted = limits.open_stream
    ended_on: list[threading.Thread] = []
    ended = asyncio.Event()
    loop = asyncio.get_running_loop()

    def counted(address: str) -> Callable[[], None]:
        closed = open_stream_counted(address)

        def recorded() -> None:
            # Called twice: when the body ends and when the response does (closed() is
            # idempotent, for a stream whose body never started).
            ended_on.append(threading.current_thread())
            if len(ended_on) == 2:
                loop.call_soon_threadsafe(ended.set)
            closed()

        return recorded

    limits.open_stream = counted
    async with open_stream(http, "/v1/devices/events", alice, bus):
        pass
    async with asyncio.timeout(5):
        await ended.wait()
    assert set(ended_on) == {threading.main_thread()}
    assert limits.open_streams("127.0.0.1") == 0
