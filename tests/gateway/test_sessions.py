"""Session life: keepalive, replacement, firmware variants, events to devices."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from cyan.keydir import KeyStore
from cyan.protocol import crypto, keys
from cyan.protocol.events import EventDelivered
from cyan.protocol.messages import EventInfo
from cyan.store import Store
from tests.system import RawDevice, eventually, failures_at, running_cloud


async def test_silent_device_is_pinged_then_dropped(tmp_path: Path) -> None:
    async with running_cloud(tmp_path, idle_ping_s=0.5, ping_timeout_s=0.5) as cloud:
        device = await cloud.add_device(start=False)
        raw = await RawDevice.open(cloud.device_port)
        await raw.handshake(device.keys)
        await eventually(lambda: cloud.node.router.live(device.device_id) is not None, 5, "online")
        raw.stop_answering()
        await eventually(lambda: bool(failures_at(cloud, "keepalive-timeout")), 5, "keepalive")
        await eventually(lambda: cloud.node.router.live(device.device_id) is None, 5, "offline")
        response = await cloud.http.get(f"/v1/devices/{device.device_id}")
        assert response.json()["connected"] is False
        raw.close()


async def test_answered_pings_keep_a_device_online(tmp_path: Path) -> None:
    async with running_cloud(tmp_path, idle_ping_s=0.3, ping_timeout_s=1.0) as cloud:
        device = await cloud.add_device()
        await cloud.online(device)
        (session,) = cloud.node.gateway.sessions
        # An unanswered ping would end the session within 1.3 s, long before two rounds.
        await eventually(lambda: session.pings_answered >= 2, 20, "two ping rounds")
        assert cloud.node.router.live(device.device_id) is not None
        assert not failures_at(cloud, "keepalive-timeout")


async def test_reconnecting_device_replaces_its_old_session(tmp_path: Path) -> None:
    async with running_cloud(tmp_path) as cloud:
        device = await cloud.add_device(start=False)
        first = await RawDevice.open(cloud.device_port)
        await first.handshake(device.keys)
        await eventually(lambda: cloud.node.router.live(device.device_id) is not None, 5, "online")
        second = await RawDevice.open(cloud.device_port)
        await second.handshake(device.keys)
        assert await first.closed_by_server()
        live = cloud.node.router.live(device.device_id)
        assert live is not None
        assert len([s for s in cloud.node.gateway.sessions if s.device_id == device.device_id]) == 1
        second.close()


@pytest.mark.parametrize("firmware", ["0.7.0", "1.5.2", "2.3.1"])
async def test_every_firmware_variant_serves_functions_and_variables(
    tmp_path: Path, firmware: str
) -> None:
    async with running_cloud(tmp_path) as cloud:
        device = await cloud.add_device(firmware=firmware)
        await cloud.online(device)
        detail = (await cloud.http.get(f"/v1/devices/{device.device_id}")).json()
        assert detail["functions"] == ["digitalwrite", "digitalread", "analogwrite", "analogread"]
        assert detail["variables"] == {
            "uptime": "int32",
            "temperature": "double",
            "build": "string",
        }
        call = await cloud.http.post(
            f"/v1/devices/{device.device_id}/digitalwrite", json={"args": "D3,HIGH"}
        )
        assert call.json()["return_value"] == 1
        build = await cloud.http.get(f"/v1/devices/{device.device_id}/build")
        assert build.json()["result"] == f"cyan virtual Tinker, Device OS {firmware}"
        assert device.status.server_time is not None  # every variant asks the time


async def test_events_reach_subscribed_devices_by_scope(tmp_path: Path) -> None:
    async with running_cloud(tmp_path) as cloud:
        mine = await cloud.add_device()
        await cloud.online(mine)
        # A device of nobody's, also subscribed to "spark" for its owner's devices only.
        stranger = await cloud.add_device(start=False, register=False)
        await cloud.node.store.devices.add(
            stranger.device_id,
            crypto.public_key_der(stranger.keys.device_key.public_key()),
            owner_id=None,
        )
        cloud.start(stranger)
        await cloud.online(stranger)
        response = await cloud.http.post(
            "/v1/devices/events", data={"name": "spark/test", "data": "hi", "private": "true"}
        )
        assert response.status_code == 200, response.text
        await eventually(
            lambda: any(e.name == "spark/test" for e in mine.status.received_events),
            5,
            "event at the owner's device",
        )
        assert list(mine.status.received_events)[-1] == EventInfo("spark/test", b"hi", 60, False)
        await asyncio.sleep(0.3)
        assert not any(e.name == "spark/test" for e in stranger.status.received_events)


async def test_key_replaced_from_another_process_is_picked_up(tmp_path: Path) -> None:
    async with running_cloud(tmp_path) as cloud:
        device = await cloud.add_device()
        await cloud.online(device)
        await device.stop()
        await eventually(lambda: cloud.node.router.live(device.device_id) is None, 5, "offline")
        # The device gets a new key, registered through a second store connection, as
        # `cyan device add` in another process would; the gateway has the old key cached.
        new_keys = replace(device.keys, device_key=keys.generate_device_key())
        new_keys.save()
        other = await Store.open(cloud.node.settings.database_url)
        try:
            await other.devices.add(
                device.device_id,
                crypto.public_key_der(new_keys.device_key.public_key()),
                owner_id=None,
            )
        finally:
            await other.close()
        reborn = await cloud.add_device(keystore=KeyStore.load(new_keys.directory), register=False)
        await cloud.online(reborn)
        assert not failures_at(cloud, "key-mismatch")


async def test_device_to_device_events_follow_subscriptions(tmp_path: Path) -> None:
    async with running_cloud(tmp_path) as cloud:
        sender = await cloud.add_device(heartbeat_s=3600)
        await cloud.online(sender)
        listener = await cloud.add_device(start=False)
        raw = await RawDevice.open(cloud.device_port)
        await raw.handshake(listener.keys)
        assert raw.connection is not None
        raw.connection.subscribe("weather", my_devices=True)
        await raw.pump()
        await eventually(
            lambda: cloud.node.router.live(listener.device_id) is not None, 5, "listener online"
        )
        # Device OS's own connect reports never go to other devices; app events do.
        sender.publish("spark/device/diagnostics", "x", public=False)
        sender.publish("other/thing", "x", public=False)
        sender.publish("weather/rain", "3mm", public=False)
        delivered: list[EventInfo] = []
        while not delivered:
            await raw.pump()
            delivered = [e.event for e in raw.events if isinstance(e, EventDelivered)]
        assert delivered == [EventInfo("weather/rain", b"3mm", 60, False)]
        raw.close()
