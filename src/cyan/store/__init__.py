"""Cyan's database: users, access tokens, devices, failures and updates, on SQLite or
PostgreSQL."""

from cyan.store.devices import MAX_NAME_LENGTH, UNCHANGED, ClaimOutcome, KeyOutcome
from cyan.store.errors import AccountError, StoreError, StoreUnavailable
from cyan.store.records import (
    ConnectionFailure,
    DeviceRecord,
    DroppedEvents,
    FirmwareUpdateRecord,
    PresenceUpdate,
    Registration,
    SessionUpdate,
    UserRecord,
)
from cyan.store.store import Store
from cyan.store.tokens import TokenRecord
from cyan.store.users import AccountRecord, UnknownUser, UserExists
from cyan.store.validation import VARIABLE_TYPES

__all__ = [
    "MAX_NAME_LENGTH",
    "UNCHANGED",
    "VARIABLE_TYPES",
    "AccountError",
    "AccountRecord",
    "ClaimOutcome",
    "ConnectionFailure",
    "DeviceRecord",
    "DroppedEvents",
    "FirmwareUpdateRecord",
    "KeyOutcome",
    "PresenceUpdate",
    "Registration",
    "SessionUpdate",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "TokenRecord",
    "UnknownUser",
    "UserExists",
    "UserRecord",
]
