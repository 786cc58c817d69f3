"""Cyan's database: users, access tokens and devices, on SQLite or PostgreSQL."""

from cyan.store.errors import StoreError
from cyan.store.records import DeviceRecord, PresenceUpdate, UserRecord
from cyan.store.store import VARIABLE_TYPES, Store

__all__ = [
    "VARIABLE_TYPES",
    "DeviceRecord",
    "PresenceUpdate",
    "Store",
    "StoreError",
    "UserRecord",
]
