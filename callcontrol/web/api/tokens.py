"""Creating and revoking API tokens (used by ``callcontrol token create`` and the API).

The plain token is returned once and never stored: only its SHA-256 is kept.
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db.models import Account, ApiToken, TokenRole
from callcontrol.db.types import utcnow
from callcontrol.web.api.auth import token_hash

TOKEN_PREFIX = "cc_"


class TokenError(ValueError):
    """A token cannot be made as asked (wrong role/account combination, no such account)."""


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


async def add_token(session: AsyncSession, *, role: TokenRole, account_id: int | None) -> str:
    """Store a new token in the session's transaction; return the plain token."""
    if (role == "operator") != (account_id is None):
        raise TokenError("an operator token has no account; a customer token needs one")
    if account_id is not None and await session.get(Account, account_id) is None:
        raise TokenError(f"account {account_id} does not exist")
    token = new_token()
    session.add(ApiToken(role=role, account_id=account_id, token_hash=token_hash(token)))
    await session.flush()
    return token


async def create_token(
    sessions: async_sessionmaker[AsyncSession],
    *,
    role: TokenRole,
    account_id: int | None = None,
) -> str:
    """Create a token and commit it; return the plain token (show it once)."""
    async with sessions() as session, session.begin():
        return await add_token(session, role=role, account_id=account_id)


async def revoke_token(sessions: async_sessionmaker[AsyncSession], token: str) -> bool:
    """Revoke a token by its plain value; False if it was unknown or already revoked."""
    async with sessions() as session, session.begin():
        result = await session.execute(
            sa.update(ApiToken)
            .where(ApiToken.token_hash == token_hash(token), ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
    return bool(getattr(result, "rowcount", 0))
