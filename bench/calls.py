"""Function-call latency through the REST API at a fixed rate, beside a bare HTTP endpoint.

What: a Cyan node (gateway + API + SQLite store) in one process, a few devices (--devices,
4) in a second process answering Tinker's digitalwrite, and the load in this process:
POST /v1/devices/{id}/digitalwrite (arg=D7,HIGH, bearer token) round-robin over the
devices, at a fixed rate (1000/s; 200/s with --quick) for a bounded time (10 s; 5 s),
after a warm-up second. Open loop: request i is due at t0 + i / rate and is sent then
whether or not earlier ones have been answered; its latency counts from that due time,
so a stalled server shows up in the figures instead of slowing the sender. Reported:
p50, p99, max, achieved rate (answers / time from the first due send to the last
answer), errors, requests unanswered at the hard deadline (duration + 5 s), and how late
the sender itself was (send lag). Also, for reference, latency from the moment the
request was written to a pooled connection: without the wait for a free connection.

Baseline, same run, same client, same rate: a minimal Starlette app on uvicorn (run the
way the node runs its API: same event loop, uvicorn's default HTTP parser) in its own
process, answering the same POST with a fixed JSON body of the same shape. Ratios of the
p50s and p99s show what Cyan adds to an HTTP round trip: auth, the device lookup, the
device's own round trip over the gateway. Target: p99 < 3 ms at 1000 calls/s.

Client: --client raw (default) is asyncio HTTP/1.1 keep-alive connections in a pool
(--connections, 64); --client httpx is httpx.AsyncClient with the same pool size.
httpx cannot sustain the rate on one core: it costs about 1.2 ms of client CPU per
request (measured at 200/s: ~25 % of a core, bare-endpoint p50 1.6 ms against 0.5 ms
raw), and at 1000/s the load process sits at 100 % CPU and gets under 100 answers/s
even from the bare endpoint. So raw is the default; both targets always get the same
client.

The devices are this package's light client (``bench.fleet.BenchDevice``), registered
through ``Store.add_device`` on the node's database before the server starts.

Run: .venv/bin/python bench/calls.py [--quick] [--rate R] [--duration S] [--client raw|httpx]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import sys
import tempfile
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
    CpuMeter,
    OtherLoad,
    clock,
    console,
    loop_name,
    ms,
    percentile,
    print_table,
    raise_fd_limit,
    ratio,
    run,
    summary,
)
from bench.fleet import device_fleet_main
from bench.processes import (
    Child,
    child_main,
    cyan_server_main,
    device_id_for,
    make_key_pool,
    register_devices,
    serve_control,
)
from cyan.protocol import crypto

BODY = b"arg=D7%2CHIGH"
FORM = "application/x-www-form-urlencoded"
REQUEST_TIMEOUT_S = 5.0
GRACE_S = 5.0
TARGET_P99_S = 0.003

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
    requests = [
        (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: {FORM}\r\nContent-Length: {len(BODY)}\r\n\r\n"
        ).encode()
        + BODY
        for path in paths
    ]
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


async def drive(
    args: argparse.Namespace,
    port: int,
    token: str,
    device_ids: list[str],
    pids: dict[str, int],
) -> LoadRun:
    async with make_client(args.client, port, token, device_ids, args.connections) as (call, check):
        body = await check()
        if b'"return_value":1' not in body.replace(b" ", b""):
            console.print(f"[red]unexpected answer to a call: {body[:200]!r}[/]")
        await open_loop(call, args.rate, args.warmup)  # warm-up: pool, caches
        meters = {name: CpuMeter(pid) for name, pid in pids.items()}
        others = OtherLoad(list(pids.values()))
        for meter in meters.values():
            meter.start()
        others.start()
        result = await open_loop(call, args.rate, args.duration)
        others.stop()
        for meter in meters.values():
            meter.stop()
    result.server_cpu = meters["server"].share
    result.load_cpu = meters["load"].share
    if "devices" in meters:
        result.devices_cpu = meters["devices"].share
    result.others = others
    return result


# -- the two runs -----------------------------------------------------------------------------


def run_baseline(args: argparse.Namespace, device_ids: list[str]) -> LoadRun:
    with Child("bare-http", bare_http_main) as bare:
        bare.start(timeout_s=60)
        pids = {"server": bare.pid, "load": os.getpid()}
        return run(drive(args, int(bare.info["api_port"]), "x", device_ids, pids))


def run_cyan(args: argparse.Namespace, data_dir: Path, ids: list[tuple[str, Any]]) -> LoadRun:
    registered = run(register_devices(data_dir, ids))
    server_public = crypto.public_key_der(registered.server_public_key)
    devices = [(device_id, crypto.private_key_der(key)) for device_id, key in ids]
    with Child("cyan-server", cyan_server_main, str(data_dir), {}) as server:
        server.start(timeout_s=60)
        port = int(server.info["device_port"])
        with Child("devices", device_fleet_main, port, server_public, devices) as fleet:
            fleet.start(timeout_s=60)
            console.print(f"server pid {server.pid}, devices pid {fleet.pid}")
            pids = {"server": server.pid, "load": os.getpid(), "devices": fleet.pid}
            result = run(
                drive(
                    args,
                    int(server.info["api_port"]),
                    registered.token,
                    [device_id for device_id, _ in ids],
                    pids,
                )
            )
            calls = fleet.request("stats")["calls"]
            console.print(f"devices answered {calls} calls; server: {server.request('stats')}")
    return result


def report(args: argparse.Namespace, cyan: LoadRun, bare: LoadRun) -> None:
    def errors(r: LoadRun) -> str:
        return ", ".join(f"{k} {v}" for k, v in r.errors.items()) or "0"

    def pct(values: list[float], q: float) -> float:
        return percentile(values, q)

    rows = [
        ["target rate", f"{args.rate:g}/s", f"{args.rate:g}/s", ""],
        ["scheduled / sent", f"{cyan.scheduled} / {cyan.sent}", f"{bare.scheduled} / {bare.sent}"],
        ["achieved rate (OK answers)", f"{cyan.achieved:.0f}/s", f"{bare.achieved:.0f}/s"],
        ["errors", errors(cyan), errors(bare)],
        ["unanswered at the deadline", str(cyan.unfinished), str(bare.unfinished)],
    ]
    for label, q in (("p50", 50), ("p99", 99)):
        a, b = pct(cyan.latency, q), pct(bare.latency, q)
        rows.append([f"latency {label} (from due time)", ms(a), ms(b), ratio(a, b)])
    a, b = max(cyan.latency, default=math.nan), max(bare.latency, default=math.nan)
    rows.append(["latency max (from due time)", ms(a), ms(b), ratio(a, b)])
    for label, q in (("p50", 50), ("p99", 99)):
        a, b = pct(cyan.latency_sent, q), pct(bare.latency_sent, q)
        rows.append([f"latency {label} (from socket write)", ms(a), ms(b), ratio(a, b)])
    rows += [
        [
            "send lag p50 / p99 (client)",
            f"{ms(pct(cyan.lag, 50))} / {ms(pct(cyan.lag, 99))}",
            f"{ms(pct(bare.lag, 50))} / {ms(pct(bare.lag, 99))}",
        ],
        ["server CPU", cyan.server_cpu, bare.server_cpu],
        ["devices process CPU", cyan.devices_cpu, "–"],
        ["load process CPU", cyan.load_cpu, bare.load_cpu],
        [
            "other processes' CPU",
            cyan.others.text if cyan.others else "–",
            bare.others.text if bare.others else "–",
        ],
    ]
    rows = [row + [""] * (4 - len(row)) for row in rows]
    print_table(
        f"Function calls at {args.rate:g}/s for {args.duration:g} s "
        f"(client {args.client}, {args.connections} connections, {loop_name()})",
        ["", "Cyan", "bare HTTP", "ratio"],
        rows,
    )
    for r in (cyan, bare):
        if r.others is not None:
            r.others.warn()
        if r.hit_deadline:
            console.print("[yellow]hard deadline reached: partial figures[/]")
    p50, p99 = pct(cyan.latency, 50), pct(cyan.latency, 99)
    verdict = "meets" if p99 < TARGET_P99_S else "misses"
    summary(
        f"function calls at {args.rate:g}/s: p50 {ms(p50)}, p99 {ms(p99)}, max "
        f"{ms(max(cyan.latency, default=math.nan))}, {cyan.achieved:.0f}/s achieved, "
        f"{sum(cyan.errors.values())} errors; bare HTTP p50 {ms(pct(bare.latency, 50))}, "
        f"p99 {ms(pct(bare.latency, 99))} → ratio p50 {ratio(p50, pct(bare.latency, 50))}, "
        f"p99 {ratio(p99, pct(bare.latency, 99))} ({verdict} target p99 < 3 ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, under 30 s")
    parser.add_argument("--rate", type=float, help="calls per second (1000; 200 quick)")
    parser.add_argument("--duration", type=float, help="measured seconds (10; 5 quick)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--devices", type=int, default=4, help="devices taking the calls")
    parser.add_argument("--connections", type=int, default=64, help="client connection pool")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    args = parser.parse_args()
    args.rate = args.rate or (200.0 if args.quick else 1000.0)
    args.duration = args.duration or (5.0 if args.quick else 10.0)
    raise_fd_limit()

    with tempfile.TemporaryDirectory(prefix="cyan-bench-") as tmp:
        pool = make_key_pool(args.devices)
        ids = [(device_id_for(i), key) for i, key in enumerate(pool)]
        console.print(f"bare HTTP baseline at {args.rate:g}/s…")
        bare = run_baseline(args, [device_id for device_id, _ in ids])
        console.print(f"Cyan at {args.rate:g}/s…")
        cyan = run_cyan(args, Path(tmp) / "data", ids)
    report(args, cyan, bare)


if __name__ == "__main__":
    main()
