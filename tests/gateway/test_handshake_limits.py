"""At most gateway.max_handshakes_per_address connections from one address in the handshake
at once: more are closed before a nonce is sent (stage busy), others' addresses are not
touched, and a connection leaves the count when it comes online or closes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.gateway.test_server import gateway_rig
from tests.system import LOOPBACK, eventually

NONCE_BYTES = 40
BOUND_S = 10.0


async def open_from(port: int, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(LOOPBACK, port, local_addr=(source, 0))


async def nonce_or_eof(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(BOUND_S):
        return await reader.read(NONCE_BYTES)


async def test_connections_past_the_cap_are_turned_away_and_others_are_not(
    tmp_path: Path,
) -> None:
    async with gateway_rig(tmp_path, max_handshakes_per_address=3) as rig:
        held = [await open_from(rig.port, "127.0.0.1") for _ in range(3)]
        for reader, _ in held:
            assert len(await nonce_or_eof(reader)) == NONCE_BYTES
        assert rig.gateway.handshakes.count("127.0.0.1") == 3

        refused, _ = await open_from(rig.port, "127.0.0.1")
        assert await nonce_or_eof(refused) == b""  # closed before any nonce
        failure = rig.gateway.failures[-1]
        assert (failure.stage, failure.remote_address) == ("busy", "127.0.0.1")
        assert "3 connections from this address already in the handshake" in failure.reason

        elsewhere, _ = await open_from(rig.port, "127.0.0.2")
        assert len(await nonce_or_eof(elsewhere)) == NONCE_BYTES

        # One of the three leaves: the address may start another handshake.
        held.pop()[1].close()
        await eventually(lambda: rig.gateway.handshakes.count("127.0.0.1") == 2, BOUND_S, "freed")
        again, _ = await open_from(rig.port, "127.0.0.1")
        assert len(await nonce_or_eof(again)) == NONCE_BYTES


async def test_a_device_online_no_longer_counts_as_in_the_handshake(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path, max_handshakes_per_address=1) as rig:
        raw, session = await rig.online()
        assert session.is_online
        assert rig.gateway.handshakes.count("127.0.0.1") == 0
        second, _ = await rig.online()  # would be turned away if the first still counted
        assert rig.gateway.handshakes.count("127.0.0.1") == 0
        raw.close()
        second.close()
