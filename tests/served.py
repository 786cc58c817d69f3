"""A data directory as `cyan serve` leaves it, for tests of the commands that need one
(every command but serve refuses a directory serve never made)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cyan.datadir import load_or_create_server_key
from cyan.settings import sqlite_url
from cyan.store import Store


def served_data_dir(path: Path) -> Path:
    """The server key and a migrated SQLite store in ``path``; call it off the loop."""
    load_or_create_server_key(path)

    async def migrate() -> None:
        store = await Store.open(sqlite_url(path))
        await store.close()

    asyncio.run(migrate())
    return path
