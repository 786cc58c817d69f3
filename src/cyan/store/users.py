"""Users: accounts with passwords (argon2id hashes, argon2-cffi's defaults: the RFC 9106
"low memory" profile; each hash carries its parameters and salt, so a change of
defaults upgrades old hashes at the next login).
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.ext.asyncio import AsyncSession

from cyan.store.database import Database
from cyan.store.errors import AccountError, StoreError
from cyan.store.models import AccessToken, User
from cyan.store.records import UserRecord
from cyan.store.tokens import live_token

MIN_PASSWORD_CHARS = 8


MAX_USERNAME_CHARS = 255  # users.username is VARCHAR(255)


_hasher = PasswordHasher()


# Each argon2 hash takes ~64 MiB and tens of milliseconds of CPU. It runs off the event
# loop, in a pool of two threads, so that a burst of logins neither stalls devices and
# event streams nor makes the server allocate 64 MiB per concurrent request.
_hashing = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cyan-argon2")


T = TypeVar("T")


async def _off_loop(work: functools.partial[T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(_hashing, work)


class UserExists(AccountError):
    pass


class UnknownUser(AccountError):
    pass


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """A user with what an administrator wants to see beside the name."""

    user: UserRecord
    has_password: bool
    tokens: int  # unexpired access tokens


def username_or_error(username: str) -> str:
    if not username or username != username.strip():
        raise AccountError(
            f"invalid username {username!r}: empty or with spaces around it",
            fix="Use an email address as the username.",
        )
    if len(username) > MAX_USERNAME_CHARS:
        raise AccountError(f"a username has at most {MAX_USERNAME_CHARS} characters")
    # A colon would cut the name short in HTTP Basic credentials (RFC 7617 §2).
    if ":" in username or any(ch.isspace() or not ch.isprintable() for ch in username):
        raise AccountError(
            f"invalid username {username!r}: no colons, spaces or control characters",
            fix="Use an email address as the username.",
        )
    return username


def _password_or_error(password: str) -> bytes:
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    try:
        return password.encode()
    except UnicodeEncodeError:
        # Lone surrogates can arrive through JSON "\ud800" escapes.
        raise AccountError("a password must be valid Unicode text") from None


@functools.cache
def _dummy_hash() -> str:
    # Verified against when there is no real hash, so that "no such user" costs the same
    # argon2 time as "wrong password" and the reply time does not reveal who has an account.
    return _hasher.hash(secrets.token_bytes(16))


def _verify(stored: str | None, password: bytes) -> bool:
    try:
        return _hasher.verify(stored or _dummy_hash(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


class Users:
    """``store.users``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def ensure(self, username: str) -> UserRecord:
        if not username.strip():
            raise StoreError("a username cannot be empty")
        key = username.casefold()

        async def work(session: AsyncSession) -> UserRecord:
            user = await session.scalar(sa.select(User).where(User.username_key == key))
            if user is None:
                user = User(username=username, username_key=key)
                session.add(user)
                await session.flush()
            return user.to_record()

        return await self._db.retrying("users.ensure", work)

    async def get(self, user_id: int) -> UserRecord | None:
        async with self._db.transaction("users.get") as session:
            user = await session.get(User, user_id)
            return None if user is None else user.to_record()

    async def add(self, username: str, password: str) -> UserRecord:
        """A new user with a password; UserExists if the name is taken (in any case)."""
        username = username_or_error(username)
        secret = _password_or_error(password)
        key = username.casefold()
        password_hash = await _off_loop(functools.partial(_hasher.hash, secret))
        try:
            async with self._db.transaction("users.add") as session:
                if await session.scalar(sa.select(User.id).where(User.username_key == key)):
                    raise UserExists(
                        f"a user named {username} exists already",
                        fix=f"Set its password with: cyan user password {username}",
                    )
                user = User(username=username, username_key=key, password_hash=password_hash)
                session.add(user)
                await session.flush()
                return user.to_record()
        except AccountError:
            raise
        except StoreError:
            # Lost a race with another writer of the same name: say so plainly.
            if await self._user_id(key) is not None:
                raise UserExists(f"a user named {username} exists already") from None
            raise

    async def _user_id(self, key: str) -> int | None:
        async with self._db.transaction("users.find (id)") as session:
            found: int | None = await session.scalar(
                sa.select(User.id).where(User.username_key == key)
            )
            return found

    async def find(self, username: str) -> UserRecord | None:
        """By name, in any case."""
        async with self._db.transaction("users.find") as session:
            user = await session.scalar(
                sa.select(User).where(User.username_key == username.casefold())
            )
            return None if user is None else user.to_record()

    async def set_password(self, user_id: int, password: str) -> None:
        secret = _password_or_error(password)
        password_hash = await _off_loop(functools.partial(_hasher.hash, secret))
        async with self._db.transaction("users.set_password") as session:
            user = await session.get(User, user_id)
            if user is None:
                raise UnknownUser(f"no user with id {user_id}")
            user.password_hash = password_hash

    async def check_password(self, username: str, password: str) -> UserRecord | None:
        """The user if the password is theirs, else None; the same argon2 cost either way."""
        async with self._db.transaction("users.check_password") as session:
            user = await session.scalar(
                sa.select(User).where(User.username_key == username.casefold())
            )
            stored = None if user is None else user.password_hash
        # "surrogatepass" so that odd input is simply wrong: no stored password has it.
        secret = password.encode("utf-8", "surrogatepass")
        if not await _off_loop(functools.partial(_verify, stored, secret)):
            return None
        assert user is not None and stored is not None
        if _hasher.check_needs_rehash(stored):
            await self._rehash(user.id, stored, secret)
        return user.to_record()

    async def _rehash(self, user_id: int, old_hash: str, secret: bytes) -> None:
        new_hash = await _off_loop(functools.partial(_hasher.hash, secret))
        async with self._db.transaction("users.check_password (rehash)") as session:
            # Only if unchanged meanwhile: a password set since then must win.
            await session.execute(
                sa.update(User)
                .where(User.id == user_id, User.password_hash == old_hash)
                .values(password_hash=new_hash)
            )

    async def all(self) -> list[UserRecord]:
        async with self._db.transaction("users.all") as session:
            users = await session.scalars(sa.select(User).order_by(User.username_key))
            return [user.to_record() for user in users]

    async def list_accounts(self) -> list[AccountRecord]:
        live = live_token()
        tokens = (
            sa.select(sa.func.count()).where(AccessToken.user_id == User.id, live).scalar_subquery()
        )
        query = sa.select(User, User.password_hash.is_not(None), tokens).order_by(User.username_key)
        async with self._db.transaction("users.list_accounts") as session:
            rows = await session.execute(query)
            return [AccountRecord(user.to_record(), bool(has), int(n)) for user, has, n in rows]
