"""Opening a database: the engine, SQLite's connection settings, and bringing
the schema up to date with Alembic, from code.

There is no alembic.ini: the config is built here, pointing at the migrations
folder shipped inside the package, so an installed Cyan can migrate its own
database wherever it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from cyan.store.errors import MigrationFailed, StoreError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# The newest migration's revision. A database already there is opened without Alembic, whose
# import costs a short CLI command (`cyan device why`) half a second; tests/store checks
# that this is Alembic's own head.
SCHEMA_HEAD = "0005"
# Async drivers picked when a URL names only the database ("postgresql://...").
DEFAULT_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}
URL_FIX = "Use sqlite+aiosqlite:///path/to/cyan.db or postgresql+asyncpg://user:pass@host/db."


def parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"not a database URL: {exc}", fix=URL_FIX) from exc
    backend = parsed.get_backend_name()
    if backend == "postgres":
        backend = "postgresql"
    if backend not in DEFAULT_DRIVERS:
        raise StoreError(f"unsupported database {backend!r}", fix=URL_FIX)
    if "+" not in parsed.drivername:
        parsed = parsed.set(drivername=f"{backend}+{DEFAULT_DRIVERS[backend]}")
    return parsed


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    # Per-connection settings: SQLite forgets all but journal_mode on reconnect.
    # WAL lets readers proceed during a write; NORMAL is durable across app
    # crashes under WAL (only an OS crash can drop the last commits).
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def create_engine(url: URL) -> AsyncEngine:
    if url.get_backend_name() != "sqlite":
        # pre_ping: a PostgreSQL restart must not surface as one failed request.
        return create_async_engine(url, pool_pre_ping=True)
    database = url.database or ""
    in_memory = database in ("", ":memory:") or url.query.get("mode") == "memory"
    if in_memory:
        # Every new connection to :memory: is a new, empty database: share one.
        engine = create_async_engine(url, poolclass=StaticPool)
    else:
        if not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    # Config values go through ConfigParser interpolation; a "%" in the install
    # path would otherwise be read as an interpolation marker.
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def upgrade_connection(connection: Connection) -> None:
    """Upgrade to head on a synchronous connection (runs inside ``run_sync``)."""
    if _at_head(connection):
        return
    from alembic import command
    from alembic.util import CommandError

    try:
        command.upgrade(alembic_config(connection), "head")
    except CommandError as exc:  # e.g. a database stamped by a newer Cyan
        raise MigrationFailed(str(exc)) from exc


async def upgrade(engine: AsyncEngine) -> None:
    """Upgrade to head; a no-op when the database is already there.

    On PostgreSQL the whole upgrade is one transaction. SQLite's driver runs DDL
    outside transactions, so a crash mid-upgrade there can leave a partial step.
    """
    async with engine.begin() as conn:
        await conn.run_sync(upgrade_connection)


def _at_head(connection: Connection) -> bool:
    """Whether the schema is at SCHEMA_HEAD, read without Alembic."""
    if not sa.inspect(connection).has_table("alembic_version"):
        return False
    versions = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
    return list(versions.scalars()) == [SCHEMA_HEAD]
