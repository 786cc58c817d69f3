"""particle-api-js 12.0.3, unchanged: `flashDevice` over the air through a running Cyan.

api-js renames each entry of ``files`` to a multipart part `file`, `file2`, … whose filename
is the entry's key, reads a string value as a path (a Buffer is sent as is), and adds
`latest=true` (rest-api.md §4). Each test asserts on what the library resolves to or rejects
with, then on the device as Cyan reports it (GET /v1/devices/DEV: `cyan_ota`, `cyan_firmware`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cyan.device import VirtualDevice
from cyan.firmware import parse_module
from tests.compat.conftest import LAMP, ApiJs, ApiJsError
from tests.firmware.samples import tinker_binary, user_part
from tests.flashing import UPDATE_BOUND_S, device_detail, finished_update
from tests.system import Cloud, eventually

# Resolves with the reply's body; the file is sent from its path (`files` values: path|Buffer).
_FLASH_FROM_PATH = """
return (await particle.flashDevice({
  deviceId: args.device, files: { [args.name]: args.path }, auth: token,
})).body;
"""
# The same with the file's bytes read into a Buffer first.
_FLASH_FROM_BUFFER = """
const data = require('fs').readFileSync(args.path);
return (await particle.flashDevice({
  deviceId: args.device, files: { [args.name]: data }, auth: token,
})).body;
"""


async def current_app_hash(cloud: Cloud, device: VirtualDevice) -> str | None:
    firmware = (await device_detail(cloud, device.device_id)).get("cyan_firmware")
    return None if firmware is None else firmware.get("app_hash")


async def reports_app(cloud: Cloud, device: VirtualDevice, app_hash: str) -> bool:
    return await current_app_hash(cloud, device) == app_hash


@pytest.mark.parametrize("script", [_FLASH_FROM_PATH, _FLASH_FROM_BUFFER], ids=["path", "buffer"])
async def test_flash_device_puts_the_device_on_the_new_firmware(
    api_js: ApiJs, cloud: Cloud, lamp: VirtualDevice, tmp_path: Path, script: str
) -> None:
    binary = user_part(b"\xa7" * 40_000)
    expected_hash = parse_module(binary).sha256.hex().upper()
    assert await current_app_hash(cloud, lamp) != expected_hash  # else the test proves nothing
    app = tmp_path / "built-app.bin"
    app.write_bytes(binary)
    connects = lamp.status.connects

    body = await api_js(script, device=LAMP, name="app.bin", path=str(app))

    assert body == {"id": lamp.device_id, "status": "Update started"}
    ota = await finished_update(cloud, lamp.device_id)
    assert ota["state"] == "succeeded", ota
    assert ota["file"] == "app.bin"  # the key of `files` is the part's filename
    assert ota["module"] == "user part 1 v6 for the Photon"
    assert ota["bytes_sent"] == ota["total_bytes"] == len(binary)
    await eventually(
        lambda: lamp.status.connects > connects and lamp.status.connected,
        UPDATE_BOUND_S,
        "the device back online after its restart",
    )
    await cloud.online(lamp)
    await eventually(
        lambda: reports_app(cloud, lamp, expected_hash), 10, f"Cyan to report app {expected_hash}"
    )
    # What an app sees afterwards through the library: the device online again.
    device = await api_js(
        "return (await particle.getDevice({ deviceId: args.device, auth: token })).body;",
        device=LAMP,
    )
    assert device["connected"] is True
    firmware = device["cyan_firmware"]
    assert firmware["app_hash"] == expected_hash
    assert {"module": "user part 1", "version": 6, "sha256": expected_hash} in firmware["modules"]


@pytest.mark.parametrize("script", [_FLASH_FROM_PATH, _FLASH_FROM_BUFFER], ids=["path", "buffer"])
async def test_flash_device_rejects_a_binary_for_another_platform(
    api_js: ApiJs, cloud: Cloud, lamp: VirtualDevice, tmp_path: Path, script: str
) -> None:
    p1_tinker = tmp_path / "tinker-0.4.5-p1.bin"
    p1_tinker.write_bytes(tinker_binary("p1"))
    before = await current_app_hash(cloud, lamp)
    connects = lamp.status.connects

    with pytest.raises(ApiJsError) as refused:
        await api_js(script, device=LAMP, name="tinker.bin", path=str(p1_tinker))

    assert refused.value.status_code == 400, refused.value
    body = refused.value.body
    assert body["ok"] is False, body
    assert body["error"].startswith("The binary was refused: "), body
    assert "for the P1 (platform 8), not the Photon (platform 6)" in body["error"], body
    detail = await device_detail(cloud, lamp.device_id)
    assert detail["cyan_ota"] is None  # refused before anything was sent
    assert detail["connected"] is True
    assert lamp.status.connects == connects
    assert await current_app_hash(cloud, lamp) == before
