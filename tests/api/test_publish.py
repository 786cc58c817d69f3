"""POST /v1/devices/events: parsing, limits, privacy default, and delivery via the router."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from cyan.bus import EventBus, Scope
from cyan.bus.events import CloudEvent
from cyan.cloud.router import Router

from .conftest import DEVICE_A, Caller, FakeLink


async def publish_one(
    client: httpx.AsyncClient, bus: EventBus, caller: Caller, **kwargs: Any
) -> CloudEvent:
    sub = bus.subscribe(prefix=None, device_id=None, owner_id=caller.user.id, scope=Scope.MINE)
    try:
        reply = await client.post("/v1/devices/events", headers=caller.headers, **kwargs)
        assert (reply.status_code, reply.json()) == (200, {"ok": True})
        event = await sub.receive(0)
        assert event is not None
        return event
    finally:
        sub.close()


async def test_cli_publish(client: httpx.AsyncClient, bus: EventBus, alice: Caller) -> None:
    before = datetime.now(UTC)
    event = await publish_one(client, bus, alice, json={"name": "temp", "data": "20"})
    assert event.name == "temp"
    assert event.data == "20"
    assert event.ttl == 60
    # particle-cli never sends "private": the event stays the caller's (events.py).
    assert event.public is False
    assert event.device_id is None
    assert event.owner_id == alice.user.id
    assert before <= event.published_at <= datetime.now(UTC) + timedelta(seconds=1)
    assert event.published_at.tzinfo is not None


async def test_data_is_optional(client: httpx.AsyncClient, bus: EventBus, alice: Caller) -> None:
    event = await publish_one(client, bus, alice, json={"name": "ping"})
    assert event.data is None


@pytest.mark.parametrize(
    ("body", "public"),
    [
        ({"json": {"name": "x", "private": False}}, True),
        ({"json": {"name": "x", "private": True}}, False),
        ({"json": {"name": "x", "private": None}}, False),
        ({"data": {"name": "x", "private": "false"}}, True),
        ({"data": {"name": "x", "private": "0"}}, True),
        ({"data": {"name": "x", "private": "TRUE"}}, False),
    ],
)
async def test_private_flag(
    client: httpx.AsyncClient, bus: EventBus, alice: Caller, body: dict[str, Any], public: bool
) -> None:
    event = await publish_one(client, bus, alice, **body)
    assert event.public is public


@pytest.mark.parametrize(
    ("data", "text"), [(5, "5"), ({"a": [1, 2]}, '{"a":[1,2]}'), (True, "true"), ("", "")]
)
async def test_non_string_data_becomes_json_text(
    client: httpx.AsyncClient, bus: EventBus, alice: Caller, data: object, text: str
) -> None:
    event = await publish_one(client, bus, alice, json={"name": "x", "data": data})
    assert event.data == text


@pytest.mark.parametrize(("ttl", "expected"), [(30, 30), ("120", 120), ("+5", 5), ("", 60), (0, 0)])
async def test_ttl(
    client: httpx.AsyncClient, bus: EventBus, alice: Caller, ttl: object, expected: int
) -> None:
    event = await publish_one(client, bus, alice, json={"name": "x", "ttl": ttl})
    assert event.ttl == expected


async def test_form_publish(client: httpx.AsyncClient, bus: EventBus, alice: Caller) -> None:
    event = await publish_one(client, bus, alice, data={"name": "a/b", "data": "x y&z"})
    assert (event.name, event.data) == ("a/b", "x y&z")


async def test_limits_accept_the_maximum(
    client: httpx.AsyncClient, bus: EventBus, alice: Caller
) -> None:
    event = await publish_one(client, bus, alice, json={"name": "n" * 64, "data": "d" * 1024})
    assert (len(event.name), len(event.data or "")) == (64, 1024)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, "Event name is required"),
        ({"name": ""}, "Event name is required"),
        ({"name": 5}, "Event name is required"),
        ({"data": "x"}, "Event name is required"),
        ({"name": "n" * 65}, "Event name is longer than 64 bytes"),
        ({"name": "é" * 33}, "Event name is longer than 64 bytes"),
        ({"name": "a\nb"}, "Event name must not contain line breaks"),
        ({"name": "a\rb"}, "Event name must not contain line breaks"),
        ({"name": "x", "data": "d" * 1025}, "Event data is longer than 1024 bytes"),
        ({"name": "x", "private": "maybe"}, "private must be true or false"),
        ({"name": "x", "private": 1}, "private must be true or false"),
        ({"name": "x", "ttl": "soon"}, "ttl must be a whole number of seconds"),
        ({"name": "x", "ttl": -1}, "ttl must be a whole number of seconds"),
        ({"name": "x", "ttl": "-5"}, "ttl must be a whole number of seconds"),
        ({"name": "x", "ttl": 1.5}, "ttl must be a whole number of seconds"),
        ({"name": "x", "ttl": True}, "ttl must be a whole number of seconds"),
        ({"name": "x", "ttl": [1]}, "ttl must be a whole number of seconds"),
    ],
)
async def test_bad_publish(
    client: httpx.AsyncClient, bus: EventBus, alice: Caller, body: dict[str, Any], error: str
) -> None:
    sub = bus.subscribe(prefix=None, device_id=None, owner_id=alice.user.id, scope=Scope.MINE)
    reply = await client.post("/v1/devices/events", json=body, headers=alice.headers)
    assert (reply.status_code, reply.json()) == (400, {"ok": False, "error": error})
    assert await sub.receive(0) is None  # nothing was published


async def test_publish_reaches_devices_through_the_router(
    client: httpx.AsyncClient, alice: Caller, link_a: FakeLink, router: Router
) -> None:
    router.subscribe(DEVICE_A, "cm")  # the router offers events to subscribed devices only
    reply = await client.post(
        "/v1/devices/events", json={"name": "cmd", "data": "go"}, headers=alice.headers
    )
    assert reply.status_code == 200
    assert [(e.name, e.data, e.owner_id) for e in link_a.delivered] == [
        ("cmd", "go", alice.user.id)
    ]
