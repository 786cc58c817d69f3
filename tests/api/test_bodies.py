"""Request body caps (api/body_limit.py) under uvicorn on loopback: a stranger's body is
refused before it is read, a known caller's is held to api.max_body_bytes."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI

from cyan.api import create_app
from cyan.bus import EventBus
from cyan.cloud.router import Router
from cyan.settings import ApiSettings
from cyan.store import Store
from tests.api.conftest import DEVICE_A, Caller

BEFORE_AUTH = 1024
MAX_BODY = 8192
# A failure bound: a server that reads the whole body would never answer in time.
ANSWER_BOUND_S = 30.0


@pytest.fixture
def app(store: Store, router: Router, bus: EventBus) -> FastAPI:
    settings = ApiSettings(max_body_bytes=MAX_BODY, max_body_before_auth_bytes=BEFORE_AUTH)
    return create_app(store=store, router=router, bus=bus, settings=settings)


async def open_socket(live_url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    address = urlsplit(live_url)
    assert address.hostname is not None
    assert address.port is not None
    return await asyncio.open_connection(address.hostname, address.port)


async def read_status(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    async with asyncio.timeout(ANSWER_BOUND_S):
        head = await reader.readuntil(b"\r\n\r\n")
        body = await reader.read(4096)
    return int(head.split(b" ", 2)[1]), body


async def test_a_declared_400_mb_form_without_a_token_is_refused_before_it_is_sent(
    live_url: str, alice: Caller
) -> None:
    reader, writer = await open_socket(live_url)
    writer.write(
        b"POST /v1/devices HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 400000000\r\n\r\nid=" + b"a" * 1000
    )
    await writer.drain()
    status, body = await read_status(reader)
    writer.close()
    assert status == 413
    assert b'"ok":false' in body
    assert str(BEFORE_AUTH).encode() in body


async def test_a_body_far_over_the_cap_ends_the_connection_with_its_413(
    live_url: str, alice: Caller
) -> None:
    """Kept open, the server would read the other 400 MB to find the next request."""
    reader, writer = await open_socket(live_url)
    writer.write(
        b"POST /oauth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 400000000\r\n\r\n" + b"a" * 65536
    )
    await writer.drain()
    async with asyncio.timeout(ANSWER_BOUND_S):
        head = await reader.readuntil(b"\r\n\r\n")
        while await reader.read(65536):  # the body, then the server's end of the connection
            pass
    writer.close()
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"\r\nconnection: close\r\n" in head.lower()


async def test_a_chunked_body_without_a_token_is_refused_past_the_cap(
    live_url: str, alice: Caller
) -> None:
    """No Content-Length to judge by: the server counts what arrives. The client sends a
    little more than the cap, all of which the server reads and throws away, so that the
    answer is not lost to a reset."""
    reader, writer = await open_socket(live_url)
    writer.write(
        b"POST /v1/devices HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"a" * 4096
    for _ in range(64):  # 256 KiB, within LINGER_BYTES past the cap
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    status, _ = await read_status(reader)
    writer.close()
    assert status == 413


async def test_a_legacy_form_token_still_works_within_the_cap(
    http: httpx.AsyncClient, alice: Caller
) -> None:
    reply = await http.put(
        f"/v1/devices/{DEVICE_A}", data={"access_token": alice.token, "notes": "n" * 500}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["notes"] == "n" * 500


async def test_a_known_caller_may_send_more_than_a_stranger_but_not_past_the_cap(
    http: httpx.AsyncClient, alice: Caller
) -> None:
    within = await http.put(
        f"/v1/devices/{DEVICE_A}", headers=alice.headers, json={"notes": "n" * (MAX_BODY - 100)}
    )
    assert within.status_code == 200, within.text
    over = await http.put(
        f"/v1/devices/{DEVICE_A}", headers=alice.headers, json={"notes": "n" * MAX_BODY}
    )
    assert over.status_code == 413
    assert over.json() == {
        "ok": False,
        "error": f"The request body is larger than the {MAX_BODY} bytes this request may send",
    }


async def test_a_wrong_token_gets_a_401_and_no_more_than_a_stranger(
    http: httpx.AsyncClient, alice: Caller
) -> None:
    reply = await http.put(
        f"/v1/devices/{DEVICE_A}",
        headers={"Authorization": "Bearer not-a-token"},
        json={"notes": "n" * 500},
    )
    assert reply.status_code == 401
    big = await http.post(
        "/v1/devices",
        headers={"Authorization": "Bearer not-a-token"},
        data={"id": "a" * (BEFORE_AUTH + 10)},
    )
    assert big.status_code == 401  # auth is judged before the body is read
