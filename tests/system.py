"""Whole-system helpers: a real Node on loopback, virtual devices, raw device sockets.

Nothing of Cyan's own is mocked here: real TCP, real crypto, real SQLite/PostgreSQL,
real HTTP. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cyan.device import PROFILES, DeviceOptions, VirtualDevice
from cyan.keydir import KeyStore
from cyan.node import Node
from cyan.protocol import DeviceConnection, crypto, messages
from cyan.protocol.events import Event, ServerHelloReceived
from cyan.settings import ADMIN_USERNAME, load_settings

LOOPBACK = "127.0.0.1"


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout_s: float = 10.0,
    what: str = "condition",
) -> None:
    """Poll until ``check`` is true; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(0.05)


def cloud_settings(data_dir: Path, database_url: str | None = None, **gateway: Any) -> Any:
    defaults: dict[str, Any] = {
        "host": LOOPBACK,
        "port": 0,
        "handshake_timeout_s": 5.0,
        "function_timeout_s": 3.0,
        "variable_timeout_s": 3.0,
    }
    defaults.update(gateway)
    return load_settings(
        data_dir=data_dir,
        database_url=database_url,
        gateway=defaults,
        api={"host": LOOPBACK, "port": 0, "sse_keepalive_s": 1.0},
        environ={},
    )


@dataclass
class Cloud:
    """A started Node, an admin token and an HTTP client pointed at it."""

    node: Node
    token: str
    http: httpx.AsyncClient
    devices: list[VirtualDevice] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def device_port(self) -> int:
        return self.node.gateway.port

    async def add_device(
        self,
        *,
        firmware: str = "2.3.1",
        name: str | None = None,
        register: bool = True,
        heartbeat_s: float = 30.0,
        keystore: KeyStore | None = None,
        start: bool = True,
        **options: Any,
    ) -> VirtualDevice:
        """``options`` go to DeviceOptions (``server=None``: the key image's address)."""
        data_dir = self.node.settings.data_dir
        if keystore is None:
            directory = data_dir / "test-devices" / f"d{len(self.devices)}"
            keystore = KeyStore.create(
                directory,
                self.node.gateway.server_key.public_key(),
                host=LOOPBACK,
                port=self.device_port,
            )
        if register:
            admin = await self.node.store.users.ensure(ADMIN_USERNAME)
            await self.node.store.devices.add(
                keystore.device_id,
                crypto.public_key_der(keystore.device_key.public_key()),
                owner_id=admin.id,
                name=name,
            )
        chosen: dict[str, Any] = {
            "server": f"{LOOPBACK}:{self.device_port}",
            "profile": PROFILES[firmware],
            "heartbeat_s": heartbeat_s,
        }
        chosen.update(options)
        device = VirtualDevice(keystore, DeviceOptions(**chosen))
        self.devices.append(device)
        if start:
            self.start(device)
        return device

    def start(self, device: VirtualDevice) -> None:
        self.tasks.append(asyncio.create_task(device.run()))

    async def online(self, device: VirtualDevice, timeout_s: float = 10.0) -> None:
        async def described() -> bool:
            live = self.node.router.live(device.device_id)
            return live is not None and bool(live.functions) and device.status.connected

        await eventually(described, timeout_s, f"device {device.device_id} online")

    async def stop(self) -> None:
        for device in self.devices:
            await device.stop()
        for task in self.tasks:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, 5)
        await self.http.aclose()
        await self.node.stop()


@contextlib.asynccontextmanager
async def running_cloud(
    data_dir: Path, database_url: str | None = None, **gateway: Any
) -> AsyncIterator[Cloud]:
    node = Node(cloud_settings(data_dir, database_url, **gateway))
    await node.start()
    admin = await node.store.users.ensure(ADMIN_USERNAME)
    token = await node.store.tokens.create(admin.id)
    http = httpx.AsyncClient(
        base_url=f"http://{LOOPBACK}:{node.api_port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    cloud = Cloud(node, token, http)
    try:
        yield cloud
    finally:
        await cloud.stop()


# -- a device driven by hand over a raw socket ----------------------------------------------


@dataclass
class RawDevice:
    """The device end of the core over asyncio streams, for tests that misbehave on purpose."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    connection: DeviceConnection | None = None
    events: list[Event] = field(default_factory=list)

    @classmethod
    async def open(cls, port: int) -> RawDevice:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        return cls(reader, writer)

    async def handshake(
        self,
        keystore: KeyStore,
        server_public: crypto.RsaPublicKey | None = None,
        timeout_s: float = 5.0,
        hello: messages.HelloInfo | None = None,
    ) -> None:
        self.connection = DeviceConnection(
            keystore.device_id,
            keystore.device_key,
            server_public or keystore.server.public_key,
            hello or messages.HelloInfo(6, 1, 0x36, 6),
            random_bytes=os.urandom,
            clock=time.time,
        )
        deadline = time.monotonic() + timeout_s
        while not any(isinstance(e, ServerHelloReceived) for e in self.events):
            await self.pump(deadline - time.monotonic())

    async def pump(self, timeout_s: float = 5.0) -> None:
        assert self.connection is not None
        out = self.connection.data_to_send()
        if out:
            self.writer.write(out)
        data = await asyncio.wait_for(self.reader.read(65536), max(timeout_s, 0.01))
        if not data:
            raise ConnectionError("server closed the connection")
        self.connection.receive_data(data)
        self.events += self.connection.events_received()
        out = self.connection.data_to_send()
        if out:
            self.writer.write(out)

    async def closed_by_server(self, timeout_s: float = 5.0) -> bool:
        """True once the server closes; everything it sends meanwhile is read and dropped."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                data = await asyncio.wait_for(self.reader.read(65536), deadline - time.monotonic())
            except TimeoutError:
                return False
            except ConnectionError:
                return True
            if not data:
                return True
        return False

    def close(self) -> None:
        self.writer.close()


def failures_at(cloud: Cloud, stage: str) -> list[Any]:
    return [f for f in cloud.node.gateway.failures if f.stage == stage]
