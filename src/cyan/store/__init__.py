"""Cyan's database: users, access tokens, devices, failures and updates, on SQLite or
PostgreSQL.

Names are imported on first use (PEP 562): the records and errors are plain Python, while
the store itself brings SQLAlchemy, about 0.2 s of imports. The gateway needs only the
former to start listening for devices, and does so before the store is open (node.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# name -> the module that defines it
_HOMES = {
    "MAX_NAME_LENGTH": "devices",
    "UNCHANGED": "devices",
    "ClaimOutcome": "devices",
    "KeyOutcome": "devices",
    "AccountError": "errors",
    "StoreError": "errors",
    "StoreUnavailable": "errors",
    "ConnectionFailure": "records",
    "DeviceRecord": "records",
    "DroppedEvents": "records",
    "FirmwareUpdateRecord": "records",
    "PresenceUpdate": "records",
    "Registration": "records",
    "SessionUpdate": "records",
    "UserRecord": "records",
    "Store": "store",
    "TokenRecord": "tokens",
    "AccountRecord": "users",
    "UnknownUser": "users",
    "UserExists": "users",
    "VARIABLE_TYPES": "validation",
}

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
