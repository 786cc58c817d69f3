"""How doctor talks to the device port: a ``Driver`` (the one every connection uses) with
a handler that turns what happens into the answers doctor waits for.

Without the device's keys doctor only checks the server's 40-byte nonce: ``NonceProbe``
is the smallest core that reads it and nothing else (protocol.md §2 step 2), so no
handshake block ever reaches the server and no failure is recorded against anyone.
"""

from __future__ import annotations

import asyncio

from cyan.driver import Driver
from cyan.protocol import ProtocolError, Stage
from cyan.protocol.events import Event, NonceReceived, ServerHelloReceived
from cyan.protocol.handshake import NONCE_BYTES


class NonceProbe:
    """A core that waits for the server's nonce, then says so and sends nothing."""

    def __init__(self) -> None:
        self._received = 0
        self._events: list[Event] = []

    def receive_data(self, data: bytes) -> None:
        before, self._received = self._received, self._received + len(data)
        if before < NONCE_BYTES <= self._received:
            self._events.append(NonceReceived())

    def receive_eof(self) -> None:
        if self._received < NONCE_BYTES:
            raise ProtocolError(
                Stage.NONCE, f"the server sent {self._received} of 40 nonce bytes, then closed"
            )
        raise ProtocolError(Stage.SESSION, "the server closed the connection")

    def data_to_send(self) -> bytes:
        return b""

    def events_received(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    @property
    def backlog(self) -> bool:
        return False


class ConnectionWatch:
    """The handler: ``nonce`` and ``hello`` resolve as the handshake gets there; ``ended``
    resolves to the error that ended the connection first."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.nonce: asyncio.Future[None] = loop.create_future()
        self.hello: asyncio.Future[None] = loop.create_future()
        self.ended: asyncio.Future[ProtocolError] = loop.create_future()
        self.driver: Driver | None = None
        self.local_ip = "?"  # our end's address, as the server sees us

    def connected(self, driver: Driver) -> None:
        self.driver = driver
        sockname = driver.transport.get_extra_info("sockname") if driver.transport else None
        if sockname:
            self.local_ip = str(sockname[0])

    def event_received(self, event: Event) -> None:
        if isinstance(event, NonceReceived) and not self.nonce.done():
            self.nonce.set_result(None)
        elif isinstance(event, ServerHelloReceived) and not self.hello.done():
            self.hello.set_result(None)

    def failed(self, error: ProtocolError) -> None:
        if not self.ended.done():
            self.ended.set_result(error)

    def closed(self, exc: Exception | None) -> None:
        if self.ended.done() or self.driver is None:
            return
        try:
            self.driver.core.receive_eof()  # raises the error naming where the server hung up
        except ProtocolError as error:
            if exc is not None:
                error = ProtocolError(error.stage, f"{error.reason} ({exc})")
            self.ended.set_result(error)

    async def first(self, what: asyncio.Future[None], timeout_s: float) -> ProtocolError | None:
        """Wait for ``what``: None once it happened, else the error (or the timeout: raised)."""
        ended: asyncio.Future[object] = self.ended  # type: ignore[assignment]
        waiting: asyncio.Future[object] = what  # type: ignore[assignment]
        await asyncio.wait({waiting, ended}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if what.done():
            return None
        if self.ended.done():
            return self.ended.result()
        raise TimeoutError
