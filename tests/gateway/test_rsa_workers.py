"""The gateway's handshakes with the server key's RSA in worker processes (the default)
and on the loop (gateway.rsa_processes = 0): devices come online either way."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cyan.gateway.session import DeviceSession
from cyan.protocol import Stage
from cyan.rsa_pool import default_processes
from tests.gateway.test_server import gateway_rig
from tests.system import RawDevice, eventually


@pytest.mark.parametrize("processes", [None, 1, 0])
async def test_devices_come_online_with_the_rsa_where_it_is_set(
    tmp_path: Path, processes: int | None
) -> None:
    async with gateway_rig(tmp_path, rsa_processes=processes) as rig:
        pool = rig.gateway.rsa
        if processes == 0:
            assert pool is None
            assert rig.gateway.connection_key is rig.gateway.server_key
        else:
            assert pool is not None
            assert rig.gateway.connection_key is None
            await eventually(lambda: pool.in_processes, 60, "the RSA workers")
            pids = pool.worker_pids()
            assert len(pids) == (processes or default_processes())
            assert os.getpid() not in pids
        devices = [await rig.online() for _ in range(3)]
        for raw, session in devices:
            assert isinstance(session, DeviceSession)
            assert session.is_online
            raw.close()


async def test_a_block_for_another_server_key_fails_at_handshake_decrypt_in_a_worker(
    tmp_path: Path,
) -> None:
    async with gateway_rig(tmp_path, rsa_processes=1) as rig:
        assert rig.gateway.rsa is not None
        await eventually(lambda: rig.gateway.rsa is not None and rig.gateway.rsa.in_processes)
        raw = await RawDevice.open(rig.port)
        await raw.read_exactly(40)
        raw.write(os.urandom(256))
        await eventually(lambda: len(rig.gateway.failures) == 1, 10, "the failure")
        assert rig.gateway.failures[-1].stage == Stage.HANDSHAKE_DECRYPT
        raw.close()
