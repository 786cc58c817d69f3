"""Writes a device's owner makes: claim and release, name and notes, claim codes."""

from __future__ import annotations

import hashlib
import secrets
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from enum import Enum

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from cyan.store.errors import StoreError
from cyan.store.models import ClaimCode, Device
from cyan.store.records import DeviceRecord
from cyan.store.validation import lookup_id

# Device OS keeps 63 characters of claim code (CLAIM_CODE_SIZE) and sends them back in its
# spark/device/claim/code event; 47 random bytes make exactly 63 URL-safe characters.
CLAIM_CODE_BYTES = 47
CLAIM_CODE_TTL = timedelta(days=1)
MAX_NAME_LENGTH = 255


class ClaimOutcome(Enum):
    CLAIMED = "claimed"
    ALREADY_YOURS = "already-yours"
    OWNED_BY_OTHER = "owned-by-other"
    UNKNOWN = "unknown"


class _Unchanged:
    """Marks a field the caller leaves alone (None means "clear it")."""


UNCHANGED = _Unchanged()


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


class DeviceWrites:
    """Mixed into ``Store``, which provides ``_transaction``."""

    def _transaction(self, what: str) -> AbstractAsyncContextManager[AsyncSession]:
        raise NotImplementedError

    async def claim_device(self, device_id: str, user_id: int) -> ClaimOutcome:
        """Make an unowned device the user's. Another owner's device is never taken: a
        self-hosted cloud has no transfer approval, so that owner must release it first."""
        lookup = lookup_id(device_id)
        if lookup is None:
            return ClaimOutcome.UNKNOWN
        async with self._transaction("claim_device") as session:
            device = await session.get(Device, lookup, with_for_update=True)
            if device is None:
                return ClaimOutcome.UNKNOWN
            if device.owner_id == user_id:
                return ClaimOutcome.ALREADY_YOURS
            if device.owner_id is not None:
                return ClaimOutcome.OWNED_BY_OTHER
            device.owner_id = user_id
            return ClaimOutcome.CLAIMED

    async def release_device(self, device_id: str, user_id: int) -> bool:
        """Unclaim the user's device (its key stays, so it can be claimed again)."""
        async with self._transaction("release_device") as session:
            result = await session.execute(
                sa.update(Device)
                .where(Device.id == device_id.lower(), Device.owner_id == user_id)
                .values(owner_id=None)
            )
            return bool(getattr(result, "rowcount", 0))

    async def update_device(
        self,
        device_id: str,
        *,
        name: str | _Unchanged | None = UNCHANGED,
        notes: str | _Unchanged | None = UNCHANGED,
    ) -> DeviceRecord:
        async with self._transaction("update_device") as session:
            device = await session.get(Device, device_id.lower())
            if device is None:
                raise StoreError(f"unknown device {device_id}")
            if not isinstance(name, _Unchanged):
                if name is not None and not 0 < len(name) <= MAX_NAME_LENGTH:
                    raise StoreError(f"a device name has 1 to {MAX_NAME_LENGTH} characters")
                device.name = name
            if not isinstance(notes, _Unchanged):
                device.notes = notes
            return device.to_record()

    async def create_claim_code(self, user_id: int, *, now: datetime | None = None) -> str:
        code = secrets.token_urlsafe(CLAIM_CODE_BYTES)
        created = now or datetime.now(UTC)
        async with self._transaction("create_claim_code") as session:
            session.add(
                ClaimCode(
                    code_hash=_code_hash(code),
                    user_id=user_id,
                    created_at=created,
                    expires_at=created + CLAIM_CODE_TTL,
                )
            )
        return code

    async def redeem_claim_code(self, code: str, device_id: str) -> int | None:
        """Give the device to the code's user; the user id, or None if the code is no good
        (unknown, spent, expired) or the device belongs to someone else."""
        async with self._transaction("redeem_claim_code") as session:
            claim = await session.get(ClaimCode, _code_hash(code.strip()), with_for_update=True)
            if claim is None or claim.device_id is not None:
                return None
            if claim.expires_at < datetime.now(UTC):
                return None
            device = await session.get(Device, device_id.lower(), with_for_update=True)
            if device is None or device.owner_id not in (None, claim.user_id):
                return None
            device.owner_id = claim.user_id
            claim.device_id = device.id
            return claim.user_id
