"""The store: every read and write Cyan makes to its database, as small repositories over
one database (database.py), one rule in one place each.

    store.users      accounts and passwords          users.py
    store.tokens     access tokens (hashes only)     tokens.py
    store.devices    devices, keys, owners, names    devices.py
    store.claims     claim codes                     claims.py
    store.presence   handshakes, describes, online   presence.py
    store.failures   failed connections              failures.py
    store.updates    over-the-air updates            updates.py

Each public method is one short transaction and returns plain records, so callers never
hold a session across an ``await`` of their own.
"""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from cyan.store import migrate
from cyan.store.claims import ClaimCodes
from cyan.store.database import Database, reason
from cyan.store.devices import Devices
from cyan.store.errors import MigrationFailed, StoreError
from cyan.store.failures import Failures
from cyan.store.presence import Presence
from cyan.store.tokens import Tokens
from cyan.store.updates import Updates
from cyan.store.users import Users


class Store:
    """Open with ``await Store.open(url)``; close with ``await store.close()``."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.users = Users(db)
        self.tokens = Tokens(db)
        self.devices = Devices(db)
        self.claims = ClaimCodes(db)
        self.presence = Presence(db)
        self.failures = Failures(db)
        self.updates = Updates(db)

    @classmethod
    async def open(cls, url: str) -> Store:
        """Connect and migrate to the newest schema (a no-op on an up-to-date database)."""
        parsed = migrate.parse_url(url)
        shown = parsed.render_as_string(hide_password=True)
        try:
            engine = migrate.create_engine(parsed)
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(
                f"cannot open database {shown}: {reason(exc)}", fix=migrate.URL_FIX
            ) from exc
        try:
            await migrate.upgrade(engine)
        except (SQLAlchemyError, OSError, MigrationFailed) as exc:
            await engine.dispose()
            raise StoreError(
                f"cannot open database {shown}: {reason(exc)}",
                fix="Check that the database server is running and the URL is right.",
            ) from exc
        except BaseException:
            await engine.dispose()
            raise
        return cls(Database(engine, parsed))

    async def close(self) -> None:
        await self._db.close()

    @property
    def url(self) -> str:
        return self._db.url.render_as_string(hide_password=False)

    def __repr__(self) -> str:
        return f"Store({self._db.url.render_as_string(hide_password=True)!r})"
