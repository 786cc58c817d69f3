"""The server key's RSA in worker processes (cyan/rsa_pool.py): real processes, real keys.

Each check compares a worker's answer with the same operation done here by
``cyan.protocol.crypto``; PKCS#1 v1.5 signatures are deterministic, so they must match.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from multiprocessing.connection import Connection

import psutil
import pytest

from cyan.protocol import crypto
from cyan.rsa_pool import IN_FLIGHT_PER_WORKER, WORKER_NICENESS, RsaPool
from tests import vectors

DIGEST = bytes(range(20))


def _block(plaintext: bytes) -> bytes:
    return crypto.rsa_encrypt(vectors.server_key().public_key(), plaintext)


async def test_workers_decrypt_and_sign_as_the_key_does_here() -> None:
    pool = RsaPool(vectors.server_key(), 2)
    await pool.start()
    try:
        assert pool.in_processes
        pids = pool.worker_pids()
        assert len(pids) == 2
        assert os.getpid() not in pids
        plaintext = os.urandom(52)
        assert await pool.decrypt(_block(plaintext)) == plaintext
        assert await pool.sign(DIGEST) == crypto.sign_hmac(vectors.server_key(), DIGEST)
        # Two at once go to both workers; answered, each has set its priority: behind the
        # gateway when both want a core.
        both = await asyncio.gather(pool.sign(DIGEST), pool.sign(DIGEST))
        assert both[0] == both[1]
        nicer = min(19, os.nice(0) + WORKER_NICENESS)
        assert [psutil.Process(pid).nice() for pid in pids] == [nicer, nicer]
        # A block for another key fails its padding check or gives junk, as here.
        junk = await pool.decrypt(bytes(256))
        assert junk == crypto.rsa_decrypt(vectors.server_key(), bytes(256))
    finally:
        await pool.close()
    assert not pool.in_processes
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


async def test_more_operations_than_the_pipes_hold_all_come_back_in_order() -> None:
    pool = RsaPool(vectors.server_key(), 2)
    await pool.start()
    try:
        plaintexts = [os.urandom(52) for _ in range(5 * IN_FLIGHT_PER_WORKER)]
        results = await asyncio.gather(*(pool.decrypt(_block(p)) for p in plaintexts))
        assert results == plaintexts
    finally:
        await pool.close()


async def test_a_worker_killed_mid_work_is_replaced_and_its_operations_are_done() -> None:
    pool = RsaPool(vectors.server_key(), 1)
    await pool.start()
    try:
        (first,) = pool.worker_pids()
        plaintexts = [os.urandom(52) for _ in range(20)]
        work = asyncio.gather(*(pool.decrypt(_block(p)) for p in plaintexts))
        await asyncio.sleep(0)  # the requests are written
        os.kill(first, signal.SIGKILL)
        assert await work == plaintexts
        assert pool.restarts == 1
        (second,) = pool.worker_pids()
        assert second != first
    finally:
        await pool.close()


async def test_before_start_the_loop_does_the_rsa() -> None:
    pool = RsaPool(vectors.server_key(), 1)
    assert not pool.in_processes
    assert await pool.sign(DIGEST) == crypto.sign_hmac(vectors.server_key(), DIGEST)
    await pool.close()


def test_no_processes_is_refused() -> None:
    with pytest.raises(ValueError, match="1 or more"):
        RsaPool(vectors.server_key(), 0)


def _pool_in_a_daemon(conn: Connection) -> None:
    async def run() -> tuple[bool, bytes]:
        pool = RsaPool(vectors.server_key(), 1)
        await pool.start()  # a daemonic process may not start children
        try:
            return pool.in_processes, await pool.sign(DIGEST)
        finally:
            await pool.close()

    conn.send(asyncio.run(run()))


def test_where_no_worker_can_start_the_loop_does_the_rsa_and_says_so() -> None:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=_pool_in_a_daemon, args=(theirs,), daemon=True)
    child.start()
    theirs.close()
    assert ours.poll(60), "the daemonic process did not answer"
    in_processes, signature = ours.recv()
    child.join(10)
    assert (in_processes, signature) == (False, crypto.sign_hmac(vectors.server_key(), DIGEST))


def _pool_then_wait(conn: Connection) -> None:
    async def run() -> None:
        pool = RsaPool(vectors.server_key(), 2)
        await pool.start()
        conn.send(pool.worker_pids())
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until killed

    asyncio.run(run())


def test_workers_exit_when_their_gateway_is_killed() -> None:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=_pool_then_wait, args=(theirs,))
    child.start()
    theirs.close()
    assert ours.poll(60), "the pool did not start"
    pids = ours.recv()
    workers = [psutil.Process(pid) for pid in pids]
    os.kill(child.pid or 0, signal.SIGKILL)
    child.join(10)
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert alive == [], f"RSA workers outlived their gateway: {alive}"
    assert len(gone) == 2
