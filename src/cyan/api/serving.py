"""The API under uvicorn, inside the node's own event loop.

Kept apart from node.py so that the node imports FastAPI, uvicorn and the routes only once
its gateway is listening (``Node._start_api``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Iterator

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cyan.api import create_app
from cyan.api.auth import ServerIdentity
from cyan.api.body_limit import refused_before_reading
from cyan.bus import EventBus
from cyan.cloud.flash import Flasher
from cyan.cloud.router import Router
from cyan.protocol import crypto
from cyan.settings import ApiSettings
from cyan.store import Store

# A tick of the wait for uvicorn's "started" flag, for which it offers no event.
_STARTED_POLL_S = 0.02


class _EarlyRefusingProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, refusing a body that no token could allow as soon as
    the request's head is parsed, in the same read.

    Through the ASGI app the same 413 (api/body_limit.py) went out a loop turn later,
    after uvicorn had started the request's task, and on loopback a client pushes about
    1.7 MB a millisecond: a flood of 400 MB bodies moved 1.4 MB per connection into the
    kernel before the close, three times what a bare server that refuses at once let in
    (bench/abuse.py, "body flood at a bystander"), and the traffic itself delayed every
    other client's calls. Hooks uvicorn's parser callbacks, which are not a public API:
    tests/api/test_serving.py holds it to its behaviour.
    """

    before_auth_bytes: int = 0
    _refused = False

    def on_headers_complete(self) -> None:
        refused = refused_before_reading(
            self.headers, lambda: httptools.parse_url(self.url).query or b"", self.before_auth_bytes
        )
        if refused is None:
            super().on_headers_complete()
            return
        self._refused = True
        body = json.dumps(refused.body()).encode()
        self.transport.write(
            b"HTTP/1.1 413 Request Entity Too Large\r\n"
            b"content-type: application/json\r\n"
            + b"content-length: %d\r\n" % len(body)
            + b"connection: close\r\n\r\n"
            + body
        )
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()


def protocol_for(before_auth_bytes: int) -> type[_EarlyRefusingProtocol]:
    return type(
        "EarlyRefusingProtocol", (_EarlyRefusingProtocol,), {"before_auth_bytes": before_auth_bytes}
    )


class ApiServer(uvicorn.Server):
    """uvicorn inside our own loop: signals belong to `cyan serve`, not to uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def start_api(
    *,
    store: Store,
    router: Router,
    bus: EventBus,
    settings: ApiSettings,
    flasher: Flasher,
    server_key: crypto.RsaPrivateKey,
    device_port: int,
) -> tuple[ApiServer, asyncio.Task[None]]:
    """The API listening on ``settings.host:settings.port``, and the task serving it.
    Raises OSError when the port cannot be had."""
    server_public = server_key.public_key()
    app = create_app(
        store=store,
        router=router,
        bus=bus,
        settings=settings,
        flasher=flasher,
        server=ServerIdentity(
            public_key_pem=crypto.public_key_pem(server_public).decode(),
            fingerprint=crypto.fingerprint(server_public),
            device_port=device_port,
        ),
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol_for(settings.max_body_before_auth_bytes),
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    # Bound here, not by uvicorn: uvicorn answers a taken port with sys.exit(1).
    listening = _listening_socket(settings.host, settings.port)
    server = ApiServer(config)
    task = asyncio.create_task(server.serve(sockets=[listening]), name="api")
    while not server.started:
        if task.done():
            task.result()  # surfaces the bind error
            raise RuntimeError("the API server stopped while starting")
        await asyncio.sleep(_STARTED_POLL_S)
    return server, task


def _listening_socket(host: str, port: int) -> socket.socket:
    """A TCP listening socket made with IPPROTO_TCP, not 0 (socket.create_server's).

    asyncio sets TCP_NODELAY only on accepted sockets whose protocol is IPPROTO_TCP
    (base_events._set_nodelay). Without it uvicorn's separate header and body writes wait
    on Nagle and the client's delayed ACK: 40 ms per keep-alive request on Linux.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    return sock
