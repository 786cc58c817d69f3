"""Socket options on both servers: quick ACKs to devices, no Nagle on the API.

Latency itself is measured in bench/calls.py (calls back to back against a device that
writes its ACK and its answer as two segments); these tests check that the options land
on real sockets, where the kernel reads them.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from cyan.driver.connection import quick_ack
from tests.system import LOOPBACK, running_cloud


class _Accepted(asyncio.Protocol):
    def __init__(self, accepted: asyncio.Future[asyncio.BaseTransport]) -> None:
        self._accepted = accepted

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._accepted.set_result(transport)


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="a Linux socket option")
async def test_quick_ack_leaves_delayed_ack_mode() -> None:
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[asyncio.BaseTransport] = loop.create_future()
    server = await loop.create_server(lambda: _Accepted(accepted), LOOPBACK, 0)
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        transport = await accepted
        sock = transport.get_extra_info("socket")
        # Delayed ACKs, as Linux has them on a request/answer connection ("pingpong").
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 0

        quick_ack(transport)

        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 1
    finally:
        writer.close()
        server.close()
        await server.wait_closed()


async def test_api_connections_have_nagle_off(tmp_path: Path) -> None:
    # uvicorn writes a response's head and body separately; with Nagle on, the body waits
    # for the client's delayed ACK of the head (40 ms a request on a kept-alive connection).
    async with running_cloud(tmp_path) as cloud:
        reply = await cloud.http.get("/v1/user")  # the client keeps the connection open
        assert reply.status_code == 200
        api = cloud.node._api
        assert api is not None
        connections = list(api.server_state.connections)
        assert connections
        for protocol in connections:
            sock = protocol.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
