"""Every error the HTTP API sends, shaped the way Particle's clients read them.

    CyanError
    └── ApiError                    a refused request: {"ok": false, "error": message}
        ├── BadRequest              400
        ├── Forbidden               403, never 401 (see below)
        ├── NotAvailable            400, a Particle feature this server does not offer
        ├── TokenNotFound           404, DELETE of a token Cyan does not know
        ├── SignupDisabled          403, POST /v1/users with sign-up off
        ├── CredentialsRefused      401 + Basic challenge (legacy GET /v1/access_tokens)
        ├── AuthError               401, OAuth-style body: no usable access token
        │   ├── TokenMissing        {"error": "invalid_request", ...}
        │   └── TokenInvalid        {"error": "invalid_token", ...}
        └── OAuthError              POST /oauth/token refused (RFC 6749 §5.2 body)
            ├── InvalidGrant        400 invalid_grant
            ├── InvalidClient       401 invalid_client, the client failed to authenticate
            └── UnsupportedGrantType 400 unsupported_grant_type

``cyan.cloud.errors.CloudError`` (device requests) maps through ``http_status`` to the same
``{"ok": false, "error": …}`` body. Unknown routes, request validation failures and
unexpected exceptions also answer JSON: particle-api-js runs ``JSON.parse`` on every error
body and the CLI prints ``error_description``, then ``error`` (rest-api.md §2).

Why only auth errors may be 401 or mention "access token": particle-cli erases the user's
stored token on a 401, on ``invalid_token``/``expired_token``, or when ``error_description``
contains "access token" (rest-api.md §1.3, §10 item 4).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cyan.cloud.errors import CloudError
from cyan.errors import CyanError

log = logging.getLogger(__name__)


class ApiError(CyanError):
    """An HTTP request Cyan refuses; ``http_status`` and ``body()`` are what is sent."""

    http_status = 400

    def body(self) -> dict[str, Any]:
        return {"ok": False, "error": self.message}

    def headers(self) -> dict[str, str] | None:
        return None


class BadRequest(ApiError):
    http_status = 400


class AuthError(ApiError):
    """No usable token. Shaped like Particle's OAuth errors (rest-api.md §3.1)."""

    http_status = 401
    oauth_error = "invalid_token"

    def body(self) -> dict[str, Any]:
        return {"error": self.oauth_error, "error_description": self.message}

    def headers(self) -> dict[str, str] | None:
        # RFC 6750 §3: a 401 names the scheme it wants.
        return {"WWW-Authenticate": f'Bearer error="{self.oauth_error}"'}


class TokenMissing(AuthError):
    oauth_error = "invalid_request"

    def __init__(self) -> None:
        super().__init__("The access token was not found")


class TokenInvalid(AuthError):
    """Unknown, revoked or expired token; Particle uses one message for all three."""

    oauth_error = "invalid_token"

    def __init__(self) -> None:
        super().__init__("The access token provided is invalid.")


# Short texts for the HTTP errors Starlette raises itself (routing, methods).
_HTTP_ERROR_TEXTS = {
    404: "Not found",
    405: "Method not allowed",
}


def error_response(
    status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def refusal_response(exc: ApiError | CloudError) -> JSONResponse:
    """A refused request or a failed device request, as its JSON answer."""
    if isinstance(exc, ApiError):
        return error_response(exc.http_status, exc.body(), exc.headers())
    return error_response(exc.http_status, {"ok": False, "error": exc.message})


async def _refusal(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError | CloudError)
    return refusal_response(exc)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    # Never let a 401 escape from here: only AuthError may send one (§1.3).
    status = 400 if exc.status_code == 401 else exc.status_code
    text = _HTTP_ERROR_TEXTS.get(status)
    if text is None:
        text = exc.detail if isinstance(exc.detail, str) else "Bad request"
    return error_response(status, {"ok": False, "error": text}, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Particle answers 400 for a bad request (rest-api.md §2, "Official status codes");
    # FastAPI's default would be 422.
    problems = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err.get("loc", ()) if part != "body")
        problems.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", ""))
    return error_response(400, {"ok": False, "error": "Invalid request: " + "; ".join(problems)})


_INTERNAL_ERROR_BODY = json.dumps({"ok": False, "error": "Internal error"}).encode()


class InternalErrorMiddleware:
    """Turns an unexpected exception into a logged 500 with a JSON body.

    Starlette's own ``Exception`` handler re-raises after answering, so servers log the
    error twice and ASGI test clients see it raised; this middleware answers and stops.
    If the response had already started (an event stream), there is nothing to answer:
    the error is logged and the connection is left for the server to close.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:
            # The client left (mid-body, or mid-stream on ASGI 2.4 servers): nobody to answer.
            log.debug("client went away during %s %s", scope.get("method"), scope.get("path"))
        except Exception:
            log.exception("unexpected error serving %s %s", scope.get("method"), scope.get("path"))
            if started:
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(_INTERNAL_ERROR_BODY)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": _INTERNAL_ERROR_BODY})


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure to one of the JSON shapes above."""
    app.add_exception_handler(ApiError, _refusal)
    app.add_exception_handler(CloudError, _refusal)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(InternalErrorMiddleware)


class Forbidden(ApiError):
    # 403, never 401: particle-cli logs the user out on a 401 (rest-api.md §1.3).
    http_status = 403


class NotAvailable(ApiError):
    """A Particle feature that this server does not offer (yet)."""

    http_status = 400


# -- accounts (api/accounts.py) ------------------------------------------------------------


class OAuthError(ApiError):
    """A refused POST /oauth/token, in RFC 6749 §5.2's shape, which particle-cli prints
    from ``error_description`` (rest-api.md §3.1). Never 401 unless the client itself
    failed to authenticate, and never the words "access token" (§1.3)."""

    oauth_error = "invalid_request"

    def body(self) -> dict[str, Any]:
        return {"error": self.oauth_error, "error_description": self.message}


class InvalidGrant(OAuthError):
    oauth_error = "invalid_grant"

    def __init__(self) -> None:
        # Particle's own words (rest-api.md §3.1); the same for an unknown user.
        super().__init__("User credentials are invalid")


class InvalidClient(OAuthError):
    """Unknown OAuth client id or wrong secret: an authentication failure of the client,
    hence 401 (RFC 6749 §5.2); the route adds a Basic challenge when the client sent
    its credentials that way."""

    http_status = 401
    oauth_error = "invalid_client"

    def __init__(self) -> None:
        super().__init__("Client authentication failed")


class UnsupportedGrantType(OAuthError):
    oauth_error = "unsupported_grant_type"


class CredentialsRefused(ApiError):
    """HTTP Basic username:password missing or wrong on the legacy GET /v1/access_tokens.

    A real authentication failure, so 401; the route adds the Basic challenge. No Particle
    client of today calls this route (particle-cli dropped ``token list`` in 3.28).
    """

    http_status = 401

    def __init__(self) -> None:
        super().__init__("User credentials are invalid")


class TokenNotFound(ApiError):
    """DELETE /v1/access_tokens/:token for a token Cyan does not know: 404, and not the
    words "access token", or particle-cli would log its user out (rest-api.md §1.3)."""

    http_status = 404

    def __init__(self) -> None:
        super().__init__("Token not found")


class SignupDisabled(ApiError):
    """POST /v1/users while ``allow_signup`` is off: 403, the server refuses on purpose."""

    http_status = 403

    def __init__(self) -> None:
        super().__init__("Sign-up is disabled on this server")
