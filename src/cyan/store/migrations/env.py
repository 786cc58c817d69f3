"""Alembic environment for Cyan's store.

Cyan runs migrations itself (``cyan.store.migrate``) on a connection it already
holds, so online mode never builds an engine here: the caller's connection
arrives through ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from cyan.store.models import Base

target_metadata = Base.metadata


def _render_as_batch(dialect_name: str) -> bool:
    # SQLite cannot ALTER most things in place; batch mode rebuilds the table.
    return dialect_name == "sqlite"


def run_migrations_offline() -> None:
    """Emit SQL text instead of executing it (``alembic upgrade --sql``)."""
    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("offline migrations need sqlalchemy.url set on the Alembic config")
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "Cyan's migrations run through cyan.store.migrate, which passes a connection "
            'in config.attributes["connection"]'
        )
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=_render_as_batch(connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
