"""driver/connection.py: the core driven over real loopback sockets, both ends."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field

from cyan.driver import Driver
from cyan.protocol import DeviceConnection, ProtocolError, ServerConnection, crypto
from cyan.protocol.connection import FRAMES_PER_STEP
from cyan.protocol.events import (
    DeviceIdentified,
    Event,
    EventPublished,
    FunctionCallRequested,
    HelloReceived,
    ServerHelloReceived,
)
from cyan.protocol.messages import EventInfo
from tests.protocol.pair import PHOTON_HELLO, device_key, server_key
from tests.system import LOOPBACK

DEVICE_ID = "0123456789abcdef01234567"


@dataclass
class Recorder:
    """A handler that keeps what it heard, and accepts the device on the server's side
    (with ``accepted_key``; by default tests/protocol/pair.py's first device key)."""

    accepted_key: crypto.RsaPublicKey | None = None
    events: list[Event] = field(default_factory=list)
    failures: list[ProtocolError] = field(default_factory=list)
    closed_with: list[Exception | None] = field(default_factory=list)
    driver: Driver | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    written_at_event: list[int] = field(default_factory=list)

    def connected(self, driver: Driver) -> None:
        self.driver = driver
        if isinstance(driver.core, ServerConnection):
            driver.drive(driver.core.start)

    def event_received(self, event: Event) -> None:
        self.events.append(event)
        assert self.driver is not None
        if isinstance(event, DeviceIdentified):
            assert isinstance(self.driver.core, ServerConnection)
            key = self.accepted_key or device_key(0).public_key()
            self.driver.drive(self.driver.core.accept_device, key)
        if isinstance(event, FunctionCallRequested):
            written = getattr(self.driver.transport, "writes", None)
            self.written_at_event.append(len(written) if written is not None else -1)
            assert isinstance(self.driver.core, DeviceConnection)
            self.driver.core.reply_function(event.token, 7)
        self.changed.set()

    def failed(self, error: ProtocolError) -> None:
        self.failures.append(error)
        self.changed.set()

    def closed(self, exc: Exception | None) -> None:
        self.closed_with.append(exc)
        self.changed.set()

    async def until(self, check: object, timeout_s: float = 5.0) -> None:
        async def wait() -> None:
            while not check():  # type: ignore[operator]
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), timeout_s)


class CountingTransport:
    """Passes everything to the real transport and counts the writes."""

    def __init__(self, inner: asyncio.Transport) -> None:
        self._inner = inner
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self._inner.write(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def said_hello(side: Recorder) -> bool:
    return any(isinstance(e, HelloReceived | ServerHelloReceived) for e in side.events)


async def listen(server_side: Recorder) -> tuple[asyncio.Server, int]:
    """A loopback server with tests/protocol/pair.py's server key, each connection a
    ServerConnection on a Driver handled by ``server_side``; and its port."""

    def server_driver() -> Driver:
        core = ServerConnection(server_key(), random_bytes=os.urandom, clock=time.time)
        return Driver(core, server_side)

    listening = await asyncio.get_running_loop().create_server(server_driver, LOOPBACK, 0)
    return listening, listening.sockets[0].getsockname()[1]


async def _pair(*, ack_apart: bool = True) -> tuple[Recorder, Recorder, asyncio.Server]:
    loop = asyncio.get_running_loop()
    server_side = Recorder()
    device_side = Recorder()
    listening, port = await listen(server_side)
    core = DeviceConnection(
        DEVICE_ID,
        device_key(0),
        server_key().public_key(),
        PHOTON_HELLO,
        random_bytes=os.urandom,
        clock=time.time,
    )
    await loop.create_connection(
        lambda: Driver(core, device_side, ack_apart=ack_apart), LOOPBACK, port
    )
    return server_side, device_side, listening


async def test_both_ends_shake_hands_through_drivers() -> None:
    server_side, device_side, listening = await _pair()
    try:
        await device_side.until(lambda: said_hello(device_side))
        await server_side.until(lambda: said_hello(server_side))
        assert server_side.failures == device_side.failures == []
    finally:
        assert device_side.driver is not None
        device_side.driver.close()
        listening.close()
        await listening.wait_closed()
    await server_side.until(lambda: server_side.closed_with)


async def test_garbage_reaches_the_handler_as_a_failure_and_closes_the_connection() -> None:
    server_side, device_side, listening = await _pair()
    try:
        await server_side.until(lambda: said_hello(server_side))
        assert device_side.driver is not None
        assert device_side.driver.transport is not None
        device_side.driver.transport.write(b"\x00\x10" + b"\x99" * 16)  # not our cipher
        await server_side.until(lambda: server_side.closed_with)
        assert len(server_side.failures) == 1
        assert server_side.driver is not None
        assert server_side.driver.closing
    finally:
        listening.close()
        await listening.wait_closed()


async def _call_once(*, ack_apart: bool) -> list[int]:
    server_side, device_side, listening = await _pair(ack_apart=ack_apart)
    try:
        await server_side.until(lambda: said_hello(server_side))
        device = device_side.driver
        assert device is not None
        assert device.transport is not None
        device.transport = CountingTransport(device.transport)  # type: ignore[assignment]
        server = server_side.driver
        assert server is not None
        assert isinstance(server.core, ServerConnection)
        server.drive(server.core.call_function, "brew", "")
        await device_side.until(lambda: device_side.written_at_event)
        return device_side.written_at_event
    finally:
        listening.close()
        await listening.wait_closed()


async def test_the_ack_goes_out_before_the_events_are_handled_unless_coalesced() -> None:
    # Device OS writes its empty ACK on its own, before the answer (protocol.md §7.1).
    assert await _call_once(ack_apart=True) == [1]
    assert await _call_once(ack_apart=False) == [0]


async def test_a_flood_in_one_read_is_handled_a_batch_per_loop_turn_with_reading_paused() -> None:
    server_side, device_side, listening = await _pair()
    try:
        await server_side.until(lambda: said_hello(server_side))
        device, server = device_side.driver, server_side.driver
        assert device is not None
        assert server is not None
        assert server.transport is not None
        assert isinstance(device.core, DeviceConnection)
        count = 10 * FRAMES_PER_STEP + 5
        for index in range(count):
            device.core.publish(EventInfo(f"flood/{index}", None, 60, public=False))
        reading: list[bool] = []
        turns = 0

        def published(event: Event) -> bool:
            return isinstance(event, EventPublished)

        def count_turn() -> None:
            nonlocal turns
            turns += 1
            if len(list(filter(published, server_side.events))) < count:
                asyncio.get_running_loop().call_soon(count_turn)

        original = server_side.event_received

        def noting(event: Event) -> None:
            if published(event):
                assert server.transport is not None
                reading.append(server.transport.is_reading())
            original(event)

        server_side.event_received = noting  # type: ignore[method-assign]
        # All of it at once, as one 256 KB read brings it (TCP could split a real write).
        asyncio.get_running_loop().call_soon(count_turn)
        server.data_received(device.core.data_to_send())

        await server_side.until(lambda: len(reading) == count)
        names = [e.event.name for e in server_side.events if isinstance(e, EventPublished)]
        assert names == [f"flood/{index}" for index in range(count)]  # none lost, in order
        assert reading[:FRAMES_PER_STEP] == [True] * FRAMES_PER_STEP
        assert reading[FRAMES_PER_STEP:] == [False] * (count - FRAMES_PER_STEP)
        assert turns >= 10  # the loop ran other callbacks between the batches
        assert server.transport.is_reading()  # and reads again once the backlog is done
        assert server_side.failures == []
    finally:
        listening.close()
        await listening.wait_closed()


async def test_a_held_connection_reads_nothing_until_the_hold_ends_then_all_of_it() -> None:
    """hold_reading: the gateway's answer to a device that floods (gateway/admission.py)."""
    hold_s = 0.2
    server_side, device_side, listening = await _pair()
    try:
        await server_side.until(lambda: said_hello(server_side))
        device, server = device_side.driver, server_side.driver
        assert device is not None
        assert server is not None
        assert isinstance(device.core, DeviceConnection)
        loop = asyncio.get_running_loop()
        count = 3 * FRAMES_PER_STEP
        handled_at: list[float] = []
        held_at: list[float] = []
        original = server_side.event_received

        def holding(event: Event) -> None:
            if isinstance(event, EventPublished):
                handled_at.append(loop.time())
                if len(handled_at) == 10:
                    held_at.append(loop.time())
                    assert server is not None
                    server.hold_reading(hold_s)
            original(event)

        server_side.event_received = holding  # type: ignore[method-assign]
        for index in range(count):
            device.core.publish(EventInfo(f"flood/{index}", None, 60, public=False))
        server.data_received(device.core.data_to_send())

        await server_side.until(lambda: len(handled_at) == count)
        names = [e.event.name for e in server_side.events if isinstance(e, EventPublished)]
        assert names == [f"flood/{index}" for index in range(count)]  # none lost, in order
        # The batch being handled finishes; nothing after it before the hold is over
        # (uvloop's timers may fire up to a millisecond early).
        after_hold = handled_at[FRAMES_PER_STEP:]
        assert min(after_hold) - held_at[0] >= hold_s - 0.002
        assert server.transport is not None
        await server_side.until(
            lambda: server.transport is not None and server.transport.is_reading()
        )
        assert server_side.failures == []
    finally:
        listening.close()
        await listening.wait_closed()
