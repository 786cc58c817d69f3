"""How the gateway learns a device's functions and variables (protocol.md §7.1).

Device OS ≤ 1.5 runs setup() after it connects and never describes itself: the server's
first describe finds empty lists. Device OS 2.x posts its own describe once setup() ran.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cyan.device.tinker import FUNCTIONS, VARIABLES
from cyan.protocol import payloads
from cyan.protocol.messages import DescribeFlags, HelloInfo
from tests.system import RawDevice, eventually, running_cloud


async def _functions(cloud: object, device_id: str) -> list[str]:
    reply = await cloud.http.get(f"/v1/devices/{device_id}")  # type: ignore[attr-defined]
    assert reply.status_code == 200
    functions: list[str] = reply.json()["functions"]
    return functions


@pytest.mark.parametrize("firmware", ["0.7.0", "1.5.2"])
async def test_functions_registered_after_connecting_can_be_called_at_once(
    tmp_path: Path, firmware: str
) -> None:
    # describe_again_s is long: the call must not wait for the scheduled describe.
    async with running_cloud(tmp_path, describe_again_s=60.0) as cloud:
        device = await cloud.add_device(firmware=firmware, setup_after_s=None)
        await eventually(lambda: device.status.connected, 10, "connected")
        await eventually(
            lambda: cloud.node.router.live(device.device_id) is not None, 5, "describe answered"
        )
        assert await _functions(cloud, device.device_id) == []
        before = await cloud.http.post(
            f"/v1/devices/{device.device_id}/digitalwrite", json={"args": "D7,HIGH"}
        )
        assert before.status_code == 404  # nothing registered yet: asked again, still none

        device.run_setup()
        call = await cloud.http.post(
            f"/v1/devices/{device.device_id}/digitalwrite", json={"args": "D7,HIGH"}
        )
        read = await cloud.http.get(f"/v1/devices/{device.device_id}/uptime")

        assert (call.status_code, call.json()["return_value"]) == (200, 1)
        assert read.status_code == 200
        assert isinstance(read.json()["result"], int)
        assert device.tinker.digital["D7"] == 1
        assert sorted(await _functions(cloud, device.device_id)) == sorted(FUNCTIONS)


@pytest.mark.parametrize("firmware", ["0.7.0", "1.5.2"])
async def test_a_device_that_never_describes_itself_is_asked_again_on_a_schedule(
    tmp_path: Path, firmware: str
) -> None:
    async with running_cloud(tmp_path, describe_again_s=0.3) as cloud:
        device = await cloud.add_device(firmware=firmware, setup_after_s=None)
        await eventually(lambda: device.status.connected, 10, "connected")
        device.run_setup()  # no request names anything: only the schedule can find them

        async def listed() -> bool:
            return sorted(await _functions(cloud, device.device_id)) == sorted(FUNCTIONS)

        await eventually(listed, 10, "functions listed by the scheduled describe")
        live = cloud.node.router.live(device.device_id)
        assert live is not None
        assert dict(live.variables) == {
            "uptime": "int32",
            "temperature": "double",
            "build": "string",
        }
        assert len(VARIABLES) == 3


async def test_device_os_2_posts_its_describe_after_setup_without_being_asked(
    tmp_path: Path,
) -> None:
    # Nothing scheduled and nothing asked: the device's own describe is what tells.
    async with running_cloud(tmp_path, describe_again_s=600.0) as cloud:
        device = await cloud.add_device(firmware="2.3.1", setup_after_s=None)
        await eventually(lambda: device.status.connected, 10, "connected")
        live = cloud.node.router.live(device.device_id)
        assert live is not None
        assert live.functions == ()
        assert live.self_describes

        device.run_setup()

        await eventually(
            lambda: (
                (cloud.node.router.live(device.device_id) or live).functions == tuple(FUNCTIONS)
            ),
            5,
            "the posted describe",
        )


@pytest.mark.parametrize("firmware", ["0.7.0", "1.5.2"])
async def test_the_system_describe_names_the_release(tmp_path: Path, firmware: str) -> None:
    async with running_cloud(tmp_path) as cloud:
        device = await cloud.add_device(firmware=firmware)
        await cloud.online(device)
        live = cloud.node.router.live(device.device_id)
        assert live is not None
        assert live.system_version == firmware
        assert live.limits.basis == f"Device OS {firmware}"
        reply = await cloud.http.get(f"/v1/devices/{device.device_id}")
        assert reply.json()["system_firmware_version"] == firmware


async def test_functions_stay_registered_across_a_reconnect(tmp_path: Path) -> None:
    # setup() runs once per boot: the next connection's first describe already lists them.
    async with running_cloud(tmp_path, describe_again_s=600.0) as cloud:
        device = await cloud.add_device(firmware="0.7.0")
        await eventually(lambda: device.app.registered, 10, "setup() after the first describe")
        for session in list(cloud.node.gateway.sessions):
            session.close("test: drop the connection")
        await eventually(lambda: device.status.connects == 2, 10, "reconnected")

        def described() -> bool:
            live = cloud.node.router.live(device.device_id)
            return live is not None and sorted(live.functions) == sorted(FUNCTIONS)

        await eventually(described, 5, "the new connection's first describe")


async def test_device_os_5_names_its_release_in_the_hello_and_as_one_module(
    tmp_path: Path,
) -> None:
    # Particle's Linux build of 5.0.0: the long Hello carries system module 5002, and its
    # system describe lists the whole firmware as one monolithic module (protocol.md §7.1).
    hello = HelloInfo(3, 0xFFFF, 0x0136, 3, 5002, 960, 10 * 1024 * 1024, 512)
    async with running_cloud(tmp_path) as cloud:
        device = await cloud.add_device(start=False)
        raw = await RawDevice.open(cloud.device_port)
        await raw.handshake(device.keys, hello=hello)
        await eventually(lambda: cloud.node.router.live(device.device_id) is not None, 5)
        live = cloud.node.router.live(device.device_id)
        assert live is not None
        assert live.system_version == "5.0.0"
        assert live.limits.function_argument_bytes == 1024
        assert live.limits.basis == "Device OS 5.0.0"

        assert raw.connection is not None
        module = {"f": "m", "n": "0", "v": 5002, "d": []}
        raw.connection.post_describe(
            DescribeFlags.SYSTEM, payloads.encode_description(None, None, {"p": 3, "m": [module]})
        )
        raw.flush()
        await eventually(
            lambda: bool((cloud.node.router.live(device.device_id) or live).modules), 5
        )
        await cloud.node.gateway.flush()
        reply = await cloud.http.get(f"/v1/devices/{device.device_id}")
        record = await cloud.node.store.devices.get(device.device_id)
        raw.close()
    assert reply.json()["system_firmware_version"] == "5.0.0"
    assert record is not None
    assert record.system_firmware_version == "5.0.0"
