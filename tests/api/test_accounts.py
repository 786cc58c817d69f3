"""Log in, who am I, token info and revocation, sign-up (api/accounts.py; rest-api.md §1.3,
§3.1, §10 items 2–4), driven the way particle-cli and particle-api-js drive them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from cyan.store import Store

from .conftest_accounts import (
    BAD_CLIENT,
    BAD_CREDENTIALS,
    CLIENT_PAIRS,
    INVALID,
    MISSING,
    NINETY_DAYS,
    PARTICLE_TIME,
    PASSWORD,
    Account,
    bearer,
    carol_fixture,  # noqa: F401 (a fixture)
    expiry,
    log_in,
    signup_client_fixture,  # noqa: F401 (a fixture)
    token_id,
)

# -- POST /oauth/token ----------------------------------------------------------------------


@pytest.mark.parametrize(("client_id", "secret"), CLIENT_PAIRS)
async def test_login_with_each_client_as_a_form(
    client: httpx.AsyncClient, carol: Account, client_id: str, secret: str
) -> None:
    reply = await client.post(
        "/oauth/token", data=carol.login_form(client_id=client_id, client_secret=secret)
    )
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == {"token_type", "access_token", "expires_in", "refresh_token"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == NINETY_DAYS
    assert isinstance(body["refresh_token"], str)
    assert body["refresh_token"] != body["access_token"]
    assert reply.headers["cache-control"] == "no-store"
    token = body["access_token"]
    me = await client.get("/v1/user", headers=bearer(token))
    assert me.json()["username"] == carol.username
    current = await client.get("/v1/access_tokens/current", headers=bearer(token))
    assert current.json()["client_id"] == client_id


@pytest.mark.parametrize(("client_id", "secret"), CLIENT_PAIRS)
async def test_login_as_json(
    client: httpx.AsyncClient, carol: Account, client_id: str, secret: str
) -> None:
    body = carol.login_form(client_id=client_id, client_secret=secret, expires_in=3600)
    body["username"] = carol.username.upper()  # names match in any case
    reply = await client.post("/oauth/token", json=body)
    assert reply.status_code == 200
    assert reply.json()["expires_in"] == 3600


@pytest.mark.parametrize(("client_id", "secret"), CLIENT_PAIRS)
async def test_login_with_basic_client_credentials(
    client: httpx.AsyncClient, carol: Account, client_id: str, secret: str
) -> None:
    # As the Particle docs' `curl -u particle:particle` (rest-api.md §10 item 2).
    form = carol.login_form(client_id=None, client_secret=None)
    reply = await client.post("/oauth/token", data=form, auth=(client_id, secret))
    assert reply.status_code == 200
    token = reply.json()["access_token"]
    current = await client.get("/v1/access_tokens/current", headers=bearer(token))
    assert current.json()["client_id"] == client_id


@pytest.mark.parametrize(
    "changes",
    [
        {"password": PASSWORD.upper()},
        {"password": PASSWORD + " "},
        {"username": "nobody@example.com"},
    ],
    ids=["wrong password", "password plus a space", "unknown user"],
)
async def test_bad_credentials(
    client: httpx.AsyncClient, carol: Account, changes: dict[str, str]
) -> None:
    reply = await client.post("/oauth/token", data=carol.login_form(**changes))
    assert (reply.status_code, reply.json()) == (400, BAD_CREDENTIALS)


async def test_a_user_without_password_cannot_log_in(
    client: httpx.AsyncClient, store: Store
) -> None:
    await store.users.ensure("admin")
    form = {"username": "admin", "password": "", "grant_type": "password"}
    form |= {"client_id": "cyan", "client_secret": "cyan"}
    reply = await client.post("/oauth/token", data=form)
    assert reply.status_code == 400
    reply = await client.post("/oauth/token", data={**form, "password": PASSWORD})
    assert (reply.status_code, reply.json()) == (400, BAD_CREDENTIALS)


@pytest.mark.parametrize(
    "changes",
    [
        {"client_secret": "wrong"},
        {"client_id": "spark-server", "client_secret": "spark-server"},
        {"client_id": "particle-cli", "client_secret": "particle-api"},
        {"client_id": "CLI2", "client_secret": "particle-cli"},
        {"client_id": None, "client_secret": None},
    ],
    ids=["wrong secret", "unknown client", "crossed pair", "old id, new secret", "no client"],
)
async def test_bad_client(
    client: httpx.AsyncClient, carol: Account, changes: dict[str, str | None]
) -> None:
    reply = await client.post("/oauth/token", data=carol.login_form(**changes))
    assert (reply.status_code, reply.json()) == (401, BAD_CLIENT)
    assert "www-authenticate" not in reply.headers


@pytest.mark.parametrize(
    "authorization", ["Basic " + "cGFydGljbGU6bm9wZQ==", "Basic !!!", "Basic cGFydGljbGU="]
)
async def test_bad_basic_client_gets_a_basic_challenge(
    client: httpx.AsyncClient, carol: Account, authorization: str
) -> None:
    form = carol.login_form(client_id=None, client_secret=None)
    reply = await client.post("/oauth/token", data=form, headers={"Authorization": authorization})
    assert (reply.status_code, reply.json()) == (401, BAD_CLIENT)
    assert reply.headers["www-authenticate"].startswith("Basic ")


@pytest.mark.parametrize("grant", ["refresh_token", "urn:custom:mfa-otp", "client_credentials"])
async def test_unsupported_grant(client: httpx.AsyncClient, carol: Account, grant: str) -> None:
    reply = await client.post("/oauth/token", data=carol.login_form(grant_type=grant))
    assert reply.status_code == 400
    assert reply.json() == {
        "error": "unsupported_grant_type",
        "error_description": f"Grant type {grant} is not supported",
    }


@pytest.mark.parametrize(
    ("encoding", "changes"),
    [
        ("data", {"grant_type": None}),
        ("data", {"username": None}),
        ("data", {"password": None}),
        ("data", {"expires_in": "soon"}),
        ("data", {"expires_in": "-5"}),
        ("data", {"expires_in": "1.5"}),
        ("json", {"expires_in": True}),
        ("json", {"expires_in": 1.5}),
        ("json", {"expires_in": [60]}),
        ("json", {"password": {"plain": PASSWORD}}),
    ],
)
async def test_malformed_login(
    client: httpx.AsyncClient, carol: Account, encoding: str, changes: dict[str, object]
) -> None:
    form = carol.login_form(**changes)
    json_form = form if encoding == "json" else None
    reply = await client.post("/oauth/token", data=None if json_form else form, json=json_form)
    assert reply.status_code == 400
    body = reply.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == "invalid_request"
    assert "access token" not in body["error_description"].lower()


@pytest.mark.parametrize("expires_in", ["0", 0, str(10**12)])
async def test_never_expiring_token(
    client: httpx.AsyncClient, carol: Account, expires_in: object
) -> None:
    # `particle token create --never-expires` sends 0 (rest-api.md §3.1); a lifetime past
    # any calendar is never too.
    reply = await client.post("/oauth/token", json=carol.login_form(expires_in=expires_in))
    assert reply.status_code == 200
    token = reply.json()["access_token"]
    assert reply.json()["expires_in"] == 0
    assert await expiry(client, token) is None
    assert (await client.get("/v1/user", headers=bearer(token))).status_code == 200


@pytest.mark.parametrize("expires_in", [None, "60", "3600", str(NINETY_DAYS * 40)])
async def test_lifetime_is_what_the_client_asked(
    client: httpx.AsyncClient, carol: Account, expires_in: str | None
) -> None:
    seconds = NINETY_DAYS if expires_in is None else int(expires_in)
    before = datetime.now(UTC).replace(microsecond=0)
    token = await log_in(client, carol, expires_in=expires_in)
    after = datetime.now(UTC) + timedelta(seconds=1)
    shown = await expiry(client, token)
    assert shown is not None
    assert PARTICLE_TIME.fullmatch(shown)
    expires_at = datetime.fromisoformat(shown)
    assert before + timedelta(seconds=seconds) <= expires_at <= after + timedelta(seconds=seconds)


async def test_expired_token_is_refused(
    client: httpx.AsyncClient, store: Store, carol: Account
) -> None:
    token = await store.tokens.create(
        carol.user.id, expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    for method, path in [("GET", "/v1/user"), ("GET", "/v1/access_tokens/current")]:
        reply = await client.request(method, path, headers=bearer(token))
        assert (reply.status_code, reply.json()) == (401, INVALID)


# -- GET /v1/user, /v1/access_tokens/current ------------------------------------------------


async def test_user(client: httpx.AsyncClient, carol: Account) -> None:
    token = await log_in(client, carol)
    reply = await client.get("/v1/user", headers=bearer(token))
    assert reply.status_code == 200
    assert reply.json() == {
        "username": "carol@example.com",
        "subscription_ids": [],
        "account_info": {},
        "mfa": {"enabled": False},
    }


# DELETE /current is a route of its own, never a token named "current" (route order).
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/user"),
        ("GET", "/v1/access_tokens/current"),
        ("DELETE", "/v1/access_tokens/current"),
    ],
)
async def test_routes_that_need_a_token(client: httpx.AsyncClient, method: str, path: str) -> None:
    reply = await client.request(method, path)
    assert (reply.status_code, reply.json()) == (401, MISSING)
    reply = await client.request(method, path, headers=bearer("nope"))
    assert (reply.status_code, reply.json()) == (401, INVALID)


async def test_current_token(client: httpx.AsyncClient, carol: Account) -> None:
    token = await log_in(client, carol, client_id="particle-api", client_secret="particle-api")
    reply = await client.get("/v1/access_tokens/current", headers=bearer(token))
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == {"expires_at", "client_id", "scopes", "orgs"}
    assert PARTICLE_TIME.fullmatch(body["expires_at"])
    assert (body["client_id"], body["scopes"], body["orgs"]) == ("particle-api", [], [])


async def test_logout_revokes_at_once(client: httpx.AsyncClient, carol: Account) -> None:
    token = await log_in(client, carol)
    other = await log_in(client, carol)
    # A first request puts the token in the API's cache (api/cache.py) ...
    assert (await client.get("/v1/user", headers=bearer(token))).status_code == 200
    reply = await client.delete("/v1/access_tokens/current", headers=bearer(token))
    assert (reply.status_code, reply.json()) == (200, {"ok": True})
    # ... and the revocation takes it out, so the very next request is refused.
    reply = await client.get("/v1/user", headers=bearer(token))
    assert (reply.status_code, reply.json()) == (401, INVALID)
    assert (await client.get("/v1/user", headers=bearer(other))).status_code == 200


# -- DELETE /v1/access_tokens/:token (no auth) ----------------------------------------------


async def test_revoke_by_token_without_auth(client: httpx.AsyncClient, carol: Account) -> None:
    token = await log_in(client, carol)
    kept = await log_in(client, carol)
    assert (await client.get("/v1/user", headers=bearer(token))).status_code == 200
    reply = await client.delete(f"/v1/access_tokens/{token}")
    assert (reply.status_code, reply.json()) == (200, {"ok": True})
    reply = await client.get("/v1/user", headers=bearer(token))
    assert (reply.status_code, reply.json()) == (401, INVALID)
    assert (await client.get("/v1/user", headers=bearer(kept))).status_code == 200


@pytest.mark.parametrize("token", ["0" * 40, "not-a-token", "already-revoked"])
async def test_revoke_unknown_token_is_404_without_auth_words(
    client: httpx.AsyncClient, carol: Account, token: str
) -> None:
    if token == "already-revoked":
        token = await log_in(client, carol)
        assert (await client.delete(f"/v1/access_tokens/{token}")).status_code == 200
    reply = await client.delete(f"/v1/access_tokens/{token}")
    # Never 401 and never "access token": particle-cli would log its user out (§1.3).
    assert (reply.status_code, reply.json()) == (404, {"ok": False, "error": "Token not found"})
    assert "access token" not in reply.text.lower()


# -- GET /v1/access_tokens (HTTP Basic, legacy) ---------------------------------------------


async def test_list_tokens_with_basic_auth(
    client: httpx.AsyncClient, store: Store, carol: Account
) -> None:
    cli = await log_in(client, carol, expires_in="0")
    api = await log_in(client, carol, client_id="particle-api", client_secret="particle-api")
    someone_else = await store.users.ensure("dave@example.com")
    await store.tokens.create(someone_else.id)
    reply = await client.get("/v1/access_tokens", auth=(carol.username, carol.password))
    assert reply.status_code == 200
    listed = {entry["token"]: entry for entry in reply.json()}
    assert set(listed) == {f"{token_id(cli)}…", f"{token_id(api)}…"}
    assert listed[f"{token_id(cli)}…"] == {
        "token": f"{token_id(cli)}…",
        "expires_at": None,
        "client": "particle-cli",
    }
    api_entry = listed[f"{token_id(api)}…"]
    assert api_entry["client"] == "particle-api"
    assert PARTICLE_TIME.fullmatch(api_entry["expires_at"])
    # Only hashes are kept: no token can be shown.
    assert cli not in reply.text
    assert api not in reply.text


@pytest.mark.parametrize(
    "auth", [None, ("carol@example.com", "wrong password"), ("nobody@example.com", PASSWORD)]
)
async def test_list_tokens_refuses_bad_credentials(
    client: httpx.AsyncClient, carol: Account, auth: tuple[str, str] | None
) -> None:
    token = await log_in(client, carol)
    # A bearer token is not a password: this legacy route wants Basic only.
    headers = bearer(token) if auth is None else {}
    reply = await client.get("/v1/access_tokens", auth=auth, headers=headers)
    assert reply.status_code == 401
    assert reply.json() == {"ok": False, "error": "User credentials are invalid"}
    assert reply.headers["www-authenticate"].startswith("Basic ")


# -- POST /v1/users -------------------------------------------------------------------------


async def test_sign_up_is_off_by_default(client: httpx.AsyncClient, store: Store) -> None:
    reply = await client.post(
        "/v1/users", json={"username": "eve@example.com", "password": "x" * 9}
    )
    assert reply.status_code == 403
    assert reply.json() == {"ok": False, "error": "Sign-up is disabled on this server"}
    assert await store.users.find("eve@example.com") is None


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "form"])
async def test_sign_up_then_log_in(
    signup_client: httpx.AsyncClient, store: Store, as_json: bool
) -> None:
    # particle-api-js createUser sends JSON with account_info (rest-api.md §3.3).
    fields = {"username": "eve@example.com", "password": PASSWORD}
    if as_json:
        reply = await signup_client.post("/v1/users", json={**fields, "account_info": {}})
    else:
        reply = await signup_client.post("/v1/users", data=fields)
    assert (reply.status_code, reply.json()) == (200, {"ok": True})
    user = await store.users.find("eve@example.com")
    assert user is not None
    token = await log_in(signup_client, Account(user, PASSWORD))
    me = await signup_client.get("/v1/user", headers=bearer(token))
    assert me.json()["username"] == "eve@example.com"


async def test_sign_up_refuses_a_taken_name(
    signup_client: httpx.AsyncClient, carol: Account
) -> None:
    reply = await signup_client.post(
        "/v1/users", json={"username": carol.username.upper(), "password": "another password"}
    )
    assert reply.status_code == 400
    assert reply.json() == {"ok": False, "error": "That username is taken"}
    # The first owner's password still works, the second one's does not.
    await log_in(signup_client, carol)


@pytest.mark.parametrize(
    "fields",
    [
        {"username": "eve@example.com"},
        {"password": PASSWORD},
        {"username": "eve@example.com", "password": "short"},
        {"username": "eve example", "password": PASSWORD},
        {"username": ["eve@example.com"], "password": PASSWORD},
    ],
)
async def test_sign_up_refuses_bad_input(
    signup_client: httpx.AsyncClient, store: Store, fields: dict[str, object]
) -> None:
    reply = await signup_client.post("/v1/users", json=fields)
    assert reply.status_code == 400
    body = reply.json()
    assert body["ok"] is False
    assert isinstance(body["error"], str)
    assert await store.users.all() == []
