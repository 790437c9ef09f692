"""API tokens in the database: only their SHA-256 is stored, never the token.

A token is usable while it is neither revoked nor past its ``expires_at``;
revoking is setting ``revoked_at`` (the row stays, for the listing and audit).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.db.models import Account, ApiToken, TokenRole
from callcontrol.db.types import utcnow

TOKEN_PREFIX = "cc_"


class TokenError(ValueError):
    """A token cannot be made as asked (wrong role/account combination, no such account)."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as listed: everything but the secret."""

    id: int
    role: TokenRole
    account_id: int | None
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


def _info(row: ApiToken) -> TokenInfo:
    return TokenInfo(
        row.id, row.role, row.account_id, row.label, row.created_at, row.expires_at,
        row.revoked_at,
    )  # fmt: skip


async def add_token(
    session: AsyncSession,
    *,
    role: TokenRole,
    account_id: int | None,
    expires_at: datetime | None = None,
    label: str = "",
) -> str:
    """Store a new token in the session's transaction; return the plain token."""
    if (role == "operator") != (account_id is None):
        raise TokenError("an operator token has no account; a customer token needs one")
    if account_id is not None and await session.get(Account, account_id) is None:
        raise TokenError(f"account {account_id} does not exist")
    if expires_at is not None and (expires_at.tzinfo is None or expires_at <= utcnow()):
        raise TokenError("a token's expiry must be an aware time in the future")
    token = new_token()
    session.add(ApiToken(
        role=role, account_id=account_id, token_hash=token_hash(token), expires_at=expires_at,
        label=label,
    ))  # fmt: skip
    await session.flush()
    return token


async def usable_token(session: AsyncSession, token: str, now: datetime) -> ApiToken | None:
    """The row of a token that is neither revoked nor expired."""
    return await session.scalar(
        sa.select(ApiToken).where(
            ApiToken.token_hash == token_hash(token),
            ApiToken.revoked_at.is_(None),
            sa.or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
        )
    )


async def list_tokens(
    session: AsyncSession, *, account_id: int | None = None, operators: bool = True
) -> list[TokenInfo]:
    """Tokens, oldest first: of one account, or every one (``operators``: with the
    operator tokens)."""
    query = sa.select(ApiToken).order_by(ApiToken.id)
    if account_id is not None:
        query = query.where(ApiToken.account_id == account_id)
    elif not operators:
        query = query.where(ApiToken.account_id.is_not(None))
    return [_info(row) for row in await session.scalars(query)]


async def get_token(session: AsyncSession, token_id: int) -> TokenInfo | None:
    row = await session.get(ApiToken, token_id)
    return _info(row) if row is not None else None


async def revoke_by_id(session: AsyncSession, token_id: int) -> bool:
    """Revoke one token; False if it was already revoked (or does not exist)."""
    result = await session.execute(
        sa.update(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return bool(getattr(result, "rowcount", 0))


async def revoke_by_value(session: AsyncSession, token: str) -> bool:
    result = await session.execute(
        sa.update(ApiToken)
        .where(ApiToken.token_hash == token_hash(token), ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return bool(getattr(result, "rowcount", 0))
