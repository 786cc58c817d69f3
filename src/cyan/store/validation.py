"""Checks on values before they reach the database, shared by the store's modules."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from cyan.protocol.payloads import VARIABLE_TYPE_NAMES
from cyan.store.errors import StoreError

_DEVICE_ID = re.compile(r"[0-9a-f]{24}")
VARIABLE_TYPES = frozenset(VARIABLE_TYPE_NAMES.values())


def device_id_or_error(device_id: str) -> str:
    normal = device_id.lower()
    if not _DEVICE_ID.fullmatch(normal):
        raise StoreError(f"invalid device id {device_id!r}: expected 24 hexadecimal characters")
    return normal


def lookup_id(device_id: str) -> str | None:
    normal = device_id.lower()
    return normal if _DEVICE_ID.fullmatch(normal) else None


def aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise StoreError(f"{what} must be timezone-aware, got {value.isoformat()}")
    return value


def check_variables(variables: Mapping[str, str]) -> None:
    unknown = {kind for kind in variables.values() if kind not in VARIABLE_TYPES}
    if unknown:
        raise StoreError(
            f"unknown variable types {sorted(unknown)}; expected {sorted(VARIABLE_TYPES)}"
        )
