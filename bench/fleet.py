"""A light device fleet: the device end of ``cyan.protocol.DeviceConnection`` as a bare
``asyncio.Protocol`` (no tasks, no timers, no heartbeats). It answers what the server asks
(describe, function calls, variables, pings) and timestamps each stage.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import cast

from bench.figures import HOST, clock
from bench.processes import child_main, serve_control
from cyan.device.profiles import PHOTON_PLATFORM_ID, PROFILES
from cyan.device.tinker import FUNCTIONS, VARIABLES
from cyan.protocol import DeviceConnection, ProtocolError, crypto, messages, payloads
from cyan.protocol.events import (
    DescribeRequested,
    Event,
    FunctionCallRequested,
    PingAcknowledged,
    ServerHelloReceived,
    SessionStarted,
    VariableRequested,
)

HELLO = messages.HelloInfo(PHOTON_PLATFORM_ID, 3, PROFILES["1.5.2"].hello_flags, PHOTON_PLATFORM_ID)
APP_DESCRIBE = payloads.encode_description(FUNCTIONS, VARIABLES)
FULL_DESCRIBE = payloads.encode_description(
    FUNCTIONS, VARIABLES, {"p": PHOTON_PLATFORM_ID, "m": []}
)

# How a bench device writes: Nagle off and the ACK apart from the answer (asyncio's
# default); as Device OS does, Nagle on and the ACK and answer as two writes (protocol.md
# §7.1); or Nagle on and both in one write.
NODELAY, TWO_SEGMENT, ONE_SEGMENT = "nodelay", "two-segment", "one-segment"


class BenchDevice(asyncio.Protocol):
    """One device connection; timestamps (``clock()``) of each stage, 0.0 until reached.

    ``t_hello``: the server's Hello arrived. ``t_described``: the server ACKed our describe
    response; the gateway writes that ACK from the same callback, with no await between,
    in which it stores the functions on the live device (gateway/session.py ``_run``:
    core, flush, then ``_described``), so from here on the API lists them.
    """

    __slots__ = (
        "_describe_sent",
        "calls",
        "closed_by_us",
        "connection",
        "device_id",
        "error",
        "fleet",
        "settled",
        "t_closed",
        "t_connected",
        "t_described",
        "t_hello",
        "t_session",
        "t_start",
        "transport",
        "writes",
    )

    def __init__(
        self,
        fleet: Fleet,
        device_id: str,
        key: crypto.RsaPrivateKey,
        writes: str = NODELAY,
    ) -> None:
        self.fleet = fleet
        self.device_id = device_id
        self.writes = writes
        self.connection = DeviceConnection(
            device_id,
            key,
            fleet.server_public_key,
            HELLO,
            random_bytes=os.urandom,
            clock=time.time,
            separate_responses=True,
        )
        self.transport: asyncio.Transport | None = None
        self.settled: asyncio.Future[None] | None = None
        self.error: str | None = None
        self._describe_sent = False
        self.closed_by_us = False
        self.calls = 0
        self.t_start = self.t_connected = self.t_session = 0.0
        self.t_hello = self.t_described = self.t_closed = 0.0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.t_connected = clock()
        if self.writes != NODELAY:
            # Nagle on, as Device OS's TCP stack has it (asyncio turns it off).
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)

    def data_received(self, data: bytes) -> None:
        connection = self.connection
        try:
            connection.receive_data(data)
            if self.writes != ONE_SEGMENT:
                self._flush()  # the empty ACK in a write of its own, as Device OS does
            for event in connection.events_received():
                self._dispatch(event)
            self._flush()
        except ProtocolError as error:
            self._fail(f"{error.stage.value}: {error.reason}")

    def eof_received(self) -> bool | None:
        try:
            self.connection.receive_eof()
        except ProtocolError as error:
            self._fail(f"{error.stage.value}: {error.reason}")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.t_closed = clock()
        self.transport = None
        if self.t_hello == 0.0:
            self._fail(f"connection lost: {exc}" if exc else "server closed the connection")
        elif not self.closed_by_us:
            self.fleet.lost += 1

    # the core's events

    def _dispatch(self, event: Event) -> None:
        connection = self.connection
        if isinstance(event, FunctionCallRequested):
            connection.reply_function(event.token, 1)
            self.calls += 1
            self.fleet.calls += 1
        elif isinstance(event, PingAcknowledged):
            if self._describe_sent and self.t_described == 0.0:
                self.t_described = clock()
                self.fleet.described += 1
        elif isinstance(event, DescribeRequested):
            system = event.flags & messages.DescribeFlags.SYSTEM
            connection.reply_describe(event, FULL_DESCRIBE if system else APP_DESCRIBE)
            self._describe_sent = True
        elif isinstance(event, ServerHelloReceived):
            self.t_hello = clock()
            self.fleet.hellos += 1
            self._settle()
        elif isinstance(event, SessionStarted):
            self.t_session = clock()
        elif isinstance(event, VariableRequested):
            connection.reply_variable(event, None)

    def _flush(self) -> None:
        data = self.connection.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def _fail(self, reason: str) -> None:
        if self.error is None and self.t_hello == 0.0:
            self.error = reason
            self.fleet.failures[reason.split(":")[0]] += 1
        self._settle()
        self.close()

    def _settle(self) -> None:
        if self.settled is not None and not self.settled.done():
            self.settled.set_result(None)

    def close(self) -> None:
        self.closed_by_us = True
        if self.transport is not None:
            self.transport.close()


@dataclass
class ConnectReport:
    attempted: int
    started: int
    completed: int
    failed: int
    unfinished: int
    first_start: float
    last_hello: float
    hit_deadline: bool


@dataclass
class Fleet:
    """Many ``BenchDevice``s against one gateway, connected with a cap on those in flight."""

    server_public_key: crypto.RsaPublicKey
    devices: list[BenchDevice] = field(default_factory=list)
    hellos: int = 0
    described: int = 0
    calls: int = 0
    lost: int = 0
    failures: Counter[str] = field(default_factory=Counter)

    def add(self, device_id: str, key: crypto.RsaPrivateKey, writes: str = NODELAY) -> BenchDevice:
        device = BenchDevice(self, device_id, key, writes)
        self.devices.append(device)
        return device

    async def connect(
        self,
        devices: Sequence[BenchDevice],
        port: int,
        *,
        concurrency: int,
        deadline: float,
    ) -> ConnectReport:
        """Connect ``devices``, at most ``concurrency`` handshaking at once, until ``deadline``.

        A device leaves the in-flight set when the server's Hello arrives or it fails.
        """
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(concurrency)
        started = 0

        async def one(device: BenchDevice) -> None:
            nonlocal started
            async with gate:
                started += 1
                device.settled = loop.create_future()
                device.t_start = clock()
                try:
                    await loop.create_connection(lambda: device, HOST, port)
                except OSError as exc:
                    device._fail(f"tcp: {exc.strerror or exc}")
                await device.settled
                device.settled = None

        tasks = [asyncio.create_task(one(device)) for device in devices]
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - clock()))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
        hellos = [d.t_hello for d in devices if d.t_hello]
        starts = [d.t_start for d in devices if d.t_start]
        return ConnectReport(
            attempted=len(devices),
            started=started,
            completed=len(hellos),
            failed=sum(1 for d in devices if d.error is not None),
            unfinished=sum(1 for d in devices if not d.t_hello and d.error is None),
            first_start=min(starts, default=math.nan),
            last_hello=max(hellos, default=math.nan),
            hit_deadline=bool(pending),
        )

    async def wait_described(self, devices: Sequence[BenchDevice], deadline: float) -> bool:
        """Until every device that got the Hello has its describe ACKed, or ``deadline``."""
        while clock() < deadline:
            if all(d.t_described or not d.t_hello or d.t_closed for d in devices):
                return True
            await asyncio.sleep(0.02)
        return False

    def close(self, devices: Sequence[BenchDevice] | None = None) -> None:
        for device in self.devices if devices is None else devices:
            device.close()


# -- a process holding devices that answer calls --------------------------------------------


def device_fleet_main(
    conn: Connection,
    port: int,
    server_public_der: bytes,
    devices: list[tuple[str, bytes]],
    writes: str = NODELAY,
) -> None:
    """Child: connect ``devices`` (id, private key DER), answer the server until stop."""
    child_main(conn, lambda: _device_fleet(conn, port, server_public_der, devices, writes))


async def _device_fleet(
    conn: Connection,
    port: int,
    server_public_der: bytes,
    devices: list[tuple[str, bytes]],
    writes: str,
) -> None:
    fleet = Fleet(crypto.load_public_key(server_public_der))
    members = [
        fleet.add(device_id, crypto.load_private_key(der), writes) for device_id, der in devices
    ]
    deadline = clock() + 30
    report = await fleet.connect(members, port, concurrency=len(members), deadline=deadline)
    if report.completed != len(members) or not await fleet.wait_described(members, deadline):
        raise RuntimeError(f"devices did not come online: {report}, {dict(fleet.failures)}")
    conn.send({"ok": True, "pid": os.getpid()})
    try:
        await serve_control(
            conn,
            {
                "stats": lambda: {
                    "calls": fleet.calls,
                    "lost": fleet.lost,
                    "online": report.completed,
                }
            },
        )
    finally:
        fleet.close()


# -- bare connections: what a socket alone costs ----------------------------------------------
