"""Shared parts for the API tests: a real store on SQLite, a real router and bus, two users.

REST tests drive the app in memory through ``httpx.ASGITransport``; event-stream tests run
it under uvicorn on 127.0.0.1 (port 0) and read the stream over loopback TCP.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from cyan.api import create_app
from cyan.bus import EventBus
from cyan.bus.events import CloudEvent
from cyan.cloud.errors import CloudError
from cyan.cloud.router import Router
from cyan.cloud.types import FlashOptions, LiveDevice, UpdateProgress, VariableValue
from cyan.settings import ApiSettings
from cyan.store import Store, UserRecord

DEVICE_A = "0123456789abcdef01234567"  # alice's "photon1"
DEVICE_B = "0123456789abcdef0123abcd"  # alice's, unnamed
DEVICE_BOB = "89abcdef0123456789abcdef"  # bob's "photon1"
PUBLIC_KEY = b"\x30\x82\x01\x22 test key"  # any bytes do for the store

# Short, so that the keep-alive test does not wait 9 s.
KEEPALIVE_S = 0.2


@dataclass(frozen=True)
class Caller:
    user: UserRecord
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class FakeLink:
    """Stands in for the gateway's link to a connected device (cloud.router.DeviceLink)."""

    live: LiveDevice
    values: dict[str, VariableValue] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    delivered: list[CloudEvent] = field(default_factory=list)
    fail_with: CloudError | None = None
    owner_id: int | None = None
    flashed: list[bytes] = field(default_factory=list)
    # What a describe asked for again finds (``describe_again``); None: nothing new.
    described_later: LiveDevice | None = None
    describes: int = 0

    async def describe_again(self) -> LiveDevice:
        self.describes += 1
        if self.described_later is not None:
            self.live = self.described_later
        return self.live

    async def call_function(self, name: str, argument: str, timeout_s: float) -> int:
        self.calls.append((name, argument))
        if self.fail_with is not None:
            raise self.fail_with
        return len(argument)

    async def get_variable(self, name: str, timeout_s: float) -> VariableValue:
        if self.fail_with is not None:
            raise self.fail_with
        return self.values[name]

    async def signal(self, on: bool, timeout_s: float) -> None:
        pass

    async def flash(
        self, data: bytes, options: FlashOptions, on_progress: Callable[[UpdateProgress], None]
    ) -> None:
        self.flashed.append(data)
        if self.fail_with is not None:
            raise self.fail_with

    def deliver_event(self, event: CloudEvent) -> None:
        self.delivered.append(event)

    def set_owner(self, owner_id: int | None) -> None:
        self.owner_id = owner_id

    def close(self, reason: str) -> None:
        pass


def live_device(device_id: str = DEVICE_A) -> LiveDevice:
    return LiveDevice(
        device_id=device_id,
        remote_ip="192.0.2.7",
        connected_at=datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
        last_heard=datetime(2024, 5, 6, 7, 9, 0, 5000, tzinfo=UTC),
        platform_id=6,
        product_id=6,
        product_firmware_version=3,
        functions=("led", "reset"),
        variables={"temp": "double", "label": "string", "on": "bool", "count": "int32"},
        system_version="1.4.4",
    )


@pytest.fixture
def store(sqlite_store: Store) -> Store:
    return sqlite_store


@pytest.fixture
def bus(router: Router) -> EventBus:
    bus = EventBus()
    router.add_listener(bus.publish)
    return bus


@pytest.fixture
def app(store: Store, router: Router, bus: EventBus) -> FastAPI:
    return create_app(
        store=store, router=router, bus=bus, settings=ApiSettings(sse_keepalive_s=KEEPALIVE_S)
    )


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        yield c


async def make_caller(store: Store, username: str) -> Caller:
    user = await store.users.ensure(username)
    return Caller(user=user, token=await store.tokens.create(user.id))


@pytest.fixture
async def alice(store: Store) -> Caller:
    caller = await make_caller(store, "alice@example.com")
    await store.devices.add(DEVICE_A, PUBLIC_KEY, owner_id=caller.user.id, name="photon1")
    await store.devices.add(DEVICE_B, PUBLIC_KEY, owner_id=caller.user.id)
    return caller


@pytest.fixture
async def bob(store: Store) -> Caller:
    caller = await make_caller(store, "bob@example.com")
    await store.devices.add(DEVICE_BOB, PUBLIC_KEY, owner_id=caller.user.id, name="photon1")
    return caller


@pytest.fixture
def link_a(router: Router) -> FakeLink:
    link = FakeLink(
        live_device(DEVICE_A), values={"temp": 21.5, "label": "hi", "on": True, "count": -3}
    )
    router.attach(DEVICE_A, link)
    return link


# -- a real server for the event streams --------------------------------------------------


@pytest.fixture
async def live_url(app: FastAPI, bus: EventBus) -> AsyncIterator[str]:
    """The app under uvicorn on loopback only; yields its base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        http="h11",
        ws="none",
        lifespan="off",
        log_level="warning",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(5):
        # uvicorn offers only a flag for "listening", no event to wait on.
        while not server.started:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    bus.close()  # ends any stream a test left open, so shutdown does not wait for it
    server.should_exit = True
    await task


@pytest.fixture
async def http(live_url: str) -> AsyncIterator[httpx.AsyncClient]:
    # trust_env=False: a proxy variable in the environment must not reroute loopback.
    async with httpx.AsyncClient(base_url=live_url, trust_env=False, timeout=5) as c:
        yield c
