"""The API's HTTP protocol refuses a body no token could allow before the app sees it
(api/serving.py), under a real uvicorn on 127.0.0.1 and read over a bare socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from cyan.api.serving import protocol_for

CAP = 1024


class RecordingApp:
    """Answers 200 after reading the whole body; remembers each request it saw."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        self.seen.append(scope["path"])
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]}
        )
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
async def served() -> AsyncIterator[tuple[int, RecordingApp]]:
    app = RecordingApp()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        http=protocol_for(CAP),
        lifespan="off",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(5):
        # uvicorn offers only a flag for "listening", no event to wait on.
        while not server.started:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    yield server.servers[0].sockets[0].getsockname()[1], app
    server.should_exit = True
    await task


async def exchange(port: int, head: str, body: bytes = b"") -> bytes:
    """Sends a request and reads until the server closes or answers in full."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode() + body)
    try:
        async with asyncio.timeout(5):
            answer = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in answer.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            return answer + await reader.readexactly(length)
    finally:
        writer.close()


def post(headers: str = "", declared: int = 400 * 1024 * 1024, target: str = "/oauth/token") -> str:
    return f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n{headers}\r\n"


async def test_a_declared_body_over_the_cap_without_a_token_never_reaches_the_app(
    served: tuple[int, RecordingApp],
) -> None:
    port, app = served
    answer = await exchange(port, post(), b"a" * 65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in head.lower()
    assert json.loads(body) == {
        "ok": False,
        "error": f"The request body is larger than the {CAP} bytes this request may send",
    }
    assert app.seen == []


@pytest.mark.parametrize(
    "request_head",
    [
        post("Authorization: Bearer abc\r\n", declared=CAP + 1),
        post(declared=CAP + 1, target="/v1/devices/x/led?access_token=abc"),
        post(declared=CAP),
    ],
    ids=["bearer token", "query token", "at the cap"],
)
async def test_a_body_a_token_could_allow_goes_on_to_the_app(
    served: tuple[int, RecordingApp], request_head: str
) -> None:
    port, app = served
    declared = int(request_head.split("Content-Length: ")[1].split("\r\n")[0])
    answer = await exchange(port, request_head, b"a" * declared)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert len(app.seen) == 1
