"""Device routes: list and detail shapes, variables, function calls (rest-api.md §3.2, §6)."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from cyan.cloud.errors import DeviceTimedOut
from cyan.cloud.router import Router
from cyan.protocol.limits import SMALL
from cyan.store import Store

from .conftest import DEVICE_A, DEVICE_B, DEVICE_BOB, Caller, FakeLink

NOT_FOUND = {"ok": False, "error": "Device not found."}
OFFLINE = {"ok": False, "error": "Device is offline"}


def offline_summary(device_id: str, name: str | None) -> dict[str, Any]:
    return {
        "id": device_id,
        "name": name,
        "last_app": None,
        "last_ip_address": None,
        "last_heard": None,
        "last_handshake_at": None,
        "product_id": 6,
        "platform_id": 6,
        "connected": False,
        "online": False,
        "cellular": False,
        "notes": None,
        "status": "normal",
        "serial_number": None,
        "system_firmware_version": None,
        "current_build_target": None,
        "default_build_target": None,
    }


async def test_list_is_a_bare_array_of_own_devices(
    client: httpx.AsyncClient, alice: Caller, bob: Caller
) -> None:
    reply = await client.get("/v1/devices", headers=alice.headers)
    assert reply.status_code == 200
    assert reply.json() == [offline_summary(DEVICE_A, "photon1"), offline_summary(DEVICE_B, None)]


async def test_list_empty(client: httpx.AsyncClient, store: Store) -> None:
    from .conftest import make_caller

    carol = await make_caller(store, "carol")
    reply = await client.get("/v1/devices", headers=carol.headers)
    assert (reply.status_code, reply.json()) == (200, [])


async def test_list_uses_stored_presence_when_offline(
    client: httpx.AsyncClient, store: Store, alice: Caller
) -> None:
    at = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    await store.presence.record_handshake(
        DEVICE_B,
        ip="198.51.100.4",
        at=at,
        platform_id=8,
        product_id=1234,
        product_firmware_version=2,
    )
    await store.presence.record_describe(
        DEVICE_B, functions=["f"], variables={"v": "int32"}, system_firmware_version="2.3.1"
    )
    reply = await client.get("/v1/devices", headers=alice.headers)
    entry = reply.json()[1]
    assert entry == {
        **offline_summary(DEVICE_B, None),
        "last_ip_address": "198.51.100.4",
        "last_heard": "2024-01-02T03:04:05.678Z",
        "last_handshake_at": "2024-01-02T03:04:05.678Z",
        "product_id": 1234,
        "platform_id": 8,
        "system_firmware_version": "2.3.1",
        "current_build_target": "2.3.1",
        "default_build_target": "2.3.1",
    }
    # The stored online flag lags; only the router says whether a device is connected.
    assert entry["connected"] is False


async def test_list_prefers_live_state(
    client: httpx.AsyncClient, alice: Caller, link_a: FakeLink
) -> None:
    reply = await client.get("/v1/devices", headers=alice.headers)
    assert reply.json()[0] == {
        **offline_summary(DEVICE_A, "photon1"),
        "last_ip_address": "192.0.2.7",
        "last_heard": "2024-05-06T07:09:00.005Z",
        "last_handshake_at": "2024-05-06T07:08:09.123Z",
        "connected": True,
        "online": True,
        "system_firmware_version": "1.4.4",
        "current_build_target": "1.4.4",
        "default_build_target": "1.4.4",
    }


@pytest.mark.parametrize("ref", ["photon1", DEVICE_A, DEVICE_A.upper()])
async def test_detail_live(
    client: httpx.AsyncClient, alice: Caller, link_a: FakeLink, ref: str
) -> None:
    reply = await client.get(f"/v1/devices/{ref}", headers=alice.headers)
    assert reply.status_code == 200
    body = reply.json()
    assert body["id"] == DEVICE_A
    assert body["connected"] is True
    assert body["functions"] == ["led", "reset"]
    assert body["variables"] == {
        "temp": "double",
        "label": "string",
        "on": "bool",
        "count": "int32",
    }
    assert body["firmware_updates_enabled"] is True
    assert body["firmware_updates_forced"] is False


async def test_detail_offline_shows_last_describe(
    client: httpx.AsyncClient, store: Store, alice: Caller
) -> None:
    await store.presence.record_describe(DEVICE_A, functions=["led"], variables={"temp": "double"})
    reply = await client.get("/v1/devices/photon1", headers=alice.headers)
    assert reply.json() == {
        **offline_summary(DEVICE_A, "photon1"),
        "functions": ["led"],
        "variables": {"temp": "double"},
        "firmware_updates_enabled": True,
        "firmware_updates_forced": False,
        # Cyan's own fields: no failed connection, no update, no system describe yet.
        "cyan_last_failure": None,
        "cyan_ota": None,
        "cyan_events_dropped": {"over_rate": 0, "too_big": 0, "last_at": None},
        "cyan_firmware": {"modules": [], "app_hash": None},
    }


@pytest.mark.parametrize("ref", ["missing", DEVICE_BOB, "0123456789abcdef0123456f"])
async def test_detail_not_found(
    client: httpx.AsyncClient, alice: Caller, bob: Caller, ref: str
) -> None:
    reply = await client.get(f"/v1/devices/{ref}", headers=alice.headers)
    assert (reply.status_code, reply.json()) == (404, NOT_FOUND)


async def test_same_name_resolves_per_owner(
    client: httpx.AsyncClient, alice: Caller, bob: Caller
) -> None:
    reply = await client.get("/v1/devices/photon1", headers=bob.headers)
    assert reply.json()["id"] == DEVICE_BOB


# -- functions -------------------------------------------------------------------------------


async def test_call_offline(client: httpx.AsyncClient, alice: Caller) -> None:
    reply = await client.post("/v1/devices/photon1/led", json={"args": "on"}, headers=alice.headers)
    assert (reply.status_code, reply.json()) == (404, OFFLINE)


async def test_call_other_users_device(
    client: httpx.AsyncClient, alice: Caller, bob: Caller, link_a: FakeLink
) -> None:
    reply = await client.post(f"/v1/devices/{DEVICE_A}/led", headers=bob.headers)
    assert (reply.status_code, reply.json()) == (404, NOT_FOUND)
    assert link_a.calls == []


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"json": {"args": "on"}}, "on"),
        ({"json": {"arg": "off"}}, "off"),
        ({"json": {"args": "a", "arg": "b"}}, "a"),
        ({"json": {}}, ""),
        ({"json": {"args": None}}, ""),
        ({"json": {"args": 42}}, "42"),
        ({"json": {"args": 1.5}}, "1.5"),
        ({"json": {"args": True}}, "true"),
        ({"data": {"arg": "form value"}}, "form value"),
        ({"data": {"args": "a&b=c"}}, "a&b=c"),
        ({}, ""),
    ],
)
async def test_call_arguments(
    client: httpx.AsyncClient,
    alice: Caller,
    link_a: FakeLink,
    kwargs: dict[str, Any],
    argument: str,
) -> None:
    reply = await client.post("/v1/devices/photon1/led", headers=alice.headers, **kwargs)
    assert reply.status_code == 200
    assert reply.json() == {
        "id": DEVICE_A,
        "name": "photon1",
        "last_app": "",
        "connected": True,
        "return_value": len(argument),
    }
    assert link_a.calls == [("led", argument)]


async def test_call_unknown_function(
    client: httpx.AsyncClient, alice: Caller, link_a: FakeLink
) -> None:
    reply = await client.post("/v1/devices/photon1/nope", headers=alice.headers)
    assert (reply.status_code, reply.json()) == (
        404,
        {"ok": False, "error": "Function nope not found"},
    )


async def test_call_argument_over_the_devices_limit_is_a_400_and_nothing_is_sent(
    client: httpx.AsyncClient, alice: Caller, link_a: FakeLink
) -> None:
    reply = await client.post(
        "/v1/devices/photon1/led", json={"args": "x" * 623}, headers=alice.headers
    )
    assert reply.status_code == 400
    assert reply.json() == {
        "ok": False,
        "error": "Function argument is 623 bytes; this device (Device OS 0.8 to 2.x) "
        "takes at most 622",
    }
    assert link_a.calls == []


async def test_call_argument_at_the_limit_is_sent(
    client: httpx.AsyncClient, alice: Caller, link_a: FakeLink
) -> None:
    reply = await client.post(
        "/v1/devices/photon1/led", json={"args": "é" * 311}, headers=alice.headers
    )
    assert (reply.status_code, reply.json()["return_value"]) == (200, 311)
    assert link_a.calls == [("led", "é" * 311)]


async def test_limits_follow_the_devices_release(
    client: httpx.AsyncClient, alice: Caller, link_a: FakeLink
) -> None:
    link_a.live = replace(link_a.live, limits=replace(SMALL, basis="Device OS 0.7.0"))

    long_arg = await client.post(
        "/v1/devices/photon1/led", json={"args": "x" * 64}, headers=alice.headers
    )
    long_name = await client.get("/v1/devices/photon1/temperature_c", headers=alice.headers)
    fits = await client.post(
        "/v1/devices/photon1/led", json={"args": "x" * 63}, headers=alice.headers
    )

    assert (long_arg.status_code, long_arg.json()["error"]) == (
        400,
        "Function argument is 64 bytes; this device (Device OS 0.7.0) takes at most 63",
    )
    assert (long_name.status_code, long_name.json()["error"]) == (
        400,
        "Variable name is 13 bytes; this device (Device OS 0.7.0) takes names of at most 12; "
        "it lists longer names cut short: try temperature_",
    )
    assert fits.status_code == 200
    assert link_a.calls == [("led", "x" * 63)]
    assert link_a.describes == 0


async def test_a_function_the_describe_lacks_is_asked_for_again_before_a_404(
    client: httpx.AsyncClient, alice: Caller, link_a: FakeLink
) -> None:
    link_a.described_later = replace(link_a.live, functions=("led", "reset", "brew"))

    reply = await client.post("/v1/devices/photon1/brew", headers=alice.headers)

    assert (reply.status_code, reply.json()["return_value"]) == (200, 0)
    assert link_a.describes == 1
    assert link_a.calls == [("brew", "")]


async def test_a_function_still_missing_after_asking_again_is_a_404(
    client: httpx.AsyncClient, alice: Caller, link_a: FakeLink
) -> None:
    reply = await client.post("/v1/devices/photon1/brew", headers=alice.headers)
    variable = await client.get("/v1/devices/photon1/level", headers=alice.headers)

    assert (reply.status_code, reply.json()["error"]) == (404, "Function brew not found")
    assert (variable.status_code, variable.json()["error"]) == (404, "Variable not found")
    assert link_a.describes == 2
    assert link_a.calls == []


@pytest.mark.parametrize("args", [{}, [], {"a": 1}])
async def test_call_argument_not_a_string(
    client: httpx.AsyncClient, alice: Caller, link_a: FakeLink, args: object
) -> None:
    reply = await client.post("/v1/devices/photon1/led", json={"args": args}, headers=alice.headers)
    assert (reply.status_code, reply.json()) == (
        400,
        {"ok": False, "error": "The function argument must be a string"},
    )


async def test_call_timeout(client: httpx.AsyncClient, alice: Caller, link_a: FakeLink) -> None:
    link_a.fail_with = DeviceTimedOut("Timed out.")
    reply = await client.post("/v1/devices/photon1/led", headers=alice.headers)
    assert (reply.status_code, reply.json()) == (408, {"ok": False, "error": "Timed out."})


# -- variables -------------------------------------------------------------------------------


async def test_variable_offline(client: httpx.AsyncClient, alice: Caller) -> None:
    reply = await client.get("/v1/devices/photon1/temp", headers=alice.headers)
    assert (reply.status_code, reply.json()) == (404, OFFLINE)


async def test_variable_reply(client: httpx.AsyncClient, alice: Caller, link_a: FakeLink) -> None:
    reply = await client.get(f"/v1/devices/{DEVICE_A.upper()}/temp", headers=alice.headers)
    assert reply.status_code == 200
    assert reply.json() == {
        "cmd": "VarReturn",
        "name": "temp",
        "result": 21.5,
        "coreInfo": {
            "last_app": "",
            "last_heard": "2024-05-06T07:09:00.005Z",
            "connected": True,
            "last_handshake_at": "2024-05-06T07:08:09.123Z",
            "deviceID": DEVICE_A,
            "product_id": 6,
        },
    }


@pytest.mark.parametrize(
    ("name", "result", "raw"),
    [("temp", 21.5, "21.5"), ("label", "hi", "hi"), ("on", True, "true"), ("count", -3, "-3")],
)
async def test_variable_types(
    client: httpx.AsyncClient,
    alice: Caller,
    link_a: FakeLink,
    name: str,
    result: object,
    raw: str,
) -> None:
    reply = await client.get(f"/v1/devices/photon1/{name}", headers=alice.headers)
    assert reply.json()["result"] == result
    assert type(reply.json()["result"]) is type(result)
    reply = await client.get(f"/v1/devices/photon1/{name}?format=raw", headers=alice.headers)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    assert reply.text == raw


async def test_variable_nan_reads_as_null(
    client: httpx.AsyncClient, alice: Caller, link_a: FakeLink
) -> None:
    link_a.values["temp"] = math.nan
    reply = await client.get("/v1/devices/photon1/temp", headers=alice.headers)
    assert reply.status_code == 200
    assert reply.json()["result"] is None


async def test_unknown_variable(client: httpx.AsyncClient, alice: Caller, link_a: FakeLink) -> None:
    reply = await client.get("/v1/devices/photon1/nope", headers=alice.headers)
    assert (reply.status_code, reply.json()) == (404, {"ok": False, "error": "Variable not found"})


async def test_variable_timeout(client: httpx.AsyncClient, alice: Caller, link_a: FakeLink) -> None:
    link_a.fail_with = DeviceTimedOut("Timed out.")
    reply = await client.get("/v1/devices/photon1/temp", headers=alice.headers)
    assert (reply.status_code, reply.json()) == (408, {"ok": False, "error": "Timed out."})


async def test_variable_of_other_users_device(
    client: httpx.AsyncClient, alice: Caller, bob: Caller, router: Router, link_a: FakeLink
) -> None:
    reply = await client.get(f"/v1/devices/{DEVICE_A}/temp", headers=bob.headers)
    assert (reply.status_code, reply.json()) == (404, NOT_FOUND)
