"""Following an over-the-air update through Cyan's API, for the tests that flash."""

from __future__ import annotations

from typing import Any

from tests.system import Cloud, eventually

UPDATE_BOUND_S = 60.0  # a hang bound, not a speed check


async def device_detail(cloud: Cloud, device_id: str) -> dict[str, Any]:
    reply = await cloud.http.get(f"/v1/devices/{device_id}")
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


async def finished_update(cloud: Cloud, device_id: str) -> dict[str, Any]:
    """The device's `cyan_ota` once its update ended (succeeded or failed)."""
    ota: dict[str, Any] | None = None

    async def ended() -> bool:
        nonlocal ota
        ota = (await device_detail(cloud, device_id))["cyan_ota"]
        return ota is not None and ota["state"] != "sending"

    await eventually(ended, UPDATE_BOUND_S, "the update to end")
    assert ota is not None
    return ota
