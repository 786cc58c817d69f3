"""The errors the store raises on purpose: ``StoreError`` and its kinds."""

from __future__ import annotations

from cyan.errors import CyanError


class StoreError(CyanError):
    """The database refused a change, lost its connection, or was handed bad input."""


class StoreUnavailable(StoreError):
    """The database could not be reached or was busy: the same write may work later.

    Every other StoreError means the database refused this particular write.
    """


class MigrationFailed(StoreError):
    """Alembic could not bring the schema to head (e.g. a database from a newer Cyan)."""


class AccountError(StoreError):
    """A username, password or token id the store refuses (bad input, not a database
    failure)."""
