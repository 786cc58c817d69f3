"""Accounts and tokens: log in, who am I, token info and revocation, sign-up
(rest-api.md §1.3, §3.1, §10 items 2–4).

particle-cli logs in with POST /oauth/token and then reads GET /v1/user and
GET /v1/access_tokens/current; ``logout`` and ``token revoke`` send the two DELETEs.
Errors keep Particle's shapes (errors.py): OAuth bodies on /oauth/token,
``{"ok": false, "error": …}`` elsewhere, and 401 only for a failed authentication.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from cyan.api.auth import ApiContext, BearerToken, Context, CurrentUser, body_params
from cyan.api.errors import (
    ApiError,
    BadRequest,
    CredentialsRefused,
    InvalidClient,
    InvalidGrant,
    OAuthError,
    SignupDisabled,
    TokenInvalid,
    TokenNotFound,
    UnsupportedGrantType,
    error_response,
)
from cyan.api.limits import client_address
from cyan.api.shapes import iso
from cyan.store import AccountError, UserExists, UserRecord

router = APIRouter(tags=["accounts"])

# OAuth clients and their secrets. They are public (printed in the Particle docs and in
# every client's source), so they name the tool rather than prove anything: particle-cli
# sends particle-cli (rest-api.md §3.1), particle-api-js particle-api (§3.3), the docs'
# curl examples particle, and Cyan's own tools cyan. particle-cli before 3.48 (its legacy
# ApiClient, removed in 3.48.0: src/lib/api-client.js createAccessToken and sendOtp) sends
# its settings.clientId CLI2 with the secret client_secret_here; npm still installs such
# releases on Node 20 (3.43.1), where 3.48+ refuses to run.
CLIENTS = {
    "particle-cli": "particle-cli",
    "CLI2": "client_secret_here",
    "particle-api": "particle-api",
    "particle": "particle",
    "cyan": "cyan",
}

# particle-cli and api-js ask for 90 days (rest-api.md §3.1); used when a client sends none.
DEFAULT_LIFETIME_S = 7_776_000
# Longer than this is kept as "never expires": still no less than was asked, and clear of
# the calendar's end (Python's datetime stops at year 9999).
MAX_LIFETIME_S = 100 * 366 * 86_400

_BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="cyan", charset="UTF-8"'}
# RFC 6749 §5.1: a reply carrying a token must not be cached.
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _challenged(error: ApiError) -> JSONResponse:
    """``error`` as a 401 that asks for HTTP Basic (RFC 7235 §4.1 wants a challenge)."""
    return error_response(401, error.body(), _BASIC_CHALLENGE)


def _basic(request: Request) -> tuple[str, str] | None:
    """HTTP Basic credentials (RFC 7617), None if another scheme or none; ValueError if
    the header says Basic but holds no ``user:secret`` pair."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("malformed Basic credentials") from None
    user, colon, secret = decoded.partition(":")
    if not colon:
        raise ValueError("malformed Basic credentials")
    return user, secret


def _text(params: dict[str, Any], key: str) -> str | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise OAuthError(f"{key} must be a string")
    return value


def _client(request: Request, params: dict[str, Any]) -> str:
    """The authenticated OAuth client id, from Basic credentials or the body."""
    basic = _basic(request)  # ValueError reaches the caller, which answers invalid_client
    if basic is not None:
        # RFC 6749 §2.3.1: client credentials are form-encoded before Basic encoding.
        client_id, secret = unquote_plus(basic[0]), unquote_plus(basic[1])
    else:
        client_id = _text(params, "client_id") or ""
        secret = _text(params, "client_secret") or ""
    expected = CLIENTS.get(client_id)
    # compare_digest out of habit: these secrets are public anyway.
    if expected is None or not hmac.compare_digest(expected.encode(), secret.encode()):
        raise InvalidClient()
    return client_id


def _lifetime_s(params: dict[str, Any]) -> int:
    raw = params.get("expires_in")
    if raw is None or raw == "":
        return DEFAULT_LIFETIME_S
    # JSON may carry a number; a form always a string. bool is an int in Python: refuse it.
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise OAuthError("expires_in must be a whole number of seconds")
    try:
        lifetime = int(raw)
    except ValueError:
        raise OAuthError("expires_in must be a whole number of seconds") from None
    if lifetime < 0:
        raise OAuthError("expires_in cannot be negative")
    return lifetime


async def _checked_password(
    request: Request, context: ApiContext, username: str, password: str
) -> UserRecord | None:
    """The user, if the password is theirs; within the login limits (limits.py)."""
    context.limits.login(client_address(request.scope), username)
    user = await context.store.users.check_password(username, password)
    if user is None:
        context.limits.login_failed(username)
    else:
        context.limits.login_succeeded(username)
    return user


@router.post("/oauth/token", summary="Log in: trade a username and password for a token")
async def issue_token(request: Request, context: Context) -> JSONResponse:
    params = await body_params(request)
    try:
        client_id = _client(request, params)
    except (InvalidClient, ValueError):
        error = InvalidClient()
        if request.headers.get("authorization", "").lower().startswith("basic"):
            # RFC 6749 §5.2: a client that tried Basic gets a Basic challenge.
            return _challenged(error)
        raise error from None
    grant_type = _text(params, "grant_type")
    if grant_type is None:
        raise OAuthError("grant_type is required")
    if grant_type != "password":
        # Refresh and MFA grants (rest-api.md §1.3 item 5) are not offered: tokens live as
        # long as asked, and Cyan has no second factor to ask for.
        raise UnsupportedGrantType(f"Grant type {grant_type} is not supported")
    username, password = _text(params, "username"), _text(params, "password")
    if username is None or password is None:
        raise OAuthError("username and password are required")
    lifetime = _lifetime_s(params)
    user = await _checked_password(request, context, username, password)
    if user is None:
        raise InvalidGrant()
    if lifetime == 0 or lifetime > MAX_LIFETIME_S:
        # The reply says 0 too: particle-cli then asks /current, gets null and stores its
        # "never expires" sentinel (rest-api.md §1.3 item 1).
        lifetime, expires_at = 0, None
    else:
        expires_at = datetime.now(UTC) + timedelta(seconds=lifetime)
    token = await context.store.tokens.create(user.id, client_id=client_id, expires_at=expires_at)
    body = {
        "token_type": "bearer",
        "access_token": token,
        "expires_in": lifetime,
        # Clients expect one; no refresh grant takes it back, so it is random and unkept.
        "refresh_token": secrets.token_hex(20),
    }
    return JSONResponse(body, headers=_NO_STORE)


@router.get("/v1/user", summary="The caller's account")
async def get_user(user: CurrentUser) -> dict[str, Any]:
    # `whoami` and `login --token` need only username (rest-api.md §3.1); the rest keeps
    # api-js's UserInfo type whole.
    return {
        "username": user.username,
        "subscription_ids": [],
        "account_info": {},
        "mfa": {"enabled": False},
    }


def _forget(context: ApiContext, token: str) -> None:
    """Drop a revoked token from the API's cache, so the next request with it gets 401,
    and end the event streams it opened."""
    context.users.discard_where(lambda key, _user: key == token)
    context.streams.revoked(token)


# /current is declared before /{token}, or a request for it would revoke a token "current".
@router.get("/v1/access_tokens/current", summary="The caller's token: expiry and client")
async def current_token(context: Context, user: CurrentUser, token: BearerToken) -> dict[str, Any]:
    assert token is not None  # CurrentUser has refused a request without one
    info = await context.store.tokens.info(token)
    if info is None:
        # Expired or revoked since the user lookup was cached (cache.py).
        raise TokenInvalid()
    return {
        "expires_at": iso(info.expires_at),
        "client_id": info.client_id,
        "scopes": [],
        "orgs": [],
    }


@router.delete("/v1/access_tokens/current", summary="Revoke the caller's token (logout)")
async def revoke_current_token(
    context: Context, user: CurrentUser, token: BearerToken
) -> dict[str, Any]:
    assert token is not None
    await context.store.tokens.revoke(token)
    _forget(context, token)
    return {"ok": True}


@router.delete("/v1/access_tokens/{token}", summary="Revoke a token; knowing it is the proof")
async def revoke_token(context: Context, token: str) -> dict[str, Any]:
    # No Authorization header here: particle-cli and api-js send none (rest-api.md §2).
    if not await context.store.tokens.revoke(token):
        raise TokenNotFound()
    _forget(context, token)
    return {"ok": True}


@router.get("/v1/access_tokens", summary="List the user's tokens (HTTP Basic, legacy)")
async def list_tokens(request: Request, context: Context) -> Any:
    try:
        credentials = _basic(request)
    except ValueError:
        credentials = None
    user = None if credentials is None else await _checked_password(request, context, *credentials)
    if user is None:
        return _challenged(CredentialsRefused())
    # Only the start of each token's sha256 can be shown: Cyan keeps hashes, never the
    # tokens themselves, so a stolen database holds no usable token.
    return [
        {"token": f"{info.token_id}…", "expires_at": iso(info.expires_at), "client": info.client_id}
        for info in await context.store.tokens.all(user.id)
    ]


@router.post("/v1/users", summary="Sign up (when the server allows it)")
async def sign_up(request: Request, context: Context) -> dict[str, Any]:
    if not context.settings.allow_signup:
        raise SignupDisabled()
    params = await body_params(request)
    username, password = params.get("username"), params.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise BadRequest("username and password are required")
    try:
        await context.store.users.add(username, password)
    except UserExists:
        raise BadRequest("That username is taken") from None
    except AccountError as exc:
        raise BadRequest(exc.message) from None
    return {"ok": True}
