"""Over-the-air updates in the store: one row per update, so that a restart mid-update
ends as a recorded failure with its reason instead of an update that never finishes.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from cyan.protocol.transfer import UpdateState
from cyan.store.database import Database
from cyan.store.models import FirmwareUpdate
from cyan.store.records import FirmwareUpdateRecord
from cyan.store.validation import aware, device_id_or_error


class Updates:
    """``store.updates``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def begin(
        self,
        device_id: str,
        *,
        file_name: str,
        file_path: str,
        size: int,
        sha256: str,
        module: str,
        at: datetime,
    ) -> FirmwareUpdateRecord:
        row = FirmwareUpdate(
            device_id=device_id_or_error(device_id),
            file_name=file_name[:255],
            file_path=file_path,
            size=size,
            sha256=sha256,
            module=module,
            state=UpdateState.SENDING,
            bytes_sent=0,
            chunks_resent=0,
            started_at=aware(at, "at"),
        )
        async with self._db.transaction("updates.begin") as session:
            session.add(row)
            await session.flush()
            return row.to_record()

    async def end(
        self,
        update_id: int,
        *,
        state: str,
        fast: bool | None,
        bytes_sent: int,
        chunks_resent: int,
        failure: str | None,
        at: datetime,
    ) -> None:
        """Record how it ended; the binary is gone from the data directory by now."""
        async with self._db.transaction("updates.end") as session:
            await session.execute(
                sa.update(FirmwareUpdate)
                .where(FirmwareUpdate.id == update_id)
                .values(
                    state=state,
                    fast=fast,
                    bytes_sent=bytes_sent,
                    chunks_resent=chunks_resent,
                    failure=failure,
                    finished_at=aware(at, "at"),
                    file_path=None,
                )
            )

    async def latest(self, device_id: str) -> FirmwareUpdateRecord | None:
        async with self._db.transaction("updates.latest") as session:
            row = await session.scalar(
                sa.select(FirmwareUpdate)
                .where(FirmwareUpdate.device_id == device_id.lower())
                .order_by(FirmwareUpdate.id.desc())
                .limit(1)
            )
            return row.to_record() if row is not None else None

    async def fail_unfinished(self, reason: str, at: datetime) -> list[FirmwareUpdateRecord]:
        """At start: updates a previous run left sending fail with ``reason``; returns them
        as they were (their binaries are the caller's to remove)."""
        async with self._db.transaction("updates.fail_unfinished") as session:
            rows = list(
                await session.scalars(
                    sa.select(FirmwareUpdate).where(FirmwareUpdate.state == UpdateState.SENDING)
                )
            )
            found = [row.to_record() for row in rows]
            for row in rows:
                row.state, row.failure = UpdateState.FAILED, reason
                row.finished_at, row.file_path = aware(at, "at"), None
            return found
