"""Particle's API limits (api/limits.py) under uvicorn on loopback, small enough to reach:
429 with Retry-After in Particle's shape, counted per client address (127.0.0.1 against
127.0.0.2), and per account for failed logins."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from cyan.api import create_app
from cyan.bus import EventBus
from cyan.cloud.router import Router
from cyan.settings import ApiSettings
from cyan.store import Store
from tests.api.conftest import Caller
from tests.api.conftest_accounts import PASSWORD, Account
from tests.system import eventually

LIMITS = ApiSettings(
    requests_per_5_min=6,
    logins_per_5_min=4,
    login_failures_before_lockout=3,
    stream_opens_per_5_min=3,
    streams_per_address=2,
)


@pytest.fixture
def app(store: Store, router: Router, bus: EventBus) -> FastAPI:
    return create_app(store=store, router=router, bus=bus, settings=LIMITS)


@pytest.fixture
async def other(live_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client from another loopback address."""
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(
        base_url=live_url, transport=transport, trust_env=False, timeout=5
    ) as client:
        yield client


def assert_too_many(reply: httpx.Response, words: str) -> None:
    assert reply.status_code == 429, reply.text
    assert int(reply.headers["retry-after"]) >= 1
    body = reply.json()
    assert body["ok"] is False
    assert words in body["error"]
    assert "access token" not in body["error"]  # particle-cli would log its user out


async def test_requests_over_the_limit_wait_and_other_addresses_do_not(
    http: httpx.AsyncClient, other: httpx.AsyncClient, alice: Caller
) -> None:
    for _ in range(6):
        assert (await http.get("/v1/devices", headers=alice.headers)).status_code == 200
    refused = await http.get("/v1/devices", headers=alice.headers)
    assert_too_many(refused, "at most 6 per 5 minutes")
    assert int(refused.headers["retry-after"]) <= 50  # one request's share of 5 minutes
    assert (await other.get("/v1/devices", headers=alice.headers)).status_code == 200


@pytest.fixture(name="carol")
async def carol_account(store: Store) -> Account:
    return Account(await store.users.add("carol@example.com", PASSWORD), PASSWORD)


async def test_an_account_is_locked_after_failed_logins_even_for_the_right_password(
    other: httpx.AsyncClient, store: Store, carol: Account
) -> None:
    dave = Account(await store.users.add("dave@example.com", PASSWORD), PASSWORD)
    for _ in range(3):
        wrong = await other.post("/oauth/token", data=carol.login_form(password="wrong"))
        assert wrong.status_code == 400
    locked = await other.post("/oauth/token", data=carol.login_form())
    assert_too_many(locked, "Too many failed logins for this account")
    assert int(locked.headers["retry-after"]) > 1700  # 30 minutes
    assert (await other.post("/oauth/token", data=dave.login_form())).status_code == 200


async def test_logins_from_one_address_are_limited(
    other: httpx.AsyncClient, carol: Account
) -> None:
    for _ in range(4):
        assert (await other.post("/oauth/token", data=carol.login_form())).status_code == 200
    assert_too_many(
        await other.post("/oauth/token", data=carol.login_form()), "Too many logins from"
    )


async def test_streams_open_at_once_and_opened_are_limited(
    other: httpx.AsyncClient, alice: Caller, app: FastAPI
) -> None:
    limits = app.state.cyan.limits
    async with (
        other.stream("GET", "/v1/devices/events", headers=alice.headers) as first,
        other.stream("GET", "/v1/devices/events", headers=alice.headers) as second,
    ):
        assert (first.status_code, second.status_code) == (200, 200)
        third = await other.get("/v1/devices/events", headers=alice.headers)
        assert_too_many(third, "at most 2 at once")
    # Both closed (the server learns it when it next writes, a keep-alive at the latest):
    # one more may open, then the 3 opens per 5 minutes are spent.
    await eventually(lambda: limits.open_streams("127.0.0.2") == 0, 10, "the streams closed")
    async with other.stream("GET", "/v1/devices/events", headers=alice.headers) as again:
        assert again.status_code == 200
    assert_too_many(
        await other.get("/v1/devices/events", headers=alice.headers), "at most 3 per 5 minutes"
    )
