"""The one error the store raises on purpose."""

from __future__ import annotations

from cyan.errors import CyanError


class StoreError(CyanError):
    """The database refused a change, lost its connection, or was handed bad input."""
