"""Ownership end to end: two users, real devices, claims, releases, keys, names, nyan."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from cyan.device import VirtualDevice
from cyan.keydir import KeyStore
from cyan.protocol import crypto, keys
from tests.system import Cloud, eventually, running_cloud


@pytest.fixture
async def cloud(tmp_path: Path) -> Cloud:  # type: ignore[misc]
    async with running_cloud(tmp_path) as started:
        yield started


async def second_user(cloud: Cloud, name: str = "bob") -> httpx.AsyncClient:
    user = await cloud.node.store.users.ensure(name)
    token = await cloud.node.store.tokens.create(user.id)
    return httpx.AsyncClient(
        base_url=str(cloud.http.base_url), timeout=10, headers={"Authorization": f"Bearer {token}"}
    )


async def unowned_device(cloud: Cloud) -> VirtualDevice:
    device = await cloud.add_device(register=False, start=False)
    await cloud.node.store.devices.set_key(
        device.device_id, crypto.public_key_der(device.keys.device_key.public_key())
    )
    return device


async def first_event(
    client: httpx.AsyncClient,
    path: str,
    timeout_s: float = 3.0,
    on_open: Callable[[], None] | None = None,
) -> str | None:
    """The name of the first event on a stream within ``timeout_s``, or None.

    ``on_open`` runs once the stream said ``:ok``: the server subscribes before that, so an
    event published from then on is on the stream.

    The deadline is checked between lines (the test server sends a keep-alive every second)
    rather than by cancelling a read, which would leave the stream unable to close.
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with client.stream("GET", path) as stream:
        assert stream.status_code == 200
        async for line in stream.aiter_lines():
            if line == ":ok" and on_open is not None:
                on_open()
            if line.startswith("event:"):
                return line.partition(":")[2].strip()
            if asyncio.get_running_loop().time() > deadline:
                return None
    return None


async def test_another_user_can_neither_see_nor_call_nor_listen(cloud: Cloud) -> None:
    device = await cloud.add_device(name="ada-photon", heartbeat_s=0.3)
    await cloud.online(device)
    async with await second_user(cloud) as bob:
        assert (await bob.get("/v1/devices")).json() == []
        for response in (
            await bob.get(f"/v1/devices/{device.device_id}"),
            await bob.get("/v1/devices/ada-photon"),
            await bob.post(
                f"/v1/devices/{device.device_id}/digitalwrite", json={"args": "D7,HIGH"}
            ),
            await bob.get(f"/v1/devices/{device.device_id}/temperature"),
            await bob.put(f"/v1/devices/{device.device_id}", json={"name": "mine-now"}),
            await bob.delete(f"/v1/devices/{device.device_id}"),
            await bob.get(f"/v1/devices/{device.device_id}/events"),
        ):
            assert response.status_code == 404, response.text
            assert response.json() == {"ok": False, "error": "Device not found."}
        assert device.tinker.digital["D7"] == 0
        # The device's private heartbeats flow to its owner, never to bob.
        assert await first_event(cloud.http, "/v1/devices/events") == "heartbeat"
        assert await first_event(bob, "/v1/devices/events") is None
        assert await first_event(bob, "/v1/events") is None


async def test_claim_and_release(cloud: Cloud) -> None:
    device = await unowned_device(cloud)
    cloud.start(device)
    await cloud.online(device)
    assert (await cloud.http.get("/v1/devices")).json() == []
    async with await second_user(cloud) as bob:
        claimed = await bob.post(
            "/v1/devices", json={"id": device.device_id.upper(), "request_transfer": False}
        )
        assert claimed.status_code == 200
        assert claimed.json()["claimed"] is True
        assert [d["id"] for d in (await bob.get("/v1/devices")).json()] == [device.device_id]
        taken = await cloud.http.post("/v1/devices", json={"id": device.device_id})
        assert taken.status_code == 403
        assert "belongs to someone else" in taken.json()["error"]
        transfer = await cloud.http.post(
            "/v1/devices", json={"id": device.device_id, "request_transfer": True}
        )
        assert transfer.status_code == 403
        assert "belongs to someone else" not in transfer.json()["error"]
        call = await bob.post(f"/v1/devices/{device.device_id}/digitalread", json={"args": "D7"})
        assert call.json()["return_value"] == 0
        assert (await bob.delete(f"/v1/devices/{device.device_id}")).json() == {"ok": True}
        assert (await bob.get("/v1/devices")).json() == []
        again = await cloud.http.post("/v1/devices", json={"id": device.device_id})
        assert again.status_code == 200
    unknown = await cloud.http.post("/v1/devices", json={"id": "f" * 24})
    assert unknown.status_code == 404


async def test_a_released_device_cannot_be_re_keyed_by_a_stranger(cloud: Cloud) -> None:
    device = await cloud.add_device(name="ada-photon")
    await cloud.online(device)
    assert (await cloud.http.delete(f"/v1/devices/{device.device_id}")).json() == {"ok": True}
    own_key = crypto.public_key_pem(device.keys.device_key.public_key()).decode()
    strangers_key = crypto.public_key_pem(keys.generate_device_key().public_key()).decode()
    async with await second_user(cloud) as bob:
        hijack = await bob.post(
            f"/v1/provisioning/{device.device_id}", data={"publicKey": strangers_key}
        )
        assert hijack.status_code == 403, hijack.text
        assert hijack.json()["ok"] is False
        assert "another public key" in hijack.json()["error"]
        stored = await cloud.node.store.devices.key(device.device_id)
        assert stored == crypto.public_key_der(device.keys.device_key.public_key())
        assert (await bob.get("/v1/devices")).json() == []
        # The key it has already: a claim, the key unchanged, and the real device still in.
        claim = await bob.post(f"/v1/provisioning/{device.device_id}", data={"publicKey": own_key})
        assert claim.status_code == 200, claim.text
        assert [d["id"] for d in (await bob.get("/v1/devices")).json()] == [device.device_id]
        # Now it is bob's, the first owner may not re-key it either.
        taken = await cloud.http.post(
            f"/v1/provisioning/{device.device_id}", data={"publicKey": strangers_key}
        )
        assert taken.status_code == 403
        assert "belongs to someone else" in taken.json()["error"]
    await device.stop()
    back = await cloud.add_device(keystore=device.keys, register=False)
    await cloud.online(back)


async def test_claim_moves_a_connected_devices_events_to_its_new_owner(cloud: Cloud) -> None:
    device = await unowned_device(cloud)
    cloud.start(device)
    await cloud.online(device)
    await cloud.http.post("/v1/devices", json={"id": device.device_id})

    def publish() -> None:
        device.publish("after-claim", "x", public=False)

    assert await first_event(cloud.http, "/v1/devices/events", on_open=publish) == "after-claim"


async def test_claim_code_presented_by_the_device(cloud: Cloud) -> None:
    created = await cloud.http.post("/v1/device_claims", json={})
    assert created.status_code == 200
    code = created.json()["claim_code"]
    assert len(code) == 63
    device = await unowned_device(cloud)
    device.options = replace(device.options, claim_code=code)
    cloud.start(device)
    await cloud.online(device)
    await eventually(lambda: _owned(cloud, device.device_id), 5, "claimed by the code")


async def _owned(cloud: Cloud, device_id: str) -> bool:
    listed = (await cloud.http.get("/v1/devices")).json()
    return any(d["id"] == device_id for d in listed)


async def test_rename_notes_and_nyan(cloud: Cloud) -> None:
    device = await cloud.add_device(name="first")
    other = await cloud.add_device(name="taken", start=False)
    await cloud.online(device)
    renamed = await cloud.http.put("/v1/devices/first", json={"name": "garden"})
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "garden"
    assert (await cloud.http.get("/v1/devices/garden")).json()["id"] == device.device_id
    assert (await cloud.http.get("/v1/devices/first")).status_code == 404
    clash = await cloud.http.put("/v1/devices/garden", json={"name": "taken"})
    assert clash.status_code == 400
    too_long = await cloud.http.put("/v1/devices/garden", json={"name": "n" * 300})
    assert too_long.status_code == 400, too_long.text
    assert "at most 255" in too_long.json()["error"]
    noted = await cloud.http.put("/v1/devices/garden", json={"notes": "east bed"})
    assert noted.json()["notes"] == "east bed"
    nyan = await cloud.http.put("/v1/devices/garden", json={"signal": "1"})
    assert nyan.json() == {"id": device.device_id, "connected": True, "signaling": True}
    assert device.status.led == "rainbow"
    await cloud.http.put("/v1/devices/garden", json={"signal": "0"})
    assert device.status.led == "breathing cyan"
    offline = await cloud.http.put("/v1/devices/taken", json={"signal": "1"})
    assert (offline.status_code, offline.json()["error"]) == (404, "Device is offline")
    assert other.status.led == "off"
    # A multipart PUT is a flash (tests/e2e/test_ota.py); 16 zero bytes are no module.
    flash = await cloud.http.put("/v1/devices/garden", files={"file": ("a.bin", b"\x00" * 16)})
    assert flash.status_code == 400
    assert "not a Particle module binary" in flash.json()["error"]


async def test_provisioning_a_new_key_lets_the_device_in(cloud: Cloud, tmp_path: Path) -> None:
    keystore = KeyStore.create(
        tmp_path / "fresh",
        cloud.node.gateway.server_key.public_key(),
        host="127.0.0.1",
        port=cloud.device_port,
    )
    sent = await cloud.http.post(
        f"/v1/provisioning/{keystore.device_id}",
        data={
            "deviceID": keystore.device_id,
            "publicKey": keystore.public_key_pem.decode(),
            "filename": "cli",
            "order": "manual_1",
            "algorithm": "rsa",
        },
    )
    assert sent.status_code == 200, sent.text
    device = await cloud.add_device(keystore=keystore, register=False)
    await cloud.online(device)
    # keys doctor: the device gets a new key, the server gets it, the device is back at once.
    await device.stop()
    newer = keys.generate_device_key()
    renewed = KeyStore(keystore.directory, keystore.device_id, newer, keystore.server)
    renewed.save()
    sent = await cloud.http.post(
        f"/v1/provisioning/{keystore.device_id}",
        json={
            "deviceID": keystore.device_id,
            "publicKey": crypto.public_key_pem(newer.public_key()).decode(),
            "algorithm": "rsa",
        },
    )
    assert sent.status_code == 200
    back = await cloud.add_device(keystore=KeyStore.load(keystore.directory), register=False)
    await cloud.online(back)
    async with await second_user(cloud) as bob:
        stolen = await bob.post(
            f"/v1/provisioning/{keystore.device_id}",
            data={"publicKey": keystore.public_key_pem.decode()},
        )
        assert stolen.status_code == 403
    bad = await cloud.http.post("/v1/provisioning/" + "e" * 24, data={"publicKey": "nope"})
    assert (bad.status_code, bad.json()["ok"]) == (400, False)
    assert (
        json.loads((await cloud.http.get(f"/v1/devices/{keystore.device_id}")).text)["connected"]
        is True
    )
