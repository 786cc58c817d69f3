"""The server key's two private operations of a handshake, in worker processes.

Each handshake costs the server one RSA-2048 decrypt (the device's block) and one RSA-2048
signature (the session key), about 0.25 ms each. ``cryptography`` holds the GIL through
both, so threads would not run them beside the event loop; on the loop they stall every
connected device's traffic behind a burst of (re)connects or a scanner's garbage. Here
they run in processes, one per core by default, and the loop only waits for the answer.

Why not ``concurrent.futures.ProcessPoolExecutor``: it moves every call through two
threads of its own and pickles it, which measured about 0.4 ms of the gateway's CPU per
handshake, as much as the RSA it moved away. Here each worker has one pipe; the loop
writes a request with one system call and reads the answer when the pipe is readable
(``add_reader``), with no thread and no pickle. A worker answers in order, so answers
match requests without ids.

Workers come from a fork server (a clean, single-threaded parent that has imported this
module), not by forking the gateway itself: a fork of a process with threads and open
sockets would copy both. Each worker loads the key once, when it starts. Until the
workers run, and wherever they cannot (a daemonic parent, a sandbox without fork), the
operations run on the loop, as before there was a pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from cryptography.hazmat.primitives import serialization

from cyan.protocol import crypto

log = logging.getLogger(__name__)

# Requests written to one worker and not yet answered; the rest wait here. Small enough
# that a worker's pipe (64 KiB on Linux) never fills, so a write never blocks the loop.
IN_FLIGHT_PER_WORKER = 32
# Workers that die this often leave the RSA to the loop rather than being started again.
MAX_RESTARTS = 5
# Workers run at a lower priority than the gateway: when both want a core, the connected
# devices' traffic on the loop goes first and handshakes (a scanner's garbage among them)
# take what is left. Raising one's own niceness needs no privilege.
WORKER_NICENESS = 10

DECRYPT, SIGN = b"d", b"s"
_OPERATIONS: dict[bytes, Callable[[crypto.RsaPrivateKey, bytes], bytes | None]] = {
    DECRYPT: crypto.rsa_decrypt,
    SIGN: crypto.sign_hmac,
}
_OK, _NONE, _FAILED = b"+", b"0", b"!"


def _worker_main(conn: Connection, pem: bytes) -> None:
    """A worker: load the key, then answer each request on ``conn`` until it closes."""
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, crypto.RsaPrivateKey)
    while True:
        try:
            request = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            result = _OPERATIONS[request[:1]](key, request[1:])
            answer = _NONE if result is None else _OK + result
        except Exception as exc:  # answered, so the gateway fails one handshake, not all
            answer = _FAILED + repr(exc).encode()
        conn.send_bytes(answer)


def default_processes() -> int:
    """One worker per core this process may run on."""
    return max(1, len(os.sched_getaffinity(0)))


class RsaWorkerFailed(Exception):
    """A worker could not do one operation (it says why)."""


@dataclass(eq=False)
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    # (request, its future), oldest first: written to the pipe, not yet answered.
    in_flight: deque[tuple[bytes, asyncio.Future[bytes | None]]] = field(default_factory=deque)


class RsaPool:
    """``await decrypt(block)`` and ``await sign(digest)`` with the server key, elsewhere."""

    def __init__(self, server_key: crypto.RsaPrivateKey, processes: int) -> None:
        if processes < 1:
            raise ValueError(f"an RSA pool needs 1 or more processes, not {processes}")
        self.processes = processes
        self._server_key = server_key
        self._pem = server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self._workers: list[_Worker] = []
        self._waiting: deque[tuple[bytes, asyncio.Future[bytes | None]]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.restarts = 0

    @property
    def in_processes(self) -> bool:
        """True while worker processes do the RSA (False: the loop does it)."""
        return bool(self._workers)

    def worker_pids(self) -> list[int]:
        return sorted(w.process.pid for w in self._workers if w.process.pid is not None)

    async def start(self) -> None:
        """Start the workers (in a thread: the first start also starts the fork server)."""
        self._loop = asyncio.get_running_loop()
        try:
            workers = await asyncio.to_thread(self._spawn, self.processes)
        except (OSError, RuntimeError, AssertionError) as exc:
            log.warning("RSA worker processes cannot start (%s); RSA runs on the loop", exc)
            return
        if self._closed:
            self._stop_workers(workers)
            return
        for worker in workers:
            self._adopt(worker)
        log.info("RSA on %d worker processes", len(workers))

    async def decrypt(self, block: bytes) -> bytes | None:
        """PKCS#1 v1.5 decryption of a device's block (None: the padding check failed)."""
        return await self._run(DECRYPT, block)

    async def sign(self, digest: bytes) -> bytes:
        """The raw signature of a session key's HMAC."""
        signature = await self._run(SIGN, digest)
        assert signature is not None
        return signature

    async def close(self) -> None:
        """Stop the workers; operations still waiting fail."""
        self._closed = True
        workers, self._workers = self._workers, []
        for worker in workers:
            self._drop(worker, RsaWorkerFailed("the RSA pool is closed"))
        for _, future in self._waiting:
            if not future.done():
                future.set_exception(RsaWorkerFailed("the RSA pool is closed"))
        self._waiting.clear()
        await asyncio.to_thread(self._stop_workers, workers)

    # -- inside ---------------------------------------------------------------------------

    async def _run(self, operation: bytes, data: bytes) -> bytes | None:
        if not self._workers:
            return _OPERATIONS[operation](self._server_key, data)
        assert self._loop is not None
        future: asyncio.Future[bytes | None] = self._loop.create_future()
        self._waiting.append((operation + data, future))
        self._send_waiting()
        return await future

    def _spawn(self, count: int) -> list[_Worker]:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        workers = []
        for _ in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=_worker_main, args=(theirs, self._pem), name="cyan-rsa", daemon=True
            )
            process.start()
            theirs.close()
            workers.append(_Worker(process, ours))
        return workers

    def _adopt(self, worker: _Worker) -> None:
        assert self._loop is not None
        self._workers.append(worker)
        self._loop.add_reader(worker.conn.fileno(), self._answered, worker)
        self._send_waiting()

    def _send_waiting(self) -> None:
        while self._waiting and self._workers:
            worker = min(self._workers, key=lambda w: len(w.in_flight))
            if len(worker.in_flight) >= IN_FLIGHT_PER_WORKER:
                return
            request, future = self._waiting.popleft()
            if future.cancelled():
                continue
            try:
                worker.conn.send_bytes(request)
            except OSError as exc:
                self._waiting.appendleft((request, future))
                self._worker_died(worker, exc)
                continue
            worker.in_flight.append((request, future))

    def _answered(self, worker: _Worker) -> None:
        try:
            while worker.conn.poll():
                answer = worker.conn.recv_bytes()
                _, future = worker.in_flight.popleft()
                if future.done():
                    continue
                if answer[:1] == _OK:
                    future.set_result(answer[1:])
                elif answer[:1] == _NONE:
                    future.set_result(None)
                else:
                    future.set_exception(RsaWorkerFailed(answer[1:].decode(errors="replace")))
        except (EOFError, OSError) as exc:
            self._worker_died(worker, exc)
            return
        self._send_waiting()

    def _worker_died(self, worker: _Worker, why: BaseException) -> None:
        """What it held goes to the others (or a new worker); the loop takes over if they
        keep dying."""
        if worker not in self._workers:
            return
        self._workers.remove(worker)
        self._drop(worker, None)
        self._waiting.extendleft(reversed(worker.in_flight))
        worker.in_flight.clear()
        self._stop_workers([worker])
        self.restarts += 1
        if self.restarts > MAX_RESTARTS:
            log.warning("RSA worker processes keep dying (%s); RSA runs on the loop", why)
            self._run_waiting_here()
            return
        log.warning("an RSA worker process died (%s); starting a new one", why)
        try:
            (new,) = self._spawn(1)
        except (OSError, RuntimeError, AssertionError) as exc:
            log.warning("no new RSA worker (%s)", exc)
        else:
            self._adopt(new)
        if not self._workers:
            self._run_waiting_here()
        self._send_waiting()

    def _run_waiting_here(self) -> None:
        for worker in self._workers:
            self._drop(worker, None)
        self._stop_workers(self._workers)
        for worker in self._workers:
            self._waiting.extend(worker.in_flight)
        self._workers = []
        waiting, self._waiting = self._waiting, deque()
        for request, future in waiting:
            if not future.done():
                future.set_result(_OPERATIONS[request[:1]](self._server_key, request[1:]))

    def _drop(self, worker: _Worker, error: BaseException | None) -> None:
        """Stop reading ``worker``; with ``error``, fail what it held."""
        if self._loop is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(worker.conn.fileno())
        if error is not None:
            for _, future in worker.in_flight:
                if not future.done():
                    future.set_exception(error)
            worker.in_flight.clear()

    @staticmethod
    def _stop_workers(workers: list[_Worker]) -> None:
        for worker in workers:
            worker.conn.close()  # the worker reads EOF and exits
        for worker in workers:
            worker.process.join(2)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(2)
