"""The two hottest routes, a function call and a variable read, served without FastAPI.

A call through FastAPI cost the server 0.56 ms of CPU at 1,000 calls/s, of which the
device's own round trip is a fraction: the rest is the framework per request (dependency
resolution, routing through every route's pattern, the exception and exit-stack layers).
These two routes are what a fleet's scripts and dashboards call thousands of times, so
this middleware takes them first and runs the same code the FastAPI routes run
(``devices.make_call``, ``devices.read_variable``, ``auth.authenticate``), answering
refusals with the same shapes (``errors.refusal_response``). Every other request, and
anything here that is not exactly ``GET|POST /v1/devices/<device>/<name>``, goes on to
FastAPI, which still declares both routes for /openapi.json.

It sits inside the request limits, the body caps and the internal-error answer
(app.py), so those apply here exactly as on every other route.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from cyan.api.auth import ApiContext, authenticate, request_token
from cyan.api.devices import make_call, read_variable
from cyan.api.errors import ApiError, refusal_response
from cyan.cloud.errors import CloudError

_PREFIX = "/v1/devices/"
# Paths of this shape that belong to other routes: /v1/devices/events/<prefix> and
# /v1/devices/<device>/events (events.py).
_NOT_HOT = "events"


def hot_route(scope: Scope) -> tuple[str, str] | None:
    """(device, name) when the request is a call or a variable read, else None."""
    if scope["method"] not in ("GET", "POST"):
        return None
    path: str = scope["path"]
    if not path.startswith(_PREFIX):
        return None
    device, slash, name = path[len(_PREFIX) :].partition("/")
    if not slash or not device or not name or "/" in name or _NOT_HOT in (device, name):
        return None
    return device, name


class HotRoutes:
    def __init__(self, app: ASGIApp, context: ApiContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = hot_route(scope) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        device, name = route
        request = Request(scope, receive)
        response: Response
        try:
            user = await authenticate(request, self.context, await request_token(request))
            if scope["method"] == "POST":
                response = await make_call(request, self.context, user, device, name)
            else:
                fmt = request.query_params.get("format")
                response = await read_variable(self.context, user, device, name, fmt)
        except (ApiError, CloudError) as refused:
            response = refusal_response(refused)
        await response(scope, receive, send)
