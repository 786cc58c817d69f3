"""A restart loses nothing: devices, keys and tokens survive; devices come back themselves."""

from __future__ import annotations

from pathlib import Path

from cyan.node import Node
from cyan.settings import ADMIN_USERNAME
from cyan.store import Store
from tests.system import cloud_settings, eventually, running_cloud


async def test_restart_keeps_devices_and_they_reconnect(tmp_path: Path, store_url: str) -> None:
    """Runs on SQLite and on a real PostgreSQL (the store_url fixture's two parameters)."""
    database_url = store_url
    async with running_cloud(tmp_path, database_url) as cloud:
        device = await cloud.add_device(name="porch")
        await cloud.online(device)
        port, token = cloud.device_port, cloud.token
        assert (
            await cloud.http.post("/v1/devices/porch/digitalwrite", json={"args": "D7,HIGH"})
        ).json()["return_value"] == 1
        # Stop only the node; the device keeps running and retrying on its own.
        await cloud.node.stop()
        await eventually(lambda: not device.status.connected, 10, "device notices the restart")

        settings = cloud_settings(tmp_path, database_url, port=port)
        node = Node(settings)
        await node.start()
        try:
            await eventually(
                lambda: node.router.live(device.device_id) is not None, 10, "device back online"
            )
            record = await node.store.devices.find("porch", owner_id=None)
            assert record is not None
            assert record.id == device.device_id
            admin = await node.store.users.ensure(ADMIN_USERNAME)
            assert await node.store.tokens.user_for(token) == admin
            assert device.tinker.digital["D7"] == 1
        finally:
            cloud.node = node  # so the fixture's cleanup stops the new node


async def test_server_key_survives_restart(tmp_path: Path) -> None:
    async with running_cloud(tmp_path) as cloud:
        first = cloud.node.gateway.server_key.private_numbers()
    async with running_cloud(tmp_path) as cloud:
        assert cloud.node.gateway.server_key.private_numbers() == first
    assert (tmp_path / "server-key.pem").stat().st_mode & 0o777 == 0o600


async def test_data_written_before_a_crash_is_in_the_store(tmp_path: Path) -> None:
    async with running_cloud(tmp_path) as cloud:
        device = await cloud.add_device(name="crashy")
        await cloud.online(device)
        url = cloud.node.settings.database_url
        # A second connection, as a new process after a crash would open it, sees the device.
        other = await Store.open(url)
        try:
            record = await other.devices.get(device.device_id)
            assert record is not None
            assert record.name == "crashy"
            assert await other.devices.key(device.device_id) is not None
        finally:
            await other.close()
