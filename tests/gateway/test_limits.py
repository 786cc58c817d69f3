"""What a device can take follows its Device OS (protocol/limits.py): arguments, names and
events over the limit are refused or held back before anything reaches it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.system import eventually, running_cloud


@pytest.mark.parametrize(
    ("firmware", "limit", "basis"),
    [
        ("0.7.0", 63, "Device OS 0.7.0"),
        ("1.5.2", 622, "Device OS 1.5.2"),
        ("2.3.1", 622, "Device OS 2.3.1"),
    ],
)
async def test_an_argument_over_the_releases_limit_is_a_400_and_never_sent(
    tmp_path: Path, firmware: str, limit: int, basis: str
) -> None:
    async with running_cloud(tmp_path) as cloud:
        device = await cloud.add_device(firmware=firmware)
        await cloud.online(device)
        path = f"/v1/devices/{device.device_id}/digitalwrite"

        over = await cloud.http.post(path, json={"args": "D7,HIGH" + " " * (limit - 6)})
        fits = await cloud.http.post(path, json={"args": "D7,HIGH" + " " * (limit - 7)})

        assert over.status_code == 400
        error = over.json()["error"]
        assert error.startswith(f"Function argument is {limit + 1} bytes; this device (")
        assert error.endswith(f") takes at most {limit}")
        assert basis in error
        # Only the call that fits reached the device (Tinker trims the spaces: "HIGH").
        assert device.status.calls == 1
        assert (fits.status_code, fits.json()["return_value"]) == (200, 1)


async def test_events_too_big_for_a_device_are_not_sent_to_it(tmp_path: Path) -> None:
    async with running_cloud(tmp_path) as cloud:
        old = await cloud.add_device(firmware="0.7.0")  # takes 255 bytes of event data
        new = await cloud.add_device(firmware="2.3.1")  # takes 622
        await cloud.online(old)
        await cloud.online(new)
        # Public, so that 0.7.0's firehose subscription to "spark" matches too.
        for name, data in (("spark/big", "x" * 300), ("spark/fits", "y" * 255)):
            reply = await cloud.http.post(
                "/v1/devices/events", json={"name": name, "data": data, "private": False}
            )
            assert reply.status_code == 200, reply.text

        def arrived(device: object, name: str) -> bool:
            events = device.status.received_events  # type: ignore[attr-defined]
            return any(e.name == name for e in events)

        # One connection keeps its order: once "fits" is there, "big" would have been too.
        await eventually(lambda: arrived(old, "spark/fits") and arrived(new, "spark/fits"), 5)
        assert arrived(new, "spark/big")
        assert not arrived(old, "spark/big")
        session = next(s for s in cloud.node.gateway.sessions if s.device_id == old.device_id)
        assert session.requests.oversized_events == 1
