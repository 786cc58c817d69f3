"""Request bodies read only up to a cap, and only a little of one before auth.

A 400 MB form with no token once took the server from 131 MB to 893 MB before it answered
401: the form was parsed whole to look for a legacy ``access_token`` field. Every body is
now counted as it arrives, against a cap that starts small (enough for a login, a sign-up
or a legacy form token) and that a route raises once it knows who is calling: any
authenticated caller gets ``api.max_body_bytes``, a firmware upload its slot's size. A
body over the cap is refused with a 413 before more of it is kept; a declared
Content-Length far over the cap is refused before any of it is read.

A body a little over its cap (up to ``LINGER_BYTES`` more) is read on and thrown away
before the 413 goes out: a server that closes with unread bytes makes the kernel send a
reset, and a client still writing (particle-cli uploading a binary one slot too big) would
see the reset instead of the answer. A body further over is not read on: its 413 closes
the connection.

Uvicorn and Starlette have no per-request body cap (Starlette's form parser caps parts
and fields, not bytes), so the count sits in the ASGI ``receive`` the app reads through.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cyan.api.errors import ApiError

_SCOPE_KEY = "cyan.body_limit"
LINGER_BYTES = 1024 * 1024


class PayloadTooLarge(ApiError):
    http_status = 413

    def __init__(self, limit: int, unread: bool = False) -> None:
        super().__init__(f"The request body is larger than the {limit} bytes this request may send")
        self.unread = unread

    def headers(self) -> dict[str, str] | None:
        # With body bytes still to come the connection must end with the answer: kept open,
        # the HTTP server would read the rest (400 MB, through its parser) to find the next
        # request, and a client that keeps sending would hold the loop.
        return {"Connection": "close"} if self.unread else None


@dataclass(slots=True)
class _Allowance:
    limit: int
    declared: int | None  # Content-Length, when the client sent one
    received: int = 0
    more: bool = True  # the client has more of the body to send


def allow_body(request: Request, limit: int) -> None:
    """Let this request's body be up to ``limit`` bytes (from the point of the call on:
    bytes already read stay counted)."""
    allowance = request.scope.get(_SCOPE_KEY)
    if isinstance(allowance, _Allowance):
        allowance.limit = limit


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, before_auth_bytes: int) -> None:
        self.app = app
        self.before_auth_bytes = before_auth_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", ())
        allowance = _Allowance(self.before_auth_bytes, _declared_length(headers))
        refused = _refusal(
            allowance.declared,
            headers,
            lambda: scope.get("query_string", b""),
            self.before_auth_bytes,
        )
        if refused is not None:
            # No token can raise this caller's cap: answered here, before routing, auth
            # and the app's middleware. (Under `cyan serve` the HTTP protocol refuses it
            # sooner still, api/serving.py; this is for any other ASGI server.)
            await JSONResponse(refused.body(), refused.http_status, refused.headers())(
                scope, receive, send
            )
            return
        scope[_SCOPE_KEY] = allowance

        async def counted_receive() -> Message:
            # Checked before each read, so a declared size over the cap is refused before
            # it is read and an undeclared (chunked) one at the first chunk past it. The
            # error is raised inside the app's read, where the app's error handlers answer.
            if allowance.declared is not None and allowance.declared > allowance.limit:
                await _refuse(allowance, receive)
            if allowance.received > allowance.limit:
                await _refuse(allowance, receive)
            message = await receive()
            if message["type"] == "http.request":
                allowance.received += len(message.get("body", b""))
                allowance.more = bool(message.get("more_body", False))
                if allowance.received > allowance.limit:
                    await _refuse(allowance, receive)
            return message

        await self.app(scope, counted_receive, send)


async def _refuse(allowance: _Allowance, receive: Receive) -> NoReturn:
    """Raise the 413, after throwing away what is left of a body that is only a little
    too big (see the module's docstring)."""
    declared_over = allowance.declared is not None and (
        allowance.declared - allowance.limit > LINGER_BYTES
    )
    budget = 0 if declared_over else LINGER_BYTES
    while allowance.more and budget > 0:
        message = await receive()
        if message["type"] != "http.request":
            break
        budget -= len(message.get("body", b""))
        allowance.more = bool(message.get("more_body", False))
    raise PayloadTooLarge(allowance.limit, unread=allowance.more)


Headers = Sequence[tuple[bytes, bytes]]


def refused_before_reading(
    headers: Headers, query_string: Callable[[], bytes], before_auth_bytes: int
) -> PayloadTooLarge | None:
    """The 413 for a request whose declared body is over the pre-auth cap and which
    carries no token that could raise it (header or query), or None. ``query_string`` is
    asked for only when the declared length is over the cap."""
    return _refusal(_declared_length(headers), headers, query_string, before_auth_bytes)


def _refusal(
    declared: int | None,
    headers: Headers,
    query_string: Callable[[], bytes],
    before_auth_bytes: int,
) -> PayloadTooLarge | None:
    if declared is None or declared <= before_auth_bytes:
        return None
    if _may_authenticate(headers, query_string):
        return None
    return PayloadTooLarge(before_auth_bytes, unread=True)


def _may_authenticate(headers: Headers, query_string: Callable[[], bytes]) -> bool:
    """An Authorization header or a token in the query: the route may raise the cap."""
    if b"access_token=" in query_string():
        return True
    return any(name == b"authorization" for name, _ in headers)


def _declared_length(headers: Headers) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # uvicorn refuses a malformed length before the app sees it
    return None
