"""``Driver``: the asyncio side of one connection through the sans-I/O core.

As websockets' asyncio/connection.py wraps its protocol.py: bytes from the socket go into
the core, what the core wants sent goes out, and what it reports goes to a ``Handler``.
A ``ProtocolError`` from the core closes this one connection after the handler heard it.
The driver knows nothing of TCP beyond an ``asyncio.Transport``, so a datagram transport
can carry the same core later (Gen 3 devices speak CoAP over DTLS on UDP 5684).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from typing import Protocol, cast

from cyan.protocol import ProtocolError
from cyan.protocol.events import Event

# Linux only; elsewhere the delayed ACK stays as the system has it.
_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


class Core(Protocol):
    """What the driver needs of a protocol core (protocol/connection.py ``Connection``)."""

    def receive_data(self, data: bytes) -> None: ...

    def receive_eof(self) -> None: ...

    def data_to_send(self) -> bytes: ...

    def events_received(self) -> list[Event]: ...

    @property
    def backlog(self) -> bool:
        """Received bytes wait that the last ``receive_data`` left for a later call."""
        ...


class Handler(Protocol):
    """Who owns the connection: the gateway's session, a virtual device, doctor, a test."""

    def connected(self, driver: Driver) -> None:
        """The transport is up; the first bytes may arrive right after this returns."""

    def event_received(self, event: Event) -> None: ...

    def failed(self, error: ProtocolError) -> None:
        """The core refused what arrived; the driver closes the connection next."""

    def closed(self, exc: Exception | None) -> None: ...


class Driver(asyncio.Protocol):
    __slots__ = (
        "_clock",
        "_closing",
        "_held",
        "ack_apart",
        "core",
        "discard_reads",
        "handler",
        "last_received",
        "on_read",
        "on_writable",
        "transport",
    )

    def __init__(
        self,
        core: Core,
        handler: Handler,
        *,
        clock: Callable[[], float] = time.monotonic,
        ack_apart: bool = True,
    ) -> None:
        self.core = core
        self.handler = handler
        self.transport: asyncio.Transport | None = None
        self._clock = clock
        self.last_received = clock()
        # Write what the core answers at once (an empty ACK) before handling the events
        # that follow from the same bytes, as Device OS does: two writes, not one.
        self.ack_apart = ack_apart
        self._closing = False
        self._held: asyncio.TimerHandle | None = None
        # Drop what arrives instead of handing it to the core (a test's stalled network);
        # the close that follows still arrives.
        self.discard_reads = False
        # Called after each read has been handled, and when the socket drained its write
        # buffer below the low-water mark.
        self.on_read: Callable[[], None] | None = None
        self.on_writable: Callable[[], None] | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, so no isinstance check.
        self.transport = cast(asyncio.Transport, transport)
        self.last_received = self._clock()
        self.handler.connected(self)

    def data_received(self, data: bytes) -> None:
        if self.discard_reads:
            return
        self.last_received = self._clock()
        self._take(data)

    def _take(self, data: bytes) -> None:
        core = self.core
        try:
            core.receive_data(data)
            if self.ack_apart:
                self.flush()
            self._dispatch()
        except ProtocolError as error:
            self._fail(error)
            return
        finally:
            if self.on_read is not None:
                self.on_read()
        if core.backlog and self._held is None and self.transport is not None and not self.closing:
            # A flood in one read: stop reading this socket (TCP pushes back on the
            # sender) and handle the rest a batch per loop turn, so every other
            # connection gets its turn in between.
            self.transport.pause_reading()
            asyncio.get_running_loop().call_soon(self._take_backlog)

    def _take_backlog(self) -> None:
        if self.closing or self.transport is None or self._held is not None:
            return
        self._take(b"")
        if not self.core.backlog and self._held is None and not self.closing:
            self.transport.resume_reading()

    def hold_reading(self, seconds: float) -> None:
        """Read nothing from this socket, nor what it already sent, for ``seconds``: the
        handler's answer to a peer that floods. TCP pushes back on the sender meanwhile."""
        if self._held is not None or self.closing:
            return
        assert self.transport is not None
        self.transport.pause_reading()
        self._held = asyncio.get_running_loop().call_later(seconds, self._release)

    def _release(self) -> None:
        self._held = None
        if self.closing or self.transport is None:
            return
        if self.core.backlog:
            self._take_backlog()
        else:
            self.transport.resume_reading()

    def eof_received(self) -> bool | None:
        self.drive(self.core.receive_eof)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._held is not None:
            self._held.cancel()
            self._held = None
        self.transport = None
        self.handler.closed(exc)

    def resume_writing(self) -> None:
        if self.on_writable is not None:
            self.on_writable()

    # -- driving the core -----------------------------------------------------------------

    def drive(self, step: Callable[..., object], *args: object) -> None:
        """Call one core method, then write its bytes and hand its events over."""
        try:
            step(*args)
            self.flush()
            self._dispatch()
        except ProtocolError as error:
            self._fail(error)

    def _dispatch(self) -> None:
        for event in self.core.events_received():
            self.handler.event_received(event)
        self.flush()

    def _fail(self, error: ProtocolError) -> None:
        self.handler.failed(error)
        self.close()

    def flush(self) -> None:
        data = self.core.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    @property
    def closing(self) -> bool:
        return self._closing or self.transport is None or self.transport.is_closing()

    # -- the socket under it ----------------------------------------------------------------

    @property
    def write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    @property
    def peer_ip(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return str(peer[0]) if peer else "?"

    def set_nagle(self, on: bool) -> None:
        """Nagle on or off (asyncio turns it off on every TCP connection it makes)."""
        sock = self.transport.get_extra_info("socket") if self.transport else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0 if on else 1)

    def quick_ack(self) -> None:
        if self.transport is not None:
            quick_ack(self.transport)


def quick_ack(transport: asyncio.BaseTransport) -> None:
    """Send the ACK for what was just read now instead of after the delayed-ACK timer.

    Linux turns quick ACKs off again by itself, so this is set after each read that
    matters; setting it sends an ACK that is already due at once (tcp_cleanup_rbuf).
    """
    if _TCP_QUICKACK is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # the socket may be closing under us
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
