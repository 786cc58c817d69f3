"""The socket traffic of a handshake alone, as a same-run floor for bench/handshakes.py.

A bare server (no crypto, no protocol state, no store, no logging) makes the reads and
writes a Spark handshake makes on the server side, in the sizes the gateway uses: nonce
out (40 B), RSA block in (256 B), session key out (384 B), Hello in, Hello and the
describe request out, the describe response in, its ACK out. It runs on the same loop
(uvloop) and CPUs as the node under test; its CPU time per exchange is what the kernel's
TCP and the event loop cost before any of Cyan's code. RSA alone + this floor is the least
a handshake can cost the server in any implementation on these sockets.
"""

from __future__ import annotations

import asyncio
import os
from multiprocessing.connection import Connection
from typing import cast

from bench.figures import HOST, CpuMeter, clock, run
from bench.processes import Child, child_main, serve_control

# ("out", n): the server writes n bytes; ("in", n): it waits for n bytes.
SERVER_STEPS: tuple[tuple[str, int], ...] = (
    ("out", 40),  # nonce
    ("in", 256),  # RSA-2048 block from the device
    ("out", 384),  # session key ciphertext + signature
    ("in", 34),  # device Hello (2-byte length + one AES block pair)
    ("out", 34),  # server Hello
    ("out", 18),  # describe request
    ("in", 130),  # describe response (a few functions and variables)
    ("out", 18),  # ACK of the describe response
)


def _client_steps() -> list[tuple[str, int]]:
    flipped = {"out": "in", "in": "out"}
    return [(flipped[kind], size) for kind, size in SERVER_STEPS]


class _ShapedServer(asyncio.Protocol):
    __slots__ = ("_buffered", "_step", "_transport")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._buffered = 0
        self._step = 0
        self._advance()

    def data_received(self, data: bytes) -> None:
        self._buffered += len(data)
        self._advance()

    def _advance(self) -> None:
        while self._step < len(SERVER_STEPS):
            kind, size = SERVER_STEPS[self._step]
            if kind == "out":
                self._transport.write(bytes(size))
            elif self._buffered >= size:
                self._buffered -= size
            else:
                return
            self._step += 1


def floor_server_main(conn: Connection, cpus: list[int] | None) -> None:
    """Child: the shaped server on loopback, on ``cpus`` (None: any), until stop."""
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    child_main(conn, lambda: _floor_server(conn))


async def _floor_server(conn: Connection) -> None:
    server = await asyncio.get_running_loop().create_server(_ShapedServer, HOST, 0, backlog=4096)
    try:
        conn.send({"ok": True, "pid": os.getpid(), "port": server.sockets[0].getsockname()[1]})
        await serve_control(conn, {})
    finally:
        server.close()


async def _exchanges(port: int, count: int, concurrency: int, deadline: float) -> int:
    """Run ``count`` exchanges, ``concurrency`` at a time (0: all at once); connections are
    held open to the end, as devices stay connected. Returns how many completed."""
    gate = asyncio.Semaphore(concurrency or count)
    steps = _client_steps()
    writers: list[asyncio.StreamWriter] = []

    async def one() -> bool:
        async with gate:
            if clock() > deadline:
                return False
            reader, writer = await asyncio.open_connection(HOST, port)
            writers.append(writer)
            for kind, size in steps:
                if kind == "out":
                    writer.write(bytes(size))
                else:
                    await reader.readexactly(size)
            return True

    try:
        tasks = [asyncio.create_task(one()) for _ in range(count)]
        done, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - clock()))
        for task in pending:
            task.cancel()
        return sum(1 for task in done if not task.exception() and task.result())
    finally:
        for writer in writers:
            writer.close()


def floor_cpu_per_exchange(
    count: int, concurrency: int, server_cpus: list[int] | None, deadline_s: float
) -> float:
    """Server CPU seconds per completed exchange (NaN if none completed)."""
    with Child("io-floor", floor_server_main, server_cpus) as server:
        info = server.start(timeout_s=30)
        meter = CpuMeter(server.pid)
        meter.start()
        completed = run(_exchanges(info["port"], count, concurrency, clock() + deadline_s))
        meter.stop()
    return meter.cpu_s / completed if completed else float("nan")
