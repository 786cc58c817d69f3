"""Processes of a benchmark run: a spawned child with a control pipe, a Cyan server on
loopback with pre-registered devices, and what a bare idle TCP connection costs.

Every process runs uvloop when it is installed, as ``cyan serve`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

from bench.figures import HOST, ControlHandler, clock, raise_fd_limit, run
from cyan.datadir import load_or_create_server_key, prepare
from cyan.node import Node, tune_gc_for_serving
from cyan.protocol import crypto, keys
from cyan.settings import ADMIN_USERNAME, Settings, load_settings
from cyan.store import Store


class Child:
    """A spawned process that says "ready" with a dict, answers requests and stops on "stop".

    The target is called as ``target(connection, *args)``; it must send ``{"ok": True, ...}``
    once ready (``child_main`` and ``serve_control`` do the plumbing).
    """

    def __init__(self, name: str, target: Callable[..., None], *args: object) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._child_conn: Connection | None = child_conn
        # Not a daemon: a Cyan node starts worker processes of its own (its RSA pool),
        # which a daemonic process may not. stop() (the context manager's exit) ends it.
        self.process = context.Process(target=target, args=(child_conn, *args), name=name)
        self.name = name
        self.info: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def start(self, timeout_s: float) -> dict[str, Any]:
        self.process.start()
        assert self._child_conn is not None
        self._child_conn.close()
        self._child_conn = None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._conn.poll(0.1):
                try:
                    message = self._conn.recv()
                except EOFError:
                    self.process.join(5)
                    raise RuntimeError(
                        f"{self.name} exited with code {self.process.exitcode} before it was ready"
                    ) from None
                if not isinstance(message, dict) or not message.get("ok"):
                    error = message.get("error") if isinstance(message, dict) else message
                    raise RuntimeError(f"{self.name} failed to start:\n{error}")
                self.info = message
                return message
            if not self.process.is_alive():
                self.process.join(1)
                raise RuntimeError(
                    f"{self.name} exited with code {self.process.exitcode} before it was ready"
                )
        raise RuntimeError(f"{self.name} did not become ready within {timeout_s:g} s")

    def request(self, what: str, timeout_s: float = 30.0) -> Any:
        self._conn.send(what)
        if not self._conn.poll(timeout_s):
            raise TimeoutError(f"{self.name} did not answer {what!r} within {timeout_s:g} s")
        return self._conn.recv()

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.process.pid is None:
            return
        with contextlib.suppress(OSError, ValueError):
            self._conn.send("stop")
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(3)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(3)
        self._conn.close()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def child_main(conn: Connection, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Common start of every child: no SIGINT (the parent stops us), fds, logging, loop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise_fd_limit()
    logging.basicConfig(level=logging.ERROR, format=f"[{os.getpid()}] %(name)s: %(message)s")
    try:
        run(main())
    except BaseException:
        with contextlib.suppress(OSError, ValueError):
            conn.send({"ok": False, "error": traceback.format_exc()})
        raise


async def serve_control(conn: Connection, handlers: dict[str, ControlHandler]) -> None:
    """Answer the parent's requests from the loop (no thread) until "stop" or EOF."""
    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        try:
            while conn.poll():
                what = conn.recv()
                if what == "stop":
                    if not stopped.done():
                        stopped.set_result(None)
                    return
                handler = handlers.get(what)
                conn.send(handler() if handler else {"error": f"unknown request {what!r}"})
        except (EOFError, OSError):
            if not stopped.done():
                stopped.set_result(None)

    loop.add_reader(conn.fileno(), readable)
    try:
        await stopped
    finally:
        loop.remove_reader(conn.fileno())


# -- a Cyan node in its own process ---------------------------------------------------------


def bench_settings(data_dir: Path, **gateway: Any) -> Settings:
    """Loopback, ephemeral ports, no environment: the same for parent and server child.

    Every device and client of a bench comes from one address, so the per-address limits
    meant for a scanner or a script (handshakes in flight, API requests, streams) are
    lifted unless a bench sets them.
    """
    per_address_off = {"requests_per_5_min": 0, "stream_opens_per_5_min": 0}
    return load_settings(
        data_dir=data_dir,
        gateway={"host": HOST, "port": 0, "max_handshakes_per_address": 1_000_000, **gateway},
        api={"host": HOST, "port": 0, **per_address_off, "streams_per_address": 0},
        environ={},
    )


def device_id_for(index: int) -> str:
    return f"be{index:022x}"  # 24 hex characters, unique per index


def make_key_pool(count: int) -> list[crypto.RsaPrivateKey]:
    """RSA-1024 device keys, 10–30 ms each, shared round-robin by many device ids."""
    return [keys.generate_device_key() for _ in range(count)]


@dataclass(frozen=True, slots=True)
class Registered:
    token: str
    server_public_key: crypto.RsaPublicKey


async def register_devices(
    data_dir: Path,
    devices: Sequence[tuple[str, crypto.RsaPrivateKey]],
    *,
    concurrency: int = 8,
) -> Registered:
    """Create the data directory and server key, add every device, make an admin token.

    Runs in the parent before the server process starts, on the node's own database.
    """
    prepare(data_dir)
    server_key = load_or_create_server_key(data_dir)
    store = await Store.open(bench_settings(data_dir).database_url)
    try:
        admin = await store.users.ensure(ADMIN_USERNAME)
        ders: dict[int, bytes] = {}
        gate = asyncio.Semaphore(concurrency)

        async def add(device_id: str, key: crypto.RsaPrivateKey) -> None:
            der = ders.get(id(key))
            if der is None:
                der = ders[id(key)] = crypto.public_key_der(key.public_key())
            async with gate:
                await store.devices.add(device_id, der, owner_id=admin.id)

        await asyncio.gather(*(add(device_id, key) for device_id, key in devices))
        token = await store.tokens.create(admin.id)
    finally:
        await store.close()
    return Registered(token, server_key.public_key())


def cyan_server_main(
    conn: Connection, data_dir: str, gateway: dict[str, Any], cpus: list[int] | None = None
) -> None:
    """Child: run a Node on ``data_dir`` until the parent says stop; with ``cpus``, on
    those CPUs only (its RSA workers too: they inherit it)."""
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    child_main(conn, lambda: _cyan_server(conn, Path(data_dir), gateway))


class GcPauses:
    """The collector's passes since the last ``take()``: count and longest, per generation.
    A full pass stops the loop; this says whether a phase's worst calls waited on one."""

    def __init__(self) -> None:
        self._started = 0.0
        self._passes: Counter[int] = Counter()
        self._longest: dict[int, float] = {}
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        self._passes[generation] += 1
        pause = time.perf_counter() - self._started
        self._longest[generation] = max(pause, self._longest.get(generation, 0.0))

    def take(self) -> dict[str, Any]:
        taken = {f"gen{g} passes": self._passes[g] for g in sorted(self._passes)} | {
            f"gen{g} longest ms": round(1000 * t, 1) for g, t in sorted(self._longest.items())
        }
        self._passes.clear()
        self._longest.clear()
        return taken


class LoopLag:
    """How late the server's loop runs a callback due every millisecond, since the last
    ``take()``: a stall of the loop (one long callback, a GC pass) shows as a late tick."""

    TICK_S = 0.001

    def __init__(self) -> None:
        self._late: list[float] = []
        self._task = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            due = time.perf_counter() + self.TICK_S
            await asyncio.sleep(self.TICK_S)
            self._late.append(time.perf_counter() - due)

    def take(self) -> dict[str, Any]:
        late = sorted(self._late)
        self._late.clear()
        if not late:
            return {}
        return {
            "loop late p99 ms": round(1000 * late[int(0.99 * (len(late) - 1))], 1),
            "loop late max ms": round(1000 * late[-1], 1),
        }

    def stop(self) -> None:
        self._task.cancel()


async def _cyan_server(conn: Connection, data_dir: Path, gateway: dict[str, Any]) -> None:
    node = Node(bench_settings(data_dir, **gateway))
    await node.start()
    tune_gc_for_serving()  # as `cyan serve` does
    pauses = GcPauses()
    lag = LoopLag()
    try:

        def stats() -> dict[str, Any]:
            gw = node.gateway
            live = [node.router.live(device_id) for device_id in node.router.online_ids()]
            return {
                "sessions": len(gw.sessions),
                "online": len(live),
                "described": sum(1 for device in live if device is not None and device.functions),
                "failures_kept": len(gw.failures),
                "failure_stages": dict(Counter(f.stage for f in gw.failures)),
                "pending_tasks": gw.pending_writes,
            }

        conn.send(
            {
                "ok": True,
                "pid": os.getpid(),
                "device_port": node.gateway.port,
                "api_port": node.api_port,
            }
        )
        await serve_control(conn, {"stats": stats, "gc": pauses.take, "lag": lag.take})
    finally:
        lag.stop()
        await node.stop()


async def drain(server: Child, deadline: float) -> bool:
    """Until the gateway has no background tasks (store writes) in flight, or ``deadline``."""
    while clock() < deadline:
        if server.request("stats")["pending_tasks"] == 0:
            return True
        await asyncio.sleep(0.1)
    return False


# -- the light device client ------------------------------------------------------------------

# A Photon on Device OS 1.5 (hello flags), answering with separate responses as 2.x does,
# so that the server's ACK of the describe response tells the device the describe landed.


class _Echo(asyncio.Protocol):
    __slots__ = ("transport",)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


def echo_server_main(conn: Connection) -> None:
    """Child: a trivial asyncio echo server on loopback until stop."""
    child_main(conn, lambda: _echo_server(conn))


async def _echo_server(conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Echo, HOST, 0, backlog=1024)
    try:
        port = server.sockets[0].getsockname()[1]
        conn.send({"ok": True, "pid": os.getpid(), "port": port})
        await serve_control(conn, {})
    finally:
        server.close()


class BareClient(asyncio.Protocol):
    __slots__ = ("transport",)

    def __init__(self) -> None:
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport


async def open_bare(
    count: int, port: int, *, concurrency: int, deadline: float
) -> tuple[list[BareClient], int]:
    """Open up to ``count`` idle TCP connections; returns them and the number that failed."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    clients: list[BareClient] = []
    failed = 0

    async def one() -> None:
        nonlocal failed
        async with gate:
            if clock() > deadline:
                return
            client = BareClient()
            try:
                await loop.create_connection(lambda: client, HOST, port)
            except OSError:
                failed += 1
                return
            clients.append(client)

    tasks = [asyncio.create_task(one()) for _ in range(count)]
    _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - clock()))
    for task in pending:
        task.cancel()
    return clients, failed + len(pending)


def close_bare(clients: Sequence[BareClient]) -> None:
    for client in clients:
        if client.transport is not None:
            client.transport.close()
