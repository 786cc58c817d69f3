"""The bounded history of failed device connections (issue: diagnosis).

Kept per device, and per remote address for connections that never named a device (a
device holding another server's key cannot be identified). Bounded so that a device
retrying every second for a month, or a port scanner, costs a fixed number of rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from cyan.store.database import Database
from cyan.store.models import ConnectionFailureRow
from cyan.store.records import ConnectionFailure
from cyan.store.validation import aware

FAILURES_PER_DEVICE = 20


FAILURES_PER_ADDRESS = 20


# Unnamed connections can come from anywhere; past this many, the oldest go first.
UNNAMED_FAILURES_MAX = 5_000


MAX_REASON_CHARS = 500


class Failures:
    """``store.failures``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, failures: Sequence[ConnectionFailure]) -> None:
        """Append a batch and trim every history it touched back to its bound."""
        if not failures:
            return
        rows = [
            ConnectionFailureRow(
                at=aware(failure.at, "at"),
                device_id=failure.device_id.lower() if failure.device_id else None,
                remote_address=failure.remote_address[:64],
                stage=failure.stage,
                reason=failure.reason[:MAX_REASON_CHARS],
            )
            for failure in failures
        ]
        devices = {row.device_id for row in rows if row.device_id}
        addresses = {row.remote_address for row in rows if row.device_id is None}
        async with self._db.transaction("failures.record") as session:
            session.add_all(rows)
            await session.flush()
            for device_id in devices:
                await _trim(
                    session, ConnectionFailureRow.device_id == device_id, FAILURES_PER_DEVICE
                )
            unnamed = ConnectionFailureRow.device_id.is_(None)
            for address in addresses:
                await _trim(
                    session,
                    sa.and_(unnamed, ConnectionFailureRow.remote_address == address),
                    FAILURES_PER_ADDRESS,
                )
            if addresses:
                await _trim(session, unnamed, UNNAMED_FAILURES_MAX)

    async def for_device(
        self, device_id: str, *, limit: int = FAILURES_PER_DEVICE
    ) -> list[ConnectionFailure]:
        """The device's failures, newest first."""
        return await self._failures(
            "device_failures", ConnectionFailureRow.device_id == device_id.lower(), limit
        )

    async def unnamed(
        self,
        *,
        since: datetime | None = None,
        remote_address: str | None = None,
        limit: int = FAILURES_PER_ADDRESS,
    ) -> list[ConnectionFailure]:
        """Failures of connections that never named a device, newest first."""
        where: list[sa.ColumnElement[bool]] = [ConnectionFailureRow.device_id.is_(None)]
        if since is not None:
            where.append(ConnectionFailureRow.at >= aware(since, "since"))
        if remote_address is not None:
            where.append(ConnectionFailureRow.remote_address == remote_address)
        return await self._failures("unnamed_failures", sa.and_(*where), limit)

    async def _failures(
        self, what: str, where: sa.ColumnElement[bool], limit: int
    ) -> list[ConnectionFailure]:
        async with self._db.transaction(what) as session:
            rows = await session.scalars(
                sa.select(ConnectionFailureRow)
                .where(where)
                .order_by(ConnectionFailureRow.id.desc())
                .limit(limit)
            )
            return [row.to_record() for row in rows]


async def _trim(session: AsyncSession, where: sa.ColumnElement[bool], keep: int) -> None:
    """Delete all but the newest ``keep`` rows matching ``where``."""
    oldest_kept = await session.scalar(
        sa.select(ConnectionFailureRow.id)
        .where(where)
        .order_by(ConnectionFailureRow.id.desc())
        .offset(keep - 1)
        .limit(1)
    )
    if oldest_kept is not None:
        await session.execute(
            sa.delete(ConnectionFailureRow).where(where, ConnectionFailureRow.id < oldest_kept)
        )
