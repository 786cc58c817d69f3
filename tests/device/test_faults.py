"""device/faults.py: each fault switch breaks a key directory where a Photon keeps it, and a
running device fails at that fault's stage until the directory is repaired."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cyan.device.faults import UNRESOLVABLE_HOST, Fault, apply_fault, closed_port
from cyan.keydir import KeyStore
from cyan.net.resolver import parse_dns_choice
from cyan.protocol import Stage, crypto, keys
from tests.dns import fake_dns
from tests.system import LOOPBACK, eventually, running_cloud


def fingerprint(key: crypto.RsaPublicKey) -> str:
    return crypto.fingerprint(key)


def made(tmp_path: Path, host: str | None = LOOPBACK, port: int | None = 5683) -> KeyStore:
    server = keys.generate_server_key().public_key()
    return KeyStore.create(tmp_path / "keys", server, host=host, port=port)


async def test_a_closed_port_refuses_connections() -> None:
    port = closed_port(LOOPBACK)
    assert 0 < port < 65536
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(LOOPBACK, port)


def test_wrong_server_key_replaces_only_the_server_key(tmp_path: Path) -> None:
    original = made(tmp_path)
    broken, what = apply_fault(original, Fault.WRONG_SERVER_KEY)
    loaded = KeyStore.load(original.directory)
    assert fingerprint(loaded.server.public_key) != fingerprint(original.server.public_key)
    assert fingerprint(loaded.server.public_key) == fingerprint(broken.server.public_key)
    assert loaded.server.address == original.server.address
    assert loaded.device_id == original.device_id
    assert loaded.public_key_pem == original.public_key_pem
    assert what == "server-key.der now holds another server's public key"


def test_different_key_replaces_the_device_key_and_keeps_the_id(tmp_path: Path) -> None:
    original = made(tmp_path)
    broken, what = apply_fault(original, Fault.DIFFERENT_KEY)
    loaded = KeyStore.load(original.directory)
    assert loaded.device_id == original.device_id
    assert loaded.public_key_pem == broken.public_key_pem != original.public_key_pem
    assert fingerprint(loaded.server.public_key) == fingerprint(original.server.public_key)
    assert "not the one registered on the server" in what


def test_unregistered_key_is_a_new_device_altogether(tmp_path: Path) -> None:
    original = made(tmp_path)
    broken, what = apply_fault(original, Fault.UNREGISTERED_KEY)
    loaded = KeyStore.load(original.directory)
    assert loaded.device_id == broken.device_id != original.device_id
    assert loaded.public_key_pem != original.public_key_pem
    assert what == f"the directory now holds a new device {broken.device_id} that no server knows"


def test_unresolvable_name_keeps_the_key_and_port(tmp_path: Path) -> None:
    original = made(tmp_path, port=6000)
    _, what = apply_fault(original, Fault.UNRESOLVABLE_NAME)
    loaded = KeyStore.load(original.directory)
    assert loaded.server.address == keys.ServerAddress(UNRESOLVABLE_HOST, 6000)
    assert fingerprint(loaded.server.public_key) == fingerprint(original.server.public_key)
    assert UNRESOLVABLE_HOST in what


@pytest.mark.parametrize(("host", "kept"), [(LOOPBACK, LOOPBACK), ("cloud.example", LOOPBACK)])
def test_closed_port_points_at_a_port_where_nothing_listens(
    tmp_path: Path, host: str, kept: str
) -> None:
    original = made(tmp_path, host=host)
    _, what = apply_fault(original, Fault.CLOSED_PORT)
    loaded = KeyStore.load(original.directory)
    address = loaded.server.address
    assert address.host == kept  # a name becomes the loopback address
    assert address.port is not None
    assert address.port != 5683
    assert what == f"server-key.der now points at {kept}:{address.port}, where nothing listens"


@pytest.mark.parametrize(
    ("fault", "device_stage", "server_stage"),
    [
        (Fault.WRONG_SERVER_KEY, Stage.REFUSED, "handshake-decrypt"),
        (Fault.DIFFERENT_KEY, Stage.REFUSED, "key-mismatch"),
        (Fault.UNREGISTERED_KEY, Stage.REFUSED, "unknown-device"),
        (Fault.UNRESOLVABLE_NAME, Stage.DNS, None),
        (Fault.CLOSED_PORT, Stage.TCP, None),
    ],
)
async def test_a_running_device_fails_at_the_faults_stage_until_it_is_repaired(
    tmp_path: Path, fault: Fault, device_stage: Stage, server_stage: str | None
) -> None:
    async with running_cloud(tmp_path) as cloud, fake_dns() as dns_server:
        keystore = KeyStore.create(
            tmp_path / "photon",
            cloud.node.gateway.server_key.public_key(),
            host=LOOPBACK,
            port=cloud.device_port,
        )
        broken, _ = apply_fault(keystore, fault)
        await cloud.node.store.devices.add(
            keystore.device_id,
            crypto.public_key_der(keystore.device_key.public_key()),
            owner_id=None,
        )
        device = await cloud.add_device(
            keystore=broken,
            register=False,
            server=None,  # the address in its key image, as a Photon
            dns_server=parse_dns_choice(dns_server.address),
            backoff_initial_s=0.05,
            backoff_max_s=0.2,
            heartbeat_s=3600,
        )
        await eventually(lambda: device.status.last_error is not None, 15, "a failed attempt")
        error = device.status.last_error
        assert error is not None
        assert error.stage is device_stage
        stages = {f.stage for f in cloud.node.gateway.failures}
        assert stages == ({server_stage} if server_stage else set())

        keystore.save()  # repaired: it reads its keys again after the next failure
        await cloud.online(device, timeout_s=15)
        assert device.device_id == keystore.device_id
