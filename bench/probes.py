"""The hostile clients of bench/abuse.py, each run in a child process until told to stop.

Each probe is bounded in count and in time (``PROBE_MAX_S``) and talks only to loopback.
A probe says it is ready once its pressure is on (connections open, the flood running),
and counts what it did, returned by its "stats" request.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from multiprocessing.connection import Connection
from typing import Any

from bench.figures import HOST, clock, paced, raise_fd_limit
from bench.processes import child_main, serve_control
from cyan.protocol import DeviceConnection, crypto, messages
from cyan.protocol.events import Event, ServerHelloReceived

# A probe never runs longer than this, whatever the parent does.
PROBE_MAX_S = 60.0
PHOTON = 6
SUBSCRIPTIONS = 10_000
HALF_OPEN = 5_000
TIMED = 50
STREAMS = 3_000
GARBAGE_RATE = 500.0
GARBAGE_CONCURRENCY = 256
BODY_CLIENTS = 16
BODY_DECLARED = 400 * 1024 * 1024
BODY_SENT_MAX = 64 * 1024 * 1024  # per client, at most, before it gives up
EVENTS_PER_WRITE = 200


class AttackDevice:
    """A registered device that runs the real handshake, then sends what it is told."""

    def __init__(
        self,
        device_id: str,
        key_der: bytes,
        server_der: bytes,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.on_event = on_event
        self.core = DeviceConnection(
            device_id,
            crypto.load_private_key(key_der),
            crypto.load_public_key(server_der),
            messages.HelloInfo(PHOTON, 1, 0, PHOTON),
            random_bytes=os.urandom,
            clock=time.time,
        )
        self.writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None

    async def open(self, port: int) -> None:
        reader, self.writer = await asyncio.open_connection(HOST, port)
        online = False
        async with asyncio.timeout(30):
            while not online:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError("the server closed the attack device's connection")
                self.core.receive_data(data)
                self.writer.write(self.core.data_to_send())
                online = any(
                    isinstance(e, ServerHelloReceived) for e in self.core.events_received()
                )
        self._reader_task = asyncio.create_task(self._drain(reader))

    async def _drain(self, reader: asyncio.StreamReader) -> None:
        """Read what the server sends, so its writes never stall on us and its pings are
        answered; events go to ``on_event`` (dropped without one)."""
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                self.core.receive_data(data)
                for event in self.core.events_received():
                    if self.on_event is not None:
                        self.on_event(event)
                if (pending := self.core.data_to_send()) and self.writer is not None:
                    self.writer.write(pending)

    async def send(self) -> None:
        assert self.writer is not None
        self.writer.write(self.core.data_to_send())
        await self.writer.drain()

    def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
        if self.writer is not None:
            self.writer.close()


# -- the probes: each ``async (ready, stats, args) -> None`` -----------------------------------

Ready = Callable[[], None]
Probe = Callable[[Ready, Counter[str], dict[str, Any]], Coroutine[Any, Any, None]]


async def _hold_open(
    ready: Ready, tasks: list[asyncio.Task[None]], writers: list[asyncio.StreamWriter]
) -> None:
    """Say ready, keep the connections open until the probe is stopped, then close them."""
    ready()
    try:
        await asyncio.sleep(PROBE_MAX_S)
    finally:
        for task in tasks:
            task.cancel()
        for writer in writers:
            writer.close()


async def subscribe_flood(ready: Ready, stats: Counter[str], args: dict[str, Any]) -> None:
    """One device sends 10,000 subscriptions with different prefixes in one write."""
    device = AttackDevice(args["device_id"], args["key_der"], args["server_der"])
    await device.open(args["device_port"])
    for index in range(SUBSCRIPTIONS):
        device.core.subscribe(f"flood/{index:05d}/", my_devices=True)
    await device.send()
    stats["subscriptions sent"] += SUBSCRIPTIONS
    ready()
    await asyncio.sleep(PROBE_MAX_S)


async def event_flood(ready: Ready, stats: Counter[str], args: dict[str, Any]) -> None:
    """One device publishes events as fast as its socket takes them."""
    device = AttackDevice(args["device_id"], args["key_der"], args["server_der"])
    await device.open(args["device_port"])
    info = messages.EventInfo("flood", b"x" * 64, 60, False)
    ready()
    end = clock() + PROBE_MAX_S
    while clock() < end and stats["events sent"] < 2_000_000:
        for _ in range(EVENTS_PER_WRITE):
            device.core.publish(info)
        await device.send()
        stats["events sent"] += EVENTS_PER_WRITE
        await asyncio.sleep(0)


async def garbage_handshakes(ready: Ready, stats: Counter[str], args: dict[str, Any]) -> None:
    """Connections that take the nonce and answer with 256 random bytes, ``GARBAGE_RATE``
    a second (above the 360/s of issue 12's trial): each costs the server an RSA decrypt.
    Paced, not as fast as this process can: on a small machine a flat-out loop here would
    take the cores from the server and measure that instead."""
    end = clock() + PROBE_MAX_S
    rate = float(args.get("garbage_rate", GARBAGE_RATE))
    in_flight = asyncio.Semaphore(GARBAGE_CONCURRENCY)

    async def one() -> None:
        try:
            reader, writer = await asyncio.open_connection(HOST, args["device_port"])
            await reader.readexactly(40)
            writer.write(os.urandom(256))
            await reader.read(1)  # the server hangs up
            stats["garbage handshakes"] += 1
            writer.close()
        except (OSError, asyncio.IncompleteReadError):
            stats["connect errors"] += 1
        finally:
            in_flight.release()

    tasks: set[asyncio.Task[None]] = set()
    ready()
    async for _ in paced(rate, math.ceil(rate * PROBE_MAX_S)):
        if clock() >= end:
            break
        await in_flight.acquire()
        task = asyncio.create_task(one())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)


async def half_open(ready: Ready, stats: Counter[str], args: dict[str, Any]) -> None:
    """5,000 connections that never answer the nonce (held until the server drops them).
    The first ``TIMED`` are watched: when the server hangs up on them is its handshake
    deadline as enforced (gateway.handshake_timeout_s, 10 s)."""
    raise_fd_limit()
    writers: list[asyncio.StreamWriter] = []
    watched: list[asyncio.Task[None]] = []
    dropped_after: list[float] = []

    async def watch(reader: asyncio.StreamReader, opened: float) -> None:
        with contextlib.suppress(Exception):
            while await reader.read(65536):
                pass
            dropped_after.append(clock() - opened)
            stats["watched dropped"] = len(dropped_after)
            stats["deadline max ms"] = round(1000 * max(dropped_after))
            stats["deadline min ms"] = round(1000 * min(dropped_after))

    for _ in range(HALF_OPEN):
        try:
            reader, writer = await asyncio.open_connection(HOST, args["device_port"])
        except OSError:
            stats["connect errors"] += 1
            continue
        writers.append(writer)
        if len(watched) < TIMED:
            watched.append(asyncio.create_task(watch(reader, clock())))
    stats["half-open connections"] = len(writers)
    await _hold_open(ready, watched, writers)


async def body_flood(ready: Ready, stats: Counter[str], args: dict[str, Any]) -> None:
    """Clients without a token declare a 400 MB form body to /oauth/token and send it."""
    chunk = b"a" * 65536
    end = clock() + PROBE_MAX_S

    async def one_loop() -> None:
        while clock() < end:
            try:
                _, writer = await asyncio.open_connection(HOST, args["api_port"])
                writer.write(
                    b"POST /oauth/token HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/x-www-form-urlencoded\r\n"
                    + f"Content-Length: {BODY_DECLARED}\r\n\r\n".encode()
                )
                sent = 0
                while sent < BODY_SENT_MAX and clock() < end:
                    writer.write(chunk)
                    await writer.drain()
                    sent += len(chunk)
                    stats["body bytes sent"] += len(chunk)
                writer.close()
            except (OSError, asyncio.IncompleteReadError):
                stats["cut off by the server"] += 1
                await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(one_loop()) for _ in range(BODY_CLIENTS)]
    ready()
    await asyncio.gather(*tasks)


async def event_streams(ready: Ready, stats: Counter[str], args: dict[str, Any]) -> None:
    """3,000 open event streams (GET /v1/events), each read as it arrives."""
    raise_fd_limit()
    request = (
        f"GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {args['token']}\r\n\r\n"
    ).encode()
    readers: list[asyncio.Task[None]] = []
    writers: list[asyncio.StreamWriter] = []

    async def read_on(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                stats["stream bytes"] += len(data)

    for _ in range(STREAMS):
        try:
            reader, writer = await asyncio.open_connection(HOST, args["api_port"])
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            stats["stream errors"] += 1
            continue
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            stats["streams refused"] += 1
            writer.close()
            continue
        writers.append(writer)
        readers.append(asyncio.create_task(read_on(reader)))
    stats["streams open"] = len(writers)
    await _hold_open(ready, readers, writers)


BYSTANDER = "body flood at a bystander"

PROBES: dict[str, Probe] = {
    "subscribe flood": subscribe_flood,
    "event flood": event_flood,
    "garbage handshakes": garbage_handshakes,
    "half-open connections": half_open,
    # Not a probe of Cyan: the same flood aimed at a bystander (``sink_main``), so that
    # what the flood costs the machine (loopback, the kernel, the probe's own CPU) is seen
    # apart from what it costs the server it is aimed at.
    BYSTANDER: body_flood,
    "body flood": body_flood,
    "event streams": event_streams,
}


def sink_main(conn: Connection) -> None:
    """Child: the bystander a body flood can be aimed at instead of Cyan. It reads each
    request's head, answers 413 and closes, as Cyan does (api/body_limit.py), and does
    nothing else: a floor for what answering the flood can cost."""
    child_main(conn, lambda: _sink(conn))


async def _sink(conn: Connection) -> None:
    answer = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
        writer.close()

    server = await asyncio.start_server(refuse, HOST, 0, backlog=1024)
    async with server:
        conn.send({"ok": True, "pid": os.getpid(), "port": server.sockets[0].getsockname()[1]})
        await serve_control(conn, {})


def probe_main(conn: Connection, name: str, args: dict[str, Any]) -> None:
    """Child: run probe ``name`` until the parent says stop (or ``PROBE_MAX_S``)."""
    child_main(conn, lambda: _probe(conn, name, args))


async def _probe(conn: Connection, name: str, args: dict[str, Any]) -> None:
    stats: Counter[str] = Counter()
    ready = asyncio.Event()
    task = asyncio.create_task(PROBES[name](ready.set, stats, args))
    waiting = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiting}, timeout=PROBE_MAX_S, return_when=asyncio.FIRST_COMPLETED)
    if task.done() and not ready.is_set():
        task.result()  # its error, to the parent
        raise RuntimeError(f"probe {name} ended before it was ready")
    conn.send({"ok": True, "pid": os.getpid()})
    try:
        await serve_control(conn, {"stats": lambda: dict(stats)})
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
