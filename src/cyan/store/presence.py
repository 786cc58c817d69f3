"""Writes that follow device connections: handshakes, describes, presence.

The gateway keeps presence in memory and hands these over in batches (design.md,
"Shape for speed and scale"), so none of them sits on the per-message path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from cyan.store.database import Database
from cyan.store.errors import StoreError
from cyan.store.models import Device, UTCDateTime
from cyan.store.records import DroppedEvents, PresenceUpdate, SessionUpdate
from cyan.store.validation import aware, check_variables, device_id_or_error


class Presence:
    """``store.presence``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record_sessions(self, updates: Sequence[SessionUpdate]) -> None:
        """Apply a batch of handshakes and describes in one transaction; unknown ids skipped."""
        handshakes = [
            {
                "b_id": u.device_id,
                "b_ip": u.ip,
                "b_at": aware(u.handshake_at, "handshake_at"),
                "b_platform": u.platform_id,
                "b_product": u.product_id,
                "b_version": u.product_firmware_version,
            }
            for u in updates
            if u.handshake_at is not None
        ]
        describes = [
            {
                "b_id": u.device_id,
                "b_functions": list(u.functions),
                "b_variables": dict(u.variables),
            }
            for u in updates
            if u.functions is not None and u.variables is not None
        ]
        for u in updates:
            if u.variables is not None:
                check_variables(u.variables)
        systems = [
            {"b_id": u.device_id, "b_system": u.system_firmware_version}
            for u in updates
            if u.system_firmware_version is not None
        ]
        modules = [
            {"b_id": u.device_id, "b_modules": [dict(m) for m in u.modules]}
            for u in updates
            if u.modules is not None
        ]
        table = cast(sa.Table, Device.__table__)
        by_id = table.c.id == sa.bindparam("b_id")
        async with self._db.transaction("presence.record_sessions") as session:
            # Core executemany through the session's connection: one round trip per kind.
            connection = await session.connection()
            if handshakes:
                await connection.execute(
                    sa.update(table)
                    .where(by_id)
                    .values(
                        last_ip=sa.bindparam("b_ip"),
                        last_handshake_at=sa.bindparam("b_at", type_=UTCDateTime()),
                        last_heard=sa.bindparam("b_at", type_=UTCDateTime()),
                        online=True,
                        platform_id=sa.bindparam("b_platform"),
                        product_id=sa.bindparam("b_product"),
                        product_firmware_version=sa.bindparam("b_version"),
                    ),
                    handshakes,
                )
            if describes:
                await connection.execute(
                    sa.update(table)
                    .where(by_id)
                    .values(
                        functions=sa.bindparam("b_functions", type_=table.c.functions.type),
                        variables=sa.bindparam("b_variables", type_=table.c.variables.type),
                    ),
                    describes,
                )
            if systems:
                await connection.execute(
                    sa.update(table)
                    .where(by_id)
                    .values(system_firmware_version=sa.bindparam("b_system")),
                    systems,
                )
            if modules:
                await connection.execute(
                    sa.update(table)
                    .where(by_id)
                    .values(modules=sa.bindparam("b_modules", type_=table.c.modules.type)),
                    modules,
                )

    async def _existing_device(self, session: AsyncSession, device_id: str) -> Device:
        device = await session.get(Device, device_id)
        if device is None:
            raise StoreError(
                f"unknown device {device_id}",
                fix="Add the device (cyan device add) or let it claim a key first.",
            )
        return device

    async def record_handshake(
        self,
        device_id: str,
        *,
        ip: str,
        at: datetime,
        platform_id: int,
        product_id: int,
        product_firmware_version: int,
    ) -> None:
        device_id = device_id_or_error(device_id)
        aware(at, "at")
        async with self._db.transaction("presence.record_handshake") as session:
            device = await self._existing_device(session, device_id)
            device.last_ip = ip
            device.last_handshake_at = at
            device.last_heard = at
            device.online = True
            device.platform_id = platform_id
            device.product_id = product_id
            device.product_firmware_version = product_firmware_version

    async def record_describe(
        self,
        device_id: str,
        *,
        functions: Sequence[str],
        variables: Mapping[str, str],
        system_firmware_version: str | None = None,
    ) -> None:
        device_id = device_id_or_error(device_id)
        if isinstance(functions, str):
            # A bare string is a Sequence[str] too; storing its letters would be wrong.
            raise StoreError("functions must be a sequence of names, not one string")
        check_variables(variables)
        async with self._db.transaction("presence.record_describe") as session:
            device = await self._existing_device(session, device_id)
            device.functions = list(functions)
            device.variables = dict(variables)
            if system_firmware_version is not None:
                device.system_firmware_version = system_firmware_version

    async def record(self, updates: Sequence[PresenceUpdate]) -> None:
        """Apply a batch of online/last-heard changes at once; unknown devices are skipped."""
        params = [
            {
                "b_id": update.device_id.lower(),
                "b_online": update.online,
                "b_heard": aware(update.last_heard, "last_heard"),
            }
            for update in updates
        ]
        if not params:
            return
        table = cast(sa.Table, Device.__table__)
        statement = (
            sa.update(table)
            .where(table.c.id == sa.bindparam("b_id"))
            .values(
                online=sa.bindparam("b_online", type_=sa.Boolean()),
                last_heard=sa.bindparam("b_heard", type_=UTCDateTime()),
            )
        )
        async with self._db.transaction("presence.record") as session:
            # Core executemany through the session's connection: the ORM's bulk
            # UPDATE would insist every id exists.
            connection = await session.connection()
            await connection.execute(statement, params)

    async def count_dropped_events(self, counts: Sequence[DroppedEvents]) -> None:
        """Add a batch of dropped-event counts to their devices; unknown devices skipped."""
        params = [
            {
                "b_id": count.device_id.lower(),
                "b_rate": count.over_rate,
                "b_big": count.too_big,
                "b_at": aware(count.last_at, "last_at"),
            }
            for count in counts
        ]
        if not params:
            return
        table = cast(sa.Table, Device.__table__)
        statement = (
            sa.update(table)
            .where(table.c.id == sa.bindparam("b_id"))
            .values(
                events_over_rate=table.c.events_over_rate + sa.bindparam("b_rate"),
                events_too_big=table.c.events_too_big + sa.bindparam("b_big"),
                last_event_dropped_at=sa.bindparam("b_at", type_=UTCDateTime()),
            )
        )
        async with self._db.transaction("presence.count_dropped_events") as session:
            connection = await session.connection()
            await connection.execute(statement, params)

    async def mark_all_offline(self) -> None:
        async with self._db.transaction("presence.mark_all_offline") as session:
            await session.execute(
                sa.update(Device).where(Device.online.is_(True)).values(online=False)
            )
