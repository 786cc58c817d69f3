"""The REST API and event streams that particle-cli and particle-api-js talk to."""

from __future__ import annotations

from cyan.api.app import create_app
from cyan.api.errors import ApiError, AuthError, BadRequest, TokenInvalid, TokenMissing

__all__ = ["ApiError", "AuthError", "BadRequest", "TokenInvalid", "TokenMissing", "create_app"]
