"""Over-the-air updates through the whole cloud: the REST API takes a multipart binary, the
gateway sends it over TCP to a virtual Photon, which checks it, applies it and restarts.

Every part is real: uvicorn on loopback, the gateway, the store, the virtual device.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cyan.cloud.flash import STOPPED
from cyan.device import PROFILES, VirtualDevice
from cyan.device.updater import OtaFaults
from cyan.firmware import MAX_BINARY_BYTES, parse_module
from tests.firmware.samples import system_part, tinker_binary, user_part
from tests.flashing import UPDATE_BOUND_S, device_detail, finished_update
from tests.sse import SseReader
from tests.system import Cloud, eventually, running_cloud


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    async with running_cloud(tmp_path / "cloud") as started:
        yield started


async def flash(cloud: Cloud, device_id: str, data: bytes, name: str = "app.bin") -> httpx.Response:
    """PUT multipart, as particle-cli sends it: part file (a full path) and part latest."""
    files = {"file": (f"/home/someone/{name}", data, "application/octet-stream")}
    return await cloud.http.put(f"/v1/devices/{device_id}", files=files, data={"latest": "true"})


async def back_online(cloud: Cloud, device: VirtualDevice, connects_before: int) -> None:
    await eventually(
        lambda: device.status.connects > connects_before and device.status.connected,
        UPDATE_BOUND_S,
        "the device back online after its restart",
    )
    await cloud.online(device)


async def test_a_user_part_goes_over_the_air_and_the_device_reports_it(cloud: Cloud) -> None:
    device = await cloud.add_device()
    await cloud.online(device)
    connects = device.status.connects
    binary = user_part(b"\x5a" * (128 * 1024 - 200))  # as big as a user part gets
    module = parse_module(binary)
    async with cloud.http.stream("GET", "/v1/devices/events/spark") as stream:
        reply = await flash(cloud, device.device_id, binary)
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"id": device.device_id, "status": "Update started"}
        reader = SseReader(stream)
        statuses: list[str] = []
        while len(statuses) < 2:
            event = await asyncio.wait_for(reader.next_event(), UPDATE_BOUND_S)
            assert event is not None
            if event.name == "spark/flash/status":
                statuses.append(event.data["data"])
                assert event.data["coreid"] == device.device_id
    assert statuses == ["started", "success"]
    ota = await finished_update(cloud, device.device_id)
    assert ota["state"] == "succeeded"
    assert ota["bytes_sent"] == ota["total_bytes"] == len(binary)
    assert ota["fast"] is True
    assert ota["module"] == "user part 1 v6 for the Photon"
    assert ota["file"] == "app.bin"
    await back_online(cloud, device, connects)
    # The new firmware identity: the user part's hash as Device OS reports it.
    await eventually(
        lambda: (
            cloud.node.router.live(device.device_id) is not None
            and any(m.get("u") == module.sha256.hex().upper() for m in live_modules(cloud, device))
        ),
        10,
        "the new user part in the describe",
    )
    firmware = (await device_detail(cloud, device.device_id))["cyan_firmware"]
    assert firmware["app_hash"] == module.sha256.hex().upper()
    assert {"module": "user part 1", "version": 6, "sha256": firmware["app_hash"]} in firmware[
        "modules"
    ]
    # The binary waited in the data directory only while the update ran.
    assert list((cloud.node.settings.data_dir / "updates").iterdir()) == []


def live_modules(cloud: Cloud, device: VirtualDevice) -> tuple[dict[str, Any], ...]:
    live = cloud.node.router.live(device.device_id)
    return live.modules if live is not None else ()


async def test_the_chunk_size_the_device_announces_is_used(cloud: Cloud) -> None:
    # Device OS sends spark/hardware/ota_chunk_size on connect; this one takes 256.
    events = (("spark/hardware/ota_chunk_size", "256"),)
    profile = dataclasses.replace(PROFILES["2.3.1"], connect_events=events)
    device = await cloud.add_device(profile=profile)
    await cloud.online(device)
    await eventually(
        lambda: (
            (live := cloud.node.router.live(device.device_id)) is not None
            and live.ota_chunk_bytes == 256
        ),
        10,
        "the announced chunk size",
    )
    assert (await flash(cloud, device.device_id, user_part(b"\x12" * 3000))).status_code == 200
    assert (await finished_update(cloud, device.device_id))["state"] == "succeeded"
    assert device.app.updater.last_params is not None
    assert device.app.updater.last_params.chunk_bytes == 256


async def test_particles_own_tinker_binary_flashes(cloud: Cloud) -> None:
    device = await cloud.add_device()
    await cloud.online(device)
    reply = await flash(cloud, device.device_id, tinker_binary("photon"), "tinker.bin")
    assert reply.status_code == 200, reply.text
    assert (await finished_update(cloud, device.device_id))["state"] == "succeeded"


async def test_a_system_part_changes_the_reported_device_os(cloud: Cloud) -> None:
    device = await cloud.add_device(firmware="1.5.2")
    await cloud.online(device)
    connects = device.status.connects
    # System part 1 of 2.3.1 needs only part 2 >= 207, which a 1.5.2 Photon has.
    binary = system_part(1, body=b"\x11" * (256 * 1024 - 600))
    reply = await flash(cloud, device.device_id, binary, "system-part1-2.3.1-photon.bin")
    assert reply.status_code == 200, reply.text
    assert (await finished_update(cloud, device.device_id))["state"] == "succeeded"
    await back_online(cloud, device, connects)
    modules = {(m["f"], m["n"]): m["v"] for m in device.app.firmware.system_describe()["m"]}
    assert modules[("s", "1")] == 2302
    assert modules[("s", "2")] == 1512


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (lambda: tinker_binary("p1"), "for the P1 (platform 8), not the Photon (platform 6)"),
        (lambda: user_part(b"y" * 5000)[:-100], "the file is truncated"),
        (lambda: corrupted(user_part(b"x" * 4000)), "the CRC-32 does not match"),
        (lambda: b"#!/bin/sh\necho hello\n", "not a Particle module binary"),
        (lambda: b"", "not a Particle module binary"),
        # Over api.max_body_bytes (1 MiB) and still judged: an upload has its slot's cap.
        (lambda: b"\0" * (MAX_BINARY_BYTES // 2 + 1024), "not a Particle module binary"),
        (lambda: b"\0" * (MAX_BINARY_BYTES + 1), "larger than the"),
    ],
)
async def test_bad_binaries_are_refused_before_anything_is_sent(
    cloud: Cloud, data: Any, reason: str
) -> None:
    device = await cloud.add_device()
    await cloud.online(device)
    reply = await flash(cloud, device.device_id, data())
    assert reply.status_code == 400, reply.text
    body = reply.json()
    assert body["ok"] is False
    assert reason in body["error"]
    assert (await device_detail(cloud, device.device_id))["cyan_ota"] is None
    assert device.status.connected


async def test_an_upload_past_the_slot_and_its_headers_is_cut_off(cloud: Cloud) -> None:
    device = await cloud.add_device()
    await cloud.online(device)
    reply = await flash(cloud, device.device_id, b"\0" * (MAX_BINARY_BYTES + 128 * 1024))
    assert reply.status_code == 413, reply.text
    assert (await device_detail(cloud, device.device_id))["cyan_ota"] is None


def corrupted(data: bytes) -> bytes:
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0xFF
    return bytes(flipped)


async def test_lost_chunks_are_sent_again_and_the_update_finishes(cloud: Cloud) -> None:
    device = await cloud.add_device(ota_faults=OtaFaults(drop_chunks=0.05))
    await cloud.online(device)
    reply = await flash(cloud, device.device_id, user_part(b"\x33" * 100_000))
    assert reply.status_code == 200, reply.text
    ota = await finished_update(cloud, device.device_id)
    assert ota["state"] == "succeeded", ota
    assert ota["chunks_resent"] > 0


async def test_a_device_without_fast_ota_gets_one_chunk_at_a_time(cloud: Cloud) -> None:
    device = await cloud.add_device(ota_faults=OtaFaults(slow_ota=True, drop_chunks=0.05))
    await cloud.online(device)
    reply = await flash(cloud, device.device_id, user_part(b"\x44" * 30_000))
    assert reply.status_code == 200, reply.text
    ota = await finished_update(cloud, device.device_id)
    assert (ota["state"], ota["fast"]) == ("succeeded", False)
    assert ota["chunks_resent"] > 0


async def test_a_device_that_drops_off_mid_update_keeps_its_firmware(cloud: Cloud) -> None:
    device = await cloud.add_device(ota_faults=OtaFaults(disconnect_during_ota=True))
    await cloud.online(device)
    before = device.app.firmware.system_describe()
    reply = await flash(cloud, device.device_id, user_part(b"\x55" * 60_000))
    assert reply.status_code == 200, reply.text
    ota = await finished_update(cloud, device.device_id)
    assert ota["state"] == "failed"
    assert "disconnected" in ota["failure"]
    assert 0 < ota["bytes_sent"] < ota["total_bytes"]
    await cloud.online(device)  # it reconnects by itself, on its old firmware
    assert device.app.firmware.system_describe() == before
    # Flashed again, it takes it.
    assert (await flash(cloud, device.device_id, user_part(b"\x55" * 60_000))).status_code == 200
    assert (await finished_update(cloud, device.device_id))["state"] == "succeeded"


async def test_a_module_the_device_refuses_fails_and_the_old_firmware_stays(cloud: Cloud) -> None:
    device = await cloud.add_device(firmware="0.7.0")
    await cloud.online(device)
    before = device.app.firmware.system_describe()
    # System part 2 of 2.3.1 needs part 1 >= 2302 and bootloader >= 1003: a 0.7.0 Photon
    # has neither, and its validation says so (a user part's dependencies it does not check).
    reply = await flash(cloud, device.device_id, system_part(2, body=b"\x66" * 5000))
    assert reply.status_code == 200, reply.text
    ota = await finished_update(cloud, device.device_id)
    assert ota["state"] == "failed"
    assert "module validation result -1340" in ota["failure"]
    assert device.app.firmware.system_describe() == before


async def test_calls_during_an_update_are_answered_and_a_second_update_waits(
    cloud: Cloud,
) -> None:
    # The device holds the update a third of the way in, so the calls land in the middle
    # of it however fast the machine is (they wait on that, not on time).
    device = await cloud.add_device(ota_faults=OtaFaults(slow_ota=True, hold_at_bytes=80_000))
    await cloud.online(device)
    binary = system_part(1, body=b"\x77" * 250_000)
    assert (await flash(cloud, device.device_id, binary)).status_code == 200
    second = await flash(cloud, device.device_id, binary)
    assert second.status_code == 409
    assert "already in progress" in second.json()["error"]
    await eventually(lambda: device.app.updater.holding, UPDATE_BOUND_S, "the update held")
    calls = [
        cloud.http.post(f"/v1/devices/{device.device_id}/digitalread", json={"arg": "D7"})
        for _ in range(5)
    ]
    replies = await asyncio.gather(*calls)
    job = cloud.node.flasher.job(device.device_id)
    assert job is not None
    assert 0 < job.progress.bytes_sent < job.progress.total_bytes
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    assert all(r.json()["return_value"] in (0, 1) for r in replies)
    device.release_update()
    assert (await finished_update(cloud, device.device_id))["state"] == "succeeded"


async def test_an_offline_device_cannot_be_flashed(cloud: Cloud) -> None:
    device = await cloud.add_device(start=False)
    reply = await flash(cloud, device.device_id, user_part())
    assert reply.status_code == 404
    assert "offline" in reply.json()["error"]


async def test_a_server_that_stops_mid_update_aborts_it_and_records_why(cloud: Cloud) -> None:
    # Held a quarter of the way in: the update cannot end by itself before the stop.
    device = await cloud.add_device(ota_faults=OtaFaults(slow_ota=True, hold_at_bytes=50_000))
    await cloud.online(device)
    before = device.app.firmware.system_describe()
    reply = await flash(cloud, device.device_id, system_part(1, body=b"\x88" * 200_000))
    assert reply.status_code == 200

    def receiving() -> bool:
        connection = device.connection
        return connection is not None and connection.update is not None

    await eventually(lambda: device.app.updater.holding, UPDATE_BOUND_S, "the update held")
    assert receiving()
    await cloud.node.flasher.stop()  # what Node.stop() does first
    record = await cloud.node.store.updates.latest(device.device_id)
    assert record is not None
    assert (record.state, record.failure) == ("failed", STOPPED)
    assert record.file_path is None
    assert list((cloud.node.settings.data_dir / "updates").iterdir()) == []
    # The device hears UpdateAbort, drops what it had, and stays as it was, connected.
    await eventually(lambda: not receiving(), 10, "the device to drop the update")
    assert not device.app.updater.holding
    assert device.app.firmware.system_describe() == before
    assert device.status.connected
