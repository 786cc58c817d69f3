"""Fixtures for the account tests: a user with a password, an app that allows sign-up.

Imported by test_accounts.py; the shared parts (store, router, bus, client) come from
conftest.py.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from cyan.api import create_app
from cyan.bus import EventBus
from cyan.cloud.router import Router
from cyan.settings import ApiSettings
from cyan.store import Store, UserRecord

PASSWORD = "correct horse battery"
INVALID = {"error": "invalid_token", "error_description": "The access token provided is invalid."}
MISSING = {"error": "invalid_request", "error_description": "The access token was not found"}
BAD_CREDENTIALS = {"error": "invalid_grant", "error_description": "User credentials are invalid"}
BAD_CLIENT = {"error": "invalid_client", "error_description": "Client authentication failed"}
NINETY_DAYS = 7_776_000  # what particle-cli and api-js ask for (rest-api.md §3.1)
# ISO-8601 with milliseconds and Z, as Particle writes times (rest-api.md §5).
PARTICLE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
CLIENT_PAIRS = [
    ("particle-cli", "particle-cli"),
    ("particle-api", "particle-api"),
    ("particle", "particle"),
    ("cyan", "cyan"),
    ("CLI2", "client_secret_here"),  # particle-cli before 3.48
]


@dataclass(frozen=True)
class Account:
    user: UserRecord
    password: str

    @property
    def username(self) -> str:
        return self.user.username

    def login_form(self, **changes: Any) -> dict[str, Any]:
        """The form `particle login` posts (rest-api.md §3.1), with ``changes`` applied."""
        form = {
            "username": self.username,
            "password": self.password,
            "grant_type": "password",
            "client_id": "particle-cli",
            "client_secret": "particle-cli",
            "expires_in": "7776000",
        }
        form.update(changes)
        return {key: value for key, value in form.items() if value is not None}


# Named apart from their fixture names, so that the test module can import them without
# its test parameters shadowing an import (ruff F811).
@pytest.fixture(name="carol")
async def carol_fixture(store: Store) -> Account:
    return Account(await store.users.add("carol@example.com", PASSWORD), PASSWORD)


@pytest.fixture(name="signup_client")
async def signup_client_fixture(
    store: Store, router: Router, bus: EventBus
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app started with ``allow_signup`` on (`cyan serve --allow-signup`)."""
    app = create_app(store=store, router=router, bus=bus, settings=ApiSettings(allow_signup=True))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        yield c


async def log_in(client: httpx.AsyncClient, account: Account, **changes: Any) -> str:
    reply = await client.post("/oauth/token", data=account.login_form(**changes))
    assert reply.status_code == 200, reply.text
    token = reply.json()["access_token"]
    assert isinstance(token, str)
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_id(token: str) -> str:
    """How the API and CLI name a token they cannot show: the start of its sha256."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


async def expiry(client: httpx.AsyncClient, token: str) -> str | None:
    """``expires_at`` of GET /v1/access_tokens/current, as `particle login` reads it."""
    reply = await client.get("/v1/access_tokens/current", headers=bearer(token))
    assert reply.status_code == 200, reply.text
    expires_at = reply.json()["expires_at"]
    assert expires_at is None or isinstance(expires_at, str)
    return expires_at
