"""Whole-system helpers: a real Node on loopback, virtual devices, raw device sockets.

Nothing of Cyan's own is mocked here: real TCP, real crypto, real SQLite/PostgreSQL,
real HTTP. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cyan.device import PROFILES, DeviceOptions, VirtualDevice
from cyan.driver import Driver
from cyan.keydir import KeyStore
from cyan.node import Node
from cyan.protocol import DeviceConnection, ProtocolError, crypto, messages
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


class BytesCore:
    """A core that keeps what arrives and sends nothing: a device before it has keys."""

    def __init__(self) -> None:
        self.received = bytearray()

    def receive_data(self, data: bytes) -> None:
        self.received += data

    def receive_eof(self) -> None:
        pass

    def data_to_send(self) -> bytes:
        return b""

    def events_received(self) -> list[Event]:
        return []

    @property
    def backlog(self) -> bool:
        return False


def device_core(
    keystore: KeyStore,
    hello: messages.HelloInfo | None = None,
    server_public: crypto.RsaPublicKey | None = None,
) -> DeviceConnection:
    """The device end of the core for ``keystore``, a Photon's Hello unless told."""
    return DeviceConnection(
        keystore.device_id,
        keystore.device_key,
        server_public or keystore.server.public_key,
        hello or messages.HelloInfo(6, 1, 0x36, 6),
        random_bytes=os.urandom,
        clock=time.time,
    )


class RawDevice:
    """The device end of the core on the same ``Driver`` as everything else, stepped by hand
    by tests that misbehave on purpose: raw bytes first, the real core after ``handshake``.

    Every wait is on the connection itself (a read, the close), bounded by a timeout.
    """

    def __init__(self) -> None:
        self._bytes = BytesCore()
        self.driver = Driver(self._bytes, self)
        self.connection: DeviceConnection | None = None
        self.events: list[Event] = []
        self.errors: list[ProtocolError] = []
        self._changed = asyncio.Event()
        self._closed = asyncio.Event()

    @classmethod
    async def open(cls, port: int) -> RawDevice:
        raw = cls()
        await asyncio.get_running_loop().create_connection(lambda: raw.driver, LOOPBACK, port)
        return raw

    # -- the driver's Handler -------------------------------------------------------------

    def connected(self, driver: Driver) -> None:
        driver.on_read = self._changed.set

    def event_received(self, event: Event) -> None:
        self.events.append(event)

    def failed(self, error: ProtocolError) -> None:
        self.errors.append(error)

    def closed(self, exc: Exception | None) -> None:
        self._closed.set()
        self._changed.set()

    # -- stepping it ------------------------------------------------------------------------

    async def _next_change(self, timeout_s: float) -> None:
        # A read since the last wait counts, as unread bytes in a stream would.
        await asyncio.wait_for(self._changed.wait(), max(timeout_s, 0.01))
        self._changed.clear()

    async def read_exactly(self, count: int, timeout_s: float = 5.0) -> bytes:
        """The first ``count`` raw bytes the server sent (its nonce, before any core)."""
        deadline = time.monotonic() + timeout_s
        while len(self._bytes.received) < count:
            if self._closed.is_set():
                raise ConnectionError("server closed the connection")
            await self._next_change(deadline - time.monotonic())
        return bytes(self._bytes.received[:count])

    def stop_answering(self) -> None:
        """From now on nothing the server sends reaches the core, so no ping is answered."""
        self.driver.discard_reads = True

    def write(self, data: bytes) -> None:
        """Bytes as they are, around the core."""
        if self.driver.transport is not None:
            self.driver.transport.write(data)

    async def handshake(
        self,
        keystore: KeyStore,
        server_public: crypto.RsaPublicKey | None = None,
        timeout_s: float = 5.0,
        hello: messages.HelloInfo | None = None,
    ) -> None:
        self.connection = device_core(keystore, hello, server_public)
        self.driver.core = self.connection
        # What arrived before the core took over (the nonce) goes into it first.
        if self._bytes.received:
            self.driver.data_received(bytes(self._bytes.received))
        deadline = time.monotonic() + timeout_s
        while not any(isinstance(e, ServerHelloReceived) for e in self.events):
            await self.pump(deadline - time.monotonic())

    def flush(self) -> None:
        """Send what the test asked of the core (a subscribe, a describe)."""
        self.driver.drive(lambda: None)

    async def pump(self, timeout_s: float = 5.0) -> None:
        """Send what the core holds, then wait for the next bytes from the server."""
        self.flush()
        if self._closed.is_set():
            raise ConnectionError("server closed the connection")
        await self._next_change(timeout_s)
        if self._closed.is_set() or self.errors:
            raise ConnectionError("server closed the connection")

    async def closed_by_server(self, timeout_s: float = 5.0) -> bool:
        """True once the server closes; everything it sends meanwhile is dropped."""
        self.driver.discard_reads = True
        try:
            await asyncio.wait_for(self._closed.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.driver.close()

    def reset(self) -> None:
        """Close with a TCP reset instead of a FIN (SO_LINGER with a zero timeout)."""
        assert self.driver.transport is not None
        sock = self.driver.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.driver.close()


def failures_at(cloud: Cloud, stage: str) -> list[Any]:
    return [f for f in cloud.node.gateway.failures if f.stage == stage]
