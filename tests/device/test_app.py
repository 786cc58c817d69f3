"""device/app.py: what a connected virtual Photon answers, before and after its setup()."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cyan.bus.events import CloudEvent
from cyan.cloud.errors import DeviceTimedOut, VariableNotFound
from cyan.device import PROFILES, VirtualDevice
from cyan.device.app import DeviceApp
from cyan.device.firmware import Firmware
from cyan.device.options import DeviceStatus
from cyan.device.tinker import FUNCTIONS, VARIABLES, Tinker
from cyan.device.updater import OtaFaults, Updater
from cyan.gateway.session import DeviceSession
from cyan.protocol import messages, payloads
from cyan.protocol.messages import DescribeFlags
from tests.driver.test_timers import FakeClock
from tests.system import Cloud, eventually, running_cloud


def app_for(firmware: str) -> DeviceApp:
    profile = PROFILES[firmware]
    loaded = Firmware.load(None, profile)
    return DeviceApp(
        Tinker(clock=FakeClock(), build="b"),
        loaded,
        Updater(loaded, OtaFaults(), name="test"),
        DeviceStatus(),
        "test",
    )


def session_of(cloud: Cloud, device: VirtualDevice) -> DeviceSession:
    return next(s for s in cloud.node.gateway.sessions if s.device_id == device.device_id)


@pytest.mark.parametrize("firmware", ["0.7.0", "1.5.2", "2.3.1"])
def test_the_describe_lists_tinker_once_registered(firmware: str) -> None:
    app = app_for(firmware)
    empty = payloads.decode_description(app.describe(DescribeFlags.APPLICATION))
    assert (empty.functions, empty.variables, empty.system) == ((), {}, None)
    app.registered = True
    both = payloads.decode_description(app.describe(DescribeFlags.APPLICATION | 0x01))
    assert both.functions == tuple(FUNCTIONS)
    assert both.variables == VARIABLES
    assert both.system is not None
    assert both.system["p"] == 6
    system_parts = [m for m in both.system["m"] if m["f"] == "s"]
    assert {m["v"] for m in system_parts} == {PROFILES[firmware].system_module_version}
    system = payloads.decode_description(app.describe(DescribeFlags.SYSTEM))
    assert (system.functions, system.variables) == (None, None)
    assert system.system == both.system


async def test_before_setup_calls_go_unanswered_and_variables_are_not_found(
    tmp_path: Path,
) -> None:
    # 2.3.1 describes itself, so the gateway asks no describe that could be answered late.
    async with running_cloud(tmp_path) as cloud:
        device = await cloud.add_device(firmware="2.3.1", setup_after_s=None, heartbeat_s=3600)
        await eventually(lambda: device.status.connected, 10, "connected")
        session = session_of(cloud, device)
        assert not device.app.registered
        with pytest.raises(DeviceTimedOut):
            await session.call_function("digitalread", "D7", 0.3)
        assert device.status.calls == 1  # it reached the app, which has no such function yet
        with pytest.raises(VariableNotFound):
            await session.get_variable("uptime", 10)

        device.run_setup()
        assert device.app.registered
        assert await session.call_function("digitalread", "D7", 10) == 0
        assert device.status.calls == 2
        uptime = await session.get_variable("uptime", 10)
        assert isinstance(uptime, int)


async def test_a_function_tinker_lacks_is_acknowledged_and_never_answered(
    tmp_path: Path,
) -> None:
    async with running_cloud(tmp_path) as cloud:
        device = await cloud.add_device(heartbeat_s=3600)
        await cloud.online(device)
        session = session_of(cloud, device)
        with pytest.raises(DeviceTimedOut):
            await session.call_function("toggle", "D7", 0.3)
        assert device.status.calls == 1
        with pytest.raises(VariableNotFound):
            await session.get_variable("humidity", 10)
        assert device.status.connected  # neither ends the connection


async def test_signal_turns_the_led_to_rainbow_and_back(tmp_path: Path) -> None:
    async with running_cloud(tmp_path) as cloud:
        device = await cloud.add_device(heartbeat_s=3600)
        await cloud.online(device)
        await cloud.node.router.signal(device.device_id, True)
        await eventually(lambda: device.status.signaling, 10, "signaling")
        assert device.status.led == "rainbow"
        await cloud.node.router.signal(device.device_id, False)
        await eventually(lambda: not device.status.signaling, 10, "signal off")
        assert device.status.led == "breathing cyan"


async def test_events_from_the_cloud_are_kept_in_order(tmp_path: Path) -> None:
    async with running_cloud(tmp_path) as cloud:
        device = await cloud.add_device(heartbeat_s=3600)
        await cloud.online(device)
        admin = await cloud.node.store.users.ensure("admin")
        # Device OS 2.3.1 subscribes to "particle" and "spark" for its owner's devices.
        for index in range(3):
            cloud.node.router.publish(
                CloudEvent(
                    name=f"spark/test/{index}",
                    data=str(index),
                    ttl=60,
                    public=False,
                    published_at=datetime.now(UTC),
                    device_id=None,
                    owner_id=admin.id,
                )
            )
        await eventually(lambda: len(device.status.received_events) == 3, 10, "three events")
        assert list(device.status.received_events) == [
            messages.EventInfo(f"spark/test/{i}", str(i).encode(), 60, False) for i in range(3)
        ]


async def test_status_calls_counts_every_call_that_reaches_it(tmp_path: Path) -> None:
    async with running_cloud(tmp_path) as cloud:
        device = await cloud.add_device(heartbeat_s=3600)
        await cloud.online(device)
        calls = [
            cloud.node.router.call_function(device.device_id, "digitalread", f"D{i}")
            for i in range(4)
        ]
        assert await asyncio.gather(*calls) == [0, 0, 0, 0]
        assert device.status.calls == 4


@pytest.mark.parametrize(("share", "lost"), [(0.0, 0), (0.05, 5), (0.5, 50), (1.0, 100)])
def test_lost_chunks_are_the_share_asked_for_every_time(share: float, lost: int) -> None:
    updater = Updater(app_for("2.3.1").firmware, OtaFaults(drop_chunks=share), name="test")
    assert sum(updater._chunk_lost() for _ in range(100)) == lost
