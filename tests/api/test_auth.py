"""Bearer-token auth: every way a token may arrive, and the two 401 shapes (rest-api.md §1.3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from cyan.store import Store

from .conftest import Caller

MISSING = {"error": "invalid_request", "error_description": "The access token was not found"}
INVALID = {"error": "invalid_token", "error_description": "The access token provided is invalid."}

# Every route that needs a user; none may answer before checking the token.
PROTECTED = [
    ("GET", "/v1/devices"),
    ("GET", "/v1/devices/photon1"),
    ("GET", "/v1/devices/photon1/temp"),
    ("POST", "/v1/devices/photon1/led"),
    ("POST", "/v1/devices/events"),
    ("GET", "/v1/events"),
    ("GET", "/v1/events/spark%2Fstatus"),
    ("GET", "/v1/devices/events"),
    ("GET", "/v1/devices/events/temp"),
    ("GET", "/v1/devices/photon1/events"),
    ("GET", "/v1/devices/photon1/events/temp"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_missing_token(client: httpx.AsyncClient, method: str, path: str) -> None:
    reply = await client.request(method, path)
    assert reply.status_code == 401
    assert reply.json() == MISSING
    assert reply.headers["www-authenticate"] == 'Bearer error="invalid_request"'


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_unknown_token(
    client: httpx.AsyncClient, alice: Caller, method: str, path: str
) -> None:
    reply = await client.request(method, path, headers={"Authorization": "Bearer nope"})
    assert reply.status_code == 401
    assert reply.json() == INVALID
    assert reply.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_expired_token(client: httpx.AsyncClient, store: Store, alice: Caller) -> None:
    expired = await store.tokens.create(
        alice.user.id, expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    reply = await client.get("/v1/devices", headers={"Authorization": f"Bearer {expired}"})
    assert reply.status_code == 401
    assert reply.json() == INVALID


async def test_revoked_token(client: httpx.AsyncClient, store: Store, alice: Caller) -> None:
    assert await store.tokens.revoke(alice.token)
    reply = await client.get("/v1/devices", headers=alice.headers)
    assert (reply.status_code, reply.json()) == (401, INVALID)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_bearer_header(client: httpx.AsyncClient, alice: Caller, scheme: str) -> None:
    reply = await client.get("/v1/devices", headers={"Authorization": f"{scheme} {alice.token}"})
    assert reply.status_code == 200


async def test_query_token(client: httpx.AsyncClient, alice: Caller) -> None:
    reply = await client.get("/v1/devices", params={"access_token": alice.token})
    assert reply.status_code == 200
    assert len(reply.json()) == 2


async def test_form_body_token(client: httpx.AsyncClient, alice: Caller) -> None:
    reply = await client.post(
        "/v1/devices/events", data={"name": "hello", "access_token": alice.token}
    )
    assert (reply.status_code, reply.json()) == (200, {"ok": True})


async def test_form_body_token_with_charset(client: httpx.AsyncClient, alice: Caller) -> None:
    reply = await client.post(
        "/v1/devices/events",
        content=f"name=hello&access_token={alice.token}",
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    assert (reply.status_code, reply.json()) == (200, {"ok": True})


async def test_bad_form_body_token(client: httpx.AsyncClient, alice: Caller) -> None:
    reply = await client.post("/v1/devices/events", data={"name": "x", "access_token": "bad"})
    assert (reply.status_code, reply.json()) == (401, INVALID)


async def test_json_body_token_is_not_read(client: httpx.AsyncClient, alice: Caller) -> None:
    # Particle documents the body placement for forms only (rest-api.md §2).
    reply = await client.post("/v1/devices/events", json={"name": "x", "access_token": alice.token})
    assert (reply.status_code, reply.json()) == (401, MISSING)


async def test_header_wins_over_query(client: httpx.AsyncClient, alice: Caller) -> None:
    reply = await client.get("/v1/devices", headers=alice.headers, params={"access_token": "stale"})
    assert reply.status_code == 200


@pytest.mark.parametrize("header", ["Basic YWxpY2U6c2VjcmV0", "Bearer", "Bearer ", "", "Token abc"])
async def test_unusable_authorization_header(
    client: httpx.AsyncClient, alice: Caller, header: str
) -> None:
    reply = await client.get("/v1/devices", headers={"Authorization": header})
    assert (reply.status_code, reply.json()) == (401, MISSING)


async def test_tokens_are_per_user(client: httpx.AsyncClient, alice: Caller, bob: Caller) -> None:
    mine = await client.get("/v1/devices", headers=alice.headers)
    theirs = await client.get("/v1/devices", headers=bob.headers)
    assert {d["id"] for d in mine.json()}.isdisjoint({d["id"] for d in theirs.json()})
