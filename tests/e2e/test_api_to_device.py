"""API → router → gateway → virtual device → API, for every function, variable and event path."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from tests.system import Cloud, running_cloud

# Device timeouts far above the bounds the tests wait, so an answer within a bound shows the
# request never went to the device and waited there (a hang check, not a speed test).
DEVICE_TIMEOUT_S = 60.0
HANG_BOUND_S = 10.0


@pytest.fixture
async def cloud(tmp_path: Path) -> Cloud:  # type: ignore[misc]
    async with running_cloud(
        tmp_path, function_timeout_s=DEVICE_TIMEOUT_S, variable_timeout_s=DEVICE_TIMEOUT_S
    ) as started:
        yield started


async def call(cloud: Cloud, device: str, function: str, argument: str | None) -> httpx.Response:
    body = {"args": argument} if argument is not None else {}
    return await cloud.http.post(f"/v1/devices/{device}/{function}", json=body)


@pytest.mark.parametrize(
    ("function", "argument", "expected"),
    [
        ("digitalwrite", "D7,HIGH", 1),
        ("digitalwrite", "D9,HIGH", -1),
        ("digitalwrite", "D7,MAYBE", -1),
        ("digitalread", "D7", 0),
        ("digitalread", "X1", -1),
        ("analogwrite", "A0,123", 1),
        ("analogwrite", "A0,999", -1),
        ("analogread", "D1", -1),
        ("digitalwrite", None, -1),
    ],
)
async def test_tinker_functions(
    cloud: Cloud, function: str, argument: str | None, expected: int
) -> None:
    device = await cloud.add_device(name="bench-photon")
    await cloud.online(device)
    response = await call(cloud, "bench-photon", function, argument)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": device.device_id,
        "name": "bench-photon",
        "last_app": "",
        "connected": True,
        "return_value": expected,
    }


async def test_write_then_read_back(cloud: Cloud) -> None:
    device = await cloud.add_device()
    await cloud.online(device)
    assert (await call(cloud, device.device_id, "digitalwrite", "D7,HIGH")).json()[
        "return_value"
    ] == 1
    assert (await call(cloud, device.device_id, "digitalread", "D7")).json()["return_value"] == 1
    assert (await call(cloud, device.device_id, "analogwrite", "A2,51")).json()["return_value"] == 1
    assert (await call(cloud, device.device_id, "analogread", "A2")).json()[
        "return_value"
    ] == 51 * 4095 // 255
    assert device.tinker.digital["D7"] == 1
    # Form bodies work as well as JSON (older clients, curl -d).
    form = await cloud.http.post(
        f"/v1/devices/{device.device_id}/digitalwrite", data={"arg": "D7,LOW"}
    )
    assert form.json()["return_value"] == 1
    assert device.tinker.digital["D7"] == 0


async def test_variables_of_each_type(cloud: Cloud) -> None:
    device = await cloud.add_device()
    await cloud.online(device)
    uptime = (await cloud.http.get(f"/v1/devices/{device.device_id}/uptime")).json()
    assert uptime["cmd"] == "VarReturn"
    assert uptime["name"] == "uptime"
    assert isinstance(uptime["result"], int)
    assert uptime["coreInfo"]["deviceID"] == device.device_id
    assert uptime["coreInfo"]["connected"] is True
    temperature = (await cloud.http.get(f"/v1/devices/{device.device_id}/temperature")).json()
    assert isinstance(temperature["result"], float)
    assert 20.0 <= temperature["result"] <= 23.0
    build = (await cloud.http.get(f"/v1/devices/{device.device_id}/build")).json()
    assert build["result"].startswith("cyan virtual Tinker")
    raw = await cloud.http.get(f"/v1/devices/{device.device_id}/build", params={"format": "raw"})
    assert raw.text == build["result"]


async def test_unknown_function_and_variable(cloud: Cloud) -> None:
    device = await cloud.add_device()
    await cloud.online(device)
    # Checked against the describe: a device never answers an unknown function (protocol.md
    # §7), so an answer here means the gateway did not ask it.
    function = await asyncio.wait_for(
        call(cloud, device.device_id, "selfdestruct", "now"), HANG_BOUND_S
    )
    variable = await asyncio.wait_for(
        cloud.http.get(f"/v1/devices/{device.device_id}/humidity"), HANG_BOUND_S
    )
    assert function.status_code == 404
    assert function.json() == {"ok": False, "error": "Function selfdestruct not found"}
    assert variable.status_code == 404
    assert variable.json() == {"ok": False, "error": "Variable not found"}


async def test_offline_device_answers_quickly(cloud: Cloud) -> None:
    device = await cloud.add_device(start=False)
    response = await asyncio.wait_for(
        call(cloud, device.device_id, "digitalread", "D7"), HANG_BOUND_S
    )
    assert response.status_code == 404
    assert response.json() == {"ok": False, "error": "Device is offline"}
    listed = (await cloud.http.get("/v1/devices")).json()
    assert [d["connected"] for d in listed if d["id"] == device.device_id] == [False]


async def test_device_listing_shows_live_state(cloud: Cloud) -> None:
    device = await cloud.add_device(name="kitchen")
    await cloud.online(device)
    listed = (await cloud.http.get("/v1/devices")).json()
    entry = next(d for d in listed if d["id"] == device.device_id)
    assert entry["connected"] is True
    assert entry["name"] == "kitchen"
    assert entry["platform_id"] == 6
    assert entry["product_id"] == 6
    assert entry["last_ip_address"] == "127.0.0.1"
    assert entry["last_heard"].endswith("Z")


async def read_sse(
    cloud: Cloud,
    path: str,
    names: set[str],
    timeout_s: float = 10.0,
    ready: asyncio.Event | None = None,
) -> dict[str, dict[str, object]]:
    """Open an SSE stream and collect the first event of each wanted name.

    ``ready`` is set once the stream is open, for tests that publish after subscribing.
    """
    found: dict[str, dict[str, object]] = {}
    async with cloud.http.stream("GET", path, params={"nonce": "0.5"}) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.aiter_lines()
        assert await asyncio.wait_for(anext(lines), 5) == ":ok"
        if ready is not None:
            ready.set()
        name = None
        deadline = time.monotonic() + timeout_s
        while names - found.keys():
            line = await asyncio.wait_for(anext(lines), max(deadline - time.monotonic(), 0.01))
            if line.startswith("event:"):
                name = line.partition(":")[2].strip()
            elif line.startswith("data:") and name in names:
                found.setdefault(name, json.loads(line.partition(":")[2]))
    return found


async def test_device_events_reach_every_stream(cloud: Cloud) -> None:
    device = await cloud.add_device(heartbeat_s=0.5)
    await cloud.online(device)
    for path in (
        "/v1/devices/events",
        f"/v1/devices/{device.device_id}/events",
        "/v1/devices/events/heart",
        f"/v1/devices/{device.device_id}/events/heart",
    ):
        events = await read_sse(cloud, path, {"heartbeat"})
        heartbeat = events["heartbeat"]
        assert heartbeat["coreid"] == device.device_id
        assert heartbeat["ttl"] == 60
        assert json.loads(str(heartbeat["data"]))["uptime"] >= 0
        assert str(heartbeat["published_at"]).endswith("Z")


async def test_public_firehose_carries_public_events_only(cloud: Cloud) -> None:
    device = await cloud.add_device(heartbeat_s=3600)
    await cloud.online(device)

    ready = asyncio.Event()

    async def publish_both() -> None:
        await ready.wait()
        device.publish("weather/private", "secret", public=False)
        device.publish("weather/public", "sunny", public=True)

    publisher = asyncio.create_task(publish_both())
    events = await read_sse(cloud, "/v1/events/weather", {"weather/public"}, ready=ready)
    await publisher
    assert events["weather/public"]["data"] == "sunny"
    # The private one was published first on the same ordered connection; had it been
    # delivered to the firehose it would have arrived before the public one.
    assert "weather/private" not in events


async def test_api_event_with_percent_encoded_prefix(cloud: Cloud) -> None:
    ready = asyncio.Event()

    async def publish() -> None:
        await ready.wait()
        await cloud.http.post("/v1/devices/events", json={"name": "spark/status", "data": "x"})

    publisher = asyncio.create_task(publish())
    events = await read_sse(cloud, "/v1/devices/events/spark%2Fstat", {"spark/status"}, ready=ready)
    await publisher
    assert events["spark/status"]["data"] == "x"
