"""Fixtures shared by every test package."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cyan.cloud.router import Router
from cyan.store import Store
from tests.postgres import PostgresServer, PostgresUnavailable

# --------------------------------------------------------------------------
# Store fixtures (cyan.store): a real PostgreSQL server and SQLite files.
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole run, started on first use."""
    failure = None
    try:
        server = PostgresServer.start()
    except PostgresUnavailable as exc:
        failure = str(exc)
    if failure is not None:
        # Fail, never skip: a missing server must not pass as a green run.
        pytest.fail(failure, pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """URL of a database shared by the whole run (tests that need isolation use store_url)."""
    postgres_server.create_database("cyan_session")
    return postgres_server.url("cyan_session")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to a new, empty database: an SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'cyan.db'}"
        return
    # Looked up here, not declared, so SQLite-only runs never start PostgreSQL.
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"cyan_{uuid.uuid4().hex[:16]}"
    server.create_database(name)
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(store_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    """A store on a new SQLite file, for packages whose tests are not about the database
    (they take it as ``store`` by asking for this one)."""
    opened = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'cyan.db'}")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def router() -> Router:
    """A router with its default timeouts and nothing attached."""
    return Router()


# --------------------------------------------------------------------------
# End of store fixtures.
# --------------------------------------------------------------------------
