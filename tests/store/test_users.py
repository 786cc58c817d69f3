"""Users, passwords and token records (store/users.py, tokens.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cyan.store import AccountError, Store, TokenRecord, UnknownUser, UserExists
from cyan.store import users as accounts_module
from cyan.store.models import AccessToken

PASSWORD = "correct horse battery"


@pytest.fixture
async def raw(store: Store) -> AsyncIterator[AsyncEngine]:
    """A second engine on the same database, to read and write rows the store hides."""
    engine = create_async_engine(store.url)
    yield engine
    await engine.dispose()


async def password_hash(raw: AsyncEngine, username: str) -> Any:
    async with raw.connect() as connection:
        return await connection.scalar(
            sa.text("SELECT password_hash FROM users WHERE username = :name"), {"name": username}
        )


async def test_password_checks(store: Store) -> None:
    added = await store.users.add("Ada@Example.com", PASSWORD)
    assert added.username == "Ada@Example.com"
    assert await store.users.check_password("Ada@Example.com", PASSWORD) == added
    # Usernames match in any case, as everywhere in the store; passwords exactly.
    assert await store.users.check_password("ada@example.COM", PASSWORD) == added
    assert await store.users.check_password("Ada@Example.com", PASSWORD.upper()) is None
    assert await store.users.check_password("Ada@Example.com", "") is None
    assert await store.users.check_password("nobody@example.com", PASSWORD) is None
    # Input no stored password can hold is simply wrong, not an error.
    assert await store.users.check_password("Ada@Example.com", "\ud800 lone surrogate") is None


async def test_only_an_argon2id_hash_is_stored(store: Store, raw: AsyncEngine) -> None:
    await store.users.add("ada@example.com", PASSWORD)
    stored = await password_hash(raw, "ada@example.com")
    assert isinstance(stored, str)
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    async with raw.connect() as connection:
        rows = (await connection.execute(sa.text("SELECT * FROM users"))).all()
    assert not any(PASSWORD in str(value) for row in rows for value in row)


async def test_two_users_with_one_password_get_different_hashes(
    store: Store, raw: AsyncEngine
) -> None:
    await store.users.add("a@example.com", PASSWORD)
    await store.users.add("b@example.com", PASSWORD)
    assert await password_hash(raw, "a@example.com") != await password_hash(raw, "b@example.com")


async def test_add_user_refuses_a_taken_name_in_any_case(store: Store) -> None:
    await store.users.add("ada@example.com", PASSWORD)
    with pytest.raises(UserExists):
        await store.users.add("ADA@example.com", "another password")
    # A user that exists without a password (made by `cyan token create`) is taken too.
    await store.users.ensure("admin")
    with pytest.raises(UserExists):
        await store.users.add("admin", PASSWORD)


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("", PASSWORD),
        (" ada@example.com", PASSWORD),
        ("ada@example.com ", PASSWORD),
        ("ada lovelace", PASSWORD),
        ("ada:lovelace", PASSWORD),
        ("ada\x00@example.com", PASSWORD),
        ("a" * 256, PASSWORD),
        ("ada@example.com", ""),
        ("ada@example.com", "7chars!"),
        ("ada@example.com", "\ud800 and more"),
    ],
)
async def test_add_user_refuses_bad_input(store: Store, username: str, password: str) -> None:
    with pytest.raises(AccountError):
        await store.users.add(username, password)
    assert await store.users.all() == []


async def test_set_password(store: Store) -> None:
    admin = await store.users.ensure("admin")
    # No password yet: nobody can log in as this user.
    assert await store.users.check_password("admin", "") is None
    assert await store.users.check_password("admin", PASSWORD) is None
    await store.users.set_password(admin.id, PASSWORD)
    assert await store.users.check_password("admin", PASSWORD) == admin
    await store.users.set_password(admin.id, "a new password")
    assert await store.users.check_password("admin", PASSWORD) is None
    assert await store.users.check_password("admin", "a new password") == admin
    with pytest.raises(AccountError):
        await store.users.set_password(admin.id, "short")
    with pytest.raises(UnknownUser):
        await store.users.set_password(admin.id + 1000, PASSWORD)


async def test_an_old_hash_is_upgraded_at_login(store: Store, raw: AsyncEngine) -> None:
    user = await store.users.add("ada@example.com", PASSWORD)
    weak = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    async with raw.begin() as connection:
        await connection.execute(
            sa.text("UPDATE users SET password_hash = :h WHERE id = :id"),
            {"h": weak, "id": user.id},
        )
    assert await store.users.check_password("ada@example.com", PASSWORD) == user
    upgraded = await password_hash(raw, "ada@example.com")
    assert upgraded != weak
    assert not PasswordHasher().check_needs_rehash(upgraded)
    assert await store.users.check_password("ada@example.com", PASSWORD) == user


async def test_a_corrupt_hash_fails_closed(store: Store, raw: AsyncEngine) -> None:
    user = await store.users.add("ada@example.com", PASSWORD)
    async with raw.begin() as connection:
        await connection.execute(
            sa.text("UPDATE users SET password_hash = :h WHERE id = :id"),
            {"h": PASSWORD, "id": user.id},
        )
    assert await store.users.check_password("ada@example.com", PASSWORD) is None


class CountingHasher(PasswordHasher):
    def __init__(self) -> None:
        super().__init__()
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.verified += 1
        return super().verify(hash, password)


@pytest.mark.parametrize("who", ["unknown", "no password", "wrong password"])
async def test_every_failed_check_runs_argon2_once(
    store: Store, monkeypatch: pytest.MonkeyPatch, who: str
) -> None:
    """Whether the user exists must not change the work done, so not the reply time."""
    await store.users.add("ada@example.com", PASSWORD)
    await store.users.ensure("admin")
    counting = CountingHasher()
    monkeypatch.setattr(accounts_module, "_hasher", counting)
    username = {"unknown": "nobody", "no password": "admin", "wrong password": "ada@example.com"}
    assert await store.users.check_password(username[who], "not the password") is None
    assert counting.verified == 1


async def test_list_users_and_accounts(store: Store) -> None:
    bob = await store.users.add("bob@example.com", PASSWORD)
    ada = await store.users.add("Ada@example.com", PASSWORD)
    admin = await store.users.ensure("admin")
    await store.tokens.create(ada.id)
    await store.tokens.create(ada.id, expires_at=datetime.now(UTC) + timedelta(hours=1))
    await store.tokens.create(ada.id, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    await store.tokens.create(admin.id)
    assert await store.users.all() == [ada, admin, bob]
    accounts = [(a.user, a.has_password, a.tokens) for a in await store.users.list_accounts()]
    assert accounts == [(ada, True, 2), (admin, False, 1), (bob, True, 0)]
    assert await store.users.find("ADA@EXAMPLE.COM") == ada
    assert await store.users.find("nobody") is None


def token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


async def test_token_records_hold_the_hash_start_never_the_token(store: Store) -> None:
    ada = await store.users.add("ada@example.com", PASSWORD)
    bob = await store.users.add("bob@example.com", PASSWORD)
    later = datetime(2999, 1, 2, 3, 4, 5, tzinfo=UTC)
    forever = await store.tokens.create(ada.id, client_id="particle-cli")
    dated = await store.tokens.create(ada.id, client_id="particle-api", expires_at=later)
    expired = await store.tokens.create(ada.id, expires_at=datetime.now(UTC) - timedelta(1))
    bobs = await store.tokens.create(bob.id, client_id="cyan")

    info = await store.tokens.info(forever)
    assert isinstance(info, TokenRecord)
    assert (info.token_id, info.user_id, info.client_id) == (
        token_id(forever),
        ada.id,
        "particle-cli",
    )
    assert info.expires_at is None
    assert forever not in repr(info)
    dated_info = await store.tokens.info(dated)
    assert dated_info is not None
    assert dated_info.expires_at == later
    assert await store.tokens.info(expired) is None
    assert await store.tokens.info("not a token") is None

    listed = await store.tokens.all(ada.id)
    assert sorted(t.token_id for t in listed) == sorted([token_id(forever), token_id(dated)])
    everyone = await store.tokens.all(None)
    assert {t.token_id for t in everyone} == {token_id(t) for t in (forever, dated, bobs)}

    assert await store.tokens.revoke(forever)
    assert await store.tokens.info(forever) is None
    assert [t.token_id for t in await store.tokens.all(ada.id)] == [token_id(dated)]


async def test_revoke_by_token_id(store: Store) -> None:
    ada = await store.users.add("ada@example.com", PASSWORD)
    token = await store.tokens.create(ada.id)
    kept = await store.tokens.create(ada.id)
    unused = next(p * 8 for p in "0123" if not {token_id(token)[0], token_id(kept)[0]} & {p})
    assert await store.tokens.revoke_id(unused) == 0
    assert await store.tokens.revoke_id(token_id(token).upper()) == 1
    assert await store.tokens.user_for(token) is None
    assert await store.tokens.user_for(kept) == ada
    assert await store.tokens.revoke_id(token_id(token)) == 0


@pytest.mark.parametrize("bad", ["", "abc", "1234567", "not-hex-at-all", "%%%%%%%%"])
async def test_revoke_by_token_id_refuses_what_is_not_an_id(store: Store, bad: str) -> None:
    with pytest.raises(AccountError):
        await store.tokens.revoke_id(bad)


async def test_revoke_by_token_id_refuses_an_ambiguous_prefix(
    store: Store, raw: AsyncEngine
) -> None:
    ada = await store.users.add("ada@example.com", PASSWORD)
    # Two hashes that share 8 characters: rows written past the store, since finding two
    # such tokens would take some 2**16 tries.
    async with raw.begin() as connection:
        await connection.execute(
            sa.insert(AccessToken),
            [
                {"token_hash": "abcdef12" + last * 56, "user_id": ada.id, "client_id": "cyan"}
                for last in "01"
            ],
        )
    with pytest.raises(AccountError, match="2 tokens"):
        await store.tokens.revoke_id("abcdef12")
    assert len(await store.tokens.all(ada.id)) == 2
    assert await store.tokens.revoke_id("abcdef121") == 1
    assert len(await store.tokens.all(ada.id)) == 1
