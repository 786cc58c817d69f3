"""Who is calling: the app's shared parts, request parameters, and bearer-token auth.

A token may come three ways (rest-api.md §2, "Auth" and "Legacy token placement"):
``Authorization: Bearer <token>`` (what particle-cli and particle-api-js send),
``?access_token=`` in the query, or ``access_token=`` in a form-urlencoded body (older
clients and the Particle docs' curl examples). The header wins when several are present,
and the body is read for a token only when neither header nor query has one, and then only
as far as ``api.max_body_before_auth_bytes`` (body_limit.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer

from cyan.api.body_limit import allow_body
from cyan.api.cache import TtlCache
from cyan.api.errors import BadRequest, TokenInvalid, TokenMissing
from cyan.api.limits import ApiLimits
from cyan.api.stream_guard import StreamGuard
from cyan.bus import EventBus
from cyan.cloud.router import Router
from cyan.settings import ApiSettings

if TYPE_CHECKING:
    from cyan.cloud.flash import Flasher
from cyan.store import DeviceRecord, Store, UserRecord

# See cache.py for why a few seconds fresh, and why then served stale while refreshed.
CACHE_TTL_S = 3.0
CACHE_STALE_S = 30.0
CACHE_MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class ServerIdentity:
    """What a device (or `cyan doctor`) needs to know this server by."""

    public_key_pem: str
    fingerprint: str
    device_port: int


@dataclass(frozen=True, slots=True)
class ApiContext:
    """The parts every route needs, stored on ``app.state.cyan`` by ``create_app``."""

    store: Store
    router: Router
    bus: EventBus
    settings: ApiSettings
    streams: StreamGuard
    limits: ApiLimits
    # None when the API runs without a gateway (some tests).
    server: ServerIdentity | None = None
    flasher: Flasher | None = None
    # token -> its user; only tokens the store accepted are kept.
    users: TtlCache[str, UserRecord] = field(
        default_factory=lambda: TtlCache(CACHE_TTL_S, CACHE_MAX_ENTRIES, stale_s=CACHE_STALE_S)
    )
    # (owner id, id or name as typed) -> device
    devices: TtlCache[tuple[int, str], DeviceRecord] = field(
        default_factory=lambda: TtlCache(CACHE_TTL_S, CACHE_MAX_ENTRIES, stale_s=CACHE_STALE_S)
    )

    def forget_device(self, device_id: str) -> None:
        """Drop cached lookups of a device the API just changed (rename, claim, release)."""
        self.devices.discard_where(lambda _key, record: record.id == device_id)


async def get_context(request: Request) -> ApiContext:
    # async: a plain function would be run on a worker thread for every request.
    context = request.app.state.cyan
    assert isinstance(context, ApiContext)
    return context


Context = Annotated[ApiContext, Depends(get_context)]

_FORM_TYPE = "application/x-www-form-urlencoded"
# As many as Starlette's form parser allowed.
MAX_FORM_FIELDS = 1000


async def body_params(request: Request) -> dict[str, Any]:
    """The request body as a dict: a JSON object or a urlencoded form; ``{}`` when empty.

    Forms are read with the standard library's ``parse_qsl``: Starlette's form parser
    (python-multipart) builds a parser and looks up its loggers for every form, a tenth of
    the server's CPU per function call sent as ``arg=…``, and a urlencoded body needs no
    more than ``parse_qsl`` (the body is capped before it is read, body_limit.py). The
    result is cached on the request because auth may read it before the route does.
    """
    cached = getattr(request.state, "body_params", None)
    if cached is not None:
        assert isinstance(cached, dict)
        return cached
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    params: dict[str, Any] = {}
    raw = await request.body()
    if not raw.strip():
        pass
    elif content_type == _FORM_TYPE:
        params = _form(raw)
    elif content_type == "application/json" or raw.lstrip().startswith(b"{"):
        params = _json_object(raw)
    elif content_type == "":
        # curl -d without -H sends a form with no Content-Type.
        params = _form(raw)
    else:
        raise BadRequest(f"Unsupported request body type {content_type}")
    request.state.body_params = params
    return params


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("Request body is not valid JSON") from exc
    if not isinstance(parsed, dict):
        raise BadRequest("Request body must be a JSON object")
    return parsed


def _form(raw: bytes) -> dict[str, Any]:
    """A urlencoded form; a repeated key keeps its last value (no Particle client repeats
    one)."""
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise BadRequest("Request body is not a valid form") from exc
    try:
        return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS))
    except ValueError as exc:
        raise BadRequest("Request body is not a valid form") from exc


# Declared as security schemes so that /openapi.json documents how to authenticate; both
# are non-raising so that the errors stay Particle-shaped (errors.py).
_bearer = HTTPBearer(auto_error=False, description="Particle access token")
_query_token = APIKeyQuery(
    name="access_token", auto_error=False, description="Deprecated token placement, still accepted"
)


async def request_token(request: Request) -> str | None:
    """The token this request carries, by the precedence in the module's docstring."""
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    query_token = request.query_params.get("access_token")
    if query_token:
        return query_token
    if request.headers.get("content-type", "").split(";")[0].strip().lower() == _FORM_TYPE:
        form_token = (await body_params(request)).get("access_token")
        if isinstance(form_token, str) and form_token:
            return form_token
    return None


async def _token(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    query_token: Annotated[str | None, Security(_query_token)],
) -> str | None:
    # The two security parameters document the token's places in /openapi.json; the token
    # itself is read by request_token, as the routes served outside FastAPI read it (hot.py).
    return await request_token(request)


# The request's own token, or None (for routes that act on it, like /v1/access_tokens/current).
BearerToken = Annotated[str | None, Depends(_token)]


async def authenticate(request: Request, context: ApiContext, token: str | None) -> UserRecord:
    """The token's user, or a 401 in the exact shape particle-cli expects (§1.3). A known
    caller may send a body of up to ``api.max_body_bytes`` (body_limit.py)."""
    if token is None:
        raise TokenMissing()
    user = await context.users.get_or_load(token, lambda: context.store.tokens.user_for(token))
    if user is None:
        raise TokenInvalid()
    allow_body(request, context.settings.max_body_bytes)
    return user


async def current_user(
    request: Request, context: Context, token: Annotated[str | None, Depends(_token)]
) -> UserRecord:
    return await authenticate(request, context, token)


CurrentUser = Annotated[UserRecord, Depends(current_user)]
