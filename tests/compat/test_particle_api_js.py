"""particle-api-js 12.0.3, unchanged, against Cyan: the calls an app or a script makes.

Each test runs a small Node script (``api_js``) and asserts on what the library resolves
to (its ``body``) or rejects with. rest-api.md §4 lists the request behind each method.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from cyan.device import VirtualDevice
from cyan.settings import ADMIN_USERNAME
from cyan.store import ClaimOutcome
from tests.compat.conftest import (
    KETTLE,
    LAMP,
    ApiJs,
    ApiJsError,
    next_event,
    unowned_device,
    while_running,
)
from tests.system import Cloud, eventually

PASSWORD = "correct horse battery staple"


async def test_login(api_js: ApiJs, cloud: Cloud) -> None:
    admin = await cloud.node.store.users.ensure(ADMIN_USERNAME)
    await cloud.node.store.users.set_password(admin.id, PASSWORD)

    login = await api_js(
        """
        const login = await particle.login({ username: args.username, password: args.password });
        const devices = await particle.listDevices({ auth: login.body.access_token });
        return { login: login.body, names: devices.body.map((d) => d.name).sort() };
        """,
        username=ADMIN_USERNAME,
        password=PASSWORD,
    )

    body = login["login"]
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 7776000  # api-js's default tokenDuration: 90 days
    assert isinstance(body["refresh_token"], str)
    user = await cloud.node.store.tokens.user_for(body["access_token"])
    assert user is not None
    assert user.id == admin.id
    # The token works at once.
    assert login["names"] == [KETTLE, LAMP]


async def test_login_with_a_wrong_password(api_js: ApiJs, cloud: Cloud) -> None:
    admin = await cloud.node.store.users.ensure(ADMIN_USERNAME)
    await cloud.node.store.users.set_password(admin.id, PASSWORD)

    with pytest.raises(ApiJsError) as refused:
        await api_js(
            "return await particle.login({ username: args.username, password: 'wrong!!!!' });",
            username=ADMIN_USERNAME,
        )

    assert refused.value.status_code == 400
    assert refused.value.body["error"] == "invalid_grant"


async def test_list_devices(api_js: ApiJs, lamp: VirtualDevice, kettle: VirtualDevice) -> None:
    devices = await api_js("return (await particle.listDevices({ auth: token })).body;")

    assert isinstance(devices, list)
    by_name = {device["name"]: device for device in devices}
    assert set(by_name) == {LAMP, KETTLE}
    for name, virtual in ((LAMP, lamp), (KETTLE, kettle)):
        device = by_name[name]
        assert device["id"] == virtual.device_id
        assert device["connected"] is True
        assert device["online"] is True
        assert device["platform_id"] == 6
        assert device["product_id"] == 6


async def test_get_device(api_js: ApiJs, lamp: VirtualDevice) -> None:
    device = await api_js(
        "return (await particle.getDevice({ deviceId: args.device, auth: token })).body;",
        device=LAMP,
    )

    assert device["id"] == lamp.device_id
    assert device["name"] == LAMP
    assert device["connected"] is True
    assert device["functions"] == ["digitalwrite", "digitalread", "analogwrite", "analogread"]
    assert device["variables"] == {"uptime": "int32", "temperature": "double", "build": "string"}


async def test_get_an_unknown_device(api_js: ApiJs) -> None:
    with pytest.raises(ApiJsError) as missing:
        await api_js("return await particle.getDevice({ deviceId: 'attic', auth: token });")

    # 404, never 401: a 401 would log particle-cli out (rest-api.md §1.3).
    assert missing.value.status_code == 404
    assert missing.value.body["error"] == "Device not found."


async def test_call_function(api_js: ApiJs, lamp: VirtualDevice) -> None:
    reply = await api_js(
        """
        return (await particle.callFunction({
          deviceId: args.device, name: 'digitalwrite', argument: 'D7,HIGH', auth: token,
        })).body;
        """,
        device=lamp.device_id,
    )

    assert reply["return_value"] == 1
    assert reply["id"] == lamp.device_id
    assert reply["connected"] is True
    assert lamp.tinker.digital["D7"] == 1


async def test_get_variable(api_js: ApiJs, lamp: VirtualDevice) -> None:
    reply = await api_js(
        """
        return (await particle.getVariable({
          deviceId: args.device, name: 'temperature', auth: token,
        })).body;
        """,
        device=LAMP,
    )

    assert reply["name"] == "temperature"
    assert 21.0 <= reply["result"] <= 22.0
    assert reply["coreInfo"]["deviceID"] == lamp.device_id
    assert reply["coreInfo"]["connected"] is True


async def test_publish_event(api_js: ApiJs, event_lines: AsyncIterator[str]) -> None:
    reply = await api_js(
        """
        return (await particle.publishEvent({
          name: 'compat/api-js', data: 'from api-js', isPrivate: true, auth: token,
        })).body;
        """
    )

    assert reply == {"ok": True}
    event = await next_event(event_lines)
    assert event["name"] == "compat/api-js"
    assert event["data"] == "from api-js"


# Resolves with the first event on the stream, then closes the stream.
_FIRST_EVENT = """
const stream = await particle.getEventStream({
  deviceId: args.device, name: args.name, auth: token,
});
return await new Promise((resolve, reject) => {
  stream.on('event', (event) => { stream.abort(); resolve(event); });
  stream.on('error', reject);
});
"""


async def test_get_event_stream(api_js: ApiJs, lamp: VirtualDevice) -> None:
    event = await while_running(
        api_js(_FIRST_EVENT, device="mine", name="compat"),
        lambda: lamp.publish("compat/temperature", "21.5"),
    )

    assert event["name"] == "compat/temperature"
    assert event["data"] == "21.5"
    assert event["coreid"] == lamp.device_id
    assert event["ttl"] == 60
    assert event["published_at"].endswith("Z")


async def test_get_event_stream_of_one_device(
    api_js: ApiJs, lamp: VirtualDevice, kettle: VirtualDevice
) -> None:
    def both_publish() -> None:
        lamp.publish("compat/which", "lamp")
        kettle.publish("compat/which", "kettle")

    event = await while_running(api_js(_FIRST_EVENT, device=KETTLE, name="compat"), both_publish)

    assert event["coreid"] == kettle.device_id
    assert event["data"] == "kettle"


async def test_claim_device(api_js: ApiJs, cloud: Cloud) -> None:
    device = await unowned_device(cloud)
    cloud.start(device)
    await cloud.online(device)

    reply = await api_js(
        "return (await particle.claimDevice({ deviceId: args.device, auth: token })).body;",
        device=device.device_id,
    )

    assert reply["ok"] is True
    ids = await api_js("return (await particle.listDevices({ auth: token })).body.map(d => d.id);")
    assert device.device_id in ids
    record = await cloud.node.store.devices.get(device.device_id)
    admin = await cloud.node.store.users.ensure(ADMIN_USERNAME)
    assert record is not None
    assert record.owner_id == admin.id


async def test_claim_someone_elses_device(api_js: ApiJs, cloud: Cloud) -> None:
    bob = await cloud.node.store.users.ensure("bob")
    device = await unowned_device(cloud)
    assert await cloud.node.store.devices.claim(device.device_id, bob.id) is ClaimOutcome.CLAIMED

    with pytest.raises(ApiJsError) as refused:
        await api_js(
            "return await particle.claimDevice({ deviceId: args.device, auth: token });",
            device=device.device_id,
        )

    assert refused.value.status_code == 403
    # particle-cli offers a transfer when it reads these words (rest-api.md §3.2).
    assert "belongs to someone else" in refused.value.body["error"]


async def test_get_claim_code(api_js: ApiJs, cloud: Cloud, lamp: VirtualDevice) -> None:
    """api-js 12 calls it getClaimCode (POST /v1/device_claims); a device then redeems it."""
    reply = await api_js("return (await particle.getClaimCode({ auth: token })).body;")

    assert isinstance(reply["claim_code"], str)
    assert reply["claim_code"]
    assert set(reply["device_ids"]) == {d.device_id for d in cloud.devices}
    # What a setup app does next: write the code to a new device, which presents it to the
    # cloud after its handshake and so becomes the caller's.
    device = await unowned_device(cloud)
    device.options = replace(device.options, claim_code=reply["claim_code"])
    cloud.start(device)
    await cloud.online(device)
    admin = await cloud.node.store.users.ensure(ADMIN_USERNAME)

    async def claimed() -> bool:
        record = await cloud.node.store.devices.get(device.device_id)
        return record is not None and record.owner_id == admin.id

    await eventually(claimed, 10, "the device claimed with the code")
