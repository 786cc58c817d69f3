"""Claim codes: a user's one-time code that a device presents to become theirs."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from cyan.store.database import Database
from cyan.store.models import ClaimCode, Device

# Device OS keeps 63 characters of claim code (CLAIM_CODE_SIZE) and sends them back in its
# spark/device/claim/code event; 47 random bytes make exactly 63 URL-safe characters.
CLAIM_CODE_BYTES = 47


CLAIM_CODE_TTL = timedelta(days=1)


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


class ClaimCodes:
    """``store.claims``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, user_id: int, *, now: datetime | None = None) -> str:
        code = secrets.token_urlsafe(CLAIM_CODE_BYTES)
        created = now or datetime.now(UTC)
        async with self._db.transaction("claims.create") as session:
            session.add(
                ClaimCode(
                    code_hash=_code_hash(code),
                    user_id=user_id,
                    created_at=created,
                    expires_at=created + CLAIM_CODE_TTL,
                )
            )
        return code

    async def redeem(self, code: str, device_id: str) -> int | None:
        """Give the device to the code's user; the user id, or None if the code is no good
        (unknown, spent, expired) or the device belongs to someone else."""
        async with self._db.transaction("claims.redeem") as session:
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
