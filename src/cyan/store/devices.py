"""Devices: their keys, owners and names, and claiming and releasing them."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from cyan.store.database import QUERY_BATCH, Database
from cyan.store.errors import StoreError
from cyan.store.models import Device, DeviceKey, User, utcnow
from cyan.store.records import DeviceRecord, Registration
from cyan.store.validation import device_id_or_error, lookup_id

MAX_NAME_LENGTH = 255


class ClaimOutcome(Enum):
    CLAIMED = "claimed"
    ALREADY_YOURS = "already-yours"
    OWNED_BY_OTHER = "owned-by-other"
    UNKNOWN = "unknown"


class KeyOutcome(Enum):
    """What ``Devices.provision`` did with a key a user sent."""

    STORED = "stored"  # a new device now the caller's, or the caller's own device re-keyed
    CLAIMED = "claimed"  # an unowned device sent with the key it has: now the caller's
    OWNED_BY_OTHER = "owned-by-other"
    # An unowned device sent with another key: re-keying it would lock the real device out,
    # so only the server's operator may (`cyan device add --public-key`).
    KEY_DIFFERS = "key-differs"


class _Unchanged:
    """Marks a field the caller leaves alone (None means "clear it")."""


UNCHANGED = _Unchanged()


class Devices:
    """``store.devices``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self,
        device_id: str,
        public_key_der: bytes,
        *,
        owner_id: int | None,
        name: str | None = None,
    ) -> DeviceRecord:
        """Create a device with its key, or give an existing one a new key.

        An existing device keeps its owner and name unless new ones are given.
        """
        device_id = device_id_or_error(device_id)

        async def work(session: AsyncSession) -> DeviceRecord:
            if owner_id is not None and await session.get(User, owner_id) is None:
                raise StoreError(f"add_device: no user with id {owner_id}")
            device = await self._put_key(session, device_id, public_key_der)
            if owner_id is not None:
                device.owner_id = owner_id
            if name is not None:
                device.name = name
            await session.flush()
            return device.to_record()

        return await self._db.retrying("devices.add", work)

    async def set_key(self, device_id: str, public_key_der: bytes) -> None:
        device_id = device_id_or_error(device_id)

        async def work(session: AsyncSession) -> None:
            await self._put_key(session, device_id, public_key_der)

        await self._db.retrying("devices.set_key", work)

    async def provision(self, device_id: str, public_key_der: bytes, user_id: int) -> KeyOutcome:
        """A user's ``POST /v1/provisioning`` (`particle keys send`/`doctor`), decided in one
        transaction so that no other claim or key can come between the check and the write."""
        device_id = device_id_or_error(device_id)

        async def work(session: AsyncSession) -> KeyOutcome:
            device = await session.get(Device, device_id, with_for_update=True)
            if device is not None and device.owner_id != user_id:
                if device.owner_id is not None:
                    return KeyOutcome.OWNED_BY_OTHER
                key = await session.get(DeviceKey, device_id)
                if key is not None and bytes(key.public_key_der) != public_key_der:
                    return KeyOutcome.KEY_DIFFERS
            claimed = device is not None and device.owner_id is None
            device = await self._put_key(session, device_id, public_key_der)
            device.owner_id = user_id
            return KeyOutcome.CLAIMED if claimed else KeyOutcome.STORED

        return await self._db.retrying("devices.provision", work)

    @staticmethod
    async def _put_key(session: AsyncSession, device_id: str, public_key_der: bytes) -> Device:
        if not public_key_der:
            raise StoreError(f"empty public key for device {device_id}")
        device = await session.get(Device, device_id)
        if device is None:
            device = Device(id=device_id, functions=[], variables={})
            session.add(device)
            # The key row references the device row: make sure it exists first.
            await session.flush()
        key = await session.get(DeviceKey, device_id)
        if key is None:
            session.add(DeviceKey(device_id=device_id, public_key_der=bytes(public_key_der)))
        else:
            key.public_key_der = bytes(public_key_der)
            key.updated_at = utcnow()
        return device

    async def key(self, device_id: str) -> bytes | None:
        lookup = lookup_id(device_id)
        if lookup is None:
            return None
        async with self._db.transaction("devices.key") as session:
            key = await session.scalar(
                sa.select(DeviceKey.public_key_der).where(DeviceKey.device_id == lookup)
            )
            return None if key is None else bytes(key)

    async def get(self, device_id: str) -> DeviceRecord | None:
        lookup = lookup_id(device_id)
        if lookup is None:
            return None
        async with self._db.transaction("devices.get") as session:
            device = await session.get(Device, lookup)
            return None if device is None else device.to_record()

    async def find(self, id_or_name: str, *, owner_id: int | None) -> DeviceRecord | None:
        """By id (any case) first, else by exact name; limited to one owner if given."""
        query = sa.select(Device)
        if owner_id is not None:
            query = query.where(Device.owner_id == owner_id)
        async with self._db.transaction("devices.find") as session:
            lookup = lookup_id(id_or_name)
            if lookup is not None:
                device = await session.scalar(query.where(Device.id == lookup))
                if device is not None:
                    return device.to_record()
            # Names need not be unique across owners: pick the same one every time.
            device = await session.scalar(
                query.where(Device.name == id_or_name).order_by(Device.id).limit(1)
            )
            return None if device is None else device.to_record()

    async def all(self, *, owner_id: int | None) -> list[DeviceRecord]:
        """All devices (or one owner's), named ones by name, then unnamed ones, each by id."""
        # "name IS NULL" first because the dialects disagree on where NULLs sort.
        query = sa.select(Device).order_by(Device.name.is_(None), Device.name, Device.id)
        if owner_id is not None:
            query = query.where(Device.owner_id == owner_id)
        async with self._db.transaction("devices.all") as session:
            return [d.to_record() for d in await session.scalars(query)]

    async def claim(self, device_id: str, user_id: int) -> ClaimOutcome:
        """Make an unowned device the user's. Another owner's device is never taken: a
        self-hosted cloud has no transfer approval, so that owner must release it first."""
        lookup = lookup_id(device_id)
        if lookup is None:
            return ClaimOutcome.UNKNOWN
        async with self._db.transaction("devices.claim") as session:
            device = await session.get(Device, lookup, with_for_update=True)
            if device is None:
                return ClaimOutcome.UNKNOWN
            if device.owner_id == user_id:
                return ClaimOutcome.ALREADY_YOURS
            if device.owner_id is not None:
                return ClaimOutcome.OWNED_BY_OTHER
            device.owner_id = user_id
            return ClaimOutcome.CLAIMED

    async def release(self, device_id: str, user_id: int) -> bool:
        """Unclaim the user's device (its key stays, so it can be claimed again)."""
        async with self._db.transaction("devices.release") as session:
            result = await session.execute(
                sa.update(Device)
                .where(Device.id == device_id.lower(), Device.owner_id == user_id)
                .values(owner_id=None)
            )
            return bool(getattr(result, "rowcount", 0))

    async def update(
        self,
        device_id: str,
        *,
        name: str | _Unchanged | None = UNCHANGED,
        notes: str | _Unchanged | None = UNCHANGED,
    ) -> DeviceRecord:
        async with self._db.transaction("devices.update") as session:
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

    async def registration(self, device_id: str) -> Registration | None:
        """The device's public key and owner in one query: what a handshake needs."""
        async with self._db.transaction("devices.registration") as session:
            row = (
                await session.execute(
                    sa.select(DeviceKey.public_key_der, Device.owner_id)
                    .join(Device, Device.id == DeviceKey.device_id)
                    .where(DeviceKey.device_id == device_id.lower())
                )
            ).first()
            return None if row is None else Registration(bytes(row[0]), row[1])

    async def all_registrations(self) -> dict[str, Registration]:
        """Every device's key and owner, for a gateway to hold in memory from the start."""
        async with self._db.transaction("devices.all_registrations") as session:
            rows = await session.execute(
                sa.select(DeviceKey.device_id, DeviceKey.public_key_der, Device.owner_id).join(
                    Device, Device.id == DeviceKey.device_id
                )
            )
            return {row[0]: Registration(bytes(row[1]), row[2]) for row in rows}

    async def owners(self, device_ids: Iterable[str]) -> dict[str, int | None]:
        """The owner of each of ``device_ids`` the store knows (None: unowned), in one query:
        what the API's stream guard checks open streams against."""
        ids = sorted({device_id.lower() for device_id in device_ids})
        owners: dict[str, int | None] = {}
        async with self._db.transaction("devices.owners") as session:
            for start in range(0, len(ids), QUERY_BATCH):
                rows = await session.execute(
                    sa.select(Device.id, Device.owner_id).where(
                        Device.id.in_(ids[start : start + QUERY_BATCH])
                    )
                )
                owners.update({row[0]: row[1] for row in rows})
        return owners
