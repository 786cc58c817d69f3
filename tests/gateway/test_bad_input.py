"""Bad bytes from one connection close that connection only, with its stage logged once."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from cyan.device import VirtualDevice
from cyan.keydir import KeyStore
from cyan.protocol import crypto, keys
from tests.system import Cloud, RawDevice, eventually, failures_at, running_cloud


async def call_digitalread(cloud: Cloud, device_id: str) -> int:
    response = await cloud.http.post(f"/v1/devices/{device_id}/digitalread", json={"args": "D7"})
    assert response.status_code == 200, response.text
    return int(response.json()["return_value"])


async def assert_stage(
    cloud: Cloud, caplog: pytest.LogCaptureFixture, stage: str, reason_part: str
) -> None:
    await eventually(lambda: bool(failures_at(cloud, stage)), 5, f"a failure at stage {stage}")
    failure = failures_at(cloud, stage)[-1]
    assert reason_part in failure.reason, failure.reason
    lines = [
        r.getMessage() for r in caplog.records if f"failed at stage {stage}:" in r.getMessage()
    ]
    assert len(lines) == 1, lines  # logged once, with its stage, reason and fix
    assert reason_part in lines[0]
    assert "Fix: " in lines[0]


@pytest.fixture
async def cloud(tmp_path: Path) -> Cloud:  # type: ignore[misc]
    async with running_cloud(tmp_path, handshake_timeout_s=1.0) as started:
        yield started


@pytest.fixture
async def good(cloud: Cloud) -> VirtualDevice:
    """A well-behaved device that must stay connected through everyone else's bad input."""
    device = await cloud.add_device()
    await cloud.online(device)
    return device


async def test_short_handshake_then_close_is_nonce_stage(
    cloud: Cloud, good: VirtualDevice, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "cyan.gateway")
    raw = await RawDevice.open(cloud.device_port)
    assert len(await raw.read_exactly(40)) == 40
    raw.write(b"\x00" * 17)
    raw.close()
    await assert_stage(cloud, caplog, "nonce", "after 17 of the 256")
    assert await call_digitalread(cloud, good.device_id) == 0
    assert good.status.connected


async def test_random_handshake_block_is_decrypt_stage(
    cloud: Cloud, good: VirtualDevice, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "cyan.gateway")
    raw = await RawDevice.open(cloud.device_port)
    await raw.read_exactly(40)
    raw.write(os.urandom(256))
    assert await raw.closed_by_server()
    await assert_stage(cloud, caplog, "handshake-decrypt", "does not")
    assert await call_digitalread(cloud, good.device_id) == 0


async def test_device_holding_another_server_key(
    cloud: Cloud, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO, "cyan.gateway")
    other_server = keys.generate_server_key().public_key()
    keystore = KeyStore.create(tmp_path / "k", other_server, host="127.0.0.1", port=None)
    await cloud.node.store.devices.add(
        keystore.device_id, crypto.public_key_der(keystore.device_key.public_key()), owner_id=None
    )
    raw = await RawDevice.open(cloud.device_port)
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await raw.handshake(keystore)
    await assert_stage(cloud, caplog, "handshake-decrypt", "does not")


async def test_unknown_device(
    cloud: Cloud, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO, "cyan.gateway")
    keystore = KeyStore.create(
        tmp_path / "k", cloud.node.gateway.server_key.public_key(), host="127.0.0.1", port=None
    )
    raw = await RawDevice.open(cloud.device_port)
    with pytest.raises(ConnectionError):
        await raw.handshake(keystore)
    await assert_stage(cloud, caplog, "unknown-device", keystore.device_id)
    assert failures_at(cloud, "unknown-device")[-1].device_id == keystore.device_id


async def test_device_key_differs_from_registered(
    cloud: Cloud, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO, "cyan.gateway")
    keystore = KeyStore.create(
        tmp_path / "k", cloud.node.gateway.server_key.public_key(), host="127.0.0.1", port=None
    )
    registered_elsewhere = keys.generate_device_key().public_key()
    await cloud.node.store.devices.add(
        keystore.device_id, crypto.public_key_der(registered_elsewhere), owner_id=None
    )
    raw = await RawDevice.open(cloud.device_port)
    with pytest.raises(ConnectionError):
        await raw.handshake(keystore)
    await assert_stage(cloud, caplog, "key-mismatch", "differs from the registered one")


async def test_stalled_handshake_times_out(cloud: Cloud, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "cyan.gateway")
    raw = await RawDevice.open(cloud.device_port)
    await raw.read_exactly(40)
    assert await raw.closed_by_server(timeout_s=5)
    await assert_stage(cloud, caplog, "timeout", "handshake not finished within 1 s")


async def _session(cloud: Cloud, tmp_path: Path) -> tuple[RawDevice, KeyStore]:
    keystore = KeyStore.create(
        tmp_path / "raw", cloud.node.gateway.server_key.public_key(), host="127.0.0.1", port=None
    )
    await cloud.node.store.devices.add(
        keystore.device_id, crypto.public_key_der(keystore.device_key.public_key()), owner_id=None
    )
    raw = await RawDevice.open(cloud.device_port)
    await raw.handshake(keystore)
    return raw, keystore


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        pytest.param(b"\xff\xf0" + b"\x00" * 64, "over the limit", id="oversized"),
        pytest.param(b"\x00\x07" + b"\x00" * 7, "not a positive multiple of 16", id="unaligned"),
        pytest.param(b"\x00\x20" + bytes(range(32)), "failed to decrypt", id="garbage"),
    ],
)
async def test_bad_frame_after_handshake_closes_only_that_connection(
    cloud: Cloud,
    good: VirtualDevice,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    frame: bytes,
    reason: str,
) -> None:
    caplog.set_level(logging.INFO, "cyan.gateway")
    raw, keystore = await _session(cloud, tmp_path)
    raw.write(frame)
    assert await raw.closed_by_server()
    await assert_stage(cloud, caplog, "session", reason)
    assert failures_at(cloud, "session")[-1].device_id == keystore.device_id
    assert cloud.node.router.live(keystore.device_id) is None
    assert await call_digitalread(cloud, good.device_id) == 0


async def test_truncated_frame_then_close_is_session_stage(
    cloud: Cloud, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO, "cyan.gateway")
    raw, keystore = await _session(cloud, tmp_path)
    raw.write(b"\x00\x20" + b"\x01" * 5)
    raw.close()
    await assert_stage(cloud, caplog, "session", "closed the connection")
    await eventually(lambda: cloud.node.router.live(keystore.device_id) is None, 5, "offline")
