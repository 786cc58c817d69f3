"""Cyan's database: users, access tokens and devices, on SQLite or PostgreSQL."""

from cyan.store.errors import StoreError
from cyan.store.records import (
    DeviceRecord,
    PresenceUpdate,
    Registration,
    SessionUpdate,
    UserRecord,
)
from cyan.store.store import Store
from cyan.store.validation import VARIABLE_TYPES

__all__ = [
    "VARIABLE_TYPES",
    "DeviceRecord",
    "PresenceUpdate",
    "Registration",
    "SessionUpdate",
    "Store",
    "StoreError",
    "UserRecord",
]
