"""The database under every repository: one engine, one session maker, one transaction
rule (database failures come out as StoreError, a lost connection as StoreUnavailable).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

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

from cyan.store.errors import StoreError, StoreUnavailable

T = TypeVar("T")

# Values bound in one IN (...) at most: far below what SQLite and PostgreSQL take.
QUERY_BATCH = 500


class _Conflict(StoreError):
    """A uniqueness or foreign-key constraint refused a write (maybe a lost race)."""


def reason(exc: BaseException) -> str:
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


class Database:
    def __init__(self, engine: AsyncEngine, url: URL) -> None:
        self.engine = engine
        self.url = url
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.closed = False

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.engine.dispose()

    @asynccontextmanager
    async def transaction(self, what: str) -> AsyncIterator[AsyncSession]:
        """One session and transaction; database failures come out as StoreError."""
        if self.closed:
            raise StoreUnavailable(f"{what}: the store is closed")
        try:
            async with self._sessions() as session, session.begin():
                yield session
        except IntegrityError as exc:
            raise _Conflict(f"{what}: refused by the database: {reason(exc)}") from exc
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            if _unavailable(exc):
                raise StoreUnavailable(f"{what}: database unavailable: {reason(exc)}") from exc
            raise StoreError(f"{what}: database error: {reason(exc)}") from exc

    async def retrying(self, what: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``work`` in a transaction, and once more if a constraint refused it.

        Get-or-create loses a race when another caller inserts the same row between
        our read and our write; the second pass then finds that row. A write that
        is simply invalid fails the same way twice and surfaces.
        """
        try:
            async with self.transaction(what) as session:
                return await work(session)
        except _Conflict:
            async with self.transaction(what) as session:
                return await work(session)
