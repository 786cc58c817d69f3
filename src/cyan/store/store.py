"""The store: every read and write Cyan makes to its database goes through here.

Each public method is one short transaction and returns plain records, so
callers never hold a session across an ``await`` of their own.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from cyan.store import migrate
from cyan.store.accounts import Accounts, token_hash
from cyan.store.devices import DeviceWrites
from cyan.store.errors import StoreError, StoreUnavailable
from cyan.store.failures import FailureLog
from cyan.store.models import AccessToken, Device, DeviceKey, User, utcnow
from cyan.store.records import DeviceRecord, UserRecord
from cyan.store.sessions import SessionWrites
from cyan.store.updates import UpdateLog
from cyan.store.validation import aware, device_id_or_error, lookup_id

T = TypeVar("T")


class _Conflict(StoreError):
    """A uniqueness or foreign-key constraint refused a write (maybe a lost race)."""


def _reason(exc: BaseException) -> str:
    # The driver's own message: SQLAlchemy's text would add the SQL and its
    # parameters (key material, token hashes) to every log line that quotes it.
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"{type(exc.orig).__name__}: {exc.orig}"
    return str(exc)


def _unavailable(exc: BaseException) -> bool:
    """Whether the database was unreachable or busy (SQLite's "database is locked" is an
    OperationalError too), rather than refusing this write."""
    if isinstance(exc, OSError | TimeoutError | OperationalError | InterfaceError):
        return True
    if isinstance(exc, DisconnectionError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class Store(SessionWrites, DeviceWrites, Accounts, FailureLog, UpdateLog):
    """Open with ``await Store.open(url)``; close with ``await store.close()``."""

    def __init__(self, engine: AsyncEngine, url: URL) -> None:
        self._engine = engine
        self._url = url
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._closed = False

    @classmethod
    async def open(cls, url: str) -> Store:
        """Connect and migrate to the newest schema (a no-op on an up-to-date database)."""
        parsed = migrate.parse_url(url)
        shown = parsed.render_as_string(hide_password=True)
        try:
            engine = migrate.create_engine(parsed)
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(
                f"cannot open database {shown}: {_reason(exc)}", fix=migrate.URL_FIX
            ) from exc
        try:
            await migrate.upgrade(engine)
        except (SQLAlchemyError, OSError, migrate.MigrationFailed) as exc:
            await engine.dispose()
            raise StoreError(
                f"cannot open database {shown}: {_reason(exc)}",
                fix="Check that the database server is running and the URL is right.",
            ) from exc
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, parsed)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._engine.dispose()

    @property
    def url(self) -> str:
        return self._url.render_as_string(hide_password=False)

    def __repr__(self) -> str:
        return f"Store({self._url.render_as_string(hide_password=True)!r})"

    @asynccontextmanager
    async def _transaction(self, what: str) -> AsyncIterator[AsyncSession]:
        """One session and transaction; database failures come out as StoreError."""
        if self._closed:
            raise StoreUnavailable(f"{what}: the store is closed")
        try:
            async with self._sessions() as session, session.begin():
                yield session
        except IntegrityError as exc:
            raise _Conflict(f"{what}: refused by the database: {_reason(exc)}") from exc
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            if _unavailable(exc):
                raise StoreUnavailable(f"{what}: database unavailable: {_reason(exc)}") from exc
            raise StoreError(f"{what}: database error: {_reason(exc)}") from exc

    async def _retrying(self, what: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``work`` in a transaction, and once more if a constraint refused it.

        Get-or-create loses a race when another caller inserts the same row between
        our read and our write; the second pass then finds that row. A write that
        is simply invalid fails the same way twice and surfaces.
        """
        try:
            async with self._transaction(what) as session:
                return await work(session)
        except _Conflict:
            async with self._transaction(what) as session:
                return await work(session)

    # users and tokens

    async def ensure_user(self, username: str) -> UserRecord:
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

        return await self._retrying("ensure_user", work)

    async def get_user(self, user_id: int) -> UserRecord | None:
        async with self._transaction("get_user") as session:
            user = await session.get(User, user_id)
            return None if user is None else user.to_record()

    async def create_token(
        self, user_id: int, *, client_id: str = "cyan", expires_at: datetime | None = None
    ) -> str:
        if expires_at is not None:
            aware(expires_at, "expires_at")
        token = secrets.token_hex(20)
        async with self._transaction("create_token") as session:
            if await session.get(User, user_id) is None:
                raise StoreError(f"create_token: no user with id {user_id}")
            session.add(
                AccessToken(
                    token_hash=token_hash(token),
                    user_id=user_id,
                    client_id=client_id,
                    expires_at=expires_at,
                )
            )
        return token

    async def user_for_token(self, token: str) -> UserRecord | None:
        async with self._transaction("user_for_token") as session:
            query = (
                sa.select(AccessToken.expires_at, User)
                .join(User, User.id == AccessToken.user_id)
                .where(AccessToken.token_hash == token_hash(token))
            )
            row = (await session.execute(query)).one_or_none()
            if row is None:
                return None
            expires_at, user = row
            if expires_at is not None and expires_at <= utcnow():
                return None
            return user.to_record()

    async def revoke_token(self, token: str) -> bool:
        async with self._transaction("revoke_token") as session:
            found = await session.get(AccessToken, token_hash(token))
            if found is None:
                return False
            await session.delete(found)
            return True

    # devices

    async def add_device(
        self,
        device_id: str,
        public_key_der: bytes,
        *,
        owner_id: int | None,
        name: str | None = None,
    ) -> DeviceRecord:
        """Create a device with its key, or give an existing one a new key.

        An existing device keeps its owner and name unless new ones are given.
        """
        device_id = device_id_or_error(device_id)

        async def work(session: AsyncSession) -> DeviceRecord:
            if owner_id is not None and await session.get(User, owner_id) is None:
                raise StoreError(f"add_device: no user with id {owner_id}")
            device = await self._put_key(session, device_id, public_key_der)
            if owner_id is not None:
                device.owner_id = owner_id
            if name is not None:
                device.name = name
            await session.flush()
            return device.to_record()

        return await self._retrying("add_device", work)

    async def set_device_key(self, device_id: str, public_key_der: bytes) -> None:
        device_id = device_id_or_error(device_id)

        async def work(session: AsyncSession) -> None:
            await self._put_key(session, device_id, public_key_der)

        await self._retrying("set_device_key", work)

    @staticmethod
    async def _put_key(session: AsyncSession, device_id: str, public_key_der: bytes) -> Device:
        if not public_key_der:
            raise StoreError(f"empty public key for device {device_id}")
        device = await session.get(Device, device_id)
        if device is None:
            device = Device(id=device_id, functions=[], variables={})
            session.add(device)
            # The key row references the device row: make sure it exists first.
            await session.flush()
        key = await session.get(DeviceKey, device_id)
        if key is None:
            session.add(DeviceKey(device_id=device_id, public_key_der=bytes(public_key_der)))
        else:
            key.public_key_der = bytes(public_key_der)
            key.updated_at = utcnow()
        return device

    async def device_key(self, device_id: str) -> bytes | None:
        lookup = lookup_id(device_id)
        if lookup is None:
            return None
        async with self._transaction("device_key") as session:
            key = await session.scalar(
                sa.select(DeviceKey.public_key_der).where(DeviceKey.device_id == lookup)
            )
            return None if key is None else bytes(key)

    async def get_device(self, device_id: str) -> DeviceRecord | None:
        lookup = lookup_id(device_id)
        if lookup is None:
            return None
        async with self._transaction("get_device") as session:
            device = await session.get(Device, lookup)
            return None if device is None else device.to_record()

    async def find_device(self, id_or_name: str, *, owner_id: int | None) -> DeviceRecord | None:
        """By id (any case) first, else by exact name; limited to one owner if given."""
        query = sa.select(Device)
        if owner_id is not None:
            query = query.where(Device.owner_id == owner_id)
        async with self._transaction("find_device") as session:
            lookup = lookup_id(id_or_name)
            if lookup is not None:
                device = await session.scalar(query.where(Device.id == lookup))
                if device is not None:
                    return device.to_record()
            # Names need not be unique across owners: pick the same one every time.
            device = await session.scalar(
                query.where(Device.name == id_or_name).order_by(Device.id).limit(1)
            )
            return None if device is None else device.to_record()

    async def list_devices(self, *, owner_id: int | None) -> list[DeviceRecord]:
        """All devices (or one owner's), named ones by name, then unnamed ones, each by id."""
        # "name IS NULL" first because the dialects disagree on where NULLs sort.
        query = sa.select(Device).order_by(Device.name.is_(None), Device.name, Device.id)
        if owner_id is not None:
            query = query.where(Device.owner_id == owner_id)
        async with self._transaction("list_devices") as session:
            return [d.to_record() for d in await session.scalars(query)]
