"""The function call and variable read served outside FastAPI (api/hot.py).

What they answer is tested with every other route (test_devices.py, test_auth.py,
test_limits.py, test_bodies.py all reach them through the app); here: that exactly these
two routes take the short way, that every other path still reaches FastAPI, and that the
short way keeps the token rules, limits and error shapes.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from cyan.api import create_app
from cyan.api.auth import current_user
from cyan.api.errors import Forbidden
from cyan.api.hot import hot_route
from cyan.bus import EventBus
from cyan.cloud.router import Router
from cyan.settings import ApiSettings
from cyan.store import Store
from tests.api.conftest import DEVICE_A, Caller, FakeLink


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/v1/devices/photon1/led", ("photon1", "led")),
        ("GET", f"/v1/devices/{DEVICE_A}/temp", (DEVICE_A, "temp")),
        ("GET", "/v1/devices/a b/x y", ("a b", "x y")),
        ("PUT", "/v1/devices/photon1/led", None),
        ("HEAD", "/v1/devices/photon1/temp", None),
        ("DELETE", "/v1/devices/photon1/led", None),
        ("GET", "/v1/devices/photon1", None),
        ("GET", "/v1/devices/photon1/", None),
        ("GET", "/v1/devices//temp", None),
        ("GET", "/v1/devices/photon1/temp/", None),
        ("GET", "/v1/devices/photon1/events", None),
        ("GET", "/v1/devices/events/temp", None),
        ("GET", "/v1/devices/photon1/events/temp", None),
        ("POST", "/v1/devices/events", None),
        ("GET", "/v1/devicesx/photon1/temp", None),
        ("GET", "/cyan/v1/devices/photon1/temp", None),
    ],
)
def test_only_calls_and_variable_reads_take_the_short_way(
    method: str, path: str, expected: tuple[str, str] | None
) -> None:
    assert hot_route({"type": "http", "method": method, "path": path}) == expected


@pytest.fixture
def app_without_fastapi_auth(store: Store, router: Router, bus: EventBus) -> FastAPI:
    """The app with FastAPI's auth dependency replaced by one that refuses everyone: a
    request that still succeeds did not go through FastAPI."""
    app = create_app(store=store, router=router, bus=bus, settings=ApiSettings())

    async def refuse() -> None:
        raise Forbidden("through FastAPI")

    app.dependency_overrides[current_user] = refuse
    return app


async def test_calls_and_reads_do_not_go_through_fastapi(
    app_without_fastapi_auth: FastAPI, alice: Caller, link_a: FakeLink
) -> None:
    transport = httpx.ASGITransport(app=app_without_fastapi_auth)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        call = await client.post(
            "/v1/devices/photon1/led", data={"arg": "on"}, headers=alice.headers
        )
        read = await client.get("/v1/devices/photon1/temp", headers=alice.headers)
        other = await client.get("/v1/devices/photon1", headers=alice.headers)
    assert (call.status_code, call.json()["return_value"]) == (200, 2)
    assert (read.status_code, read.json()["result"]) == (200, 21.5)
    assert (other.status_code, other.json()) == (403, {"ok": False, "error": "through FastAPI"})


@pytest.mark.parametrize(
    ("place", "expected_status"),
    [("header", 200), ("query", 200), ("form", 200), ("none", 401), ("wrong", 401)],
)
async def test_the_short_way_reads_the_token_where_fastapi_did(
    client: httpx.AsyncClient, alice: Caller, link_a: FakeLink, place: str, expected_status: int
) -> None:
    token = "not-a-token" if place == "wrong" else alice.token
    headers = {"Authorization": f"Bearer {token}"} if place in ("header", "wrong") else {}
    params = {"access_token": token} if place == "query" else {}
    data = {"arg": "on", **({"access_token": token} if place == "form" else {})}
    reply = await client.post("/v1/devices/photon1/led", headers=headers, params=params, data=data)
    assert reply.status_code == expected_status
    if expected_status == 401:
        assert reply.json()["error"] in ("invalid_request", "invalid_token")
        assert reply.headers["www-authenticate"].startswith("Bearer")
    else:
        assert link_a.calls == [("led", "on")]


async def test_a_bearer_token_wins_over_one_in_the_form(
    client: httpx.AsyncClient, alice: Caller, link_a: FakeLink
) -> None:
    reply = await client.post(
        "/v1/devices/photon1/led",
        headers=alice.headers,
        data={"arg": "on", "access_token": "someone-elses"},
    )
    assert reply.status_code == 200


async def test_a_form_that_is_not_utf8_is_a_400(
    client: httpx.AsyncClient, alice: Caller, link_a: FakeLink
) -> None:
    reply = await client.post(
        "/v1/devices/photon1/led",
        headers={**alice.headers, "Content-Type": "application/x-www-form-urlencoded"},
        content=b"arg=\xff\xfe",
    )
    assert (reply.status_code, reply.json()) == (
        400,
        {"ok": False, "error": "Request body is not a valid form"},
    )
    assert link_a.calls == []


async def test_a_form_of_too_many_fields_is_a_400(
    client: httpx.AsyncClient, alice: Caller, link_a: FakeLink
) -> None:
    reply = await client.post(
        "/v1/devices/photon1/led",
        headers={**alice.headers, "Content-Type": "application/x-www-form-urlencoded"},
        content="&".join(f"f{i}=1" for i in range(1001)).encode(),
    )
    assert reply.status_code == 400
    assert link_a.calls == []


async def test_a_raw_variable_read_answers_plain_text(
    client: httpx.AsyncClient, alice: Caller, link_a: FakeLink
) -> None:
    reply = await client.get("/v1/devices/photon1/label?format=raw", headers=alice.headers)
    assert (reply.status_code, reply.text) == (200, "hi")
    assert reply.headers["content-type"].startswith("text/plain")
