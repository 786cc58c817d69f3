"""Open-loop HTTP load for bench/calls.py: a bare baseline server, a raw keep-alive
HTTP/1.1 client pool, and a fixed-rate schedule that records latency from due time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.figures import (
    HOST,
    OtherLoad,
    clock,
)
from bench.processes import (
    child_main,
    serve_control,
)

BODY = b"arg=D7%2CHIGH"
FORM = "application/x-www-form-urlencoded"
REQUEST_TIMEOUT_S = 5.0
GRACE_S = 5.0

# -- the baseline server ----------------------------------------------------------------------


def bare_http_main(conn: Connection) -> None:
    """Child: a minimal Starlette app on uvicorn, answering POSTs with fixed JSON."""
    child_main(conn, lambda: _bare_http(conn))


async def _bare_http(conn: Connection) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def call(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse(
            {
                "id": request.path_params["device"],
                "name": None,
                "last_app": "",
                "connected": True,
                "return_value": 1,
            }
        )

    app = Starlette(routes=[Route("/v1/devices/{device}/{name}", call, methods=["POST"])])
    config = uvicorn.Config(
        app, host=HOST, port=0, log_config=None, access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped while starting")
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    conn.send({"ok": True, "pid": os.getpid(), "api_port": port})
    try:
        await serve_control(conn, {})
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(task, 5)


# -- clients ----------------------------------------------------------------------------------


def http_request(method: str, path: str, port: int, token: str, body: bytes = b"") -> bytes:
    """One HTTP/1.1 request as bytes, for ``RawPool``: bearer token, form body if any."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {token}\r\n"
    if body:
        head += f"Content-Type: {FORM}\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


# request number -> (HTTP status, clock() when the request was handed to the connection)
Call = Callable[[int], Awaitable[tuple[int, float]]]


class _HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time, Content-Length bodies."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0 or self._waiter is None:
            return
        head = bytes(self._buffer[:end]).lower()
        marker = head.find(b"content-length:")
        if marker < 0:
            self._finish(ConnectionError("response without content-length"))
            return
        length = int(head[marker + 15 : head.find(b"\r\n", marker) % (len(head) + 1)].strip())
        total = end + 4 + length
        if len(self._buffer) < total:
            return
        status = int(self._buffer[9:12])
        body = bytes(self._buffer[end + 4 : total])
        del self._buffer[:total]
        waiter, self._waiter = self._waiter, None
        if not waiter.done():
            waiter.set_result((status, body))

    def _finish(self, error: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._finish(ConnectionError(f"connection lost: {exc}"))

    async def request(self, data: bytes) -> tuple[int, bytes, float]:
        if self.transport is None:
            raise ConnectionError("connection closed")
        self._waiter = asyncio.get_running_loop().create_future()
        written = clock()
        self.transport.write(data)
        status, body = await self._waiter
        return status, body, written


class RawPool:
    """Up to ``size`` keep-alive connections; a request waits for a free one."""

    def __init__(self, port: int, size: int) -> None:
        self._port = port
        self._size = size
        self._open = 0
        self._idle: deque[_HttpConnection] = deque()
        self._waiters: deque[asyncio.Future[_HttpConnection]] = deque()

    async def _acquire(self) -> _HttpConnection:
        while self._idle:
            connection = self._idle.pop()
            if connection.transport is not None:
                return connection
            self._open -= 1
        if self._open < self._size:
            self._open += 1
            try:
                _, protocol = await asyncio.get_running_loop().create_connection(
                    _HttpConnection, HOST, self._port
                )
            except BaseException:
                self._open -= 1
                raise
            return protocol
        waiter: asyncio.Future[_HttpConnection] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return await waiter

    def _release(self, connection: _HttpConnection) -> None:
        if connection.transport is None:
            self._open -= 1
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._idle.append(connection)

    async def request(self, data: bytes) -> tuple[int, bytes, float]:
        connection = await self._acquire()
        try:
            return await asyncio.wait_for(connection.request(data), REQUEST_TIMEOUT_S)
        except BaseException:
            if connection.transport is not None:
                connection.transport.close()
            raise
        finally:
            self._release(connection)

    def close(self) -> None:
        for connection in self._idle:
            if connection.transport is not None:
                connection.transport.close()


@contextlib.asynccontextmanager
async def make_client(
    kind: str, port: int, token: str, device_ids: list[str], connections: int
) -> Any:
    """Yields ``(call, check)``: ``call(i)`` makes request i, ``check()`` returns one body."""
    paths = [f"/v1/devices/{device_id}/digitalwrite" for device_id in device_ids]
    if kind == "httpx":
        headers = {"Authorization": f"Bearer {token}", "Content-Type": FORM}
        async with httpx.AsyncClient(
            base_url=f"http://{HOST}:{port}",
            headers=headers,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            timeout=REQUEST_TIMEOUT_S,
        ) as http:

            async def call_httpx(index: int) -> tuple[int, float]:
                # httpx waits for a pooled connection inside post(): "written" is a bound.
                written = clock()
                reply = await http.post(paths[index % len(paths)], content=BODY)
                return reply.status_code, written

            async def check_httpx() -> bytes:
                return (await http.post(paths[0], content=BODY)).content

            yield call_httpx, check_httpx
        return
    requests = [http_request("POST", path, port, token, BODY) for path in paths]
    pool = RawPool(port, connections)

    async def call_raw(index: int) -> tuple[int, float]:
        status, _, written = await pool.request(requests[index % len(requests)])
        return status, written

    async def check_raw() -> bytes:
        return (await pool.request(requests[0]))[1]

    try:
        yield call_raw, check_raw
    finally:
        pool.close()


# -- the open-loop schedule -------------------------------------------------------------------


@dataclass
class LoadRun:
    rate: float
    scheduled: int = 0
    sent: int = 0
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    unfinished: int = 0
    latency: list[float] = field(default_factory=list)  # from the due time, OK answers
    latency_sent: list[float] = field(default_factory=list)  # from the write to the socket
    lag: list[float] = field(default_factory=list)
    first_due: float = math.nan
    last_answer: float = math.nan
    hit_deadline: bool = False
    server_cpu: str = "–"
    load_cpu: str = "–"
    devices_cpu: str = "–"
    others: OtherLoad | None = None

    @property
    def achieved(self) -> float:
        span = self.last_answer - self.first_due
        return self.ok / span if span > 0 else math.nan


async def open_loop(call: Call, rate: float, duration_s: float) -> LoadRun:
    count = int(rate * duration_s)
    result = LoadRun(rate, scheduled=count)
    t0 = clock() + 0.01
    result.first_due = t0
    hard_deadline = t0 + duration_s + GRACE_S
    tasks: set[asyncio.Task[None]] = set()

    async def one(index: int, due: float) -> None:
        result.lag.append(clock() - due)
        try:
            status, sent = await call(index)
        except Exception as exc:
            result.errors[type(exc).__name__] += 1
            return
        done = clock()
        if status == 200:
            result.ok += 1
            result.latency.append(done - due)
            result.latency_sent.append(done - sent)
            result.last_answer = (
                done if math.isnan(result.last_answer) else max(result.last_answer, done)
            )
        else:
            result.errors[f"HTTP {status}"] += 1

    since_yield = 0
    for index in range(count):
        due = t0 + index / rate
        now = clock()
        if now > hard_deadline:
            result.hit_deadline = True
            break
        if due > now:
            await asyncio.sleep(due - now)
            since_yield = 0
        elif since_yield >= 16:  # behind schedule: still let answers in now and then
            await asyncio.sleep(0)
            since_yield = 0
        since_yield += 1
        task = asyncio.create_task(one(index, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        result.sent += 1
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=max(0.0, hard_deadline - clock()))
        for task in pending:
            task.cancel()
        if pending:
            result.hit_deadline = True
            result.unfinished = len(pending)
            await asyncio.wait(pending, timeout=2)
    return result
