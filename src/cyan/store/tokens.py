"""Access tokens, kept only as sha256 hashes: the store can say which tokens exist, never
what they are. One rule says which tokens are live (``_live``).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from cyan.store.database import QUERY_BATCH, Database
from cyan.store.errors import AccountError, StoreError
from cyan.store.models import AccessToken, User, utcnow
from cyan.store.records import UserRecord
from cyan.store.validation import aware

# How many hex characters of a token's sha256 are shown: enough to tell a user's tokens
# apart (48 bits), far too few to help anyone guess the 160-bit token behind them.
TOKEN_ID_CHARS = 12


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """An access token as the store knows it: by the start of its hash, never the token."""

    token_id: str  # the first TOKEN_ID_CHARS hex characters of sha256(token)
    user_id: int
    client_id: str
    created_at: datetime
    expires_at: datetime | None  # None: never expires


def live_token() -> sa.ColumnElement[bool]:
    """The one rule of which tokens count: unexpired (or never expiring) ones. Revoked
    tokens are deleted, so they are not there to count."""
    return sa.or_(AccessToken.expires_at.is_(None), AccessToken.expires_at > utcnow())


def token_hash(token: str) -> str:
    # The one digest tokens are kept and found by (tests/store/test_store.py checks the
    # stored row against SHA-256 of the token handed out).
    return hashlib.sha256(token.encode()).hexdigest()


def _token_record(row: AccessToken) -> TokenRecord:
    return TokenRecord(
        token_id=row.token_hash[:TOKEN_ID_CHARS],
        user_id=row.user_id,
        client_id=row.client_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
    )


class Tokens:
    """``store.tokens``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self, user_id: int, *, client_id: str = "cyan", expires_at: datetime | None = None
    ) -> str:
        if expires_at is not None:
            aware(expires_at, "expires_at")
        token = secrets.token_hex(20)
        async with self._db.transaction("tokens.create") as session:
            if await session.get(User, user_id) is None:
                raise StoreError(f"create_token: no user with id {user_id}")
            session.add(
                AccessToken(
                    token_hash=token_hash(token),
                    user_id=user_id,
                    client_id=client_id,
                    expires_at=expires_at,
                )
            )
        return token

    async def user_for(self, token: str) -> UserRecord | None:
        """The token's user; None if the token is unknown, revoked or expired."""
        async with self._db.transaction("tokens.user_for") as session:
            query = (
                sa.select(User)
                .join(AccessToken, User.id == AccessToken.user_id)
                .where(AccessToken.token_hash == token_hash(token), live_token())
            )
            user = await session.scalar(query)
            return None if user is None else user.to_record()

    async def live_among(self, tokens: Iterable[str]) -> set[str]:
        """Which of ``tokens`` are live, in one query per few hundred: what the API's
        stream guard checks open event streams against."""
        by_hash = {token_hash(token): token for token in tokens}
        hashes = sorted(by_hash)
        live: set[str] = set()
        async with self._db.transaction("tokens.live_among") as session:
            for start in range(0, len(hashes), QUERY_BATCH):
                found = await session.scalars(
                    sa.select(AccessToken.token_hash).where(
                        AccessToken.token_hash.in_(hashes[start : start + QUERY_BATCH]),
                        live_token(),
                    )
                )
                live.update(by_hash[found_hash] for found_hash in found)
        return live

    async def revoke(self, token: str) -> bool:
        async with self._db.transaction("tokens.revoke") as session:
            found = await session.get(AccessToken, token_hash(token))
            if found is None:
                return False
            await session.delete(found)
            return True

    async def all(self, user_id: int | None) -> list[TokenRecord]:
        """Unexpired tokens of one user (or of everyone when None), oldest first."""
        query = (
            sa.select(AccessToken)
            .where(live_token())
            .order_by(AccessToken.created_at, AccessToken.token_hash)
        )
        if user_id is not None:
            query = query.where(AccessToken.user_id == user_id)
        async with self._db.transaction("tokens.all") as session:
            return [_token_record(row) for row in await session.scalars(query)]

    async def info(self, token: str) -> TokenRecord | None:
        """The token's record; None if unknown, revoked or expired."""
        # A lookup by the token's sha256, not a comparison of secrets: the query time
        # tells a prober about the hash, which does not help to find a token.
        async with self._db.transaction("tokens.info") as session:
            row = await session.scalar(
                sa.select(AccessToken).where(
                    AccessToken.token_hash == token_hash(token), live_token()
                )
            )
            return None if row is None else _token_record(row)

    async def revoke_id(self, token_id: str) -> int:
        """Revoke the one token whose hash starts with ``token_id`` (from list_tokens).

        Returns how many were revoked: 0 if none matches; more than one match revokes
        nothing and raises, since a prefix that short is a typo, not a choice.
        """
        prefix = token_id.lower()
        if len(prefix) < 8 or any(ch not in "0123456789abcdef" for ch in prefix):
            raise AccountError(
                f"{token_id!r} is not a token id", fix="Copy the id from: cyan token list"
            )
        async with self._db.transaction("tokens.revoke_id") as session:
            hashes = list(
                await session.scalars(
                    sa.select(AccessToken.token_hash).where(
                        AccessToken.token_hash.startswith(prefix, autoescape=True)
                    )
                )
            )
            if len(hashes) > 1:
                raise AccountError(
                    f"{len(hashes)} tokens start with {token_id}", fix="Give more characters."
                )
            if hashes:
                await session.execute(
                    sa.delete(AccessToken).where(AccessToken.token_hash == hashes[0])
                )
            return len(hashes)
