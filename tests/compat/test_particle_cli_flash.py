"""`particle flash` (particle-cli 3.51.0, unchanged) over the air through a running Cyan.

The CLI sends the binary as a chunked multipart PUT /v1/devices/DEV (rest-api.md §3.2,
`flash` rows); Cyan answers "Update started" and sends it to the virtual Photon over the
device protocol in the background. Each test asserts on what the CLI prints and exits with,
then on the device as Cyan reports it (GET /v1/devices/DEV: `cyan_ota`, `cyan_firmware`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from cyan.device import VirtualDevice
from cyan.firmware import parse_module
from tests.compat.conftest import LAMP, ParticleCli
from tests.firmware.samples import tinker_binary, user_part
from tests.flashing import UPDATE_BOUND_S, device_detail, finished_update
from tests.system import Cloud, eventually

# What cmd/cloud.js `_doFlash` prints before the PUT; a file flash then prints "Flash success!"
# (`flashDevice`), a known app such as tinker nothing more (`_flashKnownApp` returns first).
FLASHING = f"Flashing firmware to your device {LAMP}"
FLASH_SUCCESS = "Flash success!"
# cmd/cloud.js wraps every failure: VError(e, `Failed to flash ${device}`).
FAILED_TO_FLASH = f"Failed to flash {LAMP}"
# The NOTICE `ui.logFirstTimeFlashWarning()` prints once per profile (flashWarningShownOn).
FIRST_FLASH_NOTICE = ":::: Your first flash may take up to 10m to complete"


async def running_firmware(
    cloud: Cloud, device: VirtualDevice, connects_before: int, app_hash: str
) -> dict[str, Any]:
    """Wait until the device restarted, reconnected and Cyan reports ``app_hash``.

    Returns the device detail then; fails (bounded) if it never comes back on that app.
    """
    await eventually(
        lambda: device.status.connects > connects_before and device.status.connected,
        UPDATE_BOUND_S,
        "the device back online after its restart",
    )
    await cloud.online(device)
    detail: dict[str, Any] = {}

    async def reported() -> bool:
        nonlocal detail
        detail = await device_detail(cloud, device.device_id)
        firmware = detail.get("cyan_firmware")
        return firmware is not None and firmware.get("app_hash") == app_hash

    try:
        await eventually(reported, 10, f"Cyan to report app hash {app_hash}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last detail: {detail.get('cyan_firmware')}") from None
    return detail


async def current_app_hash(cloud: Cloud, device: VirtualDevice) -> str | None:
    firmware = (await device_detail(cloud, device.device_id)).get("cyan_firmware")
    return None if firmware is None else firmware.get("app_hash")


def corrupted(data: bytes) -> bytes:
    """One byte flipped in the middle: the length still matches, the CRC-32 no longer does."""
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0xFF
    return bytes(flipped)


# -- flashing that works ----------------------------------------------------------------------


async def test_flash_tinker_by_device_name(
    particle: ParticleCli, cloud: Cloud, lamp: VirtualDevice
) -> None:
    expected_hash = parse_module(tinker_binary("photon")).sha256.hex().upper()
    assert await current_app_hash(cloud, lamp) != expected_hash  # else the test proves nothing
    connects = lamp.status.connects

    result = await particle.ok("flash", LAMP, "tinker")

    # The known-app path: GET the device for its platform, then PUT particle-cli's own
    # tinker-0.4.5-photon.bin (rest-api.md §3.2). It prints nothing after the PUT succeeds.
    assert FIRST_FLASH_NOTICE in result.stdout, result
    assert result.stdout.rstrip().splitlines()[-1] == FLASHING, result
    assert FLASH_SUCCESS not in result.stdout
    assert result.stderr == "", result
    ota = await finished_update(cloud, lamp.device_id)
    assert ota["state"] == "succeeded", ota
    assert ota["file"] == "tinker-0.4.5-photon.bin"
    assert ota["bytes_sent"] == ota["total_bytes"] == len(tinker_binary("photon"))
    detail = await running_firmware(cloud, lamp, connects, expected_hash)
    assert detail["connected"] is True
    assert detail["cyan_firmware"]["app_hash"] == expected_hash
    # And the CLI sees it back online.
    listing = (await particle.ok("list")).stdout
    assert f"{LAMP} [{lamp.device_id}] (Photon) is online" in listing


async def test_flash_a_binary_file(
    particle: ParticleCli, cloud: Cloud, lamp: VirtualDevice, tmp_path: Path
) -> None:
    binary = user_part(b"\xc1" * 20_000)
    expected_hash = parse_module(binary).sha256.hex().upper()
    assert await current_app_hash(cloud, lamp) != expected_hash
    app = tmp_path / "some-app.bin"
    app.write_bytes(binary)
    connects = lamp.status.connects

    result = await particle.ok("flash", LAMP, str(app))

    lines = result.stdout.rstrip().splitlines()
    assert lines[-2:] == [FLASHING, FLASH_SUCCESS], result
    assert result.stderr == "", result
    ota = await finished_update(cloud, lamp.device_id)
    assert ota["state"] == "succeeded", ota
    # The CLI names the part with the full local path; Cyan keeps the file name.
    assert ota["file"] == "some-app.bin"
    assert ota["module"] == "user part 1 v6 for the Photon"
    assert ota["bytes_sent"] == ota["total_bytes"] == len(binary)
    detail = await running_firmware(cloud, lamp, connects, expected_hash)
    assert detail["connected"] is True
    firmware = detail["cyan_firmware"]
    assert {"module": "user part 1", "version": 6, "sha256": expected_hash} in firmware["modules"]


async def test_subscribe_shows_the_flash_status_events_in_order(
    particle: ParticleCli, cloud: Cloud, lamp: VirtualDevice, tmp_path: Path
) -> None:
    app = tmp_path / "watched.bin"
    app.write_bytes(user_part(b"\xd2" * 30_000))
    bus = cloud.node.bus
    listeners = bus.subscriber_count
    subscribe = asyncio.ensure_future(
        particle(
            "subscribe",
            "spark/flash/status",
            "--device",
            LAMP,
            "--max",
            "2",
            timeout_s=UPDATE_BOUND_S,
        )
    )
    try:
        # Flash only once the CLI's event stream is open in Cyan: no race with the first event.
        await eventually(
            lambda: bus.subscriber_count > listeners or subscribe.done(),
            15,
            "particle subscribe to open its event stream",
        )
        assert not subscribe.done(), subscribe.result()
        await particle.ok("flash", LAMP, str(app))

        result = await asyncio.wait_for(subscribe, UPDATE_BOUND_S + 5)
    finally:
        if not subscribe.done():  # a failure above: run_process kills the CLI when cancelled
            subscribe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await subscribe

    assert result.code == 0, result
    lines = result.stdout.splitlines()
    assert lines[0] == f'Subscribing to "spark/flash/status" from device {LAMP}\'s stream'
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert [(e["name"], e["data"]) for e in events] == [
        ("spark/flash/status", "started"),
        ("spark/flash/status", "success"),
    ], result
    assert {e["coreid"] for e in events} == {lamp.device_id}
    assert lines[-1] == "2 event(s) received. Exiting...", result
    assert (await finished_update(cloud, lamp.device_id))["state"] == "succeeded"


# -- binaries Cyan refuses ----------------------------------------------------------------------


async def refused_flash(
    particle: ParticleCli, cloud: Cloud, lamp: VirtualDevice, path: Path, data: bytes
) -> str:
    """Flash ``path`` (holding ``data``), a binary Cyan must refuse.

    Returns the CLI's last line, after checking that nothing was sent to the device.
    """
    before = await current_app_hash(cloud, lamp)
    connects = lamp.status.connects

    result = await particle("flash", LAMP, str(path))

    assert result.code == 1, result
    assert FLASH_SUCCESS not in result.stdout, result
    # The reason printed is Cyan's 400 `error`, not a generic "HTTP error 400".
    last = result.output.rstrip().splitlines()[-1]
    assert last.startswith(f"{FAILED_TO_FLASH}: The binary was refused: "), result
    detail = await device_detail(cloud, lamp.device_id)
    assert detail["cyan_ota"] is None  # refused before anything was sent
    assert detail["connected"] is True
    assert lamp.status.connects == connects
    assert await current_app_hash(cloud, lamp) == before
    # Word for word what Cyan answers the same upload (refused too, so nothing changes).
    files = {"file": (str(path), data, "application/octet-stream")}
    reply = await cloud.http.put(
        f"/v1/devices/{lamp.device_id}", files=files, data={"latest": "true"}
    )
    assert reply.status_code == 400, reply.text
    assert last == f"{FAILED_TO_FLASH}: {reply.json()['error']}"
    return last


async def test_flash_refuses_a_binary_for_another_platform(
    particle: ParticleCli, cloud: Cloud, lamp: VirtualDevice, tmp_path: Path
) -> None:
    p1_tinker = tmp_path / "tinker-p1.bin"
    data = tinker_binary("p1")
    p1_tinker.write_bytes(data)

    printed = await refused_flash(particle, cloud, lamp, p1_tinker, data)

    assert "for the P1 (platform 8), not the Photon (platform 6)" in printed, printed


async def test_flash_refuses_a_corrupted_binary(
    particle: ParticleCli, cloud: Cloud, lamp: VirtualDevice, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.bin"
    data = corrupted(user_part(b"\xe3" * 8_000))
    broken.write_bytes(data)

    printed = await refused_flash(particle, cloud, lamp, broken, data)

    assert "the CRC-32 does not match" in printed, printed
