"""diagnose/probe.py: ``NonceProbe``, the core that only reads the server's nonce (driven
with bytes, it is sans-I/O), and ``ConnectionWatch``, the handler doctor waits on, on the
one ``Driver`` over real loopback sockets: servers of our own that misbehave on purpose,
and the real gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cyan.diagnose.probe import ConnectionWatch, NonceProbe
from cyan.driver import Core, Driver
from cyan.protocol import ProtocolError, Stage
from cyan.protocol.events import NonceReceived, PingAcknowledged, ServerHelloReceived
from cyan.protocol.handshake import NONCE_BYTES
from tests.protocol.pair import PHOTON_HELLO
from tests.system import LOOPBACK, Cloud, device_core, running_cloud

BOUND_S = 5.0  # a hang bound: every wait here ends on an event long before


def nonce(count: int = NONCE_BYTES) -> bytes:
    return bytes(i % 256 for i in range(count))


# -- NonceProbe, bytes in -------------------------------------------------------------------


def test_the_probe_never_sends_anything() -> None:
    probe = NonceProbe()
    assert probe.data_to_send() == b""
    probe.receive_data(nonce())
    assert probe.data_to_send() == b""
    probe.receive_data(b"more the server would say")
    assert probe.data_to_send() == b""


def test_a_whole_nonce_is_reported_once() -> None:
    probe = NonceProbe()
    assert probe.events_received() == []
    probe.receive_data(nonce())
    assert probe.events_received() == [NonceReceived()]
    assert probe.events_received() == []  # taken: not reported again


def test_a_nonce_in_pieces_is_reported_with_its_last_byte() -> None:
    probe = NonceProbe()
    for byte in nonce()[:-1]:
        probe.receive_data(bytes([byte]))
        assert probe.events_received() == []
    probe.receive_data(nonce()[-1:])
    assert probe.events_received() == [NonceReceived()]


def test_bytes_past_the_nonce_report_nothing_more() -> None:
    probe = NonceProbe()
    probe.receive_data(nonce(30))
    probe.receive_data(nonce(30))  # crosses 40 inside this piece
    probe.receive_data(nonce(100))
    probe.receive_data(b"")
    assert probe.events_received() == [NonceReceived()]


@pytest.mark.parametrize("count", [0, 1, 39])
def test_a_close_before_the_whole_nonce_is_a_nonce_failure_with_the_count(count: int) -> None:
    probe = NonceProbe()
    probe.receive_data(nonce(count))
    with pytest.raises(ProtocolError) as raised:
        probe.receive_eof()
    assert raised.value.stage is Stage.NONCE
    assert raised.value.reason == f"the server sent {count} of 40 nonce bytes, then closed"
    assert probe.events_received() == []


@pytest.mark.parametrize("count", [40, 41, 400])
def test_a_close_after_the_nonce_is_a_session_end(count: int) -> None:
    probe = NonceProbe()
    probe.receive_data(nonce(count))
    with pytest.raises(ProtocolError) as raised:
        probe.receive_eof()
    assert raised.value.stage is Stage.SESSION
    assert raised.value.reason == "the server closed the connection"


def test_the_probe_is_a_core_the_driver_takes() -> None:
    core: Core = NonceProbe()  # mypy checks the fit; the driver needs nothing else
    assert core.data_to_send() == b""


# -- ConnectionWatch, events in ---------------------------------------------------------------


async def test_a_new_watch_waits_for_everything() -> None:
    watch = ConnectionWatch()
    assert not watch.nonce.done()
    assert not watch.hello.done()
    assert not watch.ended.done()
    assert watch.driver is None
    assert watch.local_ip == "?"
    watch.closed(None)  # a close before any connection: nothing to say where it ended
    assert not watch.ended.done()


async def test_the_events_resolve_their_futures_once() -> None:
    watch = ConnectionWatch()
    watch.event_received(PingAcknowledged())  # none of its business
    assert not watch.nonce.done()
    assert not watch.hello.done()
    watch.event_received(NonceReceived())
    watch.event_received(NonceReceived())  # a second report is no error
    assert watch.nonce.done()
    assert not watch.hello.done()
    watch.event_received(ServerHelloReceived())
    watch.event_received(ServerHelloReceived())
    assert watch.hello.done()
    assert not watch.ended.done()


async def test_the_first_failure_is_the_one_that_ended_it() -> None:
    watch = ConnectionWatch()
    first = ProtocolError(Stage.HANDSHAKE_DECRYPT, "wrong server key")
    watch.failed(first)
    watch.failed(ProtocolError(Stage.SESSION, "and then it closed"))
    watch.closed(ConnectionResetError(104, "reset"))
    assert watch.ended.result() is first


async def test_first_says_none_once_it_happened_else_the_error() -> None:
    watch = ConnectionWatch()
    with pytest.raises(TimeoutError):
        await watch.first(watch.nonce, 0)  # neither: the timeout, raised
    watch.event_received(NonceReceived())
    assert await watch.first(watch.nonce, 0) is None
    error = ProtocolError(Stage.REFUSED, "the server hung up")
    watch.failed(error)
    assert await watch.first(watch.hello, 0) is error
    # What happened before the connection ended still counts as happened.
    assert await watch.first(watch.nonce, 0) is None


async def test_first_wakes_when_the_connection_ends_meanwhile() -> None:
    watch = ConnectionWatch()
    error = ProtocolError(Stage.NONCE, "the server sent 3 of 40 nonce bytes, then closed")
    # Runs once first() is waiting: the end arrives while it waits, not before.
    asyncio.get_running_loop().call_soon(watch.failed, error)
    assert not watch.ended.done()
    assert await watch.first(watch.nonce, BOUND_S) is error


# -- ConnectionWatch over loopback: servers that misbehave ------------------------------------


@dataclass
class Listener:
    """What the server at the other end got from us, once we closed."""

    port: int
    received: asyncio.Future[bytes] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(behaviour: Behaviour) -> AsyncIterator[Listener]:
    listener: Listener | None = None

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert listener is not None
        try:
            await behaviour(reader, writer)
        finally:
            if not listener.received.done():
                listener.received.set_result(b"")
            writer.close()

    server = await asyncio.start_server(handle, LOOPBACK, 0)
    listener = Listener(server.sockets[0].getsockname()[1])
    try:
        yield listener
    finally:
        server.close()
        await server.wait_closed()


async def connect(port: int, core: Core | None = None) -> tuple[ConnectionWatch, Driver]:
    """What doctor does: a driver around the core, the watch as its handler."""
    watch = ConnectionWatch()
    driver = Driver(core or NonceProbe(), watch)
    await asyncio.get_running_loop().create_connection(lambda: driver, LOOPBACK, port)
    return watch, driver


async def test_a_server_that_sends_its_nonce_passes_and_hears_nothing_back() -> None:
    collected: list[bytes] = []

    async def nonce_then_listen(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(nonce())
        await writer.drain()
        collected.append(await reader.read())  # until we close

    async with serving(nonce_then_listen) as listener:
        watch, driver = await connect(listener.port)
        assert watch.driver is driver
        assert watch.local_ip == LOOPBACK
        assert await watch.first(watch.nonce, BOUND_S) is None
        driver.close()
        await asyncio.wait_for(listener.received, BOUND_S)
    assert collected == [b""]  # no handshake block ever reached the server


@pytest.mark.parametrize("count", [0, 12, 39])
async def test_a_server_that_closes_mid_nonce_is_a_nonce_failure(count: int) -> None:
    async def part_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(nonce(count))
        await writer.drain()

    async with serving(part_then_close) as listener:
        watch, driver = await connect(listener.port)
        error = await watch.first(watch.nonce, BOUND_S)
        assert error is not None
        assert error.stage is Stage.NONCE
        assert error.reason == f"the server sent {count} of 40 nonce bytes, then closed"
        assert not watch.nonce.done()
        driver.close()


async def test_a_server_that_hangs_up_after_the_nonce_ends_the_session() -> None:
    async def nonce_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(nonce())
        await writer.drain()

    async with serving(nonce_then_close) as listener:
        watch, driver = await connect(listener.port)
        assert await watch.first(watch.nonce, BOUND_S) is None
        error = await watch.first(watch.hello, BOUND_S)
        assert error is not None
        assert (error.stage, error.reason) == (Stage.SESSION, "the server closed the connection")
        assert watch.ended.result() is error
        driver.close()


async def test_a_reset_connection_says_where_it_was_and_why() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        # Linger 0: the close sends a RST instead of a FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    async with serving(reset) as listener:
        watch, driver = await connect(listener.port)
        error = await watch.first(watch.nonce, BOUND_S)
        assert error is not None
        assert error.stage is Stage.NONCE
        # No EOF came: the close names the socket's error after where the core was.
        assert error.reason.startswith("the server sent 0 of 40 nonce bytes, then closed (")
        assert "reset" in error.reason.lower()
        driver.close()


# -- against the real gateway -------------------------------------------------------------------


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    async with running_cloud(tmp_path / "cloud") as started:
        yield started


async def test_the_gateways_nonce_satisfies_the_probe(cloud: Cloud) -> None:
    watch, driver = await connect(cloud.device_port)
    assert await watch.first(watch.nonce, BOUND_S) is None
    assert not watch.ended.done()
    driver.close()


async def test_a_registered_device_core_reaches_the_servers_hello(cloud: Cloud) -> None:
    device = await cloud.add_device(start=False)
    watch, driver = await connect(cloud.device_port, device_core(device.keys, PHOTON_HELLO))
    assert await watch.first(watch.nonce, BOUND_S) is None
    assert await watch.first(watch.hello, BOUND_S) is None
    assert not watch.ended.done()
    assert cloud.node.router.live(device.device_id) is not None
    driver.close()


async def test_an_unknown_device_hears_the_server_hang_up(cloud: Cloud) -> None:
    device = await cloud.add_device(start=False, register=False)
    watch, driver = await connect(cloud.device_port, device_core(device.keys, PHOTON_HELLO))
    assert await watch.first(watch.nonce, BOUND_S) is None
    error = await watch.first(watch.hello, BOUND_S)
    assert error is not None
    # The device side only sees the hang-up; why is in the server's record (doctor asks).
    assert error.stage is Stage.REFUSED
    assert not watch.hello.done()
    driver.close()
