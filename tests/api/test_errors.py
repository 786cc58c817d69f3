"""Every error is JSON, in one of the shapes errors.py promises, and never a stray 401."""

from __future__ import annotations

import logging
import re

import httpx
import pytest
from fastapi import FastAPI
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

from cyan.api.errors import BadRequest, InternalErrorMiddleware

from .conftest import DEVICE_BOB, Caller, FakeLink


async def test_unknown_route(client: httpx.AsyncClient) -> None:
    reply = await client.get("/v2/nothing")
    assert reply.status_code == 404
    assert reply.json() == {"ok": False, "error": "Not found"}
    assert reply.headers["content-type"] == "application/json"


async def test_wrong_method(client: httpx.AsyncClient, alice: Caller) -> None:
    reply = await client.patch("/v1/devices", headers=alice.headers)
    assert reply.status_code == 405
    assert reply.json() == {"ok": False, "error": "Method not allowed"}
    assert reply.headers["allow"] == "GET"


async def test_validation_error_is_400(app: FastAPI, client: httpx.AsyncClient) -> None:
    async def needs_int(n: int) -> dict[str, int]:
        return {"n": n}

    app.add_api_route("/test/int/{n}", needs_int)
    reply = await client.get("/test/int/abc")
    assert reply.status_code == 400
    body = reply.json()
    assert body["ok"] is False
    assert body["error"].startswith("Invalid request: path.n: ")


async def test_api_error_shape(app: FastAPI, client: httpx.AsyncClient) -> None:
    async def refuse() -> None:
        raise BadRequest("Nope")

    app.add_api_route("/test/refuse", refuse)
    reply = await client.get("/test/refuse")
    assert (reply.status_code, reply.json()) == (400, {"ok": False, "error": "Nope"})


async def test_unexpected_exception_is_logged_500(
    app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode() -> None:
        raise RuntimeError("kaboom")

    app.add_api_route("/test/explode", explode)
    with caplog.at_level(logging.ERROR, logger="cyan.api.errors"):
        reply = await client.get("/test/explode")
    assert reply.status_code == 500
    assert reply.json() == {"ok": False, "error": "Internal error"}
    assert reply.headers["content-type"] == "application/json"
    assert "kaboom" not in reply.text
    assert "unexpected error serving GET /test/explode" in caplog.text
    assert "RuntimeError: kaboom" in caplog.text


async def test_client_disconnect_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    async def leaving_app(scope: Scope, receive: Receive, send: Send) -> None:
        raise ClientDisconnect()

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "method": "GET", "path": "/x"}
    with caplog.at_level(logging.ERROR, logger="cyan.api.errors"):
        await InternalErrorMiddleware(leaving_app)(scope, receive, send)
    assert sent == []  # nobody to answer
    assert caplog.records == []


async def test_invalid_json_body(client: httpx.AsyncClient, alice: Caller) -> None:
    reply = await client.post(
        "/v1/devices/events",
        content=b"{not json",
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert reply.status_code == 400
    assert reply.json() == {"ok": False, "error": "Request body is not valid JSON"}


async def test_json_body_must_be_an_object(client: httpx.AsyncClient, alice: Caller) -> None:
    reply = await client.post("/v1/devices/events", json=["x"], headers=alice.headers)
    assert reply.status_code == 400
    assert reply.json() == {"ok": False, "error": "Request body must be a JSON object"}


async def test_unsupported_body_type(client: httpx.AsyncClient, alice: Caller) -> None:
    reply = await client.post(
        "/v1/devices/events",
        content=b"name=x",
        headers={**alice.headers, "Content-Type": "text/csv"},
    )
    assert reply.status_code == 400
    assert reply.json() == {"ok": False, "error": "Unsupported request body type text/csv"}


async def test_untyped_body_is_sniffed(client: httpx.AsyncClient, alice: Caller) -> None:
    for body in (b'{"name": "a"}', b"name=a"):
        reply = await client.post(
            "/v1/devices/events", content=body, headers={**alice.headers, "Content-Type": ""}
        )
        assert (reply.status_code, reply.json()) == (200, {"ok": True})


async def test_no_error_but_auth_is_401_or_mentions_tokens(
    client: httpx.AsyncClient, alice: Caller, bob: Caller, link_a: FakeLink
) -> None:
    """particle-cli logs the user out on either (rest-api.md §1.3)."""
    h = alice.headers
    failures = [
        await client.get("/nowhere", headers=h),
        await client.delete("/v1/devices/events", headers=h),
        await client.get("/v1/devices/missing", headers=h),
        await client.get(f"/v1/devices/{DEVICE_BOB}", headers=h),
        await client.get(f"/v1/devices/{DEVICE_BOB}/events", headers=h),
        await client.get("/v1/devices/photon1/nope", headers=h),
        await client.post("/v1/devices/photon1/nope", headers=h),
        await client.post("/v1/devices/photon1/led", json={"args": "x" * 2000}, headers=h),
        await client.post("/v1/devices/photon1/led", json={"args": {}}, headers=h),
        await client.get("/v1/devices/0123456789abcdef0123abcd/temp", headers=h),
        await client.post("/v1/devices/events", json={}, headers=h),
        await client.post("/v1/devices/events", json={"name": "x", "ttl": "soon"}, headers=h),
    ]
    for reply in failures:
        assert 400 <= reply.status_code < 500
        assert reply.status_code != 401
        body = reply.json()
        assert body["ok"] is False
        assert isinstance(body["error"], str)
        assert "access token" not in reply.text.lower()
        assert "error_description" not in body


async def test_openapi_document(client: httpx.AsyncClient) -> None:
    reply = await client.get("/openapi.json")
    assert reply.status_code == 200
    doc = reply.json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyQuery"}
    assert {
        "/v1/devices",
        "/v1/devices/{id_or_name}",
        "/v1/devices/{id_or_name}/{name}",
        "/v1/devices/events",
        "/v1/devices/events/{prefix}",
        "/v1/devices/{id_or_name}/events",
        "/v1/devices/{id_or_name}/events/{prefix}",
        "/v1/events",
        "/v1/events/{prefix}",
    } <= set(doc["paths"])
    assert {"get", "post"} <= set(doc["paths"]["/v1/devices/{id_or_name}/{name}"])
    # OpenAPI 3 forbids templates that differ only in parameter names.
    shapes = [re.sub(r"\{[^}]*\}", "{}", path) for path in doc["paths"]]
    assert len(shapes) == len(set(shapes))
