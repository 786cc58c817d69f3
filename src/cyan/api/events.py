"""Events: publishing through the API and the server-sent event streams (rest-api.md §5).

Stream routes (all GET, ``?nonce=`` ignored, §5 "Request"):

    /v1/events[/{prefix}]                          FIREHOSE: public events + the caller's
    /v1/devices/events[/{prefix}]                  MINE: the caller's events (particle-cli)
    /v1/devices/{id_or_name}/events[/{prefix}]     DEVICE: one of the caller's devices

These must be registered before the device variable/function routes, or
``/v1/devices/events`` would read as device "events" (§10 item 5); a variable named
``events`` is therefore unreachable, as on the real cloud. Prefixes arrive percent-encoded
(``spark%2Fstatus``); the server decodes the path, so ``{prefix:path}`` takes the slashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, field_validator
from starlette.types import Receive, Send
from starlette.types import Scope as AsgiScope

from cyan.api.auth import ApiContext, BearerToken, Context, CurrentUser, body_params
from cyan.api.bodies import parse_body
from cyan.api.devices import resolve_device
from cyan.api.limits import client_address
from cyan.api.shapes import sse_event
from cyan.bus import Scope, Subscription, SubscriptionEnded
from cyan.bus.events import CloudEvent
from cyan.protocol.limits import EVENT_NAME_BYTES, LARGE
from cyan.store import UserRecord

router = APIRouter(tags=["events"])

# Published events: a 64-byte name, as in every Device OS, and the most data any device
# takes (protocol/limits.py); a subscribed device whose release takes less is not sent
# an event too big for it.
MAX_EVENT_DATA_BYTES = LARGE.event_data_bytes
# Particle always reports 60 s; a client may send another value, which is kept.
DEFAULT_TTL_S = 60

_STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    # Tells an nginx reverse proxy not to buffer the stream: a buffered stream looks idle to
    # particle-api-js, which drops it after 15 s without bytes (rest-api.md §5).
    "X-Accel-Buffering": "no",
}
_OPENED = b":ok\n\n"
# A comment line; the client's parser ignores it, and any byte resets its 15 s idle timer.
_KEEPALIVE = b":\n"


@dataclass(frozen=True, slots=True)
class StreamCaller:
    """Who opens a stream: their address (limits.py), account and token (stream_guard.py)."""

    address: str
    user: UserRecord
    token: str


async def _stream_caller(request: Request, user: CurrentUser, token: BearerToken) -> StreamCaller:
    assert token is not None  # CurrentUser has refused a request without one
    return StreamCaller(client_address(request.scope), user, token)


Caller = Annotated[StreamCaller, Depends(_stream_caller)]


class EventStreamResponse(StreamingResponse):
    """An event stream that notices its client leave, without Starlette's task group.

    Behind uvicorn (ASGI spec 2.3) Starlette streams the body and listens for the
    disconnect in an anyio task group, and ends it by cancelling one of the two: the
    cancellation's exceptions, scopes and tasks are cyclic garbage. 3,000 clients that
    left together left about 240,000 objects to one full GC pass, 0.4 s with the loop
    stopped (bench/abuse.py). Here a plain task listens, and when the client leaves calls
    ``left``, which ends the stream's subscription: the body returns by itself and
    nothing is cancelled. ``ended`` is called once the response is over, on the loop:
    as a Starlette background task a plain function would be run on a worker thread, and
    3,000 streams closing together queued 3,000 thread hand-offs (call p99 100 ms, up
    from 4, in bench/abuse.py's quiet phase after the streams).
    """

    def __init__(
        self,
        content: AsyncIterator[bytes],
        left: Callable[[], None],
        *,
        headers: dict[str, str],
        ended: Callable[[], None],
    ) -> None:
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self._left = left
        self._ended = ended

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        async def listen() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            self._left()

        listener = asyncio.get_running_loop().create_task(listen())
        try:
            await self.stream_response(send)
        finally:
            self._ended()
            if not listener.done():  # the stream ended first (dropped as too slow)
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener


@dataclass(slots=True)
class _StreamState:
    subscription: Subscription | None = None
    gone: bool = False  # the client left

    def left(self) -> None:
        self.gone = True
        if self.subscription is not None:
            self.subscription.close()


def _event_stream(
    context: ApiContext,
    caller: StreamCaller,
    *,
    scope: Scope,
    prefix: str | None = None,
    device_id: str | None = None,
) -> EventStreamResponse:
    keepalive_s = context.settings.sse_keepalive_s
    bus = context.bus
    # Counted before the stream starts, so that a refusal is a plain JSON 429.
    closed = context.limits.open_stream(caller.address)
    state = _StreamState()

    async def body() -> AsyncIterator[bytes]:
        # Subscribing inside the generator, before ":ok" is yielded: an event published
        # once the client has seen ":ok" is never missed, and a stream that never starts
        # leaves no subscription behind. The server cancels the generator when the client
        # goes away, and ``finally`` releases the subscription.
        sub = bus.subscribe(
            prefix=prefix or None,
            device_id=device_id,
            owner_id=caller.user.id,
            scope=scope,
            max_bytes=context.settings.stream_buffer_bytes,
        )
        state.subscription = sub
        if state.gone:  # the client left before the stream began
            sub.close()
        watched = context.streams.watch(caller.token, sub)
        try:
            yield _OPENED
            while True:
                try:
                    event = await sub.receive(keepalive_s)
                except SubscriptionEnded:
                    # Closed or dropped as too slow: ending the response makes the client
                    # reconnect 2 s later (rest-api.md §5, "Reconnect on close").
                    return
                if event is None:
                    yield _KEEPALIVE
                    continue
                frame = sse_event(event)
                if frame is not None:
                    yield frame
        finally:
            context.streams.unwatch(watched)
            sub.close()
            closed()

    # Also after the response, for a stream whose body never started (closed() is idempotent).
    return EventStreamResponse(body(), state.left, headers=_STREAM_HEADERS, ended=closed)


@router.get("/v1/events", summary="Stream public events and the caller's own")
async def stream_firehose(context: Context, caller: Caller) -> EventStreamResponse:
    return _event_stream(context, caller, scope=Scope.FIREHOSE)


@router.get("/v1/events/{prefix:path}", summary="Stream public and own events by name prefix")
async def stream_firehose_prefix(
    context: Context, caller: Caller, prefix: str
) -> EventStreamResponse:
    return _event_stream(context, caller, scope=Scope.FIREHOSE, prefix=prefix)


@router.get("/v1/devices/events", summary="Stream the caller's events")
async def stream_mine(context: Context, caller: Caller) -> EventStreamResponse:
    return _event_stream(context, caller, scope=Scope.MINE)


@router.get("/v1/devices/events/{prefix:path}", summary="Stream the caller's events by prefix")
async def stream_mine_prefix(context: Context, caller: Caller, prefix: str) -> EventStreamResponse:
    return _event_stream(context, caller, scope=Scope.MINE, prefix=prefix)


@router.get("/v1/devices/{id_or_name}/events", summary="Stream one device's events")
async def stream_device(context: Context, caller: Caller, id_or_name: str) -> EventStreamResponse:
    # Checked before the stream starts, so that a wrong device is a plain JSON 404.
    record = await resolve_device(context, caller.user, id_or_name)
    return _event_stream(context, caller, scope=Scope.DEVICE, device_id=record.id)


@router.get(
    "/v1/devices/{id_or_name}/events/{prefix:path}",
    summary="Stream one device's events by name prefix",
)
async def stream_device_prefix(
    context: Context, caller: Caller, id_or_name: str, prefix: str
) -> EventStreamResponse:
    record = await resolve_device(context, caller.user, id_or_name)
    return _event_stream(context, caller, scope=Scope.DEVICE, device_id=record.id, prefix=prefix)


class PublishRequest(BaseModel):
    """POST /v1/devices/events, as JSON (particle-cli, api-js) or a form (curl -d)."""

    # Validated even when missing, so that its absence gets Particle's sentence.
    name: str = Field(default="", validate_default=True)
    data: str | None = None
    private: bool = True
    ttl: int = DEFAULT_TTL_S

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: object) -> str:
        if not isinstance(value, str) or not value:
            raise ValueError("Event name is required")
        if len(value.encode()) > EVENT_NAME_BYTES:
            raise ValueError(f"Event name is longer than {EVENT_NAME_BYTES} bytes")
        if "\n" in value or "\r" in value:
            raise ValueError("Event name must not contain line breaks")
        return value

    @field_validator("data", mode="before")
    @classmethod
    def _data(cls, value: object) -> str | None:
        if value is None:
            return None
        # api-js passes ``data`` through JSON as given; keep non-strings as their JSON text.
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        if len(text.encode()) > MAX_EVENT_DATA_BYTES:
            raise ValueError(f"Event data is longer than {MAX_EVENT_DATA_BYTES} bytes")
        return text

    @field_validator("private", mode="before")
    @classmethod
    def _private(cls, value: object) -> bool:
        # Events are private unless the client says ``private: false``. particle-cli never
        # sends the field and api-js only when asked (rest-api.md §3.2 `publish`, §4), and
        # the real cloud has made every event private by default since public events were
        # deprecated; a public default would put every `particle publish` on everyone's
        # /v1/events.
        if value is None:
            return True
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "false", "0"):
            return value.lower() in ("true", "1")
        raise ValueError("private must be true or false")

    @field_validator("ttl", mode="before")
    @classmethod
    def _ttl(cls, value: object) -> int:
        if value is None or value == "":
            return DEFAULT_TTL_S
        if isinstance(value, str):  # a form's text, read as int() reads it ("+5", " 5")
            try:
                value = int(value)
            except ValueError:
                raise ValueError("ttl must be a whole number of seconds") from None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError("ttl must be a whole number of seconds")
        return value


@router.post("/v1/devices/events", summary="Publish an event")
async def publish_event(request: Request, context: Context, user: CurrentUser) -> JSONResponse:
    body = parse_body(PublishRequest, await body_params(request))
    event = CloudEvent(
        name=body.name,
        data=body.data,
        ttl=body.ttl,
        public=not body.private,
        published_at=datetime.now(UTC),
        device_id=None,
        owner_id=user.id,
    )
    # Through the router, so that the caller's devices subscribed to the name get it too.
    context.router.publish(event)
    return JSONResponse({"ok": True})
